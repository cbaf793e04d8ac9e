//! The lint engine and its rules, one file each:
//!
//! - `rule`: what a rule declares ([`Rule`]), remembers ([`RuleMemory`]) and reports
//!   ([`Finding`]);
//! - [`registry`]: the one list of rules ([`RULES`]), the catalogue and `migrate explain`;
//! - [`config`]: `migrate.toml` (levels per rule);
//! - [`context`]: what a rule sees of a statement ([`StatementContext`]);
//! - `engine`: runs the rules over a set in version order and applies allows and levels
//!   ([`lint_files`]);
//! - [`rules`]: one file per rule, with its documentation, examples and check.

mod bad_backfill;
pub mod config;
pub mod context;
mod engine;
pub mod registry;
mod rule;
pub mod rules;
#[cfg(test)]
pub(crate) mod testing;

pub use config::{Config, Level};
pub use context::StatementContext;
pub use engine::{effective_phase, lint_files};
pub use registry::{RULES, rule};
pub use rule::{Check, EXAMPLE_FILE_MARKER, Example, Finding, Rule, RuleMemory, example_files};
