static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/bad_file_name");

fn main() {
    let _ = &MIGRATIONS;
}
