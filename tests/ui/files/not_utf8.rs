static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/not_utf8");

fn main() {
    let _ = &MIGRATIONS;
}
