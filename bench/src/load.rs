//! The application's load: pgbench at a fixed rate, in back-to-back segments so the load
//! runs exactly as long as the change needs (pgbench flushes its per-transaction log only
//! when it ends normally), and the reading of those logs.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// One transaction from a pgbench log: when it completed and how long it took.
#[derive(Debug, Clone, Copy)]
pub struct Transaction {
    /// Completion time, microseconds since the epoch.
    pub done_us: i64,
    /// Latency in microseconds; with `--rate`, from the scheduled start (queueing included).
    pub latency_us: i64,
}

/// How pgbench reaches the database and what it runs.
#[derive(Debug, Clone)]
pub struct Pgbench {
    pub program: PathBuf,
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub clients: u32,
    pub threads: u32,
}

impl Pgbench {
    /// pgbench against `database` of the scratch `cluster`, as its superuser, two threads.
    pub fn on(
        cluster: &migrate_scratch::ScratchCluster,
        database: &migrate_scratch::ScratchDatabase,
        clients: u32,
    ) -> Pgbench {
        Pgbench {
            program: cluster.binaries().program("pgbench"),
            host: cluster.host().to_owned(),
            port: cluster.port(),
            user: "postgres".to_owned(),
            database: database.name().to_owned(),
            clients,
            threads: 2,
        }
    }

    /// The most transactions per second `script` reaches in 10 s, with the same
    /// per-transaction logging (under `dir`) as the measured runs.
    pub fn max_tps(&self, script: &Path, dir: &Path) -> Result<f64, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        self.run(script, 10, None, dir, "segment")?;
        Ok(read_logs(dir)?.len() as f64 / 10.0)
    }

    /// Runs `script` for `seconds` (at `rate` tx/s, or as fast as it can), logging every
    /// transaction under `log_dir` with `prefix`.
    pub fn run(
        &self,
        script: &Path,
        seconds: u32,
        rate: Option<u32>,
        log_dir: &Path,
        prefix: &str,
    ) -> Result<(), String> {
        let mut command = Command::new(&self.program);
        command
            .current_dir(log_dir)
            .args(["-n", "-l", "-h", &self.host, "-U", &self.user])
            .arg(format!("--log-prefix={prefix}"))
            .arg(format!("--port={}", self.port))
            .arg(format!("--client={}", self.clients))
            .arg(format!("--jobs={}", self.threads))
            .arg(format!("--time={seconds}"))
            .arg("--file")
            .arg(script)
            .env("PGSSLMODE", "disable");
        if let Some(rate) = rate {
            command.arg(format!("--rate={rate}"));
        }
        command.arg(&self.database);
        let output = command
            .output()
            .map_err(|e| format!("running pgbench: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "pgbench failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        Ok(())
    }

    /// Runs `script` at `rate` in segments of `segment` seconds until `stop` is set (the
    /// segment running then completes), on its own thread.
    pub fn run_until(
        self,
        script: PathBuf,
        rate: u32,
        segment: u32,
        log_dir: PathBuf,
        stop: Arc<AtomicBool>,
    ) -> std::thread::JoinHandle<Result<(), String>> {
        std::thread::spawn(move || {
            let mut number = 0;
            while !stop.load(Ordering::SeqCst) {
                self.run(
                    &script,
                    segment,
                    Some(rate),
                    &log_dir,
                    &format!("segment{number}"),
                )?;
                number += 1;
            }
            Ok(())
        })
    }
}

/// Every transaction logged under `dir`, by completion time.
///
/// A line is `client_id transaction_no time script_no time_epoch time_us [schedule_lag]`
/// (<https://www.postgresql.org/docs/15/pgbench.html#PGBENCH-PER-TRANSACTION-LOGGING>);
/// `time` is `skipped` for transactions skipped by `--latency-limit` (not used here).
pub fn read_logs(dir: &Path) -> Result<Vec<Transaction>, String> {
    let mut transactions = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if !path
            .file_name()
            .is_some_and(|name| name.to_string_lossy().starts_with("segment"))
        {
            continue;
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        for line in text.lines() {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(latency), Some(epoch), Some(micros)) =
                (fields.get(2), fields.get(4), fields.get(5))
            else {
                continue;
            };
            let (Ok(latency_us), Ok(epoch), Ok(micros)) = (
                latency.parse::<i64>(),
                epoch.parse::<i64>(),
                micros.parse::<i64>(),
            ) else {
                continue;
            };
            transactions.push(Transaction {
                done_us: epoch * 1_000_000 + micros,
                latency_us,
            });
        }
    }
    transactions.sort_by_key(|t| t.done_us);
    Ok(transactions)
}
