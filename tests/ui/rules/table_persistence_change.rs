static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/table-persistence-change");

fn main() {
    let _ = &MIGRATIONS;
}
