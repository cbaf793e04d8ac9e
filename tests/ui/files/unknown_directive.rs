static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/unknown_directive");

fn main() {
    let _ = &MIGRATIONS;
}
