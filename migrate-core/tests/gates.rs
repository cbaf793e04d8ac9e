//! Contract gates against a real PostgreSQL: a primary (one database per test) and, for the
//! replica gate, a primary with a streaming hot standby.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use migrate_core::runtime::{GateFailure, Migrator, MigratorConfig, RuntimeError, UpTo, connect};
use migrate_scratch::ScratchCluster;
use tokio_postgres::Client;

/// Table, expand (new column), backfill (fills it), contract (drops the old column): loaded
/// exactly as the CLI and the macro load a folder.
fn write_set(dir: &Path) -> migrate_core::Migrations {
    let files = [
        (
            "0001_items.sql",
            "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v integer NOT NULL);\n\
             -- migrate:down\nDROP TABLE IF EXISTS items;\n",
        ),
        (
            "0002_items_v2.expand.sql",
            "ALTER TABLE items ADD COLUMN IF NOT EXISTS v2 integer;\n\
             -- migrate:down\nALTER TABLE items DROP COLUMN IF EXISTS v2;\n",
        ),
        (
            "0003_items_v2.backfill.sql",
            "-- migrate:backfill table=items key=id batch=100\n\
             UPDATE items SET v2 = v WHERE v2 IS NULL;\n-- migrate:down\n",
        ),
        (
            "0004_items_drop_v.contract.sql",
            "-- migrate:requires 2\nALTER TABLE items DROP COLUMN IF EXISTS v;\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    checked.migrations(&dir.to_string_lossy())
}

/// A fresh database with `write_set`'s table (0001) and 250 rows in the old shape: the
/// database, the set's folder, the set and a session, to keep in this order (the session
/// drops first).
async fn items_in_the_old_shape() -> (
    migrate_scratch::ScratchDatabase,
    tempfile::TempDir,
    migrate_core::Migrations,
    Client,
) {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path());
    let client = client(db.url()).await;
    up_to(&client, &migrations, 1).await;
    client
        .batch_execute("INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 250) g")
        .await
        .unwrap();
    (db, dir, migrations, client)
}

/// Whether the old column, which only the contract drops, is still there.
async fn old_column_exists(client: &Client) -> bool {
    scalar_i64(
        client,
        "SELECT count(*) FROM information_schema.columns \
         WHERE table_name = 'items' AND column_name = 'v'",
    )
    .await
        == 1
}

fn gate_failure(error: &RuntimeError) -> (&u64, &String, &GateFailure) {
    match error {
        RuntimeError::ContractGate {
            version,
            file,
            failure,
        } => (version, file, failure.as_ref()),
        other => panic!("expected ContractGate, got {other:?}"),
    }
}

#[tokio::test]
async fn a_contract_after_its_expand_and_backfill_in_the_same_run_applies() {
    let (_db, _dir, migrations, client) = items_in_the_old_shape().await;
    let migrator = Migrator::new(&migrations, config()).unwrap();

    let report = migrator.up(&client, UpTo::All).await.expect("gates pass");
    assert_eq!(report.versions(), vec![2, 3, 4]);
    assert!(!old_column_exists(&client).await);
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM items WHERE v2 IS NULL").await,
        0
    );
}

#[tokio::test]
async fn a_contract_within_the_stabilisation_period_is_refused_with_the_time_remaining() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path());
    let client = client(db.url()).await;
    let waiting = MigratorConfig {
        contract_stabilisation: Duration::from_secs(3600),
        ..config()
    };
    let failed = Migrator::new(&migrations, waiting)
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect_err("the expand was applied a moment ago");
    let (version, file, failure) = gate_failure(failed.error());
    assert_eq!(
        (*version, file.as_str()),
        (4, "0004_items_drop_v.contract.sql")
    );
    match failure {
        GateFailure::Stabilising {
            expand,
            applied_for,
            required,
            remaining,
        } => {
            assert_eq!(*expand, 2);
            assert_eq!(*required, Duration::from_secs(3600));
            assert!(*applied_for < Duration::from_secs(60), "{applied_for:?}");
            assert_eq!(*applied_for + *remaining, *required);
        }
        other => panic!("expected Stabilising, got {other:?}"),
    }
    let message = failed.to_string();
    assert!(message.contains("remain"), "{message}");
    assert!(
        message.contains("completed before the failure"),
        "{message}"
    );
    // The run's earlier migrations stay applied; nothing of the contract ran.
    assert_eq!(failed.report.versions(), vec![1, 2, 3]);
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);
    assert!(old_column_exists(&client).await);

    let report = Migrator::new(&migrations, config())
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect("no stabilisation period");
    assert_eq!(report.versions(), vec![4]);
    assert!(!old_column_exists(&client).await);
}

/// `up` runs pending migrations in version order, so a pending backfill always runs before
/// its contract. The sequence that reaches the contract with an unverified backfill is a
/// killed backfill (progress stored, not verified) that an operator "skipped" by inserting
/// its history row by hand to unblock a deploy.
#[tokio::test]
async fn a_contract_after_a_backfill_marked_applied_by_hand_is_refused_naming_it() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path());
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(2)).await.unwrap();
    let backfill = migrations.get(3).unwrap();
    client
        .batch_execute(
            "INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 250) g;
             CREATE TABLE schema_migrations_backfill (
                 version bigint NOT NULL, statement integer NOT NULL, last_key text,
                 rows_done bigint NOT NULL DEFAULT 0,
                 started_at timestamptz NOT NULL DEFAULT now(),
                 updated_at timestamptz NOT NULL DEFAULT now(),
                 finished_at timestamptz, verified_at timestamptz,
                 PRIMARY KEY (version, statement));
             UPDATE items SET v2 = v WHERE id <= 100;
             INSERT INTO schema_migrations_backfill (version, statement, last_key, rows_done)
                 VALUES (3, 0, '100', 100);",
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO schema_migrations (version, name, phase, checksum, duration_ms) \
             VALUES (3, $1, 'backfill', $2, 0)",
            &[&backfill.name.as_ref(), &backfill.checksum.to_hex()],
        )
        .await
        .unwrap();

    let failed = migrator
        .up(&client, UpTo::Version(4))
        .await
        .expect_err("the backfill never finished");
    let (version, _, failure) = gate_failure(failed.error());
    assert_eq!(*version, 4);
    assert_eq!(
        failure,
        &GateFailure::BackfillsNotVerified {
            versions: vec![3],
            files: vec!["0003_items_v2.backfill.sql".into()],
            applied: vec![3],
        }
    );
    assert!(
        failed.to_string().contains("0003_items_v2.backfill.sql"),
        "{failed}"
    );
    assert!(failed.report.nothing_to_do());
    assert!(old_column_exists(&client).await);
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);
}

/// The data loss: after the backfill was verified, the old release inserts a row in
/// the old shape (`v2` NULL). The contract must not drop `v` while that row needs it: the
/// gate counts the backfill's WHERE again, whatever `verified_at` says.
#[tokio::test]
async fn a_row_in_the_old_shape_after_the_backfill_refuses_the_contract() {
    let (_db, _dir, migrations, client) = items_in_the_old_shape().await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(3)).await.unwrap();
    client
        .batch_execute("INSERT INTO items (id, v) VALUES (1000, 1000)")
        .await
        .unwrap();

    let failed = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("a row still needs the old column");
    let (version, _, failure) = gate_failure(failed.error());
    assert_eq!(*version, 4);
    assert_eq!(
        failure,
        &GateFailure::BackfillRowsRemain {
            version: 3,
            file: "0003_items_v2.backfill.sql".into(),
            line: 2,
            table: "items".into(),
            remaining: 1,
        }
    );
    let message = failed.to_string();
    assert!(
        message.contains("1 row(s) of items still match"),
        "{message}"
    );
    assert!(old_column_exists(&client).await);
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);

    // A failed verify clears the earlier verified_at; the contract stays refused.
    let states = migrator.verify_backfills(&client, None).await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].remaining, Some(1));
    assert_eq!(states[0].verified_at, None);
    let failed = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("still refused");
    assert!(matches!(
        gate_failure(failed.error()).2,
        GateFailure::BackfillsNotVerified { .. }
    ));
    assert!(old_column_exists(&client).await);

    // Once the row is filled and verified, the contract runs.
    client
        .batch_execute("UPDATE items SET v2 = v WHERE v2 IS NULL")
        .await
        .unwrap();
    let states = migrator.verify_backfills(&client, None).await.unwrap();
    assert_eq!(states[0].remaining, Some(0));
    assert!(states[0].verified_at.is_some());
    let report = migrator.up(&client, UpTo::All).await.expect("filled");
    assert_eq!(report.versions(), vec![4]);
    assert!(!old_column_exists(&client).await);
}

/// A primary with a streaming standby, just for this test (the replay pause would hold up
/// any other test's contracts on a shared cluster).
struct Replicated {
    primary: ScratchCluster,
    replica: ScratchCluster,
}

fn replicated() -> Replicated {
    let primary = ScratchCluster::start().expect("primary");
    let replica = primary.start_replica().expect("replica");
    Replicated { primary, replica }
}

/// On a primary with a streaming replica: a database holding `write_set` applied up to its
/// backfill (the contract left), a watcher session on the primary, and the migrator with
/// `max_replica_lag`. (Fields drop in this order: sessions, then the database, then the
/// servers.)
struct BeforeTheContract {
    client: Client,
    watcher: Client,
    migrations: migrate_core::Migrations,
    max_replica_lag: Duration,
    _dir: tempfile::TempDir,
    _db: migrate_scratch::ScratchDatabase,
    cluster: Replicated,
}

impl BeforeTheContract {
    async fn new(max_replica_lag: Duration) -> BeforeTheContract {
        let cluster = replicated();
        let db = cluster.primary.create_database().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let migrations = write_set(dir.path());
        let client = client(db.url()).await;
        let watcher = plain_client(&cluster.primary.url()).await;
        let set = BeforeTheContract {
            client,
            watcher,
            migrations,
            max_replica_lag,
            _dir: dir,
            _db: db,
            cluster,
        };
        set.migrator()
            .up(&set.client, UpTo::Version(3))
            .await
            .unwrap();
        set
    }

    fn migrator(&self) -> Migrator<'_> {
        let config = MigratorConfig {
            max_replica_lag: Some(self.max_replica_lag),
            ..config()
        };
        Migrator::new(&self.migrations, config).unwrap()
    }
}

#[tokio::test]
async fn a_contract_waits_for_a_lagging_replica_and_applies_once_it_caught_up() {
    let limit = Duration::from_millis(200);
    let set = BeforeTheContract::new(limit).await;
    let (cluster, client, watcher) = (&set.cluster, &set.client, &set.watcher);
    let migrator = set.migrator();

    cluster
        .replica
        .psql("postgres", "SELECT pg_wal_replay_pause()")
        .unwrap();
    client
        .batch_execute("INSERT INTO items (id, v, v2) VALUES (1, 1, 1)")
        .await
        .unwrap();
    // While replay is paused the primary's replay_lag grows with each status report of the
    // standby (wal_receiver_status_interval = 1s on scratch replicas).
    wait_until(
        watcher,
        "the standby's replay lag exceeds 200 ms",
        "SELECT coalesce(bool_or(replay_lag > interval '200 milliseconds'), false) \
         FROM pg_stat_replication",
    )
    .await;

    let failed = migrator
        .up(client, UpTo::All)
        .await
        .expect_err("the replica is behind");
    let (version, _, failure) = gate_failure(failed.error());
    assert_eq!(*version, 4);
    match failure {
        GateFailure::ReplicaLag {
            replica,
            lag,
            bytes_behind,
            limit: reported_limit,
        } => {
            assert_eq!(
                Some(replica.application_name.as_str()),
                cluster.replica.replica_name()
            );
            assert_eq!(replica.client_addr.as_deref(), Some("127.0.0.1"));
            assert!(*lag > limit, "{lag:?}");
            assert!(*bytes_behind > 0);
            assert_eq!(*reported_limit, limit);
        }
        other => panic!("expected ReplicaLag, got {other:?}"),
    }
    let name = cluster.replica.replica_name().unwrap();
    assert!(failed.to_string().contains(name), "{failed}");
    assert!(old_column_exists(client).await);

    cluster
        .replica
        .psql("postgres", "SELECT pg_wal_replay_resume()")
        .unwrap();
    wait_until(
        watcher,
        "the standby has replayed everything",
        "SELECT coalesce(bool_and(replay_lsn >= pg_current_wal_lsn()), false) \
         FROM pg_stat_replication",
    )
    .await;
    let report = migrator.up(client, UpTo::All).await.expect("caught up");
    assert_eq!(report.versions(), vec![4]);
    assert!(!old_column_exists(client).await);
}

#[tokio::test]
async fn a_role_that_cannot_see_the_replay_lag_is_refused_not_waved_through() {
    let cluster = replicated();
    let primary = &cluster.primary;
    // A deploy role owning its database (so it owns what it creates in `public`), without
    // pg_monitor: pg_stat_replication shows it NULL state, positions and lags.
    primary
        .psql("postgres", "CREATE ROLE gate_deployer LOGIN")
        .unwrap();
    primary
        .psql("postgres", "CREATE DATABASE gate_app OWNER gate_deployer")
        .unwrap();
    let url = format!(
        "postgres://gate_deployer@{}:{}/gate_app",
        primary.host(),
        primary.port()
    );
    let client = connect(&url, &config()).await.expect("connect");
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path());
    let migrator = Migrator::new(&migrations, config()).unwrap();
    let failed = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("lag not visible");
    assert_eq!(failed.report.versions(), vec![1, 2, 3]);
    match gate_failure(failed.error()).2 {
        GateFailure::ReplicaLagUnknown { replica, role } => {
            assert_eq!(role, "gate_deployer");
            assert_eq!(
                Some(replica.application_name.as_str()),
                cluster.replica.replica_name()
            );
        }
        other => panic!("expected ReplicaLagUnknown, got {other:?}"),
    }
    assert!(failed.to_string().contains("pg_monitor"), "{failed}");
    assert!(old_column_exists(&client).await);

    // With pg_monitor the same role sees the lag, and the caught-up replica lets it pass.
    primary
        .psql("postgres", "GRANT pg_monitor TO gate_deployer")
        .unwrap();
    let report = migrator.up(&client, UpTo::All).await.expect("lag visible");
    assert_eq!(report.versions(), vec![4]);
}

/// `replay_lag` keeps its last value while replay is paused: a small, stale lag must not let
/// a contract through while the replica has not replayed what was written before it.
#[tokio::test]
async fn a_paused_replica_with_a_stale_small_lag_refuses_the_contract() {
    let limit = Duration::from_secs(2);
    let set = BeforeTheContract::new(limit).await;
    let (cluster, client, watcher) = (&set.cluster, &set.client, &set.watcher);
    let migrator = set.migrator();
    // A measured, small lag exists before the pause: the stale value the old gate trusted.
    client
        .batch_execute("INSERT INTO items (id, v, v2) VALUES (1, 1, 1)")
        .await
        .unwrap();
    wait_until(
        watcher,
        "the standby reported a replay lag",
        "SELECT coalesce(bool_and(replay_lag IS NOT NULL AND replay_lag < interval '2 seconds'), false) \
         FROM pg_stat_replication",
    )
    .await;
    cluster
        .replica
        .psql("postgres", "SELECT pg_wal_replay_pause()")
        .unwrap();
    client
        .batch_execute(
            "INSERT INTO items (id, v, v2) SELECT g, g, g FROM generate_series(2, 2001) g",
        )
        .await
        .unwrap();

    let failed = migrator
        .up(client, UpTo::All)
        .await
        .expect_err("replay is paused");
    match gate_failure(failed.error()).2 {
        GateFailure::ReplicaLag {
            bytes_behind, lag, ..
        } => {
            assert!(*bytes_behind > 0);
            assert!(*lag >= limit, "{lag:?}");
        }
        other => panic!("expected ReplicaLag, got {other:?}"),
    }
    assert!(old_column_exists(client).await);

    cluster
        .replica
        .psql("postgres", "SELECT pg_wal_replay_resume()")
        .unwrap();
    let report = migrator.up(client, UpTo::All).await.expect("replayed");
    assert_eq!(report.versions(), vec![4]);
}

/// The recipe the refusals give works: after rows in the old shape appear, the gate and a
/// failed verify name `migrate backfill rerun 3` (not `up --to 3`, which has nothing to do
/// for an applied backfill); the re-run fills exactly those rows in batches, verifies, keeps
/// the history row, and the contract then applies.
#[tokio::test]
async fn rerunning_an_applied_backfill_fills_the_rows_the_gate_names() {
    let (_db, _dir, migrations, client) = items_in_the_old_shape().await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(3)).await.unwrap();
    let applied_at = "SELECT executed_at::text FROM schema_migrations WHERE version = 3";
    let history_before: String = client.query_one(applied_at, &[]).await.unwrap().get(0);
    // The old release writes rows in the old shape, one of them past the largest key.
    client
        .batch_execute("INSERT INTO items (id, v) VALUES (1000, 1), (1001, 2), (1002, 3)")
        .await
        .unwrap();

    let failed = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("rows left");
    assert!(matches!(
        gate_failure(failed.error()).2,
        GateFailure::BackfillRowsRemain { remaining: 3, .. }
    ));
    assert!(
        failed.to_string().contains("`migrate backfill rerun 3`"),
        "{failed}"
    );
    assert!(!failed.to_string().contains("up --to"), "{failed}");

    // A failed verify clears verified_at: the gate then says "not verified", and for an
    // applied backfill it gives the re-run, not `up --to`, which has nothing to do.
    assert_eq!(
        migrator.verify_backfills(&client, None).await.unwrap()[0].remaining,
        Some(3)
    );
    let failed = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("unverified");
    assert_eq!(
        gate_failure(failed.error()).2,
        &GateFailure::BackfillsNotVerified {
            versions: vec![3],
            files: vec!["0003_items_v2.backfill.sql".into()],
            applied: vec![3],
        }
    );
    let message = failed.to_string();
    assert!(message.contains("`migrate backfill rerun 3`"), "{message}");
    assert!(!message.contains("up --to"), "{message}");
    assert!(
        migrator
            .up(&client, UpTo::Version(3))
            .await
            .unwrap()
            .nothing_to_do()
    );

    let rerun = migrator.rerun_backfill(&client, 3).await.unwrap();
    assert_eq!((rerun.version, rerun.rows_done), (3, 3));
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM items WHERE v2 IS DISTINCT FROM v"
        )
        .await,
        0
    );
    let state = migrator.backfills(&client).await.unwrap().remove(0);
    assert!(state.verified_at.is_some() && state.finished_at.is_some());
    assert_eq!(state.rows_done, Some(3));
    let history_after: String = client.query_one(applied_at, &[]).await.unwrap().get(0);
    assert_eq!(history_after, history_before);
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);

    // The lock is released: the contract runs now.
    let report = migrator.up(&client, UpTo::All).await.expect("filled");
    assert_eq!(report.versions(), vec![4]);
    assert!(!old_column_exists(&client).await);
}

/// A re-run refuses what it cannot re-run, changing nothing: a version that is not a
/// backfill, and a backfill not applied yet (whose recipe is `up`).
#[tokio::test]
async fn a_rerun_refuses_a_pending_backfill_and_a_non_backfill() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path());
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(2)).await.unwrap();
    client
        .batch_execute("INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 20) g")
        .await
        .unwrap();
    for version in [2, 4, 99] {
        let error = migrator.rerun_backfill(&client, version).await.unwrap_err();
        assert!(
            matches!(error, RuntimeError::NotABackfill { version: v } if v == version),
            "{error}"
        );
    }
    let error = migrator.rerun_backfill(&client, 3).await.unwrap_err();
    assert!(
        matches!(&error, RuntimeError::BackfillNotApplied { version: 3, .. }),
        "{error}"
    );
    assert!(error.to_string().contains("`migrate up --to 3`"), "{error}");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM items WHERE v2 IS NOT NULL").await,
        0
    );
    assert_eq!(history_versions(&client).await, vec![1, 2]);
}
