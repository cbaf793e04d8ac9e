//! A service that applies its set at start-up, built without migrate-core's `lint` feature
//! (`tests/startup-size`, the crate `scripts/bench-size.sh` measures): it links no SQL parser,
//! and applies the example set, backfill and contract included, from what the macro read of
//! the statements at build time.

use std::path::{Path, PathBuf};
use std::process::Command;

use migrate_scratch::ScratchCluster;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Builds `tests/startup-size` in debug (the service crate's target folder, whose
/// dependencies are mostly built already) and returns its binary.
fn startup_binary() -> PathBuf {
    let crate_dir = workspace_root().join("tests").join("startup-size");
    let target = workspace_root().join("target").join("service-crate");
    // Same dependency versions as the workspace, resolved offline.
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        crate_dir.join("Cargo.lock"),
    )
    .unwrap();
    let output = Command::new(env!("CARGO"))
        .args(["build", "--quiet", "--offline"])
        .current_dir(&crate_dir)
        .env("CARGO_TARGET_DIR", &target)
        .env_remove("MIGRATE_MACROS_MANIFEST_DIR")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    target.join("debug").join("startup-size")
}

#[test]
fn a_service_without_the_parser_applies_the_example_set_backfill_included() {
    let binary = startup_binary();
    // An unstripped debug binary names every crate it links code of (symbols, panic
    // locations): none of sqlparser's.
    let bytes = std::fs::read(&binary).unwrap();
    assert!(
        !bytes.windows(b"sqlparser".len()).any(|w| w == b"sqlparser"),
        "the runtime-only binary links sqlparser"
    );

    // Rows already there when the set is applied, so the backfill has batches to run: its
    // pieces come from the macro, the runtime does not parse the UPDATE.
    let cluster = ScratchCluster::start().expect("scratch cluster");
    let db = cluster.create_database().unwrap();
    cluster
        .psql(
            db.name(),
            "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             email text NOT NULL, display_name text, \
             created_at timestamptz NOT NULL DEFAULT now(), \
             updated_at timestamptz NOT NULL DEFAULT now()); \
             INSERT INTO users (email) SELECT 'User' || g || '@Example.com' \
             FROM generate_series(1, 2500) g;",
        )
        .unwrap();
    let mut command = Command::new(&binary);
    for (key, _) in std::env::vars_os() {
        if let Some(key) = key.to_str()
            && (key == "DATABASE_URL" || key.starts_with("PG"))
        {
            command.env_remove(key);
        }
    }
    let output = command
        .env("DATABASE_URL", format!("{}?sslmode=disable", db.url()))
        .output()
        .unwrap();
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{}\n{stdout}",
        text(&output.stderr)
    );
    assert!(stdout.contains("applied 7 migration(s)"), "{stdout}");
    let wrong = cluster
        .psql(
            db.name(),
            "SELECT count(*) FROM users WHERE email_normalized IS DISTINCT FROM lower(email)",
        )
        .unwrap();
    assert_eq!(wrong.trim(), "0");
    let filled = cluster
        .psql(
            db.name(),
            "SELECT count(*) FROM users WHERE email_normalized = lower(email)",
        )
        .unwrap();
    assert_eq!(filled.trim(), "2500");
}
