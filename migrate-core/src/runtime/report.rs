//! What the migrator reports: status, plans, applied and reverted migrations.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::error::PartialReport;
use crate::migration::{Phase, TransactionMode};

/// How far `up` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpTo {
    /// Every pending migration.
    All,
    /// Every pending migration with a version up to and including this one.
    Version(u64),
    /// The pending expands that come before the first pending backfill or contract: what a
    /// service can apply as it starts. Backfills (batches for as long as the table takes)
    /// and contracts (gates that wait on stabilisation, verification and replicas) are left
    /// pending for operations, and so is every migration after the first of them, which
    /// would otherwise run out of order. [`UpReport::held_back`] lists what was left and why.
    LeadingExpands,
}

/// The state of one version, for [`StatusReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MigrationState {
    /// In the history table, with the checksum of the file as this binary has it.
    Applied,
    /// In the set, not applied yet.
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
    /// The state in words, as `migrate status` prints it: `applied`, `partly applied`, ...
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

/// One version of a [`StatusReport`]: a migration of the set, or a history row the set
/// lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// The migration's version.
    pub version: u64,
    /// The migration's name, from its file name (or, missing from the files, from the
    /// history row).
    pub name: String,
    /// `None` only for a history row whose phase text is not a known phase.
    pub phase: Option<Phase>,
    /// Applied, pending, drifted, ...
    pub state: MigrationState,
    /// The history row's `executed_at`; `None` when not applied.
    pub applied_at: Option<SystemTime>,
    /// The history row's `duration_ms`: how long its statements ran. `None` when not
    /// applied.
    pub duration_ms: Option<i64>,
    /// For partly applied migrations and backfills in progress: how far they got.
    pub detail: Option<String>,
}

/// Every known or applied version, ascending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StatusReport {
    /// One entry per version, ascending.
    pub entries: Vec<StatusEntry>,
}

impl StatusReport {
    /// How many entries are in `state`.
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
    /// The migration's version.
    pub version: u64,
    /// The migration's name, from its file name.
    pub name: String,
    /// Expand, backfill or contract.
    pub phase: Phase,
    /// The file it comes from, e.g. `0002_users_email_lower.expand.sql`.
    pub file_name: String,
    /// Whether the part would run in one transaction or statement by statement.
    pub mode: TransactionMode,
    /// The part would run in keyed batches (a backfill's up part), each its own transaction,
    /// whatever `mode` says.
    pub batched: bool,
    /// How many statements the part has.
    pub statements: usize,
}

impl PlannedMigration {
    /// How the part would run, as every report shows it: `batched`, `transaction` or
    /// `no-transaction`.
    pub fn mode_label(&self) -> &'static str {
        mode_label(self.batched, self.mode)
    }
}

fn mode_label(batched: bool, mode: TransactionMode) -> &'static str {
    if batched { "batched" } else { mode.as_str() }
}

/// What a run would do, in order, without doing it: the migrations `up` would apply, or
/// (from [`Migrator::dry_run_down`](super::Migrator::dry_run_down)) those `down` would
/// revert, with their down parts' mode and statement count.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// In the order the run would take them.
    pub migrations: Vec<PlannedMigration>,
    /// With [`UpTo::LeadingExpands`](super::UpTo::LeadingExpands): the pending migrations
    /// the run would leave for operations, ascending, each with the reason (as
    /// [`UpReport::held_back`]). Empty otherwise.
    pub held_back: Vec<HeldBack>,
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
                m.mode_label(),
                m.statements
            )?;
        }
        Ok(())
    }
}

/// One migration applied (or reverted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppliedMigration {
    /// The migration's version.
    pub version: u64,
    /// The migration's name, from its file name.
    pub name: String,
    /// The file it came from, e.g. `0002_users_email_lower.expand.sql`.
    pub file_name: String,
    /// Expand, backfill or contract.
    pub phase: Phase,
    /// How the part ran: in one transaction, or statement by statement. A backfill reports
    /// its up part's mode, although it ran in keyed batches (see `batched`).
    pub mode: TransactionMode,
    /// The part ran in keyed batches (a backfill's up part), each its own transaction.
    pub batched: bool,
    /// How long it took in this run, pauses between retries included.
    pub duration: Duration,
    /// 1 unless `lock_timeout` failures were retried.
    pub attempts: u32,
}

fn write_list(
    f: &mut fmt::Formatter<'_>,
    verb: &str,
    list: &[AppliedMigration],
    failed: bool,
) -> fmt::Result {
    if list.is_empty() {
        return f.write_str(match (verb, failed) {
            (_, true) => "nothing was done before the failure",
            ("reverted", false) => "nothing to revert",
            _ => "nothing to do: the database is up to date",
        });
    }
    write!(f, "{verb} {} migration(s):", list.len())?;
    for (index, m) in list.iter().enumerate() {
        let separator = if index == 0 { " " } else { ", " };
        write!(
            f,
            "{separator}{} ({}, {} ms",
            m.file_name,
            m.phase,
            m.duration.as_millis()
        )?;
        if m.attempts > 1 {
            write!(f, ", {} attempts", m.attempts)?;
        }
        f.write_str(")")?;
    }
    Ok(())
}

impl AppliedMigration {
    /// How the part ran, as every report shows it: `batched`, `transaction` or
    /// `no-transaction`.
    pub fn mode_label(&self) -> &'static str {
        mode_label(self.batched, self.mode)
    }
}

/// Why [`UpTo::LeadingExpands`] left a pending migration for operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HeldBackReason {
    /// A backfill: it runs in batches for as long as its table takes, which a service's
    /// start must not wait for (nor make its other replicas wait for, on the lock).
    Backfill,
    /// A contract: its gates wait on the expand's stabilisation time, verified backfills
    /// and replicas, and it removes what running code may still use.
    Contract,
    /// It comes after `blocked_by`, held back itself: applying it first would apply the set
    /// out of order.
    AfterHeldBack {
        /// The first held-back migration, a backfill or a contract.
        blocked_by: u64,
    },
}

impl fmt::Display for HeldBackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HeldBackReason::Backfill => f.write_str("a backfill, for operations to run"),
            HeldBackReason::Contract => {
                f.write_str("a contract, for operations to run once its gates pass")
            }
            HeldBackReason::AfterHeldBack { blocked_by } => {
                write!(f, "after {blocked_by}, which is held back")
            }
        }
    }
}

/// A pending migration [`UpTo::LeadingExpands`] did not apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldBack {
    /// The migration's version.
    pub version: u64,
    /// The file it comes from, e.g. `0003_users_email_lower.backfill.sql`.
    pub file_name: String,
    /// Its phase.
    pub phase: Phase,
    /// Why it was left pending.
    pub reason: HeldBackReason,
}

/// What `up` applied, in order. Inside [`super::Failed`], what it applied before failing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpReport {
    /// In the order they were applied (ascending versions).
    pub applied: Vec<AppliedMigration>,
    /// With [`UpTo::LeadingExpands`]: the pending migrations left for operations, ascending,
    /// each with the reason. Empty for the other targets.
    pub held_back: Vec<HeldBack>,
    /// Set when the run stopped on an error: an empty report then reads "nothing was done
    /// before the failure", not "nothing to do".
    pub(crate) failed: bool,
}

impl UpReport {
    /// Nothing was applied.
    pub fn nothing_to_do(&self) -> bool {
        self.applied.is_empty()
    }

    /// The applied versions, in order.
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
        if self.applied.is_empty() && !self.failed && !self.held_back.is_empty() {
            // Not "up to date": what is held back is pending.
            f.write_str("nothing to apply before what is held back")?;
        } else {
            write_list(f, "applied", &self.applied, self.failed)?;
        }
        if !self.held_back.is_empty() {
            write!(f, "; left pending:")?;
            for (index, held) in self.held_back.iter().enumerate() {
                let separator = if index == 0 { " " } else { ", " };
                write!(f, "{separator}{} ({})", held.file_name, held.reason)?;
            }
        }
        Ok(())
    }
}

/// What `down` reverted. Inside [`super::Failed`], what it reverted before failing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DownReport {
    /// Newest first, in the order they were reverted.
    pub reverted: Vec<AppliedMigration>,
    /// Set when the run stopped on an error.
    pub(crate) failed: bool,
}

impl DownReport {
    /// Nothing was reverted.
    pub fn nothing_to_do(&self) -> bool {
        self.reverted.is_empty()
    }

    /// The reverted versions, newest first.
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
        write_list(f, "reverted", &self.reverted, self.failed)
    }
}
