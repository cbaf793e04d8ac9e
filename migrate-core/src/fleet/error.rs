//! The fleet's errors: bad input before anything runs ([`FleetError`]) and what went wrong
//! on one target ([`TargetError`]), always with the target's label.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use crate::runtime::{ConnectError, RuntimeError};

/// A problem with one line of the targets file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetsProblem {
    /// The file, as given.
    pub file: String,
    /// Its line, from 1.
    pub line: usize,
    /// What is wrong; never the password.
    pub reason: String,
}

impl fmt::Display for TargetsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file, self.line, self.reason)
    }
}

/// Why a fleet command could not run, or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The targets file could not be read.
    #[error("reading the targets file {}: {source}", path.display())]
    ReadTargets {
        /// The file.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Lines of the targets file are malformed or duplicated; nothing ran.
    #[error("{}", problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    InvalidTargets {
        /// Every problem, in line order.
        problems: Vec<TargetsProblem>,
    },
    /// The targets file names no database.
    #[error("{file} names no target (one `URL` or `NAME URL` a line)")]
    NoTargets {
        /// The file, as given.
        file: String,
    },
    /// `--schemas` cannot be used.
    #[error("schema glob `{glob}`: {reason}")]
    InvalidSchemaGlob {
        /// The glob as given.
        glob: String,
        /// Why.
        reason: &'static str,
    },
    /// A fleet setting is out of range.
    #[error("{setting}: {reason}")]
    InvalidSetting {
        /// The setting, e.g. `parallel`.
        setting: &'static str,
        /// Why.
        reason: &'static str,
    },
    /// The migrator settings are invalid (as `Migrator::new` would say).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Before anything was applied, these targets could not be rolled (unreachable, no
    /// schema matching, drifted history, ...): nothing ran anywhere.
    #[error("{} target(s) cannot be rolled, nothing was applied anywhere:\n{}", failures.len(), list(failures))]
    Preflight {
        /// Each target that failed its check.
        failures: Vec<TargetFailure>,
    },
    /// A target failed during the rollout: no target started after it; the ones in flight
    /// finished their current migration.
    #[error("rollout stopped: {failure}")]
    RolloutStopped {
        /// The first failure (the report lists any other); boxed, as it holds a whole
        /// runtime error.
        failure: Box<TargetFailure>,
    },
}

fn list(failures: &[TargetFailure]) -> String {
    failures
        .iter()
        .map(|failure| format!("  {failure}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl FleetError {
    /// Whether it is about the input (targets file, glob, settings) rather than a target.
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            FleetError::InvalidTargets { .. }
                | FleetError::NoTargets { .. }
                | FleetError::InvalidSchemaGlob { .. }
                | FleetError::InvalidSetting { .. }
        )
    }
}

/// What went wrong on one target.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TargetError {
    /// Could not connect (refused, unknown host, authentication, timeout, ...).
    #[error("unreachable: {0}")]
    Unreachable(#[source] ConnectError),
    /// `--schemas` matched no schema in this database.
    #[error("no schema matches `{glob}` in this database")]
    NoMatchingSchema {
        /// The glob.
        glob: String,
    },
    /// A matching schema whose name cannot name a history table (which takes plain
    /// identifiers: letters, digits and `_`, up to 63 bytes).
    #[error(
        "schema {schema:?} matches the glob but is not a plain identifier (letters, digits, `_`), \
         so it cannot hold a history table; rename it or narrow the glob"
    )]
    UnsupportedSchemaName {
        /// The schema.
        schema: String,
    },
    /// The runtime refused or failed (drift, a failed migration, a gate, ...).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// `up` to this version applied nothing, yet it stayed pending (a guard against a
    /// rollout that would never end).
    #[error("version {version} stayed pending after `up` applied nothing")]
    NoProgress {
        /// The version.
        version: u64,
    },
    /// The target took longer than the per-target timeout; its running statement was
    /// cancelled.
    #[error("timed out after {}s; its running statement was cancelled", limit.as_secs_f64())]
    TimedOut {
        /// The per-target limit.
        limit: Duration,
    },
}

impl TargetError {
    /// The runtime's error, when it is one.
    pub fn runtime(&self) -> Option<&RuntimeError> {
        match self {
            TargetError::Runtime(error) => Some(error),
            _ => None,
        }
    }
}

/// A target and what went wrong on it.
#[derive(Debug)]
pub struct TargetFailure {
    /// The target's label (`NAME`, or `user@host:port/db`, with `/schema` for a schema).
    pub target: String,
    /// What went wrong.
    pub error: TargetError,
}

impl fmt::Display for TargetFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.target, self.error)
    }
}
