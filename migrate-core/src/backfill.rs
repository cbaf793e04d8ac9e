//! Turning a backfill file's `UPDATE` into keyed batches.
//!
//! PostgreSQL has no `UPDATE ... LIMIT`. A backfill statement
//! `UPDATE t SET c = <expr> WHERE <pending>` with `-- migrate:backfill table=t key=id` runs as
//! repeated short transactions of
//!
//! ```sql
//! WITH migrate_batch(migrate_key) AS (
//!     SELECT "id" FROM "t"
//!     WHERE ($1::text IS NULL OR "id" > $1::text::<key type>)
//!       AND ($3::text IS NULL OR "id" <= $3::text::<key type>) AND (<pending>)
//!     ORDER BY "id" LIMIT $2
//!     FOR UPDATE SKIP LOCKED),
//! migrate_updated AS (
//!     UPDATE "t" SET c = <expr> FROM migrate_batch
//!     WHERE "t"."id" = migrate_batch.migrate_key AND (<pending>)
//!     RETURNING (<pending>) AS migrate_still_pending)
//! SELECT (SELECT count(*) FROM migrate_updated),
//!        (SELECT migrate_key::text FROM migrate_batch ORDER BY migrate_batch.migrate_key DESC LIMIT 1),
//!        (SELECT count(*) FROM migrate_updated WHERE migrate_still_pending IS TRUE)
//! ```
//!
//! It returns the rows updated, the batch's last key (NULL once nothing is left) and how many
//! of the rows it just updated still match `<pending>` (RETURNING sees the new values): a SET
//! that does not falsify its WHERE would match those rows forever, and the runner stops at
//! once instead of sweeping them again and again. The cursor travels as text and is cast to
//! the key column's type, so any ordered key type works (`uuid` too: the last key is taken by
//! `ORDER BY ... DESC LIMIT 1`, as `max()` does not exist for every type). `$3` is the
//! pass's upper bound, the largest key when the pass started ([`BatchedUpdate::upper_bound_sql`]):
//! rows inserted after that are left to the next sweep, so a writer inserting faster than
//! the batches cannot keep a pass running forever. The CTE's only column is `migrate_key`,
//! so unqualified names in the user's SET and WHERE still resolve to the target table.
//! `<pending>` is repeated in the UPDATE so a row changed between the SELECT and the UPDATE
//! is not overwritten, and it is what makes the backfill idempotent: rows already done no
//! longer match. `SKIP LOCKED` keeps a batch from queueing behind the application's row
//! locks; skipped rows are caught by the final sweeps, which use [`BatchedUpdate::sweep_sql`]:
//! the same statement waiting for row locks (bounded by `lock_timeout`).

use sqlparser::ast::{Statement, TableFactor};

use crate::lint::context::{table_key, table_key_of};
use crate::migration::BackfillSpec;

/// A backfill statement rewritten for batching.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchedUpdate {
    /// `$1`: the last key done, as text, or NULL for the first batch; `$2`: the batch size;
    /// `$3`: the largest key the pass covers, as text, or NULL for no bound. Returns one row:
    /// rows updated (bigint), the batch's last key (text, NULL when the batch was empty) and
    /// rows updated that still match the WHERE (bigint; non-zero means the SET does not
    /// falsify the WHERE).
    pub batch_sql: String,
    /// [`BatchedUpdate::batch_sql`] without `SKIP LOCKED`, for the final sweeps.
    pub sweep_sql: String,
    /// The table's largest key, as text (NULL for an empty table): a pass's upper bound.
    pub upper_bound_sql: String,
    /// Counts the rows still pending: zero when the backfill is complete.
    pub remaining_sql: String,
    /// `SELECT 1 FROM <table> WHERE (<pending>)`: the pending rows, for bounded counts.
    pub pending_rows_sql: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackfillPlanError {
    #[error("a backfill statement must be a single-table UPDATE ... SET ... WHERE ...: {0}")]
    NotAnUpdate(String),
    #[error(
        "the backfill UPDATE needs a WHERE that excludes rows already done (it makes batches idempotent and resumable)"
    )]
    MissingWhere,
    #[error("the UPDATE targets \"{found}\" but the backfill directive names table={expected}")]
    TableMismatch { expected: String, found: String },
    #[error("UPDATE ... FROM and RETURNING are not supported in a backfill statement")]
    Unsupported,
}

/// Returns the key column's type as PostgreSQL spells it (`format_type`), which
/// [`plan`] casts the cursor to.
pub fn key_type_sql(spec: &BackfillSpec) -> String {
    format!(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a \
WHERE a.attrelid = '{}'::regclass AND a.attname = '{}' AND NOT a.attisdropped",
        quote_qualified(&spec.table).replace('\'', "''"),
        spec.key.replace('\'', "''")
    )
}

/// Plans the batches of one backfill statement. `key_type` is the key column's type, e.g.
/// `bigint`, read from the catalog at run time (see [`key_type_sql`]).
pub fn plan(
    sql: &str,
    spec: &BackfillSpec,
    key_type: &str,
) -> Result<BatchedUpdate, BackfillPlanError> {
    let statement = crate::lint::parse_statement(sql).map_err(BackfillPlanError::NotAnUpdate)?;
    plan_parsed(&statement, sql, spec, key_type)
}

/// [`plan`] for a statement already parsed from `sql`.
pub fn plan_parsed(
    statement: &Statement,
    sql: &str,
    spec: &BackfillSpec,
    key_type: &str,
) -> Result<BatchedUpdate, BackfillPlanError> {
    let Statement::Update(update) = statement else {
        return Err(BackfillPlanError::NotAnUpdate(first_words(sql)));
    };
    if update.from.is_some() || update.returning.is_some() || !update.table.joins.is_empty() {
        return Err(BackfillPlanError::Unsupported);
    }
    let TableFactor::Table { name, .. } = &update.table.relation else {
        return Err(BackfillPlanError::NotAnUpdate(first_words(sql)));
    };
    let directive_table = table_key_of(&spec.table);
    if table_key(name) != directive_table {
        return Err(BackfillPlanError::TableMismatch {
            expected: spec.table.to_string(),
            found: name.to_string(),
        });
    }
    let pending = update
        .selection
        .as_ref()
        .ok_or(BackfillPlanError::MissingWhere)?;
    let assignments: Vec<String> = update.assignments.iter().map(ToString::to_string).collect();
    let table = quote_qualified(&spec.table);
    let key = quote_identifier(&spec.key);
    let batch = |locking: &str| {
        format!(
            "WITH migrate_batch(migrate_key) AS (SELECT {key} FROM {table} \
WHERE ($1::text IS NULL OR {key} > $1::text::{key_type}) \
AND ($3::text IS NULL OR {key} <= $3::text::{key_type}) AND ({pending}) \
ORDER BY {key} LIMIT $2 {locking}), \
migrate_updated AS (UPDATE {table} SET {assignments} FROM migrate_batch \
WHERE {table}.{key} = migrate_batch.migrate_key AND ({pending}) \
RETURNING ({pending}) AS migrate_still_pending) \
SELECT (SELECT count(*) FROM migrate_updated), \
(SELECT migrate_key::text FROM migrate_batch ORDER BY migrate_batch.migrate_key DESC LIMIT 1), \
(SELECT count(*) FROM migrate_updated WHERE migrate_still_pending IS TRUE)",
            assignments = assignments.join(", ")
        )
    };
    Ok(BatchedUpdate {
        batch_sql: batch("FOR UPDATE SKIP LOCKED"),
        sweep_sql: batch("FOR UPDATE"),
        // Qualified, so ORDER BY sorts the key, not the text output column of the same name.
        upper_bound_sql: format!(
            "SELECT {table}.{key}::text FROM {table} ORDER BY {table}.{key} DESC LIMIT 1"
        ),
        remaining_sql: format!("SELECT count(*) FROM {table} WHERE ({pending})"),
        pending_rows_sql: format!("SELECT 1 FROM {table} WHERE ({pending})"),
    })
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

/// `"name"`, doubling embedded quotes. Directive identifiers are validated as plain
/// identifiers already; quoting keeps them exact (PostgreSQL folds unquoted names to lower
/// case, so a directive `table=Users` means the table created as `Users` with quotes).
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_qualified(name: &str) -> String {
    name.split('.')
        .map(quote_identifier)
        .collect::<Vec<_>>()
        .join(".")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn spec(table: &'static str, key: &'static str) -> BackfillSpec {
        BackfillSpec {
            table: Cow::Borrowed(table),
            key: Cow::Borrowed(key),
            batch_size: 100,
            delay_ms: 0,
        }
    }

    #[test]
    fn rewrites_an_update_into_a_keyed_batch() {
        let plan = plan(
            "UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL",
            &spec("users", "id"),
            "bigint",
        )
        .unwrap();
        assert_eq!(
            plan.batch_sql,
            "WITH migrate_batch(migrate_key) AS (SELECT \"id\" FROM \"users\" WHERE ($1::text IS NULL OR \"id\" > $1::text::bigint) \
AND ($3::text IS NULL OR \"id\" <= $3::text::bigint) \
AND (email_normalized IS NULL) ORDER BY \"id\" LIMIT $2 FOR UPDATE SKIP LOCKED), migrate_updated AS (UPDATE \"users\" \
SET email_normalized = lower(email) FROM migrate_batch WHERE \"users\".\"id\" = migrate_batch.migrate_key \
AND (email_normalized IS NULL) RETURNING (email_normalized IS NULL) AS migrate_still_pending) \
SELECT (SELECT count(*) FROM migrate_updated), \
(SELECT migrate_key::text FROM migrate_batch ORDER BY migrate_batch.migrate_key DESC LIMIT 1), \
(SELECT count(*) FROM migrate_updated WHERE migrate_still_pending IS TRUE)"
        );
        assert_eq!(
            plan.upper_bound_sql,
            "SELECT \"users\".\"id\"::text FROM \"users\" ORDER BY \"users\".\"id\" DESC LIMIT 1"
        );
        assert!(plan.sweep_sql.contains("LIMIT $2 FOR UPDATE)"));
        assert_eq!(
            plan.remaining_sql,
            "SELECT count(*) FROM \"users\" WHERE (email_normalized IS NULL)"
        );
    }

    #[test]
    fn refuses_what_cannot_be_batched() {
        let s = spec("users", "id");
        assert_eq!(
            plan("UPDATE users SET a = 1", &s, "bigint"),
            Err(BackfillPlanError::MissingWhere)
        );
        assert!(matches!(
            plan("DELETE FROM users WHERE a", &s, "bigint"),
            Err(BackfillPlanError::NotAnUpdate(_))
        ));
        assert!(matches!(
            plan("UPDATE orders SET a = 1 WHERE a IS NULL", &s, "bigint"),
            Err(BackfillPlanError::TableMismatch { .. })
        ));
        assert_eq!(
            plan(
                "UPDATE users SET a = o.a FROM orders o WHERE a IS NULL",
                &s,
                "bigint"
            ),
            Err(BackfillPlanError::Unsupported)
        );
    }
}
