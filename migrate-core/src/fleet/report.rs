//! What fleet commands return: one entry per target, in rollout order.

use std::fmt;
use std::time::Duration;

use super::error::{FleetError, TargetError};
use crate::runtime::{AppliedMigration, BackfillState, MigrationState, StatusReport};

/// Where a target ended in a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TargetState {
    /// Nothing left pending.
    Done,
    /// It failed; see its error.
    Failed,
    /// Another target failed while it ran: it finished its current migration and stopped.
    Stopped,
    /// Another target failed before it started: untouched.
    NotStarted,
}

impl TargetState {
    /// `done`, `failed`, `stopped`, `not started`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetState::Done => "done",
            TargetState::Failed => "failed",
            TargetState::Stopped => "stopped",
            TargetState::NotStarted => "not started",
        }
    }
}

/// One target's part of a rollout.
#[derive(Debug)]
pub struct TargetRun {
    /// Its label.
    pub target: String,
    /// Its database, `user@host:port/db` (no password).
    pub database: String,
    /// Its schema, for a schema target.
    pub schema: Option<String>,
    /// Where it ended.
    pub state: TargetState,
    /// What this run applied on it.
    pub applied: Vec<AppliedMigration>,
    /// Why it failed.
    pub error: Option<TargetError>,
    /// How long it took.
    pub duration: Duration,
}

/// A rollout: every target, in rollout order.
#[derive(Debug, Default)]
pub struct FleetUpReport {
    /// One entry per target.
    pub targets: Vec<TargetRun>,
}

impl FleetUpReport {
    /// How many targets ended in `state`.
    pub fn count(&self, state: TargetState) -> usize {
        self.targets.iter().filter(|t| t.state == state).count()
    }

    /// How many migrations this run applied, over all targets.
    pub fn applied_count(&self) -> usize {
        self.targets.iter().map(|t| t.applied.len()).sum()
    }

    /// The failed targets, in rollout order.
    pub fn failures(&self) -> impl Iterator<Item = &TargetRun> {
        self.targets
            .iter()
            .filter(|t| t.state == TargetState::Failed)
    }
}

impl fmt::Display for FleetUpReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} target(s): {} done, {} failed, {} stopped, {} not started; {} migration(s) applied",
            self.targets.len(),
            self.count(TargetState::Done),
            self.count(TargetState::Failed),
            self.count(TargetState::Stopped),
            self.count(TargetState::NotStarted),
            self.applied_count()
        )
    }
}

/// A rollout that did not finish, with what it did before.
#[derive(Debug)]
pub struct FleetFailed {
    /// Every target's part (empty when the input was refused).
    pub report: FleetUpReport,
    /// Why it stopped.
    pub error: FleetError,
}

impl fmt::Display for FleetFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for FleetFailed {}

/// One target's state, for `fleet status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[non_exhaustive]
pub enum TargetHealth {
    /// Every migration applied.
    UpToDate,
    /// Migrations wait (or a backfill is in progress).
    Pending,
    /// An applied migration's file changed, or the history has versions the files lack.
    Drifted,
    /// A migration failed part-way (a partial run is recorded).
    Failed,
    /// The target could not be read (no schema matching, a query failed).
    Error,
    /// Could not connect.
    Unreachable,
}

impl TargetHealth {
    /// `up to date`, `pending`, `drifted`, `failed`, `error`, `unreachable`.
    pub fn as_str(self) -> &'static str {
        match self {
            TargetHealth::UpToDate => "up to date",
            TargetHealth::Pending => "pending",
            TargetHealth::Drifted => "drifted",
            TargetHealth::Failed => "failed",
            TargetHealth::Error => "error",
            TargetHealth::Unreachable => "unreachable",
        }
    }

    /// Whether this state needs a person (anything but up to date or pending).
    pub fn is_problem(self) -> bool {
        !matches!(self, TargetHealth::UpToDate | TargetHealth::Pending)
    }
}

/// One target as `fleet status` read it.
#[derive(Debug)]
pub struct TargetStatus {
    /// Its label.
    pub target: String,
    /// Its database, `user@host:port/db` (no password).
    pub database: String,
    /// Its schema, for a schema target.
    pub schema: Option<String>,
    /// Its state.
    pub health: TargetHealth,
    /// The highest applied version.
    pub applied_up_to: Option<u64>,
    /// Pending versions (backfills in progress included).
    pub pending: Vec<u64>,
    /// Drifted versions and applied versions missing from the files.
    pub drifted: Vec<u64>,
    /// Versions a run failed part-way through.
    pub failed: Vec<u64>,
    /// The full per-migration status, when it could be read.
    pub report: Option<StatusReport>,
    /// Why it could not be read.
    pub error: Option<TargetError>,
}

impl TargetStatus {
    pub(crate) fn from_report(
        target: String,
        database: String,
        schema: Option<String>,
        report: StatusReport,
    ) -> TargetStatus {
        let versions = |states: &[MigrationState]| -> Vec<u64> {
            report
                .entries
                .iter()
                .filter(|e| states.contains(&e.state))
                .map(|e| e.version)
                .collect()
        };
        let pending = versions(&[MigrationState::Pending, MigrationState::BackfillInProgress]);
        let drifted = versions(&[MigrationState::Drifted, MigrationState::MissingFromFiles]);
        let failed = versions(&[MigrationState::PartlyApplied]);
        let applied_up_to = report
            .entries
            .iter()
            .filter(|e| e.applied_at.is_some())
            .map(|e| e.version)
            .max();
        let health = if !failed.is_empty() {
            TargetHealth::Failed
        } else if !drifted.is_empty() {
            TargetHealth::Drifted
        } else if !pending.is_empty() {
            TargetHealth::Pending
        } else {
            TargetHealth::UpToDate
        };
        TargetStatus {
            target,
            database,
            schema,
            health,
            applied_up_to,
            pending,
            drifted,
            failed,
            report: Some(report),
            error: None,
        }
    }

    pub(crate) fn from_error(
        target: String,
        database: String,
        schema: Option<String>,
        error: TargetError,
    ) -> TargetStatus {
        let health = match error {
            TargetError::Unreachable(_) => TargetHealth::Unreachable,
            _ => TargetHealth::Error,
        };
        TargetStatus {
            target,
            database,
            schema,
            health,
            applied_up_to: None,
            pending: Vec::new(),
            drifted: Vec::new(),
            failed: Vec::new(),
            report: None,
            error: Some(error),
        }
    }
}

/// `fleet status`: every target, in rollout order.
#[derive(Debug, Default)]
pub struct FleetStatusReport {
    /// One entry per target (one per database that could not be read at all).
    pub targets: Vec<TargetStatus>,
}

impl FleetStatusReport {
    /// How many targets are in `health`.
    pub fn count(&self, health: TargetHealth) -> usize {
        self.targets.iter().filter(|t| t.health == health).count()
    }

    /// Whether any target needs a person.
    pub fn has_problems(&self) -> bool {
        self.targets.iter().any(|t| t.health.is_problem())
    }
}

/// One target's backfills, for `fleet backfill` and `fleet verify`.
#[derive(Debug)]
pub struct TargetBackfills {
    /// Its label.
    pub target: String,
    /// Its database, `user@host:port/db` (no password).
    pub database: String,
    /// Its schema, for a schema target.
    pub schema: Option<String>,
    /// Every backfill statement's state (after verification, with `remaining` counted).
    pub states: Vec<BackfillState>,
    /// Whether the operator paused its backfills (`fleet backfill` only).
    pub paused: Option<bool>,
    /// Why it could not be read.
    pub error: Option<TargetError>,
}

impl TargetBackfills {
    /// Rows still matching a backfill's WHERE (after `verify`).
    pub fn remaining(&self) -> i64 {
        self.states.iter().filter_map(|s| s.remaining).sum()
    }
}

/// `fleet backfill` or `fleet verify`: every target, in rollout order.
#[derive(Debug, Default)]
pub struct FleetBackfillReport {
    /// One entry per target (one per database that could not be read at all).
    pub targets: Vec<TargetBackfills>,
}

impl FleetBackfillReport {
    /// Targets that could not be read.
    pub fn errors(&self) -> usize {
        self.targets.iter().filter(|t| t.error.is_some()).count()
    }

    /// Rows left over all targets.
    pub fn remaining(&self) -> i64 {
        self.targets.iter().map(TargetBackfills::remaining).sum()
    }
}
