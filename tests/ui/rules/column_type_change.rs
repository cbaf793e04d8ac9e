static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/column-type-change");

fn main() {
    let _ = &MIGRATIONS;
}
