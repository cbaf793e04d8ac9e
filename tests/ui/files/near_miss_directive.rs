static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/near_miss_directive");

fn main() {
    let _ = &MIGRATIONS;
}
