//! `migrate verify --compare` against a real PostgreSQL: differing keys named exactly, a
//! clean compare passes, a killed compare resumes, and the contract gate waits for a pass.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use migrate_core::Migrations;
use migrate_core::runtime::{
    CompareOptions, Difference, GateFailure, Migrator, RuntimeError, UpTo,
};

/// Loads `files` (name, text) from a folder exactly as the CLI would.
fn load(dir: &Path, files: &[(&str, &str)]) -> Migrations {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    checked.migrations(&dir.to_string_lossy())
}

/// Two tables: a legacy one and its modern copy with the email lower-cased. The backfill
/// file only declares the compare (its UPDATE keeps the copy's other column in shape).
fn copy_set(dir: &Path) -> Migrations {
    load(
        dir,
        &[
            (
                "0001_tables.sql",
                "CREATE TABLE IF NOT EXISTS users_legacy (id bigint PRIMARY KEY, email text NOT NULL);\n\
                 CREATE TABLE IF NOT EXISTS users_modern (id bigint PRIMARY KEY, email_normalized text, note text);\n\
                 -- migrate:down\nDROP TABLE IF EXISTS users_modern;\nDROP TABLE IF EXISTS users_legacy;\n",
            ),
            (
                "0002_copy.backfill.sql",
                "-- migrate:backfill table=users_modern key=id\n\
                 -- migrate:compare source=users_legacy target=users_modern key=id columns=email_normalized map=lower(email)\n\
                 UPDATE users_modern SET note = '' WHERE note IS NULL;\n-- migrate:down\n",
            ),
        ],
    )
}

async fn fill_copy(client: &tokio_postgres::Client, rows: i64) {
    client
        .batch_execute(&format!(
            "INSERT INTO users_legacy SELECT g, 'User' || g || '@Example.com' FROM generate_series(1, {rows}) g;\n\
             INSERT INTO users_modern (id, email_normalized) SELECT id, lower(email) FROM users_legacy;\n\
             ANALYZE users_legacy; ANALYZE users_modern;"
        ))
        .await
        .unwrap();
}

fn keys(report: &migrate_core::runtime::CompareReport) -> BTreeSet<(String, Difference)> {
    report
        .differing_keys
        .iter()
        .map(|k| (k.key.clone(), k.difference))
        .collect()
}

#[tokio::test]
async fn a_million_rows_with_three_corrupted_and_one_missing_name_exactly_those_keys() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = copy_set(dir.path());
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    fill_copy(&client, 1_000_000).await;
    // Corrupted: a wrong value, a NULL, a value that differs only in case; missing: a
    // deleted row.
    client
        .batch_execute(
            "UPDATE users_modern SET email_normalized = 'someone@else' WHERE id = 17;\n\
             UPDATE users_modern SET email_normalized = NULL WHERE id = 500000;\n\
             UPDATE users_modern SET email_normalized = 'User999999@Example.com' WHERE id = 999999;\n\
             DELETE FROM users_modern WHERE id = 123456;",
        )
        .await
        .unwrap();

    let report = migrator
        .compare(&client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(report.rows_compared, 1_000_000);
    assert_eq!(report.differing, 4, "{report:?}");
    let expected: BTreeSet<(String, Difference)> = [
        ("17", Difference::Differs),
        ("123456", Difference::Missing),
        ("500000", Difference::Differs),
        ("999999", Difference::Differs),
    ]
    .into_iter()
    .map(|(k, d)| (k.to_owned(), d))
    .collect();
    assert_eq!(keys(&report), expected);
    assert!(!report.passed() && report.passed_at.is_none());

    // An extra row in the target, above every source key, is found too.
    client
        .batch_execute("INSERT INTO users_modern (id, email_normalized) VALUES (2000000, 'x')")
        .await
        .unwrap();
    let report = migrator
        .compare(&client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(report.differing, 5);
    assert!(
        report
            .differing_keys
            .iter()
            .any(|k| k.key == "2000000" && k.difference == Difference::Extra)
    );
}

#[tokio::test]
async fn a_clean_compare_passes_and_is_recorded() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = copy_set(dir.path());
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    fill_copy(&client, 20_000).await;
    let options = CompareOptions {
        initial_chunk: 1000,
        max_chunk: 1000,
        ..CompareOptions::default()
    };
    let report = migrator.compare(&client, 2, &options).await.unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!((report.rows_compared, report.chunks), (20_000, 21));
    assert!(report.passed_at.is_some());
    let stored = scalar_i64(
        &client,
        "SELECT count(*) FROM schema_migrations_compare WHERE version = 2 AND passed_at IS NOT NULL",
    )
    .await;
    assert_eq!(stored, 1);

    // A later difference clears the pass.
    client
        .batch_execute("UPDATE users_legacy SET email = 'changed' WHERE id = 20000")
        .await
        .unwrap();
    let report = migrator.compare(&client, 2, &options).await.unwrap();
    assert_eq!(report.differing, 1);
    let stored = scalar_i64(
        &client,
        "SELECT count(*) FROM schema_migrations_compare WHERE version = 2 AND passed_at IS NOT NULL",
    )
    .await;
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_compare_killed_midway_resumes_after_its_last_chunk() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = copy_set(dir.path());
    let setup = client(db.url()).await;
    Migrator::new(&migrations, config())
        .unwrap()
        .up(&setup, UpTo::Version(1))
        .await
        .unwrap();
    fill_copy(&setup, 200_000).await;
    setup
        .batch_execute(
            "UPDATE users_modern SET email_normalized = 'first' WHERE id = 5;\n\
             UPDATE users_modern SET email_normalized = 'last' WHERE id = 199990;",
        )
        .await
        .unwrap();
    // Fixed 1,000-row chunks with a pause: about 200 chunks, so the kill lands midway.
    let options = CompareOptions {
        initial_chunk: 1000,
        min_chunk: 1000,
        max_chunk: 1000,
        delay: Some(Duration::from_millis(10)),
        ..CompareOptions::default()
    };

    let victim = client(db.url()).await;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let run = {
        let migrations = migrations.clone();
        let options = options.clone();
        tokio::spawn(async move {
            let migrator = Migrator::new(&migrations, config()).unwrap();
            migrator.compare(&victim, 2, &options).await
        })
    };
    // Observed, not timed: wait until the progress table shows chunks past the first
    // difference, then end the compare's session.
    let reached = loop {
        let row = setup
            .query_opt(
                "SELECT rows_compared FROM schema_migrations_compare WHERE version = 2",
                &[],
            )
            .await;
        if let Ok(Some(row)) = row {
            let rows: i64 = row.get(0);
            if rows >= 20_000 {
                break rows;
            }
        }
        assert!(!run.is_finished(), "the compare ended before it was killed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    setup
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let killed = run.await.unwrap();
    assert!(killed.is_err(), "{killed:?}");

    let client = client(db.url()).await;
    let report = Migrator::new(&migrations, config())
        .unwrap()
        .compare(&client, 2, &CompareOptions::default())
        .await
        .unwrap();
    let resumed_from: i64 = report
        .resumed_from
        .as_deref()
        .expect("resumed")
        .parse()
        .unwrap();
    assert!(
        resumed_from >= reached && resumed_from < 200_000,
        "{report:?}"
    );
    assert_eq!(report.rows_compared, 200_000);
    assert_eq!(report.rows_this_run, 200_000 - resumed_from);
    let found: Vec<&str> = report
        .differing_keys
        .iter()
        .map(|k| k.key.as_str())
        .collect();
    assert_eq!(found, ["5", "199990"]);
}

fn gated_set(dir: &Path) -> Migrations {
    load(
        dir,
        &[
            (
                "0001_users.sql",
                "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text NOT NULL, email_normalized text);\n\
                 -- migrate:down\nDROP TABLE IF EXISTS users;\n",
            ),
            (
                "0002_normalize.backfill.sql",
                "-- migrate:backfill table=users key=id\n\
                 -- migrate:compare source=users target=users key=id columns=email_normalized map=lower(email)\n\
                 UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL;\n-- migrate:down\n",
            ),
            (
                "0003_drop_email.contract.sql",
                "-- migrate:requires 1\n-- migrate:requires-compare\n\
                 ALTER TABLE users DROP COLUMN IF EXISTS email;\n",
            ),
        ],
    )
}

fn compare_refusal(error: &RuntimeError) -> Option<String> {
    match error {
        RuntimeError::ContractGate { failure, .. } => match failure.as_ref() {
            GateFailure::CompareNotPassed { reason, .. } => Some(reason.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test]
async fn the_gate_refuses_a_contract_until_its_compare_passed() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = gated_set(dir.path());
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO users (id, email) SELECT g, 'A' || g FROM generate_series(1, 5000) g",
        )
        .await
        .unwrap();
    migrator.up(&client, UpTo::Version(2)).await.unwrap();

    let refused = migrator.up(&client, UpTo::All).await.unwrap_err();
    assert_eq!(
        compare_refusal(refused.error()).as_deref(),
        Some("it never ran"),
        "{refused}"
    );
    // The dry run refuses the same way.
    let dry = migrator.dry_run_up(&client, UpTo::All).await.unwrap_err();
    assert!(compare_refusal(dry.error()).is_some(), "{}", dry.error());

    // A row written by a release that forgot the new column: the compare fails, and so does
    // the gate.
    client
        .batch_execute("UPDATE users SET email_normalized = 'stale' WHERE id = 42")
        .await
        .unwrap();
    let report = migrator
        .compare(&client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(report.differing, 1);
    let refused = migrator.up(&client, UpTo::All).await.unwrap_err();
    assert_eq!(
        compare_refusal(refused.error()).as_deref(),
        Some("it found 1 differing key(s)")
    );
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email'").await,
        1
    );

    client
        .batch_execute("UPDATE users SET email_normalized = lower(email) WHERE id = 42")
        .await
        .unwrap();
    let report = migrator
        .compare(&client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert!(report.passed());
    let applied = migrator.up(&client, UpTo::All).await.unwrap();
    assert_eq!(applied.versions(), vec![3]);
}
