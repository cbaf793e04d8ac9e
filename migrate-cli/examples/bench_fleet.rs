//! Benchmark (not a test) of `migrate fleet`: `fleet status` and a small rollout over 100 and
//! 500 targets, against the same work done one `migrate` process at a time. Run it through
//! `scripts/bench-fleet.sh`, which builds the `migrate` binary it measures.
//!
//! Targets are tenant schemas, 50 to a database, on one scratch cluster (500 databases would
//! take ~4 GB of disk for their catalogs alone). Each size gets two identical groups of
//! databases: one rolled by `migrate fleet up --schemas 'tenant_*'`, the other by one
//! `migrate up --history-table tenant_NNN.schema_migrations` process per schema, with that
//! schema first on search_path (the URL's `options`). Their history tables are created
//! first (by a fleet run of an empty set): the runtime refuses to start a second history
//! table in a database unless it exists. `status` is then read from the rolled group by
//! `migrate fleet status` and by one `migrate status` process per schema.
//!
//! usage: cargo run -p migrate-cli --example bench_fleet -- <path to the migrate binary>

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use migrate_scratch::{ScratchCluster, ScratchDatabase};

const SCHEMAS_PER_DATABASE: usize = 50;

fn main() {
    let migrate = PathBuf::from(std::env::args().nth(1).expect("path to the migrate binary"));
    let work = tempfile::tempdir().expect("tempdir");
    let set = work.path().join("migrations");
    let empty = work.path().join("empty");
    std::fs::create_dir(&set).unwrap();
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(
        set.join("0001_items.expand.sql"),
        "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, note text);\n\
         -- migrate:down\nDROP TABLE IF EXISTS items;\n",
    )
    .unwrap();
    std::fs::write(
        set.join("0002_items_note.expand.sql"),
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_note ON items (note);\n\
         -- migrate:down\nDROP INDEX CONCURRENTLY IF EXISTS items_note;\n",
    )
    .unwrap();
    let cluster = ScratchCluster::start().expect("scratch cluster");
    println!("load before: {}", load());
    println!(
        "{:>7}  {:<7}  {:>9}  {:>9}  {:>6}",
        "targets", "command", "fleet", "serial", "ratio"
    );
    for targets in [100, 500] {
        let fleet_group = Group::new(&cluster, targets, work.path(), "fleet");
        let serial_group = Group::new(&cluster, targets, work.path(), "serial");

        let fleet_up = time(|| {
            run(
                &migrate,
                &set,
                &["fleet", "up", "--schemas", "tenant_*", "--parallel", "8"],
                Some(&fleet_group.file),
            )
        });
        // Not measured: the serial group's history tables.
        run(
            &migrate,
            &empty,
            &["fleet", "up", "--schemas", "tenant_*"],
            Some(&serial_group.file),
        );
        let serial_up = time(|| {
            for (url, schema) in serial_group.targets() {
                run_on(&migrate, &set, "up", &url, &schema);
            }
        });
        report(targets, "up", fleet_up, serial_up);

        let fleet_status = time(|| {
            run(
                &migrate,
                &set,
                &["fleet", "status", "--schemas", "tenant_*"],
                Some(&fleet_group.file),
            )
        });
        let serial_status = time(|| {
            for (url, schema) in fleet_group.targets() {
                run_on(&migrate, &set, "status", &url, &schema);
            }
        });
        report(targets, "status", fleet_status, serial_status);
    }
    println!("load after: {}", load());
}

/// Databases of 50 tenant schemas each, and their targets file.
struct Group {
    databases: Vec<ScratchDatabase>,
    file: PathBuf,
}

impl Group {
    fn new(cluster: &ScratchCluster, targets: usize, dir: &Path, name: &str) -> Group {
        let databases: Vec<ScratchDatabase> = (0..targets / SCHEMAS_PER_DATABASE)
            .map(|_| cluster.create_database().expect("database"))
            .collect();
        let create: String = (0..SCHEMAS_PER_DATABASE)
            .map(|i| format!("CREATE SCHEMA tenant_{i:03};"))
            .collect();
        let mut lines = String::new();
        for db in &databases {
            cluster.psql(db.name(), &create).expect("schemas");
            lines.push_str(&format!("{}?sslmode=disable\n", db.url()));
        }
        let file = dir.join(format!("{name}-{targets}.txt"));
        std::fs::write(&file, lines).unwrap();
        Group { databases, file }
    }

    /// (URL with the schema first on search_path, schema) of every target.
    fn targets(&self) -> Vec<(String, String)> {
        let mut targets = Vec::new();
        for db in &self.databases {
            for i in 0..SCHEMAS_PER_DATABASE {
                let schema = format!("tenant_{i:03}");
                let url = format!(
                    "{}?sslmode=disable&options=-c%20search_path%3D{schema}",
                    db.url()
                );
                targets.push((url, schema));
            }
        }
        targets
    }
}

fn run(migrate: &Path, dir: &Path, args: &[&str], targets: Option<&Path>) {
    let mut command = Command::new(migrate);
    command.arg("--dir").arg(dir).args(args);
    if let Some(targets) = targets {
        command.arg("--targets").arg(targets);
    }
    check(command);
}

/// One `migrate` process on one schema target.
fn run_on(migrate: &Path, dir: &Path, subcommand: &str, url: &str, schema: &str) {
    let mut command = Command::new(migrate);
    command
        .arg("--dir")
        .arg(dir)
        .arg(subcommand)
        .arg("--database-url")
        .arg(url)
        .arg("--history-table")
        .arg(format!("{schema}.schema_migrations"));
    check(command);
}

fn check(mut command: Command) {
    let output = command
        .env_remove("DATABASE_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run migrate");
    assert!(
        output.status.success(),
        "{command:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

fn time(work: impl FnOnce()) -> Duration {
    let started = Instant::now();
    work();
    started.elapsed()
}

fn report(targets: usize, command: &str, fleet: Duration, serial: Duration) {
    println!(
        "{targets:>7}  {command:<7}  {:>8.2}s  {:>8.2}s  {:>5.3}x",
        fleet.as_secs_f64(),
        serial.as_secs_f64(),
        fleet.as_secs_f64() / serial.as_secs_f64()
    );
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}
