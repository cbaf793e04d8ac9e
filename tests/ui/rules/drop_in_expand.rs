static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/drop-in-expand");

fn main() {
    let _ = &MIGRATIONS;
}
