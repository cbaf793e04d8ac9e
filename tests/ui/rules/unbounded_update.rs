static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/unbounded-update");

fn main() {
    let _ = &MIGRATIONS;
}
