static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/empty_file");

fn main() {
    let _ = &MIGRATIONS;
}
