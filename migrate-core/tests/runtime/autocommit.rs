//! Autocommit migrations: `CONCURRENTLY` builds, a failed build rebuilt on the next run, and a
//! statement retried alone on lock timeout.

use std::time::Duration;

use crate::common::{self, *};
use crate::fixtures::*;
use migrate_core::TransactionMode;
use migrate_core::runtime::{Migrator, MigratorConfig, RuntimeError, UpTo};
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn create_index_concurrently_applies_in_an_autocommit_migration() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(vec![
        tx(
            1,
            "users",
            &[
                "CREATE TABLE users (id bigint PRIMARY KEY, email text)",
                "INSERT INTO users SELECT g, 'u' || g FROM generate_series(1, 1000) g",
            ],
            &["DROP TABLE users"],
        ),
        common::migration(
            2,
            "users_email_idx",
            &["CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email)"],
            Some(&["DROP INDEX CONCURRENTLY IF EXISTS users_email_idx"]),
            TransactionMode::Autocommit,
        ),
    ]);
    let migrator = Migrator::new(&migrations, config()).expect("config");
    let report = migrator.up(&client, UpTo::All).await.expect("up");
    assert_eq!(report.applied[1].mode, TransactionMode::Autocommit);
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email_idx'::regclass",
            &[],
        )
        .await
        .expect("index")
        .get(0);
    assert!(valid);

    let down = migrator.down(&client, 1).await.expect("down");
    assert_eq!(down.versions(), vec![2]);
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_class WHERE relname = 'users_email_idx'"
        )
        .await,
        0
    );
    assert_eq!(history_versions(&client).await, vec![1]);
}

#[tokio::test]
async fn a_failed_unique_concurrent_build_is_dropped_and_rebuilt_on_the_next_run() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(vec![
        tx(
            1,
            "accounts",
            &[
                "CREATE SCHEMA app",
                "CREATE TABLE app.accounts (id bigint PRIMARY KEY, email text)",
                "INSERT INTO app.accounts VALUES (1, 'a@x'), (2, 'a@x'), (3, 'b@x')",
            ],
            &["DROP SCHEMA app CASCADE"],
        ),
        common::migration(
            2,
            "accounts_email_key",
            &[
                "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_email_key \
                 ON app.accounts (email)",
            ],
            None,
            TransactionMode::Autocommit,
        ),
    ]);
    let migrator = Migrator::new(&migrations, config()).expect("config");
    let error = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("duplicates make the unique build fail");
    assert_eq!(error.report.versions(), vec![1]);
    assert_eq!(error.error().sql_state(), Some(&SqlState::UNIQUE_VIOLATION));
    match error.error() {
        RuntimeError::Statement { location, .. } => {
            assert_eq!(location.version, 2);
            assert_eq!(location.file, "0002_accounts_email_key.sql");
            assert_eq!((location.line, location.column), (3, 1));
        }
        other => panic!("expected Statement, got {other:?}"),
    }
    let invalid_index = "SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid \
                         JOIN pg_namespace n ON n.oid = c.relnamespace \
                         WHERE c.relname = 'accounts_email_key' AND n.nspname = 'app' \
                           AND NOT i.indisvalid";
    assert_eq!(scalar_i64(&client, invalid_index).await, 1);
    assert_eq!(history_versions(&client).await, vec![1]);

    // Plain IF NOT EXISTS would now keep the broken index; the runtime drops it first.
    client
        .batch_execute("DELETE FROM app.accounts WHERE id = 2")
        .await
        .expect("fix data");
    let report = migrator.up(&client, UpTo::All).await.expect("rebuild");
    assert_eq!(report.versions(), vec![2]);
    assert_eq!(scalar_i64(&client, invalid_index).await, 0);
    let valid: bool = client
        .query_one(
            "SELECT indisvalid FROM pg_index WHERE indexrelid = 'app.accounts_email_key'::regclass",
            &[],
        )
        .await
        .expect("index")
        .get(0);
    assert!(valid);
}

#[tokio::test]
async fn an_autocommit_statement_is_retried_alone_on_lock_timeout() {
    let (db, blocker, _) = lock_timeout_fixture().await;
    let migrations = set(vec![common::migration(
        1,
        "t_note",
        &[
            "CREATE TABLE IF NOT EXISTS side (id int)",
            "ALTER TABLE t ADD COLUMN IF NOT EXISTS note text",
        ],
        None,
        TransactionMode::Autocommit,
    )]);
    let config = MigratorConfig {
        lock_timeout: Duration::from_millis(100),
        lock_retries: 3,
        retry_backoff: Duration::from_millis(20),
        ..config()
    };
    blocker
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE")
        .await
        .expect("blocker");
    let client = client(db.url()).await;
    let error = Migrator::new(&migrations, config)
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect_err("blocked");
    match error.error() {
        RuntimeError::LockRetriesExhausted {
            location, attempts, ..
        } => {
            assert_eq!(*attempts, 4);
            assert_eq!(location.line, 4, "the ALTER, not the CREATE");
        }
        other => panic!("expected LockRetriesExhausted, got {other:?}"),
    }
    blocker.batch_execute("COMMIT").await.expect("release");
    // Autocommit: the first statement stays applied; no history row was written.
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_class WHERE relname = 'side'"
        )
        .await,
        1
    );
    assert!(history_versions(&client).await.is_empty());
}
