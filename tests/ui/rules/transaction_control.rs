static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/transaction-control");

fn main() {
    let _ = &MIGRATIONS;
}
