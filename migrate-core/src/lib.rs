//! migrate-core: the migration model, source parsing, lint rules and (feature `runtime`) the
//! PostgreSQL runtime shared by the `migrations!()` macro and the `migrate` CLI.
//!
//! # Embedding and applying
//!
//! A service embeds its folder with `migrate_macros::migrations!`, which fails the build on
//! unsafe DDL, and applies the set at start-up over one dedicated connection (advisory lock,
//! `lock_timeout`, history table, gates before a contract):
//!
//! ```no_run
//! use migrate_core::runtime::{Migrator, MigratorConfig, UpTo, connect};
//!
//! // The folder, relative to the crate's Cargo.toml.
//! static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let config = MigratorConfig::default();
//!     // A URL without a password takes PGPASSWORD; opening takes at most connect_timeout (10 s).
//!     let client = connect(&std::env::var("DATABASE_URL")?, &config).await?;
//!     match Migrator::new(&MIGRATIONS, config)?.up(&client, UpTo::All).await {
//!         Ok(report) => println!("{report}"), // "nothing to do" on a second run
//!         // A lock wait that ran out, a restarting server, a gate that needs time: a later
//!         // run can succeed as it is.
//!         Err(failed) if failed.error().is_transient() => {
//!             eprintln!("will retry: {failed}");
//!             return Err(failed.into());
//!         }
//!         // Drift, missing files, a statement the server rejects: a person has to look.
//!         Err(failed) => return Err(failed.into()),
//!     }
//!     Ok(())
//! }
//! ```
//!
//! `failed.error().is_transient()` is the one question to ask of a failure: retry later, or
//! alert. Errors are one clear message through `{}` and through `?` in `main` (their `Debug`
//! is the same text, and `source()` is empty, so nothing prints twice), and a failure carries
//! what was applied before it (`failed.report`). Without the macro, [`check_dir`] reads,
//! parses and lints a folder at run time and [`CheckedSet::migrations`] gives the same set.
//!
//! # Layers
//!
//! The modules are layers, bottom first; each uses only the layers before it (a test reads
//! every import and checks it):
//!
//! 1. the model: [`checksum`], [`diagnostic`], [`migration`];
//! 2. reading SQL: `splitter` (statements and tokens), `classify` (keywords), `sql` (one
//!    statement parsed, names folded, function volatility);
//! 3. passes over it, independent of each other: `source` (files, directives, the set's
//!    checks), [`lock_analysis`] (what `migrate plan` shows), `batch_plan` (the keyed-batch
//!    rewrite of a backfill `UPDATE`);
//! 4. [`lint`]: the engine, the registry and one file per rule; [`analysis`]: what the
//!    runtime needs from the statements, read once and stored in the set;
//! 5. [`checked_set`]: [`check_dir`], the one entry point of the macro and the CLI;
//! 6. [`build_cache`]: what the macro made of a folder, kept between builds;
//! 7. `runtime` (feature `runtime`): applying a set to PostgreSQL.
//!
//! The modules named without a link are implementation, not API: reading SQL is private to
//! this crate, and `source` and `batch_plan` are public only for this workspace's CLI, tests
//! and docs (hidden, no stability promised).
//!
//! # Features
//!
//! - `runtime` (default): applying a set to PostgreSQL over tokio-postgres.
//! - `lint` (default): reading SQL, layers 2 to 6 (the loader and [`check_dir`], the linter,
//!   the lock analysis, `migrate.toml`, the macro's build cache), with sqlparser and toml.
//!   `migrations!()` and the CLI need it. The runtime does not: the check stores in the set
//!   what applying needs of the statements ([`StatementAnalysis`]), so a service that applies an embedded set builds
//!   with `default-features = false, features = ["runtime"]` and links no SQL parser. A set
//!   built by hand, without that analysis, is read at run time where `lint` is on; where it is
//!   off its backfills are refused, and its contracts by the running-queries gate when that
//!   is configured, saying why.

#![warn(missing_docs)]

pub mod checksum;
pub mod diagnostic;
pub mod migration;
// Spreading per-file work over every core, results in a fixed order. Without `lint` the
// runtime uses a part of this and of `classify` and `source` below (keyword folding, the
// compare directive's names); the rest serves the loader and the linter.
#[cfg_attr(not(feature = "lint"), allow(dead_code))]
pub(crate) mod parallel;

// Reading SQL is implementation: the passes built on it use it, nothing outside this crate.
#[cfg_attr(not(feature = "lint"), allow(dead_code))]
pub(crate) mod classify;
// Public only for the property tests (migrate-core/tests/properties.rs) and the fuzz targets
// (fuzz/): not a stable API.
#[doc(hidden)]
pub mod splitter;
#[cfg(feature = "lint")]
pub(crate) mod sql;

// Not a stable API: public only because the runtime's backfill docs link to it; make it
// pub(crate) once that link is gone.
#[doc(hidden)]
pub mod batch_plan;
#[cfg(feature = "lint")]
pub mod lock_analysis;
// Not a stable API: used by migrate-cli's `new` command (the file-name grammar, the template
// placeholder) and by migrate-core's no_panics test; `check_dir` is the entry point.
#[doc(hidden)]
#[cfg_attr(not(feature = "lint"), allow(dead_code))]
pub mod source;

#[cfg(feature = "lint")]
pub mod lint;

// What the runtime needs from the statements, read when the set is checked.
#[cfg(feature = "lint")]
pub mod analysis;

// The application's queries: read from files or pg_stat_statements, checked against a schema.
pub mod queries;

#[cfg(feature = "lint")]
pub mod checked_set;

// The macro's cache between builds: public for migrate-macros only, not a stable API.
#[cfg(feature = "lint")]
#[doc(hidden)]
pub mod build_cache;

#[cfg(feature = "runtime")]
pub mod runtime;

// One set over many databases and tenant schemas, on top of the runtime.
#[cfg(feature = "runtime")]
pub mod fleet;

#[cfg(feature = "lint")]
pub use checked_set::{
    CheckedSet, FolderSnapshot, check_dir, check_dir_as, check_folder, read_folder,
};
pub use checksum::Checksum;
pub use diagnostic::{Diagnostic, Severity};
pub use migration::{
    BackfillPace, BackfillSpec, BatchSource, CompareSpec, Migration, Migrations, MigrationsError,
    Phase, Section, Statement, StatementAnalysis, TableRef, TransactionMode,
};
#[cfg(feature = "lint")]
pub use source::Layout;
