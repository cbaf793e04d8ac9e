//! `migrate up` and `migrate down`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use migrate_core::runtime::{
    AppliedMigration, DownReport, Failed, Migrator, Plan, ProgressEvent, ProgressHook,
    RuntimeError, UpReport, UpTo,
};
use migrate_core::{Phase, TransactionMode};
use serde_json::json;

use crate::error::Outcome;
use crate::output::{self, Cell};
use crate::{Context, block_on};

pub fn up(context: &Context, to: Option<u64>, dry_run: bool) -> anyhow::Result<Outcome> {
    // Checked before reading anything: without a database there is nothing to do, and a
    // scratch database would make a deploy "succeed" against nothing.
    let database = context.database("up")?;
    let migrations = context.migrations()?;
    let bar = progress_bar(context);
    let impacts = BackfillImpacts::default();
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?
        .with_progress(progress_hook(&bar, Some(impacts.clone())));
    let target = to.map_or(UpTo::All, UpTo::Version);
    if dry_run {
        // Every check and gate of the real run, so a dry run that passes means `up` would.
        let result = block_on(async {
            let client = context.connect(database).await?;
            anyhow::Ok(migrator.dry_run_up(&client, target).await)
        })??;
        return match result {
            Ok(plan) => {
                print_up_plan(context, &plan, None);
                Ok(Outcome::Success)
            }
            Err(failed) => {
                // In JSON the error document carries the plan (see `partial_json`).
                if !context.json() {
                    print_up_plan(context, &failed.report, Some(&failed.error));
                }
                Err(failed.into())
            }
        };
    }
    let needs_monitor = migrations.iter().any(|m| {
        m.backfill
            .as_ref()
            .is_some_and(|spec| matches!(spec.pace, migrate_core::BackfillPace::Adaptive { .. }))
    });
    let result = block_on(async {
        let client = context.connect(database).await?;
        // A backfill watches the server on a second connection while each batch runs.
        let migrator = if needs_monitor {
            migrator
                .with_monitor(context.connect_monitor(database).await?)
                .with_workers(
                    context
                        .connect_workers(database, context.config.migrator.backfill.max_workers)
                        .await?,
                )
        } else {
            migrator
        };
        anyhow::Ok(migrator.up(&client, target).await)
    })?;
    bar.finish_and_clear();
    let result = result?;
    if !context.json() {
        impacts.print();
    }
    match result {
        Ok(report) => {
            print_applied(context, "applied", &report.applied);
            Ok(Outcome::Success)
        }
        Err(failed) => {
            if !context.json() && !failed.report.applied.is_empty() {
                print_applied(
                    context,
                    "applied before the failure",
                    &failed.report.applied,
                );
            }
            Err(failed.into())
        }
    }
}

pub fn down(context: &Context, to: u64, dry_run: bool) -> anyhow::Result<Outcome> {
    let database = context.database("down")?;
    let migrations = context.migrations()?;
    let bar = progress_bar(context);
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?
        .with_progress(progress_hook(&bar, None));
    if dry_run {
        // Refuses exactly as the real `down` does (drift, missing files, no down part).
        let plan = block_on(async {
            let client = context.connect(database).await?;
            anyhow::Ok(migrator.dry_run_down(&client, to).await?)
        })??;
        print_down_plan(context, &plan, to);
        return Ok(Outcome::Success);
    }
    let result = block_on(async {
        let client = context.connect(database).await?;
        anyhow::Ok(migrator.down(&client, to).await)
    })?;
    bar.finish_and_clear();
    match result? {
        Ok(report) => {
            print_applied(context, "reverted", &report.reverted);
            Ok(Outcome::Success)
        }
        Err(failed) => {
            if !context.json() && !failed.report.reverted.is_empty() {
                print_applied(
                    context,
                    "reverted before the failure",
                    &failed.report.reverted,
                );
            }
            Err(failed.into())
        }
    }
}

/// A bar over the migrations of the run, on a terminal only (hidden when stderr is not one,
/// so pipes and CI logs stay clean). Its length is set by the first event.
fn progress_bar(context: &Context) -> ProgressBar {
    if !context.config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(0);
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{pos}/{len}] {msg} ({elapsed})") {
        bar.set_style(style);
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// Moves `bar` with the runtime's events: the file being applied or reverted, and the rows a
/// backfill has done so far.
/// What held each backfill of the run and the application's measured change, from the last
/// pace it reported: the end-of-backfill report.
#[derive(Clone, Default)]
struct BackfillImpacts(Arc<Mutex<BTreeMap<u64, (String, String)>>>);

impl BackfillImpacts {
    fn print(&self) {
        let impacts = self.0.lock().map(|map| map.clone()).unwrap_or_default();
        for (version, (file, impact)) in impacts {
            if !impact.is_empty() {
                println!("backfill {version} ({file}): {impact}");
            }
        }
    }
}

fn progress_hook(bar: &ProgressBar, impacts: Option<BackfillImpacts>) -> ProgressHook {
    let bar = bar.clone();
    Box::new(move |event| match *event {
        ProgressEvent::Starting {
            migration,
            index,
            total,
            reverting,
        } => {
            bar.set_length(total as u64);
            bar.set_position(index as u64);
            let verb = if reverting { "reverting" } else { "applying" };
            bar.set_message(format!("{verb} {}", migration.file_name));
        }
        ProgressEvent::BackfillPace { migration, status } => {
            if let Some(BackfillImpacts(impacts)) = &impacts
                && let Ok(mut impacts) = impacts.lock()
            {
                impacts.insert(
                    migration.version,
                    (migration.file_name.to_string(), status.impact()),
                );
            }
            let eta = status
                .eta
                .map(|eta| format!(", ETA {}", human_duration(eta)))
                .unwrap_or_default();
            bar.set_message(format!(
                "backfilling {}: {} rows, {:.0} rows/s, batch {}{}{eta}, {}",
                migration.file_name,
                status.rows_done,
                status.rows_per_second,
                status.batch_size,
                if status.workers > 1 {
                    format!(" x {} workers", status.workers)
                } else {
                    String::new()
                },
                status.state
            ));
        }
        ProgressEvent::Finished { index, .. } => bar.set_position(index as u64 + 1),
        _ => {}
    })
}

/// `1h 02m`, `3m 05s`, `42s`: an ETA, to the second.
fn human_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    match (secs / 3600, secs / 60 % 60, secs % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m {s:02}s"),
        (h, m, _) => format!("{h}h {m:02}m"),
    }
}

/// How a migration ran: a backfill's up part runs in keyed batches, each its own transaction.
fn mode_label(m: &AppliedMigration, reverting: bool) -> &'static str {
    mode_text(m.phase, m.mode, reverting)
}

/// The mode as every command shows it (`plan`, `up`, `up --dry-run`, `-v` logs).
pub(crate) fn mode_text(phase: Phase, mode: TransactionMode, reverting: bool) -> &'static str {
    if phase == Phase::Backfill && !reverting {
        "batched"
    } else {
        mode.as_str()
    }
}

fn migration_json(m: &AppliedMigration, reverting: bool) -> serde_json::Value {
    json!({
        "version": m.version,
        "name": m.name,
        "phase": m.phase.as_str(),
        "mode": mode_label(m, reverting),
        "duration_ms": m.duration.as_millis() as u64,
        "attempts": m.attempts,
    })
}

fn print_applied(context: &Context, verb: &str, list: &[AppliedMigration]) {
    let reverting = verb.starts_with("reverted");
    if context.json() {
        let key = if reverting { "reverted" } else { "applied" };
        let items: Vec<_> = list.iter().map(|m| migration_json(m, reverting)).collect();
        output::print_json(&json!({ "dry_run": false, key: items }));
        return;
    }
    if list.is_empty() {
        println!(
            "{}",
            if reverting {
                "nothing to revert: no applied migration is newer than the target version"
            } else {
                "nothing to do: the database is up to date"
            }
        );
        return;
    }
    println!("{verb} {} migration(s):", list.len());
    let rows: Vec<Vec<Cell>> = list
        .iter()
        .map(|m| {
            vec![
                Cell::new(m.version.to_string()),
                Cell::new(m.name.clone()),
                Cell::new(m.phase.as_str()),
                Cell::new(mode_label(m, reverting)),
                Cell::new(format!("{} ms", m.duration.as_millis())),
                Cell::new(m.attempts.to_string()),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["VERSION", "NAME", "PHASE", "MODE", "DURATION", "ATTEMPTS"],
            &rows,
            context.config.color
        )
    );
}

fn plan_json(plan: &Plan, reverting: bool) -> Vec<serde_json::Value> {
    plan.migrations
        .iter()
        .map(|m| {
            json!({
                "version": m.version,
                "name": m.name,
                "phase": m.phase.as_str(),
                "file": m.file_name,
                "mode": mode_text(m.phase, m.mode, reverting),
                "statements": m.statements,
            })
        })
        .collect()
}

fn plan_rows(plan: &Plan, reverting: bool) -> Vec<Vec<Cell>> {
    plan.migrations
        .iter()
        .map(|m| {
            vec![
                Cell::new(m.version.to_string()),
                Cell::new(m.file_name.clone()),
                Cell::new(mode_text(m.phase, m.mode, reverting)),
                Cell::new(m.statements.to_string()),
            ]
        })
        .collect()
}

/// What a failed `up`, `down` or `up --dry-run` completed (or would have) before the
/// failure, as fields of the JSON error document: `applied`, `reverted` or `pending`.
pub(crate) fn partial_json(error: &anyhow::Error) -> Option<(&'static str, serde_json::Value)> {
    for cause in error.chain() {
        if let Some(failed) = cause.downcast_ref::<Failed<UpReport>>() {
            let items: Vec<_> = failed
                .report
                .applied
                .iter()
                .map(|m| migration_json(m, false))
                .collect();
            return Some(("applied", json!(items)));
        }
        if let Some(failed) = cause.downcast_ref::<Failed<DownReport>>() {
            let items: Vec<_> = failed
                .report
                .reverted
                .iter()
                .map(|m| migration_json(m, true))
                .collect();
            return Some(("reverted", json!(items)));
        }
        if let Some(failed) = cause.downcast_ref::<Failed<Plan>>() {
            return Some(("pending", json!(plan_json(&failed.report, false))));
        }
    }
    None
}

/// The plan of `up --dry-run`; with `refused`, the migrations before the refusal (the error
/// itself is printed by the caller's error path).
fn print_up_plan(context: &Context, plan: &Plan, refused: Option<&RuntimeError>) {
    if context.json() {
        output::print_json(&json!({ "dry_run": true, "pending": plan_json(plan, false) }));
        return;
    }
    if plan.migrations.is_empty() && refused.is_none() {
        println!("dry run: nothing to do, the database is up to date");
        return;
    }
    let count = plan.migrations.len();
    match refused {
        None => println!("dry run: would apply {count} migration(s), nothing was changed:"),
        Some(_) => println!(
            "dry run: would apply {count} migration(s), then be refused (below); nothing was changed"
        ),
    }
    if count > 0 {
        print!(
            "{}",
            output::table(
                &["VERSION", "FILE", "MODE", "STATEMENTS"],
                &plan_rows(plan, false),
                context.config.color
            )
        );
    }
}

fn print_down_plan(context: &Context, plan: &Plan, to: u64) {
    if context.json() {
        output::print_json(&json!({ "dry_run": true, "to_revert": plan_json(plan, true) }));
        return;
    }
    if plan.migrations.is_empty() {
        println!("dry run: nothing to revert: no applied migration is newer than version {to}");
        return;
    }
    println!(
        "dry run: would revert {} migration(s), newest first, nothing was changed:",
        plan.migrations.len()
    );
    print!(
        "{}",
        output::table(
            &["VERSION", "FILE", "MODE", "STATEMENTS"],
            &plan_rows(plan, true),
            context.config.color
        )
    );
}
