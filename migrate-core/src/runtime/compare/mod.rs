//! Keeping the two shapes of an expand/contract equal while both live: the application's dual
//! writes (`dual_write`, and `sqlx` for services on sqlx), the replay of the modern writes that
//! failed (`reconcile`), and the compare that proves the target holds what its source says
//! (`run`, over the catalog facts of `tables`). Compare and reconcile share one definition of
//! "equal rows" (`row_equality`).

pub mod dual_write;
pub mod reconcile;
mod row_equality;
mod run;
#[cfg(feature = "sqlx")]
pub mod sqlx;
mod tables;

pub(crate) use run::gate;
pub use run::{CompareOptions, CompareReport, Difference, DifferingKey};
