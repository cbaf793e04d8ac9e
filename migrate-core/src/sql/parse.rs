//! Parsing one statement with sqlparser.

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::classify::Words;
use crate::splitter::{self, TokenKind};

/// The deepest expression [`parse_statement`] hands to sqlparser, as counted by
/// [`nesting_bound`]. Far above real statements (a thousand operators chained in one
/// expression), far below the depth whose tree overflows a 2 MiB thread stack (tokio's
/// workers, test threads) when dropped or walked: about 5,000 levels in a debug build.
const MAX_EXPRESSION_DEPTH: usize = 1000;

/// Parses one statement with sqlparser. `Err` holds the parser's message, or says the
/// statement's expressions nest deeper than 1,000 levels (see `nesting_bound`): such a tree
/// overflows the stack when dropped or walked.
pub fn parse_statement(sql: &str) -> Result<sqlparser::ast::Statement, String> {
    match splitter::tokenize(sql) {
        Ok(tokens) => parse_statement_of(sql, &Words::new(sql, &tokens)),
        // It does not lex: sqlparser reports the error itself.
        Err(_) => parse_within_depth(sql, None),
    }
}

/// [`parse_statement`] of a statement already split into `words` (its tokens, which are not
/// read again).
pub fn parse_statement_of(
    sql: &str,
    words: &Words<'_>,
) -> Result<sqlparser::ast::Statement, String> {
    let source = words.source();
    let depth = nesting_bound(words.iter().map(|t| (t.kind, t.text(source))));
    parse_within_depth(sql, Some(depth))
}

/// `depth` is [`nesting_bound`]'s, `None` when the statement does not lex (sqlparser then
/// reports the error itself).
fn parse_within_depth(
    sql: &str,
    depth: Option<usize>,
) -> Result<sqlparser::ast::Statement, String> {
    if let Some(depth) = depth.filter(|&depth| depth > MAX_EXPRESSION_DEPTH) {
        return Err(format!(
            "its expressions nest about {depth} levels deep, more than the {MAX_EXPRESSION_DEPTH} \
             the linter reads"
        ));
    }
    let mut statements =
        Parser::parse_sql(&PostgreSqlDialect {}, sql).map_err(|e| e.to_string())?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        count => Err(format!("expected one statement, sqlparser found {count}")),
    }
}

/// An upper bound of how deep sqlparser's tree of a statement of these tokens (kind and
/// text) would be.
///
/// sqlparser bounds its own recursion, but builds a chain of infix operators (`a - b - c`,
/// `x AND y AND z`, `v::int::text`) in a loop, one level deeper per operator, and dropping or
/// walking that tree recurses once per level: `SELECT 1-1-...-1` with 100,000 terms overflowed
/// the main thread's stack. So: the operators of one comma-separated item, plus those of the
/// items it sits in, one level per bracket.
fn nesting_bound<'t>(tokens: impl Iterator<Item = (TokenKind, &'t str)>) -> usize {
    // Per open bracket: the depth it starts at, and the operators seen in its current item.
    let mut levels: Vec<(usize, usize)> = vec![(0, 0)];
    let mut deepest = 0;
    for token in tokens {
        let Some(&(base, operators)) = levels.last() else {
            break;
        };
        match token {
            (TokenKind::Punct, "(" | "[") => levels.push((base + operators + 1, 0)),
            (TokenKind::Punct, ")" | "]") if levels.len() > 1 => {
                levels.pop();
            }
            (TokenKind::Punct, ",") | (TokenKind::Semicolon, _) => {
                if let Some(level) = levels.last_mut() {
                    level.1 = 0;
                }
            }
            (TokenKind::Punct, _) => {
                if let Some(level) = levels.last_mut() {
                    level.1 += 1;
                }
            }
            (TokenKind::Word, word) if INFIX_WORDS.iter().any(|w| word.eq_ignore_ascii_case(w)) => {
                if let Some(level) = levels.last_mut() {
                    level.1 += 1;
                }
            }
            _ => {}
        }
        let (base, operators) = levels.last().copied().unwrap_or_default();
        deepest = deepest.max(base + operators);
    }
    deepest
}

/// Keywords sqlparser reads as infix operators, each nesting the tree one level.
const INFIX_WORDS: &[&str] = &[
    "and", "or", "xor", "is", "not", "like", "ilike", "similar", "between", "in", "collate", "at",
    "overlaps", "operator", "isnull", "notnull",
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_counts_operators_per_item_and_brackets() {
        let nesting_bound = |sql: &str| {
            let tokens = splitter::tokenize(sql).ok()?;
            Some(super::nesting_bound(
                tokens.iter().map(|t| (t.kind, t.text(sql))),
            ))
        };
        assert_eq!(nesting_bound("SELECT 1"), Some(0));
        assert_eq!(nesting_bound("SELECT a - b AND c"), Some(2));
        // Commas end an item: a long VALUES list or IN list is flat.
        assert_eq!(
            nesting_bound("INSERT INTO t VALUES (-1), (-2), (-3)"),
            Some(2)
        );
        assert_eq!(nesting_bound("SELECT a IN (1, 2, 3)"), Some(2));
        assert_eq!(nesting_bound("SELECT ((a))"), Some(2));
        assert_eq!(nesting_bound("SELECT 'open"), None);
    }

    #[test]
    fn statements_nesting_too_deep_are_refused_before_sqlparser() {
        // Each of these overflowed a thread's stack when the tree was dropped or walked.
        for (statement, separator) in [
            ("SELECT {}", "-"),
            ("UPDATE t SET a = 1 WHERE {}", " AND "),
            (
                "ALTER TABLE t ADD CONSTRAINT c CHECK ({}) NOT VALID",
                " || ",
            ),
        ] {
            let chain = vec!["a"; 100_000].join(separator);
            let sql = statement.replace("{}", &chain);
            let error = parse_statement(&sql).unwrap_err();
            assert!(
                error.contains("more than the 1000 the linter reads"),
                "{error}"
            );
            // The linter's path, from the tokens the splitter already made.
            let tokens = splitter::tokenize(&sql).unwrap();
            let error = parse_statement_of(&sql, &Words::new(&sql, &tokens)).unwrap_err();
            assert!(
                error.contains("more than the 1000 the linter reads"),
                "{error}"
            );
        }
        let chain = vec!["a"; 500].join(" - ");
        assert!(parse_statement(&format!("SELECT {chain}")).is_ok());
        let values = vec!["(-1, 'x' || 'y')"; 100_000].join(", ");
        assert!(parse_statement(&format!("INSERT INTO t (a, b) VALUES {values}")).is_ok());
    }
}
