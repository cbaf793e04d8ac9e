static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/unused_allow");

fn main() {
    let _ = &MIGRATIONS;
}
