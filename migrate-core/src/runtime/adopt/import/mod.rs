//! `import`: another tool's history table read, compared with the files, and written into ours
//! with our checksums, so `up` has nothing to do on a database that tool migrated.
//!
//! The other tool's table is only read (`SELECT`); nothing in it changes. Each tool's shape and
//! checksum is in `tools.rs`.

mod tools;

use std::path::Path;
use std::time::SystemTime;

use tokio_postgres::Client;

use crate::migration::Migration;
use crate::runtime::Migrator;
use crate::runtime::error::RuntimeError;
use crate::runtime::state::history::Adopted;
use crate::source::Layout;

pub use tools::{RecordedChecksum, table_of};

/// Why [`Migrator::import`] wrote nothing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// `--from migrate` or another name that is no other tool.
    #[error("there is nothing to import from {tool}: import reads another tool's history")]
    NotAnotherTool {
        /// The layout asked for.
        tool: Layout,
    },
    /// The other tool's table is missing.
    #[error("{tool}'s history table `{table}` does not exist in this database (search_path)")]
    NoTable {
        /// The tool.
        tool: Layout,
        /// Its table's name.
        table: &'static str,
    },
    /// The table exists with another tool's columns (golang-migrate's and dbmate's share a name).
    #[error("`{table}` does not have {tool}'s columns ({expected}): is it another tool's?")]
    WrongShape {
        /// The tool.
        tool: Layout,
        /// Its table's name.
        table: &'static str,
        /// The columns looked for.
        expected: &'static str,
    },
    /// Our history table is the other tool's (`schema_migrations`).
    #[error(
        "our history table {ours} is {tool}'s table too: configure another one (--history-table migrate_history) and import into it"
    )]
    SameTable {
        /// The tool.
        tool: Layout,
        /// Our history table.
        ours: String,
    },
    /// The other tool recorded something import cannot carry over.
    #[error("{tool}'s history cannot be imported: {problem}")]
    Unsupported {
        /// The tool.
        tool: Layout,
        /// What it recorded.
        problem: String,
    },
    /// Versions applied by the other tool without a file, or whose file changed since.
    #[error("{tool}'s history and the files disagree; nothing was written:{}{}", list_missing(.missing), list_differs(.differs))]
    Disagree {
        /// The tool.
        tool: Layout,
        /// Applied versions that no file of the set has.
        missing: Vec<u64>,
        /// `(version, file)` whose file differs from what the tool recorded.
        differs: Vec<(u64, String)>,
    },
    /// Our history already has rows.
    #[error(
        "our history table {table} already has {rows} row(s): import only fills an empty history"
    )]
    HistoryNotEmpty {
        /// Our history table.
        table: String,
        /// Its rows.
        rows: usize,
    },
    /// A file of the set could not be read again to compute the tool's checksum.
    #[error("cannot read {path} to compare it with {tool}'s checksum: {source}")]
    ReadFile {
        /// The tool.
        tool: Layout,
        /// The file.
        path: String,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The runtime failed (connection, lock, history table).
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

fn list_missing(missing: &[u64]) -> String {
    if missing.is_empty() {
        return String::new();
    }
    let versions: Vec<String> = missing.iter().map(u64::to_string).collect();
    format!(" applied but no file: {};", versions.join(", "))
}

fn list_differs(differs: &[(u64, String)]) -> String {
    if differs.is_empty() {
        return String::new();
    }
    let files: Vec<String> = differs.iter().map(|(v, f)| format!("{v} ({f})")).collect();
    format!(
        " edited since the tool applied it (its checksum differs): {}",
        files.join(", ")
    )
}

/// One row the import writes (or would write).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Imported {
    /// The version.
    pub version: u64,
    /// The migration's file name.
    pub file_name: String,
    /// Our checksum of it, as the history records it.
    pub checksum: String,
    /// Whether the other tool recorded a checksum that was compared.
    pub checksum_compared: bool,
    /// When the other tool applied it, carried into our history's `executed_at`; `None` when
    /// the tool records no time (dbmate, golang-migrate), and the import's time is written.
    pub applied_at: Option<SystemTime>,
}

/// What [`Migrator::import`] wrote, or would write with `dry_run`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// The tool imported from.
    pub tool: Layout,
    /// Nothing was written.
    pub dry_run: bool,
    /// The history rows, by version.
    pub imported: Vec<Imported>,
    /// Versions of the set the other tool had not applied: `up` runs them.
    pub pending: Vec<u64>,
}

/// One applied migration as the other tool recorded it.
#[derive(Debug, Clone)]
struct Recorded {
    version: u64,
    checksum: Option<RecordedChecksum>,
    executed_at: Option<SystemTime>,
    duration_ms: Option<i64>,
}

impl Migrator<'_> {
    /// Reads `tool`'s history table, checks it against the set (every applied version has a
    /// file, and where the tool recorded a checksum, the file still has it), then, unless
    /// `dry_run`, writes one row per applied version into our empty history table under the
    /// migration lock, in one transaction, with our checksums. The other tool's table is
    /// only read.
    pub async fn import(
        &self,
        client: &Client,
        tool: Layout,
        dry_run: bool,
    ) -> Result<ImportReport, ImportError> {
        let table = table_of(tool).ok_or(ImportError::NotAnotherTool { tool })?;
        let ours = self.history.table();
        if ours.name == table && ours.schema.as_deref().is_none_or(|s| s == "public") {
            return Err(ImportError::SameTable {
                tool,
                ours: ours.to_string(),
            });
        }
        let recorded = tools::read(
            client,
            tool,
            &self
                .migrations
                .iter()
                .map(|m| m.version)
                .collect::<Vec<_>>(),
        )
        .await?;
        let mut missing = Vec::new();
        let mut differs = Vec::new();
        let mut imported = Vec::new();
        for row in &recorded {
            let Some(migration) = self.migrations.get(row.version) else {
                missing.push(row.version);
                continue;
            };
            if let Some(checksum) = &row.checksum {
                let bytes = self.file_bytes(tool, migration)?;
                if !checksum.matches(migration, &bytes) {
                    differs.push((row.version, migration.file_name.to_string()));
                }
            }
            imported.push(Imported {
                version: row.version,
                file_name: migration.file_name.to_string(),
                checksum: migration.checksum.to_hex(),
                checksum_compared: row.checksum.is_some(),
                applied_at: row.executed_at,
            });
        }
        if !missing.is_empty() || !differs.is_empty() {
            return Err(ImportError::Disagree {
                tool,
                missing,
                differs,
            });
        }
        let pending = self
            .migrations
            .iter()
            .map(|m| m.version)
            .filter(|v| !recorded.iter().any(|r| r.version == *v))
            .collect();
        let report = ImportReport {
            tool,
            dry_run,
            imported,
            pending,
        };
        let existing = if self.history.exists(client).await? {
            self.history.read(client).await?.len()
        } else {
            0
        };
        if existing > 0 {
            return Err(ImportError::HistoryNotEmpty {
                table: ours.to_string(),
                rows: existing,
            });
        }
        if dry_run {
            return Ok(report);
        }
        let mut not_empty = None;
        let rows: Vec<(&Migration, Adopted<'_>)> = recorded
            .iter()
            .map(|row| {
                let m = self.migrations.get(row.version).expect("checked above");
                let how = Adopted::Imported {
                    tool: tool.as_str(),
                    duration_ms: row.duration_ms.unwrap_or(0),
                    executed_at: row.executed_at,
                };
                (m, how)
            })
            .collect();
        self.locked(client, |client| {
            let not_empty = &mut not_empty;
            let rows = &rows;
            async move {
                let found = self
                    .history
                    .write_adopted(client, rows, "writing the imported history")
                    .await?;
                if found > 0 {
                    *not_empty = Some(found);
                }
                Ok(())
            }
        })
        .await?;
        if let Some(rows) = not_empty {
            return Err(ImportError::HistoryNotEmpty {
                table: ours.to_string(),
                rows,
            });
        }
        tracing::info!(tool = %tool, rows = report.imported.len(), "imported history");
        Ok(report)
    }

    /// The bytes the other tool checksummed: the up file as it is on disk, read from the
    /// folder the set came from.
    fn file_bytes(&self, tool: Layout, migration: &Migration) -> Result<Vec<u8>, ImportError> {
        let path = Path::new(self.migrations.dir.as_ref()).join(migration.file_name.as_ref());
        std::fs::read(&path).map_err(|source| ImportError::ReadFile {
            tool,
            path: path.display().to_string(),
            source,
        })
    }
}
