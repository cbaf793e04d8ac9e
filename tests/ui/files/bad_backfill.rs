static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/bad_backfill");

fn main() {
    let _ = &MIGRATIONS;
}
