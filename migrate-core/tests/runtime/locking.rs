//! The migration (advisory) lock: one migrator at a time, its holder named on timeout, released
//! after a failure.

use std::time::Duration;

use crate::common::*;
use crate::fixtures::*;
use migrate_core::runtime::{Migrator, MigratorConfig, RuntimeError, UpTo};
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn two_migrators_at_once_apply_each_migration_exactly_once() {
    let db = database();
    let migrations = set(vec![
        tx(
            1,
            "events",
            &["CREATE TABLE events (id serial PRIMARY KEY, what text)"],
            &["DROP TABLE events"],
        ),
        tx(
            2,
            "seed",
            &["INSERT INTO events (what) VALUES ('seeded')"],
            &["DELETE FROM events"],
        ),
        tx(
            3,
            "more",
            &["ALTER TABLE events ADD COLUMN at timestamptz"],
            &["ALTER TABLE events DROP COLUMN at"],
        ),
    ]);
    let first_client = client(db.url()).await;
    let second_client = client(db.url()).await;
    let first = Migrator::new(&migrations, config()).expect("config");
    let second = Migrator::new(&migrations, config()).expect("config");
    let (a, b) = tokio::join!(
        first.up(&first_client, UpTo::All),
        second.up(&second_client, UpTo::All)
    );
    let (a, b) = (a.expect("first"), b.expect("second"));
    let mut all = a.versions();
    all.extend(b.versions());
    all.sort_unstable();
    assert_eq!(all, vec![1, 2, 3], "first: {a}; second: {b}");
    assert_eq!(history_versions(&first_client).await, vec![1, 2, 3]);
    assert_eq!(
        scalar_i64(&first_client, "SELECT count(*) FROM events").await,
        1
    );
}

#[tokio::test]
async fn a_held_migration_lock_times_out_naming_its_holder() {
    let db = database();
    let migrations = set(basic_set());
    let config = MigratorConfig {
        lock_wait: Duration::from_millis(300),
        ..config()
    };
    let migrator = Migrator::new(&migrations, config).expect("config");
    let holder = plain_client(db.url()).await;
    holder
        .batch_execute("SET application_name = 'deploy-42'")
        .await
        .expect("name");
    holder
        .query_one("SELECT pg_advisory_lock($1)", &[&migrator.lock_key()])
        .await
        .expect("hold the migration lock");
    let holder_pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .expect("pid")
        .get(0);

    let client = client(db.url()).await;
    let error = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("lock held elsewhere");
    match error.error() {
        RuntimeError::LockTimeout { holder, waited, .. } => {
            let holder = holder.as_ref().expect("holder found");
            assert_eq!(holder.pid, holder_pid);
            assert_eq!(holder.application_name, "deploy-42");
            assert!(holder.backend_start.is_some());
            assert!(*waited >= Duration::from_millis(300));
        }
        other => panic!("expected LockTimeout, got {other:?}"),
    }
    // The history table is only created under the lock, so it must not even exist.
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_class WHERE relname = 'schema_migrations'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn the_lock_is_released_after_a_failure() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(vec![tx(
        1,
        "broken",
        &["CREATE TABLE x (id int)", "SELECT 1/0"],
        &[],
    )]);
    let migrator = Migrator::new(&migrations, config()).expect("config");
    let error = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("division by zero");
    assert_eq!(error.error().sql_state(), Some(&SqlState::DIVISION_BY_ZERO));
    match error.error() {
        RuntimeError::Statement {
            location, attempts, ..
        } => {
            assert_eq!((location.line, location.column), (3, 1));
            assert_eq!(*attempts, 1);
        }
        other => panic!("expected Statement, got {other:?}"),
    }
    // Same session: a leaked session lock would still be held by it; another session must
    // be able to take it.
    let other = plain_client(db.url()).await;
    let taken: bool = other
        .query_one("SELECT pg_try_advisory_lock($1)", &[&migrator.lock_key()])
        .await
        .expect("try lock")
        .get(0);
    assert!(taken, "the failed run leaked the advisory lock");
    // All or nothing: the table of the failed transactional migration does not exist.
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM pg_class WHERE relname = 'x'").await,
        0
    );
}

/// Each transactional migration checks, inside its own transaction, that its server session
/// holds the migration lock (the last line of defence behind a transaction-mode pooler the
/// connect probe missed): a lost lock stops the run before the next migration's statements.
#[tokio::test]
async fn a_migration_whose_session_lost_the_lock_is_refused_inside_its_transaction() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(vec![
        tx(
            1,
            "lose_lock",
            &["SELECT pg_advisory_unlock_all()"],
            &["SELECT 1"],
        ),
        tx(
            2,
            "t",
            &["CREATE TABLE IF NOT EXISTS t (id int)"],
            &["DROP TABLE IF EXISTS t"],
        ),
    ]);
    let failed = Migrator::new(&migrations, config())
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect_err("the lock is gone");
    assert_eq!(failed.report.versions(), vec![1]);
    let message = failed.to_string();
    assert!(
        message.contains("does not hold the migration lock"),
        "{message}"
    );
    assert_eq!(history_versions(&client).await, vec![1]);
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_tables WHERE tablename = 't'"
        )
        .await,
        0
    );
}
