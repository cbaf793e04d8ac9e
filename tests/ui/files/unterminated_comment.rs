static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("ui/files/unterminated_comment");

fn main() {
    let _ = &MIGRATIONS;
}
