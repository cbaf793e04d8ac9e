//! `baseline`: a database whose schema was built by other means gets history rows for a
//! version and every earlier one, marked `baselined`, so `up` starts after it.
//!
//! Whether the database really has what those migrations create is the caller's check
//! (`migrate baseline` compares `pg_dump --schema-only` with a scratch database built from
//! the files); this only records, under the migration lock, into an empty history.

use tokio_postgres::Client;

use crate::migration::Migration;
use crate::runtime::Migrator;
use crate::runtime::error::RuntimeError;
use crate::runtime::state::history::Adopted;

/// Why [`Migrator::baseline`] recorded nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BaselineError {
    /// The version is not a migration of the set.
    #[error(
        "version {version} is not a migration of the set: baseline names the last migration the database already has"
    )]
    NotInSet {
        /// The version asked for.
        version: u64,
    },
    /// The history already has rows.
    #[error(
        "the history table {table} already has {rows} row(s): baseline only starts an empty history"
    )]
    HistoryNotEmpty {
        /// Our history table.
        table: String,
        /// Its rows.
        rows: usize,
    },
    /// The runtime failed (connection, lock, history table).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// What [`Migrator::baseline`] recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BaselineReport {
    /// The versions recorded as applied (baselined), ascending.
    pub recorded: Vec<u64>,
}

impl Migrator<'_> {
    /// Refuses a version not in the set, and a history that has rows (checked again under
    /// the lock); else records `version` and every earlier migration as applied with
    /// `baselined = true`, our checksums and no duration, in one transaction under the
    /// migration lock.
    pub async fn baseline(
        &self,
        client: &Client,
        version: u64,
    ) -> Result<BaselineReport, BaselineError> {
        if self.migrations.get(version).is_none() {
            return Err(BaselineError::NotInSet { version });
        }
        self.refuse_history_rows(self.history.read(client).await?.len())?;
        let recorded: Vec<u64> = self
            .migrations
            .iter()
            .map(|m| m.version)
            .filter(|v| *v <= version)
            .collect();
        let rows: Vec<(&Migration, Adopted<'_>)> = self
            .migrations
            .iter()
            .filter(|m| recorded.contains(&m.version))
            .map(|m| (m, Adopted::Baselined))
            .collect();
        let mut rows_found = 0;
        self.locked(client, |client| {
            let rows_found = &mut rows_found;
            let rows = &rows;
            async move {
                *rows_found = self
                    .history
                    .write_adopted(client, rows, "writing the baseline")
                    .await?;
                Ok(())
            }
        })
        .await?;
        self.refuse_history_rows(rows_found)?;
        tracing::info!(version, rows = recorded.len(), "baselined");
        Ok(BaselineReport { recorded })
    }

    fn refuse_history_rows(&self, rows: usize) -> Result<(), BaselineError> {
        if rows > 0 {
            return Err(BaselineError::HistoryNotEmpty {
                table: self.history.table().to_string(),
                rows,
            });
        }
        Ok(())
    }
}
