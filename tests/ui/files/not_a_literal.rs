static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!(migrations);

fn main() {
    let _ = &MIGRATIONS;
}
