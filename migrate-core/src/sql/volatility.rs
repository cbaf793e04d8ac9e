//! Which functions a default may call without PostgreSQL rewriting the table: the volatility
//! the volatile-default rule and the lock analysis both judge a default by.

use sqlparser::ast::Expr;

use crate::splitter::{TokenKind, tokenize};

/// Functions whose result is fixed for a statement (immutable or stable): a default using only
/// these is evaluated once and stored in the catalog, no rewrite.
/// <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES>
const NON_VOLATILE_FUNCTIONS: &[&str] = &[
    "now",
    "transaction_timestamp",
    "statement_timestamp",
    "current_timestamp",
    "current_date",
    "current_time",
    "localtimestamp",
    "localtime",
    "current_user",
    "current_role",
    "session_user",
    "current_schema",
    "current_database",
    "lower",
    "upper",
    "length",
    "concat",
    "coalesce",
    "nullif",
    "greatest",
    "least",
    "jsonb_build_object",
    "json_build_object",
    "jsonb_build_array",
    "json_build_array",
    "array",
    "to_jsonb",
    "to_json",
    "make_interval",
    "interval",
    "date_trunc",
    "timezone",
    "abs",
    "round",
];

/// Returns the first function called in `expr` that is not known to be non-volatile.
pub fn volatile_function(expr: &Expr) -> Option<String> {
    let text = expr.to_string();
    let tokens = tokenize(&text).ok()?;
    tokens.windows(2).find_map(|pair| {
        let is_call = pair[0].kind == TokenKind::Word && pair[1].text(&text) == "(";
        let name = pair[0].text(&text).to_ascii_lowercase();
        (is_call && !NON_VOLATILE_FUNCTIONS.contains(&name.as_str())).then_some(name)
    })
}
