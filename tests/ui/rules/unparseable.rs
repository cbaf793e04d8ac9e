static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/unparseable");

fn main() {
    let _ = &MIGRATIONS;
}
