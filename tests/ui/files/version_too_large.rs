static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/version_too_large");

fn main() {
    let _ = &MIGRATIONS;
}
