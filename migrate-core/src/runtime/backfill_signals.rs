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

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::backfill_controller::Baselines;
use super::config::BackfillControl;
use super::deadline::{Limits, within};
use super::error::RuntimeError;

/// How often the monitor probes and looks at the server while a batch runs.
const WATCH_INTERVAL: Duration = Duration::from_millis(20);
/// What the monitor reads every [`WATCH_INTERVAL`]: sessions waiting longer than `$3` ms on
/// a lock the backfill's backend `$1` holds, and the active client sessions other than `$2`.
const OBSERVE_SQL: &str = "SELECT count(*) FILTER (WHERE CASE WHEN wait_event_type = 'Lock' \
        AND clock_timestamp() - query_start > $3 * interval '1 millisecond' \
        THEN $1 = ANY(pg_blocking_pids(pid)) ELSE false END), \
        count(*) FILTER (WHERE state = 'active' AND backend_type = 'client backend' \
        AND pid <> ALL($2)) \
 FROM pg_stat_activity";
/// Probes before the backfill, for the baselines ...
const BASELINE_ROUNDS: u32 = 20;
/// ... this far apart (the baseline spans about a second of the application's load).
const BASELINE_INTERVAL: Duration = Duration::from_millis(50);

/// What the monitor saw while one batch ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Watched {
    pub blocked_sessions: u32,
    pub active_sessions: Option<u32>,
    /// Median probe latency.
    pub probe: Option<Duration>,
}

/// The signal readers of one backfill statement.
pub(crate) struct Signals<'a> {
    monitor: Option<Monitor<'a>>,
    limits: Limits,
    /// What the monitor saw since the last [`Signals::take_watched`].
    watched: Watched,
    probes: Vec<Duration>,
}

/// The second connection and what it knows.
struct Monitor<'a> {
    client: &'a Client,
    /// [`OBSERVE_SQL`], prepared once: sent every 20 ms, its parsing and planning were most
    /// of the monitor's cost on the server.
    observe: tokio_postgres::Statement,
    /// The backfill's backend, whose blocked sessions are counted.
    backfill_pid: i32,
    /// Pids left out of the active-session count: the backfill's and the monitor's.
    own_pids: Vec<i32>,
    probe: Option<&'a str>,
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

impl<'a> Signals<'a> {
    /// Prepares the readers and measures the baselines (about a second with a monitor).
    pub(crate) async fn start(
        client: &'a Client,
        monitor: Option<&'a Client>,
        control: &'a BackfillControl,
        limits: Limits,
    ) -> Result<(Signals<'a>, Baselines), RuntimeError> {
        let mut baselines = Baselines {
            active_sessions: control.max_active_sessions,
            probe: None,
        };
        let monitor = match monitor {
            None => None,
            Some(monitor_client) => {
                let backfill_pid: i32 = within(
                    Some(limits.own),
                    "reading the backfill's backend pid",
                    client.query_one("SELECT pg_backend_pid()", &[]),
                )
                .await?
                .map_err(RuntimeError::database("reading the backfill's backend pid"))?
                .get(0);
                let monitor_pid: i32 = within(
                    Some(limits.own),
                    "preparing the backfill monitor connection",
                    monitor_client.query_one("SELECT pg_backend_pid()", &[]),
                )
                .await?
                .map_err(RuntimeError::database(
                    "preparing the backfill monitor connection",
                ))?
                .get(0);
                let observe = within(
                    Some(limits.own),
                    "preparing the backfill monitor connection",
                    monitor_client.prepare(OBSERVE_SQL),
                )
                .await?
                .map_err(RuntimeError::database(
                    "preparing the backfill monitor connection",
                ))?;
                Some(Monitor {
                    client: monitor_client,
                    observe,
                    backfill_pid,
                    own_pids: vec![backfill_pid, monitor_pid],
                    probe: control.probe_query.as_deref(),
                })
            }
        };
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
                }
                let (_, active) = monitor.observe(limits, Duration::ZERO).await?;
                most_active = most_active.max(active);
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
            },
            baselines,
        ))
    }

    /// What was seen since the last call: the most blocked and active sessions, the probe
    /// latency at [`CYCLE_PROBE_QUANTILE`].
    pub(crate) fn take_watched(&mut self) -> Watched {
        let mut watched = std::mem::take(&mut self.watched);
        watched.probe = quantile(std::mem::take(&mut self.probes), CYCLE_PROBE_QUANTILE);
        watched
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
        let mut failure = None;
        let watching = async {
            loop {
                match monitor.time_probe(limits).await {
                    Ok(Some(took)) => probes.push(took),
                    Ok(None) => {}
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
                match monitor.observe(limits, patience).await {
                    Ok((blocked, active)) => {
                        watched.blocked_sessions = watched.blocked_sessions.max(blocked);
                        watched.active_sessions =
                            Some(watched.active_sessions.unwrap_or(0).max(active));
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

    /// Sessions that have waited longer than `patience` on a lock the backfill holds, and
    /// active sessions other than ours. A wait shorter than the target batch duration is the
    /// one the target allows: a write meeting a batch's row lock waits for the batch.
    /// `pg_blocking_pids` is only called for sessions waiting on a lock that long: the docs
    /// warn that frequent calls cost (it takes the lock manager's locks).
    async fn observe(
        &self,
        limits: Limits,
        patience: Duration,
    ) -> Result<(u32, u32), RuntimeError> {
        let patience_ms = patience.as_secs_f64() * 1000.0;
        let row = within(
            Some(limits.own),
            "reading pg_stat_activity",
            self.client.query_one(
                &self.observe,
                &[&self.backfill_pid, &self.own_pids, &patience_ms],
            ),
        )
        .await?
        .map_err(RuntimeError::database("reading pg_stat_activity"))?;
        let count = |index: usize| u32::try_from(row.get::<_, i64>(index)).unwrap_or(u32::MAX);
        Ok((count(0), count(1)))
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
}
