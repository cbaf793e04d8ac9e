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
//!     queued_at timestamptz NOT NULL DEFAULT now()
//! )
//! ```
//!
//! Append-only on the application's side: an insert takes no lock another session holds (no
//! unique key to wait on), so queueing never waits behind `migrate reconcile`, which takes
//! its batches with `FOR UPDATE SKIP LOCKED` and deletes exactly the rows it replayed. A key
//! queued twice is replayed once per batch.

use tokio_postgres::error::SqlState;
use tokio_postgres::{Client, GenericClient};

use super::history::TableName;
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

fn missing_table(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::UNDEFINED_TABLE)
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

    /// Creates the table if missing.
    pub async fn ensure(&self, client: &impl GenericClient) -> Result<(), RuntimeError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
                id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
                version bigint NOT NULL, \
                key text NOT NULL, \
                flag text NOT NULL, \
                error text, \
                queued_at timestamptz NOT NULL DEFAULT now())",
            self.quoted
        );
        match client.batch_execute(&sql).await {
            Ok(()) => Ok(()),
            // Two instances creating it at once: the other's table is just as good.
            Err(error)
                if error.code() == Some(&SqlState::UNIQUE_VIOLATION)
                    || error.code() == Some(&SqlState::DUPLICATE_TABLE) =>
            {
                Ok(())
            }
            Err(error) => Err(RuntimeError::database("creating the reconcile queue")(
                error,
            )),
        }
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

    /// Keys waiting, per version, ascending; empty when the table does not exist.
    pub async fn lengths(&self, client: &Client) -> Result<Vec<(u64, i64)>, RuntimeError> {
        let rows = client
            .query(
                &format!(
                    "SELECT version, count(*) FROM {} GROUP BY version ORDER BY version",
                    self.quoted
                ),
                &[],
            )
            .await;
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

    /// The oldest `limit` keys of `version` nobody else is replaying, locked until the
    /// caller's transaction ends.
    pub(crate) async fn take(
        &self,
        client: &Client,
        version: i64,
        limit: i64,
    ) -> Result<Vec<QueuedKey>, RuntimeError> {
        let rows = client
            .query(
                &format!(
                    "SELECT id, key FROM {} WHERE version = $1 ORDER BY id LIMIT $2 \
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
