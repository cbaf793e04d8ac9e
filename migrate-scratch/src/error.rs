//! [`ScratchError`], the one error type of the crate.

use std::io;
use std::path::PathBuf;

use crate::binaries::PG_BIN_ENV;
use crate::process::PG_USER_ENV;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScratchError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in ${PG_BIN_ENV}, PATH \
         or /usr/lib/postgresql/*/bin (searched: {}); install PostgreSQL \
         (e.g. `apt-get install -y postgresql`) or set {PG_BIN_ENV} to the folder holding them",
        display_paths(.searched)
    )]
    BinariesMissing { searched: Vec<PathBuf> },
    #[error(
        "running as root, and PostgreSQL refuses to run as root: no account `{user}` to run it \
         as (set {PG_USER_ENV} to an existing unprivileged user)"
    )]
    UnprivilegedUserMissing { user: String },
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("`{command}` failed ({status}):\n{output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error(
        "the server could not bind a free port after {attempts} attempts; last server log:\n{log}"
    )]
    PortsExhausted { attempts: u32, log: String },
    #[error("`{name}` is not a plain role name ([A-Za-z_][A-Za-z0-9_]*)")]
    InvalidRoleName { name: String },
    #[error("generating the TLS certificate: {0}")]
    Certificate(#[from] rcgen::Error),
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
