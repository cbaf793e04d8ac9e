static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/destructive-cascade");

fn main() {
    let _ = &MIGRATIONS;
}
