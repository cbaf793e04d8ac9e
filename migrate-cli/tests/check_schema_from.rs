//! `check --schema-from` / `--schema-file` / `--sample-rows` against a "production" database
//! the test builds (the example set partly applied, rows, a history table): only the pending
//! migrations are checked, the source is byte-for-byte unchanged, a failure that only its
//! rows cause is found with a sample, and bad input gets a clear error.

mod common;

use common::*;
use migrate_scratch::{
    DumpSource, PG_BIN_ENV, PG_CACHE_ENV, PG_MAJOR_ENV, PgBinaries, PgDump, ScratchDatabase,
};
use predicates::prelude::*;

/// A migration that only fails on data: a unique index over a column with duplicates.
const UNIQUE_DISPLAY_NAME: &str = "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS \
users_display_name_key ON users (display_name);\n-- migrate:down\n\
DROP INDEX CONCURRENTLY IF EXISTS users_display_name_key;\n";

/// The example set plus 0008 (the unique index), and a production database with 0001..0005
/// applied and two users sharing a display name.
fn production() -> (tempfile::TempDir, ScratchDatabase) {
    let dir = copy_of_examples();
    std::fs::write(
        dir.path().join("0008_unique_display_name.expand.sql"),
        UNIQUE_DISPLAY_NAME,
    )
    .unwrap();
    let db = database();
    migrate_on(&db, dir.path())
        .args(["up", "--to", "5"])
        .assert()
        .success();
    sql(
        &db,
        "INSERT INTO users (email, display_name) VALUES ('a@example.com', 'Ann'), \
         ('b@example.com', 'Ann'), ('c@example.com', 'Bob')",
    );
    (dir, db)
}

/// Everything in the database, rows included.
fn full_dump(db: &ScratchDatabase) -> String {
    PgDump::new(cluster().binaries(), DumpSource::scratch(db))
        .run()
        .expect("pg_dump")
}

#[test]
fn only_pending_migrations_are_checked_and_the_source_is_unchanged() {
    let (dir, db) = production();
    let before = full_dump(&db);
    let output = migrate()
        .args(["--format", "json", "check", "--schema-from"])
        .arg(url(&db))
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    let checked: Vec<u64> = report["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    assert_eq!(checked, [6, 7, 8], "only the pending ones");
    assert!(
        report["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["down"] == "restores")
    );
    assert!(
        report["base"]["origin"]
            .as_str()
            .unwrap()
            .contains(db.name())
    );
    // 0006 validates on production's schema: observed there too.
    assert_eq!(
        report["migrations"][0]["observed"]["statements"][0]["locks"][0]["mode"],
        "SHARE_UPDATE_EXCLUSIVE"
    );
    assert_eq!(full_dump(&db), before, "the source database changed");
}

#[test]
fn a_sample_of_rows_finds_a_failure_an_empty_schema_hides() {
    let (dir, db) = production();
    let before = full_dump(&db);
    // Without rows, the unique index builds.
    migrate()
        .args(["check", "--schema-from"])
        .arg(url(&db))
        .arg(dir.path())
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "check passed: 3 pending migration(s)",
        ));
    migrate()
        .args(["check", "--sample-rows", "10", "--schema-from"])
        .arg(url(&db))
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "0008_unique_display_name.expand.sql",
        ))
        .stderr(predicate::str::contains("could not create unique index"));
    assert_eq!(full_dump(&db), before, "the source database changed");
}

#[test]
fn a_history_that_disagrees_with_the_files_is_reported_as_status_does() {
    let (dir, db) = production();
    sql(
        &db,
        "UPDATE schema_migrations SET checksum = repeat('0', 64) WHERE version = 2",
    );
    migrate()
        .args(["check", "--schema-from"])
        .arg(url(&db))
        .arg(dir.path())
        .assert()
        .code(4)
        .stdout(predicate::str::contains("drifted"))
        .stderr(predicate::str::contains("disagrees with the files"));
}

#[test]
fn bad_sources_are_clear_errors() {
    let (dir, db) = production();
    migrate()
        .args(["check", "--schema-from"])
        .arg("postgres://postgres@127.0.0.1:1/nowhere?sslmode=disable&connect_timeout=2")
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "connecting to the --schema-from database postgres@127.0.0.1:1/nowhere",
        ));

    let broken = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(broken.path(), "CREATE TABLE t (id no_such_type);\n").unwrap();
    migrate()
        .args(["check", "--schema-file"])
        .arg(broken.path())
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("does not load"))
        .stderr(predicate::str::contains("no_such_type"));

    migrate()
        .args([
            "check",
            "--pg-dump",
            "/nonexistent/pg_dump",
            "--schema-from",
        ])
        .arg(url(&db))
        .arg(dir.path())
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/pg_dump not found"));
}

#[test]
fn a_schema_file_with_history_rows_checks_its_pending_migrations() {
    let (dir, db) = production();
    let schema = PgDump::new(cluster().binaries(), DumpSource::scratch(&db))
        .schema_only()
        .run()
        .unwrap();
    let history = PgDump::new(cluster().binaries(), DumpSource::scratch(&db))
        .data_only()
        .table("public.schema_migrations")
        .run()
        .unwrap();
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), format!("{schema}\n{history}\n")).unwrap();
    let output = migrate()
        .args(["--format", "json", "check", "--schema-file"])
        .arg(file.path())
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let checked: Vec<u64> = json(&output)["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    assert_eq!(checked, [6, 7, 8]);
}

/// `migrate --format json check --pg-dump <production's> --schema-from <production> <dir>`,
/// with `env` set: pg_dump must be of production's major or newer, whichever server checks.
fn check_from(
    db: &ScratchDatabase,
    dir: &std::path::Path,
    env: &[(&str, &str)],
) -> std::process::Output {
    let mut command = migrate();
    command.env_remove(PG_MAJOR_ENV).env_remove(PG_BIN_ENV);
    for (key, value) in env {
        command.env(key, value);
    }
    command
        .args(["--format", "json", "check", "--pg-dump"])
        .arg(cluster().binaries().program("pg_dump"))
        .arg("--schema-from")
        .arg(url(db))
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn the_check_runs_on_productions_own_major_where_installed() {
    let production_major = cluster().version().major;
    // The check's default server is another installed major: production's must still win.
    let Some(other) = (14..=18)
        .filter(|major| *major != production_major)
        .find(|major| PgBinaries::locate_major(*major).is_some())
    else {
        eprintln!("skipped: no major but {production_major} is installed (scripts/install-pg.sh)");
        return;
    };
    let (dir, db) = production();
    let output = check_from(&db, dir.path(), &[(PG_MAJOR_ENV, &other.to_string())]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["postgres_major"], production_major, "{report}");
    assert_eq!(report["production_major"], production_major, "{report}");
    assert!(!stderr(&output).contains("warning: production runs"));
}

#[test]
fn without_productions_major_the_check_warns_and_runs_on_the_default() {
    let production_major = cluster().version().major;
    // Production's major hidden (an empty cache folder) and the default another major of
    // Debian's folders: possible where production's is not Debian's own.
    let debian = |major: u32| format!("/usr/lib/postgresql/{major}/bin");
    if std::path::Path::new(&debian(production_major))
        .join("initdb")
        .exists()
    {
        eprintln!(
            "skipped: production's major {production_major} is Debian's, which cannot be hidden"
        );
        return;
    }
    let Some(default_major) = (14..=18).find(|major| {
        std::path::Path::new(&debian(*major))
            .join("initdb")
            .exists()
    }) else {
        eprintln!("skipped: no Debian PostgreSQL to fall back on");
        return;
    };
    let (dir, db) = production();
    let empty_cache = tempfile::tempdir().unwrap();
    let cache = empty_cache.path().to_str().unwrap();
    let output = check_from(
        &db,
        dir.path(),
        &[(PG_CACHE_ENV, cache), (PG_BIN_ENV, &debian(default_major))],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["postgres_major"], default_major, "{report}");
    assert_eq!(report["production_major"], production_major, "{report}");
    assert!(
        stderr(&output).contains(&format!(
            "warning: production runs PostgreSQL {production_major}, whose server binaries are not installed here"
        )),
        "{}",
        stderr(&output)
    );
}
