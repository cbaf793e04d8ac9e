//! The CLI's own typed errors and the mapping of every error to the documented exit codes.

use std::process::ExitCode;

use migrate_core::runtime::baseline::BaselineError;
use migrate_core::runtime::import::ImportError;
use migrate_core::runtime::repair::RepairError;
use migrate_core::runtime::{DownReport, Failed, Plan, RuntimeError, UpReport};

// The exit codes `migrate --help` and docs/cli.md document.
/// Success.
pub const EXIT_OK: u8 = 0;
/// A failure: database unreachable, a migration failed, `check` found a broken down part.
pub const EXIT_FAILURE: u8 = 1;
/// A usage error: bad flags, unknown rule, invalid name.
pub const EXIT_USAGE: u8 = 2;
/// Lint findings at error level.
pub const EXIT_LINT: u8 = 3;
/// Refused: the history and the files disagree (drift, missing files, out of order).
pub const EXIT_REFUSED: u8 = 4;

/// The CLI's own failures (the runtime's come as [`migrate_core::runtime::RuntimeError`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Flags or names that make no sense; the message says which.
    #[error("{0}")]
    Usage(String),

    /// A command that needs a database found none configured.

    #[error(
        "`{command}` needs a database and none is configured: pass --database-url, or set \
         DATABASE_URL, the PG* variables (PGHOST, PGDATABASE, PGUSER, ...) or DB_HOST/DB_NAME/\
         DB_USER; a scratch database is never used instead"
    )]
    NoDatabase {
        /// The subcommand, e.g. `up`.
        command: &'static str,
    },

    /// `explain` was given a rule id that does not exist.

    #[error("unknown rule `{id}`{}; `migrate explain` lists the rules", suggestion_text(.suggestion))]
    UnknownRule {
        /// The id as given.
        id: String,
        /// The closest known id, if one is close.
        suggestion: Option<&'static str>,
    },

    /// A folder read at run time does not lint; the findings were printed first.

    #[error(
        "{display_dir} has {errors} error-level finding(s) (printed above); fix them first, \
         `migrate lint` shows them again"
    )]
    InvalidSet {
        /// The folder, as the user wrote it.
        display_dir: String,
        /// How many error-level findings.
        errors: usize,
    },

    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, e.g. `running pg_dump`.
        what: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },

    /// `new` would overwrite this file.
    #[error("{0} already exists; `new` never overwrites a file")]
    FileExists(String),

    /// A folder command (`new`, `lint`, `check`, `squash`) in a binary that embeds its
    /// migrations, without a folder: the one the set was built from is a path on the build
    /// machine.
    #[error(
        "`{command}` works on a migration folder, and this binary embeds its migrations: the \
         folder they were built from ({built_from}) is a path of the build machine, not of \
         this one; pass --dir <the service's migrations folder>"
    )]
    FolderNeeded {
        /// The subcommand, e.g. `new`.
        command: &'static str,
        /// The folder the embedded set was built from.
        built_from: String,
    },

    /// `--dir` or `--layout` given to a database command of a binary that embeds its
    /// migrations: the embedded set is the one it applies and checks.
    #[error(
        "this binary embeds its migrations ({versions}); {option} applies to the folder \
         commands only (lint, check, new, squash): `{command}` always uses the embedded set, \
         so that it never applies, or records checksums of, files the binary does not have"
    )]
    FolderOnDatabaseCommand {
        /// The subcommand, e.g. `repair`.
        command: &'static str,
        /// `--dir` or `--layout`.
        option: &'static str,
        /// The embedded versions, e.g. `versions 1-5`.
        versions: String,
    },
}

fn suggestion_text(suggestion: &Option<&'static str>) -> String {
    suggestion.map_or_else(String::new, |id| format!(" (did you mean `{id}`?)"))
}

/// What a command that did not fail asks the process to exit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// The command printed its own failure report (`check`).
    Failure,
    /// Lint findings at error level were printed.
    LintFindings,
    /// `status` printed drift or versions missing from the files.
    Disagreement,
}

impl Outcome {
    /// The process exit code of this outcome.
    pub fn exit_code(self) -> ExitCode {
        ExitCode::from(match self {
            Outcome::Success => EXIT_OK,
            Outcome::Failure => EXIT_FAILURE,
            Outcome::LintFindings => EXIT_LINT,
            Outcome::Disagreement => EXIT_REFUSED,
        })
    }
}

fn runtime_code(error: &RuntimeError) -> u8 {
    match error {
        RuntimeError::ChecksumMismatch { .. }
        | RuntimeError::UnknownApplied { .. }
        | RuntimeError::OtherHistoryTable { .. }
        | RuntimeError::OutOfOrder { .. }
        | RuntimeError::PartlySquashed { .. } => EXIT_REFUSED,
        // The configuration names another tool's table: fixed by a flag, like import's
        // `SameTable`.
        RuntimeError::InvalidIdentifier { .. } | RuntimeError::NotOurHistoryTable { .. } => {
            EXIT_USAGE
        }
        _ => EXIT_FAILURE,
    }
}

/// The exit code of a failed command, from the first typed error in the chain.
pub fn exit_code(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(error) = cause.downcast_ref::<CliError>() {
            return match error {
                CliError::Usage(_)
                | CliError::UnknownRule { .. }
                | CliError::FolderNeeded { .. }
                | CliError::FolderOnDatabaseCommand { .. } => EXIT_USAGE,
                CliError::InvalidSet { .. } => EXIT_LINT,
                _ => EXIT_FAILURE,
            };
        }
        if let Some(error) = cause.downcast_ref::<RuntimeError>() {
            return runtime_code(error);
        }
        if let Some(failed) = cause.downcast_ref::<Failed<UpReport>>() {
            return runtime_code(&failed.error);
        }
        if let Some(failed) = cause.downcast_ref::<Failed<DownReport>>() {
            return runtime_code(&failed.error);
        }
        if let Some(failed) = cause.downcast_ref::<Failed<Plan>>() {
            return runtime_code(&failed.error);
        }
        if let Some(RepairError::Runtime(error)) = cause.downcast_ref::<RepairError>() {
            return runtime_code(error);
        }
        if let Some(error) = cause.downcast_ref::<BaselineError>() {
            return match error {
                BaselineError::Runtime(error) => runtime_code(error),
                BaselineError::HistoryNotEmpty { .. } => EXIT_REFUSED,
                _ => EXIT_USAGE,
            };
        }
        if let Some(error) = cause.downcast_ref::<ImportError>() {
            return match error {
                ImportError::Runtime(error) => runtime_code(error),
                ImportError::Disagree { .. } | ImportError::HistoryNotEmpty { .. } => EXIT_REFUSED,
                ImportError::NotAnotherTool { .. } | ImportError::SameTable { .. } => EXIT_USAGE,
                _ => EXIT_FAILURE,
            };
        }
    }
    EXIT_FAILURE
}

/// The messages of an error chain, skipping causes whose text the previous message
/// already contains (the runtime's errors render their database cause themselves).
pub fn render(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if cause.downcast_ref::<tokio_postgres::Error>().is_some() {
            continue;
        }
        if parts.last().is_some_and(|last| last.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}
