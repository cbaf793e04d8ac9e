//! Preparing a query on a database and reading what `PREPARE` does not see.

use std::fmt;

use sqlparser::ast::{SetExpr, Statement, TableObject};
use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::query::{Query, ResultColumn};
use crate::sql::{parse_statement, table_key};

/// Why a query would fail on the schema it was checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QueryProblem {
    /// PostgreSQL refuses to prepare it.
    DoesNotPrepare {
        /// The SQLSTATE (`42703` undefined column, `42702` ambiguous, ...).
        code: String,
        /// PostgreSQL's message.
        message: String,
    },
    /// An `INSERT` that leaves out a `NOT NULL` column without a default: it prepares, and
    /// fails with 23502 on every row.
    InsertOmitsNotNull {
        /// The table, as PostgreSQL names it.
        table: String,
        /// The column.
        column: String,
    },
    /// A result column no longer matches sqlx's `describe`: a `query_as!` built against it
    /// fails to decode (or meets a NULL in a non-`Option` field).
    ResultColumnChanged {
        /// Position in the result, from 0.
        ordinal: usize,
        /// What sqlx's `describe` recorded.
        expected: ResultColumn,
        /// What PostgreSQL describes now; `None` when the result has fewer columns.
        found: Option<ResultColumn>,
    },
}

impl QueryProblem {
    /// The SQLSTATE PostgreSQL answers (23502 for an omitted `NOT NULL` column); `None` for a
    /// changed result column, which fails in the client.
    pub fn code(&self) -> Option<&str> {
        match self {
            QueryProblem::DoesNotPrepare { code, .. } => Some(code),
            QueryProblem::InsertOmitsNotNull { .. } => Some("23502"),
            QueryProblem::ResultColumnChanged { .. } => None,
        }
    }
}

impl fmt::Display for QueryProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QueryProblem::DoesNotPrepare { code, message } => {
                write!(f, "ERROR {code}: {message}")
            }
            QueryProblem::InsertOmitsNotNull { table, column } => write!(
                f,
                "the INSERT leaves out column {column} of {table}, which is NOT NULL without a \
                 default: every row fails with 23502"
            ),
            QueryProblem::ResultColumnChanged {
                ordinal,
                expected,
                found,
            } => {
                let nullability = |nullable: Option<bool>| match nullable {
                    Some(false) => "NOT NULL",
                    Some(true) => "nullable",
                    None => "nullability unknown",
                };
                write!(
                    f,
                    "result column {ordinal} was {} {} ({}) in sqlx's describe, ",
                    expected.name,
                    expected.type_name,
                    nullability(expected.nullable)
                )?;
                match found {
                    Some(found) => write!(
                        f,
                        "is now {} {} ({}): a query_as! decoding it fails; run `cargo sqlx \
                         prepare` and fix the struct",
                        found.name,
                        found.type_name,
                        nullability(found.nullable)
                    ),
                    None => write!(f, "is now missing"),
                }
            }
        }
    }
}

/// Checks `query` against the schema `client` sees: prepares it inside a transaction that
/// is rolled back (nothing runs, nothing stays), then reads the catalog for what the
/// prepared statement does not tell. An empty list: the query works there.
///
/// `Err` is a failure to talk to the server, not a problem of the query.
pub async fn check_query(
    client: &Client,
    query: &Query,
) -> Result<Vec<QueryProblem>, tokio_postgres::Error> {
    client.batch_execute("BEGIN").await?;
    let checked = check_in_transaction(client, query).await;
    let rollback = client.batch_execute("ROLLBACK").await;
    let problems = checked?;
    rollback?;
    Ok(problems)
}

async fn check_in_transaction(
    client: &Client,
    query: &Query,
) -> Result<Vec<QueryProblem>, tokio_postgres::Error> {
    let statement = match client.prepare(&query.text).await {
        Ok(statement) => statement,
        Err(error) => {
            let Some(db) = error.as_db_error() else {
                return Err(error);
            };
            return Ok(vec![QueryProblem::DoesNotPrepare {
                code: db.code().code().to_owned(),
                message: db.message().to_owned(),
            }]);
        }
    };
    let mut problems = omitted_not_null_columns(client, &query.text).await?;
    if let Some(expected) = &query.expected_columns {
        let mut found = Vec::new();
        for column in statement.columns() {
            let nullable = match (column.table_oid(), column.column_id()) {
                (Some(table), Some(attnum)) if table != 0 && attnum > 0 => {
                    let row = client
                        .query_opt(
                            "SELECT NOT attnotnull FROM pg_attribute \
                             WHERE attrelid = $1 AND attnum = $2",
                            &[&table, &attnum],
                        )
                        .await?;
                    row.map(|row| row.get::<_, bool>(0))
                }
                _ => None,
            };
            found.push(ResultColumn {
                name: column.name().to_owned(),
                type_name: sqlx_type_name(column.type_()),
                nullable,
            });
        }
        problems.extend(changed_columns(expected, &found));
    }
    Ok(problems)
}

/// sqlx's name of a PostgreSQL type (`PgTypeInfo`'s variant names): `int8` is `Int8`,
/// `_timestamptz` is `TimestamptzArray`; other types keep their own name.
fn sqlx_type_name(pg: &Type) -> String {
    let capitalised = |name: &str| {
        let mut chars = name.chars();
        chars.next().map_or(String::new(), |first| {
            first.to_uppercase().chain(chars).collect()
        })
    };
    if pg.oid() >= 10_000 {
        // A user-defined type: sqlx records its name.
        return pg.name().to_owned();
    }
    match pg.name().strip_prefix('_') {
        Some(element) => format!("{}Array", capitalised(element)),
        None => capitalised(pg.name()),
    }
}

/// The differences that break a decoder built from `expected`: a renamed or missing column,
/// another type, a column sqlx knew to be `NOT NULL` that may now be NULL.
fn changed_columns(expected: &[ResultColumn], found: &[ResultColumn]) -> Vec<QueryProblem> {
    expected
        .iter()
        .enumerate()
        .filter_map(|(ordinal, expected)| {
            let now = found.get(ordinal);
            let changed = match now {
                None => true,
                Some(now) => {
                    now.name != expected.name
                        || !now.type_name.eq_ignore_ascii_case(&expected.type_name)
                        || (expected.nullable == Some(false) && now.nullable == Some(true))
                }
            };
            changed.then(|| QueryProblem::ResultColumnChanged {
                ordinal,
                expected: expected.clone(),
                found: now.cloned(),
            })
        })
        .collect()
}

/// The `NOT NULL` columns without a default (nor identity, nor generated) an `INSERT` leaves
/// out. PostgreSQL accepts such an `INSERT` at `PREPARE` and fails every execution.
async fn omitted_not_null_columns(
    client: &Client,
    sql: &str,
) -> Result<Vec<QueryProblem>, tokio_postgres::Error> {
    let Ok(Statement::Insert(insert)) = parse_statement(sql) else {
        return Ok(Vec::new());
    };
    let TableObject::TableName(table) = &insert.table else {
        return Ok(Vec::new());
    };
    let listed: Option<Vec<String>> = if insert.columns.is_empty() {
        None
    } else {
        Some(insert.columns.iter().map(table_key).collect())
    };
    // Without a column list, `VALUES` with n items fills the first n columns.
    let values_width = match insert.source.as_deref().map(|query| query.body.as_ref()) {
        Some(SetExpr::Values(values)) => values.rows.iter().map(|row| row.len()).max(),
        None => Some(0),
        Some(_) => None,
    };
    if listed.is_none() && values_width.is_none() {
        // INSERT ... SELECT without a list: PREPARE already matched the widths.
        return Ok(Vec::new());
    }
    let rows = client
        .query(
            "SELECT a.attrelid::regclass::text, a.attname::text, a.attnum::int4, \
                    NOT a.attnotnull OR a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' \
             FROM pg_attribute a \
             WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT a.attisdropped \
             ORDER BY a.attnum",
            &[&table.to_string()],
        )
        .await?;
    let mut problems = Vec::new();
    for (position, row) in rows.iter().enumerate() {
        let (table, column, may_be_left_out): (String, String, bool) =
            (row.get(0), row.get(1), row.get(3));
        if may_be_left_out {
            continue;
        }
        let given = match (&listed, values_width) {
            (Some(listed), _) => listed.contains(&column),
            (None, Some(width)) => position < width,
            (None, None) => true,
        };
        if !given {
            problems.push(QueryProblem::InsertOmitsNotNull { table, column });
        }
    }
    Ok(problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlx_names_types_by_capitalised_variant() {
        assert_eq!(sqlx_type_name(&Type::INT8), "Int8");
        assert_eq!(sqlx_type_name(&Type::TIMESTAMPTZ_ARRAY), "TimestamptzArray");
        assert_eq!(sqlx_type_name(&Type::BPCHAR), "Bpchar");
    }

    #[test]
    fn a_column_that_may_now_be_null_is_a_change_but_the_reverse_is_not() {
        let column = |nullable| ResultColumn {
            name: "email".into(),
            type_name: "Text".into(),
            nullable,
        };
        assert_eq!(
            changed_columns(&[column(Some(false))], &[column(Some(true))]).len(),
            1
        );
        assert!(changed_columns(&[column(Some(true))], &[column(Some(false))]).is_empty());
        assert!(changed_columns(&[column(None)], &[column(Some(true))]).is_empty());
        assert_eq!(changed_columns(&[column(None)], &[]).len(), 1);
    }
}
