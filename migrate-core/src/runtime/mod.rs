//! The PostgreSQL runtime: applies and reverts a [`Migrations`] set over one dedicated
//! connection, following this protocol:
//!
//! 1. session settings: `application_name`, `lock_timeout`, `statement_timeout`;
//! 2. a session advisory lock keyed on the history table name ([`lock_key`]), so concurrent
//!    deploys run one at a time (`up` returns without it when nothing is pending for its
//!    target: see [`UpTo::LeadingExpands`] for start-up apply);
//! 3. the history table is created if missing and checked: checksum drift, applied versions
//!    this binary lacks, and pending versions older than the newest applied are refused;
//! 4. each pending migration in order, transactional or statement by statement (`executor.rs`);
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

mod adopt;
pub mod backfill;
pub mod compare;
mod config;
pub mod connect;
mod deadline;
pub mod error;
mod executor;
pub mod gates;
mod lock;
// What `migrate check` observes PostgreSQL doing: the CLI's, not a stable API.
#[cfg(feature = "lint")]
#[doc(hidden)]
pub mod observe;
mod pending;
mod pooler;
mod replication;
mod report;
mod rows_guard;
mod session;
mod text;
// The runtime's own tables: public for the CLI (`check` names them, `flag` validates flag
// names), not a stable API; a service uses them through `Migrator`.
#[doc(hidden)]
pub mod state;

// The rooms' public modules, at the paths they always had.
#[cfg(feature = "lint")]
pub use adopt::import;
pub use adopt::{baseline, repair};
pub use backfill::verify;
#[cfg(feature = "sqlx")]
pub use compare::sqlx;
pub use compare::{dual_write, reconcile};

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::Client;
use tracing::Instrument;

pub use backfill::controller::{ApplicationRates, PaceState, Pressure};
pub use backfill::pace::BackfillStatus;
pub use backfill::rerun::BackfillRerun;
pub use backfill::stops::PAUSE_FLAG;
pub use compare::{CompareOptions, CompareReport, Difference, DifferingKey};
pub use config::{
    AutovacuumPause, BackfillControl, DEFAULT_PROBE, MAX_LOCK_TIMEOUT, MigratorConfig,
    duration_text,
};
pub use connect::{ConnectOptions, SslMode, connect, connect_with};
pub use dual_write::{DualWrite, DualWriteConfig, ModernWrite};
pub use error::{
    AbortReason, CompareLocation, CompareSide, ConnectError, Failed, GateFailure, KeyProblem,
    LockHolder, PartialReport, PauseReason, Replica, RuntimeError, StatementLocation, StuckCause,
};
pub use lock::lock_key;
pub use reconcile::{ReconcileBacklog, ReconcileReport};
pub use report::{
    AppliedMigration, DownReport, HeldBack, HeldBackReason, MigrationState, Plan, PlannedMigration,
    StatusEntry, StatusReport, UpReport, UpTo,
};
pub use state::history::{TableName, check_history_table};
pub use state::reconcile_queue::UnreplayableKey;
pub use verify::{BackfillRun, BackfillState};

use crate::migration::{BackfillSpec, Migration, Migrations, Phase, Section};
use executor::{Backoff, ExecutionSettings, HistoryChange, finish_span};
use lock::AdvisoryLock;
use session::SessionState;
use state::history::{History, HistoryRow, sql_version};

/// Longest single pause between two retries of a statement, whatever the attempt number.
pub const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(30);
/// The advisory lock is polled with backoff from this pause ...
const LOCK_POLL_BASE: Duration = Duration::from_millis(50);
/// ... up to this one.
const LOCK_POLL_MAX: Duration = Duration::from_secs(2);

/// Applies a migration set to one database; see the module docs for the protocol.
pub struct Migrator<'m> {
    migrations: &'m Migrations,
    config: MigratorConfig,
    history: History,
    lock_key: i64,
    progress: Option<ProgressHook>,
    monitor: Option<Client>,
    workers: Vec<Client>,
    backfill_sessions: Option<ConnectOptions>,
    /// A backfill under the controller ran without its monitor, and the log said so: once
    /// per migrator is enough to tell the operator what is off.
    said_monitor_off: std::sync::atomic::AtomicBool,
}

/// What `up` and `down` are doing, for progress displays (see [`Migrator::with_progress`]).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum ProgressEvent<'a> {
    /// A migration is about to run; `index` counts from 0 among `total` in this run.
    Starting {
        /// The migration.
        migration: &'a Migration,
        /// Its position in this run, from 0.
        index: usize,
        /// How many migrations this run applies or reverts.
        total: usize,
        /// `down` is running its down part.
        reverting: bool,
    },
    /// A backfill batch committed; `rows_done` counts the statement's rows so far.
    BackfillBatch {
        /// The backfill migration.
        migration: &'a Migration,
        /// Rows of the current statement updated so far, by interrupted runs included.
        rows_done: i64,
    },
    /// A backfill's pace after a batch, or while it is paused: rows/s, batch size, state,
    /// time left.
    BackfillPace {
        /// The backfill migration.
        migration: &'a Migration,
        /// Its pace.
        status: &'a BackfillStatus,
    },
    /// A migration finished (applied or reverted).
    Finished {
        /// The migration.
        migration: &'a Migration,
        /// Its position in this run, from 0.
        index: usize,
        /// How many migrations this run applies or reverts.
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
            .field("monitor", &self.monitor.is_some())
            .finish()
    }
}

/// Sets the session parameters a run changes (`configure_session`) and puts back the
/// caller's (`restore_session`): the values bound, never spliced.
const SET_SESSION_PARAMETERS: &str = "SELECT set_config('application_name', $1, false), \
                                             set_config('lock_timeout', $2, false), \
                                             set_config('statement_timeout', $3, false), \
                                             set_config('max_parallel_maintenance_workers', $4, false), \
                                             set_config('backend_flush_after', $5, false)";

impl<'m> Migrator<'m> {
    /// Validates the configuration; no I/O.
    pub fn new(
        migrations: &'m Migrations,
        config: MigratorConfig,
    ) -> Result<Migrator<'m>, RuntimeError> {
        config.validate()?;
        let table = TableName::parse(&config.history_table)?;
        // The runtime's other tables are named after the history table: a name whose derived
        // names pass 63 bytes is refused here, not at the first backfill of a deploy.
        state::backfill_progress::BackfillProgressTable::for_history(&table)?;
        state::partial::PartialRunTable::for_history(&table)?;
        state::flags::FlagStore::for_history_table(&table)?;
        if let Some(m) = migrations
            .try_as_slice()?
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
            monitor: None,
            workers: Vec::new(),
            backfill_sessions: None,
            said_monitor_off: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Reports progress of `up` and `down` to `hook` (e.g. a terminal progress bar).
    pub fn with_progress(mut self, hook: ProgressHook) -> Self {
        self.progress = Some(hook);
        self
    }

    /// A second connection to the same database, on which backfills watch the server while
    /// each batch runs: sessions waiting on the batch's locks, active sessions, and the
    /// probe query's latency ([`BackfillControl`]), and sessions waiting behind the
    /// backfill's own vacuum of its table, which yields to them ([`BackfillControl::vacuum`]).
    /// Without it a backfill still sizes its batches and pauses on replica lag, the throttle
    /// query and the operator's pause, and leaves its dead rows to autovacuum. Give
    /// it an `application_name` of its own (the CLI's is `<name> backfill monitor`), so that
    /// what finds the migration session by name does not find it.
    pub fn with_monitor(mut self, monitor: Client) -> Self {
        self.monitor = Some(monitor);
        self
    }

    /// The guard every operation on the runtime's tables runs first (see
    /// [`check_history_table`]): refuses a configured history table that is probably a typo
    /// or another tool's, before anything named after it is read or created.
    pub async fn check_history_table(&self, client: &Client) -> Result<(), RuntimeError> {
        deadline::within(
            Some(self.config.limits().own),
            "checking the history table",
            self.history.check(client),
        )
        .await??;
        Ok(())
    }

    /// More connections to the same database on which a backfill under the controller runs
    /// batches at once, over disjoint key ranges, when the server has room
    /// ([`BackfillControl::max_workers`] is the ceiling, counting the migration's own
    /// connection). They get the migration session's `lock_timeout` and `statement_timeout`.
    pub fn with_workers(mut self, workers: Vec<Client>) -> Self {
        self.workers = workers;
        self
    }

    /// Where a backfill under the controller opens its monitor and worker connections when
    /// none were given ([`Migrator::with_monitor`], [`Migrator::with_workers`]), and a
    /// backfill in fixed batches its monitor when it vacuums its table: just before
    /// it runs, under the migration lock, and closed when it ends. Opened earlier, every
    /// runner waiting for the lock would hold them too, and a session pooler's small pool
    /// would be spent before the runner holding the lock got its own. The monitor must
    /// open (the backfill fails otherwise: its lock-wait and latency signals need it); a
    /// worker that cannot open is left out with a warning. They are named
    /// `<application_name> backfill monitor` and `<application_name> backfill worker`.
    pub fn with_backfill_sessions(mut self, options: ConnectOptions) -> Self {
        self.backfill_sessions = Some(options);
        self
    }

    /// Sets or clears the operator's pause of every backfill of this database (the
    /// [`PAUSE_FLAG`] flag): running backfills stop before their next batch and wait, and
    /// start again when it is cleared. Takes no migration lock.
    pub async fn pause_backfills(&self, client: &Client, paused: bool) -> Result<(), RuntimeError> {
        self.check_history_table(client).await?;
        let flags = state::flags::FlagStore::for_history_table(self.history.table())?;
        match flags.set(client, PAUSE_FLAG, paused).await {
            Ok(_) => Ok(()),
            Err(state::flags::FlagError::Runtime(error)) => Err(error),
            Err(error) => Err(RuntimeError::InvalidSetting {
                setting: "backfill pause flag",
                value: error.to_string(),
                reason: "the pause flag could not be written",
            }),
        }
    }

    /// Whether the operator's pause of backfills is set. Read only.
    pub async fn backfills_paused(&self, client: &Client) -> Result<bool, RuntimeError> {
        self.check_history_table(client).await?;
        let flags = state::flags::FlagStore::for_history_table(self.history.table())?;
        match flags.get(client, PAUSE_FLAG).await {
            Ok(flag) => Ok(flag.enabled),
            Err(state::flags::FlagError::Runtime(error)) => Err(error),
            Err(_) => Ok(false),
        }
    }

    fn report_progress(&self, event: ProgressEvent<'_>) {
        if let Some(hook) = &self.progress {
            hook(&event);
        }
    }

    /// The settings it was created with.
    pub fn config(&self) -> &MigratorConfig {
        &self.config
    }

    /// The advisory lock key, see [`lock_key`].
    pub fn lock_key(&self) -> i64 {
        self.lock_key
    }

    /// The history table, parsed from [`MigratorConfig::history_table`]; the other state
    /// tables are named after it.
    pub fn history_table(&self) -> &TableName {
        self.history.table()
    }

    fn settings(&self) -> ExecutionSettings {
        ExecutionSettings {
            lock_key: self.lock_key,
            limits: self.config.limits(),
            partial: state::partial::PartialRunTable::for_history(self.history.table()).ok(),
            lock_retries: self.config.lock_retries,
            backoff: Backoff {
                base: self.config.retry_backoff,
                max: MAX_RETRY_BACKOFF,
            },
        }
    }

    /// `SET` for the session, through `set_config` so values are bound, never spliced.
    /// Returns the values it replaced, for [`Migrator::restore_session`].
    async fn configure_session(&self, client: &Client) -> Result<[String; 5], RuntimeError> {
        let millis = |d: Duration| format!("{}ms", d.as_millis());
        let before = client
            .query_one(
                "SELECT current_setting('application_name'), current_setting('lock_timeout'), \
                        current_setting('statement_timeout'), \
                        current_setting('max_parallel_maintenance_workers'), \
                        current_setting('backend_flush_after')",
                &[],
            )
            .await
            .map_err(RuntimeError::database("reading the session parameters"))?;
        let before: [String; 5] = [
            before.get(0),
            before.get(1),
            before.get(2),
            before.get(3),
            before.get(4),
        ];
        let index_build_workers = self
            .config
            .index_build_workers
            .map_or_else(|| before[3].clone(), |workers| workers.to_string());
        client
            .query_one(
                SET_SESSION_PARAMETERS,
                &[
                    &self.config.application_name,
                    &millis(self.config.lock_timeout),
                    &millis(self.config.statement_timeout),
                    &index_build_workers,
                    &session::RUN_FLUSH_AFTER,
                ],
            )
            .await
            .map_err(RuntimeError::database("setting the session parameters"))?;
        Ok(before)
    }

    /// Puts back the session parameters `up` and `down` changed, so a client handed in from
    /// a pool goes back with its own settings, not a 300 ms lock timeout.
    async fn restore_session(&self, client: &Client, before: &[String; 5]) {
        let result = deadline::within(
            Some(self.config.limits().own),
            "restoring the session parameters",
            client.query_one(
                SET_SESSION_PARAMETERS,
                &[&before[0], &before[1], &before[2], &before[3], &before[4]],
            ),
        )
        .await;
        if !matches!(result, Ok(Ok(_))) {
            tracing::warn!(
                "could not restore the session parameters; do not reuse this connection"
            );
        }
    }

    /// Puts the client's session back as it came (settings, role, SQL prepared statements,
    /// channels, temporary tables: see `session`); when that fails, at least the five
    /// parameters the run set.
    async fn give_back(&self, client: &Client, caller: &SessionState, before: &[String; 5]) {
        let restored = deadline::within(
            Some(self.config.limits().own),
            "restoring the session state",
            caller.restore(client),
        )
        .await;
        if let Err(error) | Ok(Err(error)) = restored {
            tracing::warn!(%error, "could not restore the session state; do not reuse this connection");
            self.restore_session(client, before).await;
        }
    }

    /// Puts the session back to the state the run's migrations each start from, after one
    /// ran: a `SET search_path` (or role, timeout, ...) in one must not change where the next
    /// creates its tables.
    async fn reset_between_migrations(
        &self,
        client: &Client,
        start: &SessionState,
    ) -> Result<(), RuntimeError> {
        deadline::within(
            Some(self.config.limits().own),
            "restoring the session state between migrations",
            start.restore(client),
        )
        .await?
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
            state::partial::PartialRunTable::for_history(self.history.table())?.read(client),
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
                        detail = Some(backfill_detail(rows_done, &started));
                        MigrationState::BackfillInProgress
                    } else {
                        MigrationState::Pending
                    }
                }
                Some(row) if row.checksum != m.checksum.to_hex() => MigrationState::Drifted,
                Some(row) => {
                    if row.baselined {
                        detail = Some(
                            "baselined: recorded by `migrate baseline`, not run by migrate"
                                .to_owned(),
                        );
                    }
                    MigrationState::Applied
                }
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
            held_back: pending::held_back(self.migrations, &rows, target),
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
        let mut planned = BTreeSet::new();
        for m in pending {
            if m.phase == Phase::Contract {
                self.check_gates(client, m, &planned).await?;
            }
            planned.insert(m.version);
            plan.migrations.push(planned_migration(m));
        }
        plan.held_back = pending::held_back(self.migrations, &rows, target);
        Ok(())
    }

    /// Applies the pending migrations up to `target`, in version order, under the migration
    /// advisory lock. On failure the error carries the migrations applied before it.
    ///
    /// # The connection
    ///
    /// `client` should be a dedicated connection: one that nothing else queries during the
    /// run (one of its own, as [`connect()`] opens, or one taken from the application's pool
    /// for the run). Other queries on it would run under the migration's session settings
    /// and between its statements. It must not go through a transaction-mode pooler
    /// (PgBouncer's `pool_mode = transaction`): the advisory lock, the session settings and
    /// a statement-by-statement migration need one server session for the whole run.
    ///
    /// For the run, `up` sets the session's `application_name`, `lock_timeout` and
    /// `statement_timeout` from the [`MigratorConfig`]. Each migration starts from the same
    /// session state: what one changed (`SET search_path`, `SET ROLE`, a SQL `PREPARE`,
    /// `LISTEN`, a temporary table) is undone before the next. Before it returns, also on
    /// error, it releases the advisory lock and gives the session back as it came (settings,
    /// role, none of what the migrations added; the client's protocol-level prepared
    /// statements untouched), so a connection taken from a pool goes back with its own
    /// settings. The exception is
    /// [`RuntimeError::NoAnswer`]: the server stopped answering, the runtime sends nothing
    /// more, and the connection must be discarded (as after a logged warning that the
    /// settings could not be restored).
    ///
    /// # Start-up apply
    ///
    /// Before taking the lock, `up` reads the history: when the table exists and nothing is
    /// pending for `target`, it returns at once without the lock. Replicas starting
    /// together then wait on the lock only while one of them applies, and a replica that
    /// starts while operations hold the lock (a long backfill) does not wait at all once its
    /// expands are applied. [`UpTo::LeadingExpands`] is the target for that: see it, and
    /// [`UpReport::held_back`].
    ///
    /// # Backfills
    ///
    /// A backfill under the controller ([`BackfillControl`]) reads lock waits, active
    /// sessions and the probe's latency on a second connection. Without one
    /// ([`Migrator::with_backfill_sessions`] opens it under the lock, or
    /// [`Migrator::with_monitor`]) those signals are off: the backfill still sizes its
    /// batches and pauses on replica lag, the throttle query and the operator's pause, and
    /// the first such backfill of this migrator says so in the log at info level. Without
    /// one a backfill also leaves its dead rows to autovacuum: its own vacuum of the table
    /// would hold the table's `SHARE UPDATE EXCLUSIVE` lock with nothing watching for the
    /// sessions it makes wait ([`BackfillControl::vacuum`]).
    pub async fn up(&self, client: &Client, target: UpTo) -> Result<UpReport, Failed<UpReport>> {
        let mut report = UpReport::default();
        let result = match self.nothing_to_apply(client, target, &mut report).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.locked(client, |client| self.up_locked(client, target, &mut report))
                    .await
            }
            Err(error) => Err(error),
        };
        match result {
            Ok(()) => Ok(report),
            Err(error) => {
                report.failed = true;
                Err(Failed { report, error })
            }
        }
    }

    /// Reverts the applied migrations with a version above `to`, newest first, under the
    /// migration advisory lock. Refuses before reverting anything when one of them has no
    /// down part. On failure the error carries the migrations reverted before it.
    ///
    /// # The connection
    ///
    /// `client` should be a dedicated connection: one that nothing else queries during the
    /// run (one of its own, as [`connect()`] opens, or one taken from the application's pool
    /// for the run). Other queries on it would run under the migration's session settings
    /// and between its statements. It must not go through a transaction-mode pooler
    /// (PgBouncer's `pool_mode = transaction`): the advisory lock, the session settings and
    /// a statement-by-statement migration need one server session for the whole run.
    ///
    /// For the run, `down` sets the session's `application_name`, `lock_timeout` and
    /// `statement_timeout` from the [`MigratorConfig`]. Each migration starts from the same
    /// session state: what one changed (`SET search_path`, `SET ROLE`, a SQL `PREPARE`,
    /// `LISTEN`, a temporary table) is undone before the next. Before it returns, also on
    /// error, it releases the advisory lock and gives the session back as it came (settings,
    /// role, none of what the migrations added; the client's protocol-level prepared
    /// statements untouched), so a connection taken from a pool goes back with its own
    /// settings. The exception is
    /// [`RuntimeError::NoAnswer`]: the server stopped answering, the runtime sends nothing
    /// more, and the connection must be discarded (as after a logged warning that the
    /// settings could not be restored).
    pub async fn down(&self, client: &Client, to: u64) -> Result<DownReport, Failed<DownReport>> {
        let mut report = DownReport::default();
        let result = self
            .locked(client, |client| self.down_locked(client, to, &mut report))
            .await;
        match result {
            Ok(()) => Ok(report),
            Err(error) => {
                report.failed = true;
                Err(Failed { report, error })
            }
        }
    }

    /// Without the lock: whether the history table exists and nothing is pending for
    /// `target`, refusing as `up` would (drift, unknown versions). Then `report` gets what
    /// `target` holds back.
    async fn nothing_to_apply(
        &self,
        client: &Client,
        target: UpTo,
        report: &mut UpReport,
    ) -> Result<bool, RuntimeError> {
        let exists = deadline::within(
            Some(self.config.limits().own),
            "looking up the history table",
            self.history.exists(client),
        )
        .await??;
        if !exists {
            // The first run creates it, under the lock.
            return Ok(false);
        }
        let rows = self.read_history(client).await?;
        if !self.pending(&rows, target)?.is_empty() {
            return Ok(false);
        }
        report.held_back = pending::held_back(self.migrations, &rows, target);
        Ok(true)
    }

    /// Session settings, then `work` under the advisory lock. The lock is released
    /// explicitly whatever `work` returns: `work` cannot skip the release with `?`.
    async fn locked<'c, T, F, Fut>(&self, client: &'c Client, work: F) -> Result<T, RuntimeError>
    where
        F: FnOnce(&'c Client) -> Fut,
        Fut: Future<Output = Result<T, RuntimeError>>,
    {
        let own = Some(self.config.limits().own);
        // What the client came with, to give it back that way (see `session`).
        let caller = deadline::within(
            own,
            "reading the session state",
            SessionState::capture(client),
        )
        .await??;
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
                    self.give_back(client, &caller, &before).await;
                }
                return Err(error);
            }
        };
        let result = work(client).await;
        // A server that stopped answering would not answer these either.
        if !matches!(result, Err(RuntimeError::NoAnswer { .. })) {
            let released = deadline::within(
                Some(self.config.limits().own),
                "releasing the migration lock",
                lock.release(),
            )
            .await
            .and_then(|released| released);
            if let Err(error) = released {
                // The work's outcome stands; a failed unlock means the session is broken, and
                // the server drops a session's advisory locks when it ends.
                tracing::warn!(%error, "could not release the migration lock explicitly");
            }
            self.give_back(client, &caller, &before).await;
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
        report.held_back = pending::held_back(self.migrations, &rows, target);
        if pending.is_empty() {
            return Ok(());
        }
        let start = self.session_state(client).await?;
        let in_transaction = self
            .prepare(client, self.history.insert_in_transaction_sql())
            .await?;
        let with_duration = self.prepare(client, self.history.insert_sql()).await?;
        let settings = self.settings();
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
                Some(self.check_gates(client, m, &BTreeSet::new()).await?)
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
            let mode = planned_migration(m).mode_label();
            // One span per migration: its events (retries, batches, sweeps) carry its
            // version, file, phase and mode; one event closes it with outcome and duration.
            let span = tracing::info_span!(
                "migration",
                version = m.version,
                file = %m.file_name,
                phase = m.phase.as_str(),
                mode
            );
            let run = async {
                tracing::info!("applying");
                match &m.backfill {
                    Some(spec) if m.phase == Phase::Backfill => {
                        self.run_backfill(client, m, spec, &settings, Some(history))
                            .await
                    }
                    _ => {
                        executor::run_section(client, m, &m.up, &settings, history, guard.as_ref())
                            .await
                    }
                }
            };
            let outcome = finish_span(run.instrument(span.clone()).await, &span)?;
            report.applied.push(applied(m, None, outcome));
            self.reset_between_migrations(client, &start).await?;
            self.report_progress(ProgressEvent::Finished {
                migration: m,
                index,
                total,
            });
        }
        Ok(())
    }

    /// A backfill's up statements in keyed batches, paced, reporting its progress; then
    /// `history` (none when re-running an applied backfill).
    async fn run_backfill(
        &self,
        client: &Client,
        m: &Migration,
        spec: &BackfillSpec,
        settings: &ExecutionSettings,
        history: Option<HistoryChange<'_>>,
    ) -> Result<executor::SectionOutcome, RuntimeError> {
        let progress =
            state::backfill_progress::BackfillProgressTable::for_history(self.history.table())?;
        let report = |status: &BackfillStatus| {
            self.report_progress(ProgressEvent::BackfillBatch {
                migration: m,
                rows_done: status.rows_done,
            });
            self.report_progress(ProgressEvent::BackfillPace {
                migration: m,
                status,
            });
        };
        let opened;
        let adaptive = matches!(spec.pace, crate::migration::BackfillPace::Adaptive { .. });
        // Fixed batches open a monitor too when the backfill vacuums its table: what the
        // vacuum yields to is only seen from another session. Workers are the controller's.
        let (monitor, workers) = match (&self.backfill_sessions, &self.monitor) {
            (Some(options), None) if adaptive || self.config.backfill.vacuum => {
                opened = self.open_backfill_sessions(options, adaptive).await?;
                (Some(&opened.0), opened.1.as_slice())
            }
            _ => (self.monitor.as_ref(), self.workers.as_slice()),
        };
        if monitor.is_none()
            && matches!(spec.pace, crate::migration::BackfillPace::Adaptive { .. })
            && !self
                .said_monitor_off
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::info!(
                version = m.version,
                "backfill runs without a monitor connection: lock waits on its batches, \
                 active sessions and the probe query's latency are not read (replica lag, the \
                 throttle query and the pause flag still are), and the backfill leaves its dead \
                 rows to autovacuum; Migrator::with_backfill_sessions (or with_monitor) turns \
                 them on"
            );
        }
        let pace = backfill::PaceContext {
            monitor,
            workers,
            control: &self.config.backfill,
            flags: state::flags::FlagStore::for_history_table(self.history.table())?,
            report: &report,
        };
        backfill::run(client, m, spec, &progress, settings, history, &pace).await
    }

    /// The monitor and, with `workers`, up to `max_workers - 1` workers for one backfill
    /// (see [`Migrator::with_backfill_sessions`]); the workers open at once, so a pool with
    /// no room costs one connect timeout, not one per worker.
    async fn open_backfill_sessions(
        &self,
        options: &ConnectOptions,
        workers: bool,
    ) -> Result<(Client, Vec<Client>), RuntimeError> {
        let named = |role: &str| {
            let mut options = options.clone();
            let name = format!("{} backfill {role}", self.config.application_name);
            options.config.application_name(&name);
            options
        };
        let monitor = connect::connect_with(named("monitor")).await?;
        let most = if workers {
            self.config.backfill.max_workers
        } else {
            1
        };
        let opening = (1..most).map(|_| connect::connect_with(named("worker")));
        let mut workers = Vec::new();
        for opened in futures_util::future::join_all(opening).await {
            match opened {
                Ok(worker) => workers.push(worker),
                Err(error) => {
                    tracing::warn!(%error, "a backfill worker connection did not open: the backfill runs with fewer batches at once")
                }
            }
        }
        Ok((monitor, workers))
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
        let start = self.session_state(client).await?;
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
            let span = tracing::info_span!(
                "migration",
                version = m.version,
                file = %m.file_name,
                phase = m.phase.as_str(),
                mode = down.mode.as_str(),
                reverting = true
            );
            let run = async {
                tracing::info!("reverting");
                executor::run_section(client, m, down, &settings, history, None).await
            };
            let outcome = finish_span(run.instrument(span.clone()).await, &span)?;
            self.reset_between_migrations(client, &start).await?;
            if m.phase == Phase::Backfill {
                // A later up must run the backfill again from the start.
                let progress = state::backfill_progress::BackfillProgressTable::for_history(
                    self.history.table(),
                )?;
                deadline::within(
                    Some(self.config.limits().own),
                    "clearing backfill progress",
                    progress.forget(client, sql_version(m.version)),
                )
                .await??;
            }
            report.reverted.push(applied(m, Some(down), outcome));
            self.report_progress(ProgressEvent::Finished {
                migration: m,
                index,
                total,
            });
        }
        Ok(())
    }

    /// The session state every migration of this run starts from.
    async fn session_state(&self, client: &Client) -> Result<SessionState, RuntimeError> {
        deadline::within(
            Some(self.config.limits().own),
            "reading the session state",
            SessionState::capture(client),
        )
        .await?
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
    ///
    /// A squash whose replaced versions were all applied reads as applied
    /// ([`pending::with_squashes_applied`]).
    async fn read_history(&self, client: &Client) -> Result<Vec<HistoryRow>, RuntimeError> {
        let rows = deadline::within(
            Some(self.config.limits().own),
            "reading the history table",
            self.history.read(client),
        )
        .await??;
        pending::with_squashes_applied(self.migrations, rows).map_err(|r| self.refusal(r))
    }

    /// The gates of `contract` (see [`gates`]), bounded: they wait for replicas up to
    /// `max_replica_lag` and count rows under `statement_timeout`. `planned`: versions a dry
    /// run counts as applied before the contract.
    async fn check_gates(
        &self,
        client: &Client,
        contract: &Migration,
        planned: &BTreeSet<u64>,
    ) -> Result<rows_guard::RowsGuard, RuntimeError> {
        let settings = gates::GateSettings {
            stabilisation: self.config.contract_stabilisation,
            max_replica_lag: self.config.max_replica_lag,
            running_queries_window: self.config.running_queries_window,
        };
        let limits = self.config.limits();
        let replicas = self.config.max_replica_lag.unwrap_or(Duration::ZERO);
        let window = self.config.running_queries_window.unwrap_or(Duration::ZERO);
        let limit = limits.statement.map(|statement| {
            statement.saturating_mul(6) + replicas + window + limits.own.saturating_mul(2)
        });
        deadline::within(
            limit,
            "checking the contract gates",
            gates::check(
                client,
                &self.history,
                self.migrations,
                contract,
                &settings,
                planned,
            ),
        )
        .await?
    }

    /// The migrations `down(to)` reverts, newest first, with their down parts; refuses as
    /// `down` does (applied versions missing from the set, drift, no down part) before
    /// anything is reverted.
    fn down_plan(
        &self,
        rows: &[HistoryRow],
        to: u64,
    ) -> Result<Vec<(&'m Migration, &'m Section)>, RuntimeError> {
        pending::to_revert(self.migrations, rows, to).map_err(|r| self.refusal(r))
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
                    batched: false,
                    statements: down.statements.len(),
                    ..planned_migration(m)
                })
                .collect(),
            held_back: Vec::new(),
        })
    }

    /// The checks of protocol step 3, then the migrations `up(target)` applies, ascending.
    fn pending(
        &self,
        rows: &[HistoryRow],
        target: UpTo,
    ) -> Result<Vec<&'m Migration>, RuntimeError> {
        let options = pending::Options {
            allow_out_of_order: self.config.allow_out_of_order,
            ignore_missing: self.config.ignore_missing,
        };
        pending::to_apply(self.migrations, rows, target, options).map_err(|r| self.refusal(r))
    }

    fn refusal(&self, refusal: pending::Refusal) -> RuntimeError {
        match refusal {
            pending::Refusal::UnknownApplied(versions) => self.unknown_applied(versions),
            pending::Refusal::Drifted {
                version,
                file,
                expected,
                found,
            } => RuntimeError::ChecksumMismatch {
                version,
                file,
                expected,
                found,
            },
            pending::Refusal::OutOfOrder {
                pending,
                newest_applied,
            } => RuntimeError::OutOfOrder {
                pending,
                newest_applied,
            },
            pending::Refusal::NoDownPart(versions) => RuntimeError::NoDownPart { versions },
            pending::Refusal::PartlySquashed { squash, missing } => {
                RuntimeError::PartlySquashed { squash, missing }
            }
        }
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
    /// The dual write guarded by flag `flag` whose failures are queued for backfill
    /// `version`'s reconcile, on this migrator's state tables: `config.history_table` is
    /// replaced by the migrator's, so the two cannot disagree. Refuses a `version` that is
    /// not in the set or declares no `-- migrate:compare` (its mapping is what reconcile
    /// replays the queued keys with). No I/O.
    pub fn dual_write(
        &self,
        flag: &str,
        version: u64,
        config: DualWriteConfig,
    ) -> Result<DualWrite, RuntimeError> {
        self.declared_compare(version)?;
        DualWrite::new(
            flag,
            version,
            DualWriteConfig {
                history_table: self.config.history_table.clone(),
                ..config
            },
        )
    }

    /// The flags table beside this migrator's history table.
    pub fn flags(&self) -> Result<state::flags::FlagStore, RuntimeError> {
        state::flags::FlagStore::for_history_table(self.history_table())
    }

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

/// `status`'s detail of a started, unapplied backfill: a resume is promised only where it can
/// help; a failed run's own error says what to change first.
fn backfill_detail(rows_done: i64, started: &[&verify::BackfillState]) -> String {
    let runs: Vec<&BackfillRun> = started.iter().filter_map(|b| b.run.as_ref()).collect();
    if let Some(error) = runs.iter().find_map(|run| match run {
        BackfillRun::Failed { error } => Some(error),
        _ => None,
    }) {
        return format!("{rows_done} row(s) done; the last run failed: {error}");
    }
    if runs.contains(&&BackfillRun::Running) {
        return format!("{rows_done} row(s) done; running now (`migrate backfill` shows its pace)");
    }
    let how = if runs.contains(&&BackfillRun::Stopped) {
        "its run stopped (its process exited); "
    } else {
        ""
    };
    format!("{rows_done} row(s) done; {how}the next `up` resumes from the last key")
}

fn planned_migration(m: &Migration) -> PlannedMigration {
    PlannedMigration {
        version: m.version,
        name: m.name.to_string(),
        phase: m.phase,
        file_name: m.file_name.to_string(),
        mode: m.up.mode,
        batched: up_runs_in_batches(m),
        statements: m.up.statements.len(),
    }
}

/// A backfill's up part runs in keyed batches ([`backfill::run`]); every other part, a
/// backfill's down part included, runs as its mode says.
fn up_runs_in_batches(m: &Migration) -> bool {
    m.phase == Phase::Backfill && m.backfill.is_some()
}

/// `reverting`: the down part that ran, else the up part did.
fn applied(
    m: &Migration,
    reverting: Option<&Section>,
    outcome: executor::SectionOutcome,
) -> AppliedMigration {
    let section = reverting.unwrap_or(&m.up);
    AppliedMigration {
        version: m.version,
        name: m.name.to_string(),
        file_name: m.file_name.to_string(),
        phase: m.phase,
        mode: section.mode,
        batched: reverting.is_none() && up_runs_in_batches(m),
        duration: outcome.duration,
        attempts: outcome.attempts,
    }
}
