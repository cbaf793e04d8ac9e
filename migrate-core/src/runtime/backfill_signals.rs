//! What the backfill controller reads from PostgreSQL (its decisions are in
//! `backfill_controller`).
//!
//! The stop signals (pause, abort) are read before every batch by `backfill_stops`; this
//! module watches, on a second connection (the monitor), while each batch runs and during the
//! rest after it, the signs that the application suffers: sessions waiting on a lock our
//! batch holds (`pg_blocking_pids`), the count of active sessions, and the latency of a probe
//! query, compared with its baseline measured before the backfill. The probe's 75th
//! percentile over a whole cycle (rest and batch) is what the application sees in its slower
//! quarter: a backfill that rests longer shows less of itself there, so the controller's rest
//! settles where the batches take at most about a quarter of the cycle's time at a slowed
//! probe.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::backfill_controller::Baselines;
use super::config::BackfillControl;
use super::deadline::{Limits, within};
use super::error::RuntimeError;

/// How often the monitor looks at the server while a batch or a rest runs ...
const WATCH_INTERVAL: Duration = Duration::from_millis(20);
/// ... and runs the probe query (a probe doing real work costs the server CPU).
const PROBE_EVERY: u32 = 5;
/// What the monitor reads every [`WATCH_INTERVAL`]: sessions waiting longer than `$3` ms on
/// a lock one of the backfill's backends `$1` holds, the active client sessions other than
/// ours (`$2`), those of them running (active with no wait event: on a CPU or queued for
/// one), and the database's transaction count and (14+) active time, which backends flush to
/// shared statistics about once a second (500 ms on 13-14).
fn observe_sql(active_time: bool) -> String {
    format!(
        "SELECT count(*) FILTER (WHERE CASE WHEN wait_event_type = 'Lock' \
            AND clock_timestamp() - query_start > $3 * interval '1 millisecond' \
            THEN pg_blocking_pids(pid) && $1::int4[] ELSE false END), \
            count(*) FILTER (WHERE state = 'active' AND backend_type = 'client backend' \
            AND pid <> ALL($2)), \
            count(*) FILTER (WHERE state = 'active' AND wait_event IS NULL \
            AND backend_type = 'client backend' AND pid <> ALL($2)), \
            (SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database \
              WHERE datname = current_database()), \
            {} \
         FROM pg_stat_activity",
        if active_time {
            "(SELECT active_time::float8 FROM pg_stat_database WHERE datname = current_database())"
        } else {
            "NULL::float8"
        }
    )
}
/// Probes before the backfill, for the baselines ...
const BASELINE_ROUNDS: u32 = 5;
/// ... this far apart: a tenth of a second, so a backfill of a small table starts at once.
const BASELINE_INTERVAL: Duration = Duration::from_millis(20);
/// Readings of the server kept for the rate windows (a minute at 20 ms).
const MAX_SAMPLES: usize = 3_000;

/// What the monitor saw while one batch ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Watched {
    pub blocked_sessions: u32,
    /// Active sessions (ours excluded), mean over the cycle rounded up: a pool's burst of a
    /// few milliseconds is not a load.
    pub active_sessions: Option<u32>,
    /// Probe latency at [`CYCLE_PROBE_QUANTILE`].
    pub probe: Option<Duration>,
    /// Other sessions running, mean over the cycle.
    pub running: Option<f64>,
}

/// One reading of the server's counters.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    /// `xact_commit + xact_rollback` of the database.
    xacts: i64,
    /// `active_time` of the database, ms (14+).
    active_ms: Option<f64>,
    /// Our own transactions so far (the migration's and workers' connections, the monitor's).
    own_xacts: u64,
    /// Time our batches spent on the server so far, ms.
    own_active_ms: f64,
}

/// The signal readers of one backfill statement.
pub(crate) struct Signals<'a> {
    monitor: Option<Monitor<'a>>,
    limits: Limits,
    /// What the monitor saw since the last [`Signals::take_watched`].
    watched: Watched,
    probes: Vec<Duration>,
    active_sum: u64,
    running_sum: u64,
    readings: u64,
    samples: VecDeque<Sample>,
    own_xacts: u64,
    own_active_ms: f64,
    /// How long after a transaction its counts reach `pg_stat_database`.
    pub(crate) flush_lag: Duration,
}

/// The second connection and what it knows.
struct Monitor<'a> {
    client: &'a Client,
    /// [`observe_sql`], prepared once: sent every 20 ms, its parsing and planning were most
    /// of the monitor's cost on the server.
    observe: tokio_postgres::Statement,
    /// The backfill's backends (the migration's and the workers'), whose blocked sessions
    /// are counted.
    backfill_pids: Vec<i32>,
    /// Pids left out of the session counts: the backfill's and the monitor's.
    own_pids: Vec<i32>,
    probe: Option<&'a str>,
}

/// One reading of `pg_stat_activity` and `pg_stat_database`.
struct Reading {
    blocked: u32,
    active: u32,
    running: u32,
    xacts: i64,
    active_ms: Option<f64>,
}

fn median(values: Vec<Duration>) -> Option<Duration> {
    quantile(values, 0.5)
}

/// The value `q` of the way up the sorted `values` (nearest rank).
fn quantile(mut values: Vec<Duration>, q: f64) -> Option<Duration> {
    values.sort();
    let index = ((values.len() as f64 * q) as usize).min(values.len().saturating_sub(1));
    values.get(index).copied()
}

/// The share of a cycle's probes that decides whether it was slow: past the median, so a
/// cycle whose batch slows the application for a third of its time counts even though its
/// rest (the other two thirds) looks clean.
const CYCLE_PROBE_QUANTILE: f64 = 0.75;

/// The server's CPUs, as the server's own `/proc/cpuinfo` lists them; needs a superuser or
/// `pg_read_server_files`. `None` when it cannot be read.
async fn server_cpus(client: &Client, limits: Limits) -> Option<u32> {
    let answer = within(
        Some(limits.own),
        "reading the server's CPU count",
        client.query_one(
            "SELECT count(*) FROM regexp_split_to_table(pg_read_file('/proc/cpuinfo'), '\n') l \
             WHERE l ~ '^processor\\s*:'",
            &[],
        ),
    )
    .await
    .ok()?
    .ok()?;
    u32::try_from(answer.get::<_, i64>(0))
        .ok()
        .filter(|&cpus| cpus > 0)
}

impl<'a> Signals<'a> {
    /// Prepares the readers and measures the baselines (a tenth of a second with a monitor).
    /// `backfill_pids`: the backends that run batches.
    pub(crate) async fn start(
        monitor: Option<&'a Client>,
        backfill_pids: Vec<i32>,
        control: &'a BackfillControl,
        limits: Limits,
    ) -> Result<(Signals<'a>, Baselines), RuntimeError> {
        let mut baselines = Baselines {
            active_sessions: control.max_active_sessions,
            probe: None,
            cpus: control.server_cpus,
        };
        let mut flush_lag = Duration::from_secs(1);
        let monitor = match monitor {
            None => None,
            Some(monitor_client) => {
                let row = within(
                    Some(limits.own),
                    "preparing the backfill monitor connection",
                    monitor_client.query_one(
                        "SELECT pg_backend_pid(), current_setting('server_version_num')::int4",
                        &[],
                    ),
                )
                .await?
                .map_err(RuntimeError::database(
                    "preparing the backfill monitor connection",
                ))?;
                let (monitor_pid, version): (i32, i32) = (row.get(0), row.get(1));
                // PostgreSQL 15 flushes backends' counts at most once a second
                // (PGSTAT_MIN_INTERVAL), 13-14 every 500 ms; `active_time` is 14+.
                if version < 150_000 {
                    flush_lag = Duration::from_millis(750);
                }
                let observe = within(
                    Some(limits.own),
                    "preparing the backfill monitor connection",
                    monitor_client.prepare(&observe_sql(version >= 140_000)),
                )
                .await?
                .map_err(RuntimeError::database(
                    "preparing the backfill monitor connection",
                ))?;
                if baselines.cpus.is_none() {
                    baselines.cpus = server_cpus(monitor_client, limits).await;
                    if baselines.cpus.is_none() {
                        tracing::warn!(
                            "cannot read the server's CPU count (pg_read_file needs \
                             pg_read_server_files): the backfill does not watch the server's \
                             CPUs; set --backfill-server-cpus"
                        );
                    }
                }
                let mut own_pids = backfill_pids.clone();
                own_pids.push(monitor_pid);
                Some(Monitor {
                    client: monitor_client,
                    observe,
                    backfill_pids,
                    own_pids,
                    probe: control.probe_query.as_deref(),
                })
            }
        };
        let mut own_xacts = 0;
        if let Some(monitor) = &monitor {
            let mut probes = Vec::new();
            let mut most_active = 0;
            for round in 0..BASELINE_ROUNDS {
                if round > 0 {
                    // Spacing the samples over the application's load, not synchronisation.
                    tokio::time::sleep(BASELINE_INTERVAL).await;
                }
                if let Some(took) = monitor.time_probe(limits).await? {
                    probes.push(took);
                    own_xacts += 1;
                }
                let reading = monitor.observe(limits, Duration::ZERO).await?;
                own_xacts += 1;
                most_active = most_active.max(reading.active);
            }
            baselines.probe = median(probes);
            // Twice the usual, and at least 8 more: a pool's normal jitter is not pressure.
            baselines.active_sessions = baselines.active_sessions.or(Some(
                most_active
                    .saturating_mul(2)
                    .max(most_active.saturating_add(8)),
            ));
        }
        Ok((
            Signals {
                monitor,
                limits,
                watched: Watched::default(),
                probes: Vec::new(),
                active_sum: 0,
                running_sum: 0,
                readings: 0,
                samples: VecDeque::new(),
                own_xacts,
                own_active_ms: 0.0,
                flush_lag,
            },
            baselines,
        ))
    }

    /// Whether the monitor still watches (it is dropped when it fails).
    pub(crate) fn watching(&self) -> bool {
        self.monitor.is_some()
    }

    /// Our connections ran `xacts` transactions that spent `active` on the server: they are
    /// not the application's.
    pub(crate) fn count_own(&mut self, xacts: u64, active: Duration) {
        self.own_xacts += xacts;
        self.own_active_ms += active.as_secs_f64() * 1000.0;
    }

    /// What was seen since the last call: the most blocked sessions, the mean active and
    /// running ones, the probe latency at [`CYCLE_PROBE_QUANTILE`].
    pub(crate) fn take_watched(&mut self) -> Watched {
        let mut watched = std::mem::take(&mut self.watched);
        watched.probe = quantile(std::mem::take(&mut self.probes), CYCLE_PROBE_QUANTILE);
        if self.readings > 0 {
            watched.active_sessions = Some(self.active_sum.div_ceil(self.readings) as u32);
            watched.running = Some(self.running_sum as f64 / self.readings as f64);
        }
        (self.active_sum, self.running_sum, self.readings) = (0, 0, 0);
        watched
    }

    /// The application's transactions per second and server milliseconds per transaction
    /// over the real time `from..to`: the counters read `flush_lag` later, our own
    /// transactions and batch time taken out. `None` without readings that far.
    pub(crate) fn application_rate(
        &self,
        from: Instant,
        to: Instant,
    ) -> Option<(f64, Option<f64>)> {
        let lag = self.flush_lag;
        let first_after = |when: Instant| self.samples.iter().find(|s| s.at >= when).copied();
        let last_before = |when: Instant| self.samples.iter().rev().find(|s| s.at <= when).copied();
        let (start, end) = (first_after(from + lag)?, last_before(to + lag)?);
        let span = end.at.checked_duration_since(start.at)?;
        // Readings must cover most of the window (the monitor reads only while it watches).
        if span < to.checked_duration_since(from)? / 2 {
            return None;
        }
        // Our own transactions as they ran, the counters as they were flushed.
        let own_start = last_before(start.at.checked_sub(lag)?).unwrap_or(start);
        let own_end = last_before(end.at.checked_sub(lag)?).unwrap_or(end);
        let own = own_end.own_xacts.saturating_sub(own_start.own_xacts) as f64;
        let xacts = ((end.xacts - start.xacts) as f64 - own).max(0.0);
        let server_ms = match (start.active_ms, end.active_ms) {
            (Some(a), Some(b)) if xacts >= 1.0 => {
                let own_ms = own_end.own_active_ms - own_start.own_active_ms;
                Some(((b - a) - own_ms).max(0.0) / xacts)
            }
            _ => None,
        };
        Some((xacts / span.as_secs_f64(), server_ms))
    }

    /// Runs `batch` (or a rest) while the monitor watches the server, adding what it sees
    /// to [`Signals::take_watched`]. Without a monitor only the batch runs.
    pub(crate) async fn watch<F: Future>(&mut self, batch: F, patience: Duration) -> F::Output {
        let Some(monitor) = &self.monitor else {
            return batch.await;
        };
        let limits = self.limits;
        let probes = &mut self.probes;
        let watched = &mut self.watched;
        let (active_sum, running_sum, readings) = (
            &mut self.active_sum,
            &mut self.running_sum,
            &mut self.readings,
        );
        let samples = &mut self.samples;
        let own_xacts = &mut self.own_xacts;
        let own_active_ms = self.own_active_ms;
        let mut failure = None;
        let watching = async {
            let mut round = 0u32;
            loop {
                if round.is_multiple_of(PROBE_EVERY) {
                    match monitor.time_probe(limits).await {
                        Ok(Some(took)) => {
                            probes.push(took);
                            *own_xacts += 1;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    }
                }
                round = round.wrapping_add(1);
                match monitor.observe(limits, patience).await {
                    Ok(reading) => {
                        *own_xacts += 1;
                        watched.blocked_sessions = watched.blocked_sessions.max(reading.blocked);
                        *active_sum += u64::from(reading.active);
                        *running_sum += u64::from(reading.running);
                        *readings += 1;
                        samples.push_back(Sample {
                            at: Instant::now(),
                            xacts: reading.xacts,
                            active_ms: reading.active_ms,
                            own_xacts: *own_xacts,
                            own_active_ms,
                        });
                        if samples.len() > MAX_SAMPLES {
                            samples.pop_front();
                        }
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
                // Sampling cadence, not synchronisation: the batch ends the watch.
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        };
        tokio::pin!(batch);
        let output = tokio::select! {
            output = &mut batch => output,
            // The watch ends early only when the monitor failed: the batch goes on alone.
            () = watching => (&mut batch).await,
        };
        if let Some(error) = failure {
            // The signals are advice: a monitor that fails does not fail the backfill, which
            // goes on under the other signals.
            tracing::warn!(%error, "the backfill monitor connection failed; it is not used any more");
            self.monitor = None;
        }
        output
    }
}

impl Monitor<'_> {
    /// The probe query's latency; `None` without a probe query.
    async fn time_probe(&self, limits: Limits) -> Result<Option<Duration>, RuntimeError> {
        let Some(probe) = self.probe else {
            return Ok(None);
        };
        let started = Instant::now();
        within(
            Some(limits.own),
            "running the backfill probe query",
            self.client.simple_query(probe),
        )
        .await?
        .map_err(RuntimeError::database("running the backfill probe query"))?;
        Ok(Some(started.elapsed()))
    }

    /// Sessions that have waited longer than `patience` on a lock the backfill holds, active
    /// and running sessions other than ours, the database's counters. A wait shorter than
    /// the target batch duration is the one the target allows: a write meeting a batch's
    /// row lock waits for the batch. `pg_blocking_pids` is only called for sessions waiting
    /// on a lock that long: the docs warn that frequent calls cost (it takes the lock
    /// manager's locks).
    async fn observe(&self, limits: Limits, patience: Duration) -> Result<Reading, RuntimeError> {
        let patience_ms = patience.as_secs_f64() * 1000.0;
        let row = within(
            Some(limits.own),
            "reading pg_stat_activity",
            self.client.query_one(
                &self.observe,
                &[&self.backfill_pids, &self.own_pids, &patience_ms],
            ),
        )
        .await?
        .map_err(RuntimeError::database("reading pg_stat_activity"))?;
        let count = |index: usize| u32::try_from(row.get::<_, i64>(index)).unwrap_or(u32::MAX);
        Ok(Reading {
            blocked: count(0),
            active: count(1),
            running: count(2),
            xacts: row.get::<_, Option<i64>>(3).unwrap_or(0),
            active_ms: row.get(4),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_probes() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![ms(3), ms(1), ms(9)]), Some(ms(3)));
        // Three clean probes of the rest and one slowed by the batch: the median hides the
        // batch, the cycle's quantile does not.
        let cycle = vec![ms(1), ms(1), ms(1), ms(6)];
        assert_eq!(median(cycle.clone()), Some(ms(1)));
        assert_eq!(quantile(cycle, CYCLE_PROBE_QUANTILE), Some(ms(6)));
        assert_eq!(quantile(vec![ms(2)], CYCLE_PROBE_QUANTILE), Some(ms(2)));
    }

    /// Readings every 20 ms for `seconds`: the application commits `app` tx/s, we `own`
    /// tx/s, and the counters show both `lag` late.
    fn signals_with(
        seconds: f64,
        app: f64,
        own: f64,
        lag: Duration,
    ) -> (Signals<'static>, Instant) {
        let start = Instant::now();
        let mut signals = Signals {
            monitor: None,
            limits: Limits::new(
                Duration::from_secs(1),
                Duration::from_secs(1),
                Duration::from_secs(1),
            ),
            watched: Watched::default(),
            probes: Vec::new(),
            active_sum: 0,
            running_sum: 0,
            readings: 0,
            samples: VecDeque::new(),
            own_xacts: 0,
            own_active_ms: 0.0,
            flush_lag: lag,
        };
        let mut t = 0.0;
        while t <= seconds {
            let flushed = (t - lag.as_secs_f64()).max(0.0);
            signals.samples.push_back(Sample {
                at: start + Duration::from_secs_f64(t),
                xacts: ((app + own) * flushed) as i64,
                active_ms: Some(0.2 * app * flushed),
                own_xacts: (own * t) as u64,
                own_active_ms: 0.0,
            });
            t += 0.02;
        }
        (signals, start)
    }

    #[test]
    fn the_application_rate_leaves_ours_out_and_reads_the_counters_a_lag_later() {
        let lag = Duration::from_secs(1);
        let (signals, start) = signals_with(6.0, 1000.0, 60.0, lag);
        let at = |s: f64| start + Duration::from_secs_f64(s);
        let (tps, server_ms) = signals.application_rate(at(1.0), at(4.0)).unwrap();
        assert!((tps - 1000.0).abs() < 30.0, "{tps}");
        let server_ms = server_ms.unwrap();
        assert!((server_ms - 0.2).abs() < 0.02, "{server_ms}");
        // No readings that late yet: nothing to say.
        assert_eq!(signals.application_rate(at(5.0), at(8.0)), None);
    }
}
