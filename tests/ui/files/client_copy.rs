static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/client_copy");

fn main() {
    let _ = &MIGRATIONS;
}
