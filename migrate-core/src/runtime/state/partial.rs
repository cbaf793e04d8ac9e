//! `<history table>_partial`: autocommit migrations that started but did not finish.
//!
//! A statement-by-statement migration commits each statement on its own, so a failure (or a
//! killed process) leaves the ones before it applied while the migration has no history row.
//! This table records how far such a run got, so `status` can say "failed after 2 of 3
//! statements" instead of a plain "pending". A row is written before the first statement,
//! updated after each one, marked failed on an error and deleted once the history row is
//! written.

use std::collections::BTreeMap;
use std::time::SystemTime;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use super::history::TableName;
use crate::runtime::error::RuntimeError;

/// The table's validated, quoted name.
#[derive(Debug, Clone)]
pub struct PartialRunTable {
    quoted: String,
}

/// How far an unfinished autocommit migration got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PartialRun {
    /// Statements that ran (and committed).
    pub statements_done: i32,
    pub started_at: SystemTime,
    /// Set when a statement failed; `None` when the run was interrupted (killed, connection
    /// lost) or is still running.
    pub failed_at: Option<SystemTime>,
    /// The failing statement's error.
    pub error: Option<String>,
}

impl PartialRunTable {
    /// Derived from the history table's validated name.
    pub fn for_history(history: &TableName) -> Result<PartialRunTable, RuntimeError> {
        let name = history.sibling(
            "_partial",
            "partial-run table name (history table name + \"_partial\")",
        )?;
        Ok(PartialRunTable {
            quoted: name.quoted(),
        })
    }

    /// Records the start of `version` (creating the table if needed; run under the lock).
    pub(crate) async fn start(&self, client: &Client, version: i64) -> Result<(), RuntimeError> {
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
                version bigint PRIMARY KEY, \
                statements_done integer NOT NULL DEFAULT 0, \
                started_at timestamptz NOT NULL DEFAULT now(), \
                failed_at timestamptz, \
                error text)",
            self.quoted
        );
        super::ensure_table(
            client,
            &self.quoted,
            &create,
            "creating the partial-run table",
            None,
        )
        .await?;
        client
            .execute(
                &format!(
                    "INSERT INTO {} (version) VALUES ($1) ON CONFLICT (version) DO UPDATE \
                     SET statements_done = 0, started_at = now(), failed_at = NULL, error = NULL",
                    self.quoted
                ),
                &[&version],
            )
            .await
            .map_err(RuntimeError::database("recording the start of a migration"))?;
        Ok(())
    }

    pub(crate) async fn statement_done(
        &self,
        client: &Client,
        version: i64,
        done: usize,
    ) -> Result<(), RuntimeError> {
        let done = i32::try_from(done).unwrap_or(i32::MAX);
        client
            .execute(
                &format!(
                    "UPDATE {} SET statements_done = $2 WHERE version = $1",
                    self.quoted
                ),
                &[&version, &done],
            )
            .await
            .map_err(RuntimeError::database("recording a migration's progress"))?;
        Ok(())
    }

    /// Best effort: the connection may be what failed.
    pub(crate) async fn failed(&self, client: &Client, version: i64, error: &str) {
        let result = client
            .execute(
                &format!(
                    "UPDATE {} SET failed_at = now(), error = $2 WHERE version = $1",
                    self.quoted
                ),
                &[&version, &error],
            )
            .await;
        if let Err(error) = result {
            tracing::warn!(%error, "could not record the failure of a migration");
        }
    }

    /// The quoted name, for tools that list the state tables.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }

    pub(crate) async fn finish(&self, client: &Client, version: i64) -> Result<(), RuntimeError> {
        self.forget(client, version).await
    }

    /// Forgets `version` (finished, or reverted).
    pub(crate) async fn forget(&self, client: &Client, version: i64) -> Result<(), RuntimeError> {
        match client
            .execute(
                &format!("DELETE FROM {} WHERE version = $1", self.quoted),
                &[&version],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => Ok(()),
            Err(error) => Err(RuntimeError::database("clearing a partial run")(error)),
        }
    }

    /// Every unfinished run; empty when the table does not exist.
    pub(crate) async fn read(
        &self,
        client: &Client,
    ) -> Result<BTreeMap<u64, PartialRun>, RuntimeError> {
        let rows = match client
            .query(
                &format!(
                    "SELECT version, statements_done, started_at, failed_at, error FROM {}",
                    self.quoted
                ),
                &[],
            )
            .await
        {
            Ok(rows) => rows,
            Err(error) if error.code() == Some(&SqlState::UNDEFINED_TABLE) => Vec::new(),
            Err(error) => return Err(RuntimeError::database("reading partial runs")(error)),
        };
        Ok(rows
            .iter()
            .map(|row| {
                (
                    u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
                    PartialRun {
                        statements_done: row.get(1),
                        started_at: row.get(2),
                        failed_at: row.get(3),
                        error: row.get(4),
                    },
                )
            })
            .collect())
    }
}
