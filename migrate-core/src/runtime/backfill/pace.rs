//! Pacing one backfill statement: the controller's decisions (`backfill_controller`) on the
//! signals read from the server (`backfill_signals`), or the fixed `batch=`/`delay=` of the
//! directive. Either way the stop signals (`backfill_stops`: the operator's pause, the
//! throttle query, replica lag, ...) are read before a batch, at most every 200 ms while none
//! holds. Every decision is a `tracing` event; the state is stored with the progress (so `migrate backfill` and other runners see it) and reported to the progress hook.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::migration::BackfillPace;
use crate::runtime::backfill::controller::{
    ApplicationRates, Baselines, BatchObservation, Controller, ControllerSettings, Decision,
    PaceState,
};
use crate::runtime::backfill::signals::{Signals, StatementSnapshot, statement_latency};
use crate::runtime::backfill::stops::{AbortReason, PauseReason, Stop, StopSignals};
use crate::runtime::config::BackfillControl;
use crate::runtime::deadline::{Limits, within};
use crate::runtime::error::RuntimeError;
use crate::runtime::state::backfill_progress::{
    BackfillProgress, BackfillProgressTable, StoredPace,
};
use crate::runtime::state::flags::FlagStore;

/// A backfill's pace now, for progress displays.
#[derive(Debug, Clone, PartialEq)]
pub struct BackfillStatus {
    /// Rows of the current statement updated so far, by interrupted runs included.
    pub rows_done: i64,
    /// Rows per second of this run so far (rests and pauses included).
    pub rows_per_second: f64,
    /// Rows of the next batch.
    pub batch_size: u32,
    /// What the controller is doing.
    pub state: PaceState,
    /// Time left at the current rate, from PostgreSQL's estimate of the table's rows
    /// (`pg_class.reltuples`); `None` when there is no estimate or no rate yet.
    pub eta: Option<Duration>,
    /// Batches running at once (workers over disjoint key ranges).
    pub workers: u32,
    /// Time spent not running batches, per signal that held the backfill (pauses, back-off
    /// rests, the rest windows that measure the application), longest first.
    pub throttled: Vec<(String, Duration)>,
    /// The application's measured throughput and server time in the backfill's rests and
    /// while its batches ran, over the whole run; `None` before the first rest window.
    pub application: Option<ApplicationRates>,
}

impl BackfillStatus {
    /// One line for reports: which signals held the backfill and for how long, and the
    /// application's measured change; empty when there is nothing to say.
    pub fn impact(&self) -> String {
        let mut text = String::new();
        if !self.throttled.is_empty() {
            text.push_str("held by ");
            for (index, (signal, time)) in self.throttled.iter().enumerate() {
                if index > 0 {
                    text.push_str(", ");
                }
                if *time < Duration::from_secs(1) {
                    let _ = write!(text, "{signal} {}ms", time.as_millis().max(1));
                } else {
                    let _ = write!(text, "{signal} {:.1}s", time.as_secs_f64());
                }
            }
        }
        if let Some(rates) = &self.application {
            if !text.is_empty() {
                text.push_str("; ");
            }
            let change = if rates.resting_tps > 0.0 {
                format!(
                    " ({:+.1}%)",
                    (rates.working_tps / rates.resting_tps - 1.0) * 100.0
                )
            } else {
                String::new()
            };
            let _ = write!(
                text,
                "application {:.0} tx/s during batches vs {:.0} in rests{change}",
                rates.working_tps, rates.resting_tps
            );
            if let (Some(resting), Some(working)) = (rates.resting_ms, rates.working_ms) {
                let _ = write!(
                    text,
                    ", server time per transaction {working:.3} ms vs {resting:.3} ms"
                );
            }
            if let (Some(resting), Some(working)) =
                (rates.resting_statement_ms, rates.working_statement_ms)
            {
                let _ = write!(
                    text,
                    ", statement time per call {working:.3} ms vs {resting:.3} ms"
                );
            }
        }
        text
    }
}

/// How long the backfill works before a rest window measures the application alone: short,
/// since a loss found at the window's end has been paid for all of it ...
const FIRST_WORK_WINDOW: Duration = Duration::from_secs(2);
/// ... at most, after rest windows that found the application unharmed.
const MAX_WORK_WINDOW: Duration = Duration::from_secs(16);
/// The verification's reads aim at this duration in fixed mode (`batch=`/`delay=`), as the
/// adaptive batches do while an application is measured.
const SCAN_TARGET_FIXED: Duration = Duration::from_millis(10);
/// The part of a rest window whose counters are read (after the flush lag).
const REST_WINDOW_MEASURED: Duration = Duration::from_secs(1);

/// The duty cycle's windows: the backfill works, then rests while the application's rate is
/// measured alone, since its load drifts and only a comparison close in time says what the
/// backfill costs it.
struct RateWindows {
    work_since: Instant,
    every: Duration,
    /// The last rest windows' (tx/s, server ms per tx), newest last, at most
    /// [`RESTS_COMPARED`].
    recent_rests: VecDeque<(f64, Option<f64>)>,
    /// Totals over the run: (transactions, seconds, server ms).
    resting: (f64, f64, f64),
    working: (f64, f64, f64),
    /// Server time was measured in every window.
    server_time: bool,
    /// `pg_stat_statements` when the work window began; `None` when it is not read.
    statements_since: Option<StatementSnapshot>,
    /// Totals of the windows that compared statements: (seconds of work, ms per call at the
    /// rests' speed times seconds, ms per call during the work times seconds).
    statements: (f64, f64, f64),
}

impl RateWindows {
    fn totals(&self) -> Option<ApplicationRates> {
        let ((rx, rs, rm), (wx, ws, wm)) = (self.resting, self.working);
        if rs <= 0.0 || ws <= 0.0 {
            return None;
        }
        let per = |ms: f64, xacts: f64| (self.server_time && xacts >= 1.0).then(|| ms / xacts);
        let (calls, resting_ms, working_ms) = self.statements;
        let statement = |ms: f64| (calls > 0.0).then(|| ms / calls);
        Some(ApplicationRates {
            resting_tps: rx / rs,
            working_tps: wx / ws,
            resting_ms: per(rm, rx),
            working_ms: per(wm, wx),
            resting_statement_ms: statement(resting_ms),
            working_statement_ms: statement(working_ms),
        })
    }
}

/// Where a statement's progress is stored.
pub(crate) struct ProgressRow<'a> {
    pub table: &'a BackfillProgressTable,
    pub version: i64,
    pub statement: i32,
}

enum Mode<'a> {
    Fixed {
        batch_size: u32,
        delay: Duration,
    },
    Adaptive {
        controller: Box<Controller>,
        signals: Box<Signals<'a>>,
        baselines: Baselines,
        windows: Box<RateWindows>,
    },
}

/// The pace of one statement's batches.
pub(crate) struct Pacer<'a> {
    mode: Mode<'a>,
    stops: StopSignals<'a>,
    /// Why no batch runs now, while a stop signal holds.
    paused: Option<PauseReason>,
    poll: Duration,
    /// Time not running batches, per signal.
    throttled: BTreeMap<&'static str, Duration>,
    /// Transactions the stop signals had run when last counted as ours.
    stop_queries_counted: u64,
    started: Instant,
    rows_at_start: i64,
    estimated_rows: Option<i64>,
    limits: Limits,
}

impl<'a> Pacer<'a> {
    /// Reads the estimate of the table's rows and, for an adaptive pace, measures the
    /// signals' baselines.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn start(
        client: &'a Client,
        monitor: Option<&'a Client>,
        backfill_pids: Vec<i32>,
        pace: BackfillPace,
        control: &'a BackfillControl,
        flags: FlagStore,
        table: String,
        estimate_sql: &str,
        rows_done: i64,
        limits: Limits,
    ) -> Result<Pacer<'a>, RuntimeError> {
        let estimated_rows: Option<i64> = within(
            Some(limits.own),
            "reading the table's row estimate",
            client.query_opt(estimate_sql, &[]),
        )
        .await?
        .map_err(RuntimeError::database("reading the table's row estimate"))?
        .and_then(|row| row.get::<_, Option<i64>>(0))
        .filter(|&rows| rows > 0);
        let mode = match pace {
            BackfillPace::Fixed {
                batch_size,
                delay_ms,
            } => Mode::Fixed {
                batch_size,
                delay: Duration::from_millis(u64::from(delay_ms)),
            },
            BackfillPace::Adaptive { target_ms } => {
                let (mut signals, baselines) =
                    Signals::start(monitor, backfill_pids.clone(), control, limits).await?;
                let settings = ControllerSettings {
                    target: target_ms
                        .map_or(control.target, |ms| Duration::from_millis(u64::from(ms))),
                    // A directive's `target=` is the user's own choice, for every load; and
                    // without rest windows nothing says whether an application runs.
                    busy_target: control
                        .busy_target
                        .filter(|_| target_ms.is_none() && signals.watching()),
                    min_batch: control.min_batch,
                    max_batch: control.max_batch,
                    max_workers: control
                        .max_workers
                        .min(u32::try_from(backfill_pids.len()).unwrap_or(1))
                        .max(1),
                    max_cpu_percent: control.max_cpu_percent,
                };
                let statements_since = signals.first_statements.take();
                tracing::info!(
                    target_ms = settings.target.as_millis() as u64,
                    busy_target_ms = settings.busy_target.map(|busy| busy.as_millis() as u64),
                    min_batch = settings.min_batch,
                    max_batch = settings.max_batch,
                    probe_baseline_us = baselines.probe.map(|d| d.as_micros() as u64),
                    max_active_sessions = baselines.active_sessions,
                    server_cpus = baselines.cpus,
                    max_cpu_percent = settings.max_cpu_percent,
                    host_cpu_time = signals.host_cpu,
                    max_workers = settings.max_workers,
                    statement_latency = match &signals.statements_off {
                        None => "pg_stat_statements",
                        Some(_) => "off",
                    },
                    statement_latency_off = signals.statements_off.as_deref(),
                    "backfill controller starting"
                );
                let mut controller = Controller::new(settings);
                if signals.watching() {
                    controller.start_slowly();
                }
                Mode::Adaptive {
                    controller: Box::new(controller),
                    signals: Box::new(signals),
                    baselines,
                    windows: Box::new(RateWindows {
                        work_since: Instant::now(),
                        every: FIRST_WORK_WINDOW,
                        recent_rests: VecDeque::new(),
                        resting: (0.0, 0.0, 0.0),
                        working: (0.0, 0.0, 0.0),
                        server_time: true,
                        statements_since,
                        statements: (0.0, 0.0, 0.0),
                    }),
                }
            }
        };
        Ok(Pacer {
            mode,
            stops: StopSignals::new(client, flags, control, limits, table),
            paused: None,
            poll: control.pause_poll,
            throttled: BTreeMap::new(),
            stop_queries_counted: 0,
            started: Instant::now(),
            rows_at_start: rows_done,
            estimated_rows,
            limits,
        })
    }

    /// Batches to run at once: the controller's choice; one in fixed mode.
    pub(crate) fn workers(&self) -> u32 {
        match &self.mode {
            Mode::Fixed { .. } => 1,
            Mode::Adaptive { controller, .. } => controller.workers(),
        }
    }

    /// How long one read of the verification's count aims to last: a batch's target (in
    /// fixed mode, the busy target's default).
    pub(crate) fn scan_target(&self) -> Duration {
        match &self.mode {
            Mode::Fixed { .. } => SCAN_TARGET_FIXED,
            Mode::Adaptive { controller, .. } => controller.target(),
        }
    }

    /// The rest after a read of the verification's count that took `took`: at the duty the
    /// batches ran at last (`delay=` in fixed mode).
    pub(crate) fn scan_rest(&self, took: Duration) -> Duration {
        match &self.mode {
            Mode::Fixed { delay, .. } => *delay,
            Mode::Adaptive { controller, .. } => controller.rest_after(took),
        }
    }

    /// Counts `time` the backfill did not run batches for `signal`.
    pub(crate) fn throttle(&mut self, signal: &'static str, time: Duration) {
        *self.throttled.entry(signal).or_default() += time;
    }

    fn batch_size(&self) -> u32 {
        match &self.mode {
            Mode::Fixed { batch_size, .. } => *batch_size,
            Mode::Adaptive { controller, .. } => controller.batch_size(),
        }
    }

    /// The pace now, `rows_done` rows done.
    pub(crate) fn status(&self, rows_done: i64) -> BackfillStatus {
        let elapsed = self.started.elapsed().as_secs_f64();
        let rows_per_second = if elapsed > 0.0 {
            (rows_done - self.rows_at_start).max(0) as f64 / elapsed
        } else {
            0.0
        };
        let eta = self
            .estimated_rows
            .filter(|_| rows_per_second > 0.0)
            .map(|total| (total - rows_done).max(0) as f64 / rows_per_second)
            .and_then(|secs| Duration::try_from_secs_f64(secs).ok());
        BackfillStatus {
            rows_done,
            rows_per_second,
            batch_size: self.batch_size(),
            state: match (&self.paused, &self.mode) {
                (Some(reason), _) => PaceState::Paused(reason.clone()),
                (None, Mode::Fixed { .. }) => PaceState::Fixed,
                (None, Mode::Adaptive { controller, .. }) => controller.state().clone(),
            },
            eta,
            workers: self.workers(),
            throttled: {
                // Every signal that held it, however briefly: a back-off that rested a few
                // milliseconds still says what the backfill saw.
                let mut throttled: Vec<(String, Duration)> = self
                    .throttled
                    .iter()
                    .filter(|(_, time)| !time.is_zero())
                    .map(|(signal, time)| ((*signal).to_owned(), *time))
                    .collect();
                throttled.sort_by_key(|entry| std::cmp::Reverse(entry.1));
                throttled
            },
            application: match &self.mode {
                Mode::Adaptive { windows, .. } => windows.totals(),
                Mode::Fixed { .. } => None,
            },
        }
    }

    /// Stores the pace with `progress` and reports it.
    pub(crate) async fn record(
        &self,
        client: &Client,
        row: &ProgressRow<'_>,
        progress: &BackfillProgress,
        report: &(dyn Fn(&BackfillStatus) + Sync),
    ) -> Result<(), RuntimeError> {
        let status = self.status(progress.rows_done);
        let impact = status.impact();
        let stored = StoredPace {
            batch_size: i32::try_from(status.batch_size).ok(),
            rows_per_second: Some(status.rows_per_second),
            state: status.state.to_string(),
            report: (!impact.is_empty()).then_some(impact),
        };
        within(
            Some(self.limits.own),
            "recording backfill progress",
            row.table
                .save(client, row.version, row.statement, progress, &stored),
        )
        .await??;
        report(&status);
        Ok(())
    }

    /// Waits while a stop signal says pause (recording the state at each check, which also
    /// writes WAL a resumed replica reports back), then returns the next batch's size; in
    /// fixed mode as in adaptive. An abort is returned as `Err(reason)` in `Ok`, for the
    /// caller to name the statement.
    pub(crate) async fn ready(
        &mut self,
        client: &Client,
        row: &ProgressRow<'_>,
        progress: &BackfillProgress,
        report: &(dyn Fn(&BackfillStatus) + Sync),
    ) -> Result<Result<i64, AbortReason>, RuntimeError> {
        loop {
            match self.stops.check().await? {
                None => {
                    if let Some(reason) = self.paused.take() {
                        tracing::info!(was = %reason, "backfill resumed");
                        if let Mode::Adaptive { controller, .. } = &mut self.mode {
                            controller.resume();
                        }
                    }
                    return Ok(Ok(i64::from(self.batch_size())));
                }
                Some(Stop::Pause(reason)) => {
                    if self.paused.as_ref() != Some(&reason) {
                        tracing::info!(reason = %reason, "backfill paused");
                    }
                    if let Mode::Adaptive { controller, .. } = &mut self.mode {
                        controller.pause(reason.clone());
                    }
                    let signal = reason.signal();
                    self.paused = Some(reason);
                    self.record(client, row, progress, report).await?;
                    // Polling: a replica's replay, a flag set in another terminal or the
                    // throttle query's answer have no notification to wait on.
                    tokio::time::sleep(self.poll).await;
                    self.throttle(signal, self.poll);
                }
                Some(Stop::Abort(reason)) => {
                    tracing::warn!(reason = %reason, "backfill aborted");
                    self.paused = None;
                    let stored = StoredPace {
                        batch_size: i32::try_from(self.batch_size()).ok(),
                        rows_per_second: Some(self.status(progress.rows_done).rows_per_second),
                        state: format!("aborted: {reason}"),
                        report: Some(self.status(progress.rows_done).impact())
                            .filter(|impact| !impact.is_empty()),
                    };
                    within(
                        Some(self.limits.own),
                        "recording backfill progress",
                        row.table
                            .save(client, row.version, row.statement, progress, &stored),
                    )
                    .await??;
                    return Ok(Err(reason));
                }
            }
        }
    }

    /// Runs one batch of `size` rows (`batch`) while the signals are watched, and lets the
    /// controller decide the next one from what it did (`rows` of it).
    ///
    /// `workers` batches run at once; `rows` is the keys they covered, each.
    pub(crate) async fn run<F, T>(
        &mut self,
        size: i64,
        workers: u32,
        batch: F,
        rows: impl Fn(&T) -> i64,
    ) -> Result<T, RuntimeError>
    where
        F: Future<Output = Result<T, RuntimeError>>,
    {
        let stop_queries = self.stops.queries_run;
        let Mode::Adaptive {
            controller,
            signals,
            baselines,
            ..
        } = &mut self.mode
        else {
            return batch.await;
        };
        let started = Instant::now();
        let output = signals.watch(batch, controller.target()).await;
        let took = started.elapsed();
        let output = output?;
        // Ours, not the application's: per batch its range's end, the batch, the progress
        // row; and the stop signals' readings since the last batch.
        signals.count_own(
            u64::from(workers) * 2 + 1 + stop_queries.saturating_sub(self.stop_queries_counted),
            took * workers,
        );
        self.stop_queries_counted = stop_queries;
        let watched = signals.take_watched();
        let seen = BatchObservation {
            size: u32::try_from(size).unwrap_or(u32::MAX),
            rows: rows(&output),
            took,
            blocked_sessions: watched.blocked_sessions,
            active_sessions: watched.active_sessions,
            probe: watched.probe,
            running: watched.running,
            host_busy: watched.host_busy,
            workers,
        };
        let decision = controller.observe(&seen, baselines);
        let took_ms = took.as_secs_f64() * 1000.0;
        let rate = controller.rows_per_second().unwrap_or(0.0);
        match &decision {
            Decision::Steady => {}
            Decision::Resize { from, to } => tracing::debug!(
                from,
                to,
                took_ms,
                rows_per_second = rate,
                "backfill batch resized"
            ),
            Decision::BackOff {
                pressure,
                size,
                rest,
            } => tracing::info!(
                reason = %pressure,
                size,
                rest_ms = rest.as_millis() as u64,
                "backfill backing off"
            ),
            Decision::Recover { rest } => tracing::debug!(
                rest_ms = rest.as_millis() as u64,
                size = controller.batch_size(),
                "backfill recovering"
            ),
        }
        Ok(output)
    }

    /// The rest before the next batch: `delay=` in fixed mode; the controller's otherwise,
    /// watched like a batch (the probe's percentile covers the whole cycle), and now and
    /// then a rest window that measures the application alone.
    pub(crate) async fn rest(&mut self) {
        // Throttling between batches, not synchronisation: gives replicas and the
        // application's own work room.
        let held = match &mut self.mode {
            Mode::Fixed { delay, .. } => {
                if !delay.is_zero() {
                    tokio::time::sleep(*delay).await;
                }
                None
            }
            Mode::Adaptive {
                controller,
                signals,
                windows,
                ..
            } => {
                let rest = controller.rest();
                let mut held = Vec::new();
                if !rest.is_zero() {
                    signals
                        .watch(tokio::time::sleep(rest), controller.target())
                        .await;
                    held.push((controller.rest_cause(), rest));
                }
                if signals.watching() && windows.work_since.elapsed() >= windows.every {
                    let window = rest_window(controller, signals, windows).await;
                    held.push(("rest windows (measuring the application)", window));
                }
                Some(held)
            }
        };
        for (signal, time) in held.into_iter().flatten() {
            self.throttle(signal, time);
        }
    }
}

/// Rest windows whose readings make the reference the work is compared with.
const RESTS_COMPARED: usize = 5;

/// The reference the work is compared with, and the relative scatter of the rests' rates.
///
/// The application's load drifts, so the rests are the recent ones; and a one-second reading
/// of a few sessions' counters can be off by a session's flush (their server counts them
/// about once a second), so the reference is their median and their scatter (the median
/// absolute deviation, scaled to a standard deviation, twice) is how far below it a
/// throughput must fall to count as a drop. Fewer than three rests: their mean, no scatter.
fn rest_reference(rests: &VecDeque<(f64, Option<f64>)>) -> ((f64, Option<f64>), f64) {
    let median = |mut values: Vec<f64>| -> Option<f64> {
        if values.is_empty() {
            return None;
        }
        values.sort_by(f64::total_cmp);
        let middle = values.len() / 2;
        Some(if values.len().is_multiple_of(2) {
            (values[middle - 1] + values[middle]) / 2.0
        } else {
            values[middle]
        })
    };
    let tps: Vec<f64> = rests.iter().map(|r| r.0).collect();
    // Server time only when every rest measured it.
    let ms: Option<Vec<f64>> = rests.iter().map(|r| r.1).collect();
    if rests.len() < 3 {
        let mean = |values: &[f64]| values.iter().sum::<f64>() / values.len().max(1) as f64;
        return ((mean(&tps), ms.map(|ms| mean(&ms))), 0.0);
    }
    let center = median(tps.clone()).unwrap_or(0.0);
    let deviation = median(tps.iter().map(|t| (t - center).abs()).collect()).unwrap_or(0.0);
    let noise = if center > 0.0 {
        2.0 * 1.4826 * deviation / center
    } else {
        0.0
    };
    ((center, ms.and_then(median)), noise)
}

/// Rests while the application's rate is measured alone, then compares it with its rate
/// while the batches ran since the last window; returns how long it rested.
async fn rest_window(
    controller: &mut Controller,
    signals: &mut Signals<'_>,
    windows: &mut RateWindows,
) -> Duration {
    let lag = signals.flush_lag;
    // pg_stat_statements counts a statement when it ends, with no flush lag: read at the
    // window's edges themselves.
    let work_ended = signals.statements().await;
    let from = Instant::now();
    // Measuring the application without the backfill: pacing, not synchronisation.
    signals
        .watch(
            tokio::time::sleep(lag + REST_WINDOW_MEASURED),
            controller.target(),
        )
        .await;
    let rest_ended = signals.statements().await;
    let rested = from.elapsed();
    let statements = match (windows.statements_since.take(), &work_ended, &rest_ended) {
        (Some(work_began), Some(work_ended), Some(rest_ended)) => statement_latency(
            (&work_began, work_ended),
            (work_ended, rest_ended),
            signals.own_queryids(),
        ),
        _ => None,
    };
    windows.statements_since = rest_ended;
    // The rest's readings are of no batch: they do not count as the next batch's cycle.
    signals.take_watched();
    let work_since = windows.work_since;
    let working = signals.application_rate(work_since, from);
    let resting = signals.application_rate(from, from + REST_WINDOW_MEASURED);
    windows.work_since = Instant::now();
    let (Some(working), Some(resting)) = (working, resting) else {
        return rested;
    };
    if windows.recent_rests.len() == RESTS_COMPARED {
        windows.recent_rests.pop_front();
    }
    windows.recent_rests.push_back(resting);
    let (reference, noise) = rest_reference(&windows.recent_rests);
    controller.set_rate_noise(noise);
    let work_seconds = from.saturating_duration_since(work_since).as_secs_f64();
    let add = |total: &mut (f64, f64, f64), (tps, ms): (f64, Option<f64>), seconds: f64| {
        total.0 += tps * seconds;
        total.1 += seconds;
        total.2 += ms.unwrap_or(0.0) * tps * seconds;
    };
    add(
        &mut windows.resting,
        resting,
        REST_WINDOW_MEASURED.as_secs_f64(),
    );
    add(&mut windows.working, working, work_seconds);
    if let Some((resting_ms, working_ms)) = statements {
        // Weighted by the work window's length, as the rates are.
        windows.statements.0 += work_seconds;
        windows.statements.1 += resting_ms * work_seconds;
        windows.statements.2 += working_ms * work_seconds;
    }
    windows.server_time &= working.1.is_some() && resting.1.is_some();
    let rates = ApplicationRates {
        resting_tps: reference.0,
        working_tps: working.0,
        resting_ms: reference.1,
        working_ms: working.1,
        resting_statement_ms: statements.map(|(resting, _)| resting),
        working_statement_ms: statements.map(|(_, working)| working),
    };
    tracing::debug!(
        resting_tps = rates.resting_tps,
        working_tps = rates.working_tps,
        resting_ms = rates.resting_ms,
        working_ms = rates.working_ms,
        resting_statement_ms = rates.resting_statement_ms,
        working_statement_ms = rates.working_statement_ms,
        "backfill rest window"
    );
    match controller.observe_window(&rates) {
        Some(Decision::BackOff {
            pressure,
            size,
            rest,
        }) => {
            tracing::info!(
                reason = %pressure,
                size,
                rest_ms = rest.as_millis() as u64,
                workers = controller.workers(),
                "backfill backing off"
            );
            windows.every = FIRST_WORK_WINDOW;
        }
        // Nothing to protect: measuring again soon only costs the backfill its rests; the
        // other signals (CPU, probe, sessions) still watch every batch.
        _ if Controller::idle(&rates) => windows.every = MAX_WORK_WINDOW,
        _ => windows.every = (windows.every * 2).min(MAX_WORK_WINDOW),
    }
    rested
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rests(tps: &[f64]) -> VecDeque<(f64, Option<f64>)> {
        tps.iter().map(|&t| (t, Some(0.25))).collect()
    }

    #[test]
    fn one_rest_reading_a_flush_short_neither_moves_the_reference_nor_widens_the_margin() {
        let ((tps, ms), noise) =
            rest_reference(&rests(&[7_650.0, 7_700.0, 3_880.0, 7_600.0, 7_680.0]));
        assert_eq!(tps, 7_650.0);
        assert_eq!(ms, Some(0.25));
        assert!(noise < 0.03, "{noise}");
    }

    #[test]
    fn scattered_rest_readings_widen_the_margin_a_drop_must_exceed() {
        let (_, noise) = rest_reference(&rests(&[7_600.0, 5_000.0, 7_700.0, 6_000.0, 7_800.0]));
        assert!(noise > 0.05, "{noise}");
        let (_, steady) = rest_reference(&rests(&[7_600.0, 7_610.0, 7_590.0]));
        assert!(steady < 0.01, "{steady}");
    }

    #[test]
    fn before_three_rests_the_reference_is_their_mean_and_has_no_margin() {
        let ((tps, ms), noise) = rest_reference(&rests(&[7_000.0, 8_000.0]));
        assert_eq!((tps, ms, noise), (7_500.0, Some(0.25), 0.0));
        let mixed: VecDeque<_> = [(7_000.0, Some(0.2)), (8_000.0, None)]
            .into_iter()
            .collect();
        assert_eq!(rest_reference(&mixed).0.1, None);
    }

    fn status(throttled: Vec<(&str, Duration)>) -> BackfillStatus {
        BackfillStatus {
            rows_done: 0,
            rows_per_second: 0.0,
            batch_size: 100,
            state: PaceState::Running,
            eta: None,
            workers: 1,
            throttled: throttled
                .into_iter()
                .map(|(signal, time)| (signal.to_owned(), time))
                .collect(),
            application: None,
        }
    }

    #[test]
    fn the_impact_names_every_signal_that_held_the_backfill_however_briefly() {
        let impact = status(vec![
            ("server CPU", Duration::from_millis(3_240)),
            ("probe latency", Duration::from_millis(12)),
            ("lock waits", Duration::from_micros(300)),
        ])
        .impact();
        assert_eq!(
            impact,
            "held by server CPU 3.2s, probe latency 12ms, lock waits 1ms"
        );
        assert_eq!(status(Vec::new()).impact(), "");
    }
}
