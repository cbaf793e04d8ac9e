static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/constraint-not-valid");

fn main() {
    let _ = &MIGRATIONS;
}
