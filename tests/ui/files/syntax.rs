static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/syntax");

fn main() {
    let _ = &MIGRATIONS;
}
