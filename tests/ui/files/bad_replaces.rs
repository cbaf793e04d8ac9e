static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/bad_replaces");

fn main() {
    let _ = &MIGRATIONS;
}
