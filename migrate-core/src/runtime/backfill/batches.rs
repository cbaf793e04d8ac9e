//! Batched execution of backfill migrations.
//!
//! Each up statement of a `.backfill.sql` file runs as keyed batches (see `batch_plan`; the
//! pieces were read from the statement when the set was checked, see
//! [`crate::StatementAnalysis`]), each batch its own short transaction, so the application's
//! writes never queue behind one long UPDATE. Progress is stored after every batch in
//! `<history table>_backfill`, so a killed backfill resumes where it stopped. After the keyed
//! pass, the rows that still match the WHERE are counted in short page-range reads; while
//! some do, a sweep (waiting for row locks, bounded by `lock_timeout`) fills them and they are
//! counted again. A count of none is the verification, and only then is the history row
//! written.
//!
//! Batches are paced by `backfill_pace`: sized to a target duration and backing off or
//! pausing on the server's signals, or fixed by the directive's `batch=`/`delay=`.
//!
//! Every pass ends: the keyed pass and each sweep stop at the largest key when they started
//! (rows inserted later belong to the next sweep), sweeps are at most `MAX_SWEEPS` (10), and a
//! batch whose updated rows still match the WHERE (the SET does not falsify it, e.g.
//! `SET a = 2 WHERE id > 5`) stops the backfill at once, since those rows would match forever.

use std::time::Instant;

use futures_util::future::Either;
use tokio_postgres::Client;
use tokio_postgres::types::{ToSql, Type};

use crate::runtime::backfill::pace::{BackfillStatus, Pacer, ProgressRow};
use crate::runtime::backfill::stops::StopSignals;
use crate::runtime::backfill::vacuum::{TableVacuum, VACUUMING, VacuumWatch};
use crate::runtime::config::BackfillControl;
use crate::runtime::state::flags::FlagStore;

use crate::batch_plan::{BatchedUpdate, key_type_sql, plan_source};
use crate::migration::{BackfillSpec, BatchSource, Migration, Statement};
use crate::runtime::deadline::within;
use crate::runtime::error::{RuntimeError, StuckCause};
use crate::runtime::executor::{
    ExecutionSettings, HistoryChange, SectionOutcome, is_lock_timeout, location, name_blockers,
    statement_error, wait_before_retry,
};
use crate::runtime::state::backfill_progress::{BackfillProgressTable, statement_index};

/// Sweeps after the keyed pass before giving up: rows that keep matching the WHERE mean
/// something (an old release without dual writes) keeps writing rows in the old shape.
const MAX_SWEEPS: u32 = 10;
/// The most keys the count after a pass lists: when it lists every row still pending, the
/// sweep takes only those rows (the few a pass skipped as locked), not every key again.
const MAX_LISTED_KEYS: i32 = 10_000;
/// How long a batch over a whole key range (`BatchedUpdate::range_sql`, no row locked
/// first) waits for a row the application holds locked before it gives the range up to the
/// batch that skips locked rows. The rows it already changed stay locked while it waits, so
/// the wait is what it can add to an application's transaction that needs one of them:
/// a few milliseconds, within the batch's own busy target.
const RANGE_LOCK_WAIT: &str = "5ms";

/// What paces the batches: the controller's settings, the second connection it watches the
/// server on, the flags table holding the operator's pause, and where it reports.
pub(crate) struct PaceContext<'a> {
    pub monitor: Option<&'a Client>,
    /// More connections for batches at once (the controller's workers).
    pub workers: &'a [Client],
    pub control: &'a BackfillControl,
    pub flags: FlagStore,
    pub report: &'a (dyn Fn(&BackfillStatus) + Sync),
}

/// Runs every up statement of a backfill migration in batches, verifies, then records
/// `history` (`None` when re-running an applied backfill: its history row stays). A failure
/// is recorded with the statement's progress, so `migrate backfill` and `migrate status` say
/// why the backfill stopped rather than that it is running.
pub(crate) async fn run(
    client: &Client,
    migration: &Migration,
    spec: &BackfillSpec,
    table: &BackfillProgressTable,
    settings: &ExecutionSettings,
    history: Option<HistoryChange<'_>>,
    pace: &PaceContext<'_>,
) -> Result<SectionOutcome, RuntimeError> {
    let mut claimed = None;
    let result = run_statements(
        client,
        migration,
        spec,
        table,
        settings,
        history,
        pace,
        &mut claimed,
    )
    .await;
    match (&result, claimed) {
        // A server that stopped answering would not answer this either; `migrate backfill`
        // then finds the session gone and says `stopped`.
        // An abort already stored its state (`aborted: <why>`, progress kept): more precise
        // than `failed`, and the next `up` resumes it.
        (Err(RuntimeError::NoAnswer { .. } | RuntimeError::BackfillAborted { .. }), _)
        | (Ok(_), _)
        | (Err(_), None) => {}
        (Err(error), Some(statement)) => {
            let version = crate::runtime::state::history::sql_version(migration.version);
            let recorded = within(
                Some(settings.limits.own),
                "recording the backfill's failure",
                table.record_failure(client, version, statement, &error.to_string()),
            )
            .await
            .and_then(|recorded| recorded);
            if let Err(record_error) = recorded {
                tracing::warn!(%record_error, "could not record the backfill's failure");
            }
        }
    }
    result
}

/// [`run`]; `claimed` is the statement whose progress row this run holds, once it does.
#[allow(clippy::too_many_arguments)]
async fn run_statements(
    client: &Client,
    migration: &Migration,
    spec: &BackfillSpec,
    table: &BackfillProgressTable,
    settings: &ExecutionSettings,
    history: Option<HistoryChange<'_>>,
    pace: &PaceContext<'_>,
    claimed: &mut Option<i32>,
) -> Result<SectionOutcome, RuntimeError> {
    let started = Instant::now();
    let own = Some(settings.limits.own);
    within(
        own,
        "creating the backfill progress table",
        table.ensure(client),
    )
    .await??;
    // Versions are checked to fit a bigint in Migrator::new.
    let version = crate::runtime::state::history::sql_version(migration.version);
    // Workers only under the controller: fixed batches are the operator's pace.
    let workers: &[Client] = match spec.pace {
        crate::migration::BackfillPace::Adaptive { .. } => pace.workers,
        crate::migration::BackfillPace::Fixed { .. } => &[],
    };
    let mut backfill_pids = vec![backend_pid(client, settings).await?];
    if !workers.is_empty() {
        // The migration session's bounds, as `up` set them: a worker's batch waits no
        // longer for a lock, and runs no longer.
        let session = within(
            own,
            "configuring the backfill worker connections",
            client.query_one(
                "SELECT current_setting('lock_timeout'), current_setting('statement_timeout')",
                &[],
            ),
        )
        .await?
        .map_err(RuntimeError::database(
            "configuring the backfill worker connections",
        ))?;
        let (lock_timeout, statement_timeout): (String, String) = (session.get(0), session.get(1));
        for worker in workers {
            within(
                own,
                "configuring a backfill worker connection",
                worker.query_one(
                    "SELECT set_config('lock_timeout', $1, false), \
                            set_config('statement_timeout', $2, false), \
                            set_config('backend_flush_after', $3, false)",
                    &[
                        &lock_timeout,
                        &statement_timeout,
                        &crate::runtime::session::RUN_FLUSH_AFTER,
                    ],
                ),
            )
            .await?
            .map_err(RuntimeError::database(
                "configuring a backfill worker connection",
            ))?;
            backfill_pids.push(backend_pid(worker, settings).await?);
        }
    }
    let mut most_attempts = 1;
    for (index, statement) in migration.up.statements.iter().enumerate() {
        let statement_index = statement_index(index);
        let batches = within(
            own,
            "reading the backfill key's type",
            plan_statement(client, migration, spec, index),
        )
        .await??;
        let mut progress = within(
            own,
            "reading backfill progress",
            table.load_or_start(client, version, statement_index),
        )
        .await??;
        if progress.finished {
            continue;
        }
        within(
            own,
            "recording the backfill's session",
            table.claim(client, version, statement_index),
        )
        .await??;
        *claimed = Some(statement_index);
        let never_done = |rows: i64, keys: Vec<String>| RuntimeError::BackfillRowsStuck {
            location: location(migration, Some(statement)),
            cause: StuckCause::SetKeepsMatching,
            rows,
            keys,
            key_column: spec.key.to_string(),
        };
        let aborted = |reason| RuntimeError::BackfillAborted {
            location: location(migration, Some(statement)),
            reason: Box::new(reason),
        };
        let runner = BatchRunner {
            client,
            batches: &batches,
            migration,
            statement,
            settings,
        };
        let row = ProgressRow {
            table,
            version,
            statement: statement_index,
        };
        let mut pacer = Pacer::start(
            client,
            pace.monitor,
            backfill_pids.clone(),
            spec.pace,
            pace.control,
            pace.flags.clone(),
            spec.table_name(),
            &batches.estimated_rows_sql,
            progress.rows_done,
            settings.limits,
        )
        .await?;
        let mut vacuum = TableVacuum::plan(
            client,
            &batches,
            &spec.table_name(),
            pace.control.vacuum,
            pace.monitor.is_some(),
            settings.limits,
        )
        .await?;
        // The stop signals as the monitor reads them while the vacuum runs on the migration's
        // session (whose transaction, as old as the vacuum, is not the application's).
        let mut vacuum_stops = pace.monitor.map(|monitor| {
            let stops = StopSignals::new(
                monitor,
                pace.flags.clone(),
                pace.control,
                settings.limits,
                spec.table_name(),
            )
            .leaving_out(vec![backfill_pids[0]]);
            (monitor, stops)
        });
        // Keyed pass: SKIP LOCKED, resumable from the stored cursor, up to the largest key
        // now (a writer inserting faster than the batches cannot keep it running).
        let bound = runner.upper_bound(&batches.upper_bound_sql).await?;
        loop {
            let size = pacer
                .ready(client, &row, &progress, pace.report)
                .await?
                .map_err(aborted)?;
            // The round's key ranges, one per batch at once, each starting where the one
            // before ends: disjoint, so no row is updated twice; the round's last range may
            // end at the pass's bound (the end of the table).
            let connections: Vec<&Client> = std::iter::once(client)
                .chain(workers.iter())
                .take(pacer.workers() as usize)
                .collect();
            let mut ranges = Vec::with_capacity(connections.len());
            let mut after = progress.last_key.clone();
            for _ in &connections {
                let end = runner
                    .range_end(
                        &batches.range_end_sql,
                        after.as_deref(),
                        bound.as_deref(),
                        size,
                    )
                    .await?;
                let last = end.is_none();
                ranges.push((after.clone(), end.clone()));
                after = end;
                if last {
                    break;
                }
            }
            let round = ranges.len() as u32;
            let batch = pacer
                .run(
                    size,
                    round,
                    runner.run_round(
                        &batches.range_sql,
                        &batches.batch_sql,
                        &connections,
                        &ranges,
                        bound.as_deref(),
                        size,
                    ),
                    |round: &RoundOutcome| round.keys_covered / i64::from(round.batches.max(1)),
                )
                .await?;
            most_attempts = most_attempts.max(batch.attempts);
            if batch.still_pending > 0 {
                return Err(never_done(batch.still_pending, batch.stuck_keys));
            }
            progress.rows_done += batch.updated;
            match batch.last_key {
                Some(last_key) => progress.last_key = Some(last_key),
                // No batch reached a key: nothing changed since the last record.
                None => break,
            }
            pacer.record(client, &row, &progress, pace.report).await?;
            tracing::debug!(
                version = migration.version,
                rows_done = progress.rows_done,
                last_key = progress.last_key.as_deref(),
                batches = round,
                "backfill batch"
            );
            if batch.finished {
                break;
            }
            if vacuum.changed(batch.updated)
                && let Some((monitor, stops)) = vacuum_stops.as_mut()
            {
                let watch = VacuumWatch {
                    monitor,
                    vacuum_pid: backfill_pids[0],
                    stops,
                };
                let took = vacuum.run(client, watch, settings.limits).await?;
                pacer.throttle(VACUUMING, took);
            }
            pacer.rest().await;
        }
        tracing::info!(
            version = migration.version,
            file = %migration.file_name,
            line = statement.line,
            rows_done = progress.rows_done,
            "backfill keyed pass done; counting the rows that still match the WHERE"
        );
        // What still matches the WHERE is counted in short reads first, and swept only when
        // something does: rows skipped because they were locked, or written in the old shape
        // since. A sweep reads every row by key, like the pass, while the count reads pages
        // in order; a sweep that finds nothing, the usual case, was the costlier way to say
        // so. Each sweep stops at the largest key when it started and is throttled like the
        // keyed pass; the sweeps must converge: a sweep that changes more rows than the one
        // before it means rows in the old shape arrive faster than the backfill fills them.
        let mut sweeps = 0;
        let mut previous: Option<i64> = None;
        loop {
            let pending = super::verify::count_in_short_reads(
                client,
                &batches,
                pacer.scan_target(),
                settings.limits.statement,
                MAX_LISTED_KEYS,
                |e| statement_error(migration, Some(statement), 1, e),
                |took| {
                    let rest = pacer.scan_rest(took);
                    // Throttling between reads, as between batches.
                    async move {
                        if !rest.is_zero() {
                            tokio::time::sleep(rest).await;
                        }
                    }
                },
            )
            .await?;
            let remaining = pending.rows;
            if remaining == 0 {
                break;
            }
            if previous == Some(0) {
                // The last sweep changed nothing, yet rows match: written behind it.
                return Err(runner.left_behind(spec, remaining).await);
            }
            if sweeps >= MAX_SWEEPS {
                return Err(RuntimeError::Backfill {
                    location: location(migration, Some(statement)),
                    problem: format!(
                        "rows keep matching the WHERE: each of {MAX_SWEEPS} sweeps after the \
                         keyed pass found new ones ({} in the last, {remaining} now): something \
                         keeps writing rows in the old shape (a release without dual writes?); \
                         deploy code that writes the new shape, then run again (the backfill \
                         resumes)",
                        previous.unwrap_or(0)
                    ),
                });
            }
            sweeps += 1;
            tracing::info!(
                version = migration.version,
                file = %migration.file_name,
                sweep = sweeps,
                rows = remaining,
                "backfill sweeping rows that still match the WHERE: skipped as locked during \
                 the pass, or written in the old shape since"
            );
            let mut changed = 0;
            // Every row still pending listed: only those keys are swept, else every key up
            // to the largest now.
            let mut listed = pending.all_listed().then(|| pending.keys.into_iter());
            let mut cursor: Option<String> = None;
            let bound = match listed {
                Some(_) => None,
                None => runner.upper_bound(&batches.upper_bound_sql).await?,
            };
            loop {
                let size = pacer
                    .ready(client, &row, &progress, pace.report)
                    .await?
                    .map_err(aborted)?;
                let sweep = match listed.as_mut() {
                    Some(keys) => {
                        let keys: Vec<String> =
                            keys.take(usize::try_from(size).unwrap_or(1)).collect();
                        if keys.is_empty() {
                            break;
                        }
                        Either::Left(runner.run_keys(&batches.keys_sweep_sql, keys))
                    }
                    None => Either::Right(runner.run(
                        &batches.sweep_sql,
                        &batches.range_end_sql,
                        cursor.as_deref(),
                        bound.as_deref(),
                        size,
                    )),
                };
                let batch = pacer
                    .run(size, 1, sweep, |batch| batch.keys_covered)
                    .await?;
                most_attempts = most_attempts.max(batch.attempts);
                if batch.still_pending > 0 {
                    return Err(never_done(batch.still_pending, batch.stuck_keys));
                }
                changed += batch.updated;
                progress.rows_done += batch.updated;
                if let Some(before) = previous.filter(|&before| changed > before) {
                    return Err(RuntimeError::Backfill {
                        location: location(migration, Some(statement)),
                        problem: format!(
                            "rows matching the WHERE are written faster than the backfill fills \
                             them: sweep {sweeps} has already changed {changed} row(s), more than \
                             the {before} of sweep {}; something keeps writing rows in the old \
                             shape (a release without dual writes?); deploy code that writes the \
                             new shape, then run again (the backfill resumes), or raise batch= / \
                             lower delay=",
                            sweeps - 1
                        ),
                    });
                }
                match batch.last_key {
                    Some(key) => cursor = Some(key),
                    // A range sweep past the last key is done; a batch of listed keys that
                    // updated none (filled by someone else since the count) is not.
                    None if listed.is_none() => break,
                    None => {}
                }
                // Stored as well as reported: the stored report (`migrate backfill`) is then
                // the one `up` prints from the last event, sweeps included.
                pacer.record(client, &row, &progress, pace.report).await?;
                pacer.rest().await;
            }
            previous = Some(changed);
        }
        within(
            own,
            "recording backfill verification",
            table.finish_verified(client, version, statement_index, progress.rows_done),
        )
        .await??;
    }
    let duration = started.elapsed();
    if let Some(history) = history {
        within(
            own,
            "recording the backfill in the history",
            history.execute_after(client, duration),
        )
        .await?
        .map_err(|e| statement_error(migration, None, 1, e))?;
    }
    Ok(SectionOutcome {
        duration,
        attempts: most_attempts,
    })
}

/// The batches of the `index`-th up statement of a backfill, from the pieces the check read
/// of it and the key column's type in the catalog.
pub(crate) async fn plan_statement(
    client: &Client,
    migration: &Migration,
    spec: &BackfillSpec,
    index: usize,
) -> Result<BatchedUpdate, RuntimeError> {
    let statement = &migration.up.statements[index];
    let backfill_error = |problem: String| RuntimeError::Backfill {
        location: location(migration, Some(statement)),
        problem,
    };
    let source = batch_source(migration, spec, index).map_err(backfill_error)?;
    // The key type is read from the catalog: the cursor is cast to it.
    let key_type: Option<String> = client
        .query_opt(&key_type_sql(spec), &[])
        .await
        .map_err(|e| statement_error(migration, Some(statement), 1, e))?
        .map(|row| row.get(0));
    let key_type = key_type.ok_or_else(|| {
        backfill_error(format!(
            "table {} has no column {}",
            spec.table_name(),
            spec.key
        ))
    })?;
    plan_source(&source, spec, &key_type).map_err(|problem| backfill_error(problem.to_owned()))
}

/// The `index`-th statement's batch pieces: stored by the check, or, for a set built by hand,
/// read from the statement (with the `lint` feature; without it, such a set is refused).
fn batch_source<'m>(
    migration: &'m Migration,
    spec: &BackfillSpec,
    index: usize,
) -> Result<std::borrow::Cow<'m, BatchSource>, String> {
    let stored = migration
        .analysis
        .as_ref()
        .and_then(|analysis| analysis.batches.get(index));
    match stored {
        Some(source) => Ok(std::borrow::Cow::Borrowed(source)),
        #[cfg(feature = "lint")]
        None => Ok(std::borrow::Cow::Owned(crate::batch_plan::source_of(
            &migration.up.statements[index].sql,
            spec,
        ))),
        #[cfg(not(feature = "lint"))]
        None => {
            let _ = spec;
            Err(
                "the set holds no batch plan for this statement: build it with \
                 `migrations!()` or `check_dir`, or enable migrate-core's `lint` feature"
                    .to_owned(),
            )
        }
    }
}

/// Runs the batches of one backfill statement.
struct BatchRunner<'a> {
    client: &'a Client,
    batches: &'a BatchedUpdate,
    migration: &'a Migration,
    statement: &'a Statement,
    settings: &'a ExecutionSettings,
}

/// What the batches of a round did together.
#[derive(Debug, Default)]
struct RoundOutcome {
    batches: u32,
    updated: i64,
    keys_covered: i64,
    /// Where the next round starts; `None` when no batch reached a key.
    last_key: Option<String>,
    /// A batch found no key left: the pass is done.
    finished: bool,
    still_pending: i64,
    /// The first few keys still pending, over the round's batches in key order.
    stuck_keys: Vec<String>,
    attempts: u32,
}

/// The backend of `client`: its batches' lock waits are the application's, not ours.
async fn backend_pid(client: &Client, settings: &ExecutionSettings) -> Result<i32, RuntimeError> {
    Ok(within(
        Some(settings.limits.own),
        "reading a backfill connection's backend pid",
        client.query_one("SELECT pg_backend_pid()", &[]),
    )
    .await?
    .map_err(RuntimeError::database(
        "reading a backfill connection's backend pid",
    ))?
    .get(0))
}

/// What one batch did.
struct BatchOutcome {
    updated: i64,
    /// Keys the batch covered: its size when it had a full key range, else the rows it
    /// updated (the end of the pass). The controller's rate is measured in these.
    keys_covered: i64,
    /// Where the next batch starts: the end of the batch's key range, or at the end of the
    /// pass its last key; `None` when the batch was empty (the pass is done).
    last_key: Option<String>,
    /// Rows updated by the batch that still match the WHERE.
    still_pending: i64,
    /// When `still_pending` is not zero, the first few keys of the batch's range still
    /// pending: the rows to name.
    stuck_keys: Vec<String>,
    attempts: u32,
}

impl BatchRunner<'_> {
    /// The first keys after `after` and up to `upper` of rows still pending.
    async fn pending_keys(
        &self,
        after: Option<&str>,
        upper: Option<&str>,
    ) -> Result<Vec<String>, RuntimeError> {
        let rows = within(
            self.settings.limits.statement,
            "reading the keys of rows a backfill left",
            self.client
                .query(&self.batches.pending_keys_sql, &[&after, &upper]),
        )
        .await?
        .map_err(|e| statement_error(self.migration, Some(self.statement), 1, e))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    /// The error for `remaining` rows still pending after the keyed pass and the sweeps:
    /// rows with a NULL key (never reached by batches), else rows written in the old shape
    /// after the last sweep passed them, named by their first keys.
    async fn left_behind(&self, spec: &BackfillSpec, remaining: i64) -> RuntimeError {
        let null_keys = within(
            self.settings.limits.statement,
            "counting rows of a backfill with a NULL key",
            self.client.query_one(&self.batches.null_key_rows_sql, &[]),
        )
        .await;
        let null_keys: i64 = match null_keys {
            Ok(Ok(row)) => row.get(0),
            Ok(Err(error)) => {
                return statement_error(self.migration, Some(self.statement), 1, error);
            }
            Err(error) => return error,
        };
        let location = location(self.migration, Some(self.statement));
        if null_keys > 0 {
            return RuntimeError::BackfillRowsStuck {
                location,
                cause: StuckCause::NullKey,
                rows: null_keys,
                keys: Vec::new(),
                key_column: spec.key.to_string(),
            };
        }
        let keys = match self.pending_keys(None, None).await {
            Ok(keys) => keys,
            Err(error) => return error,
        };
        RuntimeError::Backfill {
            location,
            problem: format!(
                "verification failed: {remaining} row(s) still match the WHERE ({} = {}) after \
                 the keyed pass and a sweep that found none: they were written (or changed back) \
                 in the old shape since the last sweep passed them; is a release without dual \
                 writes still running? Deploy code that writes the new shape, then run \
                 `migrate up` again (the backfill resumes and sweeps them; for a backfill \
                 already applied, `migrate backfill rerun {}`)",
                spec.key,
                crate::runtime::error::key_list(&keys),
                self.migration.version
            ),
        }
    }

    /// The table's largest key now, the upper bound of a pass.
    async fn upper_bound(&self, sql: &str) -> Result<Option<String>, RuntimeError> {
        Ok(within(
            self.settings.limits.statement,
            "reading the backfill's largest key",
            self.client.query_opt(sql, &[]),
        )
        .await?
        .map_err(|e| statement_error(self.migration, Some(self.statement), 1, e))?
        .and_then(|row| row.get(0)))
    }

    /// The end of the key range of the next `batch_size` keys after `after` (up to `bound`):
    /// `None` when fewer keys are left (the batch then runs to `bound`). It takes no lock: a
    /// constant range keeps the batch on the key's index (see `BatchedUpdate::range_end_sql`).
    async fn range_end(
        &self,
        range_end_sql: &str,
        after: Option<&str>,
        bound: Option<&str>,
        batch_size: i64,
    ) -> Result<Option<String>, RuntimeError> {
        Ok(crate::runtime::deadline::within(
            self.settings.limits.statement,
            "finding the end of a backfill batch's key range",
            self.client.query_typed_opt(
                range_end_sql,
                &[
                    (&after, Type::TEXT),
                    (&batch_size, Type::INT8),
                    (&bound, Type::TEXT),
                ],
            ),
        )
        .await?
        .map_err(|e| statement_error(self.migration, Some(self.statement), 1, e))?
        .map(|row| row.get(0)))
    }

    /// One batch of `sql` over the next `batch_size` keys after `after` (up to `bound`), in
    /// its own implicit transaction, retried on `lock_timeout` (55P03).
    async fn run(
        &self,
        sql: &str,
        range_end_sql: &str,
        after: Option<&str>,
        bound: Option<&str>,
        batch_size: i64,
    ) -> Result<BatchOutcome, RuntimeError> {
        let range_end = self
            .range_end(range_end_sql, after, bound, batch_size)
            .await?;
        self.run_range(self.client, None, sql, after, range_end, bound, batch_size)
            .await
    }

    /// The batches of a round at once, batch `i` over `ranges[i]` on `connections[i]`: a
    /// full range as `range_sql` first, else (or when a row lock held that up) as `sql`.
    async fn run_round(
        &self,
        range_sql: &str,
        sql: &str,
        connections: &[&Client],
        ranges: &[(Option<String>, Option<String>)],
        bound: Option<&str>,
        batch_size: i64,
    ) -> Result<RoundOutcome, RuntimeError> {
        let outcomes = futures_util::future::join_all(ranges.iter().zip(connections).map(
            |((after, end), connection)| {
                self.run_range(
                    connection,
                    Some(range_sql),
                    sql,
                    after.as_deref(),
                    end.clone(),
                    bound,
                    batch_size,
                )
            },
        ))
        .await;
        let mut round = RoundOutcome {
            batches: u32::try_from(ranges.len()).unwrap_or(u32::MAX),
            ..RoundOutcome::default()
        };
        for outcome in outcomes {
            let outcome = outcome?;
            round.updated += outcome.updated;
            round.keys_covered += outcome.keys_covered;
            round.still_pending += outcome.still_pending;
            // Each batch names at most five (`pending_keys_sql`); so does the round.
            let room = 5usize.saturating_sub(round.stuck_keys.len());
            round
                .stuck_keys
                .extend(outcome.stuck_keys.into_iter().take(room));
            round.attempts = round.attempts.max(outcome.attempts);
            // Ranges are in key order: the last one that reached a key is where the next
            // round starts; one that found nothing (no range end, no row) ends the pass.
            match outcome.last_key {
                Some(key) => round.last_key = Some(key),
                None => round.finished = true,
            }
        }
        Ok(round)
    }

    /// One batch over `after..range_end` (or `after..bound`, at most `batch_size` keys,
    /// when `range_end` is `None`) on `connection`: a full range as `range_sql` when given
    /// and no row lock holds it up longer than `RANGE_LOCK_WAIT`, else as `sql`.
    #[allow(clippy::too_many_arguments)]
    async fn run_range(
        &self,
        connection: &Client,
        range_sql: Option<&str>,
        sql: &str,
        after: Option<&str>,
        range_end: Option<String>,
        bound: Option<&str>,
        batch_size: i64,
    ) -> Result<BatchOutcome, RuntimeError> {
        let whole_range = match (range_sql, range_end.as_deref()) {
            (Some(range_sql), Some(end)) => {
                self.run_whole_range(connection, range_sql, after, end)
                    .await?
            }
            _ => None,
        };
        let (row, attempts) = match whole_range {
            Some(row) => (row, 1),
            None => {
                let batch_bound = range_end.as_deref().or(bound);
                self.execute(
                    connection,
                    sql,
                    &[
                        (&after, Type::TEXT),
                        (&batch_size, Type::INT8),
                        (&batch_bound, Type::TEXT),
                    ],
                )
                .await?
            }
        };
        let (updated, batch_last_key, still_pending) = batch_row(&row);
        let upper = range_end.as_deref().or(batch_last_key.as_deref());
        let stuck_keys = self.stuck_keys(still_pending, after, upper).await?;
        let (keys_covered, last_key) = match &range_end {
            // A full range: the next batch starts after it, also when none of its rows were
            // pending (done already, or locked: the sweeps catch those).
            Some(end) => (batch_size, Some(end.clone())),
            None => (updated, batch_last_key),
        };
        Ok(BatchOutcome {
            updated,
            keys_covered,
            last_key,
            still_pending,
            stuck_keys,
            attempts,
        })
    }

    /// The batch over `after..=end` as one statement (`range_sql`) in its own transaction,
    /// whose lock wait is `RANGE_LOCK_WAIT`; `None` when a row lock held it that long (the
    /// transaction rolled back: nothing changed), for the caller to run the batch that
    /// skips locked rows. Begin, batch and commit go in one round trip: tokio-postgres
    /// sends requests in the order their futures are first polled, and a COMMIT after a
    /// failed statement ends the transaction as a ROLLBACK.
    async fn run_whole_range(
        &self,
        connection: &Client,
        range_sql: &str,
        after: Option<&str>,
        end: &str,
    ) -> Result<Option<tokio_postgres::Row>, RuntimeError> {
        let (migration, statement) = (self.migration, self.statement);
        let params: [(&(dyn ToSql + Sync), Type); 2] = [(&after, Type::TEXT), (&end, Type::TEXT)];
        // `SET LOCAL`: the wait ends with the transaction.
        let begin = format!("BEGIN; SET LOCAL lock_timeout = '{RANGE_LOCK_WAIT}'");
        let (begun, batch, ended) = within(
            self.settings.limits.statement,
            "running a backfill batch",
            async {
                tokio::join!(
                    connection.batch_execute(&begin),
                    connection.query_typed_one(range_sql, &params),
                    connection.batch_execute("COMMIT"),
                )
            },
        )
        .await?;
        let failed = |error| statement_error(migration, Some(statement), 1, error);
        begun.map_err(failed)?;
        let row = match batch {
            Ok(row) => Some(row),
            Err(error) if is_lock_timeout(&error) => None,
            Err(error) => {
                let error = failed(error);
                return Err(name_blockers(connection, error, migration, &[statement]).await);
            }
        };
        ended.map_err(failed)?;
        if row.is_none() {
            tracing::debug!(
                version = migration.version,
                after,
                end,
                wait = RANGE_LOCK_WAIT,
                "a row of the batch's range is locked; the batch skips the locked rows"
            );
        }
        Ok(row)
    }

    /// One sweep batch of the rows with `keys` (`keys_sweep_sql`), on the migration's
    /// connection. Its last key is the largest it updated (`None` when it updated none).
    async fn run_keys(&self, sql: &str, keys: Vec<String>) -> Result<BatchOutcome, RuntimeError> {
        let (row, attempts) = self
            .execute(self.client, sql, &[(&keys, Type::TEXT_ARRAY)])
            .await?;
        let (updated, last_key, still_pending) = batch_row(&row);
        let stuck_keys = self
            .stuck_keys(still_pending, None, last_key.as_deref())
            .await?;
        Ok(BatchOutcome {
            updated,
            keys_covered: i64::try_from(keys.len()).unwrap_or(i64::MAX),
            last_key,
            still_pending,
            stuck_keys,
            attempts,
        })
    }

    /// Up to five keys in `after..=upper` a batch left still matching the WHERE, when it
    /// says it left some (`still_pending`).
    async fn stuck_keys(
        &self,
        still_pending: i64,
        after: Option<&str>,
        upper: Option<&str>,
    ) -> Result<Vec<String>, RuntimeError> {
        if still_pending > 0 {
            self.pending_keys(after, upper).await
        } else {
            Ok(Vec::new())
        }
    }

    /// A batch statement's one row, in its own implicit transaction, retried on
    /// `lock_timeout` (55P03); with the attempts it took. Typed, so one round trip (no
    /// Prepare first), and planned for its own parameters each time (an unnamed statement,
    /// never a generic plan that could not use the key range).
    async fn execute(
        &self,
        connection: &Client,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<(tokio_postgres::Row, u32), RuntimeError> {
        let (migration, statement, settings) = (self.migration, self.statement, self.settings);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let answer = crate::runtime::deadline::within(
                settings.limits.statement,
                "running a backfill batch",
                connection.query_typed_one(sql, params),
            )
            .await?;
            match answer {
                Ok(row) => return Ok((row, attempt)),
                Err(error) if is_lock_timeout(&error) && attempt <= settings.lock_retries => {
                    wait_before_retry(self.client, migration, Some(statement), attempt, settings)
                        .await;
                }
                Err(error) => {
                    let error = statement_error(migration, Some(statement), attempt, error);
                    return Err(name_blockers(connection, error, migration, &[statement]).await);
                }
            }
        }
    }
}

/// A batch statement's row (`BatchedUpdate::batch_sql` and its sweeps): the rows it updated,
/// the largest key it took, and the rows it updated that still match the WHERE.
fn batch_row(row: &tokio_postgres::Row) -> (i64, Option<String>, i64) {
    (row.get(0), row.get(1), row.get(2))
}
