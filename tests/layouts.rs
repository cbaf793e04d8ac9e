//! `migrations!()` reads other tools' layouts through `check_dir_as`, detected or forced with
//! `layout = "..."`: the embedded set is the one the CLI reads.

// The fixtures carry one warning on purpose (the CLI test compares it across layouts); the
// macro reports it as a deprecation.
#![allow(deprecated)]

use std::path::Path;

use migrate_core::Migrations;
use migrate_core::source::Layout;

static DIESEL: Migrations = migrate_macros::migrations!("../migrate-cli/tests/layouts/diesel");
static REFINERY: Migrations =
    migrate_macros::migrations!("../migrate-cli/tests/layouts/refinery", layout = "refinery");

fn read(layout: &str, forced: Option<Layout>) -> Migrations {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../migrate-cli/tests/layouts")
        .join(layout);
    let checked = migrate_core::check_dir_as(&dir, layout, forced).unwrap();
    assert!(!checked.has_errors());
    checked.migrations("")
}

#[test]
fn the_macro_embeds_what_the_cli_reads() {
    for (embedded, layout, forced) in [
        (&DIESEL, "diesel", None),
        (&REFINERY, "refinery", Some(Layout::Refinery)),
    ] {
        let read = read(layout, forced);
        assert_eq!(embedded.as_slice(), read.as_slice(), "{layout}");
        let versions: Vec<u64> = embedded.iter().map(|m| m.version).collect();
        assert_eq!(versions.len(), 3);
    }
    assert_eq!(DIESEL.as_slice()[0].version, 20240101000001);
    assert_eq!(
        DIESEL.as_slice()[0].file_name,
        "2024-01-01-000001_create_users/up.sql"
    );
    assert_eq!(
        DIESEL.as_slice()[1].up.mode,
        migrate_core::TransactionMode::Autocommit
    );
}
