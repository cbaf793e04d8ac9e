//! Why queries could not be read.

use std::path::PathBuf;

/// A query source that could not be read: nothing was checked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QuerySourceError {
    /// A file or folder could not be read.
    #[error("cannot read the queries in {}: {source}", path.display())]
    Read {
        /// The file or folder.
        path: PathBuf,
        /// The OS's reason.
        #[source]
        source: std::io::Error,
    },
    /// A `.sql` file that does not split into statements (an unterminated string or comment).
    #[error("{}:{line}:{column}: cannot read the queries: {what}", path.display())]
    Lex {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: u32,
        /// 1-based column.
        column: u32,
        /// What is wrong.
        what: &'static str,
    },
    /// A sqlx offline file that is not what `cargo sqlx prepare` writes.
    #[error(
        "{}: not a sqlx offline query file ({reason}); regenerate it with `cargo sqlx prepare`",
        path.display()
    )]
    MalformedSqlx {
        /// The file.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// The path holds no query at all: a wrong path is more likely than an application
    /// without queries.
    #[error(
        "{}: no queries found (expected a .sql file, a folder of .sql files, or a sqlx \
         offline folder of query-<hash>.json files)",
        path.display()
    )]
    NoQueries {
        /// The file or folder.
        path: PathBuf,
    },
    /// `pg_stat_statements` cannot be read on that database.
    #[error(
        "cannot read pg_stat_statements: {reason}; it needs shared_preload_libraries = \
         'pg_stat_statements' and CREATE EXTENSION pg_stat_statements in that database, and a \
         role with pg_read_all_stats to see other roles' queries"
    )]
    NoStatStatements {
        /// What the server said.
        reason: String,
    },
    /// The database could not be read.
    #[cfg(feature = "runtime")]
    #[error("reading pg_stat_statements: {source}")]
    Database {
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
}
