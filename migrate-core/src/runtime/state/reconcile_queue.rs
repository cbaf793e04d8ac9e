//! `<history table>_reconcile`: keys whose modern write failed during a dual write, waiting
//! for `migrate reconcile` to re-derive them from the legacy side.
//!
//! ```sql
//! CREATE TABLE "public"."schema_migrations_reconcile" (
//!     id        bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
//!     version   bigint NOT NULL,  -- the backfill migration whose compare maps legacy to modern
//!     key       text NOT NULL,
//!     flag      text NOT NULL,
//!     error     text,
//!     queued_at timestamptz NOT NULL DEFAULT now(),
//!     failed_at timestamptz,  -- set by reconcile when the key cannot be replayed
//!     failure   text          -- why: the key does not parse for the key's type, ...
//! )
//! ```
//!
//! Append-only on the application's side: an insert takes no lock another session holds (no
//! unique key to wait on), so queueing never waits behind `migrate reconcile`, which takes
//! its batches with `FOR UPDATE SKIP LOCKED` and deletes exactly the rows it replayed. A key
//! queued twice is replayed once per batch. A key reconcile cannot replay (its text is not
//! a value of the key's type, its re-derived row breaks a constraint) is marked failed and
//! kept, out of the way of the others: never retried, reported until someone deletes it.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::history::TableName;
use super::missing_table;
use crate::runtime::error::RuntimeError;

/// The table's validated, quoted name and its statements.
#[derive(Debug, Clone)]
pub struct ReconcileQueue {
    quoted: String,
    insert: String,
}

/// One queued key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueuedKey {
    pub id: i64,
    pub key: String,
}

/// A queued key `migrate reconcile` could not replay, kept in the queue and not retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreplayableKey {
    /// The backfill migration whose mapping was to re-derive it.
    pub version: u64,
    /// The key as queued.
    pub key: String,
    /// Why it could not be replayed.
    pub failure: String,
}

/// Columns added after the table's first version, added to an older table by `ensure`.
const LATER_COLUMNS: &str = "failed_at timestamptz, failure text";

fn missing_column(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNDEFINED_COLUMN)
}

impl ReconcileQueue {
    /// `<history>_reconcile` beside the history table.
    pub fn for_history(history: &TableName) -> Result<ReconcileQueue, RuntimeError> {
        let name = history.sibling(
            "_reconcile",
            "reconcile queue table name (history table name + \"_reconcile\")",
        )?;
        let quoted = name.quoted();
        Ok(ReconcileQueue {
            insert: format!(
                "INSERT INTO {quoted} (version, key, flag, error) VALUES ($1, $2, $3, $4)"
            ),
            quoted,
        })
    }

    /// The quoted name.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }

    /// The insert of one key: `$1` version, `$2` key, `$3` flag, `$4` error.
    pub(crate) fn insert_sql(&self) -> &str {
        &self.insert
    }

    /// `CREATE TABLE IF NOT EXISTS` of the queue, with every column.
    pub(crate) fn create_sql(&self) -> String {
        format!(
            "CREATE TABLE IF NOT EXISTS {} (\
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                version bigint NOT NULL, \
                key text NOT NULL, \
                flag text NOT NULL, \
                error text, \
                queued_at timestamptz NOT NULL DEFAULT now(), \
                {LATER_COLUMNS})",
            self.quoted
        )
    }

    /// Creates the table if missing.
    pub async fn ensure(&self, client: &impl GenericClient) -> Result<(), RuntimeError> {
        super::ensure_table(
            client,
            &self.quoted,
            &self.create_sql(),
            "creating the reconcile queue",
            Some((LATER_COLUMNS, "adding columns to the reconcile queue")),
        )
        .await
    }

    /// Queues `key` of `version` (in the caller's transaction, when `client` is one).
    pub(crate) async fn push(
        &self,
        client: &impl GenericClient,
        version: i64,
        key: &str,
        flag: &str,
        error: &str,
    ) -> Result<(), tokio_postgres::Error> {
        client
            .execute(&self.insert, &[&version, &key, &flag, &error])
            .await
            .map(drop)
    }

    /// Keys waiting, per version, ascending (not those marked unreplayable); empty when the
    /// table does not exist.
    pub async fn lengths(&self, client: &Client) -> Result<Vec<(u64, i64)>, RuntimeError> {
        let query = |waiting: &'static str| {
            format!(
                "SELECT version, count(*) FROM {} {waiting} GROUP BY version ORDER BY version",
                self.quoted
            )
        };
        let rows = match client.query(&query("WHERE failed_at IS NULL"), &[]).await {
            // A queue older than `failed_at` has no failed key.
            Err(error) if missing_column(&error) => client.query(&query(""), &[]).await,
            rows => rows,
        };
        match rows {
            Ok(rows) => Ok(rows
                .iter()
                .map(|row| {
                    (
                        u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                        row.get::<_, i64>(1),
                    )
                })
                .collect()),
            Err(error) if missing_table(&error) => Ok(Vec::new()),
            Err(error) => Err(RuntimeError::database("reading the reconcile queue")(error)),
        }
    }

    /// The keys marked unreplayable (the first `limit`, oldest first) and how many there
    /// are; `since`: only those queued at or after it. Empty when the table (or its
    /// `failed_at`) does not exist.
    pub async fn unreplayable(
        &self,
        client: &Client,
        version: Option<i64>,
        since: Option<std::time::SystemTime>,
        limit: i64,
    ) -> Result<(i64, Vec<UnreplayableKey>), RuntimeError> {
        let filter = "WHERE failed_at IS NOT NULL AND ($1::bigint IS NULL OR version = $1) \
                      AND ($2::timestamptz IS NULL OR queued_at >= $2)";
        let count = client
            .query_one(
                &format!("SELECT count(*) FROM {} {filter}", self.quoted),
                &[&version, &since],
            )
            .await;
        let rows = match count {
            Ok(count) => client
                .query(
                    &format!(
                        "SELECT version, key, coalesce(failure, '') FROM {} {filter} \
                         ORDER BY id LIMIT $3",
                        self.quoted
                    ),
                    &[&version, &since, &limit],
                )
                .await
                .map(|rows| (count.get::<_, i64>(0), rows)),
            Err(error) => Err(error),
        };
        match rows {
            Ok((count, rows)) => Ok((
                count,
                rows.iter()
                    .map(|row| UnreplayableKey {
                        version: u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                        key: row.get(1),
                        failure: row.get(2),
                    })
                    .collect(),
            )),
            Err(error) if missing_table(&error) || missing_column(&error) => Ok((0, Vec::new())),
            Err(error) => Err(RuntimeError::database("reading the reconcile queue")(error)),
        }
    }

    /// Marks queue rows `ids` unreplayable, each with its `failures` entry: kept, never
    /// taken again.
    pub(crate) async fn mark_unreplayable(
        &self,
        client: &Client,
        ids: &[i64],
        failures: &[String],
    ) -> Result<(), RuntimeError> {
        client
            .execute(
                &format!(
                    "UPDATE {} AS q SET failed_at = now(), failure = f.failure \
                     FROM unnest($1::bigint[], $2::text[]) AS f(id, failure) WHERE q.id = f.id",
                    self.quoted
                ),
                &[&ids, &failures],
            )
            .await
            .map_err(RuntimeError::database(
                "marking unreplayable reconcile keys",
            ))?;
        Ok(())
    }

    /// The oldest `limit` keys of `version` nobody else is replaying and not marked
    /// unreplayable, locked until the caller's transaction ends.
    pub(crate) async fn take(
        &self,
        client: &Client,
        version: i64,
        limit: i64,
    ) -> Result<Vec<QueuedKey>, RuntimeError> {
        let rows = client
            .query(
                &format!(
                    "SELECT id, key FROM {} WHERE version = $1 AND failed_at IS NULL \
                     ORDER BY id LIMIT $2 \
                     FOR UPDATE SKIP LOCKED",
                    self.quoted
                ),
                &[&version, &limit],
            )
            .await
            .map_err(RuntimeError::database("reading the reconcile queue"))?;
        Ok(rows
            .iter()
            .map(|row| QueuedKey {
                id: row.get(0),
                key: row.get(1),
            })
            .collect())
    }

    /// Removes replayed rows.
    pub(crate) async fn remove(&self, client: &Client, ids: &[i64]) -> Result<(), RuntimeError> {
        client
            .execute(
                &format!("DELETE FROM {} WHERE id = ANY($1)", self.quoted),
                &[&ids],
            )
            .await
            .map_err(RuntimeError::database("emptying the reconcile queue"))?;
        Ok(())
    }
}
