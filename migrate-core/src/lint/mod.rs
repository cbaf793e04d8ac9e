//! The lint engine and its rules, one file each:
//!
//! - `rule`: what a rule declares ([`Rule`], [`Example`]), remembers (`RuleMemory`) and
//!   reports (`Finding`);
//! - [`registry`]: the one list of rules ([`RULES`], [`rule`]), the catalogue and
//!   `migrate explain`;
//! - [`config`]: `migrate.toml` (levels per rule);
//! - `context`: what a rule sees of a statement (`StatementContext`);
//! - [`coverage`]: how each statement was read (parsed, classified, flagged, hidden);
//! - `engine`: runs the rules over a set (each file on its own on every core, then the rules
//!   that span files in version order) and applies allows and levels;
//! - `rules`: one file per rule, with its documentation, examples and check.
//!
//! Outside this crate the rules are read, never added: [`crate::check_dir`] runs them, and
//! [`RULES`] and [`rule`] describe them (what `migrate explain` prints).

mod bad_backfill;
mod compare_columns;
pub mod config;
mod context;
pub mod coverage;
mod engine;
pub mod registry;
mod rule;
// Each rule's `RULE` is reached through [`RULES`] and [`rule`]: the files are implementation.
pub(crate) mod rules;
#[cfg(test)]
pub(crate) mod testing;

pub use config::{Config, Level};
// Not a stable API: migrate-core's no_panics test lints files it builds in memory;
// `crate::check_dir` is the entry point.
#[doc(hidden)]
pub use engine::lint_files;
pub use engine::{LintedSet, lint_set};
pub use registry::{RULES, rule};
pub use rule::{Example, Rule};

// The engine's interface to the rules: a rule is declared in this crate, never outside.
pub(crate) use context::StatementContext;
pub(crate) use engine::effective_phase;
pub(crate) use rule::{Check, Finding, RuleMemory};
