//! The migrator's settings, their defaults and their ranges.

use std::time::Duration;

use super::deadline;
use super::error::RuntimeError;

/// Settings of a [`Migrator`](super::Migrator). `Default` gives the documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigratorConfig {
    /// History table, `table` or `schema.table`; each part `[A-Za-z_][A-Za-z0-9_]{0,62}`,
    /// always double-quoted in SQL. The advisory lock key derives from it.
    /// Default: `public.schema_migrations`.
    pub history_table: String,
    /// `application_name` of the migration session, shown in `pg_stat_activity` and in
    /// lock-holder errors. Default: `migrate`.
    pub application_name: String,
    /// Session `lock_timeout`: the longest any statement waits for a table lock, and so the
    /// longest the application's queries queue behind a migration's lock request.
    /// Default: 5 s.
    pub lock_timeout: Duration,
    /// Session `statement_timeout`; `Duration::ZERO` disables it. Default: 15 min. A
    /// `CREATE INDEX CONCURRENTLY` on a large table may need more: raise it for such runs.
    pub statement_timeout: Duration,
    /// The session's `max_parallel_maintenance_workers`: the parallel workers an index build
    /// (`CREATE INDEX [CONCURRENTLY]`, `REINDEX`) may add to its own process. Default: 0,
    /// one core per build, as a backfill batch takes: PostgreSQL's own default of 2 gives a
    /// build on a large table three processes, every core of a small server, and the
    /// application's queries queue behind it for as long as the build runs. `None` leaves
    /// the server's setting.
    pub index_build_workers: Option<u32>,
    /// How long to wait for another migrator's advisory lock before failing. Default: 60 s.
    pub lock_wait: Duration,
    /// Retries after a `lock_timeout` failure (55P03): of the whole transaction in
    /// transactional mode, of the statement in autocommit mode. Default: 5.
    pub lock_retries: u32,
    /// First pause before a retry; doubled per retry (at most [`MAX_RETRY_BACKOFF`](super::MAX_RETRY_BACKOFF)), with
    /// jitter in its upper half. Default: 500 ms.
    pub retry_backoff: Duration,
    /// Apply pending migrations older than the newest applied one. Default: false.
    pub allow_out_of_order: bool,
    /// Proceed although the database has applied versions this binary lacks. Default: false.
    pub ignore_missing: bool,
    /// Time that must pass between applying an expand and applying the contract that
    /// `-- migrate:requires` it, measured on the server's clock from the expand's
    /// `executed_at`; a contract asked for earlier is refused with
    /// [`GateFailure::Stabilising`](super::GateFailure::Stabilising), saying how long remains. Default: zero (no wait).
    pub contract_stabilisation: Duration,
    /// Longest replay lag any replica in `pg_stat_replication` may have before a contract
    /// runs: the contract gate waits at most this long for every replica to replay the WAL
    /// written before it, then refuses with [`GateFailure::ReplicaLag`](super::GateFailure::ReplicaLag). The deploy role needs
    /// `pg_monitor` (or `pg_read_all_stats`) to see the lag, else [`GateFailure::ReplicaLagUnknown`](super::GateFailure::ReplicaLagUnknown).
    /// `None` turns the replica gate off. Default: 30 s.
    pub max_replica_lag: Option<Duration>,
    /// Before each contract, read `pg_stat_statements` twice this far apart; a statement
    /// called in between that names what the contract drops, renames or retypes refuses it
    /// with [`GateFailure::RunningQueryBreaks`](super::GateFailure::RunningQueryBreaks), and
    /// a database without a readable `pg_stat_statements` refuses every contract with
    /// [`GateFailure::RunningQueriesUnknown`](super::GateFailure::RunningQueriesUnknown).
    /// `None` turns the gate off. Default: `None`.
    pub running_queries_window: Option<Duration>,
    /// Client-side allowance for the server's answer, on top of the server's own bounds:
    /// a query of the runtime's own waits at most `lock_timeout` + this, a migration
    /// statement `statement_timeout` + this (no client bound when `statement_timeout` is
    /// zero). A server that stops answering then fails the run with
    /// [`RuntimeError::NoAnswer`] instead of hanging it. Default: 30 s.
    pub network_timeout: Duration,
    /// How backfills without `batch=`/`delay=` size and pace their batches.
    pub backfill: BackfillControl,
}

/// The backfill controller's settings (how it sizes, paces and stops batches: see
/// [`crate::runtime::backfill`] and the fields below). A backfill directive's
/// `target=` overrides [`BackfillControl::target`]; `batch=`/`delay=` turn the controller
/// off for that file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillControl {
    /// The duration each batch aims at: a batch holds its rows' locks that long, so an
    /// application write to one of them may wait that long. Default: 100 ms.
    pub target: Duration,
    /// The duration each batch aims at while an application runs on the server (the
    /// controller's rest windows measure at least 50 of its transactions a second, and
    /// before the first window says otherwise): its transactions queue behind a batch's CPU
    /// and its commit's WAL flush for as long as the batch runs, so the batch's length is
    /// what its p99 latency grows by. On an idle server batches aim at `target`. `None`:
    /// `target` throughout; a directive's `target=` also sets both. Default: 3 ms.
    pub busy_target: Option<Duration>,
    /// Smallest batch, and the first one. Default: 100 rows.
    pub min_batch: u32,
    /// Largest batch. Default: 50,000 rows.
    pub max_batch: u32,
    /// Back off while more sessions than this are active on average over a cycle
    /// (`pg_stat_activity`, the backfill's own excluded; the mean, so a pool's burst of a few
    /// milliseconds is not a load). `None`: twice the most seen during the second before the
    /// backfill, and at least 8 more. Needs `pg_read_all_stats` (e.g. through `pg_monitor`) to see other
    /// roles' sessions.
    pub max_active_sessions: Option<u32>,
    /// A cheap query the application really runs (e.g. a primary-key read), timed on a
    /// second connection every 100 ms of each batch and rest; the backfill backs off when the
    /// 75th percentile of its latencies over a cycle (the rest and the batch) is more than
    /// twice its median latency measured just before the backfill, and more than 2 ms above
    /// it. `None` turns it off. Default: a tenth of a millisecond of executor work
    /// ([`DEFAULT_PROBE`]): unlike `SELECT 1`, which is scheduled at once even on a saturated
    /// server, it waits for a CPU like the application's queries. Needs a second connection
    /// ([`Migrator::with_monitor`](super::Migrator::with_monitor)).
    pub probe_query: Option<String>,
    /// Pause while a replica has not replayed WAL written longer ago than this; `None` turns
    /// it off. Default: 5 s.
    pub max_replica_lag: Option<Duration>,
    /// The server's CPUs, against which the sessions running (active, no wait event) are
    /// counted. `None`: read from the server's `/proc/cpuinfo` (needs a superuser or
    /// `pg_read_server_files`), else that signal is off. Default: none.
    pub server_cpus: Option<u32>,
    /// The share of the server's CPUs, in percent, that everything running there is kept
    /// under, the backfill's batches included (client sessions active with no wait event,
    /// and where `/proc/stat` can be read the host's busy CPU time): the batches rest so
    /// that the others' use and theirs stay below it, and past it they back off. Raising it
    /// buys a faster backfill with the application's latency: on a server the application
    /// keeps busy, its sessions queue for a CPU while a batch holds one. Default: 75.
    pub max_cpu_percent: u32,
    /// Most batches at once, over disjoint key ranges, each on its own connection
    /// ([`Migrator::with_workers`](super::Migrator::with_workers)): a ceiling, the controller
    /// adds one only while the cycles are clean and the server's CPUs have room. Default: 4.
    pub max_workers: u32,
    /// Pause while this query returns true (one row, one boolean column). Default: none.
    pub throttle_query: Option<String>,
    /// How often a paused backfill checks whether it may resume. Default: 500 ms.
    pub pause_poll: Duration,
    /// Abort (rather than pause) while a replica lags more than this, on two readings a
    /// `pause_poll` apart. `None`: never. Default: none.
    pub critical_replica_lag: Option<Duration>,
    /// Abort a backfill that stayed paused longer than this (for any reason), after reading
    /// the signals once more. `None`: wait as long as it takes. Default: none.
    pub max_pause: Option<Duration>,
    /// Pause while more WAL segments than this wait for the archiver (`pg_wal/archive_status`,
    /// which needs `pg_monitor`); `None` turns it off. Default: 64 (1 GB of 16 MB segments).
    pub max_wal_archive_backlog: Option<u64>,
    /// Which autovacuum runs on the backfill's table pause it. Default: wraparound.
    pub autovacuum: AutovacuumPause,
    /// Pause while a transaction holding back the xmin horizon (or a prepared one) is older
    /// than this: the dead rows every batch leaves cannot be vacuumed until it ends. `None`
    /// turns it off. Default: 10 min.
    pub max_transaction_age: Option<Duration>,
    /// Vacuum the table from the backfill's own session each time its batches have changed
    /// half of autovacuum's threshold for it, paced like autovacuum but writing its pages out
    /// as it goes (`backend_flush_after`), instead of leaving the dead rows to an autovacuum
    /// worker whose writes reach the disk in one burst; the freed space also takes the next
    /// batches' row versions. The table's own autovacuum settings (threshold, scale factor,
    /// cost delay and limit) come first. Like autovacuum, the vacuum yields: the monitor
    /// connection cancels it when a session waits for a lock on the table behind it (an
    /// `ALTER TABLE`, an `ANALYZE`), or when a stop signal comes up (the operator's pause,
    /// replica lag, ...: the next batch acts on it), and the next comes after as many rows
    /// again. Left to
    /// autovacuum where it is off for the table, where this role does not own it, before the
    /// table's first ANALYZE (no estimate of its rows), and without a monitor connection
    /// ([`Migrator::with_backfill_sessions`](crate::runtime::Migrator::with_backfill_sessions)
    /// or [`with_monitor`](crate::runtime::Migrator::with_monitor)). Default: true.
    pub vacuum: bool,
}

/// Which autovacuum runs on a backfill's table pause the backfill.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum AutovacuumPause {
    /// None.
    Off,
    /// Those that prevent transaction ID wraparound: they must finish, and a backfill
    /// writing the table makes them longer.
    #[default]
    Wraparound,
    /// Every one.
    Any,
}

impl Default for BackfillControl {
    fn default() -> Self {
        BackfillControl {
            target: Duration::from_millis(100),
            busy_target: Some(Duration::from_millis(3)),
            min_batch: 100,
            max_batch: 50_000,
            max_active_sessions: None,
            probe_query: Some(DEFAULT_PROBE.to_owned()),
            server_cpus: None,
            max_cpu_percent: 75,
            max_workers: 4,
            max_replica_lag: Some(Duration::from_secs(5)),
            throttle_query: None,
            pause_poll: Duration::from_millis(500),
            critical_replica_lag: None,
            max_pause: None,
            max_wal_archive_backlog: Some(64),
            autovacuum: AutovacuumPause::Wraparound,
            max_transaction_age: Some(Duration::from_secs(10 * 60)),
            vacuum: true,
        }
    }
}

/// A setting's duration as a person writes it and the CLI reads it back: `0`, `300ms`, `2s`,
/// `1m30s`, `2h`; below a millisecond `500us` or `250ns` (not `0ns` or `300.5ms`).
pub fn duration_text(duration: Duration) -> String {
    if duration.is_zero() {
        return "0".to_owned();
    }
    let nanos = duration.subsec_nanos();
    if !nanos.is_multiple_of(1_000_000) {
        let total = duration.as_nanos();
        return if total.is_multiple_of(1_000) {
            format!("{}us", total / 1_000)
        } else {
            format!("{total}ns")
        };
    }
    let secs = duration.as_secs();
    let mut text = String::new();
    for (unit, size) in [("h", 3600), ("m", 60), ("s", 1)] {
        let count = secs / size % if size == 3600 { u64::MAX } else { 60 };
        if count > 0 {
            text.push_str(&format!("{count}{unit}"));
        }
    }
    let millis = nanos / 1_000_000;
    if millis > 0 {
        text.push_str(&format!("{millis}ms"));
    }
    text
}

/// The default probe query: about a tenth of a millisecond of executor work, so that it
/// queues for a CPU as the application's queries do.
pub const DEFAULT_PROBE: &str = "SELECT count(*) FROM generate_series(1, 1000)";

/// Longest `lock_timeout` accepted: the application's queries queue behind a migration's
/// lock request for up to that long.
pub const MAX_LOCK_TIMEOUT: Duration = Duration::from_secs(10 * 60);

impl MigratorConfig {
    /// Refuses settings that would silently turn a bound off: PostgreSQL reads
    /// `lock_timeout = 0` as "wait forever", and both timeouts count whole milliseconds, so
    /// `500us` would become 0.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let invalid = |setting, value: Duration, reason| RuntimeError::InvalidSetting {
            setting,
            value: duration_text(value),
            reason,
        };
        if self.lock_timeout < Duration::from_millis(1) {
            return Err(invalid(
                "lock_timeout",
                self.lock_timeout,
                "must be at least 1ms: PostgreSQL reads 0 as \"wait forever\", which lets \
                 the application queue behind a blocked migration without limit",
            ));
        }
        if self.lock_timeout > MAX_LOCK_TIMEOUT {
            return Err(invalid(
                "lock_timeout",
                self.lock_timeout,
                "must be at most 10m: the application's queries queue behind a waiting \
                 migration for up to that long; keep it short and let retries do the waiting",
            ));
        }
        if !self.statement_timeout.is_zero() && self.statement_timeout < Duration::from_millis(1) {
            return Err(invalid(
                "statement_timeout",
                self.statement_timeout,
                "must be 0 (disabled) or at least 1ms: PostgreSQL counts whole milliseconds",
            ));
        }
        if self.network_timeout.is_zero() {
            return Err(invalid(
                "network_timeout",
                self.network_timeout,
                "must be more than 0: it is the client's allowance for the server's answers",
            ));
        }
        let backfill = &self.backfill;
        if backfill.target < Duration::from_millis(1) || backfill.target > Duration::from_secs(60) {
            return Err(invalid(
                "backfill_target",
                backfill.target,
                "must be between 1ms and 60s: each batch holds its rows' locks that long",
            ));
        }
        if let Some(busy) = backfill.busy_target
            && (busy < Duration::from_millis(1) || busy > Duration::from_secs(60))
        {
            return Err(invalid(
                "backfill_busy_target",
                busy,
                "must be between 1ms and 60s (or off): each batch holds its rows' locks that long",
            ));
        }
        if backfill.min_batch == 0 || backfill.min_batch > backfill.max_batch {
            return Err(RuntimeError::InvalidSetting {
                setting: "backfill_min_batch",
                value: format!("{}..{}", backfill.min_batch, backfill.max_batch),
                reason: "the smallest batch must be at least 1 row and at most the largest",
            });
        }
        if backfill.max_workers == 0 || backfill.max_workers > 64 {
            return Err(RuntimeError::InvalidSetting {
                setting: "backfill_workers",
                value: backfill.max_workers.to_string(),
                reason: "must be between 1 and 64",
            });
        }
        if backfill.server_cpus == Some(0) {
            return Err(RuntimeError::InvalidSetting {
                setting: "backfill_server_cpus",
                value: "0".to_owned(),
                reason: "must be at least 1, or unset to read it from the server",
            });
        }
        if backfill.max_cpu_percent == 0 || backfill.max_cpu_percent > 100 {
            return Err(RuntimeError::InvalidSetting {
                setting: "backfill_max_cpu_percent",
                value: backfill.max_cpu_percent.to_string(),
                reason: "must be between 1 and 100 (percent of the server's CPUs)",
            });
        }
        if backfill.pause_poll.is_zero() {
            return Err(invalid(
                "backfill_pause_poll",
                backfill.pause_poll,
                "must be more than 0",
            ));
        }
        for (setting, query) in [
            ("backfill_probe_query", &backfill.probe_query),
            ("backfill_throttle_query", &backfill.throttle_query),
        ] {
            if query.as_deref().is_some_and(|q| q.trim().is_empty()) {
                return Err(RuntimeError::InvalidSetting {
                    setting,
                    value: String::new(),
                    reason: "must be a query, or unset to turn it off",
                });
            }
        }
        Ok(())
    }

    pub(crate) fn limits(&self) -> deadline::Limits {
        deadline::Limits::new(
            self.lock_timeout,
            self.statement_timeout,
            self.network_timeout,
        )
    }
}

impl Default for MigratorConfig {
    fn default() -> Self {
        MigratorConfig {
            history_table: "public.schema_migrations".to_owned(),
            application_name: "migrate".to_owned(),
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::from_secs(15 * 60),
            index_build_workers: Some(0),
            lock_wait: Duration::from_secs(60),
            lock_retries: 5,
            retry_backoff: Duration::from_millis(500),
            allow_out_of_order: false,
            ignore_missing: false,
            contract_stabilisation: Duration::ZERO,
            max_replica_lag: Some(Duration::from_secs(30)),
            running_queries_window: None,
            network_timeout: Duration::from_secs(30),
            backfill: BackfillControl::default(),
        }
    }
}

#[cfg(test)]
mod duration_text_tests {
    use super::*;

    #[test]
    fn durations_read_as_they_are_written() {
        for (duration, text) in [
            (Duration::ZERO, "0"),
            (Duration::from_millis(300), "300ms"),
            (Duration::from_secs(2), "2s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_secs(15 * 60), "15m"),
            (Duration::from_secs(7200), "2h"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_micros(500), "500us"),
            (Duration::from_nanos(250), "250ns"),
        ] {
            assert_eq!(duration_text(duration), text);
        }
    }
}
