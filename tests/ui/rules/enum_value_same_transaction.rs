static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/enum-value-same-transaction");

fn main() {
    let _ = &MIGRATIONS;
}
