static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/pass/warn_only");

fn main() {
    assert_eq!(MIGRATIONS.len(), 1);
}
