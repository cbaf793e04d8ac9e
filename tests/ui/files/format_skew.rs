// What migrations!() writes when migrate-macros packs the set in another format than this
// migrate-core reads (the two crates at different versions): the build fails, naming both.
static MIGRATIONS: migrate_core::Migrations = {
    const _: () = migrate_core::migration::packed::expect_format(0);
    migrate_core::Migrations::empty()
};

fn main() {
    let _ = &MIGRATIONS;
}
