static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/volatile-default");

fn main() {
    let _ = &MIGRATIONS;
}
