static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/unique-via-index");

fn main() {
    let _ = &MIGRATIONS;
}
