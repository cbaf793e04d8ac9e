//! The PostgreSQL runtime: applies and reverts a [`Migrations`] set over one dedicated
//! connection, following the runtime protocol (docs/design.md, "Runtime protocol"):
//!
//! 1. session settings: `application_name`, `lock_timeout`, `statement_timeout`;
//! 2. a session advisory lock keyed on the history table name ([`lock`]), so concurrent
//!    deploys run one at a time;
//! 3. the history table is created if missing and checked: checksum drift, applied versions
//!    this binary lacks, and pending versions older than the newest applied are refused;
//! 4. each pending migration in order, transactional or statement by statement ([`executor`]);
//! 5. `lock_timeout` failures (SQLSTATE 55P03) retried with backoff, so the migration never
//!    queues the application behind it for longer than `lock_timeout`;
//! 6. before each contract migration, its gates ([`gates`]): expand applied, backfills
//!    verified, stabilisation time passed, replicas caught up.
//!
//! ```no_run
//! # async fn run(migrations: &migrate_core::Migrations) -> Result<(), Box<dyn std::error::Error>> {
//! use migrate_core::runtime::{connect, Migrator, MigratorConfig, UpTo};
//! let config = MigratorConfig::default();
//! let client = connect("postgres://deploy@db/app?sslmode=verify-full", &config).await?;
//! let report = Migrator::new(migrations, config)?.up(&client, UpTo::All).await?;
//! println!("{report}");
//! # Ok(()) }
//! ```

pub mod backfill;
pub mod connect;
mod deadline;
pub mod error;
pub mod executor;
pub mod flags;
pub mod gates;
pub mod history;
pub mod lock;
pub mod partial;
pub mod repair;
pub mod verify;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio_postgres::Client;

pub use connect::{ConnectOptions, SslMode, connect, connect_with};
pub use error::{ConnectError, Failed, LockHolder, PartialReport, RuntimeError, StatementLocation};
pub use gates::{GateFailure, Replica};
pub use history::{HistoryRow, TableName};
pub use lock::{AdvisoryLock, lock_key};
pub use verify::BackfillState;

use crate::migration::{Migration, Migrations, Phase, Section, TransactionMode};
use executor::{Backoff, ExecutionSettings, HistoryChange};
use history::History;

/// Longest single pause between two retries of a statement, whatever the attempt number.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);
/// The advisory lock is polled with backoff from this pause ...
const LOCK_POLL_BASE: Duration = Duration::from_millis(50);
/// ... up to this one.
const LOCK_POLL_MAX: Duration = Duration::from_secs(2);

/// Settings of a [`Migrator`]. `Default` gives the documented defaults.
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
    /// How long to wait for another migrator's advisory lock before failing. Default: 60 s.
    pub lock_wait: Duration,
    /// Retries after a `lock_timeout` failure (55P03): of the whole transaction in
    /// transactional mode, of the statement in autocommit mode. Default: 5.
    pub lock_retries: u32,
    /// First pause before a retry; doubled per retry (at most [`MAX_RETRY_BACKOFF`]), with
    /// jitter in its upper half. Default: 500 ms.
    pub retry_backoff: Duration,
    /// Apply pending migrations older than the newest applied one. Default: false.
    pub allow_out_of_order: bool,
    /// Proceed although the database has applied versions this binary lacks. Default: false.
    pub ignore_missing: bool,
    /// Time that must pass between applying an expand and applying the contract that
    /// `-- migrate:requires` it, measured on the server's clock from the expand's
    /// `executed_at`; a contract asked for earlier is refused with
    /// [`GateFailure::Stabilising`], saying how long remains. Default: zero (no wait).
    pub contract_stabilisation: Duration,
    /// Longest replay lag any replica in `pg_stat_replication` may have before a contract
    /// runs: the contract gate waits at most this long for every replica to replay the WAL
    /// written before it, then refuses with [`GateFailure::ReplicaLag`]. The deploy role needs
    /// `pg_monitor` (or `pg_read_all_stats`) to see the lag, else [`GateFailure::ReplicaLagUnknown`].
    /// `None` turns the replica gate off. Default: 30 s.
    pub max_replica_lag: Option<Duration>,
    /// Client-side allowance for the server's answer, on top of the server's own bounds:
    /// a query of the runtime's own waits at most `lock_timeout` + this, a migration
    /// statement `statement_timeout` + this (no client bound when `statement_timeout` is
    /// zero). A server that stops answering then fails the run with
    /// [`RuntimeError::NoAnswer`] instead of hanging it. Default: 30 s.
    pub network_timeout: Duration,
}

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
            value: format!("{value:?}"),
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
        Ok(())
    }

    fn limits(&self) -> deadline::Limits {
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
            lock_wait: Duration::from_secs(60),
            lock_retries: 5,
            retry_backoff: Duration::from_millis(500),
            allow_out_of_order: false,
            ignore_missing: false,
            contract_stabilisation: Duration::ZERO,
            max_replica_lag: Some(Duration::from_secs(30)),
            network_timeout: Duration::from_secs(30),
        }
    }
}

/// How far `up` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpTo {
    All,
    /// Every pending migration with a version up to and including this one.
    Version(u64),
}

/// The state of one version, for [`StatusReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationState {
    Applied,
    Pending,
    /// Applied, but the file changed since.
    Drifted,
    /// Applied, but not in this binary's set.
    MissingFromFiles,
    /// Not applied, but a statement-by-statement run of it failed or was interrupted after
    /// some statements committed ([`StatusEntry::detail`] says how far it got).
    PartlyApplied,
    /// A backfill that has not finished: some batches committed, no history row yet.
    BackfillInProgress,
}

impl MigrationState {
    pub fn as_str(self) -> &'static str {
        match self {
            MigrationState::Applied => "applied",
            MigrationState::Pending => "pending",
            MigrationState::Drifted => "drifted",
            MigrationState::MissingFromFiles => "missing from files",
            MigrationState::PartlyApplied => "partly applied",
            MigrationState::BackfillInProgress => "backfill in progress",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    pub version: u64,
    pub name: String,
    /// `None` only for a history row whose phase text is not a known phase.
    pub phase: Option<Phase>,
    pub state: MigrationState,
    pub applied_at: Option<SystemTime>,
    pub duration_ms: Option<i64>,
    /// For partly applied migrations and backfills in progress: how far they got.
    pub detail: Option<String>,
}

/// Every known or applied version, ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusReport {
    pub entries: Vec<StatusEntry>,
}

impl StatusReport {
    pub fn count(&self, state: MigrationState) -> usize {
        self.entries.iter().filter(|e| e.state == state).count()
    }
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for entry in &self.entries {
            write!(
                f,
                "{:>14}  {:<30} {:<9} {}",
                entry.version,
                entry.name,
                entry.phase.map_or("?", Phase::as_str),
                entry.state.as_str()
            )?;
            if let Some(ms) = entry.duration_ms {
                write!(f, " ({ms} ms)")?;
            }
            if let Some(detail) = &entry.detail {
                write!(f, " ({detail})")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// A migration `up` would apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedMigration {
    pub version: u64,
    pub name: String,
    pub phase: Phase,
    pub file_name: String,
    pub mode: TransactionMode,
    pub statements: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    pub migrations: Vec<PlannedMigration>,
}

impl PartialReport for Plan {
    fn nothing_done(&self) -> bool {
        self.migrations.is_empty()
    }

    fn label(&self) -> &'static str {
        "a real run would apply before that"
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.migrations.is_empty() {
            return writeln!(f, "nothing to do: the database is up to date");
        }
        for m in &self.migrations {
            writeln!(
                f,
                "{} ({}, {}, {} statement(s))",
                m.file_name,
                m.phase,
                m.mode.as_str(),
                m.statements
            )?;
        }
        Ok(())
    }
}

/// One migration applied (or reverted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    pub version: u64,
    pub name: String,
    pub phase: Phase,
    pub mode: TransactionMode,
    pub duration: Duration,
    /// 1 unless `lock_timeout` failures were retried.
    pub attempts: u32,
}

fn write_list(f: &mut fmt::Formatter<'_>, verb: &str, list: &[AppliedMigration]) -> fmt::Result {
    if list.is_empty() {
        return f.write_str(if verb == "reverted" {
            "nothing to revert"
        } else {
            "nothing to do: the database is up to date"
        });
    }
    write!(f, "{verb} {} migration(s):", list.len())?;
    for (index, m) in list.iter().enumerate() {
        let separator = if index == 0 { " " } else { ", " };
        write!(
            f,
            "{separator}{}_{} ({} ms",
            m.version,
            m.name,
            m.duration.as_millis()
        )?;
        if m.attempts > 1 {
            write!(f, ", {} attempts", m.attempts)?;
        }
        f.write_str(")")?;
    }
    Ok(())
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpReport {
    pub applied: Vec<AppliedMigration>,
}

impl UpReport {
    pub fn nothing_to_do(&self) -> bool {
        self.applied.is_empty()
    }

    pub fn versions(&self) -> Vec<u64> {
        self.applied.iter().map(|m| m.version).collect()
    }
}

impl PartialReport for UpReport {
    fn nothing_done(&self) -> bool {
        self.nothing_to_do()
    }
}

impl fmt::Display for UpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_list(f, "applied", &self.applied)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DownReport {
    /// Newest first, in the order they were reverted.
    pub reverted: Vec<AppliedMigration>,
}

impl DownReport {
    pub fn nothing_to_do(&self) -> bool {
        self.reverted.is_empty()
    }

    pub fn versions(&self) -> Vec<u64> {
        self.reverted.iter().map(|m| m.version).collect()
    }
}

impl PartialReport for DownReport {
    fn nothing_done(&self) -> bool {
        self.nothing_to_do()
    }
}

impl fmt::Display for DownReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_list(f, "reverted", &self.reverted)
    }
}

/// Applies a migration set to one database; see the module docs for the protocol.
pub struct Migrator<'m> {
    migrations: &'m Migrations,
    config: MigratorConfig,
    history: History,
    lock_key: i64,
    progress: Option<ProgressHook>,
}

/// What `up` and `down` are doing, for progress displays (see [`Migrator::with_progress`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ProgressEvent<'a> {
    /// A migration is about to run; `index` counts from 0 among `total` in this run.
    Starting {
        migration: &'a Migration,
        index: usize,
        total: usize,
        reverting: bool,
    },
    /// A backfill batch committed; `rows_done` counts the statement's rows so far.
    BackfillBatch {
        migration: &'a Migration,
        rows_done: i64,
    },
    /// A migration finished (applied or reverted).
    Finished {
        migration: &'a Migration,
        index: usize,
        total: usize,
    },
}

/// A callback receiving [`ProgressEvent`]s. It runs on the migration's task: keep it quick.
pub type ProgressHook = Box<dyn Fn(&ProgressEvent<'_>) + Send + Sync>;

impl std::fmt::Debug for Migrator<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Migrator")
            .field("migrations", &self.migrations.len())
            .field("config", &self.config)
            .field("lock_key", &self.lock_key)
            .field("progress", &self.progress.is_some())
            .finish()
    }
}

impl<'m> Migrator<'m> {
    /// Validates the configuration; no I/O.
    pub fn new(
        migrations: &'m Migrations,
        config: MigratorConfig,
    ) -> Result<Migrator<'m>, RuntimeError> {
        config.validate()?;
        let table = TableName::parse(&config.history_table)?;
        if let Some(m) = migrations
            .iter()
            .find(|m| i64::try_from(m.version).is_err())
        {
            return Err(RuntimeError::VersionOutOfRange { version: m.version });
        }
        let history = History::new(table);
        let lock_key = lock_key(history.quoted());
        Ok(Migrator {
            migrations,
            config,
            history,
            lock_key,
            progress: None,
        })
    }

    /// Reports progress of `up` and `down` to `hook` (e.g. a terminal progress bar).
    pub fn with_progress(mut self, hook: ProgressHook) -> Self {
        self.progress = Some(hook);
        self
    }

    fn report_progress(&self, event: ProgressEvent<'_>) {
        if let Some(hook) = &self.progress {
            hook(&event);
        }
    }

    pub fn config(&self) -> &MigratorConfig {
        &self.config
    }

    /// The advisory lock key, see [`lock_key`].
    pub fn lock_key(&self) -> i64 {
        self.lock_key
    }

    pub fn history_table(&self) -> &TableName {
        self.history.table()
    }

    fn settings(&self) -> ExecutionSettings {
        ExecutionSettings {
            limits: self.config.limits(),
            partial: partial::PartialRunTable::for_history(self.history.table()).ok(),
            lock_retries: self.config.lock_retries,
            backoff: Backoff {
                base: self.config.retry_backoff,
                max: MAX_RETRY_BACKOFF,
            },
        }
    }

    /// `SET` for the session, through `set_config` so values are bound, never spliced.
    /// Returns the values it replaced, for [`Migrator::restore_session`].
    async fn configure_session(&self, client: &Client) -> Result<[String; 3], RuntimeError> {
        let millis = |d: Duration| format!("{}ms", d.as_millis());
        let before = client
            .query_one(
                "SELECT current_setting('application_name'), current_setting('lock_timeout'), \
                        current_setting('statement_timeout')",
                &[],
            )
            .await
            .map_err(RuntimeError::database("reading the session parameters"))?;
        let before = [before.get(0), before.get(1), before.get(2)];
        client
            .query_one(
                "SELECT set_config('application_name', $1, false), \
                        set_config('lock_timeout', $2, false), \
                        set_config('statement_timeout', $3, false)",
                &[
                    &self.config.application_name,
                    &millis(self.config.lock_timeout),
                    &millis(self.config.statement_timeout),
                ],
            )
            .await
            .map_err(RuntimeError::database("setting the session parameters"))?;
        Ok(before)
    }

    /// Puts back the session parameters `up` and `down` changed, so a client handed in from
    /// a pool goes back with its own settings, not a 300 ms lock timeout.
    async fn restore_session(&self, client: &Client, before: &[String; 3]) {
        let result = deadline::within(
            Some(self.config.limits().own),
            "restoring the session parameters",
            client.query_one(
                "SELECT set_config('application_name', $1, false), \
                        set_config('lock_timeout', $2, false), \
                        set_config('statement_timeout', $3, false)",
                &[&before[0], &before[1], &before[2]],
            ),
        )
        .await;
        if !matches!(result, Ok(Ok(_))) {
            tracing::warn!(
                "could not restore the session parameters; do not reuse this connection"
            );
        }
    }

    async fn acquire_lock<'c>(&self, client: &'c Client) -> Result<AdvisoryLock<'c>, RuntimeError> {
        AdvisoryLock::acquire(
            client,
            self.lock_key,
            self.config.lock_wait,
            Backoff {
                base: LOCK_POLL_BASE,
                max: LOCK_POLL_MAX,
            },
        )
        .await
    }

    /// Every version known to the binary or the history, with its state. Read only: takes
    /// no lock and creates nothing.
    pub async fn status(&self, client: &Client) -> Result<StatusReport, RuntimeError> {
        let rows = self.read_history(client).await?;
        let partial_runs = deadline::within(
            Some(self.config.limits().own),
            "reading partial runs",
            partial::PartialRunTable::for_history(self.history.table())?.read(client),
        )
        .await??;
        let backfills = deadline::within(
            Some(self.config.limits().own),
            "reading backfill progress",
            self.backfills(client),
        )
        .await??;
        let applied: BTreeMap<u64, &HistoryRow> = rows.iter().map(|r| (r.version, r)).collect();
        let mut entries: BTreeMap<u64, StatusEntry> = BTreeMap::new();
        for m in self.migrations.iter() {
            let row = applied.get(&m.version);
            let mut detail = None;
            let state = match row {
                None => {
                    let started: Vec<&verify::BackfillState> = backfills
                        .iter()
                        .filter(|b| b.version == m.version && b.rows_done.is_some())
                        .collect();
                    if let Some(run) = partial_runs.get(&m.version) {
                        let how = if run.failed_at.is_some() {
                            "failed"
                        } else {
                            "interrupted (or running)"
                        };
                        detail = Some(format!(
                            "{how} after {} of {} statement(s) committed; the next `up` runs it \
                             again from its first statement, so each must survive a re-run{}",
                            run.statements_done,
                            m.up.statements.len(),
                            run.error
                                .as_deref()
                                .map_or_else(String::new, |e| format!(": {e}"))
                        ));
                        MigrationState::PartlyApplied
                    } else if !started.is_empty() {
                        let rows_done: i64 = started.iter().filter_map(|b| b.rows_done).sum();
                        detail = Some(format!(
                            "{rows_done} row(s) done; the next `up` resumes from the last key"
                        ));
                        MigrationState::BackfillInProgress
                    } else {
                        MigrationState::Pending
                    }
                }
                Some(row) if row.checksum != m.checksum.to_hex() => MigrationState::Drifted,
                Some(_) => MigrationState::Applied,
            };
            entries.insert(
                m.version,
                StatusEntry {
                    version: m.version,
                    name: m.name.to_string(),
                    phase: Some(m.phase),
                    state,
                    applied_at: row.map(|r| r.executed_at),
                    duration_ms: row.map(|r| r.duration_ms),
                    detail,
                },
            );
        }
        for row in &rows {
            entries.entry(row.version).or_insert_with(|| StatusEntry {
                version: row.version,
                name: row.name.clone(),
                phase: Phase::parse(&row.phase),
                state: MigrationState::MissingFromFiles,
                applied_at: Some(row.executed_at),
                duration_ms: Some(row.duration_ms),
                detail: None,
            });
        }
        Ok(StatusReport {
            entries: entries.into_values().collect(),
        })
    }

    /// What `up(target)` would apply now, refusing exactly as `up` would. Read only.
    pub async fn plan(&self, client: &Client, target: UpTo) -> Result<Plan, RuntimeError> {
        let rows = self.read_history(client).await?;
        let pending = self.pending(&rows, target)?;
        Ok(Plan {
            migrations: pending.into_iter().map(planned_migration).collect(),
        })
    }

    /// What `up(target)` would do now, evaluating every check and gate the real run does
    /// (history checks, contract gates: expand applied, backfills verified, stabilisation,
    /// replicas, rows left by backfills) without changing anything. Migrations the run would
    /// apply before a contract count as applied at that point. On a refusal the error carries
    /// the migrations the real run would have applied before it, as `up` does.
    pub async fn dry_run_up(&self, client: &Client, target: UpTo) -> Result<Plan, Failed<Plan>> {
        let mut plan = Plan::default();
        match self.dry_run_up_inner(client, target, &mut plan).await {
            Ok(()) => Ok(plan),
            Err(error) => Err(Failed {
                report: plan,
                error,
            }),
        }
    }

    async fn dry_run_up_inner(
        &self,
        client: &Client,
        target: UpTo,
        plan: &mut Plan,
    ) -> Result<(), RuntimeError> {
        let rows = self.read_history(client).await?;
        let pending = self.pending(&rows, target)?;
        let gate_settings = gates::GateSettings {
            stabilisation: self.config.contract_stabilisation,
            max_replica_lag: self.config.max_replica_lag,
        };
        let mut planned = BTreeSet::new();
        for m in pending {
            if m.phase == Phase::Contract {
                deadline::within(
                    self.gate_limit(),
                    "checking the contract gates",
                    gates::check(
                        client,
                        &self.history,
                        self.migrations,
                        m,
                        &gate_settings,
                        &planned,
                    ),
                )
                .await??;
            }
            planned.insert(m.version);
            plan.migrations.push(planned_migration(m));
        }
        Ok(())
    }

    /// Applies the pending migrations up to `target`, in version order. On failure the
    /// error carries the migrations applied before it.
    pub async fn up(&self, client: &Client, target: UpTo) -> Result<UpReport, Failed<UpReport>> {
        let mut report = UpReport::default();
        let result = self
            .locked(client, |client| self.up_locked(client, target, &mut report))
            .await;
        match result {
            Ok(()) => Ok(report),
            Err(error) => Err(Failed { report, error }),
        }
    }

    /// Reverts the applied migrations with a version above `to`, newest first. Refuses
    /// before reverting anything when one of them has no down part.
    pub async fn down(&self, client: &Client, to: u64) -> Result<DownReport, Failed<DownReport>> {
        let mut report = DownReport::default();
        let result = self
            .locked(client, |client| self.down_locked(client, to, &mut report))
            .await;
        match result {
            Ok(()) => Ok(report),
            Err(error) => Err(Failed { report, error }),
        }
    }

    /// Session settings, then `work` under the advisory lock. The lock is released
    /// explicitly whatever `work` returns: `work` cannot skip the release with `?`.
    async fn locked<'c, F, Fut>(&self, client: &'c Client, work: F) -> Result<(), RuntimeError>
    where
        F: FnOnce(&'c Client) -> Fut,
        Fut: Future<Output = Result<(), RuntimeError>>,
    {
        let own = Some(self.config.limits().own);
        let before = deadline::within(
            own,
            "setting the session parameters",
            self.configure_session(client),
        )
        .await??;
        let lock = deadline::within(
            own.map(|limit| limit + self.config.lock_wait),
            "taking the migration lock",
            self.acquire_lock(client),
        );
        let lock = match lock.await {
            Ok(Ok(lock)) => lock,
            Ok(Err(error)) | Err(error) => {
                if !matches!(error, RuntimeError::NoAnswer { .. }) {
                    self.restore_session(client, &before).await;
                }
                return Err(error);
            }
        };
        let result = work(client).await;
        // A server that stopped answering would not answer these either.
        if !matches!(result, Err(RuntimeError::NoAnswer { .. })) {
            if let Err(error) = lock.release().await {
                // The work's outcome stands; a failed unlock means the session is broken, and
                // the server drops a session's advisory locks when it ends.
                tracing::warn!(%error, "could not release the migration lock explicitly");
            }
            self.restore_session(client, &before).await;
        }
        result
    }

    async fn up_locked(
        &self,
        client: &Client,
        target: UpTo,
        report: &mut UpReport,
    ) -> Result<(), RuntimeError> {
        // Before creating anything: refuses a configured name that is probably a typo.
        self.read_history(client).await?;
        deadline::within(
            Some(self.config.limits().own),
            "creating the history table",
            self.history.ensure(client),
        )
        .await??;
        let rows = self.read_history(client).await?;
        let pending = self.pending(&rows, target)?;
        if pending.is_empty() {
            return Ok(());
        }
        let in_transaction = self
            .prepare(client, self.history.insert_in_transaction_sql())
            .await?;
        let with_duration = self.prepare(client, self.history.insert_sql()).await?;
        let settings = self.settings();
        let gate_settings = gates::GateSettings {
            stabilisation: self.config.contract_stabilisation,
            max_replica_lag: self.config.max_replica_lag,
        };
        let total = pending.len();
        for (index, m) in pending.into_iter().enumerate() {
            self.report_progress(ProgressEvent::Starting {
                migration: m,
                index,
                total,
                reverting: false,
            });
            let guard = if m.phase == Phase::Contract {
                // Before any statement of the contract: a refusal leaves it untouched and
                // the migrations applied so far in this run applied.
                Some(
                    deadline::within(
                        self.gate_limit(),
                        "checking the contract gates",
                        gates::check(
                            client,
                            &self.history,
                            self.migrations,
                            m,
                            &gate_settings,
                            &BTreeSet::new(),
                        ),
                    )
                    .await??,
                )
            } else {
                None
            };
            let checksum = m.checksum.to_hex();
            let history = HistoryChange::Insert {
                in_transaction: &in_transaction,
                with_duration: &with_duration,
                version: sql_version(m.version),
                name: &m.name,
                phase: m.phase.as_str(),
                checksum: &checksum,
            };
            let mode = if m.phase == Phase::Backfill && m.backfill.is_some() {
                "batched"
            } else {
                m.up.mode.as_str()
            };
            tracing::info!(version = m.version, file = %m.file_name, mode, "applying");
            let outcome = match &m.backfill {
                Some(spec) if m.phase == Phase::Backfill => {
                    let progress =
                        backfill::BackfillProgressTable::for_history(self.history.table())?;
                    let on_batch = |rows_done| {
                        self.report_progress(ProgressEvent::BackfillBatch {
                            migration: m,
                            rows_done,
                        })
                    };
                    backfill::run(client, m, spec, &progress, &settings, history, &on_batch).await?
                }
                _ => {
                    executor::run_section(client, m, &m.up, &settings, history, guard.as_ref())
                        .await?
                }
            };
            report.applied.push(applied(m, &m.up, outcome));
            self.report_progress(ProgressEvent::Finished {
                migration: m,
                index,
                total,
            });
        }
        Ok(())
    }

    async fn down_locked(
        &self,
        client: &Client,
        to: u64,
        report: &mut DownReport,
    ) -> Result<(), RuntimeError> {
        let rows = self.read_history(client).await?;
        let plan = self.down_plan(&rows, to)?;
        if plan.is_empty() {
            return Ok(());
        }
        let delete = self.prepare(client, self.history.delete_sql()).await?;
        let settings = self.settings();
        let total = plan.len();
        for (index, (m, down)) in plan.into_iter().enumerate() {
            self.report_progress(ProgressEvent::Starting {
                migration: m,
                index,
                total,
                reverting: true,
            });
            let history = HistoryChange::Delete {
                statement: &delete,
                version: sql_version(m.version),
            };
            tracing::info!(version = m.version, file = %m.file_name, mode = down.mode.as_str(), "reverting");
            let outcome = executor::run_section(client, m, down, &settings, history, None).await?;
            if m.phase == Phase::Backfill {
                // A later up must run the backfill again from the start.
                backfill::BackfillProgressTable::for_history(self.history.table())?
                    .forget(client, sql_version(m.version))
                    .await?;
            }
            report.reverted.push(applied(m, down, outcome));
            self.report_progress(ProgressEvent::Finished {
                migration: m,
                index,
                total,
            });
        }
        Ok(())
    }

    async fn prepare(
        &self,
        client: &Client,
        sql: &str,
    ) -> Result<tokio_postgres::Statement, RuntimeError> {
        deadline::within(
            Some(self.config.limits().own),
            "preparing the history statements",
            client.prepare(sql),
        )
        .await?
        .map_err(RuntimeError::database("preparing the history statements"))
    }

    /// The history rows, within the bound of the runtime's own queries.
    async fn read_history(&self, client: &Client) -> Result<Vec<HistoryRow>, RuntimeError> {
        deadline::within(
            Some(self.config.limits().own),
            "reading the history table",
            self.history.read(client),
        )
        .await?
    }

    /// The gates wait for replicas up to `max_replica_lag` and count rows under
    /// `statement_timeout`.
    fn gate_limit(&self) -> Option<Duration> {
        let limits = self.config.limits();
        let replicas = self.config.max_replica_lag.unwrap_or(Duration::ZERO);
        limits
            .statement
            .map(|statement| statement.saturating_mul(4) + replicas + limits.own)
    }

    fn check_checksum(&self, m: &Migration, row: &HistoryRow) -> Result<(), RuntimeError> {
        let found = m.checksum.to_hex();
        if row.checksum != found {
            return Err(RuntimeError::ChecksumMismatch {
                version: m.version,
                file: m.file_name.to_string(),
                expected: row.checksum.clone(),
                found,
            });
        }
        Ok(())
    }

    /// The migrations `down(to)` reverts, newest first, with their down parts; refuses as
    /// `down` does (applied versions missing from the set, drift, no down part) before
    /// anything is reverted.
    fn down_plan(
        &self,
        rows: &[HistoryRow],
        to: u64,
    ) -> Result<Vec<(&'m Migration, &'m Section)>, RuntimeError> {
        let to_revert: Vec<&HistoryRow> = rows.iter().rev().filter(|r| r.version > to).collect();
        let unknown: Vec<u64> = to_revert
            .iter()
            .filter(|r| self.migrations.get(r.version).is_none())
            .map(|r| r.version)
            .collect();
        if !unknown.is_empty() {
            return Err(self.unknown_applied(unknown));
        }
        let mut plan = Vec::new();
        let mut without_down = Vec::new();
        for row in to_revert {
            let Some(m) = self.migrations.get(row.version) else {
                continue;
            };
            self.check_checksum(m, row)?;
            match &m.down {
                Some(down) => plan.push((m, down)),
                None => without_down.push(m.version),
            }
        }
        if !without_down.is_empty() {
            without_down.sort_unstable();
            return Err(RuntimeError::NoDownPart {
                versions: without_down,
            });
        }
        Ok(plan)
    }

    /// What `down(to)` would revert now, newest first, refusing exactly as `down` would.
    /// Read only. Each entry's mode and statement count are those of its down part.
    pub async fn dry_run_down(&self, client: &Client, to: u64) -> Result<Plan, RuntimeError> {
        let rows = self.read_history(client).await?;
        let plan = self.down_plan(&rows, to)?;
        Ok(Plan {
            migrations: plan
                .into_iter()
                .map(|(m, down)| PlannedMigration {
                    mode: down.mode,
                    statements: down.statements.len(),
                    ..planned_migration(m)
                })
                .collect(),
        })
    }

    /// The checks of protocol step 3, then the migrations `up(target)` applies, ascending.
    fn pending(
        &self,
        rows: &[HistoryRow],
        target: UpTo,
    ) -> Result<Vec<&'m Migration>, RuntimeError> {
        let unknown: Vec<u64> = rows
            .iter()
            .filter(|r| self.migrations.get(r.version).is_none())
            .map(|r| r.version)
            .collect();
        if !unknown.is_empty() && !self.config.ignore_missing {
            return Err(self.unknown_applied(unknown));
        }
        for row in rows {
            if let Some(m) = self.migrations.get(row.version) {
                self.check_checksum(m, row)?;
            }
        }
        let applied: BTreeSet<u64> = rows.iter().map(|r| r.version).collect();
        let pending: Vec<&'m Migration> = self
            .migrations
            .migrations
            .iter()
            .filter(|m| !applied.contains(&m.version))
            .filter(|m| match target {
                UpTo::All => true,
                UpTo::Version(v) => m.version <= v,
            })
            .collect();
        if let Some(&newest_applied) = applied.last() {
            let older: Vec<u64> = pending
                .iter()
                .filter(|m| m.version < newest_applied)
                .map(|m| m.version)
                .collect();
            if !older.is_empty() && !self.config.allow_out_of_order {
                return Err(RuntimeError::OutOfOrder {
                    pending: older,
                    newest_applied,
                });
            }
        }
        Ok(pending)
    }

    /// `UnknownApplied`, naming the `.sql` files of those versions that exist in the set's
    /// folder now: proof that the binary is older than the folder.
    fn unknown_applied(&self, versions: Vec<u64>) -> RuntimeError {
        let files = self.files_lacking_in_binary(&versions);
        RuntimeError::UnknownApplied {
            versions,
            files_on_disk_lacking_in_binary: files,
        }
    }
}

impl Migrator<'_> {
    /// The `.sql` files of `versions` that exist, at run time, in the folder the set was read
    /// from (for an embedded set: the folder it was built from). Applied versions the binary
    /// lacks but whose files are there mean the binary is stale and must be rebuilt.
    pub fn files_lacking_in_binary(&self, versions: &[u64]) -> Vec<PathBuf> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&*self.migrations.dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|entry| entry.path())
            .filter(|path| {
                let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                    return false;
                };
                let digits: String = name.chars().take_while(char::is_ascii_digit).collect();
                name.ends_with(".sql")
                    && name[digits.len()..].starts_with('_')
                    && digits.parse::<u64>().is_ok_and(|v| versions.contains(&v))
            })
            .collect();
        files.sort();
        files
    }
}

fn planned_migration(m: &Migration) -> PlannedMigration {
    PlannedMigration {
        version: m.version,
        name: m.name.to_string(),
        phase: m.phase,
        file_name: m.file_name.to_string(),
        mode: m.up.mode,
        statements: m.up.statements.len(),
    }
}

/// Checked in [`Migrator::new`].
pub(crate) fn sql_version(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

fn applied(
    m: &Migration,
    section: &Section,
    outcome: executor::SectionOutcome,
) -> AppliedMigration {
    AppliedMigration {
        version: m.version,
        name: m.name.to_string(),
        phase: m.phase,
        mode: section.mode,
        duration: outcome.duration,
        attempts: outcome.attempts,
    }
}
