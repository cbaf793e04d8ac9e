//! Throwaway PostgreSQL clusters for tests and for `migrate check`.
//!
//! [`ScratchCluster::start`] runs `initdb` into a fresh temporary folder and starts a server on
//! a free port of 127.0.0.1; [`ScratchCluster::create_database`] hands out one new database per
//! caller, so tests sharing a cluster still run in parallel without seeing each other.
//!
//! A cluster never outlives its process: `Drop` stops the server (`pg_ctl stop -m immediate`)
//! and removes the folder, and a watchdog child does the same when the process dies without
//! running destructors (a `static` cluster, `SIGKILL`, `std::process::exit`).
//!
//! With the `migrated` feature, `TestDatabase` gives each test of a service a fresh
//! database with its embedded migration set applied (what `#[sqlx::test(migrations = ...)]`
//! gives sqlx users), on the cluster the test binary shares ([`ScratchCluster::shared`]).
//!
//! Speed over durability: `initdb -N`, `fsync=off`, `full_page_writes=off`,
//! `synchronous_commit=off`. Never point this at data you want to keep.

#![warn(missing_docs)]

mod binaries;
mod cluster;
mod database;
mod dump;
mod error;
#[cfg(feature = "migrated")]
mod migrated;
mod pooler;
mod process;
mod settings;
mod tls;

pub use binaries::{PG_BIN_ENV, PG_CACHE_ENV, PG_MAJOR_ENV, PgBinaries, ServerVersion};
pub use cluster::{SUPERUSER, ScratchCluster};
pub use database::ScratchDatabase;
pub use dump::{DumpSource, PgDump, without_restrict_lines};
pub use error::ScratchError;
#[cfg(feature = "migrated")]
pub use migrated::{TestDatabase, TestDatabaseError};
pub use pooler::{PoolMode, ScratchPooler};
pub use process::PG_USER_ENV;
pub use settings::PASSWORD_GROUP;
pub use tls::TlsFiles;
