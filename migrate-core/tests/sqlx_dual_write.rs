//! `DualWrite::modern_sqlx` against a real PostgreSQL, through a sqlx pool: the same
//! protocol as the tokio-postgres one (the legacy write always commits, a failed modern
//! write is undone alone and queued in the caller's transaction, lock waits are bounded,
//! the caller's settings survive), with the migrator on its own connection from the same
//! URL. Built with `--features sqlx` only.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::users::{self, FAIL_EVERY_THIRD, LEGACY, MODERN};
use common::*;
use migrate_core::Migrations;
use migrate_core::runtime::{DualWrite, DualWriteConfig, Migrator, ModernWrite, ReconcileBacklog};
use sqlx::PgPool;
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

/// The one-URL pattern: the migrator and the queue on a tokio-postgres connection of their
/// own, the application on a sqlx pool of the same database.
async fn setup(url: &str, rows: i64, flag_on: bool) -> (Migrations, tempfile::TempDir, Client) {
    let (migrations, dir, admin) = users::setup(url, rows).await;
    if flag_on {
        Migrator::new(&migrations, config())
            .unwrap()
            .flags()
            .unwrap()
            .set(&admin, "users.email_normalized", true)
            .await
            .unwrap();
    }
    (migrations, dir, admin)
}

fn dual(migrations: &Migrations) -> DualWrite {
    let migrator = Migrator::new(migrations, config()).unwrap();
    migrator
        .dual_write(
            "users.email_normalized",
            2,
            DualWriteConfig {
                flag_refresh: Duration::from_secs(60),
                ..DualWriteConfig::default()
            },
        )
        .unwrap()
}

/// One legacy write and its modern half in one sqlx transaction, committed.
async fn write(pool: &PgPool, dual: &DualWrite, id: i64, email: &str) -> ModernWrite {
    let mut transaction = pool.begin().await.unwrap();
    sqlx::query(LEGACY)
        .bind(id)
        .bind(email)
        .execute(&mut *transaction)
        .await
        .unwrap();
    let modern = sqlx::query(MODERN).bind(id).bind(email.to_owned());
    let outcome = dual
        .modern_sqlx(&mut transaction, &id.to_string(), modern)
        .await;
    transaction
        .commit()
        .await
        .expect("the legacy write commits");
    outcome
}

#[tokio::test]
async fn failed_modern_writes_are_undone_alone_and_queued_in_the_sqlx_transaction() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 12, true).await;
    admin.batch_execute(FAIL_EVERY_THIRD).await.unwrap();
    let dual = Arc::new(dual(&migrations));
    dual.ensure_queue(&admin).await.unwrap();
    let pool = PgPool::connect(db.url()).await.unwrap();

    for id in 1..=12i64 {
        // On a task of its own: the future is Send, as a web handler's must be.
        let (pool, dual) = (pool.clone(), Arc::clone(&dual));
        let outcome =
            tokio::spawn(async move { write(&pool, &dual, id, &format!("New{id}@X")).await })
                .await
                .unwrap();
        if id % 3 == 0 {
            assert!(
                matches!(&outcome, ModernWrite::Queued { error, sql_state: Some(state) }
                    if error.contains("modern side down") && *state == SqlState::RAISE_EXCEPTION),
                "{id}: {outcome:?}"
            );
        } else {
            assert_eq!(outcome, ModernWrite::Written { rows: 1 }, "{id}");
        }
    }
    assert_eq!(
        scalar_i64(&admin, "SELECT count(*) FROM users WHERE email LIKE 'New%'").await,
        12
    );
    assert_eq!(
        scalar_i64(
            &admin,
            "SELECT count(*) FROM users WHERE email_normalized IS DISTINCT FROM lower(email)"
        )
        .await,
        4
    );
    let migrator = Migrator::new(&migrations, config()).unwrap();
    assert_eq!(
        migrator.reconcile_queue(&admin).await.unwrap(),
        [ReconcileBacklog {
            version: 2,
            waiting: 4
        }]
    );
    // Reconcile replays them once the modern side is back.
    admin
        .batch_execute("DROP TRIGGER refuse_modern ON users")
        .await
        .unwrap();
    let replayed = migrator.reconcile(&admin, Some(2)).await.unwrap();
    assert_eq!((replayed[0].replayed, replayed[0].changed), (4, 4));
}

#[tokio::test]
async fn a_sqlx_modern_write_waiting_on_a_lock_gives_up_and_the_caller_keeps_its_settings() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 3, true).await;
    let dual = dual(&migrations);
    dual.ensure_queue(&admin).await.unwrap();
    let pool = PgPool::connect(db.url()).await.unwrap();

    // Another session holds row 2 of the modern side.
    let mut blocker = plain_client(db.url()).await;
    let held = blocker.transaction().await.unwrap();
    held.execute("SELECT 1 FROM users WHERE id = 2 FOR UPDATE", &[])
        .await
        .unwrap();

    let mut transaction = pool.begin().await.unwrap();
    sqlx::raw_sql("SET LOCAL lock_timeout = '7s'; SET LOCAL statement_timeout = '9s'")
        .execute(&mut *transaction)
        .await
        .unwrap();
    sqlx::query("UPDATE users SET email = 'legacy' WHERE id = 1")
        .execute(&mut *transaction)
        .await
        .unwrap();
    let modern = sqlx::query(MODERN).bind(2_i64).bind("Locked@X");
    let outcome = dual.modern_sqlx(&mut transaction, "2", modern).await;
    assert!(
        matches!(&outcome, ModernWrite::Queued { sql_state: Some(state), .. }
            if *state == SqlState::LOCK_NOT_AVAILABLE),
        "{outcome:?}"
    );
    let settings: (String, String) = sqlx::query_as(
        "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')",
    )
    .fetch_one(&mut *transaction)
    .await
    .unwrap();
    assert_eq!(settings, ("7s".to_owned(), "9s".to_owned()));
    // After a success too.
    let modern = sqlx::query(MODERN).bind(3_i64).bind("Free@X");
    assert_eq!(
        dual.modern_sqlx(&mut transaction, "3", modern).await,
        ModernWrite::Written { rows: 1 }
    );
    let settings: (String, String) = sqlx::query_as(
        "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')",
    )
    .fetch_one(&mut *transaction)
    .await
    .unwrap();
    assert_eq!(settings, ("7s".to_owned(), "9s".to_owned()));
    transaction
        .commit()
        .await
        .expect("the legacy write commits");
    held.rollback().await.unwrap();

    assert_eq!(
        scalar_i64(&admin, "SELECT count(*) FROM users WHERE email = 'legacy'").await,
        1
    );
    assert_eq!(
        scalar_i64(
            &admin,
            "SELECT count(*) FROM users WHERE email_normalized = 'free@x'"
        )
        .await,
        1
    );
    let queued = scalar_i64(
        &admin,
        "SELECT count(*) FROM schema_migrations_reconcile WHERE key = '2' AND error LIKE '%55P03%'",
    )
    .await;
    assert_eq!(queued, 1);
}

#[tokio::test]
async fn with_the_flag_off_a_sqlx_modern_write_writes_nothing() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 2, false).await;
    let dual = dual(&migrations);
    let pool = PgPool::connect(db.url()).await.unwrap();
    assert_eq!(write(&pool, &dual, 1, "Off@X").await, ModernWrite::FlagOff);
    assert_eq!(
        scalar_i64(
            &admin,
            "SELECT count(*) FROM users WHERE email = 'Off@X' AND email_normalized = 'u1@x'"
        )
        .await,
        1
    );
}
