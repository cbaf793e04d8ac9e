//! `<history table>_compare`: one row per compare (keyed by the backfill migration that
//! declares it), so a killed compare resumes after its last chunk, and the contract gate can
//! see which compares passed.
//!
//! ```sql
//! CREATE TABLE "public"."schema_migrations_compare" (
//!     version         bigint PRIMARY KEY,
//!     definition      text NOT NULL,        -- the directive's text: a changed compare starts over
//!     last_key        text,                 -- upper bound of the last chunk compared
//!     rows_compared   bigint NOT NULL DEFAULT 0,
//!     chunks          bigint NOT NULL DEFAULT 0,
//!     differing       bigint NOT NULL DEFAULT 0,
//!     differing_keys  text[] NOT NULL DEFAULT '{}',  -- the first ones, with
//!     differing_kinds text[] NOT NULL DEFAULT '{}',  -- missing | extra | differs
//!     started_at      timestamptz NOT NULL DEFAULT now(),
//!     updated_at      timestamptz NOT NULL DEFAULT now(),
//!     finished_at     timestamptz,
//!     passed_at       timestamptz
//! )
//! ```

use std::time::SystemTime;

use tokio_postgres::Client;

use super::history::TableName;
use super::missing_table;
use crate::runtime::error::RuntimeError;

/// Where a compare stands, as stored after its last chunk.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CompareProgress {
    /// The upper bound (inclusive) of the last chunk compared, as text; `None` before the
    /// first.
    pub last_key: Option<String>,
    /// Source rows compared so far.
    pub rows_compared: i64,
    /// Chunks compared so far.
    pub chunks: i64,
    /// Keys found differing so far.
    pub differing: i64,
    /// The first differing keys, in key order, with their kinds.
    pub differing_keys: Vec<(String, String)>,
}

/// Everything stored about one compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCompare {
    /// The directive's text it ran with.
    pub definition: String,
    /// Its progress.
    pub progress: CompareProgress,
    /// When it started.
    pub started_at: SystemTime,
    /// When a run reached the end of the key range.
    pub finished_at: Option<SystemTime>,
    /// When a run finished with no difference; cleared when a run starts.
    pub passed_at: Option<SystemTime>,
}

/// The table's validated, quoted name.
#[derive(Debug, Clone)]
pub struct CompareProgressTable {
    quoted: String,
}

impl CompareProgressTable {
    /// `<history>_compare` beside the history table.
    pub fn for_history(history: &TableName) -> Result<CompareProgressTable, RuntimeError> {
        let name = history.sibling(
            "_compare",
            "compare progress table name (history table name + \"_compare\")",
        )?;
        Ok(CompareProgressTable {
            quoted: name.quoted(),
        })
    }

    /// The quoted name.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }

    pub(crate) async fn ensure(&self, client: &Client) -> Result<(), RuntimeError> {
        let sql = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
                version bigint PRIMARY KEY, \
                definition text NOT NULL, \
                last_key text, \
                rows_compared bigint NOT NULL DEFAULT 0, \
                chunks bigint NOT NULL DEFAULT 0, \
                differing bigint NOT NULL DEFAULT 0, \
                differing_keys text[] NOT NULL DEFAULT '{{}}', \
                differing_kinds text[] NOT NULL DEFAULT '{{}}', \
                started_at timestamptz NOT NULL DEFAULT now(), \
                updated_at timestamptz NOT NULL DEFAULT now(), \
                finished_at timestamptz, \
                passed_at timestamptz)",
            self.quoted
        );
        super::ensure_table(
            client,
            &self.quoted,
            &sql,
            "creating the compare progress table",
            None,
        )
        .await
    }

    /// The stored compare of `version`; `None` when none ran (or no table exists).
    pub async fn read(
        &self,
        client: &Client,
        version: i64,
    ) -> Result<Option<StoredCompare>, RuntimeError> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT definition, last_key, rows_compared, chunks, differing, \
                            differing_keys, differing_kinds, started_at, finished_at, passed_at \
                     FROM {} WHERE version = $1",
                    self.quoted
                ),
                &[&version],
            )
            .await;
        match row {
            Ok(row) => Ok(row.map(|row| {
                let keys: Vec<String> = row.get(5);
                let kinds: Vec<String> = row.get(6);
                StoredCompare {
                    definition: row.get(0),
                    progress: CompareProgress {
                        last_key: row.get(1),
                        rows_compared: row.get(2),
                        chunks: row.get(3),
                        differing: row.get(4),
                        differing_keys: keys.into_iter().zip(kinds).collect(),
                    },
                    started_at: row.get(7),
                    finished_at: row.get(8),
                    passed_at: row.get(9),
                }
            })),
            Err(error) if missing_table(&error) => Ok(None),
            Err(error) => Err(RuntimeError::database("reading compare progress")(error)),
        }
    }

    /// Starts the compare of `version` from the beginning, forgetting any earlier run (and
    /// its pass).
    pub(crate) async fn start(
        &self,
        client: &Client,
        version: i64,
        definition: &str,
    ) -> Result<(), RuntimeError> {
        client
            .execute(
                &format!(
                    "INSERT INTO {} AS c (version, definition) VALUES ($1, $2) \
                     ON CONFLICT (version) DO UPDATE SET definition = excluded.definition, \
                        last_key = NULL, rows_compared = 0, chunks = 0, differing = 0, \
                        differing_keys = '{{}}', differing_kinds = '{{}}', started_at = now(), \
                        updated_at = now(), finished_at = NULL, passed_at = NULL",
                    self.quoted
                ),
                &[&version, &definition],
            )
            .await
            .map_err(RuntimeError::database("recording a compare's start"))?;
        Ok(())
    }

    /// After each chunk: the cursor and the differences found so far, in one row, so a
    /// resumed run neither repeats nor loses one.
    pub(crate) async fn save(
        &self,
        client: &Client,
        version: i64,
        progress: &CompareProgress,
    ) -> Result<(), RuntimeError> {
        let (keys, kinds): (Vec<&str>, Vec<&str>) = progress
            .differing_keys
            .iter()
            .map(|(key, kind)| (key.as_str(), kind.as_str()))
            .unzip();
        client
            .execute(
                &format!(
                    "UPDATE {} SET last_key = $2, rows_compared = $3, chunks = $4, \
                        differing = $5, differing_keys = $6, differing_kinds = $7, \
                        updated_at = now() WHERE version = $1",
                    self.quoted
                ),
                &[
                    &version,
                    &progress.last_key,
                    &progress.rows_compared,
                    &progress.chunks,
                    &progress.differing,
                    &keys,
                    &kinds,
                ],
            )
            .await
            .map_err(RuntimeError::database("recording compare progress"))?;
        Ok(())
    }

    /// The run reached the end of the key range; it passed when nothing differed. Returns
    /// the stored `passed_at`.
    pub(crate) async fn finish(
        &self,
        client: &Client,
        version: i64,
        passed: bool,
    ) -> Result<Option<SystemTime>, RuntimeError> {
        let passed_at = if passed { "now()" } else { "NULL" };
        let row = client
            .query_one(
                &format!(
                    "UPDATE {} SET finished_at = now(), passed_at = {passed_at}, updated_at = now() \
                     WHERE version = $1 RETURNING passed_at",
                    self.quoted
                ),
                &[&version],
            )
            .await
            .map_err(RuntimeError::database("recording a compare's result"))?;
        Ok(row.get(0))
    }
}
