static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/pass/rule_off");

fn main() {
    assert_eq!(MIGRATIONS.len(), 1);
}
