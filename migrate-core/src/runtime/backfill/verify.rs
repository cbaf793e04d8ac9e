//! Backfill status and verification (`migrate backfill`, `migrate verify`).
//!
//! A backfill is verified once when it runs (its history row is written only then). Old
//! application code that does not dual-write can still create rows in the old shape
//! afterwards, so before a contract, or any time, `verify` checks again that no row matches
//! a backfill statement's WHERE, and records `verified_at` when none does. When rows match,
//! it clears `verified_at`: a verification that failed must not leave an older success in
//! place for the contract gate to read. (The gate also counts again itself, see
//! [`crate::runtime::gates`].)

use std::future::Future;
use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::Client;

use super::batches::plan_statement;
use crate::batch_plan::BatchedUpdate;
use crate::migration::Phase;
use crate::runtime::Migrator;
use crate::runtime::deadline::within;
use crate::runtime::error::RuntimeError;
use crate::runtime::state::backfill_progress::{BackfillProgressTable, statement_index};
use crate::runtime::state::history::sql_version;

/// What a count's timeout names.
const COUNTING: &str = "counting rows a backfill has not done";
/// How long each read of `migrate verify`'s count aims to last without a busy target.
const VERIFY_READ_TARGET: Duration = Duration::from_millis(10);
/// Pages the first read of [`count_in_short_reads`] covers (1 MB at 8 kB pages).
const FIRST_READ_PAGES: i64 = 128;
/// The most pages one read covers (1 GB): a bound on a read whatever the measured rate.
const MAX_READ_PAGES: i64 = 131_072;

/// The rows a backfill still has pending, as a count in short reads found them.
#[derive(Debug, Default)]
pub(crate) struct PendingRows {
    /// How many.
    pub rows: i64,
    /// The keys (as text) of the first rows counted, up to the count's `list_up_to`; rows
    /// with a NULL key are counted, never listed.
    pub keys: Vec<String>,
}

impl PendingRows {
    /// Every row counted is listed.
    pub fn all_listed(&self) -> bool {
        usize::try_from(self.rows).is_ok_and(|rows| rows == self.keys.len())
    }
}

/// Counts the rows a backfill still has pending (`plan`'s `remaining_in_pages_sql`) in reads
/// of consecutive heap pages, a TID range scan each, on one core, each sized to last about
/// `target`, with `rest(took)` awaited after each read; lists the keys of up to
/// `list_up_to` of them.
///
/// One count of a large table is one long burst on a CPU: about 100 ms per 1,000,000 rows,
/// while the application's sessions queue for that CPU. Measured on the 2-core machine
/// (`scripts/bench-cpu-share.sh`): CPU work taken in 50 ms bursts costs the application's
/// p99 several times what the same work in 10 ms bursts does. All reads share one
/// snapshot (a `REPEATABLE READ READ ONLY` transaction), so a row an application moves to an
/// earlier page while the count runs is still counted where it was. Each read is bounded by
/// `statement_limit`; a database error is the caller's `failed(error)`, so that the backfill
/// names its statement.
pub(crate) async fn count_in_short_reads<R, F>(
    client: &Client,
    plan: &BatchedUpdate,
    target: Duration,
    statement_limit: Option<Duration>,
    list_up_to: i32,
    failed: impl Fn(tokio_postgres::Error) -> RuntimeError,
    mut rest: R,
) -> Result<PendingRows, RuntimeError>
where
    R: FnMut(Duration) -> F,
    F: Future<Output = ()>,
{
    // One core: a read this short gains nothing from parallel workers, and PostgreSQL's
    // default would give a large one two, every core of a small server.
    client
        .batch_execute(
            "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; \
             SET LOCAL max_parallel_workers_per_gather = 0",
        )
        .await
        .map_err(&failed)?;
    let counted = async {
        // The snapshot is taken by this first query: every row it sees lies on a page below
        // the size read here.
        let pages: i64 = within(
            statement_limit,
            COUNTING,
            client.query_one(&plan.table_pages_sql, &[]),
        )
        .await?
        .map_err(&failed)?
        .get(0);
        let (mut from, mut read) = (0i64, FIRST_READ_PAGES);
        let mut pending = PendingRows::default();
        while from < pages {
            let to = from.saturating_add(read).min(pages);
            let started = Instant::now();
            let wanted = list_up_to
                .saturating_sub(i32::try_from(pending.keys.len()).unwrap_or(i32::MAX))
                .max(0);
            let row = within(
                statement_limit,
                COUNTING,
                client.query_one(
                    &plan.remaining_in_pages_sql,
                    &[&format!("({from},0)"), &format!("({to},0)"), &wanted],
                ),
            )
            .await?
            .map_err(&failed)?;
            let took = started.elapsed();
            pending.rows += row.get::<_, i64>(0);
            if let Some(keys) = row.get::<_, Option<Vec<String>>>(1) {
                pending.keys.extend(keys);
            }
            // The next read sized from this one's pages per second, at most doubling.
            let per_page = took.as_secs_f64() / (to - from) as f64;
            if per_page > 0.0 {
                let wanted = (target.as_secs_f64() / per_page) as i64;
                read = wanted.clamp(1, read.saturating_mul(2).min(MAX_READ_PAGES));
            }
            from = to;
            if from < pages {
                rest(took).await;
            }
        }
        Ok::<_, RuntimeError>(pending)
    }
    .await;
    match counted {
        Ok(pending) => {
            client.batch_execute("COMMIT").await.map_err(&failed)?;
            Ok(pending)
        }
        Err(error) => {
            // Best effort: the error is what the caller needs to see.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(error)
        }
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
            // In short reads at half duty: `verify` runs beside the application too.
            let remaining = count_in_short_reads(
                client,
                &plan,
                self.config
                    .backfill
                    .busy_target
                    .unwrap_or(VERIFY_READ_TARGET),
                self.config.limits().statement,
                0,
                |error| RuntimeError::database(COUNTING)(error),
                |took| tokio::time::sleep(took),
            )
            .await?
            .rows;
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

#[cfg(all(test, feature = "lint"))]
mod tests {
    use super::*;
    use crate::batch_plan::plan;
    use crate::migration::{BackfillPace, BackfillSpec};
    use std::borrow::Cow;
    use tokio_postgres::SimpleQueryMessage;

    /// On a real server: parallel plans made free, so a whole-table count would take workers.
    #[tokio::test]
    async fn the_count_reads_page_ranges_on_one_core_in_one_snapshot() {
        let cluster = migrate_scratch::ScratchCluster::start().expect("scratch cluster");
        let database = cluster.create_database().expect("scratch database");
        let connect = || async {
            let (client, connection) =
                tokio_postgres::connect(database.url(), tokio_postgres::NoTls)
                    .await
                    .expect("connect");
            tokio::spawn(connection);
            client
        };
        let (client, other) = (connect().await, connect().await);
        client
            .batch_execute(
                "CREATE TABLE t (id bigint PRIMARY KEY, done boolean); \
                 INSERT INTO t SELECT g, g % 3 = 0 FROM generate_series(1, 30000) g; ANALYZE t; \
                 SET parallel_setup_cost = 0; SET parallel_tuple_cost = 0; \
                 SET min_parallel_table_scan_size = 0; SET max_parallel_workers_per_gather = 2",
            )
            .await
            .expect("setup");
        let spec = BackfillSpec {
            schema: None,
            table: Cow::Borrowed("t"),
            key: Cow::Borrowed("id"),
            pace: BackfillPace::Adaptive { target_ms: None },
        };
        let planned =
            plan("UPDATE t SET done = true WHERE NOT done", &spec, "bigint").expect("plan");
        let explained = client
            .simple_query(&format!(
                "BEGIN; SET LOCAL max_parallel_workers_per_gather = 0; EXPLAIN {}; ROLLBACK",
                planned
                    .remaining_in_pages_sql
                    .replace("$1", "'(0,0)'")
                    .replace("$2", "'(10,0)'")
                    .replace("$3", "0")
            ))
            .await
            .expect("explain")
            .iter()
            .filter_map(|m| match m {
                SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n");
        assert!(explained.contains("Tid Range Scan"), "{explained}");
        assert!(!explained.contains("Gather"), "{explained}");
        // Reads a page or so each; after the first, another session deletes every pending
        // row: the count still sees them all, as they were when it began.
        let mut reads = 0u32;
        let remaining = count_in_short_reads(
            &client,
            &planned,
            Duration::from_micros(1),
            Some(Duration::from_secs(30)),
            25,
            |error| RuntimeError::database(COUNTING)(error),
            |_| {
                reads += 1;
                let first = reads == 1;
                let other = &other;
                async move {
                    if first {
                        other
                            .batch_execute("DELETE FROM t WHERE NOT done")
                            .await
                            .expect("delete");
                    }
                }
            },
        )
        .await
        .expect("count");
        assert_eq!(remaining.rows, 20_000);
        // The first 25 counted are listed, and only pending ones (not multiples of 3).
        let listed: Vec<i64> = remaining.keys.iter().map(|k| k.parse().unwrap()).collect();
        assert_eq!(listed.len(), 25, "{listed:?}");
        assert!(listed.iter().all(|k| k % 3 != 0), "{listed:?}");
        assert!(!remaining.all_listed());
        assert!(reads > 10, "{reads} reads");
        // The transaction is over and the session's own setting is as it was.
        let after = client
            .query_one(
                "SELECT current_setting('max_parallel_workers_per_gather'), \
                 current_setting('transaction_isolation'), \
                 (SELECT count(*) FROM t WHERE NOT done)",
                &[],
            )
            .await
            .expect("after");
        assert_eq!(after.get::<_, String>(0), "2");
        assert_eq!(after.get::<_, String>(1), "read committed");
        assert_eq!(after.get::<_, i64>(2), 0);
    }
}
