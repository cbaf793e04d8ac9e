//! Parsing one statement with sqlparser.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

/// Parses one statement with sqlparser. `Err` holds the parser's message.
pub fn parse_statement(sql: &str) -> Result<sqlparser::ast::Statement, String> {
    let mut statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| e.to_string())?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        count => Err(format!("expected one statement, sqlparser found {count}")),
    }
}
