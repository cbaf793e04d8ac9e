static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/identifier-too-long");

fn main() {
    let _ = &MIGRATIONS;
}
