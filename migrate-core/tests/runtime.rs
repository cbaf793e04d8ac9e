//! The runtime against a real PostgreSQL (a scratch cluster; one database per test).

mod common;

use std::time::{Duration, Instant};

use common::*;
use migrate_core::TransactionMode;
use migrate_core::runtime::{MigrationState, Migrator, MigratorConfig, RuntimeError, UpTo};
use tokio_postgres::error::SqlState;

fn basic_set() -> Vec<migrate_core::Migration> {
    vec![
        tx(
            1,
            "users",
            &["CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL)"],
            &["DROP TABLE users"],
        ),
        tx(
            2,
            "users_name",
            &[
                "ALTER TABLE users ADD COLUMN name text",
                "COMMENT ON COLUMN users.name IS 'display name; may be null'",
            ],
            &["ALTER TABLE users DROP COLUMN name"],
        ),
        tx(
            3,
            "orders",
            &["CREATE TABLE orders (id bigint PRIMARY KEY, user_id bigint REFERENCES users)"],
            &["DROP TABLE orders"],
        ),
    ]
}

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

#[tokio::test]
async fn drift_is_refused_naming_the_version() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    Migrator::new(&migrations, config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");

    let mut edited = basic_set();
    edited[1] = tx(
        2,
        "users_name",
        &["ALTER TABLE users ADD COLUMN name varchar(100)"],
        &["ALTER TABLE users DROP COLUMN name"],
    );
    edited.push(tx(
        4,
        "later",
        &["CREATE TABLE later (id int)"],
        &["DROP TABLE later"],
    ));
    let edited = set(edited);
    let migrator = Migrator::new(&edited, config()).expect("config");
    let error = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("drift must be refused");
    assert!(error.report.nothing_to_do());
    match error.error() {
        RuntimeError::ChecksumMismatch {
            version,
            file,
            expected,
            found,
        } => {
            assert_eq!(*version, 2);
            assert_eq!(file, "0002_users_name.sql");
            assert_eq!(expected, &migrations.get(2).unwrap().checksum.to_hex());
            assert_eq!(found, &edited.get(2).unwrap().checksum.to_hex());
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);
    let status = migrator.status(&client).await.expect("status");
    assert_eq!(status.entries[1].state, MigrationState::Drifted);
}

#[tokio::test]
async fn applied_versions_unknown_to_the_binary_are_refused_naming_files_on_disk() {
    let db = database();
    let client = client(db.url()).await;
    let mut full = basic_set();
    full.push(tx(9, "x", &["CREATE TABLE x (id int)"], &["DROP TABLE x"]));
    Migrator::new(&set(full), config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");

    // A binary built before 0009_x.sql was added, run while the folder has it.
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        folder.path().join("0009_x.sql"),
        "CREATE TABLE x (id int);\n",
    )
    .unwrap();
    std::fs::write(folder.path().join("0001_users.sql"), "-- known\n").unwrap();
    let older = set_in(folder.path().to_str().unwrap(), basic_set());
    let error = Migrator::new(&older, config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect_err("unknown applied version must be refused");
    match error.error() {
        RuntimeError::UnknownApplied {
            versions,
            files_on_disk_lacking_in_binary,
        } => {
            assert_eq!(versions, &vec![9]);
            assert_eq!(
                files_on_disk_lacking_in_binary,
                &vec![folder.path().join("0009_x.sql")]
            );
        }
        other => panic!("expected UnknownApplied, got {other:?}"),
    }
    assert!(error.to_string().contains("0009_x.sql"), "{error}");
    assert!(error.to_string().contains("rebuild"), "{error}");

    // Without the folder the error still names the version.
    let error = Migrator::new(&set(basic_set()), config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect_err("refused");
    assert!(matches!(
        error.error(),
        RuntimeError::UnknownApplied { versions, files_on_disk_lacking_in_binary }
            if versions == &vec![9] && files_on_disk_lacking_in_binary.is_empty()
    ));

    let ignoring = MigratorConfig {
        ignore_missing: true,
        ..config()
    };
    let report = Migrator::new(&set(basic_set()), ignoring)
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("ignore_missing proceeds");
    assert!(report.nothing_to_do());
}

#[tokio::test]
async fn out_of_order_pending_is_refused_and_applies_when_allowed() {
    let db = database();
    let client = client(db.url()).await;
    let mut first = basic_set();
    first.remove(1); // 1 and 3 applied, 2 arrives later (a merged branch).
    Migrator::new(&set(first), config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");

    let full = set(basic_set());
    let error = Migrator::new(&full, config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect_err("out of order refused");
    assert!(matches!(
        error.error(),
        RuntimeError::OutOfOrder { pending, newest_applied: 3 } if pending == &vec![2]
    ));
    assert_eq!(history_versions(&client).await, vec![1, 3]);

    let allowed = MigratorConfig {
        allow_out_of_order: true,
        ..config()
    };
    let report = Migrator::new(&full, allowed)
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("allowed");
    assert_eq!(report.versions(), vec![2]);
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);
}

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

async fn lock_timeout_fixture() -> (
    migrate_scratch::ScratchDatabase,
    tokio_postgres::Client,
    migrate_core::Migrations,
) {
    let db = database();
    let setup = plain_client(db.url()).await;
    setup
        .batch_execute(
            "CREATE TABLE t (id int PRIMARY KEY); INSERT INTO t SELECT generate_series(1, 10)",
        )
        .await
        .expect("table");
    let migrations = set(vec![tx(
        1,
        "t_note",
        &["ALTER TABLE t ADD COLUMN note text"],
        &["ALTER TABLE t DROP COLUMN note"],
    )]);
    (db, setup, migrations)
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
    match error.error() {
        RuntimeError::LockRetriesExhausted {
            location, attempts, ..
        } => {
            assert_eq!(*attempts, 3);
            assert_eq!(location.version, 1);
        }
        other => panic!("expected LockRetriesExhausted, got {other:?}"),
    }
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

#[tokio::test]
async fn down_refuses_before_doing_anything_when_a_down_part_is_missing() {
    let db = database();
    let client = client(db.url()).await;
    let mut list = basic_set();
    list.push(common::migration(
        4,
        "irreversible",
        &["CREATE TABLE audit (id int)"],
        None,
        TransactionMode::Transactional,
    ));
    let migrations = set(list);
    let migrator = Migrator::new(&migrations, config()).expect("config");
    migrator.up(&client, UpTo::All).await.expect("up");
    let error = migrator.down(&client, 0).await.expect_err("4 has no down");
    assert!(matches!(error.error(), RuntimeError::NoDownPart { versions } if versions == &vec![4]));
    assert!(error.report.nothing_to_do());
    assert_eq!(history_versions(&client).await, vec![1, 2, 3, 4]);

    let partial = set(basic_set());
    let error = Migrator::new(&partial, config())
        .expect("config")
        .down(&client, 2)
        .await
        .expect_err("4 is unknown to this set");
    assert!(matches!(error.error(), RuntimeError::UnknownApplied { .. }));
}

#[tokio::test]
async fn down_reverts_newest_first_and_deletes_history_rows() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    let migrator = Migrator::new(&migrations, config()).expect("config");
    migrator.up(&client, UpTo::All).await.expect("up");
    let report = migrator.down(&client, 1).await.expect("down");
    assert_eq!(report.versions(), vec![3, 2]);
    assert_eq!(history_versions(&client).await, vec![1]);
    assert!(
        migrator
            .down(&client, 1)
            .await
            .expect("again")
            .nothing_to_do()
    );
}

fn dump_schema(db: &migrate_scratch::ScratchDatabase) -> String {
    let output = std::process::Command::new(cluster().binaries().program("pg_dump"))
        .args([
            "--schema-only",
            "--no-owner",
            "-h",
            db.host(),
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(db.port().to_string())
        .arg(db.name())
        .env("PGSSLMODE", "disable")
        .output()
        .expect("pg_dump");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // pg_dump 15.14+ brackets the dump with `\restrict <random key>` lines.
    String::from_utf8(output.stdout)
        .expect("utf8 dump")
        .lines()
        .filter(|line| !line.starts_with("\\restrict") && !line.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn schema_set() -> migrate_core::Migrations {
    set(vec![
        tx(
            1,
            "users",
            &[
                "CREATE TABLE users (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                 email text NOT NULL)",
                "CREATE FUNCTION users_touch() RETURNS trigger LANGUAGE plpgsql AS $$\n\
                 BEGIN NEW.email := lower(NEW.email); RETURN NEW; END;\n$$",
                "CREATE TRIGGER users_touch BEFORE INSERT ON users \
                 FOR EACH ROW EXECUTE FUNCTION users_touch()",
            ],
            &[
                "DROP TRIGGER users_touch ON users",
                "DROP FUNCTION users_touch()",
                "DROP TABLE users",
            ],
        ),
        tx(
            2,
            "users_verified",
            &["ALTER TABLE users ADD COLUMN verified_at timestamptz"],
            &["ALTER TABLE users DROP COLUMN verified_at"],
        ),
        common::migration(
            3,
            "users_email_idx",
            &["CREATE UNIQUE INDEX CONCURRENTLY users_email_idx ON users (email)"],
            Some(&["DROP INDEX CONCURRENTLY IF EXISTS users_email_idx"]),
            TransactionMode::Autocommit,
        ),
        tx(
            4,
            "active_users",
            &[
                "CREATE VIEW active_users AS SELECT id, email FROM users WHERE verified_at IS NOT NULL",
            ],
            &["DROP VIEW active_users"],
        ),
    ])
}

#[tokio::test]
async fn up_down_up_gives_the_schema_of_a_single_up() {
    let migrations = schema_set();
    let once = database();
    let once_client = client(once.url()).await;
    Migrator::new(&migrations, config())
        .expect("config")
        .up(&once_client, UpTo::All)
        .await
        .expect("single up");

    let cycled = database();
    let cycled_client = client(cycled.url()).await;
    let migrator = Migrator::new(&migrations, config()).expect("config");
    migrator.up(&cycled_client, UpTo::All).await.expect("up");
    let down = migrator.down(&cycled_client, 0).await.expect("down");
    assert_eq!(down.versions(), vec![4, 3, 2, 1]);
    assert_eq!(
        scalar_i64(
            &cycled_client,
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = 'public' AND c.relname <> 'schema_migrations' \
               AND c.relname NOT LIKE 'schema_migrations_%'"
        )
        .await,
        0,
        "down to 0 left objects behind"
    );
    migrator
        .up(&cycled_client, UpTo::All)
        .await
        .expect("up again");

    let (a, b) = (dump_schema(&once), dump_schema(&cycled));
    assert!(a.contains("users_email_idx"), "{a}");
    assert_eq!(a, b);
}

#[tokio::test]
async fn a_custom_schema_qualified_history_table_is_created_quoted() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    let custom = MigratorConfig {
        history_table: "ops.Deploy_History".into(),
        ..config()
    };
    let migrator = Migrator::new(&migrations, custom).expect("config");
    migrator.up(&client, UpTo::All).await.expect("up");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM ops.\"Deploy_History\"").await,
        3
    );
    assert!(
        migrator
            .up(&client, UpTo::All)
            .await
            .expect("again")
            .nothing_to_do()
    );

    for bad in ["ops.x; DROP TABLE users", "a.b.c", "\"quoted\""] {
        let invalid = MigratorConfig {
            history_table: bad.into(),
            ..config()
        };
        assert!(matches!(
            Migrator::new(&migrations, invalid),
            Err(RuntimeError::InvalidIdentifier { .. })
        ));
    }
}

#[tokio::test]
async fn status_reports_versions_missing_from_the_files() {
    let db = database();
    let client = client(db.url()).await;
    let mut full = basic_set();
    full.push(tx(
        7,
        "gone",
        &["CREATE TABLE gone (id int)"],
        &["DROP TABLE gone"],
    ));
    Migrator::new(&set(full), config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");

    let status = Migrator::new(&set(basic_set()), config())
        .expect("config")
        .status(&client)
        .await
        .expect("status");
    let states: Vec<(u64, MigrationState)> = status
        .entries
        .iter()
        .map(|e| (e.version, e.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (1, MigrationState::Applied),
            (2, MigrationState::Applied),
            (3, MigrationState::Applied),
            (7, MigrationState::MissingFromFiles),
        ]
    );
    assert!(status.entries.iter().all(|e| e.applied_at.is_some()));
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

/// A typo in the history table's name must not start an empty history and apply every
/// migration again.
#[tokio::test]
async fn a_history_table_name_with_a_typo_is_refused_when_ours_exists_elsewhere() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    Migrator::new(&migrations, config())
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect("up");
    for typo in ["public.schema_migration", "opps.schema_migrations"] {
        let mistyped = Migrator::new(
            &migrations,
            MigratorConfig {
                history_table: typo.into(),
                ..config()
            },
        )
        .unwrap();
        let error = mistyped
            .up(&client, UpTo::All)
            .await
            .expect_err("typo")
            .into_error();
        match &error {
            RuntimeError::OtherHistoryTable { found, .. } => {
                assert_eq!(found, &["public.schema_migrations"])
            }
            other => panic!("expected OtherHistoryTable, got {other:?}"),
        }
        assert!(error.to_string().contains("--history-table"), "{error}");
        assert!(matches!(
            mistyped.status(&client).await,
            Err(RuntimeError::OtherHistoryTable { .. })
        ));
    }
    // Nothing was created or applied twice.
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'opps'"
        )
        .await,
        0
    );
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);
}

/// `status` tells a failed statement-by-statement migration (some statements committed) and
/// a half-run backfill from a plain pending one.
#[tokio::test]
async fn status_shows_partly_applied_migrations_and_backfills_in_progress() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(vec![
        tx(
            1,
            "t",
            &["CREATE TABLE t (id bigint PRIMARY KEY, a integer)"],
            &["DROP TABLE t"],
        ),
        migration(
            2,
            "indexes",
            &[
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a ON t (a)",
                "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_b ON t (no_such_column)",
            ],
            None,
            TransactionMode::Autocommit,
        ),
    ]);
    let migrator = Migrator::new(&migrations, config()).unwrap();
    let failed = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("bad column");
    assert_eq!(failed.report.versions(), vec![1]);

    let status = migrator.status(&client).await.unwrap();
    let entry = &status.entries[1];
    assert_eq!(entry.state, MigrationState::PartlyApplied);
    let detail = entry.detail.as_deref().unwrap();
    assert!(
        detail.contains("failed after 1 of 2 statement(s)"),
        "{detail}"
    );
    assert!(detail.contains("no_such_column"), "{detail}");
    assert!(status.to_string().contains("partly applied"), "{status}");
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
