//! Contract gates: a contract migration drops what its
//! expand made obsolete, so before any of its statements runs, the runtime checks that
//!
//! 1. the expand named by `-- migrate:requires` is applied (in the history table, which also
//!    holds the migrations applied earlier in the same run);
//! 2. every backfill migration between that expand and the contract is applied and verified:
//!    the runtime writes a backfill's history row only after its verification
//!    ([`super::backfill`]), but a row inserted by hand (to "skip" a killed backfill) is
//!    caught by its progress rows, which still lack `verified_at`;
//! 3. [`MigratorConfig::contract_stabilisation`] has passed since the expand was applied,
//!    measured on the server's clock (`clock_timestamp()` against the history row's
//!    `executed_at`), so a skewed deploy host cannot shorten it;
//! 4. every replica has replayed the WAL written before the contract, within
//!    [`MigratorConfig::max_replica_lag`] (`pg_stat_replication`, see `check_replicas`);
//! 5. no row still matches the WHERE of any of those backfills: a `verified_at` recorded
//!    earlier says nothing about rows an old release wrote since. The count runs again inside
//!    the contract's own transaction, right before its first statement (`RowsGuard`), so a
//!    row written in the old shape up to that moment refuses the contract instead of being
//!    dropped with it.
//!
//! 6. with [`MigratorConfig::running_queries_window`], no statement called during the window
//!    (two readings of `pg_stat_statements`) names what the contract drops, renames or
//!    retypes (`running_queries`);
//! 7. with `-- migrate:requires-compare`, every compare declared by those backfills passed
//!    after the backfill was applied ([`super::compare`]).
//!
//! A failing gate refuses the contract with [`RuntimeError::ContractGate`]; migrations applied
//! earlier in the run stay applied (the partial report).
//!
//! [`MigratorConfig::contract_stabilisation`]: super::MigratorConfig::contract_stabilisation
//! [`MigratorConfig::max_replica_lag`]: super::MigratorConfig::max_replica_lag
//! [`MigratorConfig::running_queries_window`]: super::MigratorConfig::running_queries_window

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use tokio_postgres::error::SqlState;

use super::backfill::plan_statement;
use super::error::RuntimeError;
use super::sql_version;
use super::state::backfill_progress::BackfillProgressTable;
use super::state::history::History;
use crate::migration::{Migration, Migrations, Phase};

mod running_queries;

/// The guard counts at most this many remaining rows: enough to say how bad it is, without
/// scanning a whole table that is far from done.
const REMAINING_ROWS_CAP: i64 = 1000;

/// First pause between two reads of `pg_stat_replication` while a replica catches up ...
const REPLICA_POLL_BASE: Duration = Duration::from_millis(20);
/// ... doubled up to this one.
const REPLICA_POLL_MAX: Duration = Duration::from_millis(500);

/// What the gates need from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GateSettings {
    /// Time that must pass between applying the required expand and its contract.
    pub stabilisation: Duration,
    /// Longest acceptable replay lag of any replica; `None` disables the replica gate.
    pub max_replica_lag: Option<Duration>,
    /// The window between the two readings of `pg_stat_statements`; `None` disables it.
    pub running_queries_window: Option<Duration>,
}

/// A replica as `pg_stat_replication` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The primary's WAL sender process serving this replica.
    pub walsender_pid: i32,
    /// The standby's `application_name` (its `cluster_name`, or `walreceiver`, unless its
    /// `primary_conninfo` sets one).
    pub application_name: String,
    /// `NULL` for a replica connected through a unix socket, and for sessions without the
    /// privileges to see it.
    pub client_addr: Option<String>,
}

impl fmt::Display for Replica {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?} (", self.application_name)?;
        if let Some(addr) = &self.client_addr {
            write!(f, "{addr}, ")?;
        }
        write!(f, "WAL sender pid {})", self.walsender_pid)
    }
}

/// Why a contract gate refused a contract migration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GateFailure {
    /// The expand named by `-- migrate:requires` is not applied.
    #[error(
        "its expand {} is not applied; apply it first (and deploy the code that no longer \
         needs what the contract drops), then run again",
        file.as_deref().map_or_else(|| expand.to_string(), |f| format!("{expand} ({f})"))
    )]
    ExpandNotApplied {
        /// The version `-- migrate:requires` names.
        expand: u64,
        /// The expand's file name, when the binary has it.
        file: Option<String>,
    },

    /// Backfill migrations between the expand and the contract are not applied, or have a
    /// history row but progress rows without `verified_at` (a `migrate verify` that found
    /// rows left, or a killed backfill marked applied by hand).
    #[error(
        "backfill migration(s) {} between its expand and it are not applied and verified; {}",
        files.join(", "),
        not_verified_recipe(versions, files, applied)
    )]
    BackfillsNotVerified {
        /// The backfill migrations, ascending.
        versions: Vec<u64>,
        /// Their file names, in the same order.
        files: Vec<String>,
        /// Those of `versions` that have a history row (`up` would not run them again).
        applied: Vec<u64>,
    },

    /// The stabilisation period since the expand was applied has not passed yet.
    #[error(
        "its expand {expand} was applied {} ago, and the stabilisation period is {}: \
         {} remain; run again after that (or lower contract_stabilisation, `--contract-stabilisation` in the CLI)",
        human(*applied_for), human(*required), human(*remaining)
    )]
    Stabilising {
        /// The version `-- migrate:requires` names.
        expand: u64,
        /// Since the expand's history row was written, on the server's clock.
        applied_for: Duration,
        /// [`MigratorConfig::contract_stabilisation`](super::MigratorConfig::contract_stabilisation).
        required: Duration,
        /// How long until the contract may run.
        remaining: Duration,
    },

    /// A replica has not replayed the WAL written before the contract within the limit.
    #[error(
        "replica {replica} lags at least {} behind the primary ({bytes_behind} bytes of WAL \
         not yet replayed), over the limit of {}; wait until it catches up (SELECT * FROM \
         pg_stat_replication on the primary) and run again, or raise max_replica_lag (`--max-replica-lag` in the CLI)",
        human(*lag), human(*limit)
    )]
    ReplicaLag {
        /// A replica that had not caught up when the wait ended (the first by WAL sender
        /// pid).
        replica: Replica,
        /// A lower bound: the larger of the server's `replay_lag` and how long the gate
        /// waited for the replica to replay the WAL written before it started.
        lag: Duration,
        /// WAL written before the gate started that the replica has not replayed yet.
        bytes_behind: u64,
        /// [`MigratorConfig::max_replica_lag`](super::MigratorConfig::max_replica_lag).
        limit: Duration,
    },

    /// Rows still match the WHERE of a backfill between the expand and the contract: something
    /// (an old release that does not dual-write) wrote them in the old shape after the
    /// backfill ran. The contract would drop what those rows still need.
    #[error(
        "{} row(s) of {table} still match the WHERE of backfill {file}:{line}: something (an \
         old release without dual writes?) wrote them in the old shape after the backfill ran, \
         and the contract would lose what they hold; deploy code that writes the new shape, \
         fill those rows with `migrate backfill rerun {version}` (it runs the backfill's \
         UPDATE again in batches, which its WHERE makes idempotent, and verifies), then run \
         again",
        if *remaining >= REMAINING_ROWS_CAP { format!("at least {remaining}") } else { remaining.to_string() }
    )]
    BackfillRowsRemain {
        /// The backfill migration.
        version: u64,
        /// The backfill migration's file name.
        file: String,
        /// Line of the backfill statement in its file.
        line: u32,
        /// The table the backfill fills.
        table: String,
        /// Rows still matching, counted up to 1,000.
        remaining: i64,
    },

    /// The contract says `-- migrate:requires-compare` and a compare between its expand and
    /// it has not passed since its backfill was applied.
    #[error(
        "the compare declared in {file} has not passed: {reason}; run `migrate verify --compare \
         --version {version}` (and `migrate reconcile` for queued dual writes), then run again"
    )]
    CompareNotPassed {
        /// The backfill migration declaring the compare.
        version: u64,
        /// Its file name.
        file: String,
        /// What the stored compare says.
        reason: String,
    },

    /// The contract says `-- migrate:requires-compare` but no backfill between its expand and
    /// it declares a compare.
    #[error(
        "it says `-- migrate:requires-compare`, but no backfill migration between its expand and \
         it declares `-- migrate:compare`; declare one, or remove the directive"
    )]
    NoCompareDeclared,

    /// A statement the running release sent during the window names what the contract
    /// removes: the old release still uses it.
    #[error(
        "the running release still uses what it removes: {query:?} (pg_stat_statements \
         queryid {queryid}) was called {calls} time(s) in the last {} and uses {object}; \
         deploy the release that no longer sends it, wait until it stops, then run again (the \
         window is `running_queries_window`, `--running-queries-window` in the CLI)",
        human(*window)
    )]
    RunningQueryBreaks {
        /// The statement, shortened.
        query: String,
        /// Its `queryid`.
        queryid: i64,
        /// Its calls during the window.
        calls: i64,
        /// The window.
        window: Duration,
        /// What the contract removes that it uses, e.g. `column users.name (dropped)`.
        object: String,
    },

    /// `pg_stat_statements` cannot be read, so the gate cannot tell whether the running
    /// release still uses what the contract removes.
    #[error(
        "the running-queries gate cannot tell what the running release sends: {reason}; set \
         it up, or turn the gate off with running_queries_window = None \
         (`--running-queries-window off` in the CLI)"
    )]
    RunningQueriesUnknown {
        /// Why.
        reason: String,
    },

    /// The session cannot see the replication columns of `pg_stat_replication`.
    #[error(
        "cannot read the replay lag of replica {replica}: role {role:?} lacks the privileges \
         of pg_read_all_stats, so pg_stat_replication shows it only NULLs; GRANT pg_monitor \
         TO {role:?} (or pg_read_all_stats), or turn the replica gate off with \
         max_replica_lag = None (`--max-replica-lag off` in the CLI)"
    )]
    ReplicaLagUnknown {
        /// A replica whose replication columns read as NULL.
        replica: Replica,
        /// `current_user` of the migration session.
        role: String,
    },
}

/// Checks the gates of `contract`, in the order of the module docs; the first failing gate
/// refuses it. The returned guard repeats gate 5 where the contract runs
/// ([`RowsGuard::check`]).
///
/// `planned` is for dry runs: versions the run would apply before the contract, which a real
/// run would have recorded by then (an expand counts as applied just now, a backfill as run
/// and verified: the runner verifies it before recording it).
pub(crate) async fn check(
    client: &Client,
    history: &History,
    migrations: &Migrations,
    contract: &Migration,
    settings: &GateSettings,
    planned: &BTreeSet<u64>,
) -> Result<RowsGuard, RuntimeError> {
    let refuse = |failure: GateFailure| refusal(contract, failure);
    let history_failure = match contract.requires {
        Some(expand) => {
            check_history(
                client, history, migrations, contract, expand, settings, planned,
            )
            .await?
        }
        None => None,
    };
    if let Some(failure) = history_failure {
        return Err(refuse(failure));
    }
    let replica_failure = match settings.max_replica_lag {
        Some(limit) => check_replicas(client, limit).await?,
        None => None,
    };
    if let Some(failure) = replica_failure {
        return Err(refuse(failure));
    }
    if let Some(window) = settings.running_queries_window
        && let Some(failure) = running_queries::check(client, contract, window).await?
    {
        return Err(refuse(failure));
    }
    let guard = RowsGuard::for_contract(client, migrations, contract, planned).await?;
    guard.check(client).await?;
    if contract.requires_compare
        && let Some(failure) = super::compare::gate(client, history, migrations, contract).await?
    {
        return Err(refuse(failure));
    }
    Ok(guard)
}

/// What to run for each backfill the gate waits for: `up` applies one without a history
/// row; one with a history row (`up` says "nothing to do" for it) is filled by a re-run, or
/// was verified by a `migrate verify` once its rows were filled otherwise.
fn not_verified_recipe(versions: &[u64], files: &[String], applied: &[u64]) -> String {
    let mut steps = Vec::new();
    let pending: Vec<u64> = versions
        .iter()
        .copied()
        .filter(|v| !applied.contains(v))
        .collect();
    if let Some(last) = pending.last() {
        steps.push(format!(
            "apply {} with `migrate up --to {last}`",
            if pending.len() == 1 { "it" } else { "them" }
        ));
    }
    for (version, file) in versions.iter().zip(files) {
        if applied.contains(version) {
            steps.push(format!(
                "{file} is applied but not verified (a `migrate verify` found rows left, or \
                 its history row was written by hand before it finished): fill its rows with \
                 `migrate backfill rerun {version}`, or run `migrate verify --version \
                 {version}` if they were filled otherwise"
            ));
        }
    }
    format!("{}; then run again", steps.join("; "))
}

fn refusal(contract: &Migration, failure: GateFailure) -> RuntimeError {
    RuntimeError::ContractGate {
        version: contract.version,
        file: contract.file_name.to_string(),
        failure: Box::new(failure),
    }
}

/// One backfill statement whose WHERE must match no row when a contract runs.
#[derive(Debug, Clone)]
struct PendingRows {
    version: u64,
    file: String,
    line: u32,
    table: String,
    /// `SELECT count(*) FROM (SELECT 1 FROM <table> WHERE (<pending>) LIMIT <cap>) ...`.
    count_sql: String,
}

/// Gate 5, kept for the contract's own transaction: the executor runs its check
/// after `BEGIN` and before the contract's first statement (in autocommit mode, right before
/// it). The count reads under the application's writes (no table lock: a scan under a lock
/// that blocks writes would stall a hot table), so a row committed between the count and the
/// contract's own lock is the one window left; the contract's DDL lock closes it.
#[derive(Debug, Clone, Default)]
pub(crate) struct RowsGuard {
    contract_version: u64,
    contract_file: String,
    queries: Vec<PendingRows>,
}

impl RowsGuard {
    /// The backfill statements between the contract's expand and the contract. A WHERE that
    /// no longer evaluates (an earlier contract dropped the column or table it reads) has no
    /// row left in the old shape and is left out.
    async fn for_contract(
        client: &Client,
        migrations: &Migrations,
        contract: &Migration,
        planned: &BTreeSet<u64>,
    ) -> Result<RowsGuard, RuntimeError> {
        let mut guard = RowsGuard {
            contract_version: contract.version,
            contract_file: contract.file_name.to_string(),
            queries: Vec::new(),
        };
        let Some(expand) = contract.requires else {
            return Ok(guard);
        };
        let backfills = migrations.iter().filter(|m| {
            m.phase == Phase::Backfill
                && m.version > expand
                && m.version < contract.version
                && !planned.contains(&m.version)
        });
        for backfill in backfills {
            let Some(spec) = &backfill.backfill else {
                continue;
            };
            for (index, statement) in backfill.up.statements.iter().enumerate() {
                let plan = match plan_statement(client, backfill, spec, index).await {
                    Ok(plan) => plan,
                    Err(error) if no_longer_evaluates(&error) => continue,
                    Err(error) => return Err(error),
                };
                let pending = PendingRows {
                    version: backfill.version,
                    file: backfill.file_name.to_string(),
                    line: statement.line,
                    table: spec.table_name(),
                    count_sql: format!(
                        "SELECT count(*) FROM ({} LIMIT {REMAINING_ROWS_CAP}) AS migrate_remaining",
                        plan.pending_rows_sql
                    ),
                };
                match client.query_one(&pending.count_sql, &[]).await {
                    Ok(_) => guard.queries.push(pending),
                    Err(error)
                        if matches!(
                            error.code(),
                            Some(&SqlState::UNDEFINED_COLUMN | &SqlState::UNDEFINED_TABLE)
                        ) =>
                    {
                        tracing::info!(
                            backfill = %pending.file,
                            "the backfill's WHERE no longer evaluates (an earlier contract removed what it reads): nothing to recount"
                        );
                    }
                    Err(error) => {
                        return Err(RuntimeError::database(
                            "counting rows a backfill has not done",
                        )(error));
                    }
                }
            }
        }
        Ok(guard)
    }

    /// Refuses the contract when any backfill's WHERE still matches a row.
    pub(crate) async fn check(&self, client: &Client) -> Result<(), RuntimeError> {
        for pending in &self.queries {
            let remaining: i64 = client
                .query_one(&pending.count_sql, &[])
                .await
                .map_err(RuntimeError::database(
                    "counting rows a backfill has not done, before the contract",
                ))?
                .get(0);
            if remaining > 0 {
                return Err(RuntimeError::ContractGate {
                    version: self.contract_version,
                    file: self.contract_file.clone(),
                    failure: Box::new(GateFailure::BackfillRowsRemain {
                        version: pending.version,
                        file: pending.file.clone(),
                        line: pending.line,
                        table: pending.table.clone(),
                        remaining,
                    }),
                });
            }
        }
        Ok(())
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.queries.is_empty()
    }

    /// The counts it runs.
    pub(crate) fn len(&self) -> usize {
        self.queries.len()
    }
}

/// The planner's key-type lookup failed because the table or key column is gone.
fn no_longer_evaluates(error: &RuntimeError) -> bool {
    matches!(
        error.sql_state(),
        Some(&SqlState::UNDEFINED_COLUMN | &SqlState::UNDEFINED_TABLE)
    ) || matches!(error, RuntimeError::Backfill { problem, .. } if problem.contains("has no column"))
}

/// Gates 1 to 3, from the history rows between the expand and the contract.
async fn check_history(
    client: &Client,
    history: &History,
    migrations: &Migrations,
    contract: &Migration,
    expand: u64,
    settings: &GateSettings,
    planned: &BTreeSet<u64>,
) -> Result<Option<GateFailure>, RuntimeError> {
    let as_sql = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    // A dry run on a database that has never been migrated: nothing is applied yet.
    let rows = if !history.exists(client).await? {
        Vec::new()
    } else {
        // Seconds since each row was written, on the server's clock: clock_timestamp(), not now(),
        // which is the start of the current transaction
        // (https://www.postgresql.org/docs/15/functions-datetime.html#FUNCTIONS-DATETIME-CURRENT).
        client
            .query(
                &format!(
                    "SELECT version, extract(epoch FROM clock_timestamp() - executed_at)::float8 \
                 FROM {} WHERE version >= $1 AND version < $2",
                    history.quoted()
                ),
                &[&as_sql(expand), &as_sql(contract.version)],
            )
            .await
            .map_err(RuntimeError::database(
                "reading the history for the contract gates",
            ))?
    };
    let applied: BTreeMap<u64, f64> = rows
        .iter()
        .map(|row| {
            (
                u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                row.get::<_, f64>(1),
            )
        })
        .collect();

    let applied_secs = match applied.get(&expand) {
        Some(&secs) => Some(secs),
        None if planned.contains(&expand) => Some(0.0),
        None => None,
    };
    let Some(applied_secs) = applied_secs else {
        return Ok(Some(GateFailure::ExpandNotApplied {
            expand,
            file: migrations.get(expand).map(|m| m.file_name.to_string()),
        }));
    };

    let unverified = unverified_backfills(client, history, expand, contract.version).await?;
    let missing: Vec<&Migration> = migrations
        .iter()
        .filter(|m| m.phase == Phase::Backfill)
        .filter(|m| m.version > expand && m.version < contract.version)
        .filter(|m| !planned.contains(&m.version))
        .filter(|m| !applied.contains_key(&m.version) || unverified.contains(&m.version))
        .collect();
    if !missing.is_empty() {
        return Ok(Some(GateFailure::BackfillsNotVerified {
            versions: missing.iter().map(|m| m.version).collect(),
            files: missing.iter().map(|m| m.file_name.to_string()).collect(),
            applied: missing
                .iter()
                .map(|m| m.version)
                .filter(|version| applied.contains_key(version))
                .collect(),
        }));
    }

    // A row written "in the future" (clock stepped back) counts as just written.
    let applied_for = Duration::try_from_secs_f64(applied_secs).unwrap_or(Duration::ZERO);
    if applied_for < settings.stabilisation {
        return Ok(Some(GateFailure::Stabilising {
            expand,
            applied_for,
            required: settings.stabilisation,
            remaining: settings.stabilisation - applied_for,
        }));
    }
    Ok(None)
}

/// Versions strictly between `expand` and `contract` with a backfill progress row lacking
/// `verified_at`.
async fn unverified_backfills(
    client: &Client,
    history: &History,
    expand: u64,
    contract: u64,
) -> Result<BTreeSet<u64>, RuntimeError> {
    BackfillProgressTable::for_history(history.table())?
        .unverified_between(client, sql_version(expand), sql_version(contract))
        .await
}

/// One row of `pg_stat_replication`, as the gate (and the backfill controller) reads it.
pub(crate) struct ReplicationRow {
    pub(crate) replica: Replica,
    pub(crate) state: Option<String>,
    /// `replay_lsn IS NOT NULL`.
    pub(crate) reports_replay: bool,
    /// `flush_lsn IS NOT NULL`.
    pub(crate) reports_flush: bool,
    /// `replay_lsn >= target`.
    pub(crate) caught_up: bool,
    pub(crate) bytes_behind: u64,
    pub(crate) replay_lag: Option<Duration>,
}

impl ReplicationRow {
    /// A `pg_basebackup` (state `backup`) or a WAL receiver that only flushes
    /// (`pg_receivewal`, e.g. an archiver) serves no queries: its lag does not matter.
    pub(crate) fn serves_no_queries(&self, state: &str) -> bool {
        state == "backup" || (!self.reports_replay && self.reports_flush)
    }
}

/// Gate 4: every replica replays the WAL written before the contract within `limit`.
///
/// `pg_stat_replication` has one row per WAL sender, that is per directly connected standby
/// (cascaded standbys are not visible on the primary), and also per logical replication or
/// WAL streaming client (<https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-PG-STAT-REPLICATION-VIEW>).
/// Its `replay_lag` alone cannot decide, as checked on PostgreSQL 15:
/// - it is NULL when a standby is caught up and idle, and also before a standby's first
///   status report (`replay_lsn` is NULL then too);
/// - it keeps its last measured value for a while after the standby caught up (about two
///   `wal_receiver_status_interval`s), so a standby that was slow a moment ago looks slow;
/// - it grows while replay is stuck (the server interpolates), in steps of the standby's
///   status interval.
///
/// - it also keeps its last value while replay is paused or stuck and no new status report
///   arrived: a replica with `pg_wal_replay_pause()` showed a `replay_lag` of 8 ms while
///   2,000 rows behind.
///
/// So `replay_lag` is never evidence on its own. The gate takes `pg_current_wal_lsn()` when
/// it starts, the position every write before the contract reached, and passes a replica
/// only once its `replay_lsn` has reached it: it waits at most `limit` from its start (a
/// replica that lags less than `limit` replays that far within `limit`, however busy the
/// primary), and refuses if one does not.
///
/// Rows whose `state` is NULL are refused as [`GateFailure::ReplicaLagUnknown`]: roles without
/// the privileges of `pg_read_all_stats` (e.g. through `pg_monitor`) see only the WAL
/// sender's pid, user and application_name
/// (<https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-STATS-VIEWS>: "Superusers
/// and roles with privileges of built-in role pg_read_all_stats can see all the information
/// about all sessions"); passing silently would turn the gate off for such deploy roles.
/// Rows in state `backup` (a running `pg_basebackup`) and rows that report a flush position
/// but never a replay position (`pg_receivewal`, e.g. a WAL archiver) serve no queries and
/// are skipped.
pub(crate) async fn check_replicas(
    client: &Client,
    limit: Duration,
) -> Result<Option<GateFailure>, RuntimeError> {
    let started = Instant::now();
    let target: String = client
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .await
        .map_err(RuntimeError::database("reading the current WAL position"))?
        .get(0);
    let mut pause = REPLICA_POLL_BASE;
    loop {
        let rows = read_replication(client, &target).await?;
        let mut waiting_for: Option<ReplicationRow> = None;
        for row in rows {
            let Some(state) = &row.state else {
                let role: String = client
                    .query_one("SELECT current_user::text", &[])
                    .await
                    .map_err(RuntimeError::database("reading current_user"))?
                    .get(0);
                return Ok(Some(GateFailure::ReplicaLagUnknown {
                    replica: row.replica,
                    role,
                }));
            };
            if row.serves_no_queries(state) || row.caught_up {
                continue;
            }
            waiting_for.get_or_insert(row);
        }
        let Some(behind) = waiting_for else {
            return Ok(None);
        };
        let waited = started.elapsed();
        if waited >= limit {
            return Ok(Some(GateFailure::ReplicaLag {
                replica: behind.replica,
                lag: behind.replay_lag.unwrap_or(Duration::ZERO).max(waited),
                bytes_behind: behind.bytes_behind,
                limit,
            }));
        }
        // Polling, not synchronisation: the standby reports its replay position on its own
        // schedule (wal_receiver_status_interval), which no query can wait for.
        tokio::time::sleep(pause.min(limit - waited)).await;
        pause = (pause * 2).min(REPLICA_POLL_MAX);
    }
}

/// `pg_stat_replication` against the WAL position `target`.
pub(crate) async fn read_replication(
    client: &Client,
    target: &str,
) -> Result<Vec<ReplicationRow>, RuntimeError> {
    let rows = client
        .query(
            "SELECT pid, coalesce(application_name, ''), host(client_addr), state, \
                    replay_lsn IS NOT NULL, flush_lsn IS NOT NULL, \
                    coalesce(replay_lsn >= $1::text::pg_lsn, false), \
                    coalesce(greatest($1::text::pg_lsn - replay_lsn, 0), 0)::float8, \
                    extract(epoch FROM replay_lag)::float8 \
             FROM pg_stat_replication ORDER BY pid",
            &[&target],
        )
        .await
        .map_err(RuntimeError::database("reading pg_stat_replication"))?;
    Ok(rows
        .iter()
        .map(|row| ReplicationRow {
            replica: Replica {
                walsender_pid: row.get(0),
                application_name: row.get(1),
                client_addr: row.get(2),
            },
            state: row.get(3),
            reports_replay: row.get(4),
            reports_flush: row.get(5),
            caught_up: row.get(6),
            bytes_behind: row.get::<_, f64>(7) as u64,
            replay_lag: row
                .get::<_, Option<f64>>(8)
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok()),
        })
        .collect())
}

/// `1h 2m 3s`, `4.5s`, `120ms`: what a person reads in a refusal.
pub(crate) fn human(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs >= 60 {
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        let mut text = String::new();
        if h > 0 {
            text.push_str(&format!("{h}h "));
        }
        if h > 0 || m > 0 {
            text.push_str(&format!("{m}m "));
        }
        text.push_str(&format!("{s}s"));
        text
    } else if secs >= 1 {
        format!("{:.1}s", duration.as_secs_f64())
    } else {
        format!("{}ms", duration.as_millis())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(250)), "250ms");
        assert_eq!(human(Duration::from_millis(4500)), "4.5s");
        assert_eq!(human(Duration::from_secs(3599)), "59m 59s");
        assert_eq!(human(Duration::from_secs(3600 + 5)), "1h 0m 5s");
    }

    #[test]
    fn replicas_are_named_by_application_name_address_and_pid() {
        let replica = Replica {
            walsender_pid: 42,
            application_name: "standby1".into(),
            client_addr: Some("10.0.0.2".into()),
        };
        assert_eq!(
            replica.to_string(),
            "\"standby1\" (10.0.0.2, WAL sender pid 42)"
        );
    }
}
