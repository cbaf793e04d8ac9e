//! The backfill controller against a real PostgreSQL: it grows the batch on an idle server,
//! shrinks it when a batch is slowed by another session's lock, pauses while the operator's
//! pause is set and while a streaming replica does not replay, resumes after, and the
//! backfill still ends verified with every row updated exactly once. Every key type a
//! backfill is commonly keyed by runs under the controller.
//!
//! The tests synchronise on what the runtime reports (the progress hook's `BackfillPace`
//! events, which are also what it stores in the progress table) and on what PostgreSQL
//! shows (`pg_stat_activity`), never on sleeps.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use migrate_core::Migrations;
use migrate_core::runtime::{
    AutovacuumPause, BackfillControl, BackfillStatus, Migrator, MigratorConfig, PaceState,
    PauseReason, Pressure, ProgressEvent, UpTo,
};
use tokio::sync::mpsc;
use tokio_postgres::Client;

/// A table keyed by `key_type` whose `v2` the backfill fills; a trigger counts the updates
/// of each row in `touched`.
fn write_set(dir: &Path, key_type: &str, directive_extra: &str) -> Migrations {
    std::fs::write(
        dir.join("0001_items.sql"),
        format!(
            "CREATE TABLE IF NOT EXISTS items (id {key_type} PRIMARY KEY, n integer NOT NULL, \
             v2 integer, touched integer NOT NULL DEFAULT 0, flush_after text);\n\
             CREATE OR REPLACE FUNCTION count_touch() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN NEW.touched := OLD.touched + 1; \
             NEW.flush_after := current_setting('backend_flush_after'); RETURN NEW; END $$;\n\
             CREATE TRIGGER count_touch BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION count_touch();\n\
             -- migrate:down\nDROP TABLE IF EXISTS items;\nDROP FUNCTION IF EXISTS count_touch();\n"
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_items_v2.backfill.sql"),
        format!(
            "-- migrate:backfill table=items key=id{directive_extra}\n\
             UPDATE items SET v2 = n * 2 WHERE v2 IS NULL;\n-- migrate:down\n"
        ),
    )
    .unwrap();
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    assert!(
        !checked.diagnostics.iter().any(|d| d.is_error()),
        "{:?}",
        checked.diagnostics
    );
    checked.migrations(&dir.to_string_lossy())
}

async fn fill(client: &Client, key_expr: &str, rows: u32) {
    client
        .batch_execute(&format!(
            "INSERT INTO items (id, n) SELECT {key_expr}, g FROM generate_series(1, {rows}) g; \
             ANALYZE items"
        ))
        .await
        .unwrap();
}

/// Every row updated exactly once, by a session that writes its pages out as it goes
/// (`backend_flush_after`, the migration's session and the workers' alike), and the backfill
/// verified.
async fn assert_done_once(client: &Client, rows: i64) {
    let row = client
        .query_one(
            "SELECT count(*) FILTER (WHERE touched = 1 AND v2 = n * 2 \
                                     AND flush_after = '256kB'), \
                    count(*), max(touched) \
             FROM items",
            &[],
        )
        .await
        .unwrap();
    let (once, all, most): (i64, i64, i32) = (row.get(0), row.get(1), row.get(2));
    assert_eq!((once, all, most), (rows, rows, 1));
    let stored = client
        .query_one(
            "SELECT rows_done, verified_at IS NOT NULL, state FROM schema_migrations_backfill \
             WHERE version = 2",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(stored.get::<_, i64>(0), rows);
    assert!(stored.get::<_, bool>(1), "verified");
    assert_eq!(stored.get::<_, Option<String>>(2).as_deref(), Some("done"));
}

/// The backfill's pace events, in order.
struct Paces(mpsc::UnboundedReceiver<BackfillStatus>);

impl Paces {
    /// The next event satisfying `wanted`; panics after 60 s or when the run ended.
    async fn until(
        &mut self,
        what: &str,
        wanted: impl Fn(&BackfillStatus) -> bool,
    ) -> BackfillStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.0.recv()).await {
                Ok(Some(status)) if wanted(&status) => return status,
                Ok(Some(status)) => last = Some(status),
                Ok(None) => panic!("the backfill ended before {what}; last: {last:?}"),
                Err(_) => panic!("timed out waiting until {what}; last: {last:?}"),
            }
        }
    }
}

fn migrator_with_paces(migrations: &Migrations, config: MigratorConfig) -> (Migrator<'_>, Paces) {
    let (sender, receiver) = mpsc::unbounded_channel();
    let migrator = Migrator::new(migrations, config)
        .unwrap()
        .with_progress(Box::new(move |event| {
            if let ProgressEvent::BackfillPace { status, .. } = event {
                let _ = sender.send((*status).clone());
            }
        }));
    (migrator, Paces(receiver))
}

/// Only the signals a test looks at: the probe and the session count are left out where a
/// busy test machine would make them back off at random.
fn quiet_control(target: Duration) -> BackfillControl {
    BackfillControl {
        target,
        probe_query: None,
        max_active_sessions: Some(u32::MAX),
        // The tests of this binary share one cluster: another test's CPU load (running
        // sessions are counted server-wide, as CPUs are shared) must not hold the tests of
        // other signals. The CPU signal's own tests set this.
        server_cpus: Some(1024),
        max_replica_lag: None,
        pause_poll: Duration::from_millis(50),
        ..BackfillControl::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grows_when_idle_pauses_for_the_operator_and_shrinks_when_a_batch_is_slowed() {
    let _machine = MACHINE.read().await;
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", "");
    let client = client(db.url()).await;
    let monitor = plain_client(db.url()).await;
    let operator = plain_client(db.url()).await;
    let locker = plain_client(db.url()).await;
    let (migrator, mut paces) = migrator_with_paces(
        &migrations,
        MigratorConfig {
            backfill: quiet_control(Duration::from_millis(50)),
            // The slowed batch waits for the lock rather than retrying.
            lock_timeout: Duration::from_secs(5),
            ..config()
        },
    );
    let migrator = migrator.with_monitor(monitor);
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    let rows = 300_000;
    fill(&client, "g", rows).await;

    let run = migrator.up(&client, UpTo::All);
    let drive = async {
        // Idle: from 100 rows the batch grows (a first batch slowed by a busy machine may
        // back off once on the way: the growth is what this asserts).
        let grown = paces
            .until("the batch grew to 800 rows", |s| s.batch_size >= 800)
            .await;
        assert!(grown.rows_done < i64::from(rows), "{grown:?}");
        // The operator's pause, set from another session, stops it before its next batch.
        migrator.pause_backfills(&operator, true).await.unwrap();
        let paused = paces
            .until("paused by the operator", |s| {
                s.state == PaceState::Paused(PauseReason::Operator)
            })
            .await;
        // It stays paused: later checks report the same rows done.
        let still = paces.until("a second check while paused", |_| true).await;
        assert_eq!(still.state, PaceState::Paused(PauseReason::Operator));
        assert_eq!(still.rows_done, paused.rows_done);
        let stored: String = operator
            .query_one(
                "SELECT state FROM schema_migrations_backfill WHERE version = 2",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(stored, PaceState::Paused(PauseReason::Operator).to_string());
        // Another session takes a lock that makes the next batch wait, then the pause ends.
        locker
            .batch_execute("BEGIN; LOCK TABLE items IN SHARE MODE")
            .await
            .unwrap();
        migrator.pause_backfills(&operator, false).await.unwrap();
        wait_until(
            &operator,
            "the backfill's batch waits for the lock",
            "SELECT EXISTS (SELECT FROM pg_stat_activity WHERE application_name = 'migrate-test' \
             AND wait_event_type = 'Lock')",
        )
        .await;
        // The stimulus: the batch is held 300 ms, six times its 50 ms target.
        locker
            .batch_execute("SELECT pg_sleep(0.3); COMMIT")
            .await
            .unwrap();
        let after = paces
            .until("the slowed batch was done", |s| {
                s.rows_done > paused.rows_done
            })
            .await;
        assert!(
            after.batch_size < paused.batch_size,
            "the slowed batch of {} rows did not shrink the next: {after:?}",
            paused.batch_size
        );
    };
    let (outcome, ()) = tokio::join!(run, drive);
    outcome.unwrap();
    assert_done_once(&client, i64::from(rows)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pauses_while_a_replica_does_not_replay_and_resumes_after() {
    let _machine = MACHINE.read().await;
    let primary = migrate_scratch::ScratchCluster::start().expect("primary");
    let replica = primary.start_replica().expect("replica");
    // The controller's pace, and a fixed one (issue 21 item 1: it read no stop signal).
    for pace in ["", " batch=500 delay=0"] {
        replica_lag_pauses(&primary, &replica, pace).await;
    }
}

async fn replica_lag_pauses(
    primary: &migrate_scratch::ScratchCluster,
    replica: &migrate_scratch::ScratchCluster,
    pace: &str,
) {
    let db = primary.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", pace);
    let client = client(db.url()).await;
    let (migrator, mut paces) = migrator_with_paces(
        &migrations,
        MigratorConfig {
            backfill: BackfillControl {
                max_replica_lag: Some(Duration::from_millis(300)),
                ..quiet_control(Duration::from_millis(20))
            },
            ..config()
        },
    );
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    let rows = 300_000;
    fill(&client, "g", rows).await;
    replica
        .psql("postgres", "SELECT pg_wal_replay_pause()")
        .unwrap();

    let run = migrator.up(&client, UpTo::All);
    let drive = async {
        let lagging = |s: &BackfillStatus| {
            matches!(
                &s.state,
                PaceState::Paused(PauseReason::ReplicaLag { replica: name, .. })
                    if name.contains(replica.replica_name().unwrap())
            )
        };
        let paused = paces.until("paused for the replica", lagging).await;
        assert!(paused.rows_done < i64::from(rows), "{paused:?}");
        let still = paces.until("a second check while paused", |_| true).await;
        assert!(lagging(&still), "{still:?}");
        assert_eq!(still.rows_done, paused.rows_done);
        replica
            .psql("postgres", "SELECT pg_wal_replay_resume()")
            .unwrap();
        let resumed = paces
            .until("running again", |s| s.rows_done > paused.rows_done)
            .await;
        assert!(!lagging(&resumed), "{resumed:?}");
    };
    let (outcome, ()) = tokio::join!(run, drive);
    outcome.unwrap();
    assert_done_once(&client, i64::from(rows)).await;
}

/// Every common key type under the controller (defaults, with a monitor connection), and
/// `target=` from the directive.
#[tokio::test]
async fn every_common_key_type_runs_under_the_controller() {
    let _machine = MACHINE.read().await;
    for (key_type, key_expr) in [
        ("bigint", "g"),
        ("integer", "g"),
        ("text", "lpad(g::text, 6, '0')"),
        (
            "timestamptz",
            "timestamptz '2026-01-01 00:00:00+00' + g * interval '1 second'",
        ),
        ("uuid", "gen_random_uuid()"),
    ] {
        let db = database();
        let dir = tempfile::tempdir().unwrap();
        let migrations = write_set(dir.path(), key_type, " target=50");
        let client = client(db.url()).await;
        let migrator = Migrator::new(&migrations, config())
            .unwrap()
            .with_monitor(plain_client(db.url()).await);
        migrator.up(&client, UpTo::Version(1)).await.unwrap();
        fill(&client, key_expr, 5_000).await;
        migrator
            .up(&client, UpTo::All)
            .await
            .unwrap_or_else(|e| panic!("{key_type}: {e}"));
        assert_done_once(&client, 5_000).await;
        let states = migrator.backfills(&client).await.unwrap();
        assert_eq!(states[0].pace_state.as_deref(), Some("done"), "{key_type}");
        assert!(
            states[0].batch_size.is_some_and(|size| size >= 100),
            "{key_type}"
        );
    }
}

/// A progress table of an earlier release (without the pace columns) is read as it is and
/// upgraded by the next run.
#[tokio::test]
async fn an_earlier_progress_table_is_read_then_upgraded() {
    let _machine = MACHINE.read().await;
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", "");
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    fill(&client, "g", 2_500).await;
    client
        .batch_execute(
            "UPDATE items SET v2 = n * 2 WHERE id <= 1500;\n\
             CREATE TABLE schema_migrations_backfill (version bigint NOT NULL, statement integer NOT NULL, last_key text,\n\
               rows_done bigint NOT NULL DEFAULT 0, started_at timestamptz NOT NULL DEFAULT now(),\n\
               updated_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz, verified_at timestamptz,\n\
               PRIMARY KEY (version, statement));\n\
             INSERT INTO schema_migrations_backfill (version, statement, last_key, rows_done) VALUES (2, 0, '1500', 1500);",
        )
        .await
        .unwrap();
    let before = migrator.backfills(&client).await.unwrap();
    assert_eq!(before[0].rows_done, Some(1500));
    assert_eq!(before[0].pace_state, None);
    migrator.up(&client, UpTo::All).await.unwrap();
    let after = migrator.backfills(&client).await.unwrap();
    assert_eq!(after[0].rows_done, Some(2500));
    assert_eq!(after[0].pace_state.as_deref(), Some("done"));
}

/// The progress row of version 2 as `migrate backfill` reads it: (rows done, state, updated).
async fn stored_progress(client: &Client) -> (i64, String, std::time::SystemTime) {
    let row = client
        .query_one(
            "SELECT rows_done, coalesce(state, ''), updated_at FROM schema_migrations_backfill \
             WHERE version = 2",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Polls the progress table (bounded) until `wanted` holds; it has no notification.
async fn progress_until(
    client: &Client,
    what: &str,
    wanted: impl Fn(&(i64, String, std::time::SystemTime)) -> bool,
) -> (i64, String, std::time::SystemTime) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let exists: bool = client
            .query_one(
                "SELECT EXISTS (SELECT FROM pg_class WHERE relname = 'schema_migrations_backfill') \
                 AND EXISTS (SELECT FROM schema_migrations_backfill WHERE version = 2)",
                &[],
            )
            .await
            .map(|row| row.get(0))
            .unwrap_or(false);
        if exists {
            let stored = stored_progress(client).await;
            if wanted(&stored) {
                return stored;
            }
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A stop signal holds: the stored state says so, and a later check (a newer `updated_at`)
/// still shows the same rows done, so no batch ran in between.
async fn assert_held(client: &Client, what: &str, state: &str) -> i64 {
    let held = progress_until(client, what, |(_, s, _)| s == state).await;
    let later = progress_until(client, "a later check while held", |(_, _, at)| {
        *at > held.2
    })
    .await;
    assert_eq!(later.1, state, "{what}");
    assert_eq!(later.0, held.0, "{what}: a batch ran while held");
    held.0
}

/// Issue 21 item 1: a fixed-pace backfill (`batch=`/`delay=`) honours the operator's pause and
/// the throttle query before a batch, as the controller does, and resumes after each.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_pace_backfill_honours_the_pause_and_the_throttle_query() {
    let _machine = MACHINE.read().await;
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", " batch=200 delay=10");
    let client = client(db.url()).await;
    let operator = plain_client(db.url()).await;
    operator
        .batch_execute("CREATE TABLE hold (held boolean NOT NULL); INSERT INTO hold VALUES (false)")
        .await
        .unwrap();
    let migrator = Migrator::new(
        &migrations,
        MigratorConfig {
            backfill: BackfillControl {
                throttle_query: Some("SELECT held FROM hold".into()),
                ..quiet_control(Duration::from_millis(50))
            },
            ..config()
        },
    )
    .unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    let rows = 200_000;
    fill(&client, "g", rows).await;

    let run = migrator.up(&client, UpTo::All);
    let drive = async {
        let fixed = PaceState::Fixed.to_string();
        let started = progress_until(&operator, "a first batch", |(done, s, _)| {
            *done > 0 && *s == fixed
        })
        .await;
        assert!(started.0 < i64::from(rows), "{started:?}");
        migrator.pause_backfills(&operator, true).await.unwrap();
        let paused = assert_held(
            &operator,
            "paused by the operator",
            &PaceState::Paused(PauseReason::Operator).to_string(),
        )
        .await;
        migrator.pause_backfills(&operator, false).await.unwrap();
        progress_until(&operator, "running after the pause", |(done, _, _)| {
            *done > paused
        })
        .await;
        operator
            .batch_execute("UPDATE hold SET held = true")
            .await
            .unwrap();
        let throttled = assert_held(
            &operator,
            "held by the throttle query",
            &PaceState::Paused(PauseReason::ThrottleQuery).to_string(),
        )
        .await;
        assert!(throttled < i64::from(rows), "{throttled}");
        operator
            .batch_execute("UPDATE hold SET held = false")
            .await
            .unwrap();
        progress_until(&operator, "running after the throttle", |(done, _, _)| {
            *done > throttled
        })
        .await;
    };
    let (outcome, ()) = tokio::join!(run, drive);
    outcome.unwrap();
    assert_done_once(&client, i64::from(rows)).await;
}

/// The stop signals change over seconds: while none holds they are read before a batch at
/// most every 200 ms (or `pause_poll`, when shorter), not before each of them. The throttle
/// query counts its own readings.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stop_signals_are_read_at_most_every_200_ms_while_none_holds() {
    let _machine = MACHINE.read().await;
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", " batch=100 delay=0");
    let client = client(db.url()).await;
    client
        .batch_execute("CREATE SEQUENCE stop_readings")
        .await
        .unwrap();
    let migrator = Migrator::new(
        &migrations,
        MigratorConfig {
            backfill: BackfillControl {
                throttle_query: Some("SELECT nextval('stop_readings') < 0".into()),
                pause_poll: Duration::from_secs(1),
                ..quiet_control(Duration::from_millis(50))
            },
            ..config()
        },
    )
    .unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    let rows = 20_000;
    fill(&client, "g", rows).await;
    let started = Instant::now();
    migrator.up(&client, UpTo::All).await.unwrap();
    let took = started.elapsed();
    assert_done_once(&client, i64::from(rows)).await;
    let readings: i64 = client
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM stop_readings",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let batches = i64::from(rows / 100);
    let most = i64::try_from(took.as_millis() / 200).unwrap() + 1;
    assert!(readings >= 1, "the signals were never read");
    assert!(
        readings <= most,
        "{readings} readings over {took:?} and {batches} batches: more than one per 200 ms"
    );
}

/// Issue 22 item 3: a transaction holding back the xmin horizon longer than the limit pauses
/// the backfill (fixed pace here, adaptive alike); a pause longer than `max_pause` aborts it
/// with its progress kept, after reading the signals again; the next `up` resumes and ends.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_transaction_pauses_and_a_pause_past_its_limit_aborts_resumably() {
    let _machine = MACHINE.read().await;
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", " batch=200 delay=10");
    let client = client(db.url()).await;
    let operator = plain_client(db.url()).await;
    let reader = plain_client(db.url()).await;
    let control = BackfillControl {
        max_transaction_age: Some(Duration::from_millis(300)),
        ..quiet_control(Duration::from_millis(50))
    };
    let migrator = Migrator::new(
        &migrations,
        MigratorConfig {
            backfill: control.clone(),
            ..config()
        },
    )
    .unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    let rows = 200_000;
    fill(&client, "g", rows).await;

    let run = migrator.up(&client, UpTo::All);
    let drive = async {
        let started = progress_until(&operator, "a first batch", |(done, _, _)| *done > 0).await;
        assert!(started.0 < i64::from(rows), "{started:?}");
        // A snapshot held open: the horizon stays behind while it lives.
        reader
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM items")
            .await
            .unwrap();
        let held = progress_until(&operator, "paused for the old transaction", |(_, s, _)| {
            s.starts_with("paused: the transaction of backend")
        })
        .await;
        let later = progress_until(&operator, "a later check", |(_, _, at)| *at > held.2).await;
        assert_eq!(later.0, held.0, "a batch ran while paused");
        reader.batch_execute("COMMIT").await.unwrap();
        progress_until(&operator, "running again", |(done, _, _)| *done > held.0).await;
    };
    let (outcome, ()) = tokio::join!(run, drive);
    outcome.unwrap();
    assert_done_once(&client, i64::from(rows)).await;

    // The same table again, with a pause limit: the operator's pause outlives it.
    let db = database();
    let client = self::client(db.url()).await;
    let operator = plain_client(db.url()).await;
    let migrator = Migrator::new(
        &migrations,
        MigratorConfig {
            backfill: BackfillControl {
                max_pause: Some(Duration::from_millis(500)),
                ..control
            },
            ..config()
        },
    )
    .unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    fill(&client, "g", 5_000).await;
    migrator.pause_backfills(&operator, true).await.unwrap();
    let failed = migrator.up(&client, UpTo::All).await.unwrap_err();
    let error = failed.error();
    assert!(
        matches!(
            error,
            migrate_core::runtime::RuntimeError::BackfillAborted { reason, .. }
                if matches!(**reason, migrate_core::runtime::AbortReason::PausedTooLong {
                    reason: PauseReason::Operator, .. })
        ),
        "{error:?}"
    );
    assert!(error.is_transient(), "{error}");
    let (done, state, _) = stored_progress(&operator).await;
    assert_eq!(done, 0);
    assert!(state.starts_with("aborted: paused for"), "{state}");
    migrator.pause_backfills(&operator, false).await.unwrap();
    migrator.up(&client, UpTo::All).await.unwrap();
    assert_done_once(&client, 5_000).await;
}

/// `clients` sessions running point reads of `items` in a tight loop until `stop`: a
/// Held alone (write) by the tests that load the machine on purpose and by the one that needs
/// it quiet, shared (read) by every other test here: tests of one binary run at once, a
/// saturating load beside the quiet-server test slowed its batches until it finished before a
/// second worker could join, and the controller reads the host's CPU time, which every
/// test's backfill adds to.
static MACHINE: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// CPU-bound application from few connections, whose queueing happens outside the server.
fn cpu_load(
    url: &str,
    clients: usize,
    rows: i64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..clients)
        .map(|index| {
            let (url, stop) = (url.to_owned(), stop.clone());
            tokio::spawn(async move {
                let client = plain_client(&url).await;
                let read = client
                    .prepare("SELECT n FROM items WHERE id = $1")
                    .await
                    .unwrap();
                let mut done = 0u64;
                let mut key = index as i64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    key = (key * 7919 + 13) % rows + 1;
                    client.query_opt(&read, &[&key]).await.unwrap();
                    done += 1;
                }
                done
            })
        })
        .collect()
}

/// After a backfill run under a load: stops the load (whose tasks must have done work),
/// checks the run succeeded with every row updated once, and returns the backfill's stored
/// impact line.
async fn after_the_load<T, E: std::fmt::Debug>(
    stop: &std::sync::atomic::AtomicBool,
    load: Vec<tokio::task::JoinHandle<u64>>,
    outcome: Result<T, E>,
    migrator: &Migrator<'_>,
    client: &Client,
    rows: u32,
) -> String {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut done = 0;
    for task in load {
        done += task.await.unwrap();
    }
    assert!(done > 0, "the load ran");
    outcome.unwrap();
    assert_done_once(client, i64::from(rows)).await;
    let states = migrator.backfills(client).await.unwrap();
    states[0].impact.clone().unwrap_or_default()
}

fn machine_cpus() -> u32 {
    std::thread::available_parallelism().map_or(2, |n| n.get() as u32)
}

/// Issue 22: a CPU-saturating load from few connections (twice as many tight loops as the
/// machine has CPUs, at least 4) makes the controller back off on a signal of the load it
/// measures (server CPU, the application's throughput or server time, the probe doing real
/// work); the defaults' session threshold and a `SELECT 1` probe saw nothing of it. Once the
/// load stops, the backfill ends, every row updated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cpu_saturating_load_from_few_connections_makes_it_back_off() {
    let _machine = MACHINE.write().await;
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", "");
    let client = client(db.url()).await;
    let cpus = machine_cpus();
    let (migrator, mut paces) = migrator_with_paces(
        &migrations,
        MigratorConfig {
            backfill: BackfillControl {
                server_cpus: Some(cpus),
                max_replica_lag: None,
                pause_poll: Duration::from_millis(50),
                ..BackfillControl::default()
            },
            ..config()
        },
    );
    let migrator = migrator.with_monitor(plain_client(db.url()).await);
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    let rows = 300_000;
    fill(&client, "g", rows).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients = (2 * cpus as usize).clamp(4, 32);
    let load = cpu_load(db.url(), clients, i64::from(rows), stop.clone());

    let run = migrator.up(&client, UpTo::All);
    let drive = async {
        let backing_off = paces
            .until("backing off on the load", |s| {
                matches!(
                    &s.state,
                    PaceState::BackingOff(
                        Pressure::ServerCpu { .. }
                            | Pressure::ThroughputDrop { .. }
                            | Pressure::ServerTimeUp { .. }
                            | Pressure::ProbeSlow { .. }
                    )
                )
            })
            .await;
        assert!(backing_off.rows_done < i64::from(rows), "{backing_off:?}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (outcome, ()) = tokio::join!(run, drive);
    let impact = after_the_load(&stop, load, outcome, &migrator, &client, rows).await;
    assert!(impact.starts_with("held by "), "{impact:?}");
}

/// Issue 22: on a quiet server the defaults grow the batch (no load signal fires: no other
/// session runs, no application rate to lose), and up to 4 workers over disjoint key ranges
/// never update a row twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_server_lets_it_grow_and_workers_never_update_a_row_twice() {
    let _machine = MACHINE.write().await;
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", "");
    let client = client(db.url()).await;
    let (migrator, mut paces) = migrator_with_paces(
        &migrations,
        MigratorConfig {
            backfill: BackfillControl {
                // Room for every worker: the test is about their ranges, not the CPU rule.
                server_cpus: Some(64),
                max_workers: 4,
                ..quiet_control(Duration::from_millis(50))
            },
            ..config()
        },
    );
    let mut workers = Vec::new();
    for _ in 0..3 {
        workers.push(plain_client(db.url()).await);
    }
    let migrator = migrator
        .with_monitor(plain_client(db.url()).await)
        .with_workers(workers);
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    // Enough for ten clean cycles after a slow batch or two (other tests still run beside it).
    let rows = 600_000;
    fill(&client, "g", rows).await;

    let run = migrator.up(&client, UpTo::All);
    let drive = async {
        let grown = paces
            .until("the batch grew and a second worker joined", |s| {
                assert!(
                    !matches!(
                        &s.state,
                        PaceState::BackingOff(
                            Pressure::ServerCpu { .. }
                                | Pressure::ThroughputDrop { .. }
                                | Pressure::ServerTimeUp { .. }
                        )
                    ),
                    "a quiet server is no load: {s:?}"
                );
                s.batch_size >= 1600 && s.workers >= 2
            })
            .await;
        assert!(grown.rows_done < i64::from(rows), "{grown:?}");
    };
    let (outcome, ()) = tokio::join!(run, drive);
    outcome.unwrap();
    assert_done_once(&client, i64::from(rows)).await;
}

/// Issue 22 item 3: WAL segments waiting for a failing archiver past the limit pause the
/// backfill; once the archiver catches up (its command fixed and reloaded), it goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wal_archive_backlog_pauses_until_the_archiver_catches_up() {
    let _machine = MACHINE.read().await;
    let cluster = migrate_scratch::ScratchCluster::start().expect("cluster");
    for setting in ["archive_mode = on", "archive_command = 'false'"] {
        cluster
            .psql("postgres", &format!("ALTER SYSTEM SET {setting}"))
            .unwrap();
    }
    cluster.stop_server(false).unwrap();
    cluster.start_server_again().unwrap();
    let db = cluster.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", " batch=500 delay=0");
    let client = client(db.url()).await;
    let operator = plain_client(db.url()).await;
    let migrator = Migrator::new(
        &migrations,
        MigratorConfig {
            backfill: BackfillControl {
                max_wal_archive_backlog: Some(1),
                ..quiet_control(Duration::from_millis(50))
            },
            ..config()
        },
    )
    .unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    fill(&client, "g", 20_000).await;
    // Two finished segments the failing archiver cannot take.
    for _ in 0..2 {
        operator
            .batch_execute(
                "CREATE TABLE IF NOT EXISTS wal_filler (n int); INSERT INTO wal_filler VALUES (1)",
            )
            .await
            .unwrap();
        operator
            .batch_execute("SELECT pg_switch_wal()")
            .await
            .unwrap();
    }

    let run = migrator.up(&client, UpTo::All);
    let drive = async {
        let held = progress_until(&operator, "paused for the archive backlog", |(_, s, _)| {
            s.starts_with("paused:") && s.contains("wait for the archiver")
        })
        .await;
        assert_eq!(held.0, 0, "no batch before the pause: {held:?}");
        cluster
            .psql("postgres", "ALTER SYSTEM SET archive_command = 'true'")
            .unwrap();
        cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    };
    let (outcome, ()) = tokio::join!(run, drive);
    outcome.unwrap();
    assert_done_once(&client, 20_000).await;
}

/// Issue 22 item 3: an autovacuum that starts on the backfill's table while the backfill runs
/// pauses it (`autovacuum = any`), with the reason the progress hook reports, and no batch
/// runs while it works; once it is gone, the backfill ends with every row updated once.
/// The vacuum is made slow (a cost limit of 1 with the longest cost delay: it sleeps after
/// every page) so it is still running when looked at; it is ended by turning autovacuum
/// off for the table, whose lock request cancels it (PostgreSQL cancels a non-wraparound
/// autovacuum that blocks a lock request after `deadlock_timeout`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_autovacuum_of_the_table_pauses_it_until_the_vacuum_is_gone() {
    let _machine = MACHINE.read().await;
    // Its own cluster: autovacuum wakes every second here.
    let cluster = migrate_scratch::ScratchCluster::start().expect("cluster");
    cluster
        .psql("postgres", "ALTER SYSTEM SET autovacuum_naptime = '1s'")
        .unwrap();
    cluster.psql("postgres", "SELECT pg_reload_conf()").unwrap();
    let db = cluster.create_database().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", "");
    let client = client(db.url()).await;
    let operator = plain_client(db.url()).await;
    let (migrator, mut paces) = migrator_with_paces(
        &migrations,
        MigratorConfig {
            backfill: BackfillControl {
                autovacuum: AutovacuumPause::Any,
                ..quiet_control(Duration::from_millis(50))
            },
            ..config()
        },
    );
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    // No autovacuum before the test asks for one.
    client
        .batch_execute("ALTER TABLE items SET (autovacuum_enabled = false)")
        .await
        .unwrap();
    let rows = 200_000;
    fill(&client, "g", rows).await;

    let run = migrator.up(&client, UpTo::All);
    let drive = async {
        // Batches run; the operator holds them while the vacuum is started, so that the
        // backfill does not end first.
        paces.until("a first batch", |s| s.rows_done > 0).await;
        migrator.pause_backfills(&operator, true).await.unwrap();
        paces
            .until("paused by the operator", |s| {
                s.state == PaceState::Paused(PauseReason::Operator)
            })
            .await;
        operator
            .batch_execute(
                "ALTER TABLE items SET (autovacuum_enabled = true, \
                 autovacuum_vacuum_threshold = 0, autovacuum_vacuum_scale_factor = 0, \
                 autovacuum_vacuum_cost_limit = 1, autovacuum_vacuum_cost_delay = 100)",
            )
            .await
            .unwrap();
        wait_until(
            &operator,
            "an autovacuum works on items",
            "SELECT EXISTS (SELECT FROM pg_stat_progress_vacuum v JOIN pg_stat_activity a \
             USING (pid) WHERE v.relid = 'items'::regclass \
             AND a.backend_type = 'autovacuum worker')",
        )
        .await;
        migrator.pause_backfills(&operator, false).await.unwrap();
        let paused = paces
            .until("paused by the autovacuum", |s| {
                matches!(&s.state, PaceState::Paused(PauseReason::Autovacuum { .. }))
            })
            .await;
        let PaceState::Paused(PauseReason::Autovacuum { table, wraparound }) = &paused.state else {
            unreachable!()
        };
        assert_eq!(
            (table.as_str(), *wraparound),
            ("items", false),
            "{paused:?}"
        );
        assert!(paused.rows_done < i64::from(rows), "{paused:?}");
        // It stays paused while the vacuum works: the next check reports the same rows.
        let still = paces.until("a second check while paused", |_| true).await;
        assert_eq!(still.state, paused.state);
        assert_eq!(still.rows_done, paused.rows_done);
        // The lock request cancels the vacuum; none starts again.
        operator
            .batch_execute("ALTER TABLE items SET (autovacuum_enabled = false)")
            .await
            .unwrap();
    };
    let (outcome, ()) = tokio::join!(run, drive);
    outcome.unwrap();
    assert_done_once(&client, i64::from(rows)).await;
    let states = migrator.backfills(&client).await.unwrap();
    let impact = states[0].impact.clone().unwrap_or_default();
    assert!(impact.contains("autovacuum"), "{impact:?}");
}

/// A cluster whose server preloads pg_stat_statements, for the tests of that signal.
fn stats_cluster() -> &'static migrate_scratch::ScratchCluster {
    static CLUSTER: std::sync::OnceLock<migrate_scratch::ScratchCluster> =
        std::sync::OnceLock::new();
    CLUSTER.get_or_init(|| {
        migrate_scratch::ScratchCluster::start_with_preloaded(&["pg_stat_statements"])
            .expect("scratch cluster")
    })
}

/// Where the backfill works: the first key of its next batch and the batch's size, as the
/// progress hook last reported them (keys are `1..=rows`, filled in order).
#[derive(Clone, Default)]
struct BackfillFront {
    next_key: std::sync::Arc<std::sync::atomic::AtomicI64>,
    batch_size: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl BackfillFront {
    fn follow(&self, status: &BackfillStatus) {
        use std::sync::atomic::Ordering::Relaxed;
        self.next_key.store(status.rows_done + 1, Relaxed);
        self.batch_size.store(i64::from(status.batch_size), Relaxed);
    }
}

/// `clients` application sessions, each reading a row `FOR SHARE` every `interval` on a
/// fixed schedule (a late call is caught up at once, so its rate holds while its latency
/// rises): one read in `hot_every` is of a row of the batch the backfill runs, and waits
/// for that batch's row lock (never longer than the batch: no lock wait the controller
/// counts), the others of any row. Their statement gets slower while batches run, not in
/// the backfill's rests. Returns each session's calls.
fn scheduled_reads(
    url: &str,
    clients: usize,
    interval: Duration,
    rows: i64,
    front: BackfillFront,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Vec<tokio::task::JoinHandle<u64>> {
    use std::sync::atomic::Ordering::Relaxed;
    // Every other read waits for a batch's row locks: its statement time rises far above
    // 1.5x whenever batches run, while the light schedule leaves the clients slack to keep
    // their throughput on a busy two-core machine (a 4-client, 800 tx/s schedule lagged in
    // CI and showed as a throughput drop first).
    const HOT_EVERY: u64 = 2;
    (0..clients)
        .map(|index| {
            let (url, stop, front) = (url.to_owned(), stop.clone(), front.clone());
            tokio::spawn(async move {
                let client = plain_client(&url).await;
                let read = client
                    .prepare("SELECT n FROM items WHERE id = $1 FOR SHARE")
                    .await
                    .unwrap();
                let started = tokio::time::Instant::now();
                let mut calls = 0u64;
                let mut key = index as i64 + 1;
                while !stop.load(Relaxed) {
                    // The application's schedule: pacing, not synchronisation.
                    tokio::time::sleep_until(started + interval * calls as u32).await;
                    key = (key * 7919 + 13) % rows + 1;
                    let target = if calls.is_multiple_of(HOT_EVERY) {
                        let batch = front.batch_size.load(Relaxed).max(1);
                        (front.next_key.load(Relaxed) + key % batch).min(rows)
                    } else {
                        key
                    };
                    client.query_opt(&read, &[&target]).await.unwrap();
                    calls += 1;
                }
                calls
            })
        })
        .collect()
}

/// Issue 22 item 2: with pg_stat_statements installed, an application whose statements
/// get slower while the batches run (they wait for the batch's row locks, briefly: no
/// lock-wait signal, its throughput held by its schedule) makes the backfill back off on
/// its statement latency, and the impact line says how much slower they were. Once the
/// load stops, the backfill ends, every row updated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_slower_while_batches_run_make_it_back_off_on_statement_latency() {
    let _machine = MACHINE.write().await;
    let db = stats_cluster().create_database().expect("database");
    stats_cluster()
        .psql(db.name(), "CREATE EXTENSION pg_stat_statements")
        .expect("extension");
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), "bigint", "");
    let client = client(db.url()).await;
    let (migrator, mut paces) = migrator_with_paces(
        &migrations,
        MigratorConfig {
            backfill: BackfillControl {
                // Batches far shorter than the target: an application read waits for one
                // for less than the target, which the lock-wait signal allows.
                max_batch: 1_000,
                max_workers: 1,
                ..quiet_control(Duration::from_millis(500))
            },
            ..config()
        },
    );
    let migrator = migrator.with_monitor(plain_client(db.url()).await);
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    let rows = 600_000;
    fill(&client, "g", rows).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let front = BackfillFront::default();
    let load = scheduled_reads(
        db.url(),
        2,
        Duration::from_millis(8),
        i64::from(rows),
        front.clone(),
        stop.clone(),
    );

    let run = migrator.up(&client, UpTo::All);
    let drive = async {
        let backing_off = paces
            .until("backing off on the statement latency", |s| {
                front.follow(s);
                matches!(
                    &s.state,
                    PaceState::BackingOff(Pressure::StatementLatencyUp { .. })
                )
            })
            .await;
        assert!(backing_off.rows_done < i64::from(rows), "{backing_off:?}");
        let PaceState::BackingOff(Pressure::StatementLatencyUp {
            resting_ms,
            working_ms,
        }) = backing_off.state
        else {
            unreachable!()
        };
        assert!(working_ms > resting_ms * 1.5, "{backing_off:?}");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
    };
    let (outcome, ()) = tokio::join!(run, drive);
    let impact = after_the_load(&stop, load, outcome, &migrator, &client, rows).await;
    assert!(impact.contains("statement latency"), "{impact:?}");
    assert!(impact.contains("statement time per call"), "{impact:?}");
}

/// Issue 22 item 2: without a readable pg_stat_statements the statement latency signal is
/// off and nothing else changes: installed but its library not preloaded (reading it fails
/// with 55000), or preloaded but not installed in the database; either way the backfill
/// under the controller ends, every row updated once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_readable_pg_stat_statements_the_backfill_runs_as_before() {
    let _machine = MACHINE.read().await;
    let not_preloaded = database();
    cluster()
        .psql(not_preloaded.name(), "CREATE EXTENSION pg_stat_statements")
        .expect("extension");
    let not_installed = stats_cluster().create_database().expect("database");
    for db in [&not_preloaded, &not_installed] {
        let client = client(db.url()).await;
        if std::ptr::eq(db, &not_preloaded) {
            let error = client
                .query_one("SELECT count(*) FROM pg_stat_statements", &[])
                .await
                .unwrap_err();
            assert_eq!(
                error.code(),
                Some(&tokio_postgres::error::SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE),
                "{error}"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let migrations = write_set(dir.path(), "bigint", "");
        let migrator = Migrator::new(
            &migrations,
            MigratorConfig {
                backfill: quiet_control(Duration::from_millis(50)),
                ..config()
            },
        )
        .unwrap()
        .with_monitor(plain_client(db.url()).await);
        migrator.up(&client, UpTo::Version(1)).await.unwrap();
        fill(&client, "g", 20_000).await;
        migrator.up(&client, UpTo::All).await.unwrap();
        assert_done_once(&client, 20_000).await;
    }
}
