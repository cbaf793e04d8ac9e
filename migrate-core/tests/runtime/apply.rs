//! Applying a set: a full run and a second one with nothing to do, `UpTo`, and the client
//! handed back with its own session settings.

use crate::common::*;
use crate::fixtures::*;
use migrate_core::runtime::{MigrationState, Migrator, UpTo};

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
