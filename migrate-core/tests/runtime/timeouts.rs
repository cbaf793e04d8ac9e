//! Bounds on waiting: `lock_timeout` retries and what readers see meanwhile, the client's
//! network bound on a server that stops answering, and settings that would turn a bound off.

use std::time::{Duration, Instant};

use crate::common::*;
use crate::fixtures::*;
use migrate_core::runtime::{BackfillControl, Migrator, MigratorConfig, RuntimeError, UpTo};
use tokio_postgres::error::SqlState;

/// Runs `SELECT` on `t` in a loop until `enough` says stop; returns each query's latency.
async fn sample_reads(
    reader: &tokio_postgres::Client,
    deadline: Instant,
    mut enough: impl FnMut(&[Duration]) -> bool,
) -> Vec<Duration> {
    let mut latencies = Vec::new();
    while !enough(&latencies) {
        assert!(Instant::now() < deadline, "reader gave up: {latencies:?}");
        let started = Instant::now();
        reader
            .query_one("SELECT count(*) FROM t", &[])
            .await
            .expect("reader SELECT");
        latencies.push(started.elapsed());
    }
    latencies
}

/// Blocked episodes: runs of slow reads separated by fast ones. Each one is a migration
/// attempt queued for ACCESS EXCLUSIVE ahead of the reader.
fn blocked_episodes(latencies: &[Duration], slow: Duration) -> usize {
    let mut episodes = 0;
    let mut in_episode = false;
    for latency in latencies {
        let is_slow = *latency >= slow;
        if is_slow && !in_episode {
            episodes += 1;
        }
        in_episode = is_slow;
    }
    episodes
}

#[tokio::test]
async fn lock_timeout_is_retried_while_readers_wait_at_most_lock_timeout() {
    let (db, blocker, migrations) = lock_timeout_fixture().await;
    let lock_timeout = Duration::from_millis(300);
    let config = MigratorConfig {
        lock_timeout,
        lock_retries: 8,
        retry_backoff: Duration::from_millis(100),
        ..config()
    };
    // A long transaction holding ACCESS SHARE: the ALTER's ACCESS EXCLUSIVE waits for it, and
    // every later reader queues behind the ALTER (https://www.postgresql.org/docs/15/explicit-locking.html).
    blocker
        .batch_execute("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE")
        .await
        .expect("blocker");

    let migrator_client = client(db.url()).await;
    let reader = plain_client(db.url()).await;
    let migrator = Migrator::new(&migrations, config).expect("config");
    let migration = migrator.up(&migrator_client, UpTo::All);
    let observe = async {
        let latencies = sample_reads(
            &reader,
            Instant::now() + Duration::from_secs(30),
            |latencies| blocked_episodes(latencies, lock_timeout / 2) >= 2,
        )
        .await;
        blocker.batch_execute("COMMIT").await.expect("release");
        latencies
    };
    let (result, latencies) = tokio::join!(migration, observe);

    let report = result.expect("the migration succeeds once the blocker is gone");
    assert!(report.applied[0].attempts >= 3, "{report}");
    // The reported duration covers every attempt: each failed one waited lock_timeout.
    let failed_attempts = report.applied[0].attempts - 1;
    assert!(
        report.applied[0].duration >= lock_timeout * failed_attempts,
        "{report}"
    );
    let worst = latencies.iter().max().copied().unwrap_or_default();
    assert!(
        worst < lock_timeout + Duration::from_secs(1),
        "a reader waited {worst:?}"
    );
    assert_eq!(
        scalar_i64(
            &reader,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'note'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn lock_timeout_retries_run_out_with_a_typed_error() {
    let (db, blocker, migrations) = lock_timeout_fixture().await;
    let config = MigratorConfig {
        lock_timeout: Duration::from_millis(100),
        lock_retries: 2,
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
        .expect_err("the blocker never lets go");
    let blocker_pid: i32 = blocker
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    match error.error() {
        RuntimeError::LockRetriesExhausted {
            location,
            attempts,
            blockers,
            ..
        } => {
            assert_eq!(*attempts, 3);
            assert_eq!(location.version, 1);
            // The session holding the lock is named, with its transaction's start.
            assert_eq!(
                blockers.iter().map(|b| b.pid).collect::<Vec<_>>(),
                [blocker_pid]
            );
            assert!(blockers[0].xact_start.is_some());
        }
        other => panic!("expected LockRetriesExhausted, got {other:?}"),
    }
    assert!(
        error.to_string().contains(&format!("pid {blocker_pid}")),
        "{error}"
    );
    assert!(error.error().is_transient());
    assert_eq!(
        error.error().sql_state(),
        Some(&SqlState::LOCK_NOT_AVAILABLE)
    );
    blocker.batch_execute("COMMIT").await.expect("release");
    assert!(history_versions(&client).await.is_empty());
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 't'::regclass AND attname = 'note'"
        )
        .await,
        0
    );
}

/// Sends SIGSTOP (or SIGCONT) to a backend: the server process stops answering while its
/// TCP connection stays open, the kernel acknowledging every packet.
fn signal_backend(signal: &str, pid: i32) {
    let status = std::process::Command::new("kill")
        .args([signal, &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill {signal} {pid}");
}

/// A server that stops answering mid-session: `statement_timeout` cannot help (the server
/// is what stopped), so the client's own bound ends `status` and `up` with a clear error.
#[tokio::test]
async fn a_server_that_stops_answering_fails_the_run_instead_of_hanging_it() {
    let db = database();
    let migrations = set(vec![tx(
        1,
        "a",
        &["CREATE TABLE IF NOT EXISTS a (id int)"],
        &["DROP TABLE IF EXISTS a"],
    )]);
    let bounded = MigratorConfig {
        network_timeout: Duration::from_secs(1),
        ..config()
    };
    let migrator = Migrator::new(&migrations, bounded).unwrap();
    for operation in ["status", "up"] {
        let client = client(db.url()).await;
        let pid: i32 = client
            .query_one("SELECT pg_backend_pid()", &[])
            .await
            .unwrap()
            .get(0);
        signal_backend("-STOP", pid);
        let started = Instant::now();
        let error = match operation {
            "status" => migrator.status(&client).await.expect_err("no answer"),
            _ => migrator
                .up(&client, UpTo::All)
                .await
                .expect_err("no answer")
                .into_error(),
        };
        let waited = started.elapsed();
        signal_backend("-CONT", pid);
        assert!(
            matches!(error, RuntimeError::NoAnswer { .. }),
            "{operation}: {error:?}"
        );
        assert!(
            error
                .to_string()
                .contains("no answer from PostgreSQL within"),
            "{error}"
        );
        assert!(
            waited < Duration::from_secs(10),
            "{operation} waited {waited:?}"
        );
    }
    // Nothing was applied.
    let observer = plain_client(db.url()).await;
    assert_eq!(
        scalar_i64(
            &observer,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'a'"
        )
        .await,
        0
    );
}

#[test]
fn settings_that_would_turn_a_bound_off_are_refused() {
    let migrations = set(Vec::new());
    for (config, setting) in [
        (
            MigratorConfig {
                lock_timeout: Duration::ZERO,
                ..config()
            },
            "lock_timeout",
        ),
        (
            MigratorConfig {
                lock_timeout: Duration::from_micros(500),
                ..config()
            },
            "lock_timeout",
        ),
        (
            MigratorConfig {
                lock_timeout: Duration::from_secs(3600),
                ..config()
            },
            "lock_timeout",
        ),
        (
            MigratorConfig {
                statement_timeout: Duration::from_micros(10),
                ..config()
            },
            "statement_timeout",
        ),
        (
            MigratorConfig {
                backfill: BackfillControl {
                    max_cpu_percent: 0,
                    ..BackfillControl::default()
                },
                ..config()
            },
            "backfill_max_cpu_percent",
        ),
        (
            MigratorConfig {
                backfill: BackfillControl {
                    max_cpu_percent: 101,
                    ..BackfillControl::default()
                },
                ..config()
            },
            "backfill_max_cpu_percent",
        ),
    ] {
        match Migrator::new(&migrations, config) {
            Err(RuntimeError::InvalidSetting { setting: found, .. }) => {
                assert_eq!(found, setting)
            }
            other => panic!("expected InvalidSetting for {setting}, got {other:?}"),
        }
    }
    let disabled = MigratorConfig {
        statement_timeout: Duration::ZERO,
        ..config()
    };
    assert!(Migrator::new(&migrations, disabled).is_ok());
}
