//! `<history table>_backfill`: one row per backfill statement, so a killed backfill resumes
//! where it stopped, and the contract gates can see which backfills were verified.

use std::collections::BTreeSet;
use std::time::SystemTime;

use tokio_postgres::Client;
use tokio_postgres::types::Type;

use super::history::TableName;
use super::missing_table;
use crate::runtime::error::RuntimeError;

/// The table's validated, quoted name.
#[derive(Debug, Clone)]
pub struct BackfillProgressTable {
    quoted: String,
}

/// Progress of one backfill statement, as the runner resumes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BackfillProgress {
    /// The last key done by the keyed pass, as text.
    pub last_key: Option<String>,
    pub rows_done: i64,
    /// The statement was finished and verified by a run.
    pub finished: bool,
}

/// How a running backfill is paced, stored with its progress for `migrate backfill`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredPace {
    /// Rows of the next batch.
    pub batch_size: Option<i32>,
    /// Rows per second of this run so far.
    pub rows_per_second: Option<f64>,
    /// The controller's state, as it reads (`running`, `paused: ...`).
    pub state: String,
    /// Which signals held the backfill and the application's measured change
    /// (`BackfillStatus::impact`).
    pub report: Option<String>,
}

/// Everything stored about one backfill statement, for `migrate backfill`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredProgress {
    pub rows_done: i64,
    pub last_key: Option<String>,
    pub updated_at: SystemTime,
    pub finished_at: Option<SystemTime>,
    pub verified_at: Option<SystemTime>,
    /// `None` in a table written by a release without the controller.
    pub pace: Option<StoredPace>,
    /// The session of the run that claimed the statement last is still connected; `None`
    /// when no run recorded its session (a table of an earlier release).
    pub session_alive: Option<bool>,
    /// The error that run stopped on, when it could record it.
    pub error: Option<String>,
}

/// Columns added after the table's first release: `ensure` adds them to older tables. The
/// session (`backend_pid`, `backend_start`) of the run working on a statement tells a reader
/// whether that run is still going; `error` is what it failed on; `report` what held the run
/// and the application's measured change.
const LATER_COLUMNS: &str = "batch_size integer, rows_per_second double precision, state text, \
                             backend_pid integer, backend_start timestamptz, error text, \
                             report text";

/// A statement's index as stored in the table's `statement integer` column.
pub(crate) fn statement_index(index: usize) -> i32 {
    i32::try_from(index).unwrap_or(i32::MAX)
}

impl BackfillProgressTable {
    /// Derived from the history table's validated name, so it needs no quoting care.
    pub fn for_history(history: &TableName) -> Result<BackfillProgressTable, RuntimeError> {
        let name = history.sibling(
            "_backfill",
            "backfill progress table name (history table name + \"_backfill\")",
        )?;
        Ok(BackfillProgressTable {
            quoted: name.quoted(),
        })
    }

    /// The quoted name, for tools that list the state tables.
    pub fn quoted(&self) -> &str {
        &self.quoted
    }

    /// Creates the table if missing (run under the migration lock).
    pub(crate) async fn ensure(&self, client: &Client) -> Result<(), RuntimeError> {
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {} (\
                    version bigint NOT NULL, \
                    statement integer NOT NULL, \
                    last_key text, \
                    rows_done bigint NOT NULL DEFAULT 0, \
                    started_at timestamptz NOT NULL DEFAULT now(), \
                    updated_at timestamptz NOT NULL DEFAULT now(), \
                    finished_at timestamptz, \
                    verified_at timestamptz, \
                    {LATER_COLUMNS}, \
                    PRIMARY KEY (version, statement))",
            self.quoted
        );
        super::ensure_table(
            client,
            &self.quoted,
            &create,
            "creating the backfill progress table",
            Some((
                LATER_COLUMNS,
                "adding the later columns to the backfill progress table",
            )),
        )
        .await
    }

    /// The stored progress of a statement, recording its start when there is none.
    pub(crate) async fn load_or_start(
        &self,
        client: &Client,
        version: i64,
        statement: i32,
    ) -> Result<BackfillProgress, RuntimeError> {
        let row = client
            .query_opt(
                &format!(
                    "SELECT last_key, rows_done, finished_at IS NOT NULL FROM {} \
                     WHERE version = $1 AND statement = $2",
                    self.quoted
                ),
                &[&version, &statement],
            )
            .await
            .map_err(RuntimeError::database("reading backfill progress"))?;
        if let Some(row) = row {
            return Ok(BackfillProgress {
                last_key: row.get(0),
                rows_done: row.get(1),
                finished: row.get(2),
            });
        }
        client
            .execute(
                &format!(
                    "INSERT INTO {} (version, statement) VALUES ($1, $2)",
                    self.quoted
                ),
                &[&version, &statement],
            )
            .await
            .map_err(RuntimeError::database("recording backfill start"))?;
        Ok(BackfillProgress {
            last_key: None,
            rows_done: 0,
            finished: false,
        })
    }

    /// Makes a finished statement of `version` start over (a re-run of an applied backfill):
    /// cursor, count, finish and verification cleared. An unfinished one (a re-run that was
    /// stopped) keeps its cursor and resumes.
    pub(crate) async fn restart_finished(
        &self,
        client: &Client,
        version: i64,
    ) -> Result<(), RuntimeError> {
        client
            .execute(
                &format!(
                    "UPDATE {} SET last_key = NULL, rows_done = 0, started_at = now(), \
                     updated_at = now(), finished_at = NULL, verified_at = NULL, error = NULL, \
                     state = NULL WHERE version = $1 AND finished_at IS NOT NULL",
                    self.quoted
                ),
                &[&version],
            )
            .await
            .map_err(RuntimeError::database("restarting the backfill's progress"))?;
        Ok(())
    }

    /// Records `client`'s session as the one running the statement, and clears the error of
    /// an earlier run: `migrate backfill` then tells a run still going from one whose process
    /// is gone (SIGKILL, SIGINT, a lost connection) by looking the session up in
    /// `pg_stat_activity`. `backend_start` with the pid, as PostgreSQL reuses pids.
    pub(crate) async fn claim(
        &self,
        client: &Client,
        version: i64,
        statement: i32,
    ) -> Result<(), RuntimeError> {
        client
            .execute(
                &format!(
                    "UPDATE {} SET backend_pid = pg_backend_pid(), backend_start = \
                     (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()), \
                     error = NULL, updated_at = now() WHERE version = $1 AND statement = $2",
                    self.quoted
                ),
                &[&version, &statement],
            )
            .await
            .map_err(RuntimeError::database("recording the backfill's session"))?;
        Ok(())
    }

    /// Records the error a run stopped on, for `migrate backfill` and `migrate status`.
    pub(crate) async fn record_failure(
        &self,
        client: &Client,
        version: i64,
        statement: i32,
        error: &str,
    ) -> Result<(), RuntimeError> {
        client
            .execute(
                &format!(
                    "UPDATE {} SET error = $3, state = 'failed', updated_at = now() \
                     WHERE version = $1 AND statement = $2",
                    self.quoted
                ),
                &[&version, &statement, &error],
            )
            .await
            .map_err(RuntimeError::database("recording the backfill's failure"))?;
        Ok(())
    }

    /// After each committed batch, and while paused (the write also advances the WAL, so a
    /// replica replaying again reports it).
    pub(crate) async fn save(
        &self,
        client: &Client,
        version: i64,
        statement: i32,
        progress: &BackfillProgress,
        pace: &StoredPace,
    ) -> Result<(), RuntimeError> {
        // Typed, so one round trip (no Prepare first): this runs after every batch.
        client
            .query_typed(
                &format!(
                    "UPDATE {} SET last_key = $3, rows_done = $4, batch_size = $5, \
                     rows_per_second = $6, state = $7, report = coalesce($8, report), \
                     updated_at = now() WHERE version = $1 AND statement = $2",
                    self.quoted
                ),
                &[
                    (&version, Type::INT8),
                    (&statement, Type::INT4),
                    (&progress.last_key, Type::TEXT),
                    (&progress.rows_done, Type::INT8),
                    (&pace.batch_size, Type::INT4),
                    (&pace.rows_per_second, Type::FLOAT8),
                    (&pace.state, Type::TEXT),
                    (&pace.report, Type::TEXT),
                ],
            )
            .await
            .map_err(RuntimeError::database("recording backfill progress"))?;
        Ok(())
    }

    /// The run finished the statement and found no row left.
    pub(crate) async fn finish_verified(
        &self,
        client: &Client,
        version: i64,
        statement: i32,
        rows_done: i64,
    ) -> Result<(), RuntimeError> {
        client
            .execute(
                &format!(
                    "UPDATE {} SET rows_done = $3, finished_at = now(), verified_at = now(), \
                     updated_at = now(), state = 'done' WHERE version = $1 AND statement = $2",
                    self.quoted
                ),
                &[&version, &statement, &rows_done],
            )
            .await
            .map_err(RuntimeError::database("recording backfill verification"))?;
        Ok(())
    }

    /// Everything stored about a statement; `None` when nothing is (or no backfill ever
    /// ran in this database).
    pub(crate) async fn read(
        &self,
        client: &Client,
        version: i64,
        statement: i32,
    ) -> Result<Option<StoredProgress>, RuntimeError> {
        let row = client
            .query_opt(
                &format!(
                    // Through to_jsonb, so a table without the pace columns (an earlier
                    // release's, not yet upgraded by a run) reads them as NULL.
                    // The session counts as gone only when no session has its pid, or one
                    // does with another start time (a reused pid); a role without
                    // pg_read_all_stats sees other roles' backend_start as NULL.
                    "SELECT rows_done, last_key, updated_at, finished_at, verified_at, \
                     (to_jsonb(p) ->> 'batch_size')::integer, \
                     (to_jsonb(p) ->> 'rows_per_second')::float8, to_jsonb(p) ->> 'state', \
                     CASE WHEN to_jsonb(p) ->> 'backend_pid' IS NOT NULL THEN EXISTS (\
                       SELECT FROM pg_stat_activity a \
                       WHERE a.pid = (to_jsonb(p) ->> 'backend_pid')::integer \
                       AND (a.backend_start IS NULL \
                         OR a.backend_start = (to_jsonb(p) ->> 'backend_start')::timestamptz)) \
                     END, \
                     to_jsonb(p) ->> 'error', \
                     to_jsonb(p) ->> 'report' \
                     FROM {} p WHERE version = $1 AND statement = $2",
                    self.quoted
                ),
                &[&version, &statement],
            )
            .await;
        match row {
            Ok(row) => Ok(row.map(|row| StoredProgress {
                rows_done: row.get(0),
                last_key: row.get(1),
                updated_at: row.get(2),
                finished_at: row.get(3),
                verified_at: row.get(4),
                pace: row.get::<_, Option<String>>(7).map(|state| StoredPace {
                    batch_size: row.get(5),
                    rows_per_second: row.get(6),
                    state,
                    report: row.get(10),
                }),
                session_alive: row.get(8),
                error: row.get(9),
            })),
            Err(error) if missing_table(&error) => Ok(None),
            Err(error) => Err(RuntimeError::database("reading backfill progress")(error)),
        }
    }

    /// Records the outcome of a verification: `verified_at` set when no row was left,
    /// cleared otherwise (a failed verification must not leave an older success for the
    /// contract gate). Returns the stored `verified_at`.
    pub(crate) async fn record_verification(
        &self,
        client: &Client,
        version: i64,
        statement: i32,
        passed: bool,
    ) -> Result<Option<SystemTime>, RuntimeError> {
        let value = if passed { "now()" } else { "NULL" };
        let updated = client
            .query_opt(
                &format!(
                    "UPDATE {} SET verified_at = {value} WHERE version = $1 AND statement = $2 \
                     RETURNING verified_at",
                    self.quoted
                ),
                &[&version, &statement],
            )
            .await;
        match updated {
            Ok(row) => Ok(row.and_then(|row| row.get(0))),
            Err(error) if missing_table(&error) => Ok(None),
            Err(error) => Err(RuntimeError::database("recording backfill verification")(
                error,
            )),
        }
    }

    /// Versions strictly between `after` and `before` with a progress row lacking
    /// `verified_at`. No table means no backfill ever ran here: nothing unverified.
    pub(crate) async fn unverified_between(
        &self,
        client: &Client,
        after: i64,
        before: i64,
    ) -> Result<BTreeSet<u64>, RuntimeError> {
        let rows = client
            .query(
                &format!(
                    "SELECT DISTINCT version FROM {} \
                     WHERE version > $1 AND version < $2 AND verified_at IS NULL",
                    self.quoted
                ),
                &[&after, &before],
            )
            .await;
        match rows {
            Ok(rows) => Ok(rows
                .iter()
                .map(|row| u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
                .collect()),
            Err(error) if missing_table(&error) => Ok(BTreeSet::new()),
            Err(error) => Err(RuntimeError::database(
                "reading backfill progress for the contract gates",
            )(error)),
        }
    }

    /// Forgets the progress of `version` (after its down part ran), so a later up runs the
    /// backfill again from the start.
    pub(crate) async fn forget(&self, client: &Client, version: i64) -> Result<(), RuntimeError> {
        match client
            .execute(
                &format!("DELETE FROM {} WHERE version = $1", self.quoted),
                &[&version],
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(error) if missing_table(&error) => Ok(()),
            Err(error) => Err(RuntimeError::database("clearing backfill progress")(error)),
        }
    }
}
