//! Per-migration overhead of `Migrator::up`, next to a floor measured in the same run.
//!
//! Applies N small migrations (`CREATE TABLE IF NOT EXISTS t_i (id bigint PRIMARY KEY)`, one
//! per file, transactional) to an empty scratch database, and compares with:
//! - floor: one `psql` session running the same N files, each wrapped in `BEGIN;` / `COMMIT;`
//!   (`\i file`): the same statements and transactions with no bookkeeping at all;
//! - for reference: `psql -1 -f file`, one process and connection per file.
//!
//! Each figure is the median (and the best) of a few rounds, each on a fresh database,
//! alternating which side goes first.
//! Run: `cargo bench -p migrate-core --bench apply` (env `APPLY_BENCH_N` overrides N = 500).

use std::borrow::Cow;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use migrate_core::runtime::{Migrator, MigratorConfig, UpTo, connect};
use migrate_core::{Checksum, Migration, Migrations, Phase, Section, Statement, TransactionMode};
use migrate_scratch::{ScratchCluster, ScratchDatabase};

const ROUNDS: usize = 7;

fn file_text(index: usize) -> String {
    format!("CREATE TABLE IF NOT EXISTS t_{index} (id bigint PRIMARY KEY);\n")
}

fn migrations(count: usize) -> Migrations {
    let list: Vec<Migration> = (1..=count)
        .map(|index| {
            let text = file_text(index);
            Migration {
                version: index as u64,
                name: Cow::Owned(format!("t_{index}")),
                phase: Phase::Expand,
                file_name: Cow::Owned(format!("{index:04}_t_{index}.sql")),
                checksum: Checksum::of_file(text.as_bytes()),
                up: Section {
                    statements: Cow::Owned(vec![Statement {
                        sql: Cow::Owned(text.trim_end().trim_end_matches(';').to_owned()),
                        line: 1,
                        column: 1,
                        non_transactional: false,
                    }]),
                    mode: TransactionMode::Transactional,
                    file_name: None,
                },
                down: None,
                requires: None,
                backfill: None,
                compare: None,
                compare_line: None,
                requires_compare: false,
                replaces: Default::default(),
                analysis: None,
            }
        })
        .collect();
    Migrations::new("/nonexistent", list).expect("distinct versions")
}

fn psql(cluster: &ScratchCluster, db: &ScratchDatabase) -> Command {
    let mut command = Command::new(cluster.binaries().program("psql"));
    command
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            db.host(),
            "-U",
            "postgres",
        ])
        .arg("-p")
        .arg(db.port().to_string())
        .arg("-d")
        .arg(db.name())
        .env("PGSSLMODE", "disable");
    command
}

fn check(status: std::io::Result<std::process::Output>) {
    let output = status.expect("psql runs");
    assert!(
        output.status.success(),
        "psql failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

fn floor_one_session(cluster: &ScratchCluster, dir: &Path, count: usize) -> Duration {
    let db = cluster.create_database().expect("db");
    let mut script = String::new();
    for index in 1..=count {
        script.push_str(&format!(
            "BEGIN;\n\\i {}\nCOMMIT;\n",
            dir.join(format!("{index:04}_t_{index}.sql")).display()
        ));
    }
    let script_path = dir.join(format!("floor_{}.sql", db.name()));
    std::fs::write(&script_path, script).expect("script");
    let started = Instant::now();
    check(psql(cluster, &db).arg("-f").arg(&script_path).output());
    started.elapsed()
}

fn floor_process_per_file(cluster: &ScratchCluster, dir: &Path, count: usize) -> Duration {
    let db = cluster.create_database().expect("db");
    let started = Instant::now();
    for index in 1..=count {
        check(
            psql(cluster, &db)
                .arg("-1")
                .arg("-f")
                .arg(dir.join(format!("{index:04}_t_{index}.sql")))
                .output(),
        );
    }
    started.elapsed()
}

async fn migrate(cluster: &ScratchCluster, set: &Migrations) -> Duration {
    let db = cluster.create_database().expect("db");
    let config = MigratorConfig::default();
    let url = format!("{}?sslmode=disable", db.url());
    let client = connect(&url, &config).await.expect("connect");
    let migrator = Migrator::new(set, config).expect("config");
    let started = Instant::now();
    let report = migrator.up(&client, UpTo::All).await.expect("up");
    let elapsed = started.elapsed();
    assert_eq!(report.applied.len(), set.len());
    elapsed
}

fn median(mut values: Vec<Duration>) -> Duration {
    values.sort();
    values[values.len() / 2]
}

fn per_migration_ms(total: Duration, count: usize) -> f64 {
    total.as_secs_f64() * 1000.0 / count as f64
}

fn main() {
    // `cargo test --benches` runs this too; `cargo bench` passes `--bench`.
    if !std::env::args().any(|arg| arg == "--bench") {
        println!("apply bench: skipped (run with cargo bench)");
        return;
    }
    let count: usize = std::env::var("APPLY_BENCH_N")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(500);
    let cluster = ScratchCluster::start().expect("scratch cluster");
    let files = tempfile::tempdir().expect("tempdir");
    for index in 1..=count {
        std::fs::write(
            files.path().join(format!("{index:04}_t_{index}.sql")),
            file_text(index),
        )
        .expect("write file");
    }
    let set = migrations(count);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");

    let mut floor = Vec::new();
    let mut ours = Vec::new();
    for round in 0..ROUNDS {
        // Alternate the order so neither side always runs on a warmer server.
        if round % 2 == 0 {
            floor.push(floor_one_session(&cluster, files.path(), count));
            ours.push(runtime.block_on(migrate(&cluster, &set)));
        } else {
            ours.push(runtime.block_on(migrate(&cluster, &set)));
            floor.push(floor_one_session(&cluster, files.path(), count));
        }
    }
    let render = |rounds: &[Duration]| {
        rounds
            .iter()
            .map(|d| format!("{:.3}", per_migration_ms(*d, count)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let floor_rounds = render(&floor);
    let ours_rounds = render(&ours);
    let floor_best = per_migration_ms(*floor.iter().min().expect("rounds"), count);
    let ours_best = per_migration_ms(*ours.iter().min().expect("rounds"), count);
    let per_file = floor_process_per_file(&cluster, files.path(), count);

    let floor_ms = per_migration_ms(median(floor), count);
    let ours_ms = per_migration_ms(median(ours), count);
    println!(
        "apply {count} migrations (CREATE TABLE IF NOT EXISTS t_i (id bigint PRIMARY KEY)), median of {ROUNDS}:"
    );
    println!("  floor, one psql session, BEGIN/COMMIT per file: {floor_ms:.3} ms/migration");
    println!("  migrate-core Migrator::up:                      {ours_ms:.3} ms/migration");
    println!(
        "  ratio: {:.2}x the floor (target <= 1.30x)",
        ours_ms / floor_ms
    );
    println!(
        "  best rounds: floor {floor_best:.3} ms, migrate {ours_best:.3} ms ({:.2}x)",
        ours_best / floor_best
    );
    println!("  rounds (ms/migration): floor [{floor_rounds}], migrate [{ours_rounds}]");
    println!(
        "  reference, psql -1 -f per file (process + connection each): {:.3} ms/migration",
        per_migration_ms(per_file, count)
    );
}
