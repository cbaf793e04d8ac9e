//! Reading one SQL statement, shared by every pass that needs more than tokens: parsing with
//! sqlparser, folding identifiers and table names the way PostgreSQL does, and telling which
//! functions are volatile.
//!
//! It sits beneath the passes that use it (the lock analysis, the batch planner, the lint
//! rules), so those never import each other; it builds only on the splitter and the
//! classifier (a test checks the layers, see the crate docs).

mod names;
mod parse;
mod statement;
mod type_change;
mod volatility;

pub use names::{ident_key, table_key, table_key_is, table_key_of};
pub use parse::{parse_statement, parse_statement_of};
pub use statement::{
    ActionKind, ReadStatement, Skipped, SplitAlter, UnparsedAction, alter_table_action_starts,
    read_statement,
};
pub use type_change::rewrite_free_change;
pub use volatility::volatile_function;
