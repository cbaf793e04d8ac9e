static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/config");

fn main() {
    let _ = &MIGRATIONS;
}
