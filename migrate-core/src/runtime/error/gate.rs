//! Why a contract gate refused a contract: the reasons [`RuntimeError::ContractGate`] carries
//! (the gates themselves are in [`crate::runtime::gates`]).
//!
//! [`RuntimeError::ContractGate`]: super::RuntimeError::ContractGate

use std::fmt;
use std::time::Duration;

use crate::runtime::text::human;

/// The guard counts at most this many remaining rows: enough to say how bad it is, without
/// scanning a whole table that is far from done.
pub(crate) const REMAINING_ROWS_CAP: i64 = 1000;

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
        /// [`MigratorConfig::contract_stabilisation`](crate::runtime::MigratorConfig::contract_stabilisation).
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
        /// [`MigratorConfig::max_replica_lag`](crate::runtime::MigratorConfig::max_replica_lag).
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

#[cfg(test)]
mod tests {
    use super::*;

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
