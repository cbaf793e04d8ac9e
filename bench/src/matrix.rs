//! The workload matrix of issue 22: the same change under six shapes of application load,
//! each at 60% of its own measured maximum, each with a control run (the load alone), the big
//! bang and the runner's defaults. Every shape gets its own scratch cluster (its settings, its
//! replica), and each run says how much CPU the server, pgbench and the runner took: they
//! share the machine.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use migrate_scratch::ScratchCluster;

use crate::load::{self, Pgbench};
use crate::report::{self, Run};
use crate::{Args, Change, fail, now_us, open, perform, reset, vacuum};

/// One shape of application load.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    pub id: &'static str,
    pub what: &'static str,
    clients: u32,
    script: Script,
    /// `shared_buffers`: the I/O-bound shape keeps the table at least 4x larger.
    shared_buffers: &'static str,
    replica: bool,
}

#[derive(Debug, Clone, Copy)]
enum Script {
    /// A point SELECT and a point UPDATE by key, each its own transaction.
    PointPair,
    /// The former default: a SELECT and an UPDATE in one transaction.
    Mix,
    /// Point UPDATEs of a hot 1% of the rows, spread over the whole key range, so every batch
    /// of the backfill meets rows the application is writing.
    HotRows,
}

pub const SHAPES: [Shape; 6] = [
    Shape {
        id: "a",
        what: "point UPDATE + point SELECT by key, 4 clients",
        clients: 4,
        script: Script::PointPair,
        shared_buffers: "256MB",
        replica: false,
    },
    Shape {
        id: "b",
        what: "point UPDATE + point SELECT by key, 16 clients",
        clients: 16,
        script: Script::PointPair,
        shared_buffers: "256MB",
        replica: false,
    },
    Shape {
        id: "c",
        what: "the former default mix (SELECT + UPDATE in one transaction), 8 clients",
        clients: 8,
        script: Script::Mix,
        shared_buffers: "256MB",
        replica: false,
    },
    Shape {
        id: "d",
        what: "I/O-bound: point pair, 8 clients, shared_buffers 16MB (table >= 4x)",
        clients: 8,
        script: Script::PointPair,
        shared_buffers: "16MB",
        replica: false,
    },
    Shape {
        id: "e",
        what: "hot rows: the application updates 1% of the rows, spread over the keys, 8 clients",
        clients: 8,
        script: Script::HotRows,
        shared_buffers: "256MB",
        replica: false,
    },
    Shape {
        id: "f",
        what: "with a streaming replica: point pair, 4 clients",
        clients: 4,
        script: Script::PointPair,
        shared_buffers: "256MB",
        replica: true,
    },
];

/// CPU seconds (user + system) of a process, with its reaped children's when asked, from
/// `/proc/<pid>/stat` (ticks of 1/100 s, `USER_HZ`).
fn process_cpu_s(pid: &str, with_children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| fields.get(index)?.parse::<f64>().ok();
    let mut total = ticks(11)? + ticks(12)?;
    if with_children {
        total += ticks(13)? + ticks(14)?;
    }
    Some(total / 100.0)
}

fn parent_of(pid: &str) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)
        .map(str::to_owned)
}

/// CPU seconds of a cluster's processes: the postmaster (with the backends it reaped) and
/// its live children.
fn cluster_cpu_s(cluster: &ScratchCluster) -> f64 {
    let Some(postmaster) = std::fs::read_to_string(cluster.data_dir().join("postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next().map(|line| line.trim().to_owned()))
    else {
        return 0.0;
    };
    let mut total = process_cpu_s(&postmaster, true).unwrap_or(0.0);
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.bytes().all(|b| b.is_ascii_digit())
                && parent_of(&name).as_deref() == Some(postmaster.as_str())
            {
                total += process_cpu_s(&name, false).unwrap_or(0.0);
            }
        }
    }
    total
}

/// (this process, its reaped children: pgbench), CPU seconds.
fn own_cpu_s() -> (f64, f64) {
    let stat = process_cpu_s("self", false).unwrap_or(0.0);
    let all = process_cpu_s("self", true).unwrap_or(0.0);
    (stat, all - stat)
}

/// CPU each process took during one run, in seconds.
#[derive(Debug, Clone, Copy, Default)]
struct CpuUse {
    server: f64,
    pgbench: f64,
    runner: f64,
    seconds: f64,
}

/// The share of the application's work slower than `--slow-ms` while the rows were filled:
/// pgbench's transactions (as the client saw them) and the statements the server logged.
#[derive(Debug, Clone, Copy, Default)]
struct SlowShare {
    client_percent: f64,
    server_percent: f64,
    /// pgbench's transactions completed in the fill.
    transactions: usize,
}

/// Below this many transactions in the fill (the big bang's seconds at zero TPS) the shares
/// say nothing: a statement logged inside the window can belong to a transaction that
/// completed after it, so the server's share could pass 100%.
const SLOW_SHARE_MIN_TRANSACTIONS: usize = 100;

impl std::fmt::Display for SlowShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.transactions < SLOW_SHARE_MIN_TRANSACTIONS {
            write!(f, "n/a ({} transactions)", self.transactions)
        } else {
            write!(
                f,
                "{:.2}% / {:.2}%",
                self.client_percent, self.server_percent
            )
        }
    }
}

struct ShapeResult {
    shape: Shape,
    max_tps: f64,
    rate: u32,
    bulk: f64,
    runs: Vec<(Run, CpuUse, Option<String>, SlowShare)>,
}

/// Runs the shapes `ids`, in the order given (each once), and writes `online-matrix.md`
/// under `args.out`.
pub async fn run(args: &Args, ids: &[String]) -> Result<(), String> {
    let mut results = Vec::new();
    for shape in chosen_shapes(ids) {
        println!("shape ({}): {}", shape.id, shape.what);
        results.push(run_shape(args, shape).await?);
    }
    let text = markdown(args, &results);
    std::fs::create_dir_all(&args.out).map_err(fail("creating the output folder"))?;
    std::fs::write(args.out.join("online-matrix.md"), &text).map_err(|e| e.to_string())?;
    println!("\n{text}");
    Ok(())
}

/// The shapes named by `ids`, in the order given, each once; `custom` and unknown ids are
/// not shapes of the matrix.
fn chosen_shapes(ids: &[String]) -> Vec<Shape> {
    let mut chosen: Vec<Shape> = Vec::new();
    for id in ids {
        if let Some(shape) = SHAPES.iter().find(|s| s.id == id)
            && !chosen.iter().any(|c| c.id == shape.id)
        {
            chosen.push(*shape);
        }
    }
    chosen
}

/// Where shape (f)'s standby keeps its data: `--replica-folder`, else `/dev/shm` (a tmpfs,
/// off the primary's disk) where it exists, else the system's temporary folder.
fn replica_folder(args: &Args) -> Option<std::path::PathBuf> {
    let tmpfs = std::path::Path::new("/dev/shm");
    args.replica_folder
        .clone()
        .or_else(|| tmpfs.is_dir().then(|| tmpfs.to_path_buf()))
}

async fn run_shape(args: &Args, shape: Shape) -> Result<ShapeResult, String> {
    let cluster = ScratchCluster::start().map_err(|e| format!("starting PostgreSQL: {e}"))?;
    let server_log = crate::slow::ServerLog::new(args.slow_ms)?;
    for setting in [
        "fsync = on".to_owned(),
        "synchronous_commit = on".to_owned(),
        "full_page_writes = on".to_owned(),
        format!("shared_buffers = '{}'", shape.shared_buffers),
        // Bounded: the machine's disk is shared; checkpoints come sooner than with 4GB.
        "max_wal_size = '1GB'".to_owned(),
        "checkpoint_timeout = '15min'".to_owned(),
    ]
    .into_iter()
    .chain(server_log.settings())
    .chain(args.server_settings.iter().cloned())
    {
        cluster
            .psql("postgres", &format!("ALTER SYSTEM SET {setting}"))
            .map_err(|e| e.to_string())?;
    }
    cluster.stop_server(false).map_err(|e| e.to_string())?;
    cluster.start_server_again().map_err(|e| e.to_string())?;
    // Before the table: the base backup is small, the table streams to it.
    let replica = if shape.replica {
        Some(
            cluster
                .start_replica_under(replica_folder(args).as_deref())
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    let database = cluster.create_database().map_err(|e| e.to_string())?;
    let client = open(database.url()).await?;
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
    vacuum(&client).await?;

    let work = tempfile::tempdir().map_err(|e| e.to_string())?;
    let script_path = work.path().join("app.sql");
    let rows = args.rows;
    let text = match shape.script {
        Script::PointPair => format!(
            "\\set id random(1, {rows})\nSELECT email, balance FROM users WHERE id = :id;\n\
             UPDATE users SET balance = balance + 1 WHERE id = :id;\n"
        ),
        Script::Mix => format!(
            "\\set id random(1, {rows})\nBEGIN;\nSELECT email, balance FROM users WHERE id = :id;\n\
             UPDATE users SET balance = balance + 1 WHERE id = :id;\nEND;\n"
        ),
        Script::HotRows => format!(
            "\\set id 100 * random(1, {})\nSELECT email, balance FROM users WHERE id = :id;\n\
             UPDATE users SET balance = balance + 1 WHERE id = :id;\n",
            (rows / 100).max(1)
        ),
    };
    std::fs::write(&script_path, text).map_err(|e| e.to_string())?;
    let pgbench = Pgbench::on(&cluster, &database, shape.clients);
    let max_tps = pgbench.max_tps(&script_path, &work.path().join("max"))?;
    let rate = ((max_tps * f64::from(args.load_percent) / 100.0) as u32).max(1);
    println!("  max {max_tps:.0} TPS; runs at {rate} TPS");

    reset(&client, false).await?;
    client
        .batch_execute("ALTER TABLE users ADD COLUMN email_verified_at timestamptz")
        .await
        .map_err(fail("adding the column"))?;
    let started = std::time::Instant::now();
    let updated = client
        .execute("UPDATE users SET email_verified_at = created_at", &[])
        .await
        .map_err(fail("the bulk UPDATE"))?;
    let bulk = updated as f64 / started.elapsed().as_secs_f64();
    println!("  no-load bulk UPDATE: {bulk:.0} rows/s");

    let wanted = |run: &str| args.runs.iter().any(|r| r == run);
    let mut changes = Vec::new();
    if wanted("big-bang") {
        changes.push(("big bang".to_owned(), Change::BigBang));
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
    // The control last: it lasts as long as the defaults' run did, unless told.
    if wanted("control") {
        changes.push(("control (load alone)".to_owned(), Change::Control));
    }
    let mut defaults_seconds = None;
    let mut runs = Vec::new();
    for (name, change) in changes {
        let control_seconds = args
            .control_seconds
            .or(defaults_seconds)
            .unwrap_or(crate::CONTROL_S);
        reset(&client, false).await?;
        let log_dir: PathBuf = work.path().join(format!("run{}", runs.len()));
        std::fs::create_dir_all(&log_dir).map_err(|e| e.to_string())?;
        let stop = Arc::new(AtomicBool::new(false));
        let cpu_before = (
            cluster_cpu_s(&cluster) + replica.as_ref().map_or(0.0, cluster_cpu_s),
            own_cpu_s(),
            now_us(),
        );
        let wal = (args.timeline || args.timeline_waits).then(|| {
            (
                crate::timeline::sample_wal(database.url().to_owned(), Arc::clone(&stop)),
                args.timeline_waits.then(|| {
                    crate::timeline::sample_waits(database.url().to_owned(), Arc::clone(&stop))
                }),
            )
        });
        let load = pgbench.clone().run_until(
            script_path.clone(),
            rate,
            crate::SEGMENT_S,
            log_dir.clone(),
            Arc::clone(&stop),
        );
        // The baseline: load alone (a pause of the benchmark, not synchronisation).
        tokio::time::sleep(Duration::from_secs(u64::from(args.baseline))).await;
        let start = now_us();
        let runner_before = own_cpu_s().0;
        let fill = perform(&change, database.url(), work.path(), control_seconds).await?;
        let runner_cpu = own_cpu_s().0 - runner_before;
        let end = now_us();
        if matches!(change, Change::Runner { target_ms: None }) {
            defaults_seconds = Some(u64::try_from(end - start).unwrap_or(0).div_ceil(1_000_000));
        }
        tokio::time::sleep(Duration::from_secs(u64::from(args.baseline))).await;
        stop.store(true, Ordering::SeqCst);
        load.join()
            .map_err(|_| "the load thread panicked".to_owned())??;
        let cpu = CpuUse {
            server: cluster_cpu_s(&cluster) + replica.as_ref().map_or(0.0, cluster_cpu_s)
                - cpu_before.0,
            pgbench: own_cpu_s().1 - (cpu_before.1).1,
            runner: if matches!(change, Change::Runner { .. }) {
                runner_cpu
            } else {
                0.0
            },
            seconds: (now_us() - cpu_before.2) as f64 / 1e6,
        };
        let log = load::read_logs(&log_dir)?;
        let filled = if matches!(change, Change::Control) {
            0
        } else {
            args.rows
        };
        let impact = fill.impact.clone();
        let fill_window = (fill.start_us, fill.end_us);
        if let Some((wal, waits)) = wal {
            let wal = wal.await.map_err(|e| e.to_string())??;
            let waits = match waits {
                Some(waits) => waits.await.map_err(|e| e.to_string())??,
                None => Vec::new(),
            };
            let baseline_us = i64::from(args.baseline) * 1_000_000;
            let csv = crate::timeline::csv(
                &log,
                &wal,
                start,
                (start - baseline_us, end + baseline_us),
                fill_window,
                &waits,
            );
            let slug: String = name
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            std::fs::create_dir_all(&args.out).map_err(fail("creating the output folder"))?;
            std::fs::write(
                args.out.join(format!("timeline-{}-{slug}.csv", shape.id)),
                csv,
            )
            .map_err(|e| e.to_string())?;
        }
        let measured = report::measure(&name, &log, (start, end), args.baseline, filled, fill);
        println!(
            "  {name}: baseline {:.0} TPS p99 {:.1} ms; during: {} s at 0 TPS, p99 {:.1} ms (fill alone {:.1} ms), \
             TPS drop {:.1}%; {:.1} s; {:.0} rows/s ({:.0}% of bulk); CPU over {:.0} s: server \
             {:.1} s, pgbench {:.1} s, runner {:.1} s{}",
            measured.baseline_tps,
            measured.baseline_p99_ms,
            measured.zero_seconds,
            measured.change_p99_ms,
            measured.fill_p99_ms,
            measured.tps_drop_percent,
            measured.duration_s,
            measured.rows_per_second,
            measured.rows_per_second / bulk * 100.0,
            cpu.seconds,
            cpu.server,
            cpu.pgbench,
            cpu.runner,
            impact
                .as_deref()
                .map(|i| format!("; {i}"))
                .unwrap_or_default()
        );
        // Each transaction of every script is a SELECT and an UPDATE (the mix's BEGIN and END
        // never take that long).
        let slow_us = i64::from(args.slow_ms) * 1000;
        let in_fill: Vec<_> = log
            .iter()
            .filter(|t| t.done_us >= fill_window.0 && t.done_us <= fill_window.1)
            .collect();
        let slow = if in_fill.is_empty() {
            SlowShare::default()
        } else {
            let transactions = in_fill.len() as f64;
            SlowShare {
                client_percent: in_fill.iter().filter(|t| t.latency_us > slow_us).count() as f64
                    / transactions
                    * 100.0,
                server_percent: server_log.slow_statements(fill_window)? as f64
                    / (2.0 * transactions)
                    * 100.0,
                transactions: in_fill.len(),
            }
        };
        println!(
            "    over {} ms during the fill, pgbench's transactions / the statements' execution \
             on the server: {slow}",
            args.slow_ms
        );
        runs.push((measured, cpu, impact, slow));
    }
    drop(replica);
    Ok(ShapeResult {
        shape,
        max_tps,
        rate,
        bulk,
        runs,
    })
}

fn markdown(args: &Args, results: &[ShapeResult]) -> String {
    let mut text = String::new();
    let _ = writeln!(text, "# Online impact: the workload matrix (issue 22)\n");
    let _ = writeln!(
        text,
        "Produced by `scripts/bench-online.sh --rows {} --shapes {} --runs {} --baseline {} \
         {}`. Machine: {} cores, {} memory; server, pgbench and runner share \
         it. Table `users` of {} rows; each shape's load runs at {}% of its own maximum \
         (pgbench `--rate`, per-transaction logs). The change: add `email_verified_at`, fill it \
         from `created_at` (the runner: `-- migrate:backfill table=users key=id`, defaults), \
         index it. CPU: seconds each took over the whole run (baseline, change, the seconds \
         after), the server's summed over its processes (the replica's included), pgbench's \
         as the benchmark's reaped children, the runner's as the benchmark process during the \
         change.\n",
        args.rows,
        results
            .iter()
            .map(|r| r.shape.id)
            .collect::<Vec<_>>()
            .join(","),
        args.runs
            .iter()
            .filter(|run| ["control", "big-bang", "defaults", "targets"].contains(&run.as_str()))
            .cloned()
            .collect::<Vec<_>>()
            .join(","),
        args.baseline,
        [
            args.control_seconds.map_or_else(
                || "(the control as long as the defaults' run)".to_owned(),
                |seconds| format!("--control-seconds {seconds}"),
            ),
            args.busy_target_ms
                .map(|ms| format!("--busy-target-ms {ms}"))
                .unwrap_or_default(),
            args.max_cpu_percent
                .map(|percent| format!("--max-cpu-percent {percent}"))
                .unwrap_or_default(),
            if args.no_backfill_vacuum {
                "--no-backfill-vacuum".to_owned()
            } else {
                String::new()
            },
        ]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        crate::memory(),
        args.rows,
        args.load_percent,
    );
    if results.iter().any(|r| r.shape.replica) {
        let _ = writeln!(
            text,
            "Shape (f)'s standby keeps its data in {} (`--replica-folder`).\n",
            replica_folder(args).map_or_else(
                || "the system's temporary folder, on the primary's disk".to_owned(),
                |folder| format!("`{}`", folder.display())
            )
        );
    }
    let _ = writeln!(
        text,
        "| shape | run | baseline TPS | baseline p99 ms | s at 0 TPS | p99 ms during | p99 ms during fill | TPS drop % | duration s | rows/s | vs bulk | CPU s: server / pgbench / runner (over s) | over {} ms in the fill: pgbench tx / statements' execution |",
        args.slow_ms
    );
    let _ = writeln!(
        text,
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
    );
    for result in results {
        for (run, cpu, _, slow) in &result.runs {
            let _ = writeln!(
                text,
                "| ({}) | {} | {:.0} | {:.1} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} | {:.0}% | {:.1} / {:.1} / {:.1} ({:.0}) | {} |",
                result.shape.id,
                run.name,
                run.baseline_tps,
                run.baseline_p99_ms,
                run.zero_seconds,
                run.change_p99_ms,
                run.fill_p99_ms,
                run.tps_drop_percent,
                run.duration_s,
                run.rows_per_second,
                run.rows_per_second / result.bulk.max(1.0) * 100.0,
                cpu.server,
                cpu.pgbench,
                cpu.runner,
                cpu.seconds,
                slow
            );
        }
    }
    let _ = writeln!(
        text,
        "\nShapes, their maxima and the bulk UPDATE ceiling:\n"
    );
    for result in results {
        let _ = writeln!(
            text,
            "- ({}) {}: max {:.0} TPS, runs at {} TPS; no-load bulk UPDATE {:.0} rows/s.",
            result.shape.id, result.shape.what, result.max_tps, result.rate, result.bulk
        );
        for (run, _, impact, _) in &result.runs {
            if let Some(impact) = impact {
                let _ = writeln!(text, "  - {}: {impact}", run.name);
            }
        }
    }
    let _ = writeln!(
        text,
        "\nDuring = from the change's start to its end; p99 during also counts the transactions \
         completed in the baseline's length after it (for the runner: the expand, the backfill, \
         then the `CREATE INDEX CONCURRENTLY`); during fill = only the transactions completed \
         while the backfill's rows were filled. Latency is pgbench's with `--rate`: from \
         the scheduled start, so queueing counts. The control run is the load alone measured \
         like a change: its drop and p99 are the machine's own noise. Over N ms in the fill: the \
         share of pgbench's transactions that took longer than N ms while the rows were \
         filled, beside the share of the application's statements (two a transaction) whose \
         execution the server logged as longer (`log_min_duration_statement`); the difference \
         is time spent outside execution: waiting for a CPU (pgbench's threads, a backend \
         before it reads its statement) or in the socket."
    );
    text
}

/// The shape ids, checked.
pub fn parse_shape(text: &str) -> Result<String, String> {
    if text == "custom" || SHAPES.iter().any(|s| s.id == text) {
        Ok(text.to_owned())
    } else {
        Err(format!(
            "unknown shape `{text}`: a, b, c, d, e, f, or custom"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_run_in_the_order_given_each_once() {
        let ids: Vec<String> = ["f", "a", "f", "custom", "c"]
            .iter()
            .map(|id| (*id).to_owned())
            .collect();
        let order: Vec<&str> = chosen_shapes(&ids).iter().map(|s| s.id).collect();
        assert_eq!(order, ["f", "a", "c"]);
    }

    #[test]
    fn a_fill_of_few_transactions_has_no_slow_share() {
        let few = SlowShare {
            client_percent: 0.0,
            server_percent: 125.0,
            transactions: 4,
        };
        assert_eq!(few.to_string(), "n/a (4 transactions)");
        let many = SlowShare {
            transactions: 1000,
            ..few
        };
        assert_eq!(many.to_string(), "0.00% / 125.00%");
    }
}
