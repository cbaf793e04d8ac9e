static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/require-if-not-exists");

fn main() {
    let _ = &MIGRATIONS;
}
