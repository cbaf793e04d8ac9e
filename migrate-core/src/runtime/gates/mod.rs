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

mod running_queries;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use tokio_postgres::error::SqlState;

use super::backfill::plan_statement;
pub use super::error::{GateFailure, Replica};
use super::error::{REMAINING_ROWS_CAP, RuntimeError};
use super::replication::{ReplicationRow, read_replication};
use super::rows_guard::{PendingRows, RowsGuard};
use super::state::backfill_progress::BackfillProgressTable;
use super::state::history::{History, sql_version};
use crate::migration::{Migration, Migrations, Phase};

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
    let guard = rows_guard(client, migrations, contract, planned).await?;
    guard.check(client).await?;
    if contract.requires_compare
        && let Some(failure) = super::compare::gate(client, history, migrations, contract).await?
    {
        return Err(refuse(failure));
    }
    Ok(guard)
}

fn refusal(contract: &Migration, failure: GateFailure) -> RuntimeError {
    RuntimeError::ContractGate {
        version: contract.version,
        file: contract.file_name.to_string(),
        failure: Box::new(failure),
    }
}

/// The backfill statements between the contract's expand and the contract. A WHERE that
/// no longer evaluates (an earlier contract dropped the column or table it reads) has no
/// row left in the old shape and is left out.
async fn rows_guard(
    client: &Client,
    migrations: &Migrations,
    contract: &Migration,
    planned: &BTreeSet<u64>,
) -> Result<RowsGuard, RuntimeError> {
    let mut guard = RowsGuard::new(contract);
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
                Ok(_) => guard.watch(pending),
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
