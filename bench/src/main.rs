//! The online-impact benchmark (`scripts/bench-online.sh`): on a scratch PostgreSQL it
//! starts itself, the same schema change (add `email_verified_at`, fill it from
//! `created_at`, index it) under pgbench at 60% of the machine's measured maximum, as a big
//! bang, with the application dual-writing while our backfill fills the old rows, through
//! the runner with its defaults, and with several `target=` values. Prints the figures and
//! writes a markdown table and an SVG chart. By default it runs issue 22's workload matrix
//! (`matrix`: six shapes of load, each with a control run, the big bang and the defaults);
//! `--shapes custom` runs the single shape set by `--clients`/`--app-writes`, with dual
//! writes and `--targets`. Not part of `cargo test`.

mod load;
mod matrix;
mod report;
mod slow;
mod timeline;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use migrate_core::runtime::{Migrator, MigratorConfig, UpTo, connect};
use migrate_scratch::ScratchCluster;
use tokio_postgres::Client;

use load::Pgbench;
use report::Setup;

/// Measures a schema change's impact on an application under load.
#[derive(Debug, Parser)]
struct Args {
    /// Rows in the `users` table.
    #[arg(long, default_value_t = 2_000_000)]
    rows: u64,
    /// pgbench clients.
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Share of the measured maximum TPS the load runs at, in percent.
    #[arg(long, default_value_t = 60)]
    load_percent: u32,
    /// Seconds of load before each change (its baseline) and after it.
    #[arg(long, default_value_t = 10)]
    baseline: u32,
    /// The `target=` values of the runner's runs beyond its default, in milliseconds.
    #[arg(long, value_delimiter = ',', default_value = "25,50,250,1000")]
    targets: Vec<u32>,
    /// Where the markdown table and the SVG go.
    #[arg(long, default_value = "docs/benchmarks")]
    out: PathBuf,
    /// Which runs to make, of control (the load alone, no change, for as long as a change
    /// lasts), big-bang, dual-write, defaults, targets (the `--targets` runs).
    #[arg(long, value_delimiter = ',', default_value = "control,big-bang,dual-write,defaults,targets",
          value_parser = ["control", "big-bang", "dual-write", "defaults", "targets"])]
    runs: Vec<String>,
    /// Prints the runner's pacing decisions (resize, back off, recover, pause) to stderr.
    #[arg(long)]
    trace: bool,
    /// The table the application's UPDATE writes (outside the dual-write run, which writes
    /// users): users, the table the change fills, whose writes meet the backfill's row locks;
    /// or accounts, a copy of users' ids and balances: the same work for the server, but no
    /// write ever waits for a batch. Comparing the two splits the backfill's cost to the
    /// application into lock waits and the rest (CPU, WAL).
    #[arg(long, default_value = "users", value_parser = ["users", "accounts"])]
    app_writes: String,
    /// The workload shapes of issue 22 to run, in the order given (each with the runs of
    /// `--runs` among control, big-bang, defaults, targets): (a) point UPDATE + SELECT by key,
    /// 4 clients; (b) the same, 16 clients; (c) the former default mix; (d) I/O-bound, the
    /// table 4x shared_buffers or more; (e) hot rows the backfill writes too; (f) with a
    /// streaming replica. `custom`: the single shape of `--clients`/`--app-writes`, with every
    /// run of `--runs`.
    #[arg(long, value_delimiter = ',', default_value = "a,b,c,d,e,f",
          value_parser = matrix::parse_shape)]
    shapes: Vec<String>,
    /// How long the control run's window lasts, in seconds. Without it: in the matrix, as
    /// long as that shape's defaults run took (the control then runs after it), so the load
    /// alone meets the same checkpoints and autovacuums a long fill does; elsewhere, and
    /// without a defaults run, 60 s.
    #[arg(long)]
    control_seconds: Option<u64>,
    /// The runner's busy target (`backfill_busy_target`: how long a batch aims to last while
    /// an application is measured), in milliseconds, instead of the runner's default (3).
    #[arg(long)]
    busy_target_ms: Option<u64>,
    /// The runner's CPU share (`backfill_max_cpu_percent`: the share of the server's CPUs
    /// everything running there, the batches included, is kept under), in percent, instead of
    /// the runner's default (75): what a faster backfill costs the application.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100))]
    max_cpu_percent: Option<u32>,
    /// The runner leaves the table's dead rows to autovacuum (`backfill_vacuum` off) instead
    /// of vacuuming the table itself as its batches go: what that costs the application.
    #[arg(long)]
    no_backfill_vacuum: bool,
    /// Also writes, per run of the matrix, `timeline-<shape>-<run>.csv` under `--out`: each
    /// second's transactions, p99 and slowest latency, WAL written and checkpoints begun.
    #[arg(long)]
    timeline: bool,
    /// `--timeline`, and what the active sessions waited on, sampled every 10 ms (a load of
    /// its own: for finding a stall, not for figures).
    #[arg(long)]
    timeline_waits: bool,
    /// A server setting for the matrix's clusters beyond the benchmark's own, as
    /// `name = value` (repeatable; e.g. `log_min_duration_statement = 40` to see which
    /// statements were slow on the server itself).
    #[arg(long = "server-setting")]
    server_settings: Vec<String>,
    /// The matrix's threshold for a slow transaction, in milliseconds: each run reports the
    /// share of pgbench's transactions over it during the fill beside the share of the
    /// application's statements whose execution the server logged over it, which tells time
    /// lost executing from time lost waiting for a CPU (pgbench's threads, a backend before it
    /// reads its statement) or in the socket.
    #[arg(long, default_value_t = 10)]
    slow_ms: u32,
    /// The folder shape (f)'s standby keeps its data in; by default `/dev/shm` where it
    /// exists, else the system's temporary folder. A standby runs on its own machine; here it
    /// shares the primary's, and on the primary's disk its replay's writes queue with the
    /// primary's WAL flushes and stall the application every few seconds (measured: a p99 of
    /// 30 ms in the baseline, before any change). A tmpfs keeps the two disks apart, as they
    /// are in production; the CPUs stay shared.
    #[arg(long)]
    replica_folder: Option<std::path::PathBuf>,
}

const SEGMENT_S: u32 = 2;

/// How long the control run's window lasts: about as long as the runner's changes at the
/// default size on the 2-core machine (53-77 s).
const CONTROL_S: u64 = 60;

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// `what: error: its sources` (tokio-postgres says only "db error" without its source).
fn fail<E: std::error::Error>(what: &str) -> impl Fn(E) -> String + '_ {
    move |e| {
        let mut text = format!("{what}: {e}");
        let mut source = e.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    }
}

/// The change as each run makes it.
#[derive(Debug, Clone)]
enum Change {
    /// No change: the load alone for as long as a change lasts here, measured as one. Its
    /// "drop" and "p99 during" are the machine's own noise, the floor under every other run.
    Control,
    BigBang,
    DualWrite,
    Runner {
        target_ms: Option<u32>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mut config = MigratorConfig::default();
    if let Some(ms) = args.busy_target_ms {
        config.backfill.busy_target = Some(Duration::from_millis(ms));
    }
    if let Some(percent) = args.max_cpu_percent {
        config.backfill.max_cpu_percent = percent;
    }
    if args.no_backfill_vacuum {
        config.backfill.vacuum = false;
    }
    let _ = RUNNER_CONFIG.set(config);
    if args.trace {
        use tracing_subscriber::prelude::*;
        let decisions = tracing_subscriber::filter::Targets::new()
            .with_target("migrate_core", tracing::Level::DEBUG);
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .with(decisions)
            .init();
    }
    match run(args).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-online: {error}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    if !args.shapes.iter().any(|shape| shape == "custom") {
        let shapes = args.shapes.clone();
        return matrix::run(&args, &shapes).await;
    }
    let cluster = ScratchCluster::start().map_err(|e| format!("starting PostgreSQL: {e}"))?;
    // A server configured as in production, not as the test harness's throwaway one
    // (fsync off, 32 MB shared_buffers): durability costs are part of the impact.
    for setting in [
        "fsync = on",
        "synchronous_commit = on",
        "full_page_writes = on",
        "shared_buffers = '256MB'",
        "max_wal_size = '4GB'",
        "checkpoint_timeout = '15min'",
    ] {
        // One statement per call: ALTER SYSTEM cannot run inside a transaction block.
        cluster
            .psql("postgres", &format!("ALTER SYSTEM SET {setting}"))
            .map_err(|e| e.to_string())?;
    }
    cluster.stop_server(false).map_err(|e| e.to_string())?;
    cluster.start_server_again().map_err(|e| e.to_string())?;
    let database = cluster.create_database().map_err(|e| e.to_string())?;
    let client = open(database.url()).await?;
    let server_version: String = client
        .query_one("SHOW server_version", &[])
        .await
        .map_err(|e| e.to_string())?
        .get(0);
    println!("building users ({} rows)", args.rows);
    client
        .batch_execute(&format!(
            "CREATE TABLE users (id bigint PRIMARY KEY, email text NOT NULL, \
             created_at timestamptz NOT NULL, balance bigint NOT NULL DEFAULT 0); \
             INSERT INTO users (id, email, created_at) SELECT g, 'user' || g || '@example.com', \
             now() - g * interval '1 second' FROM generate_series(1, {}) g",
            args.rows
        ))
        .await
        .map_err(fail("building the table"))?;
    if args.app_writes == "accounts" {
        client
            .batch_execute(
                "CREATE TABLE accounts AS SELECT id, balance FROM users; \
                 ALTER TABLE accounts ADD PRIMARY KEY (id); ANALYZE accounts",
            )
            .await
            .map_err(fail("building accounts"))?;
    }

    vacuum(&client).await?;

    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script = |name: &str, table: &str, set: &str| -> Result<PathBuf, String> {
        let path = work.path().join(name);
        std::fs::write(
            &path,
            format!(
                "\\set id random(1, {})\nBEGIN;\nSELECT email, balance FROM users WHERE id = :id;\n\
                 UPDATE {table} SET balance = balance + 1{set} WHERE id = :id;\nEND;\n",
                args.rows
            ),
        )
        .map_err(|e| e.to_string())?;
        Ok(path)
    };
    let plain = script("plain.sql", &args.app_writes, "")?;
    let dual = script("dual.sql", "users", ", email_verified_at = created_at")?;
    let pgbench = Pgbench::on(&cluster, &database, args.clients);
    let max_tps = pgbench.max_tps(&plain, &work.path().join("max"))?;
    let rate = ((max_tps * f64::from(args.load_percent) / 100.0) as u32).max(1);
    println!("max {max_tps:.0} TPS; runs at {rate} TPS");

    // The no-load bulk UPDATE, the ceiling a backfill's rate is compared with.
    reset(&client, false).await?;
    client
        .batch_execute("ALTER TABLE users ADD COLUMN email_verified_at timestamptz")
        .await
        .map_err(fail("adding the column"))?;
    let started = Instant::now();
    let updated = client
        .execute("UPDATE users SET email_verified_at = created_at", &[])
        .await
        .map_err(fail("the bulk UPDATE"))?;
    let bulk = updated as f64 / started.elapsed().as_secs_f64();
    println!("no-load bulk UPDATE: {bulk:.0} rows/s");

    let wanted = |run: &str| args.runs.iter().any(|r| r == run);
    let mut changes = Vec::new();
    if wanted("control") {
        changes.push((
            format!("control: no change, {CONTROL_S} s"),
            Change::Control,
        ));
    }
    if wanted("big-bang") {
        changes.push(("big bang".to_owned(), Change::BigBang));
    }
    if wanted("dual-write") {
        changes.push(("dual write + backfill".to_owned(), Change::DualWrite));
    }
    if wanted("defaults") {
        changes.push((
            "runner, defaults".to_owned(),
            Change::Runner { target_ms: None },
        ));
    }
    for &target in args.targets.iter().filter(|_| wanted("targets")) {
        changes.push((
            format!("runner, target={target}"),
            Change::Runner {
                target_ms: Some(target),
            },
        ));
    }
    let mut runs = Vec::new();
    for (name, change) in changes {
        reset(&client, matches!(change, Change::DualWrite)).await?;
        let log_dir = work.path().join(format!("run{}", runs.len()));
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let script = if matches!(change, Change::DualWrite) {
            dual.clone()
        } else {
            plain.clone()
        };
        let load =
            pgbench
                .clone()
                .run_until(script, rate, SEGMENT_S, log_dir.clone(), Arc::clone(&stop));
        // The baseline: load alone (a pause of the benchmark, not synchronisation).
        tokio::time::sleep(Duration::from_secs(u64::from(args.baseline))).await;
        let start = now_us();
        let fill = perform(
            &change,
            database.url(),
            work.path(),
            args.control_seconds.unwrap_or(CONTROL_S),
        )
        .await?;
        let end = now_us();
        tokio::time::sleep(Duration::from_secs(u64::from(args.baseline))).await;
        stop.store(true, Ordering::SeqCst);
        load.join()
            .map_err(|_| "the load thread panicked".to_owned())??;
        let log = load::read_logs(&log_dir)?;
        // The control fills no row.
        let rows = if matches!(change, Change::Control) {
            0
        } else {
            args.rows
        };
        let measured = report::measure(&name, &log, (start, end), args.baseline, rows, fill);
        println!(
            "{name}: baseline {:.0} TPS p99 {:.1} ms; during: {} s at 0 TPS, max {:.0} ms, p99 {:.1} ms \
             (fill alone {:.1} ms), TPS drop {:.1}%; {:.1} s; {:.0} rows/s ({:.0}% of bulk)",
            measured.baseline_tps,
            measured.baseline_p99_ms,
            measured.zero_seconds,
            measured.change_max_ms,
            measured.change_p99_ms,
            measured.fill_p99_ms,
            measured.tps_drop_percent,
            measured.duration_s,
            measured.rows_per_second,
            measured.rows_per_second / bulk * 100.0
        );
        runs.push(measured);
    }

    let setup = Setup {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory: memory(),
        server_version,
        rows: args.rows,
        clients: args.clients,
        max_tps,
        rate,
        bulk_update_rows_per_second: bulk,
        command: format!(
            "scripts/bench-online.sh --rows {} --clients {} --load-percent {} --baseline {} --targets {} --runs {}{}",
            args.rows,
            args.clients,
            args.load_percent,
            args.baseline,
            args.targets
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            args.runs.join(","),
            // Shown only when not the default, so the default command reads as before.
            if args.app_writes == "users" {
                String::new()
            } else {
                format!(" --app-writes {}", args.app_writes)
            }
        ),
    };
    std::fs::create_dir_all(&args.out).map_err(fail("creating the output folder"))?;
    let svg_name = "online-impact.svg";
    report::svg(&args.out.join(svg_name), &runs)?;
    let table = report::markdown(&setup, &runs, svg_name);
    std::fs::write(args.out.join("online-impact.md"), &table).map_err(|e| e.to_string())?;
    println!("\n{table}");
    Ok(())
}

async fn open(url: &str) -> Result<Client, String> {
    connect(url, &MigratorConfig::default())
        .await
        .map_err(|e| format!("connecting: {e}"))
}

/// The table as before any change (the column added already for a dual-write run, whose
/// application writes it from the start), the runner's state tables gone, dead rows vacuumed.
async fn reset(client: &Client, with_column: bool) -> Result<(), String> {
    client
        .batch_execute(
            "DROP INDEX IF EXISTS users_email_verified_at; \
             ALTER TABLE users DROP COLUMN IF EXISTS email_verified_at; \
             DROP TABLE IF EXISTS schema_migrations, schema_migrations_backfill, \
             schema_migrations_flags, schema_migrations_partial",
        )
        .await
        .map_err(fail("resetting the table"))?;
    vacuum(client).await?;
    if with_column {
        client
            .batch_execute("ALTER TABLE users ADD COLUMN email_verified_at timestamptz")
            .await
            .map_err(fail("adding the column"))?;
    }
    Ok(())
}

/// Dead rows of the previous run gone, statistics fresh, dirty pages written.
async fn vacuum(client: &Client) -> Result<(), String> {
    // Each alone: VACUUM cannot run inside the implicit transaction of a multi-statement
    // query.
    for statement in ["VACUUM (ANALYZE) users", "CHECKPOINT"] {
        client
            .batch_execute(statement)
            .await
            .map_err(fail("vacuuming the table"))?;
    }
    Ok(())
}

/// The runner's configuration: its defaults, with `--busy-target-ms` and `--max-cpu-percent`
/// when given, set once from the arguments.
static RUNNER_CONFIG: std::sync::OnceLock<MigratorConfig> = std::sync::OnceLock::new();

fn runner_config() -> MigratorConfig {
    RUNNER_CONFIG.get().cloned().unwrap_or_default()
}

/// Makes the change; returns when the rows were filled (for rows/s and the fill's latency).
async fn perform(
    change: &Change,
    url: &str,
    work: &Path,
    control_seconds: u64,
) -> Result<report::Fill, String> {
    let client = open(url).await?;
    match change {
        Change::Control => {
            let start_us = now_us();
            // The window measured, not synchronisation: nothing happens in it on purpose.
            tokio::time::sleep(Duration::from_secs(control_seconds)).await;
            Ok(report::Fill {
                start_us,
                end_us: now_us(),
                monitor_cpu_s: None,
                up_s: 0.0,
                impact: None,
            })
        }
        Change::BigBang => {
            let start_us = now_us();
            client
                .batch_execute(
                    "BEGIN; ALTER TABLE users ADD COLUMN email_verified_at timestamptz; \
                     UPDATE users SET email_verified_at = created_at; \
                     CREATE INDEX users_email_verified_at ON users (email_verified_at); COMMIT",
                )
                .await
                .map_err(fail("the big bang"))?;
            Ok(report::Fill {
                start_us,
                end_us: now_us(),
                monitor_cpu_s: None,
                up_s: 0.0,
                impact: None,
            })
        }
        Change::DualWrite | Change::Runner { .. } => {
            let target = match change {
                Change::Runner {
                    target_ms: Some(ms),
                } => format!(" target={ms}"),
                _ => String::new(),
            };
            let dir = work.join(format!("migrations{}", now_us()));
            std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
            let files = [
                (
                    "0001_add_email_verified_at.expand.sql",
                    "ALTER TABLE users ADD COLUMN IF NOT EXISTS email_verified_at timestamptz;\n\
                     -- migrate:down\nALTER TABLE users DROP COLUMN IF EXISTS email_verified_at;\n"
                        .to_owned(),
                ),
                (
                    "0002_fill_email_verified_at.backfill.sql",
                    format!(
                        "-- migrate:backfill table=users key=id{target}\n\
                         UPDATE users SET email_verified_at = created_at WHERE email_verified_at IS NULL;\n\
                         -- migrate:down\n"
                    ),
                ),
                (
                    "0003_index_email_verified_at.expand.sql",
                    "CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_verified_at \
                     ON users (email_verified_at);\n\
                     -- migrate:down\nDROP INDEX CONCURRENTLY IF EXISTS users_email_verified_at;\n"
                        .to_owned(),
                ),
            ];
            for (name, text) in files {
                std::fs::write(dir.join(name), text).map_err(|e| e.to_string())?;
            }
            let checked = migrate_core::check_dir(&dir, "migrations")
                .map_err(|e| format!("loading the migrations: {e}"))?;
            if let Some(problem) = checked.diagnostics.iter().find(|d| d.is_error()) {
                return Err(format!(
                    "the benchmark's migrations do not lint: {problem:?}"
                ));
            }
            let migrations = checked.migrations(&dir.to_string_lossy());
            let monitor = open(url).await?;
            let monitor_pid: i32 = monitor
                .query_one("SELECT pg_backend_pid()", &[])
                .await
                .map_err(fail("reading the monitor's backend"))?
                .get(0);
            // As the CLI: a worker connection for each batch the controller may add.
            let mut workers = Vec::new();
            for _ in 1..MigratorConfig::default().backfill.max_workers {
                workers.push(open(url).await?);
            }
            let migrator = Migrator::new(&migrations, runner_config())
                .map_err(|e| e.to_string())?
                .with_monitor(monitor)
                .with_workers(workers);
            let monitor_cpu_before = backend_cpu_s(monitor_pid);
            let up_start_us = now_us();
            let report = migrator
                .up(&client, UpTo::All)
                .await
                .map_err(|e| format!("the runner: {e}"))?;
            let up_s = (now_us() - up_start_us) as f64 / 1e6;
            let monitor_cpu_s = backend_cpu_s(monitor_pid)
                .zip(monitor_cpu_before)
                .map(|(after, before)| after - before);
            // The fill starts when the expand ends (the history write between them is
            // well under a millisecond) and lasts as long as the runner says it did.
            let took_us = |version: u64| {
                report
                    .applied
                    .iter()
                    .find(|m| m.version == version)
                    .map_or(0, |m| m.duration.as_micros() as i64)
            };
            let start_us = up_start_us + took_us(1);
            // Which signals held the backfill, and the application's change it measured.
            let impact = migrator
                .backfills(&client)
                .await
                .ok()
                .and_then(|states| states.into_iter().find_map(|s| s.impact));
            Ok(report::Fill {
                start_us,
                end_us: start_us + took_us(2),
                monitor_cpu_s,
                up_s,
                impact,
            })
        }
    }
}

/// CPU seconds (user + system) a server backend has used, from `/proc/<pid>/stat` (the
/// scratch server runs on this machine); `None` when it cannot be read. Linux reports them in
/// ticks of 1/100 s (`USER_HZ`).
fn backend_cpu_s(pid: i32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line; after the name, field 3 (the state)
    // is index 0.
    let ticks = |index: usize| fields.get(index)?.parse::<f64>().ok();
    Some((ticks(11)? + ticks(12)?) / 100.0)
}

/// `MemTotal` of /proc/meminfo, e.g. `7.8 GiB`.
fn memory() -> String {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("MemTotal:"))
                .and_then(|line| line.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or_else(
            || "unknown".to_owned(),
            |kb| format!("{:.1} GiB", kb / 1024.0 / 1024.0),
        )
}
