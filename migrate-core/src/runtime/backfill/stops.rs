//! The stop signals of a backfill: reasons not to run the next batch, read on the migration's
//! connection before a batch (and on the monitor's while the backfill's vacuum runs, which
//! they cancel: see `vacuum`), whatever paces the batches (the controller or the fixed
//! `batch=`/`delay=`), once [`STOP_READ_INTERVAL`] (or `pause_poll`, when shorter) has passed
//! since the last reading that found none: they change over seconds, and reading five of
//! them before each 3 ms batch took a round trip each, most of a cycle beside a busy
//! application. A reason either **pauses** the backfill (it waits, re-reading the
//! signals every `pause_poll`, and goes on once none holds) or **aborts** it (the run fails
//! with [`RuntimeError::BackfillAborted`](crate::runtime::RuntimeError::BackfillAborted); its progress
//! is stored, so the next `up` resumes it). An abort is decided only on a second reading a
//! poll later, so one odd sample never stops a deploy.
//!
//! Pause: the operator's pause (the `migrate.backfill_paused` flag, in the flags table every
//! runner reads), the configured throttle query, replica replay lag, the WAL archiver's
//! backlog, an autovacuum of the backfill's table, and the oldest transaction holding back
//! the xmin horizon (every row a batch rewrites stays as a dead row until it ends). Abort:
//! replica lag past the critical limit, a pause longer than `max_pause`.
//!
//! Replica lag is measured as the contract gate measures it, by replay position, never by
//! `pg_stat_replication.replay_lag` alone (it keeps a stale small value while replay is
//! paused, see `gates::check_replicas`): each check notes the primary's WAL position and
//! when it was first seen; a replica's lag is how long ago the oldest noted position it
//! has not replayed was first seen.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::runtime::config::{AutovacuumPause, BackfillControl};
use crate::runtime::deadline::{Limits, within};
use crate::runtime::error::RuntimeError;
pub use crate::runtime::error::{AbortReason, PauseReason};
use crate::runtime::replication::read_replication;
use crate::runtime::state::flags::{FlagError, FlagStore};

/// The flag `migrate backfill pause` sets: every runner reads it before a batch, so a
/// running backfill stops within 200 ms and one batch of it being set.
pub const PAUSE_FLAG: &str = "migrate.backfill_paused";
/// How long a reading that found no reason to stop holds: the next batch after it reads the
/// signals again. An operator's pause, a throttle query or a replica's lag then stop the
/// backfill within this and one batch.
pub(crate) const STOP_READ_INTERVAL: Duration = Duration::from_millis(200);
/// WAL positions remembered for the replica lag; the oldest go first past this many.
const MAX_WAL_SAMPLES: usize = 10_000;

/// What the stop signals say about the next batch.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    Pause(PauseReason),
    Abort(AbortReason),
}

/// The readers of the stop signals of one backfill statement.
pub(crate) struct StopSignals<'a> {
    client: &'a Client,
    flags: FlagStore,
    control: &'a BackfillControl,
    limits: Limits,
    /// The backfill's table, as a `regclass` literal (validated and quoted by the spec).
    table: String,
    /// (first seen, WAL position in bytes), oldest first.
    wal_samples: VecDeque<(Instant, f64)>,
    /// When the current pause began.
    paused_since: Option<Instant>,
    /// When the last reading that found no reason to stop began.
    clear_since: Option<Instant>,
    warned_lag_unknown: bool,
    warned_archive_unreadable: bool,
    /// Backends whose transactions are ours, not the application's: left out of the oldest
    /// transaction (the session these signals are read on is, always).
    own_pids: Vec<i32>,
    /// Queries run so far: transactions of ours the controller does not count as the
    /// application's.
    pub(crate) queries_run: u64,
}

impl<'a> StopSignals<'a> {
    pub(crate) fn new(
        client: &'a Client,
        flags: FlagStore,
        control: &'a BackfillControl,
        limits: Limits,
        table: String,
    ) -> StopSignals<'a> {
        StopSignals {
            client,
            flags,
            control,
            limits,
            table,
            wal_samples: VecDeque::new(),
            paused_since: None,
            clear_since: None,
            warned_lag_unknown: false,
            warned_archive_unreadable: false,
            own_pids: Vec::new(),
            queries_run: 0,
        }
    }

    /// The same signals, read on another session while `pids` run work of ours (the
    /// backfill's vacuum, whose transaction is as old as the vacuum): their transactions
    /// are not the application's.
    pub(crate) fn leaving_out(mut self, pids: Vec<i32>) -> StopSignals<'a> {
        self.own_pids = pids;
        self
    }

    /// Whether the next batch may run: `None`, or why it may not. A pause reason that
    /// warrants an abort (critical lag, a pause past `max_pause`) is read again a poll later
    /// and aborts only if it still holds.
    pub(crate) async fn check(&mut self) -> Result<Option<Stop>, RuntimeError> {
        let interval = STOP_READ_INTERVAL.min(self.control.pause_poll);
        if self.clear_since.is_some_and(|at| at.elapsed() < interval) {
            return Ok(None);
        }
        let reading = Instant::now();
        let Some(reason) = self.pause_reason().await? else {
            self.paused_since = None;
            self.clear_since = Some(reading);
            return Ok(None);
        };
        self.clear_since = None;
        let since = *self.paused_since.get_or_insert_with(Instant::now);
        let abort = self.abort_for(&reason, since);
        if abort.is_none() {
            return Ok(Some(Stop::Pause(reason)));
        }
        // Read again before acting: a replica's position or a flag read once can be a
        // moment's value (pacing, not synchronisation).
        tokio::time::sleep(self.control.pause_poll).await;
        let Some(again) = self.pause_reason().await? else {
            self.paused_since = None;
            return Ok(None);
        };
        Ok(Some(match self.abort_for(&again, since) {
            Some(abort) => Stop::Abort(abort),
            None => Stop::Pause(again),
        }))
    }

    fn abort_for(&self, reason: &PauseReason, since: Instant) -> Option<AbortReason> {
        if let (PauseReason::ReplicaLag { replica, lag, .. }, Some(critical)) =
            (reason, self.control.critical_replica_lag)
            && *lag > critical
        {
            return Some(AbortReason::CriticalReplicaLag {
                replica: replica.clone(),
                lag: *lag,
                limit: critical,
            });
        }
        let paused = since.elapsed();
        match self.control.max_pause {
            Some(limit) if paused > limit => Some(AbortReason::PausedTooLong {
                reason: reason.clone(),
                paused,
                limit,
            }),
            _ => None,
        }
    }

    /// The first reason to pause now, cheapest reading first.
    async fn pause_reason(&mut self) -> Result<Option<PauseReason>, RuntimeError> {
        let own = Some(self.limits.own);
        self.queries_run += 1;
        let paused = match within(
            own,
            "reading the backfill pause flag",
            self.flags.get(self.client, PAUSE_FLAG),
        )
        .await?
        {
            Ok(flag) => flag.enabled,
            Err(FlagError::NotFound { .. }) => false,
            Err(FlagError::Runtime(error)) => return Err(error),
            // PAUSE_FLAG is a valid name (see the test below): never reached.
            Err(FlagError::InvalidName { .. }) => false,
        };
        if paused {
            return Ok(Some(PauseReason::Operator));
        }
        if let Some(query) = &self.control.throttle_query {
            self.queries_run += 1;
            let answer = within(
                own,
                "running the backfill throttle query",
                self.client.query_opt(query.as_str(), &[]),
            )
            .await?
            .map_err(RuntimeError::database(
                "running the backfill throttle query",
            ))?;
            let throttled = match answer {
                None => false,
                Some(row) => row
                    .try_get::<_, Option<bool>>(0)
                    .map_err(RuntimeError::database(
                        "reading the backfill throttle query's answer (one boolean column)",
                    ))?
                    .unwrap_or(false),
            };
            if throttled {
                return Ok(Some(PauseReason::ThrottleQuery));
            }
        }
        if let Some(reason) = self.server_state().await? {
            return Ok(Some(reason));
        }
        if let Some(limit) = self.control.max_replica_lag {
            return self.replica_lag(limit).await;
        }
        Ok(None)
    }

    /// Autovacuum on the table, the oldest transaction holding back the xmin horizon, in
    /// one query; then the archiver's backlog.
    async fn server_state(&mut self) -> Result<Option<PauseReason>, RuntimeError> {
        let control = self.control;
        let max_age_ms = control
            .max_transaction_age
            .map(|limit| limit.as_secs_f64() * 1000.0);
        if control.autovacuum != AutovacuumPause::Off || max_age_ms.is_some() {
            // Transactions of this database only: since PostgreSQL 14 the horizon of an
            // ordinary table ignores other databases' backends.
            // Autovacuum workers name their table and its wraparound purpose in `query`
            // ("autovacuum: VACUUM public.t (to prevent wraparound)"); `relid` of
            // pg_stat_progress_vacuum says which table. Both need pg_read_all_stats (or the
            // same role) to be seen: without it, no pause.
            self.queries_run += 1;
            let row = within(
                Some(self.limits.own),
                "reading autovacuum and transaction ages",
                self.client.query_one(
                    "SELECT \
                       (SELECT bool_or(a.query LIKE '%(to prevent wraparound)%') \
                          FROM pg_stat_progress_vacuum v JOIN pg_stat_activity a USING (pid) \
                         WHERE v.relid = $1::text::regclass \
                           AND a.backend_type = 'autovacuum worker'), \
                       o.pid, o.age_ms \
                     FROM (SELECT NULL) _ LEFT JOIN LATERAL ( \
                       SELECT pid, (extract(epoch FROM clock_timestamp() - xact_start) * 1000)::float8 \
                              AS age_ms \
                         FROM pg_stat_activity \
                        WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND pid <> ALL($2) \
                          AND datname = current_database() \
                          AND (backend_xid IS NOT NULL OR backend_xmin IS NOT NULL) \
                          AND xact_start IS NOT NULL \
                       UNION ALL \
                       SELECT 0, (extract(epoch FROM clock_timestamp() - prepared) * 1000)::float8 \
                         FROM pg_prepared_xacts WHERE database = current_database() \
                        ORDER BY 2 DESC LIMIT 1) o ON true",
                    &[&self.table, &self.own_pids],
                ),
            )
            .await?
            .map_err(RuntimeError::database(
                "reading autovacuum and transaction ages",
            ))?;
            let vacuum: Option<bool> = row.get(0);
            if let Some(wraparound) = vacuum
                && (wraparound || control.autovacuum == AutovacuumPause::Any)
            {
                return Ok(Some(PauseReason::Autovacuum {
                    table: self.table.clone(),
                    wraparound,
                }));
            }
            let (pid, age_ms): (Option<i32>, Option<f64>) = (row.get(1), row.get(2));
            if let (Some(limit), Some(limit_ms), Some(pid), Some(age_ms)) =
                (control.max_transaction_age, max_age_ms, pid, age_ms)
                && age_ms > limit_ms
            {
                return Ok(Some(PauseReason::OldTransaction {
                    pid,
                    age: Duration::from_secs_f64(age_ms / 1000.0),
                    limit,
                }));
            }
        }
        if let Some(limit) = control.max_wal_archive_backlog {
            return self.archive_backlog(limit).await;
        }
        Ok(None)
    }

    /// Segments waiting for the archiver: `.ready` files in `pg_wal/archive_status`
    /// (none are made while `archive_mode` is off). Listing them needs `pg_monitor` or a
    /// superuser; without it the signal is off, said once.
    async fn archive_backlog(&mut self, limit: u64) -> Result<Option<PauseReason>, RuntimeError> {
        self.queries_run += 1;
        let answer = within(
            Some(self.limits.own),
            "reading the WAL archiver's backlog",
            self.client.query_one(
                "SELECT count(*) FROM pg_ls_archive_statusdir() WHERE name LIKE '%.ready'",
                &[],
            ),
        )
        .await?;
        let segments = match answer {
            Ok(row) => u64::try_from(row.get::<_, i64>(0)).unwrap_or(0),
            // Without pg_monitor, or before PostgreSQL 12 (no pg_ls_archive_statusdir).
            Err(error)
                if error.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE)
                    || error.code() == Some(&SqlState::UNDEFINED_FUNCTION) =>
            {
                if !self.warned_archive_unreadable {
                    self.warned_archive_unreadable = true;
                    tracing::warn!(
                        %error,
                        "cannot list pg_wal/archive_status (the role needs pg_monitor, the \
                         server 12 or later): the backfill does not pause for the WAL \
                         archiver's backlog"
                    );
                }
                0
            }
            Err(error) => {
                return Err(RuntimeError::database("reading the WAL archiver's backlog")(error));
            }
        };
        Ok((segments > limit).then_some(PauseReason::WalArchiveBacklog { segments, limit }))
    }

    /// The most lagging replica, when it lags more than `limit`.
    async fn replica_lag(&mut self, limit: Duration) -> Result<Option<PauseReason>, RuntimeError> {
        self.queries_run += 2;
        let row = within(
            Some(self.limits.own),
            "reading the current WAL position",
            self.client.query_one(
                "SELECT pg_current_wal_lsn()::text, (pg_current_wal_lsn() - '0/0'::pg_lsn)::float8",
                &[],
            ),
        )
        .await?
        .map_err(RuntimeError::database("reading the current WAL position"))?;
        let (current_text, current): (String, f64) = (row.get(0), row.get(1));
        let now = Instant::now();
        if self
            .wal_samples
            .back()
            .is_none_or(|&(_, lsn)| lsn < current)
        {
            self.wal_samples.push_back((now, current));
            if self.wal_samples.len() > MAX_WAL_SAMPLES {
                self.wal_samples.pop_front();
            }
        }
        let rows = within(
            Some(self.limits.own),
            "reading pg_stat_replication",
            read_replication(self.client, &current_text),
        )
        .await??;
        let mut worst: Option<(Duration, String)> = None;
        let mut least_replayed = current;
        for row in rows {
            let Some(state) = &row.state else {
                if !self.warned_lag_unknown {
                    self.warned_lag_unknown = true;
                    tracing::warn!(
                        replica = %row.replica,
                        "cannot read this replica's replay position (the role needs pg_monitor): \
                         the backfill does not pause for its lag"
                    );
                }
                continue;
            };
            if row.serves_no_queries(state) || row.caught_up {
                continue;
            }
            let replayed = current - row.bytes_behind as f64;
            least_replayed = least_replayed.min(replayed);
            let lag = self
                .wal_samples
                .iter()
                .find(|&&(_, lsn)| lsn > replayed)
                .map_or(Duration::ZERO, |&(seen, _)| now - seen);
            if worst.as_ref().is_none_or(|(most, _)| lag > *most) {
                worst = Some((lag, row.replica.to_string()));
            }
        }
        // Positions every replica has replayed are not needed any more (the newest stays).
        while self.wal_samples.len() > 1
            && self
                .wal_samples
                .get(1)
                .is_some_and(|&(_, lsn)| lsn <= least_replayed)
        {
            self.wal_samples.pop_front();
        }
        Ok(worst
            .filter(|(lag, _)| *lag > limit)
            .map(|(lag, replica)| PauseReason::ReplicaLag {
                replica,
                lag,
                limit,
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pause_flag_is_a_valid_flag_name() {
        assert!(crate::runtime::state::flags::validate_flag_name(PAUSE_FLAG).is_ok());
    }

    #[test]
    fn reasons_say_what_holds_the_backfill() {
        let old = PauseReason::OldTransaction {
            pid: 4242,
            age: Duration::from_secs(700),
            limit: Duration::from_secs(600),
        };
        assert_eq!(
            old.to_string(),
            "paused: the transaction of backend 4242 is 11m 40s old (limit 10m 0s): dead rows \
             cannot be vacuumed while it runs"
        );
        let abort = AbortReason::PausedTooLong {
            reason: PauseReason::ThrottleQuery,
            paused: Duration::from_secs(90),
            limit: Duration::from_secs(60),
        };
        assert_eq!(
            abort.to_string(),
            "paused for 1m 30s (limit 1m 0s), still paused: the throttle query returned true"
        );
    }
}
