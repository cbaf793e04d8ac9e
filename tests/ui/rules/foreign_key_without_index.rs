#![deny(deprecated)]

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/foreign-key-without-index");

fn main() {
    let _ = &MIGRATIONS;
}
