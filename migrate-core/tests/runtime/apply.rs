//! Applying a set: a full run and a second one with nothing to do, `UpTo`, and the client
//! handed back with its own session settings.

use crate::common::*;
use crate::fixtures::*;
use migrate_core::runtime::{MigrationState, Migrator, RuntimeError, UpTo};
use tokio_postgres::error::SqlState;

#[tokio::test]
async fn applies_a_set_and_a_second_run_has_nothing_to_do() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    let migrator = Migrator::new(&migrations, config()).expect("config");

    let plan = migrator.plan(&client, UpTo::All).await.expect("plan");
    assert_eq!(plan.migrations.len(), 3);

    let report = migrator.up(&client, UpTo::All).await.expect("up");
    assert_eq!(report.versions(), vec![1, 2, 3]);
    assert!(report.applied.iter().all(|m| m.attempts == 1));
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);

    let row = client
        .query_one(
            "SELECT checksum, executed_by = current_user, duration_ms >= 0, phase \
             FROM schema_migrations WHERE version = 2",
            &[],
        )
        .await
        .expect("history row");
    assert_eq!(
        row.get::<_, String>(0),
        migrations.get(2).unwrap().checksum.to_hex()
    );
    assert!(row.get::<_, bool>(1));
    assert!(row.get::<_, bool>(2));
    assert_eq!(row.get::<_, String>(3), "expand");

    let again = migrator.up(&client, UpTo::All).await.expect("second up");
    assert!(again.nothing_to_do());
    assert!(again.to_string().contains("nothing to do"), "{again}");
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);

    let status = migrator.status(&client).await.expect("status");
    assert_eq!(status.count(MigrationState::Applied), 3);
    assert!(
        migrator
            .plan(&client, UpTo::All)
            .await
            .expect("plan")
            .migrations
            .is_empty()
    );
}

#[tokio::test]
async fn up_to_a_version_stops_there() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    let migrator = Migrator::new(&migrations, config()).expect("config");
    let report = migrator.up(&client, UpTo::Version(2)).await.expect("up");
    assert_eq!(report.versions(), vec![1, 2]);
    let status = migrator.status(&client).await.expect("status");
    assert_eq!(status.count(MigrationState::Pending), 1);
}

/// A client handed to `up` (e.g. from a pool) goes back with its own session settings, also
/// after a failure.
#[tokio::test]
async fn up_and_down_give_the_client_back_with_its_own_settings() {
    let db = database();
    let client = plain_client(db.url()).await;
    client
        .batch_execute(
            "SET application_name = 'pooled-app'; SET lock_timeout = '7s'; \
             SET statement_timeout = '42s'",
        )
        .await
        .unwrap();
    async fn read(client: &tokio_postgres::Client) -> (String, String, String) {
        let row = client
            .query_one(
                "SELECT current_setting('application_name'), current_setting('lock_timeout'), \
                 current_setting('statement_timeout')",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    }
    let expected = ("pooled-app".to_owned(), "7s".to_owned(), "42s".to_owned());
    let migrations = set(basic_set());
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::All).await.expect("up");
    assert_eq!(read(&client).await, expected);
    migrator.down(&client, 0).await.expect("down");
    assert_eq!(read(&client).await, expected);

    let failing = set(vec![tx(
        1,
        "bad",
        &["SELECT no_such_function()"],
        &["SELECT 1"],
    )]);
    Migrator::new(&failing, config())
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect_err("fails");
    assert_eq!(read(&client).await, expected);
}

/// An error through `?` in `main` (Debug) and through `{}` reads as one clear message, and a
/// reporter walking `source()` does not print it twice.
#[tokio::test]
async fn errors_read_as_one_message_through_debug_display_and_the_chain() {
    let db = database();
    let client = client(db.url()).await;
    let failing = set(vec![tx(
        1,
        "bad",
        &["SELECT no_such_function()"],
        &["SELECT 1"],
    )]);
    let failed = Migrator::new(&failing, config())
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect_err("fails");
    let display = failed.to_string();
    assert_eq!(format!("{failed:?}"), display);
    assert!(display.contains("0001_bad.sql:2:1"), "{display}");
    assert!(display.contains("no_such_function"), "{display}");
    assert!(display.contains("SQLSTATE 42883"), "{display}");
    assert!(!display.contains("DbError"), "{display}");
    assert!(std::error::Error::source(&failed).is_none());
    assert!(std::error::Error::source(failed.error()).is_none());
    assert_eq!(format!("{:?}", failed.error()), failed.error().to_string());
    assert!(!failed.error().is_transient());
    assert_eq!(
        failed.report.to_string(),
        "nothing was done before the failure"
    );
}

/// A migration of more statements than are pipelined at once (the executor keeps a bounded
/// window in flight so a big file is not held twice): all of them run, in order, in one
/// transaction.
#[tokio::test]
async fn a_migration_of_many_statements_runs_them_all_in_order() {
    let db = database();
    let client = client(db.url()).await;
    let mut up = vec!["CREATE TABLE seq_rows (n int PRIMARY KEY, after int)".to_owned()];
    // Each row records the row count before it: out-of-order execution would show.
    up.extend(
        (0..1500)
            .map(|n| format!("INSERT INTO seq_rows (n, after) SELECT {n}, count(*) FROM seq_rows")),
    );
    let up: Vec<&str> = up.iter().map(String::as_str).collect();
    let migrations = set(vec![tx(1, "many", &up, &["DROP TABLE seq_rows"])]);
    let migrator = Migrator::new(&migrations, config()).expect("config");
    migrator.up(&client, UpTo::All).await.expect("up");
    let out_of_order: i64 = client
        .query_one("SELECT count(*) FROM seq_rows WHERE n <> after", &[])
        .await
        .unwrap()
        .get(0);
    let rows: i64 = client
        .query_one("SELECT count(*) FROM seq_rows", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!((rows, out_of_order), (1500, 0));
    assert_eq!(history_versions(&client).await, vec![1]);
}

/// A statement that fails far past the first pipelined window is the one named, and nothing
/// of the migration, before or after it, stays: the statements after it are not sent, the
/// transaction is rolled back.
#[tokio::test]
async fn a_failure_deep_in_a_long_migration_names_its_statement_and_keeps_nothing() {
    let db = database();
    let client = client(db.url()).await;
    let mut up = vec!["CREATE TABLE deep_rows (n int PRIMARY KEY)".to_owned()];
    up.extend((0..1500).map(|n| format!("INSERT INTO deep_rows VALUES ({n})")));
    // Statement 1,001 of the up part (file line 1,002: line 1 is `-- migrate:up`).
    up[1000] = "INSERT INTO deep_rows VALUES (1 / 0)".to_owned();
    let up: Vec<&str> = up.iter().map(String::as_str).collect();
    let migrations = set(vec![
        tx(1, "deep", &up, &["DROP TABLE deep_rows"]),
        tx(
            2,
            "after",
            &["CREATE TABLE after_deep (id int)"],
            &["DROP TABLE after_deep"],
        ),
    ]);
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
            assert_eq!(
                (location.version, location.line, location.column),
                (1, 1002, 1)
            );
            assert_eq!(*attempts, 1);
        }
        other => panic!("expected Statement, got {other:?}"),
    }
    assert!(error.report.versions().is_empty());
    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname IN ('deep_rows', 'after_deep')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(tables, 0);
    assert!(history_versions(&client).await.is_empty());
    // The session is usable: no transaction left open, no reply of an unsent statement
    // pending.
    let one: i32 = client.query_one("SELECT 1", &[]).await.unwrap().get(0);
    assert_eq!(one, 1);
}
