//! One module per subcommand.

pub mod apply;
pub mod backfill;
pub mod baseline;
#[cfg(feature = "check")]
pub mod check;
pub mod compare;
pub mod explain;
pub mod flag;
pub mod fleet;
pub mod import;
pub mod lint;
pub mod new;
pub mod plan;
pub mod reconcile;
pub mod repair;
#[cfg(feature = "check")]
pub mod squash;
pub mod status;
