static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/exclusion-constraint");

fn main() {
    let _ = &MIGRATIONS;
}
