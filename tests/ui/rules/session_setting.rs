static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/session-setting");

fn main() {
    let _ = &MIGRATIONS;
}
