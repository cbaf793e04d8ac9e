//! [`ScratchError`], the one error type of the crate.

use std::io;
use std::path::PathBuf;

use crate::binaries::{PG_BIN_ENV, PG_CACHE_ENV, PG_MAJOR_ENV};
use crate::process::PG_USER_ENV;

/// Why a scratch cluster could not be found, started or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScratchError {
    /// No folder of the search path holds all the server binaries.
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in ${PG_BIN_ENV}, PATH \
         or /usr/lib/postgresql/*/bin (searched: {}); install PostgreSQL \
         (e.g. `apt-get install -y postgresql`) or set {PG_BIN_ENV} to the folder holding them",
        display_paths(.searched)
    )]
    BinariesMissing {
        /// The folders looked in, in order.
        searched: Vec<PathBuf>,
    },
    /// `$MIGRATE_PG_MAJOR` names a major whose binaries are not installed.
    #[error(
        "PostgreSQL {major} (${PG_MAJOR_ENV}) not installed (searched: {}); install it with \
         `scripts/install-pg.sh {major}` (into ${PG_CACHE_ENV}, default ~/.cache/migrate-pg), or \
         unset {PG_MAJOR_ENV} to use the default server",
        display_paths(.searched)
    )]
    MajorMissing {
        /// The major asked for.
        major: u32,
        /// The folders looked in, in order.
        searched: Vec<PathBuf>,
    },
    /// `$MIGRATE_PG_MAJOR` is not a major version number.
    #[error("${PG_MAJOR_ENV} is `{value}`, not a PostgreSQL major version such as 14")]
    InvalidMajor {
        /// The value as set.
        value: String,
    },
    /// The server build lacks a feature the cluster asked for (TLS: a build without
    /// OpenSSL); tests needing it skip, saying so.
    #[error("{feature} is not supported by this PostgreSQL build ({binaries})")]
    NotInThisBuild {
        /// The feature: `TLS`.
        feature: &'static str,
        /// The binaries' folder.
        binaries: PathBuf,
    },
    /// This process is root, which the server refuses, and the account to run it as does not
    /// exist (or is root too).
    #[error(
        "running as root, and PostgreSQL refuses to run as root: no account `{user}` to run it \
         as (set {PG_USER_ENV} to an existing unprivileged user)"
    )]
    UnprivilegedUserMissing {
        /// The account name: `$MIGRATE_PG_USER`, else `nobody`.
        user: String,
    },
    /// A file-system or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// The operation, e.g. `writing server.key`.
        what: String,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A program (`initdb`, `pg_ctl`, `psql`, ...) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its standard output then standard error (and the server log, for a failed start).
        output: String,
    },
    /// Every port tried was taken by another process between being picked and the server
    /// binding it.
    #[error(
        "the server could not bind a free port after {attempts} attempts; last server log:\n{log}"
    )]
    PortsExhausted {
        /// How many ports were tried.
        attempts: u32,
        /// The server log of the last attempt.
        log: String,
    },
    /// A role name given to [`ScratchCluster::create_login_role`] is not a plain identifier.
    ///
    /// [`ScratchCluster::create_login_role`]: crate::ScratchCluster::create_login_role
    #[error("`{name}` is not a plain role name ([A-Za-z_][A-Za-z0-9_]*)")]
    InvalidRoleName {
        /// The name as given.
        name: String,
    },
    /// Generating the CA or server certificate of a TLS cluster failed.
    #[error("generating the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),

    /// A client program (`pg_dump`) could not be started: not installed where looked for.
    #[error(
        "{} not found; install the PostgreSQL client programs (Debian: apt-get install \
         postgresql-client) or set {PG_BIN_ENV} to the folder holding them",
        .program.display()
    )]
    ProgramMissing {
        /// The program as it was run.
        program: PathBuf,
    },
    /// A SQL script (a dump) did not load into a scratch database; nothing of it was kept.
    #[error("the dump does not load into an empty database (nothing was kept): {output}")]
    LoadFailed {
        /// psql's error output.
        output: String,
    },

    /// The PgBouncer binary is not installed.
    #[error(
        "pgbouncer not found (looked in PATH and /usr/sbin); install it (Debian: apt-get install \
         pgbouncer) to run the pooler tests"
    )]
    PoolerMissing,

    /// PgBouncer did not start listening.
    #[error("pgbouncer did not start within {seconds} s; its log: {log}")]
    PoolerDidNotStart {
        /// How long it was given.
        seconds: u64,
        /// The end of its log file.
        log: String,
    },
}

fn display_paths(paths: &[PathBuf]) -> String {
    let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    if names.is_empty() {
        "nothing".to_owned()
    } else {
        names.join(", ")
    }
}

pub(crate) fn io_error(what: impl Into<String>) -> impl FnOnce(io::Error) -> ScratchError {
    let what = what.into();
    move |source| ScratchError::Io { what, source }
}
