//! `status`: versions missing from the files, partly applied migrations.

use crate::common::*;
use crate::fixtures::*;
use migrate_core::TransactionMode;
use migrate_core::runtime::{MigrationState, Migrator, UpTo};

#[tokio::test]
async fn status_reports_versions_missing_from_the_files() {
    let db = database();
    let client = client(db.url()).await;
    let mut full = basic_set();
    full.push(tx(
        7,
        "gone",
        &["CREATE TABLE gone (id int)"],
        &["DROP TABLE gone"],
    ));
    Migrator::new(&set(full), config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");

    let status = Migrator::new(&set(basic_set()), config())
        .expect("config")
        .status(&client)
        .await
        .expect("status");
    let states: Vec<(u64, MigrationState)> = status
        .entries
        .iter()
        .map(|e| (e.version, e.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (1, MigrationState::Applied),
            (2, MigrationState::Applied),
            (3, MigrationState::Applied),
            (7, MigrationState::MissingFromFiles),
        ]
    );
    assert!(status.entries.iter().all(|e| e.applied_at.is_some()));
}

/// `status` tells a failed statement-by-statement migration (some statements committed) and
/// a half-run backfill from a plain pending one.
#[tokio::test]
async fn status_shows_partly_applied_migrations_and_backfills_in_progress() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(vec![
        tx(
            1,
            "t",
            &["CREATE TABLE t (id bigint PRIMARY KEY, a integer)"],
            &["DROP TABLE t"],
        ),
        migration(
            2,
            "indexes",
            &[
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a)",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_b ON t (no_such_column)",
            ],
            None,
            TransactionMode::Autocommit,
        ),
    ]);
    let migrator = Migrator::new(&migrations, config()).unwrap();
    let failed = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("bad column");
    assert_eq!(failed.report.versions(), vec![1]);

    let status = migrator.status(&client).await.unwrap();
    let entry = &status.entries[1];
    assert_eq!(entry.state, MigrationState::PartlyApplied);
    let detail = entry.detail.as_deref().unwrap();
    assert!(
        detail.contains("failed after 1 of 2 statement(s)"),
        "{detail}"
    );
    assert!(detail.contains("no_such_column"), "{detail}");
    assert!(status.to_string().contains("partly applied"), "{status}");
}
