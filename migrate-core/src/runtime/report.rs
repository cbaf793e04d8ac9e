//! What the migrator reports: status, plans, applied and reverted migrations.

use std::fmt;
use std::time::{Duration, SystemTime};

use super::error::PartialReport;
use crate::migration::{Phase, TransactionMode};

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
    /// The file it came from, e.g. `0002_users_email_lower.expand.sql`.
    pub file_name: String,
    pub phase: Phase,
    pub mode: TransactionMode,
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

/// What `up` applied, in order. Inside [`super::Failed`], what it applied before failing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpReport {
    pub applied: Vec<AppliedMigration>,
    /// Set when the run stopped on an error: an empty report then reads "nothing was done
    /// before the failure", not "nothing to do".
    pub(crate) failed: bool,
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
        write_list(f, "applied", &self.applied, self.failed)
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
        write_list(f, "reverted", &self.reverted, self.failed)
    }
}
