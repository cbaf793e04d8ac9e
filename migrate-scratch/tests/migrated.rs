//! [`TestDatabase`]: each test gets a database of its own with the example set applied
//! through the runtime, on the binary's one shared cluster, dropped at the end.

use migrate_core::runtime::{GateFailure, MigratorConfig, RuntimeError};
use migrate_scratch::{ScratchCluster, TestDatabase, TestDatabaseError};

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");

/// Whether the shared cluster still has a database of this name.
fn exists(name: &str) -> bool {
    let cluster = ScratchCluster::shared().expect("shared cluster");
    let count = cluster
        .psql(
            "postgres",
            &format!("SELECT count(*) FROM pg_database WHERE datname = '{name}'"),
        )
        .expect("psql");
    count.trim() == "1"
}

#[tokio::test]
async fn each_test_database_has_the_set_applied_and_is_dropped_after() {
    let first = TestDatabase::migrated(&MIGRATIONS).await.expect("migrated");
    let second = TestDatabase::migrated(&MIGRATIONS).await.expect("migrated");
    assert_ne!(first.name(), second.name());
    assert_eq!(first.report().applied.len(), MIGRATIONS.len());
    let applied: i64 = first
        .client()
        .query_one("SELECT count(*) FROM schema_migrations", &[])
        .await
        .expect("history")
        .get(0);
    assert_eq!(applied, MIGRATIONS.len() as i64);
    // The tables are there, and rows written in one database are not in the other.
    first
        .client()
        .execute("INSERT INTO users (email) VALUES ('a@example.com')", &[])
        .await
        .expect("insert");
    let users: i64 = second
        .client()
        .query_one("SELECT count(*) FROM users", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(users, 0);
    // Same cluster, same port: one per test binary.
    assert_eq!(
        first.url().split('/').nth(2),
        second.url().split('/').nth(2),
        "{} {}",
        first.url(),
        second.url()
    );

    let name = first.name().to_owned();
    assert!(exists(&name));
    drop(first);
    assert!(!exists(&name), "{name} outlived its TestDatabase");
}

#[tokio::test]
async fn the_services_settings_apply_and_a_refused_one_is_an_error() {
    let config = MigratorConfig {
        history_table: "orders_history".into(),
        ..MigratorConfig::default()
    };
    let db = TestDatabase::migrated_with(&MIGRATIONS, config)
        .await
        .expect("migrated");
    let applied: i64 = db
        .client()
        .query_one("SELECT count(*) FROM orders_history", &[])
        .await
        .expect("the configured history table")
        .get(0);
    assert_eq!(applied, MIGRATIONS.len() as i64);

    let refused = TestDatabase::migrated_with(
        &MIGRATIONS,
        MigratorConfig {
            lock_timeout: std::time::Duration::ZERO,
            ..MigratorConfig::default()
        },
    )
    .await
    .expect_err("lock_timeout 0 is refused");
    assert!(
        matches!(refused, TestDatabaseError::Settings(_)),
        "{refused:?}"
    );

    // A contract gate refusing, as production would with an hour of stabilisation.
    let gated = TestDatabase::migrated_with(
        &MIGRATIONS,
        MigratorConfig {
            contract_stabilisation: std::time::Duration::from_secs(3600),
            ..MigratorConfig::default()
        },
    )
    .await
    .expect_err("the contract waits an hour");
    let TestDatabaseError::Up(failed) = gated else {
        panic!("{gated:?}");
    };
    assert!(
        matches!(
            &failed.error,
            RuntimeError::ContractGate { failure, .. }
                if matches!(**failure, GateFailure::Stabilising { .. })
        ),
        "{failed}"
    );
    assert_eq!(failed.report.applied.len(), MIGRATIONS.len() - 1);
}
