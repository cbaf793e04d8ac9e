//! One query of the application.

use std::fmt;
use std::path::PathBuf;

/// A query the application sends, as it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    /// Where it was read.
    pub origin: QueryOrigin,
    /// The statement, `$1`-style parameters allowed, without its `;`.
    pub text: String,
    /// sqlx's `describe` of its result columns (sqlx offline files only): what a
    /// `query_as!` decodes into.
    pub expected_columns: Option<Vec<ResultColumn>>,
}

/// Where a [`Query`] was read.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryOrigin {
    /// A statement of a `.sql` file.
    SqlFile {
        /// The file.
        path: PathBuf,
        /// 1-based line of its first token.
        line: u32,
    },
    /// A sqlx offline file (`query-<hash>.json`).
    Sqlx {
        /// The file.
        path: PathBuf,
    },
    /// A row of `pg_stat_statements`.
    StatStatements {
        /// Its `queryid`.
        queryid: i64,
    },
}

impl fmt::Display for QueryOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryOrigin::SqlFile { path, line } => write!(f, "{}:{line}", path.display()),
            QueryOrigin::Sqlx { path } => write!(f, "{}", path.display()),
            QueryOrigin::StatStatements { queryid } => {
                write!(f, "pg_stat_statements queryid {queryid}")
            }
        }
    }
}

/// One result column as sqlx's `describe` recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResultColumn {
    /// The column's name in the result.
    pub name: String,
    /// sqlx's type name (`Int8`, `Text`, `TimestamptzArray`), or a custom type's name.
    pub type_name: String,
    /// `Some(false)`: sqlx decodes it as a non-`Option` field; `None`: sqlx did not know.
    pub nullable: Option<bool>,
}

/// Characters of a query shown in messages.
const SHOWN_CHARS: usize = 80;

impl Query {
    /// The query on one line (whitespace runs collapsed), cut to 80 characters with `...`.
    pub fn shortened(&self) -> String {
        let one_line = self.text.split_whitespace().collect::<Vec<_>>().join(" ");
        if one_line.chars().count() <= SHOWN_CHARS {
            one_line
        } else {
            let cut: String = one_line.chars().take(SHOWN_CHARS - 3).collect();
            format!("{cut}...")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_query_is_shortened_to_one_line() {
        let query = Query {
            origin: QueryOrigin::StatStatements { queryid: 1 },
            text: format!(
                "SELECT id,\n       name\n  FROM users WHERE {}",
                "x = 1 AND ".repeat(20)
            ),
            expected_columns: None,
        };
        let shown = query.shortened();
        assert!(shown.starts_with("SELECT id, name FROM users WHERE x = 1"));
        assert_eq!(shown.chars().count(), SHOWN_CHARS);
        assert!(shown.ends_with("..."));
    }
}
