static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/blocking-statement");

fn main() {
    let _ = &MIGRATIONS;
}
