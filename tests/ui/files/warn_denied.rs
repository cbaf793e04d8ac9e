#![deny(deprecated)]

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/warn_denied");

fn main() {
    let _ = &MIGRATIONS;
}
