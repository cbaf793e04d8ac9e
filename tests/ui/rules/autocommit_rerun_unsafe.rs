static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/autocommit-rerun-unsafe");

fn main() {
    let _ = &MIGRATIONS;
}
