//! The application's own queries, and what a migration does to them (`migrate check
//! --queries`).
//!
//! - [`Query`]: one query and where it came from: a `.sql` file or folder, a sqlx offline
//!   folder (`.sqlx/query-<hash>.json`, with sqlx's `describe` of its result), or a
//!   database's `pg_stat_statements` (feature `runtime`).
//! - [`RemovedObject`]: what a contract's statements drop, rename or retype, read with the
//!   linter's statement model, and [`RemovedObject::used_by`]: whether a query names it.
//! - With the runtime: [`check_query`] prepares a query in a rolled-back transaction and
//!   reports what PostgreSQL refuses, an `INSERT` that omits a `NOT NULL` column without a
//!   default, and a result column that no longer matches sqlx's `describe`.
//!
//! `migrate check --queries` walks them through the pending migrations; the contract gate
//! `running_queries_window` reads `pg_stat_statements` before a contract.

mod error;
// Reading query files (sqlx's offline JSON among them) and preparing queries are the CLI's:
// they come with the loader.
#[cfg(feature = "lint")]
mod files;
#[cfg(all(feature = "runtime", feature = "lint"))]
mod prepare;
mod query;
mod removed;
#[cfg(feature = "runtime")]
mod stat_statements;

pub use error::QuerySourceError;
#[cfg(feature = "lint")]
pub use files::read_path;
#[cfg(all(feature = "runtime", feature = "lint"))]
pub use prepare::{QueryProblem, check_query};
pub use query::{Query, QueryOrigin, ResultColumn};
#[cfg(feature = "lint")]
pub use removed::removed_by;
pub use removed::{Removal, RemovedObject, names_relation};
#[cfg(feature = "runtime")]
pub use stat_statements::{StatementCalls, called_between, read_calls};
