//! Backfill status and verification (`migrate backfill`, `migrate verify`).
//!
//! A backfill is verified once when it runs (its history row is written only then). Old
//! application code that does not dual-write can still create rows in the old shape
//! afterwards, so before a contract, or any time, `verify` checks again that no row matches
//! a backfill statement's WHERE, and records `verified_at` when none does. When rows match,
//! it clears `verified_at`: a verification that failed must not leave an older success in
//! place for the contract gate to read. (The gate also counts again itself, see
//! [`crate::runtime::gates`].)

use std::time::SystemTime;

use tokio_postgres::{Client, SimpleQueryMessage};

use super::batches::plan_statement;
use crate::migration::Phase;
use crate::runtime::Migrator;
use crate::runtime::error::RuntimeError;
use crate::runtime::state::backfill_progress::{BackfillProgressTable, statement_index};
use crate::runtime::state::history::sql_version;

/// Makes the statement after it in the same query message plan no parallel workers: the
/// message runs as one implicit transaction, which `SET LOCAL` lasts.
const ONE_CORE: &str = "SET LOCAL max_parallel_workers_per_gather = 0; ";

/// Runs `count_sql`, a `SELECT count(*)` without parameters, on one core.
///
/// PostgreSQL's default plans the scan of a large table with two parallel workers: three
/// processes, every core of a small server for as long as the scan lasts (about 100 ms per
/// 1,000,000 rows), while the application's queries wait for a CPU; a backfill's own batches
/// take one core, and so does its verification. The caller's own setting is left as it was.
pub(crate) async fn count_on_one_core(
    client: &Client,
    count_sql: &str,
) -> Result<i64, tokio_postgres::Error> {
    let messages = client
        .simple_query(&format!("{ONE_CORE}{count_sql}"))
        .await?;
    let counted = messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0)?.parse::<i64>().ok(),
        _ => None,
    });
    match counted {
        Some(count) => Ok(count),
        // Not a count's answer (never seen): the query as the planner likes it.
        None => Ok(client.query_one(count_sql, &[]).await?.get(0)),
    }
}

/// One statement of a backfill migration, as the database knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillState {
    /// The backfill migration's version.
    pub version: u64,
    /// The backfill migration's file name.
    pub file_name: String,
    /// Index of the statement among the file's up statements.
    pub statement: usize,
    /// Line of the statement in its file.
    pub line: u32,
    /// The migration's history row exists.
    pub applied: bool,
    /// Rows updated so far; `None` when the statement never started.
    pub rows_done: Option<i64>,
    /// The last key the keyed pass reached, as text: where an interrupted run resumes.
    pub last_key: Option<String>,
    /// When the progress was last stored.
    pub updated_at: Option<SystemTime>,
    /// When a run finished the statement.
    pub finished_at: Option<SystemTime>,
    /// When a run or [`Migrator::verify_backfills`] last found no row left; cleared by a
    /// verification that found rows.
    pub verified_at: Option<SystemTime>,
    /// Rows still matching the WHERE; only filled by [`Migrator::verify_backfills`].
    pub remaining: Option<i64>,
    /// Rows per second of the last run, when it ran under the controller.
    pub rows_per_second: Option<f64>,
    /// The size of the next batch the last run would have taken.
    pub batch_size: Option<u32>,
    /// The controller's state as last stored (`running`, `backing off: ...`, `paused: ...`,
    /// `done`, `failed`); `None` before the first batch, or in a table of an earlier release.
    /// Only meaningful while [`BackfillState::run`] is [`BackfillRun::Running`].
    pub pace_state: Option<String>,
    /// Which signals held the last run, for how long, and the application's measured
    /// throughput and server-time change (`BackfillStatus::impact`); `None` when nothing
    /// held it or no rest window measured the application.
    pub impact: Option<String>,
    /// Whether the run that last worked on the statement is still going; `None` before any
    /// run, or when no run recorded its session (a table of an earlier release).
    pub run: Option<BackfillRun>,
}

/// Where the last run of a backfill statement is: the stored pace says how a run went while
/// it was alive, this says whether it still is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackfillRun {
    /// Its session is still connected: the run is going (or paused, as `pace_state` says).
    Running,
    /// Its session is gone and it recorded no error: its process was killed (SIGKILL,
    /// SIGINT) or lost its connection. The next `up` resumes from `last_key`.
    Stopped,
    /// It stopped on this error (the message the run failed with).
    Failed {
        /// The error's message.
        error: String,
    },
    /// A run finished the statement.
    Finished,
}

impl BackfillRun {
    /// One word for tables and JSON: `running`, `stopped`, `failed`, `finished`.
    pub fn as_str(&self) -> &'static str {
        match self {
            BackfillRun::Running => "running",
            BackfillRun::Stopped => "stopped",
            BackfillRun::Failed { .. } => "failed",
            BackfillRun::Finished => "finished",
        }
    }
}

impl Migrator<'_> {
    /// Every backfill statement of the set with its stored progress. Read only.
    pub async fn backfills(&self, client: &Client) -> Result<Vec<BackfillState>, RuntimeError> {
        let applied: Vec<u64> = self
            .history
            .read(client)
            .await?
            .iter()
            .map(|r| r.version)
            .collect();
        let table = BackfillProgressTable::for_history(self.history_table())?;
        let mut states = Vec::new();
        for migration in self.migrations.iter() {
            if migration.phase != Phase::Backfill || migration.backfill.is_none() {
                continue;
            }
            for (index, statement) in migration.up.statements.iter().enumerate() {
                let mut state = BackfillState {
                    version: migration.version,
                    file_name: migration.file_name.to_string(),
                    statement: index,
                    line: statement.line,
                    applied: applied.contains(&migration.version),
                    rows_done: None,
                    last_key: None,
                    updated_at: None,
                    finished_at: None,
                    verified_at: None,
                    remaining: None,
                    rows_per_second: None,
                    batch_size: None,
                    pace_state: None,
                    impact: None,
                    run: None,
                };
                let stored = table
                    .read(
                        client,
                        sql_version(migration.version),
                        statement_index(index),
                    )
                    .await?;
                if let Some(stored) = stored {
                    state.rows_done = Some(stored.rows_done);
                    state.last_key = stored.last_key;
                    state.updated_at = Some(stored.updated_at);
                    state.finished_at = stored.finished_at;
                    state.verified_at = stored.verified_at;
                    state.run = match (&stored.finished_at, stored.error, stored.session_alive) {
                        (Some(_), _, _) => Some(BackfillRun::Finished),
                        (None, Some(error), _) => Some(BackfillRun::Failed { error }),
                        (None, None, Some(true)) => Some(BackfillRun::Running),
                        (None, None, Some(false)) => Some(BackfillRun::Stopped),
                        (None, None, None) => None,
                    };
                    if let Some(pace) = stored.pace {
                        state.rows_per_second = pace.rows_per_second;
                        state.batch_size =
                            pace.batch_size.and_then(|size| u32::try_from(size).ok());
                        state.pace_state = Some(pace.state);
                        state.impact = pace.report;
                    }
                }
                states.push(state);
            }
        }
        Ok(states)
    }

    /// Counts, for every applied backfill (or only `version`), the rows that still match its
    /// WHERE, and records `verified_at` for the statements with none left. Only reads the
    /// application's tables.
    pub async fn verify_backfills(
        &self,
        client: &Client,
        version: Option<u64>,
    ) -> Result<Vec<BackfillState>, RuntimeError> {
        let table = BackfillProgressTable::for_history(self.history_table())?;
        let mut states = self.backfills(client).await?;
        states.retain(|s| s.applied && version.is_none_or(|v| v == s.version));
        for state in &mut states {
            let Some(migration) = self.migrations.get(state.version) else {
                continue;
            };
            let (Some(spec), Some(_)) = (
                &migration.backfill,
                migration.up.statements.get(state.statement),
            ) else {
                continue;
            };
            let plan = plan_statement(client, migration, spec, state.statement).await?;
            let remaining = count_on_one_core(client, &plan.remaining_sql)
                .await
                .map_err(RuntimeError::database(
                    "counting rows a backfill has not done",
                ))?;
            state.remaining = Some(remaining);
            state.verified_at = table
                .record_verification(
                    client,
                    sql_version(state.version),
                    statement_index(state.statement),
                    remaining == 0,
                )
                .await?;
        }
        Ok(states)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a real server: a table small enough to set up fast, with parallel plans made free
    /// so the planner picks one for its scan as it does for a large table by default.
    #[tokio::test]
    async fn the_count_plans_no_parallel_workers_and_leaves_the_session_setting() {
        let cluster = migrate_scratch::ScratchCluster::start().expect("scratch cluster");
        let database = cluster.create_database().expect("scratch database");
        let (client, connection) = tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(connection);
        client
            .batch_execute(
                "CREATE TABLE t (id bigint PRIMARY KEY, done boolean); \
                 INSERT INTO t SELECT g, g % 3 = 0 FROM generate_series(1, 30000) g; ANALYZE t; \
                 SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
                 SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2",
            )
            .await
            .expect("setup");
        let count_sql = "SELECT count(*) FROM t WHERE (NOT done)";
        let plan = |prefix: &'static str| {
            let client = &client;
            async move {
                client
                    .simple_query(&format!("{prefix}EXPLAIN {count_sql}"))
                    .await
                    .expect("explain")
                    .iter()
                    .filter_map(|m| match m {
                        SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                        _ => None,
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            }
        };
        assert!(plan("").await.contains("Gather"), "{}", plan("").await);
        let one_core = plan(ONE_CORE).await;
        assert!(!one_core.contains("Gather"), "{one_core}");
        assert_eq!(
            count_on_one_core(&client, count_sql).await.expect("count"),
            20_000
        );
        let after: String = client
            .query_one("SHOW max_parallel_workers_per_gather", &[])
            .await
            .expect("show")
            .get(0);
        assert_eq!(after, "2");
    }
}
