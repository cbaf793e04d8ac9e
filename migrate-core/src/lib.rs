//! migrate-core: the migration model, source parsing, lint rules and (feature `runtime`) the
//! PostgreSQL runtime shared by the `migrations!()` macro and the `migrate` CLI.
//!
//! The modules are layers, bottom first; each uses only the layers before it (checked by
//! `tests/layers.rs`):
//!
//! 1. the model: [`checksum`], [`diagnostic`], [`migration`];
//! 2. reading SQL: [`splitter`] (statements and tokens), [`classify`] (keywords), [`sql`]
//!    (one statement parsed, names folded, function volatility);
//! 3. passes over it, independent of each other: [`source`] (files, directives, the set's
//!    checks), [`lock_analysis`] (what `migrate plan` shows), [`batch_plan`] (the keyed-batch
//!    rewrite of a backfill `UPDATE`);
//! 4. [`lint`]: the engine, the registry and one file per rule;
//! 5. [`checked_set`]: [`check_dir`], the one entry point of the macro and the CLI;
//! 6. `runtime` (feature `runtime`): applying a set to PostgreSQL.

#![warn(missing_docs)]

pub mod checksum;
pub mod diagnostic;
pub mod migration;

pub mod classify;
pub mod splitter;
pub mod sql;

pub mod batch_plan;
pub mod lock_analysis;
pub mod source;

pub mod lint;

pub mod checked_set;

// The runtime is documented in a parallel branch: remove this allow when it lands.
#[cfg(feature = "runtime")]
#[allow(missing_docs)]
pub mod runtime;

pub use checked_set::{CheckedSet, check_dir};
pub use checksum::Checksum;
pub use diagnostic::{Diagnostic, Severity};
pub use migration::{
    BackfillSpec, Migration, Migrations, Phase, Section, Statement, TransactionMode,
};
