static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/no_such_folder");

fn main() {
    let _ = &MIGRATIONS;
}
