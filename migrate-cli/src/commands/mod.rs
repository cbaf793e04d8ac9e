//! One module per subcommand.

pub mod apply;
pub mod backfill;
pub mod check;
pub mod explain;
pub mod flag;
pub mod lint;
pub mod new;
pub mod plan;
pub mod repair;
pub mod status;
