static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/every_violation");

fn main() {
    let _ = &MIGRATIONS;
}
