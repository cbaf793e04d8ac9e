static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/set-not-null-scan");

fn main() {
    let _ = &MIGRATIONS;
}
