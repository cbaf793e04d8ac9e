static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/duplicate_version");

fn main() {
    let _ = &MIGRATIONS;
}
