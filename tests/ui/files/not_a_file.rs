static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/not_a_file");

fn main() {
    let _ = &MIGRATIONS;
}
