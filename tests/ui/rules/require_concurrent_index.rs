static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/require-concurrent-index");

fn main() {
    let _ = &MIGRATIONS;
}
