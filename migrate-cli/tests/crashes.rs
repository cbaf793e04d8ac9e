//! The runner killed with SIGKILL at seeded random moments (between statements, inside a
//! transactional migration, during a `CREATE INDEX CONCURRENTLY`, during a backfill), then run
//! again: every rerun converges to the schema of a clean run (`pg_dump --schema-only`
//! equal), no INVALID index remains, the history lists every migration, and the backfill
//! updated every row exactly once (its UPDATE counts in `n`).
//!
//! `MIGRATE_CRASH_TRIALS` (default 12) sets the trials; the campaign is
//! `MIGRATE_CRASH_TRIALS=100 cargo test -p migrate-cli --test crashes -- --nocapture`, which
//! prints its figures.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use migrate_scratch::ScratchDatabase;

/// The schema without the runtime's own tables.
fn schema(db: &ScratchDatabase) -> String {
    schema_of(cluster(), db)
}

fn up_command(db: &ScratchDatabase, dir: &Path) -> Command {
    let mut command = Command::new(assert_cmd::cargo::cargo_bin("migrate"));
    command
        .arg("--dir")
        .arg(dir)
        .args(["up", "--lock-wait", "120s", "--database-url"])
        .arg(url(db))
        .env_remove("DATABASE_URL")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A small seeded generator (SplitMix64): the same trial kills at the same moment.
fn random(seed: u64) -> u64 {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[test]
fn killed_runs_converge_to_the_schema_of_a_clean_run() {
    let trials: u64 = std::env::var("MIGRATE_CRASH_TRIALS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(12);
    let dir = tempfile::tempdir().unwrap();
    write_fault_set(dir.path());

    // Two clean runs: the schema to converge to, and the shortest run time (the first pays
    // for warming the cluster's caches).
    let mut clean_run = Duration::MAX;
    let mut expected = String::new();
    for _ in 0..2 {
        let clean = database();
        let started = Instant::now();
        let status = up_command(&clean, dir.path()).status().unwrap();
        clean_run = clean_run.min(started.elapsed());
        assert!(status.success(), "the clean run fails");
        expected = schema(&clean);
    }
    assert!(expected.contains("items_v_id"), "{expected}");

    let (mut killed, mut finished_first) = (0, 0);
    // Trials by how many migrations were recorded when the kill came: which one it hit.
    let mut hit = [0u32; 5];
    for trial in 0..trials {
        let db = database();
        // Kill anywhere in the first 80% of the clean run's duration: a busy machine makes
        // runs longer, rarely shorter, so nearly every trial interrupts one.
        let window = clean_run.as_micros() as u64 * 8 / 10;
        let delay = Duration::from_micros(random(trial) % window.max(1));
        let mut child = up_command(&db, dir.path()).spawn().unwrap();
        // Fault injection at a seeded moment, not synchronisation.
        std::thread::sleep(delay);
        match child.try_wait().unwrap() {
            Some(_) => finished_first += 1,
            None => {
                child.kill().unwrap(); // SIGKILL
                killed += 1;
            }
        }
        let _ = child.wait();
        let recorded: usize = if sql(
            &db,
            "SELECT to_regclass('public.schema_migrations') IS NULL",
        ) == "t"
        {
            0
        } else {
            sql(&db, "SELECT count(*) FROM schema_migrations")
                .parse()
                .unwrap()
        };
        hit[recorded.min(4)] += 1;

        let rerun = up_command(&db, dir.path()).output().unwrap();
        assert!(
            rerun.status.success(),
            "trial {trial} (kill after {delay:?}): the rerun fails: {}",
            String::from_utf8_lossy(&rerun.stderr)
        );
        let context = format!("trial {trial}, kill after {delay:?}");
        assert_eq!(
            schema(&db),
            expected,
            "{context}: schema differs from a clean run"
        );
        assert_eq!(
            sql(&db, "SELECT count(*) FROM pg_index WHERE NOT indisvalid"),
            "0",
            "{context}: an INVALID index remains"
        );
        assert_eq!(
            sql(
                &db,
                "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations"
            ),
            "1,2,3,4",
            "{context}"
        );
        assert_eq!(
            sql(&db, "SELECT count(*) FROM items WHERE n <> 1 OR NOT done"),
            "0",
            "{context}: the backfill missed a row or did one twice"
        );
        assert_eq!(
            sql(&db, "SELECT count(*) FROM items"),
            ROWS.to_string(),
            "{context}"
        );
    }
    eprintln!(
        "crash campaign: {trials} trials, {killed} runs killed mid-way, {finished_first} \
         finished before the kill; killed with 0/1/2/3/4 migrations recorded: {hit:?} (so \
         during 0001 or before, 0002 CONCURRENTLY, 0003, the 0004 backfill, after); clean run \
         {clean_run:?}; every rerun converged"
    );
    assert!(killed > 0 || trials == 0, "no trial killed a run mid-way");
}
