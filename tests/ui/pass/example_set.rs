//! The example set compiles, in a `static` and in a `let`.

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");

fn main() {
    let local = migrate_macros::migrations!("../migrations");
    assert_eq!(local, MIGRATIONS);
    assert!(MIGRATIONS.len() >= 7);
    let contract = MIGRATIONS.iter().find(|m| m.phase == migrate_core::Phase::Contract).unwrap();
    assert_eq!(contract.requires, Some(3));
    assert_eq!(contract.up.mode, migrate_core::TransactionMode::Autocommit);
}
