//! migrate-core: the migration model, source parsing, lint rules and (feature `runtime`) the
//! PostgreSQL runtime shared by the `migrations!()` macro and the `migrate` CLI.

pub mod checksum;
pub mod migration;
#[cfg(feature = "runtime")]
pub mod runtime;
pub mod splitter;

pub use checksum::Checksum;
pub use migration::{
    BackfillSpec, Migration, Migrations, Phase, Section, Statement, TransactionMode,
};
pub mod batch_plan;
pub mod checked_set;
pub mod classify;
pub mod diagnostic;
pub mod lint;
pub mod lock_analysis;
pub mod source;
pub mod sql;

pub use checked_set::{CheckedSet, check_dir};
pub use diagnostic::{Diagnostic, Severity};
