//! Throughput of `Migrator::compare` (`migrate verify --compare`) next to a plain
//! `count(*)` of the same table, measured in the same run on a scratch cluster.
//!
//! Two shapes of N rows (env `COMPARE_BENCH_ROWS`, default 1,000,000):
//! - two tables: `users_legacy(id bigint primary key, email text)` and its copy
//!   `users_modern(id, email_normalized)` with `map=lower(email)`;
//! - one table: `users(id, email, email_normalized)`, the two column lists of one row.
//!
//! Each figure is the median of a few rounds (the tables are in shared buffers after the
//! first; the compare restarts from the first key each round). The compare reads both
//! tables (two shapes: one scan or two), the count one; both are printed as source rows/s.
//! Run: `cargo bench -p migrate-core --bench compare`.

use std::path::Path;
use std::time::{Duration, Instant};

use migrate_core::Migrations;
use migrate_core::runtime::{CompareOptions, Migrator, MigratorConfig, UpTo, connect};
use migrate_scratch::ScratchCluster;

const ROUNDS: usize = 3;

fn set(dir: &Path) -> Migrations {
    std::fs::write(
        dir.join("0001_tables.sql"),
        "CREATE TABLE IF NOT EXISTS users_legacy (id bigint PRIMARY KEY, email text NOT NULL);\n\
         CREATE TABLE IF NOT EXISTS users_modern (id bigint PRIMARY KEY, email_normalized text);\n\
         CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text NOT NULL, email_normalized text);\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_copy.backfill.sql"),
        "-- migrate:backfill table=users_modern key=id\n\
         -- migrate:compare source=users_legacy target=users_modern key=id columns=email_normalized map=lower(email)\n\
         UPDATE users_modern SET email_normalized = '' WHERE email_normalized IS NULL;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("0003_same.backfill.sql"),
        "-- migrate:backfill table=users key=id\n\
         -- migrate:compare source=users target=users key=id columns=email_normalized map=lower(email)\n\
         UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL;\n",
    )
    .unwrap();
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    checked.migrations(&dir.to_string_lossy())
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let rows: i64 = std::env::var("COMPARE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let cluster = ScratchCluster::start().expect("scratch cluster");
    let database = cluster.create_database().expect("scratch database");
    let dir = tempfile::tempdir().unwrap();
    let migrations = set(dir.path());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let config = MigratorConfig::default();
        let client = connect(database.url(), &config).await.unwrap();
        let migrator = Migrator::new(&migrations, config).unwrap();
        migrator.up(&client, UpTo::Version(1)).await.unwrap();
        client
            .execute(
                "INSERT INTO users_legacy SELECT g, 'User' || g || '@Example.com' FROM generate_series(1, $1::bigint) g",
                &[&rows],
            )
            .await
            .unwrap();
        client
            .batch_execute(
                "INSERT INTO users_modern SELECT id, lower(email) FROM users_legacy;\n\
                 INSERT INTO users SELECT id, email, lower(email) FROM users_legacy;",
            )
            .await
            .unwrap();
        // One statement each: VACUUM refuses to run in the implicit transaction of a batch.
        for table in ["users_legacy", "users_modern", "users"] {
            client
                .batch_execute(&format!("VACUUM ANALYZE {table}"))
                .await
                .unwrap();
        }
        let options = CompareOptions {
            restart: true,
            ..CompareOptions::default()
        };
        let per_second = |d: Duration| rows as f64 / d.as_secs_f64();
        let mut counts = Vec::new();
        let mut two = Vec::new();
        let mut one = Vec::new();
        for _ in 0..ROUNDS {
            let started = Instant::now();
            let n: i64 = client
                .query_one("SELECT count(*) FROM users_legacy", &[])
                .await
                .unwrap()
                .get(0);
            counts.push(started.elapsed());
            assert_eq!(n, rows);
            let started = Instant::now();
            let report = migrator.compare(&client, 2, &options).await.unwrap();
            two.push(started.elapsed());
            assert!(report.passed() && report.rows_compared == rows);
            let started = Instant::now();
            let report = migrator.compare(&client, 3, &options).await.unwrap();
            one.push(started.elapsed());
            assert!(report.passed() && report.rows_compared == rows);
        }
        let (count, two, one) = (median(counts), median(two), median(one));
        println!("rows: {rows}, median of {ROUNDS} rounds");
        println!(
            "count(*) of the source table:       {:>8.0} ms  {:>12.0} rows/s",
            count.as_secs_f64() * 1000.0,
            per_second(count)
        );
        println!(
            "compare, two tables (copy):         {:>8.0} ms  {:>12.0} rows/s  ({:.1}x the count)",
            two.as_secs_f64() * 1000.0,
            per_second(two),
            two.as_secs_f64() / count.as_secs_f64()
        );
        println!(
            "compare, one table (two columns):   {:>8.0} ms  {:>12.0} rows/s  ({:.1}x the count)",
            one.as_secs_f64() * 1000.0,
            per_second(one),
            one.as_secs_f64() / count.as_secs_f64()
        );
    });
}
