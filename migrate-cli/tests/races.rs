//! Many `migrate up` processes at once: against PostgreSQL directly each migration is applied
//! exactly once and every process exits 0; behind a transaction-mode PgBouncer every process
//! is refused before anything runs (the session advisory lock would protect nothing there),
//! behind a session-mode one they behave as directly.
//!
//! `MIGRATE_RACE_ROUNDS` (default 3) sets the rounds of the direct race; the campaign
//! is `MIGRATE_RACE_ROUNDS=30 cargo test -p migrate-cli --test races`.

mod common;

use std::process::Output;
use std::thread;

use common::*;
use migrate_scratch::{PoolMode, ScratchPooler};

/// Starts `count` `migrate up` processes at once on `url` and waits for all of them.
fn race(url: &str, count: usize) -> Vec<Output> {
    let handles: Vec<_> = (0..count)
        .map(|_| {
            let url = url.to_owned();
            thread::spawn(move || {
                migrate()
                    .args(["--dir"])
                    .arg(example_migrations())
                    .args(["up", "--lock-wait", "120s", "--database-url"])
                    .arg(url)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn history(db: &migrate_scratch::ScratchDatabase) -> String {
    sql(
        db,
        "SELECT coalesce(string_agg(version::text, ',' ORDER BY version), '') FROM schema_migrations",
    )
}

#[test]
fn sixteen_runners_at_once_apply_each_migration_exactly_once() {
    let rounds: usize = std::env::var("MIGRATE_RACE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    for round in 0..rounds {
        let db = database();
        let outputs = race(&url(&db), 16);
        for output in &outputs {
            assert!(
                output.status.success(),
                "round {round}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let applied: usize = outputs
            .iter()
            .map(|o| {
                let out = String::from_utf8_lossy(&o.stdout).into_owned();
                out.lines()
                    .find_map(|l| {
                        l.strip_prefix("applied ")
                            .and_then(|rest| rest.split(' ').next())
                            .and_then(|n| n.parse::<usize>().ok())
                    })
                    .unwrap_or(0)
            })
            .sum();
        assert_eq!(
            applied, 7,
            "round {round}: every migration applied once in all"
        );
        assert_eq!(history(&db), "1,2,3,4,5,6,7", "round {round}");
    }
}

#[test]
fn behind_a_transaction_pooler_every_runner_is_refused_and_nothing_runs() {
    if !ScratchPooler::available() {
        eprintln!("skipped: pgbouncer is not installed (apt-get install pgbouncer)");
        return;
    }
    let db = database();
    let pooler = ScratchPooler::start(cluster(), PoolMode::Transaction, 4).expect("pgbouncer");
    let outputs = race(&pooler.url(db.name()), 6);
    for output in &outputs {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains("transaction or statement mode"), "{stderr}");
        assert!(
            !stderr.contains("42P05") && !stderr.contains("already exists"),
            "{stderr}"
        );
    }
    assert_eq!(
        sql(
            &db,
            "SELECT to_regclass('public.schema_migrations') IS NULL"
        ),
        "t",
        "nothing ran"
    );

    let session = ScratchPooler::start(cluster(), PoolMode::Session, 8).expect("pgbouncer");
    let outputs = race(&session.url(db.name()), 6);
    for output in &outputs {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert_eq!(history(&db), "1,2,3,4,5,6,7");
}

/// The winner builds a concurrent index for several seconds (an index expression that sleeps
/// 1 ms per row) while fifteen others wait for the migration lock: `CREATE INDEX
/// CONCURRENTLY` waits for older transactions to end, and the waiters only poll the lock in
/// short transactions, so nobody deadlocks and all exit 0.
#[test]
fn runners_waiting_for_a_long_concurrent_index_build_do_not_deadlock() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_slow.sql"),
        "CREATE TABLE IF NOT EXISTS slow_items (id integer PRIMARY KEY);\n\
         CREATE OR REPLACE FUNCTION slow_key(x integer) RETURNS integer LANGUAGE plpgsql \
         IMMUTABLE AS $$ BEGIN PERFORM pg_sleep(0.001); RETURN x; END $$;\n\
         INSERT INTO slow_items SELECT g FROM generate_series(1, 2000) g ON CONFLICT DO NOTHING;\n\
         -- migrate:down\nDROP TABLE IF EXISTS slow_items;\nDROP FUNCTION IF EXISTS slow_key(integer);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_slow_index.expand.sql"),
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS slow_items_key ON slow_items ((slow_key(id)));\n\
         -- migrate:down\nDROP INDEX CONCURRENTLY IF EXISTS slow_items_key;\n",
    )
    .unwrap();
    let db = database();
    let started = std::time::Instant::now();
    let handles: Vec<_> = (0..16)
        .map(|_| {
            let (url, dir) = (url(&db), dir.path().to_owned());
            thread::spawn(move || {
                migrate()
                    .arg("--dir")
                    .arg(dir)
                    .args(["up", "--lock-wait", "120s", "--database-url"])
                    .arg(url)
                    .output()
                    .unwrap()
            })
        })
        .collect();
    for handle in handles {
        let output = handle.join().unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let took = started.elapsed();
    assert_eq!(history(&db), "1,2");
    assert_eq!(
        sql(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
        "0"
    );
    assert!(
        took > std::time::Duration::from_secs(2),
        "the build was not slow ({took:?}): the test proves nothing"
    );
}
