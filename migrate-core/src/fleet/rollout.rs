//! `fleet up`: every target is checked first (reachable, its schemas found, its history
//! agreeing with the files), so bad input fails before anything is applied anywhere. Then
//! the canaries, all of which must finish before any other target starts, then the rest in
//! file order, at most `parallel` at once.
//!
//! The first failure stops the rollout: no target starts after it, and the ones in flight
//! stop after their current migration (each migration is applied by its own `up` call, so
//! "between two migrations" is a point where a target can stop with its history
//! consistent). The rest stay untouched. Running `up` again resumes: finished targets have
//! nothing to do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesUnordered;

use super::error::{FleetError, TargetError, TargetFailure};
use super::event::FleetEvent;
use super::report::{FleetFailed, FleetUpReport, TargetRun, TargetState};
use super::session::{
    backend_pid, base_search_path, cancel, create_history, enter_schema, history_exists,
};
use super::survey::Read;
use super::{Fleet, Target};
use crate::runtime::{AppliedMigration, UpTo};

impl Fleet<'_> {
    /// Applies every pending migration on every target; see the module docs for the order
    /// and the stop. On failure the error carries every target's part.
    pub async fn up(&self) -> Result<FleetUpReport, FleetFailed> {
        let mut targets = Vec::new();
        let mut failures = Vec::new();
        for (target, result) in self.read_all(Read::Plan).await {
            match result {
                Ok(_) => targets.push(target),
                Err(error) => failures.push(TargetFailure {
                    target: target.label,
                    error,
                }),
            }
        }
        if !failures.is_empty() {
            return Err(FleetFailed {
                report: FleetUpReport::default(),
                error: FleetError::Preflight { failures },
            });
        }
        let canaries = self.canary.min(targets.len());
        self.emit(FleetEvent::Checked {
            targets: targets.len(),
            canaries,
        });

        let stop = AtomicBool::new(false);
        let mut runs: Vec<Option<TargetRun>> = targets.iter().map(|_| None).collect();
        let mut in_flight = FuturesUnordered::new();
        let mut next = 0;
        let mut canaries_done = 0;
        let (targets_ref, stop_ref) = (&targets, &stop);
        loop {
            while !stop.load(Ordering::SeqCst)
                && in_flight.len() < self.parallel
                && next < targets.len()
                && (next < canaries || canaries_done == canaries)
            {
                let index = next;
                next += 1;
                in_flight.push(async move {
                    (index, self.run_target(&targets_ref[index], stop_ref).await)
                });
            }
            let Some((index, run)) = in_flight.next().await else {
                break;
            };
            match run.state {
                TargetState::Failed => stop.store(true, Ordering::SeqCst),
                TargetState::Done if index < canaries => canaries_done += 1,
                _ => {}
            }
            self.emit(FleetEvent::TargetFinished { run: &run });
            runs[index] = Some(run);
        }

        let mut report = FleetUpReport::default();
        for (target, run) in targets.iter().zip(runs) {
            report.targets.push(run.unwrap_or_else(|| TargetRun {
                target: target.label.clone(),
                database: self.database_label(target),
                schema: target.schema.clone(),
                state: TargetState::NotStarted,
                applied: Vec::new(),
                error: None,
                duration: std::time::Duration::ZERO,
            }));
        }
        // The first failure in rollout order is the one the error names; its run keeps the
        // state, the error moves into the rollout's error.
        let first = report
            .targets
            .iter_mut()
            .find(|run| run.state == TargetState::Failed);
        match first.and_then(|run| Some((run.target.clone(), run.error.take()?))) {
            Some((target, error)) => Err(FleetFailed {
                report,
                error: FleetError::RolloutStopped {
                    failure: Box::new(TargetFailure { target, error }),
                },
            }),
            None => Ok(report),
        }
    }

    fn database_label(&self, target: &Target) -> String {
        self.targets.databases()[target.database]
            .redacted_url()
            .to_owned()
    }

    async fn run_target(&self, target: &Target, stop: &AtomicBool) -> TargetRun {
        let started = Instant::now();
        self.emit(FleetEvent::TargetStarted {
            target: &target.label,
        });
        let mut applied = Vec::new();
        let mut pid = None;
        let work = self.roll(target, stop, &mut applied, &mut pid);
        let result = match self.target_timeout {
            Some(limit) => {
                let outcome = tokio::time::timeout(limit, work).await;
                outcome.unwrap_or(Err(TargetError::TimedOut { limit }))
            }
            None => work.await,
        };
        if let (Err(TargetError::TimedOut { .. }), Some(pid)) = (&result, pid) {
            cancel(self, &self.targets.databases()[target.database], pid).await;
        }
        let (state, error) = match result {
            Ok(state) => (state, None),
            Err(error) => (TargetState::Failed, Some(error)),
        };
        TargetRun {
            target: target.label.clone(),
            database: self.database_label(target),
            schema: target.schema.clone(),
            state,
            applied,
            error,
            duration: started.elapsed(),
        }
    }

    /// One target, one migration per `up` call, checking `stop` between them.
    async fn roll(
        &self,
        target: &Target,
        stop: &AtomicBool,
        applied: &mut Vec<AppliedMigration>,
        pid: &mut Option<i32>,
    ) -> Result<TargetState, TargetError> {
        let database = &self.targets.databases()[target.database];
        let client = self.connect(database).await?;
        *pid = backend_pid(&client).await;
        if let Some(schema) = &target.schema {
            let base = base_search_path(&client).await?;
            enter_schema(&client, schema, &base).await?;
        }
        let migrator = self.migrator(target.schema.as_deref())?;
        if target.schema.is_some() && !history_exists(&client, migrator.history_table()).await? {
            create_history(&client, &migrator, self.config.lock_wait).await?;
        }
        let mut previous: Option<(u64, usize)> = None;
        loop {
            let plan = migrator.plan(&client, UpTo::All).await?;
            let Some(next) = plan.migrations.first() else {
                return Ok(TargetState::Done);
            };
            if stop.load(Ordering::SeqCst) {
                return Ok(TargetState::Stopped);
            }
            if previous == Some((next.version, applied.len())) {
                // `up` to this version applied nothing, yet it is still pending: a loop
                // would never end.
                return Err(TargetError::NoProgress {
                    version: next.version,
                });
            }
            previous = Some((next.version, applied.len()));
            self.emit(FleetEvent::MigrationStarted {
                target: &target.label,
                version: next.version,
                name: &next.name,
            });
            match migrator.up(&client, UpTo::Version(next.version)).await {
                Ok(report) => applied.extend(report.applied),
                Err(failed) => {
                    applied.extend(failed.report.applied);
                    return Err(failed.error.into());
                }
            }
        }
    }
}
