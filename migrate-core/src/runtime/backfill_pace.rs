//! Pacing one backfill statement: the controller's decisions (`backfill_controller`) on the
//! signals read from the server (`backfill_signals`), or the fixed `batch=`/`delay=` of the
//! directive. Every decision is a `tracing` event; the state is stored with the progress
//! (so `migrate backfill` and other runners see it) and reported to the progress hook.

use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use super::backfill_controller::{
    Baselines, BatchObservation, Controller, ControllerSettings, Decision, PaceState,
};
use super::backfill_signals::Signals;
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
        poll: Duration,
    },
}

/// The pace of one statement's batches.
pub(crate) struct Pacer<'a> {
    mode: Mode<'a>,
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
                let (signals, baselines) =
                    Signals::start(client, monitor, flags, control, limits).await?;
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
                    poll: control.pause_poll,
                }
            }
        };
        Ok(Pacer {
            mode,
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
            state: match &self.mode {
                Mode::Fixed { .. } => PaceState::Fixed,
                Mode::Adaptive { controller, .. } => controller.state().clone(),
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

    /// Waits while a pause reason holds (recording the state at each check, which also
    /// writes WAL a resumed replica reports back), then returns the next batch's size.
    pub(crate) async fn ready(
        &mut self,
        client: &Client,
        row: &ProgressRow<'_>,
        progress: &BackfillProgress,
        report: &(dyn Fn(&BackfillStatus) + Sync),
    ) -> Result<i64, RuntimeError> {
        loop {
            let Mode::Adaptive {
                controller,
                signals,
                poll,
                ..
            } = &mut self.mode
            else {
                return Ok(i64::from(self.batch_size()));
            };
            let poll = *poll;
            match signals.pause_reason().await? {
                None => {
                    if let Some(reason) = controller.resume() {
                        tracing::info!(was = %reason, "backfill resumed");
                    }
                    return Ok(i64::from(controller.batch_size()));
                }
                Some(reason) => {
                    if controller.pause(reason.clone()) {
                        tracing::info!(reason = %reason, "backfill paused");
                    }
                    self.record(client, row, progress, report).await?;
                    // Polling: a replica's replay, a flag set in another terminal or the
                    // throttle query's answer have no notification to wait on.
                    tokio::time::sleep(poll).await;
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
