//! Pacing one backfill statement: the controller's decisions (`backfill_controller`) on the
//! signals read from the server (`backfill_signals`), or the fixed `batch=`/`delay=` of the
//! directive. Either way the stop signals (`backfill_stops`: the operator's pause, the
//! throttle query, replica lag, ...) are read before every batch. Every decision is a `tracing` event; the state is stored with the progress
//! (so `migrate backfill` and other runners see it) and reported to the progress hook.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::backfill_controller::{
    Baselines, BatchObservation, Controller, ControllerSettings, Decision, PaceState,
};
use super::backfill_signals::Signals;
use super::backfill_stops::{AbortReason, PauseReason, Stop, StopSignals};
use super::config::BackfillControl;
use super::deadline::{Limits, within};
use super::error::RuntimeError;
use super::state::backfill_progress::{BackfillProgress, BackfillProgressTable, StoredPace};
use super::state::flags::FlagStore;
use crate::migration::BackfillPace;

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
        controller: Controller,
        signals: Box<Signals<'a>>,
        baselines: Baselines,
    },
}

/// The pace of one statement's batches.
pub(crate) struct Pacer<'a> {
    mode: Mode<'a>,
    stops: StopSignals<'a>,
    /// Why no batch runs now, while a stop signal holds.
    paused: Option<PauseReason>,
    poll: Duration,
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
                let settings = ControllerSettings {
                    target: target_ms
                        .map_or(control.target, |ms| Duration::from_millis(u64::from(ms))),
                    min_batch: control.min_batch,
                    max_batch: control.max_batch,
                };
                let (signals, baselines) = Signals::start(client, monitor, control, limits).await?;
                tracing::info!(
                    target_ms = settings.target.as_millis() as u64,
                    min_batch = settings.min_batch,
                    max_batch = settings.max_batch,
                    probe_baseline_us = baselines.probe.map(|d| d.as_micros() as u64),
                    max_active_sessions = baselines.active_sessions,
                    "backfill controller starting"
                );
                Mode::Adaptive {
                    controller: Controller::new(settings),
                    signals: Box::new(signals),
                    baselines,
                }
            }
        };
        Ok(Pacer {
            mode,
            stops: StopSignals::new(client, flags, control, limits, table),
            paused: None,
            poll: control.pause_poll,
            started: Instant::now(),
            rows_at_start: rows_done,
            estimated_rows,
            limits,
        })
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
        let stored = StoredPace {
            batch_size: i32::try_from(status.batch_size).ok(),
            rows_per_second: Some(status.rows_per_second),
            state: status.state.to_string(),
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
                    self.paused = Some(reason);
                    self.record(client, row, progress, report).await?;
                    // Polling: a replica's replay, a flag set in another terminal or the
                    // throttle query's answer have no notification to wait on.
                    tokio::time::sleep(self.poll).await;
                }
                Some(Stop::Abort(reason)) => {
                    tracing::warn!(reason = %reason, "backfill aborted");
                    self.paused = None;
                    let stored = StoredPace {
                        batch_size: i32::try_from(self.batch_size()).ok(),
                        rows_per_second: Some(self.status(progress.rows_done).rows_per_second),
                        state: format!("aborted: {reason}"),
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
    pub(crate) async fn run<F, T>(
        &mut self,
        size: i64,
        batch: F,
        rows: impl Fn(&T) -> i64,
    ) -> Result<T, RuntimeError>
    where
        F: Future<Output = Result<T, RuntimeError>>,
    {
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
        let watched = signals.take_watched();
        let seen = BatchObservation {
            size: u32::try_from(size).unwrap_or(u32::MAX),
            rows: rows(&output),
            took,
            blocked_sessions: watched.blocked_sessions,
            active_sessions: watched.active_sessions,
            probe: watched.probe,
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
    /// watched like a batch (the probe's median covers the whole cycle).
    pub(crate) async fn rest(&mut self) {
        // Throttling between batches, not synchronisation: gives replicas and the
        // application's own work room.
        match &mut self.mode {
            Mode::Fixed { delay, .. } => {
                if !delay.is_zero() {
                    tokio::time::sleep(*delay).await;
                }
            }
            Mode::Adaptive {
                controller,
                signals,
                ..
            } => {
                let rest = controller.rest();
                if !rest.is_zero() {
                    signals
                        .watch(tokio::time::sleep(rest), controller.target())
                        .await;
                }
            }
        }
    }
}
