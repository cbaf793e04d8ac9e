//! Queries from `pg_stat_statements`: the normalized statements a database really runs, with
//! how often (<https://www.postgresql.org/docs/15/pgstatstatements.html>).

use std::collections::BTreeMap;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::error::QuerySourceError;
use super::query::{Query, QueryOrigin};

/// One statement of `pg_stat_statements` in the current database, its calls summed over
/// roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementCalls {
    /// `queryid`.
    pub queryid: i64,
    /// The normalized text (`$1` for constants).
    pub text: String,
    /// `calls`, summed over the roles that ran it.
    pub calls: i64,
}

impl StatementCalls {
    /// As a [`Query`] to check.
    pub fn to_query(&self) -> Query {
        Query {
            origin: QueryOrigin::StatStatements {
                queryid: self.queryid,
            },
            text: self.text.clone(),
            expected_columns: None,
        }
    }
}

/// What pg_stat_statements shows in place of the text of another role's query to a role
/// without `pg_read_all_stats`.
const HIDDEN_TEXT: &str = "<insufficient privilege>";

/// One reading of `pg_stat_statements` for the current database: the statements an
/// application sends (SELECT, INSERT, UPDATE, DELETE, MERGE, WITH, VALUES, TABLE), by
/// `queryid`. Utility statements (`SET`, `BEGIN`, DDL) are left out: they are not the
/// application's queries. Reads only; works in a read-only session.
pub async fn read_calls(
    client: &Client,
) -> Result<BTreeMap<i64, StatementCalls>, QuerySourceError> {
    let rows = client
        .query(
            "SELECT queryid, min(query), sum(calls)::int8 FROM pg_stat_statements \
             WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
               AND queryid IS NOT NULL \
             GROUP BY queryid",
            &[],
        )
        .await
        .map_err(|error| match error.as_db_error() {
            // 42P01: the extension is not created here; 55000: it is not preloaded.
            Some(db)
                if *db.code() == SqlState::UNDEFINED_TABLE
                    || *db.code() == SqlState::OBJECT_NOT_IN_PREREQUISITE_STATE =>
            {
                QuerySourceError::NoStatStatements {
                    reason: db.message().to_owned(),
                }
            }
            _ => QuerySourceError::Database { source: error },
        })?;
    let mut calls = BTreeMap::new();
    for row in rows {
        let text: String = row.get(1);
        if text == HIDDEN_TEXT {
            return Err(QuerySourceError::NoStatStatements {
                reason: "the texts of other roles' queries are hidden from this role".to_owned(),
            });
        }
        if !is_application_query(&text) {
            continue;
        }
        let queryid: i64 = row.get(0);
        calls.insert(
            queryid,
            StatementCalls {
                queryid,
                text,
                calls: row.get(2),
            },
        );
    }
    Ok(calls)
}

/// The statements whose calls grew from `before` to `after` (new ones included), with the
/// calls made in between.
pub fn called_between(
    before: &BTreeMap<i64, StatementCalls>,
    after: &BTreeMap<i64, StatementCalls>,
) -> Vec<StatementCalls> {
    after
        .values()
        .filter_map(|now| {
            let earlier = before.get(&now.queryid).map_or(0, |b| b.calls);
            // pg_stat_statements_reset() in between makes calls smaller: count what we see.
            let grew = if now.calls >= earlier {
                now.calls - earlier
            } else {
                now.calls
            };
            (grew > 0).then(|| StatementCalls {
                calls: grew,
                ..now.clone()
            })
        })
        .collect()
}

fn is_application_query(text: &str) -> bool {
    let first = text
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    matches!(
        first.as_str(),
        "select" | "insert" | "update" | "delete" | "merge" | "with" | "values" | "table"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(queryid: i64, calls: i64) -> StatementCalls {
        StatementCalls {
            queryid,
            text: format!("SELECT {queryid}"),
            calls,
        }
    }

    #[test]
    fn only_statements_called_in_between_are_kept() {
        let before = BTreeMap::from([(1, entry(1, 10)), (2, entry(2, 5))]);
        let after = BTreeMap::from([(1, entry(1, 10)), (2, entry(2, 8)), (3, entry(3, 2))]);
        let called = called_between(&before, &after);
        assert_eq!(called, vec![entry(2, 3), entry(3, 2)]);
    }

    #[test]
    fn utility_statements_are_not_application_queries() {
        assert!(is_application_query("  (SELECT 1)"));
        assert!(is_application_query("with x as (select 1) select * from x"));
        assert!(!is_application_query("SET application_name = $1"));
        assert!(!is_application_query("BEGIN"));
        assert!(!is_application_query("ALTER TABLE t ADD COLUMN c int"));
    }
}
