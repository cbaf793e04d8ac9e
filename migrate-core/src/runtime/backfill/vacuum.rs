//! The backfill vacuums its table itself as it goes, before autovacuum would.
//!
//! Every row a batch changes leaves a dead version behind. Left to autovacuum, a backfill
//! brings the table to autovacuum's threshold every few minutes, and the worker cleans it at
//! once: it writes its pages with the server's `backend_flush_after`, 0 by default, so they
//! pile up in the kernel's page cache and go out together when the kernel's writeback
//! comes (after 30 s on Linux), and every commit of the application queues behind that
//! burst. Measured on the benchmark's shape (a): stalls of 60-260 ms 10-30 s after each
//! autovacuum of the table, the largest part of the backfill's p99.
//!
//! So the backfill's own session vacuums the table each time its batches have changed half
//! of autovacuum's threshold for the table (the threshold plus the scale factor times its
//! rows, capped by `autovacuum_vacuum_max_threshold` on 18+, the table's own storage
//! parameters first; half, so the application's dead rows have
//! room before autovacuum's count is reached): paced as the server paces autovacuum (its
//! cost delay and limit), and writing with the run's `backend_flush_after`, so the kernel
//! writes its pages as it goes. The freed space is also there for the next batches' new row
//! versions: the table grows by a fraction of itself instead of doubling.
//!
//! `VACUUM (SKIP_LOCKED, TRUNCATE false)`: it skips the table when another vacuum holds it,
//! and never truncates the table's end (which takes an `ACCESS EXCLUSIVE` lock). Like
//! autovacuum, it yields: its `SHARE UPDATE EXCLUSIVE` lock on the table is held for the
//! whole vacuum, and a session waiting for a lock on the table behind it (an `ALTER TABLE`,
//! an `ANALYZE`, a `CREATE INDEX`) would wait that long, with the application's queries
//! queued behind an `ALTER TABLE`. The monitor connection looks for such a session while the
//! vacuum runs, and cancels the vacuum when it finds one; the next comes after as many rows
//! again. It reads the backfill's stop signals too, and cancels the vacuum when one comes up:
//! a pause, a replica's lag or an abort does not wait out a vacuum that can run as long as
//! autovacuum's of the table. Without a monitor connection (a library user's `Migrator` without
//! `with_backfill_sessions` or `with_monitor`) the vacuum cannot be watched, and is not run:
//! the table is left to autovacuum. It is left
//! to autovacuum (and said once) when autovacuum is off for the table, when this role does
//! not own it, and before the table's first ANALYZE (no estimate of its rows). A vacuum that
//! fails (a `statement_timeout`, a cancel) is logged and the backfill goes on without more.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::batch_plan::BatchedUpdate;
use crate::runtime::backfill::stops::{Stop, StopSignals};
use crate::runtime::deadline::{Limits, within};
use crate::runtime::error::RuntimeError;

/// What the time spent vacuuming is reported as, among the signals that held the backfill.
pub(crate) const VACUUMING: &str = "vacuuming the table";
/// How often the monitor looks for a session waiting behind the vacuum's lock: well under
/// the second autovacuum gives a waiter (`deadlock_timeout`) before it yields.
const YIELD_WATCH: Duration = Duration::from_millis(250);
/// Sessions waiting for a lock on the table (`$2`, its oid) that the vacuum's session
/// (`$1`) holds.
const YIELD_SQL: &str = "SELECT count(*) FROM pg_locks l \
    WHERE l.locktype = 'relation' AND l.relation::int8 = $2 AND NOT l.granted \
    AND $1 = ANY(pg_blocking_pids(l.pid))";
/// Cancels the vacuum of the session `$1`, if that session still runs it (a cancel that
/// arrived after it would cancel the session's next statement instead): sessions wait
/// behind it, or a stop signal (the operator's pause, a replica's lag, ...) came up.
const CANCEL_SQL: &str = "SELECT pg_cancel_backend(pid) FROM pg_stat_activity \
    WHERE pid = $1 AND state = 'active' AND query LIKE 'VACUUM %'";
/// The fewest rows between two vacuums: below, a vacuum's fixed cost (it reads every index
/// of the table) buys nothing autovacuum would not do as cheaply.
const MIN_ROWS_BETWEEN: i64 = 1_000;

/// One backfill statement's vacuums of its table.
pub(crate) struct TableVacuum {
    /// Rows changed between two vacuums; `None` when the backfill leaves it to autovacuum.
    every: Option<i64>,
    /// Rows changed since the last vacuum.
    since: i64,
    vacuum_sql: String,
    /// The table's oid: the lock waits the vacuum yields to are on it.
    table_oid: i64,
    /// `vacuum_cost_delay` and `vacuum_cost_limit` while vacuuming (autovacuum's) ...
    pace: (String, String),
    /// ... and the session's own, put back after.
    session: (String, String),
    /// Vacuums run so far.
    runs: u32,
}

/// What watches a vacuum: the monitor connection, the backend pid of the session that
/// runs the vacuum (the migration's), and the backfill's stop signals read on the monitor
/// (see [`StopSignals::leaving_out`]): a vacuum is cancelled when one comes up, so that an
/// operator's pause or a replica's lag stops the backfill's writes within a watch, not
/// after a vacuum that can take as long as autovacuum's of the table.
pub(crate) struct VacuumWatch<'w, 'a> {
    pub monitor: &'a Client,
    pub vacuum_pid: i32,
    pub stops: &'w mut StopSignals<'a>,
}

/// Why a vacuum was cancelled.
enum Cancelled {
    /// Sessions waited for a lock on the table behind it.
    Yielded(i64),
    /// A stop signal came up.
    Stopped(String),
}

impl TableVacuum {
    /// Reads what the vacuums go by; `enabled` false (the configuration's `backfill_vacuum`)
    /// leaves the table to autovacuum, and so does `watched` false (no monitor connection).
    pub(crate) async fn plan(
        client: &Client,
        batches: &BatchedUpdate,
        table: &str,
        enabled: bool,
        watched: bool,
        limits: Limits,
    ) -> Result<TableVacuum, RuntimeError> {
        let mut vacuum = TableVacuum {
            every: None,
            since: 0,
            vacuum_sql: batches.vacuum_sql.clone(),
            table_oid: 0,
            pace: (String::new(), String::new()),
            session: (String::new(), String::new()),
            runs: 0,
        };
        if !enabled {
            return Ok(vacuum);
        }
        if !watched {
            tracing::info!(
                table,
                "the backfill leaves its dead rows to autovacuum: without a monitor connection \
                 its own vacuum could not yield to a session waiting for the table's lock"
            );
            return Ok(vacuum);
        }
        let row = within(
            Some(limits.own),
            "reading the table's autovacuum settings",
            client.query_one(&batches.vacuum_plan_sql, &[]),
        )
        .await?
        .map_err(RuntimeError::database(
            "reading the table's autovacuum settings",
        ))?;
        let (rows, threshold, scale): (f64, f64, f64) = (row.get(0), row.get(1), row.get(2));
        let cap: Option<f64> = row.get(9);
        let (autovacuum, owner): (bool, bool) = (row.get(3), row.get(4));
        vacuum.pace = (row.get(5), row.get(6));
        vacuum.session = (row.get(7), row.get(8));
        vacuum.table_oid = row.get(10);
        let left_to_autovacuum = if !autovacuum {
            Some("autovacuum is off for the table, so its vacuums are the operator's")
        } else if !owner {
            Some("only the table's owner (or a superuser) may vacuum it")
        } else if rows < 0.0 {
            Some("the table was never analyzed: no estimate of its rows")
        } else {
            None
        };
        match left_to_autovacuum {
            Some(why) => tracing::info!(
                table,
                why,
                "the backfill leaves its dead rows to autovacuum"
            ),
            None => {
                let every = rows_between(rows, threshold, scale, cap);
                tracing::debug!(
                    table,
                    every,
                    "the backfill vacuums its table every `every` rows"
                );
                vacuum.every = Some(every);
            }
        }
        Ok(vacuum)
    }

    /// Counts `rows` the batches changed; true when a vacuum is due.
    pub(crate) fn changed(&mut self, rows: i64) -> bool {
        self.since += rows;
        self.every.is_some_and(|every| self.since >= every)
    }

    /// Vacuums the table on the migration's session, paced like autovacuum, while `watch`
    /// looks for sessions waiting behind it and for the stop signals, and returns how long
    /// it took. A vacuum cancelled for either is logged, and the next comes after as many
    /// rows again (the stop itself is the next batch's to act on); one the server refused
    /// or cancelled otherwise is logged, and no other runs. Only a lost connection is an
    /// error.
    pub(crate) async fn run(
        &mut self,
        client: &Client,
        watch: VacuumWatch<'_, '_>,
        limits: Limits,
    ) -> Result<Duration, RuntimeError> {
        let started = Instant::now();
        let rows = std::mem::take(&mut self.since);
        set_cost(client, &self.pace, limits).await?;
        let vacuuming = within(
            limits.statement,
            "vacuuming the backfill's table",
            client.batch_execute(&self.vacuum_sql),
        );
        tokio::pin!(vacuuming);
        let VacuumWatch {
            monitor,
            vacuum_pid,
            stops,
        } = watch;
        let mut cancelled = None;
        // The lock waits are looked for until the server refuses to show them.
        let mut watching_locks = true;
        let vacuumed = loop {
            tokio::select! {
                vacuumed = &mut vacuuming => break vacuumed?,
                () = tokio::time::sleep(YIELD_WATCH), if cancelled.is_none() => {
                    if watching_locks {
                        match self.waiting_behind(monitor, vacuum_pid, limits).await? {
                            Some(0) => {}
                            Some(sessions) => {
                                cancel(monitor, vacuum_pid, limits).await?;
                                cancelled = Some(Cancelled::Yielded(sessions));
                                continue;
                            }
                            None => watching_locks = false,
                        }
                    }
                    let stop = match stops.check().await? {
                        None => continue,
                        Some(Stop::Pause(reason)) => reason.to_string(),
                        Some(Stop::Abort(reason)) => reason.to_string(),
                    };
                    cancel(monitor, vacuum_pid, limits).await?;
                    cancelled = Some(Cancelled::Stopped(stop));
                }
            }
        };
        // A cancel sent as the vacuum ended may reach the statement after it: once more.
        if let Err(error) = set_cost(client, &self.session, limits).await {
            if cancelled.is_none() || !is_query_canceled(&error) {
                return Err(error);
            }
            set_cost(client, &self.session, limits).await?;
        }
        match (vacuumed, cancelled) {
            (Err(error), Some(cancelled))
                if error.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) =>
            {
                let took_ms = started.elapsed().as_millis() as u64;
                match cancelled {
                    Cancelled::Yielded(sessions) => tracing::info!(
                        waiting_sessions = sessions,
                        took_ms,
                        "the backfill's vacuum of its table yielded to sessions waiting for a \
                         lock on the table; the next comes after as many rows again"
                    ),
                    Cancelled::Stopped(reason) => tracing::info!(
                        %reason,
                        took_ms,
                        "the backfill's vacuum of its table stopped for a stop signal; the \
                         next comes after as many rows again"
                    ),
                }
            }
            (Ok(()), _) => {
                self.runs += 1;
                tracing::info!(
                    vacuum = self.runs,
                    rows_since_last = rows,
                    took_ms = started.elapsed().as_millis() as u64,
                    "backfill vacuumed its table"
                );
            }
            (Err(error), _) if error.as_db_error().is_some() => {
                tracing::warn!(
                    error = %crate::runtime::error::db_error_text(&error),
                    "the backfill's vacuum of its table failed; autovacuum will clean it"
                );
                self.every = None;
            }
            (Err(error), _) => {
                return Err(RuntimeError::database("vacuuming the backfill's table")(
                    error,
                ));
            }
        }
        Ok(started.elapsed())
    }
}

impl TableVacuum {
    /// Sessions waiting for a lock on the table behind the vacuum. `None` when the server
    /// refused to tell (logged): that vacuum's lock waits go unwatched.
    async fn waiting_behind(
        &self,
        monitor: &Client,
        vacuum_pid: i32,
        limits: Limits,
    ) -> Result<Option<i64>, RuntimeError> {
        let read = within(
            Some(limits.own),
            "looking for sessions waiting behind the backfill's vacuum",
            monitor.query_one(YIELD_SQL, &[&vacuum_pid, &self.table_oid]),
        )
        .await?;
        Ok(match read {
            Ok(row) => Some(row.get(0)),
            Err(error) if error.as_db_error().is_some() => {
                tracing::warn!(
                    error = %crate::runtime::error::db_error_text(&error),
                    "could not look for sessions waiting behind the backfill's vacuum; \
                     its lock waits go unwatched"
                );
                None
            }
            Err(error) => {
                return Err(RuntimeError::database(
                    "looking for sessions waiting behind the backfill's vacuum",
                )(error));
            }
        })
    }
}

/// Cancels the vacuum `vacuum_pid` runs, if it still runs one.
async fn cancel(monitor: &Client, vacuum_pid: i32, limits: Limits) -> Result<(), RuntimeError> {
    within(
        Some(limits.own),
        "cancelling the backfill's vacuum",
        monitor.query(CANCEL_SQL, &[&vacuum_pid]),
    )
    .await?
    .map_err(RuntimeError::database("cancelling the backfill's vacuum"))?;
    Ok(())
}

/// Half of autovacuum's threshold for a table of `rows` rows (capped at `cap`, PostgreSQL
/// 18's `autovacuum_vacuum_max_threshold`), at least [`MIN_ROWS_BETWEEN`].
fn rows_between(rows: f64, threshold: f64, scale: f64, cap: Option<f64>) -> i64 {
    let autovacuum_at = threshold + scale * rows.max(0.0);
    let autovacuum_at = cap.map_or(autovacuum_at, |cap| autovacuum_at.min(cap));
    ((autovacuum_at / 2.0) as i64).max(MIN_ROWS_BETWEEN)
}

/// A statement the server cancelled (`57014`): a cancel, or a statement timeout.
fn is_query_canceled(error: &RuntimeError) -> bool {
    matches!(error, RuntimeError::Database { error, .. }
        if error.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED))
}

async fn set_cost(
    client: &Client,
    (delay, limit): &(String, String),
    limits: Limits,
) -> Result<(), RuntimeError> {
    within(
        Some(limits.own),
        "setting the vacuum's pace",
        client.query_one(
            "SELECT set_config('vacuum_cost_delay', $1, false), \
                    set_config('vacuum_cost_limit', $2, false)",
            &[delay, limit],
        ),
    )
    .await?
    .map_err(RuntimeError::database("setting the vacuum's pace"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vacuums_come_at_half_of_autovacuums_threshold_and_never_under_a_thousand_rows() {
        // PostgreSQL's defaults: 50 rows plus a fifth of the table.
        assert_eq!(rows_between(2_000_000.0, 50.0, 0.2, None), 200_025);
        // A table's own scale factor.
        assert_eq!(rows_between(2_000_000.0, 50.0, 0.01, None), 10_025);
        assert_eq!(rows_between(1_000.0, 50.0, 0.2, None), MIN_ROWS_BETWEEN);
        assert_eq!(rows_between(-1.0, 50.0, 0.2, None), MIN_ROWS_BETWEEN);
        // PostgreSQL 18 caps autovacuum's threshold (100,000,000 by default).
        assert_eq!(
            rows_between(1e9, 50.0, 0.2, Some(100_000_000.0)),
            50_000_000
        );
    }
}
