//! Start-up apply against a real PostgreSQL: `UpTo::LeadingExpands` applies the expands a
//! service needs and leaves backfills and contracts to operations, saying which and why;
//! replicas starting at once all succeed; a start while operations hold the migration lock
//! does not wait for it. Also what a backfill without a monitor says, and `?` from a failed
//! run into a `RuntimeError`.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use migrate_core::Migrations;
use migrate_core::Phase;
use migrate_core::runtime::{
    ConnectOptions, HeldBackReason, Migrator, MigratorConfig, RuntimeError, UpReport, UpTo,
};
use tokio_postgres::error::SqlState;

/// Writes `files` into `dir` and loads them as the CLI would, refusing any lint finding.
fn load(dir: &Path, files: &[(&str, &str)]) -> Migrations {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    checked.migrations(&dir.to_string_lossy())
}

const EXPAND: (&str, &str) = (
    "0001_users.expand.sql",
    "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text NOT NULL, email_lower text);\n\
     -- migrate:down\nDROP TABLE IF EXISTS users;\n",
);
const BACKFILL: (&str, &str) = (
    "0002_users_email_lower.backfill.sql",
    "-- migrate:backfill table=users key=id\n\
     UPDATE users SET email_lower = lower(email) WHERE email_lower IS NULL;\n",
);
const CONTRACT: (&str, &str) = (
    "0003_users_email_lower_required.contract.sql",
    "-- migrate:requires 1\nALTER TABLE users DROP COLUMN IF EXISTS email;\n",
);
/// An expand released after the backfill: held back behind it.
const LATER_EXPAND: (&str, &str) = (
    "0004_orders.expand.sql",
    "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY);\n-- migrate:down\nDROP TABLE IF EXISTS orders;\n",
);

fn expand_backfill_contract(dir: &Path) -> Migrations {
    load(dir, &[EXPAND, BACKFILL, CONTRACT, LATER_EXPAND])
}

fn held(report: &UpReport) -> Vec<(u64, Phase, HeldBackReason)> {
    report
        .held_back
        .iter()
        .map(|h| (h.version, h.phase, h.reason))
        .collect()
}

fn expected_held() -> Vec<(u64, Phase, HeldBackReason)> {
    let after = HeldBackReason::AfterHeldBack { blocked_by: 2 };
    vec![
        (2, Phase::Backfill, HeldBackReason::Backfill),
        (3, Phase::Contract, after),
        (4, Phase::Expand, after),
    ]
}

#[tokio::test]
async fn start_up_apply_applies_only_the_expands_before_the_first_backfill() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = expand_backfill_contract(dir.path());
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();

    let plan = migrator.plan(&client, UpTo::LeadingExpands).await.unwrap();
    assert_eq!(
        plan.migrations
            .iter()
            .map(|m| m.version)
            .collect::<Vec<_>>(),
        [1]
    );
    let report = migrator.up(&client, UpTo::LeadingExpands).await.unwrap();
    assert_eq!(report.versions(), [1]);
    assert_eq!(held(&report), expected_held());
    assert!(
        report.to_string().contains(
            "left pending: 0002_users_email_lower.backfill.sql (a backfill, for operations to run)"
        ),
        "{report}"
    );
    assert_eq!(history_versions(&client).await, [1]);

    // Again: nothing to apply, the same left pending.
    let again = migrator.up(&client, UpTo::LeadingExpands).await.unwrap();
    assert!(again.nothing_to_do());
    assert_eq!(held(&again), expected_held());

    // Operations run the rest; start-up then has nothing left to hold back.
    migrator.up(&client, UpTo::All).await.unwrap();
    assert_eq!(history_versions(&client).await, [1, 2, 3, 4]);
    let after = migrator.up(&client, UpTo::LeadingExpands).await.unwrap();
    assert!(after.nothing_to_do() && after.held_back.is_empty());
}

#[tokio::test]
async fn a_contract_first_is_held_back_with_everything_after_it() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = load(dir.path(), &[EXPAND, CONTRACT]);
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    let report = migrator.up(&client, UpTo::LeadingExpands).await.unwrap();
    assert!(report.nothing_to_do());
    assert_eq!(
        held(&report),
        [(3, Phase::Contract, HeldBackReason::Contract)]
    );
    // The contract's gates were not even consulted: nothing ran and nothing was refused.
    assert_eq!(history_versions(&client).await, [1]);
}

#[tokio::test]
async fn four_replicas_starting_at_once_all_succeed() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    // The expand takes a while, so the other replicas wait on the lock while one applies.
    let slow_expand = (
        "0001_users.expand.sql",
        "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text NOT NULL, email_lower text);\n\
         SELECT pg_sleep(0.5);\n-- migrate:down\nDROP TABLE IF EXISTS users;\n",
    );
    let migrations = Arc::new(load(dir.path(), &[slow_expand, BACKFILL, CONTRACT]));
    let mut replicas = Vec::new();
    for _ in 0..4 {
        let migrations = Arc::clone(&migrations);
        let url = db.url().to_owned();
        replicas.push(tokio::spawn(async move {
            let client = client(&url).await;
            let migrator = Migrator::new(&migrations, config()).unwrap();
            migrator.up(&client, UpTo::LeadingExpands).await
        }));
    }
    let mut applied = Vec::new();
    for replica in replicas {
        let report = replica.await.unwrap().expect("every replica starts");
        assert_eq!(
            report
                .held_back
                .iter()
                .map(|h| h.version)
                .collect::<Vec<_>>(),
            [2, 3]
        );
        applied.extend(report.versions());
    }
    assert_eq!(applied, [1], "exactly one replica applied the expand");
    let client = client(db.url()).await;
    assert_eq!(history_versions(&client).await, [1]);
}

#[tokio::test]
async fn a_start_while_operations_hold_the_lock_does_not_wait_for_it() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = expand_backfill_contract(dir.path());
    let config = MigratorConfig {
        lock_wait: Duration::from_millis(300),
        ..config()
    };
    let migrator = Migrator::new(&migrations, config).unwrap();
    let client = client(db.url()).await;
    migrator.up(&client, UpTo::LeadingExpands).await.unwrap();

    // Operations run the long backfill: they hold the migration lock.
    let operations = plain_client(db.url()).await;
    operations
        .query_one("SELECT pg_advisory_lock($1)", &[&migrator.lock_key()])
        .await
        .unwrap();
    let replica = common::client(db.url()).await;
    let report = migrator
        .up(&replica, UpTo::LeadingExpands)
        .await
        .expect("nothing to apply at start-up: no lock needed");
    assert!(report.nothing_to_do());
    assert_eq!(held(&report), expected_held());
    // Where there is something to apply, the lock is needed and waited for.
    let error = migrator
        .up(&replica, UpTo::All)
        .await
        .expect_err("the lock is held");
    assert!(
        matches!(error.error(), RuntimeError::LockTimeout { .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_backfill_without_a_monitor_says_what_is_off_once() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let second_backfill = (
        "0003_users_email_lower_again.backfill.sql",
        "-- migrate:backfill table=users key=id\n\
         UPDATE users SET email_lower = lower(email) WHERE email_lower IS DISTINCT FROM lower(email);\n",
    );
    let migrations = load(dir.path(), &[EXPAND, BACKFILL, second_backfill]);
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO users (id, email) SELECT g, 'U' || g FROM generate_series(1, 50) g",
        )
        .await
        .unwrap();

    let (log, guard) = log::capture(tracing::Level::INFO);
    migrator.up(&client, UpTo::All).await.unwrap();
    drop(guard);
    assert_eq!(
        log.lines_with("backfill runs without a monitor connection"),
        1,
        "{}",
        log.text()
    );
    assert_eq!(
        log.lines_with("Migrator::with_backfill_sessions"),
        1,
        "says how to turn it on"
    );

    // With backfill sessions the monitor is open and nothing is said.
    let db = database();
    let client = common::client(db.url()).await;
    let with_sessions = Migrator::new(&migrations, config())
        .unwrap()
        .with_backfill_sessions(ConnectOptions::parse(db.url()).unwrap());
    let (log, guard) = log::capture(tracing::Level::INFO);
    with_sessions.up(&client, UpTo::All).await.unwrap();
    drop(guard);
    assert_eq!(
        log.lines_with("backfill runs without a monitor connection"),
        0,
        "{}",
        log.text()
    );
    assert!(log.lines_with("applying") >= 3, "{}", log.text());
}

/// A service's start-up function returning the runtime's one error type.
async fn start(
    migrator: &Migrator<'_>,
    client: &tokio_postgres::Client,
) -> Result<UpReport, RuntimeError> {
    Ok(migrator.up(client, UpTo::All).await?)
}

#[tokio::test]
async fn a_failed_run_converts_into_a_runtime_error_keeping_what_it_applied() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let failing = (
        "0002_orders.expand.sql",
        "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, user_id bigint);\n\
         INSERT INTO nowhere (id) VALUES (1);\n\
         -- migrate:down\nDROP TABLE IF EXISTS orders;\n",
    );
    let migrations = load(dir.path(), &[EXPAND, failing]);
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();

    let error = start(&migrator, &client).await.expect_err("0002 fails");
    match &error {
        RuntimeError::AfterPartialRun { .. } => {}
        other => panic!("expected AfterPartialRun, got {other:?}"),
    }
    assert!(
        matches!(error.stopped_by(), RuntimeError::Statement { .. }),
        "{error}"
    );
    assert_eq!(error.sql_state(), Some(&SqlState::UNDEFINED_TABLE));
    assert!(!error.is_transient());
    let completed = error.completed().expect("0001 was applied");
    assert!(
        completed.to_string().contains("0001_users.expand.sql"),
        "{completed}"
    );
    assert!(
        error.to_string().contains("0001_users.expand.sql"),
        "{error}"
    );

    // Nothing applied before the failure: the error itself, to match on directly.
    let error = start(&migrator, &client)
        .await
        .expect_err("0002 fails again");
    assert!(matches!(error, RuntimeError::Statement { .. }), "{error:?}");
    assert!(error.completed().is_none());
}
