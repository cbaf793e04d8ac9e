//! The runtime's own tables, one module each, named after the history table: everything the
//! runtime remembers between runs. Gates, the executor, the backfill runner and the CLI read
//! and write them only through these types; no SQL on them lives elsewhere.
//!
//! | table | module | what it remembers |
//! | --- | --- | --- |
//! | `<history>` (default `public.schema_migrations`) | [`history`] | applied migrations, checksums |
//! | `<history>_backfill` | [`backfill_progress`] | each backfill statement's cursor, rows done, verification |
//! | `<history>_partial` | [`partial`] | how far an unfinished autocommit migration got |
//! | `<history>_flags` | [`flags`] | dual-write flags |
//! | `<history>_reconcile` | [`reconcile_queue`] | keys whose modern write failed, for `migrate reconcile` |
//! | `<history>_compare` | [`compare_progress`] | each compare's cursor, differences found, when it last passed |

pub mod backfill_progress;
pub mod compare_progress;
pub mod flags;
pub mod history;
pub mod partial;
pub mod reconcile_queue;

use tokio_postgres::error::SqlState;

use crate::runtime::error::RuntimeError;

/// Makes a state table ready: `create` (its `CREATE TABLE IF NOT EXISTS`, with every column)
/// when the table `quoted` is missing, then the `later_columns` (`name type, ...`) a table
/// made by an earlier release lacks. Every state table but the history (which also creates
/// its schema) is made here; `creating` and the second part of `later_columns` name the work
/// in errors.
pub(crate) async fn ensure_table(
    client: &impl tokio_postgres::GenericClient,
    quoted: &str,
    create: &str,
    creating: &'static str,
    later_columns: Option<(&str, &'static str)>,
) -> Result<(), RuntimeError> {
    create_table_if_missing(client, quoted, create, creating).await?;
    match later_columns {
        Some((columns, adding)) => add_later_columns(client, quoted, columns, adding).await,
        None => Ok(()),
    }
}

/// A state table read before any run created it.
pub(crate) fn missing_table(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNDEFINED_TABLE)
}

/// Runs `create` (a `CREATE TABLE IF NOT EXISTS` of the table `quoted`) only when the table
/// is missing. Looked up first because on an existing table the server answers `IF NOT
/// EXISTS` with a NOTICE ("relation ... already exists, skipping"), which drivers log at
/// info: every run would log one per state table. The migrations' own notices are theirs
/// and still reach the log. Two sessions creating it at once: `IF NOT EXISTS` does not
/// cover the race on the catalog's unique index, and the other session's table is just as
/// good.
async fn create_table_if_missing(
    client: &impl tokio_postgres::GenericClient,
    quoted: &str,
    create: &str,
    action: &'static str,
) -> Result<(), RuntimeError> {
    let exists: bool = client
        .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted])
        .await
        .map_err(RuntimeError::database(action))?
        .get(0);
    if exists {
        return Ok(());
    }
    match client.batch_execute(create).await {
        Ok(()) => Ok(()),
        Err(error)
            if error.code() == Some(&SqlState::UNIQUE_VIOLATION)
                || error.code() == Some(&SqlState::DUPLICATE_TABLE) =>
        {
            Ok(())
        }
        Err(error) => Err(RuntimeError::database(action)(error)),
    }
}

/// Adds to the table `quoted` (made by an earlier release) those of `columns` (`name type,
/// name type, ...`) it lacks. Checked first: `ALTER TABLE` takes an ACCESS EXCLUSIVE lock
/// even when it has nothing to add, and the usual table has them all.
async fn add_later_columns(
    client: &impl tokio_postgres::GenericClient,
    quoted: &str,
    columns: &str,
    action: &'static str,
) -> Result<(), RuntimeError> {
    let names: Vec<&str> = columns
        .split(", ")
        .filter_map(|column| column.split_whitespace().next())
        .collect();
    let present: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_attribute WHERE attrelid = to_regclass($1) \
             AND attname = ANY($2) AND NOT attisdropped",
            &[&quoted, &names],
        )
        .await
        .map_err(RuntimeError::database(action))?
        .get(0);
    if usize::try_from(present).is_ok_and(|present| present == names.len()) {
        return Ok(());
    }
    let add: Vec<String> = columns
        .split(", ")
        .map(|column| format!("ADD COLUMN IF NOT EXISTS {column}"))
        .collect();
    client
        .batch_execute(&format!("ALTER TABLE {quoted} {}", add.join(", ")))
        .await
        .map_err(RuntimeError::database(action))
}
