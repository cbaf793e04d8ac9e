#![deny(deprecated)]

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/prefer-robust-types");

fn main() {
    let _ = &MIGRATIONS;
}
