static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/rules/lock-held-across-statements");

fn main() {
    let _ = &MIGRATIONS;
}
