//! `repair`: accept the current checksum of an edited, already-applied migration.
//!
//! Drift is refused by default because an edited file no longer describes what ran. When the
//! edit is known to be harmless (a comment, a fix applied by hand as well), an operator can
//! record the new checksum; `repaired_at` keeps the fact visible in the history table.

use tokio_postgres::Client;

use crate::runtime::Migrator;
use crate::runtime::error::RuntimeError;

/// Why [`Migrator::repair`] changed nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RepairError {
    /// The version to repair has no file in the set.
    #[error("migration {version} is not in the migration set")]
    NotInSet {
        /// The version asked for.
        version: u64,
    },
    /// The version to repair has no history row.
    #[error("migration {version} is not applied: there is no history row to repair")]
    NotApplied {
        /// The version asked for.
        version: u64,
    },
    /// The runtime failed (connection, lock, history table).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

/// One history row whose checksum was replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Repaired {
    /// The migration's version.
    pub version: u64,
    /// The migration's file name.
    pub file_name: String,
    /// The checksum the history row had.
    pub old_checksum: String,
    /// The file's checksum, now in the history row.
    pub new_checksum: String,
}

/// What [`Migrator::repair`] changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RepairReport {
    /// The history rows whose checksum was replaced, by version; empty when none drifted.
    pub repaired: Vec<Repaired>,
}

impl Migrator<'_> {
    /// Records the current checksum of every drifted migration (or only of `version`) in
    /// the history table and sets `repaired_at = now()`, under the migration advisory lock.
    /// A migration whose checksum already matches is left alone. The connection must be
    /// dedicated, and the session settings are set and restored, as for [`Migrator::up`].
    pub async fn repair(
        &self,
        client: &Client,
        version: Option<u64>,
    ) -> Result<RepairReport, RepairError> {
        if let Some(version) = version {
            if self.migrations.get(version).is_none() {
                return Err(RepairError::NotInSet { version });
            }
            let rows = self.read_history(client).await?;
            if !rows.iter().any(|r| r.version == version) {
                return Err(RepairError::NotApplied { version });
            }
        }
        let mut report = RepairReport::default();
        let sql = format!(
            "UPDATE {} SET checksum = $2, repaired_at = now() WHERE version = $1 AND checksum = $3",
            self.history.quoted()
        );
        self.locked(client, |client| {
            let report = &mut report;
            let sql = &sql;
            async move {
                // As the set sees it: a squash that stands for the rows of the files it
                // replaced is not drift, and must not take their last row's checksum.
                let rows = self.read_history(client).await?;
                for row in rows {
                    if version.is_some_and(|v| v != row.version) {
                        continue;
                    }
                    let Some(m) = self.migrations.get(row.version) else {
                        continue;
                    };
                    let found = m.checksum.to_hex();
                    if row.checksum == found {
                        continue;
                    }
                    let version = crate::runtime::state::history::sql_version(row.version);
                    client
                        .execute(sql.as_str(), &[&version, &found, &row.checksum])
                        .await
                        .map_err(RuntimeError::database("updating the history checksum"))?;
                    tracing::info!(version = row.version, old = %row.checksum, new = %found, "repaired");
                    report.repaired.push(Repaired {
                        version: row.version,
                        file_name: m.file_name.to_string(),
                        old_checksum: row.checksum,
                        new_checksum: found,
                    });
                }
                Ok(())
            }
        })
        .await?;
        Ok(report)
    }
}
