//! `DualWrite` and `reconcile` against a real PostgreSQL: the legacy write always commits,
//! failed modern writes are undone alone and queued in the caller's transaction, the flag
//! decides, lock waits are bounded, the caller's settings survive, and `reconcile` replays
//! the queue idempotently.

mod common;

use std::time::Duration;

use common::users::{FAIL_EVERY_THIRD, LEGACY, MODERN, one_table_set, setup};
use common::*;
use migrate_core::runtime::{
    CompareOptions, DualWrite, DualWriteConfig, Migrator, MigratorConfig, ModernWrite,
    ReconcileBacklog, RuntimeError, UpTo,
};
use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

fn dual(refresh: Duration) -> DualWrite {
    DualWrite::new(
        "users.email_normalized",
        2,
        DualWriteConfig {
            flag_refresh: refresh,
            ..DualWriteConfig::default()
        },
    )
    .unwrap()
}

/// One legacy write and its modern half, committed; the legacy error is the test's failure.
async fn write(client: &mut Client, dual: &DualWrite, id: i64, email: &str) -> ModernWrite {
    let transaction = client.transaction().await.unwrap();
    transaction.execute(LEGACY, &[&id, &email]).await.unwrap();
    let outcome = dual
        .modern(&transaction, &id.to_string(), MODERN, &[&id, &email])
        .await;
    transaction
        .commit()
        .await
        .expect("the legacy write commits");
    outcome
}

#[tokio::test]
async fn failed_modern_writes_are_undone_alone_queued_and_reconciled() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 30).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator
        .flags()
        .unwrap()
        .set(&admin, "users.email_normalized", true)
        .await
        .unwrap();
    admin.batch_execute(FAIL_EVERY_THIRD).await.unwrap();
    let dual = dual(Duration::from_secs(60));
    let mut app = plain_client(db.url()).await;
    dual.ensure_queue(&app).await.unwrap();

    for id in 1..=30i64 {
        let outcome = write(&mut app, &dual, id, &format!("New{id}@X")).await;
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
    // Every legacy write committed; the failed modern halves left the old value.
    assert_eq!(
        scalar_i64(&admin, "SELECT count(*) FROM users WHERE email LIKE 'New%'").await,
        30
    );
    assert_eq!(
        scalar_i64(
            &admin,
            "SELECT count(*) FROM users WHERE email_normalized IS DISTINCT FROM lower(email)"
        )
        .await,
        10
    );
    assert_eq!(
        migrator.reconcile_queue(&admin).await.unwrap(),
        vec![ReconcileBacklog {
            version: 2,
            waiting: 10
        }]
    );

    // The compare sees exactly those; reconcile replays them (the modern side is back).
    let report = migrator
        .compare(&admin, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(report.differing, 10);
    admin
        .batch_execute("DROP TRIGGER refuse_modern ON users")
        .await
        .unwrap();
    let replayed = migrator.reconcile(&admin, None).await.unwrap();
    assert_eq!(replayed.len(), 1);
    assert_eq!(
        (replayed[0].replayed, replayed[0].keys, replayed[0].changed),
        (10, 10, 10)
    );
    assert!(migrator.reconcile_queue(&admin).await.unwrap().is_empty());
    let report = migrator
        .compare(&admin, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert!(report.passed(), "{report:?}");

    // Idempotent: the same keys queued again change nothing.
    admin
        .batch_execute(
            "INSERT INTO schema_migrations_reconcile (version, key, flag) VALUES (2, '3', 'x'), (2, '3', 'x'), (2, '6', 'x')",
        )
        .await
        .unwrap();
    let replayed = migrator.reconcile(&admin, Some(2)).await.unwrap();
    assert_eq!(
        (replayed[0].replayed, replayed[0].keys, replayed[0].changed),
        (3, 2, 0)
    );
}

#[tokio::test]
async fn the_flag_decides_through_its_cache() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 5).await;
    let flags = Migrator::new(&migrations, config())
        .unwrap()
        .flags()
        .unwrap();
    let mut app = plain_client(db.url()).await;

    // Never set: off. A zero refresh reads the flag on every write.
    let fresh = dual(Duration::ZERO);
    assert_eq!(
        write(&mut app, &fresh, 1, "A@X").await,
        ModernWrite::FlagOff
    );
    assert_eq!(
        scalar_i64(
            &admin,
            "SELECT count(*) FROM users WHERE id = 1 AND email_normalized = 'u1@x'"
        )
        .await,
        1
    );
    flags
        .set(&admin, "users.email_normalized", true)
        .await
        .unwrap();
    assert_eq!(
        write(&mut app, &fresh, 1, "B@X").await,
        ModernWrite::Written { rows: 1 }
    );

    // A long refresh keeps the value it read: the flip reaches it only after the refresh.
    let cached = dual(Duration::from_secs(3600));
    assert_eq!(
        write(&mut app, &cached, 2, "C@X").await,
        ModernWrite::Written { rows: 1 }
    );
    flags
        .set(&admin, "users.email_normalized", false)
        .await
        .unwrap();
    assert_eq!(
        write(&mut app, &cached, 2, "D@X").await,
        ModernWrite::Written { rows: 1 }
    );
    assert_eq!(
        write(&mut app, &fresh, 2, "E@X").await,
        ModernWrite::FlagOff
    );
}

#[tokio::test]
async fn a_modern_write_waiting_on_a_lock_gives_up_and_the_caller_keeps_its_settings() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 10).await;
    Migrator::new(&migrations, config())
        .unwrap()
        .flags()
        .unwrap()
        .set(&admin, "users.email_normalized", true)
        .await
        .unwrap();
    admin
        .batch_execute("CREATE TABLE users_modern (id bigint PRIMARY KEY, email_normalized text); INSERT INTO users_modern SELECT id, email_normalized FROM users")
        .await
        .unwrap();
    let dual = dual(Duration::from_secs(60));
    let mut app = plain_client(db.url()).await;
    dual.ensure_queue(&app).await.unwrap();

    // Another session holds the modern row: the modern write waits lock_timeout (50 ms),
    // not until that session ends, and the legacy write commits while it still holds it.
    let mut blocker = plain_client(db.url()).await;
    let held = blocker.transaction().await.unwrap();
    held.execute("SELECT 1 FROM users_modern WHERE id = 7 FOR UPDATE", &[])
        .await
        .unwrap();

    let transaction = app.transaction().await.unwrap();
    transaction
        .batch_execute("SET LOCAL lock_timeout = '7s'; SET LOCAL statement_timeout = '9s'")
        .await
        .unwrap();
    transaction
        .execute(LEGACY, &[&7i64, &"Locked@X"])
        .await
        .unwrap();
    let outcome = dual
        .modern(
            &transaction,
            "7",
            "UPDATE users_modern SET email_normalized = lower($2) WHERE id = $1",
            &[&7i64, &"Locked@X"],
        )
        .await;
    assert!(
        matches!(&outcome, ModernWrite::Queued { error, sql_state: Some(state) }
            if error.contains("55P03") && *state == SqlState::LOCK_NOT_AVAILABLE),
        "{outcome:?}"
    );
    let settings = transaction
        .query_one(
            "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (settings.get::<_, String>(0), settings.get::<_, String>(1)),
        ("7s".into(), "9s".into())
    );
    // After a success too.
    let outcome = dual
        .modern(&transaction, "7", MODERN, &[&7i64, &"Locked@X"])
        .await;
    assert_eq!(outcome, ModernWrite::Written { rows: 1 });
    let settings = transaction
        .query_one(
            "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(
        (settings.get::<_, String>(0), settings.get::<_, String>(1)),
        ("7s".into(), "9s".into())
    );
    transaction
        .commit()
        .await
        .expect("the legacy write commits");
    assert_eq!(
        scalar_i64(
            &admin,
            "SELECT count(*) FROM users WHERE id = 7 AND email = 'Locked@X'"
        )
        .await,
        1
    );
    held.rollback().await.unwrap();
}

#[tokio::test]
async fn without_a_queue_table_the_legacy_write_still_commits() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 5).await;
    Migrator::new(&migrations, config())
        .unwrap()
        .flags()
        .unwrap()
        .set(&admin, "users.email_normalized", true)
        .await
        .unwrap();
    admin.batch_execute(FAIL_EVERY_THIRD).await.unwrap();
    let mut app = plain_client(db.url()).await;
    let outcome = write(&mut app, &dual(Duration::from_secs(60)), 3, "Lost@X").await;
    assert!(
        matches!(outcome, ModernWrite::NotQueued { .. }),
        "{outcome:?}"
    );
    assert_eq!(
        scalar_i64(&admin, "SELECT count(*) FROM users WHERE email = 'Lost@X'").await,
        1
    );
}

#[tokio::test]
async fn without_a_transaction_the_modern_write_runs_alone_and_a_failure_is_queued() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 6).await;
    Migrator::new(&migrations, config())
        .unwrap()
        .flags()
        .unwrap()
        .set(&admin, "users.email_normalized", true)
        .await
        .unwrap();
    admin.batch_execute(FAIL_EVERY_THIRD).await.unwrap();
    let dual = dual(Duration::from_secs(60));
    let mut app = plain_client(db.url()).await;
    dual.ensure_queue(&app).await.unwrap();
    for id in [2i64, 3] {
        app.execute(LEGACY, &[&id, &"Auto@X"]).await.unwrap();
        let outcome = dual
            .modern_autocommit(&mut app, &id.to_string(), MODERN, &[&id, &"Auto@X"])
            .await;
        if id == 3 {
            assert!(matches!(outcome, ModernWrite::Queued { .. }), "{outcome:?}");
        } else {
            assert_eq!(outcome, ModernWrite::Written { rows: 1 });
        }
    }
    assert_eq!(
        scalar_i64(
            &admin,
            "SELECT count(*) FROM schema_migrations_reconcile WHERE key = '3'"
        )
        .await,
        1
    );
    assert_eq!(
        scalar_i64(
            &admin,
            "SELECT count(*) FROM users WHERE email_normalized = 'auto@x'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_migrator_gives_its_history_table_to_the_dual_write_and_checks_the_version() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = one_table_set(dir.path());
    let config = MigratorConfig {
        history_table: "ops.deploy_history".into(),
        ..config()
    };
    let migrator = Migrator::new(&migrations, config).unwrap();
    let admin = client(db.url()).await;
    migrator.up(&admin, UpTo::All).await.unwrap();
    admin
        .batch_execute("INSERT INTO users (id, email) VALUES (1, 'A@X')")
        .await
        .unwrap();
    migrator
        .flags()
        .unwrap()
        .set(&admin, "users.email_normalized", true)
        .await
        .unwrap();

    // The config's history table (the default, `public.schema_migrations`) is not used.
    let dual = migrator
        .dual_write("users.email_normalized", 2, DualWriteConfig::default())
        .unwrap();
    let mut app = plain_client(db.url()).await;
    assert_eq!(
        write(&mut app, &dual, 1, "B@X").await,
        ModernWrite::Written { rows: 1 }
    );

    // Versions whose failures reconcile could never replay are refused at construction.
    for version in [42, 1] {
        let error = migrator
            .dual_write(
                "users.email_normalized",
                version,
                DualWriteConfig::default(),
            )
            .expect_err("no compare to replay with");
        assert!(
            matches!(&error, RuntimeError::Compare { at, .. } if at.version == version),
            "{error}"
        );
    }
}

#[tokio::test]
async fn a_missing_flags_table_is_said_once_not_read_as_off_silently() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 3).await;
    Migrator::new(&migrations, config())
        .unwrap()
        .flags()
        .unwrap()
        .set(&admin, "users.email_normalized", true)
        .await
        .unwrap();
    // A typo in the history table: its flags table does not exist.
    let typo = DualWrite::new(
        "users.email_normalized",
        2,
        DualWriteConfig {
            history_table: "public.schema_migration".into(),
            flag_refresh: Duration::ZERO,
            ..DualWriteConfig::default()
        },
    )
    .unwrap();
    let mut app = plain_client(db.url()).await;
    let (log, guard) = log::capture(tracing::Level::WARN);
    for id in 1..=3 {
        assert_eq!(
            write(&mut app, &typo, id, "T@X").await,
            ModernWrite::FlagOff
        );
    }
    drop(guard);
    assert_eq!(
        log.lines_with("the flags table does not exist"),
        1,
        "{}",
        log.text()
    );
    assert_eq!(log.lines_with("schema_migration_flags"), 1);
}

#[tokio::test]
async fn a_flip_by_this_process_is_read_at_once_after_expiring_the_cache() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 2).await;
    let flags = Migrator::new(&migrations, config())
        .unwrap()
        .flags()
        .unwrap();
    let dual = dual(Duration::from_secs(3600));
    let mut app = plain_client(db.url()).await;
    assert_eq!(write(&mut app, &dual, 1, "A@X").await, ModernWrite::FlagOff);
    flags
        .set(&admin, "users.email_normalized", true)
        .await
        .unwrap();
    // Cached for an hour ...
    assert_eq!(write(&mut app, &dual, 1, "B@X").await, ModernWrite::FlagOff);
    // ... unless this process says it flipped it.
    dual.expire_cached_flag();
    assert_eq!(
        write(&mut app, &dual, 1, "C@X").await,
        ModernWrite::Written { rows: 1 }
    );
    flags
        .set(&admin, "users.email_normalized", false)
        .await
        .unwrap();
    dual.expire_cached_flag();
    assert_eq!(write(&mut app, &dual, 2, "D@X").await, ModernWrite::FlagOff);
}

#[tokio::test]
async fn reconcile_of_a_version_without_a_queue_mapping_is_refused() {
    let db = database();
    let (migrations, _dir, admin) = setup(db.url(), 1).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    // Not in the set; in the set without a compare.
    for version in [42, 1] {
        let error = migrator
            .reconcile(&admin, Some(version))
            .await
            .expect_err("nothing to replay with");
        assert!(
            matches!(&error, RuntimeError::Compare { at, .. } if at.version == version),
            "{error}"
        );
    }
    // The one with a compare is replayed (an empty queue).
    let reports = migrator.reconcile(&admin, Some(2)).await.unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].replayed, 0);
}

#[tokio::test]
async fn a_dual_write_runs_on_a_spawned_task() {
    let db = database();
    let (_migrations, _dir, _admin) = setup(db.url(), 1).await;
    // A web handler's future must be Send: this does not compile otherwise.
    let dual = std::sync::Arc::new(dual(Duration::ZERO));
    let url = db.url().to_owned();
    let outcome = tokio::spawn(async move {
        let mut app = plain_client(&url).await;
        write(&mut app, &dual, 1, "Spawned@X").await
    })
    .await
    .unwrap();
    assert_eq!(outcome, ModernWrite::FlagOff);
}
