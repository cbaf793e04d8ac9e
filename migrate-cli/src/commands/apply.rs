//! `migrate up` and `migrate down`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use migrate_core::runtime::{
    AppliedMigration, DownReport, Failed, HeldBack, Migrator, Plan, ProgressEvent, ProgressHook,
    RuntimeError, UpReport, UpTo,
};
use serde_json::json;

use crate::error::Outcome;
use crate::output::{self, Cell};
use crate::{Context, block_on};

/// `migrate up`: to `to`, or with `expands_only` the expands at the head of the pending
/// migrations (`UpTo::LeadingExpands`; clap keeps the two apart).
pub fn up(
    context: &Context,
    to: Option<u64>,
    dry_run: bool,
    expands_only: bool,
) -> anyhow::Result<Outcome> {
    // Checked before reading anything: without a database there is nothing to do, and a
    // scratch database would make a deploy "succeed" against nothing.
    let database = context.database("up")?;
    let migrations = context.migrations()?;
    let bar = progress_bar(context);
    let impacts = BackfillImpacts::default();
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?
        .with_progress(progress_hook(&bar, Some(impacts.clone())));
    let target = if expands_only {
        UpTo::LeadingExpands
    } else {
        to.map_or(UpTo::All, UpTo::Version)
    };
    if dry_run {
        // Every check and gate of the real run, so a dry run that passes means `up` would.
        let (result, later) = block_on(async {
            let client = context.connect(database).await?;
            let result = migrator.dry_run_up(&client, target).await;
            let later = match (&result, to) {
                (Ok(_), Some(to)) => pending_after(&migrator, &client, to).await?,
                _ => Vec::new(),
            };
            anyhow::Ok((result, later))
        })??;
        return match result {
            Ok(plan) if expands_only => {
                print_expands_only(context, ExpandsOnly::Planned(&plan));
                Ok(Outcome::Success)
            }
            Ok(plan) => {
                if !(plan.migrations.is_empty() && !later.is_empty() && !context.json()) {
                    print_up_plan(context, &plan, None);
                } else {
                    print!("dry run: ");
                }
                print_later_pending(context, to, &later, plan.migrations.is_empty());
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
    let needs_monitor = migrations.iter().any(|m| m.backfill.is_some());
    let result = block_on(async {
        let client = context.connect(database).await?;
        // A backfill watches the server on a second connection (the controller's signals,
        // its vacuum's lock waits) and under the controller may run batches on more: opened
        // by the runtime under the migration lock, when it runs.
        let migrator = if needs_monitor {
            migrator.with_backfill_sessions(context.connect_options(database)?)
        } else {
            migrator
        };
        let result = migrator.up(&client, target).await;
        let later = match (&result, to) {
            (Ok(_), Some(to)) => pending_after(&migrator, &client, to).await?,
            _ => Vec::new(),
        };
        anyhow::Ok((result, later))
    })?;
    bar.finish_and_clear();
    let (result, later) = result?;
    if !context.json() {
        impacts.print();
    }
    match result {
        Ok(report) if expands_only => {
            print_expands_only(context, ExpandsOnly::Applied(&report));
            Ok(Outcome::Success)
        }
        Ok(report) => {
            // "up to date" would be wrong with later migrations pending: said below instead.
            if !(report.applied.is_empty() && !later.is_empty() && !context.json()) {
                print_applied(context, "applied", &report.applied);
            }
            print_later_pending(context, to, &later, report.applied.is_empty());
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

/// What `up --expands-only` did, or would do in a dry run.
enum ExpandsOnly<'a> {
    Applied(&'a UpReport),
    Planned(&'a Plan),
}

/// What `up --expands-only` applied or would apply, and what it left for operations with
/// why: in JSON one document, the run's own plus `held_back`.
fn print_expands_only(context: &Context, run: ExpandsOnly<'_>) {
    let (dry_run, done, held_back) = match run {
        ExpandsOnly::Applied(report) => (false, report.applied.len(), &report.held_back),
        ExpandsOnly::Planned(plan) => (true, plan.migrations.len(), &plan.held_back),
    };
    if context.json() {
        let held: Vec<_> = held_back.iter().map(held_back_json).collect();
        output::print_json(&match run {
            ExpandsOnly::Applied(report) => json!({
                "dry_run": false,
                "applied": report.applied.iter().map(migration_json).collect::<Vec<_>>(),
                "held_back": held,
            }),
            ExpandsOnly::Planned(plan) => {
                json!({ "dry_run": true, "pending": plan_json(plan), "held_back": held })
            }
        });
        return;
    }
    let dry = if dry_run { "dry run: " } else { "" };
    match run {
        ExpandsOnly::Applied(report) if done > 0 => {
            print_applied(context, "applied", &report.applied);
        }
        ExpandsOnly::Planned(plan) if done > 0 => print_up_plan(context, plan, None),
        _ if held_back.is_empty() => println!("{dry}nothing to do: the database is up to date"),
        _ => println!(
            "{dry}no expand to apply: the next pending migration is a backfill or a contract"
        ),
    }
    if held_back.is_empty() {
        return;
    }
    println!(
        "{}",
        context.name_commands(&format!(
            "held back for operations, {} migration(s) (`migrate up` applies them):",
            held_back.len()
        ))
    );
    let rows: Vec<Vec<Cell>> = held_back
        .iter()
        .map(|h| {
            vec![
                Cell::new(h.version.to_string()),
                Cell::new(h.file_name.clone()),
                Cell::new(h.phase.as_str()),
                Cell::new(h.reason.to_string()),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["VERSION", "FILE", "PHASE", "WHY"],
            &rows,
            context.config.color
        )
    );
}

fn held_back_json(h: &HeldBack) -> serde_json::Value {
    json!({
        "version": h.version,
        "file": h.file_name,
        "phase": h.phase.as_str(),
        "reason": h.reason.to_string(),
    })
}

/// Versions of the set above `to` still pending: what `up --to` left for later.
async fn pending_after(
    migrator: &Migrator<'_>,
    client: &tokio_postgres::Client,
    to: u64,
) -> anyhow::Result<Vec<u64>> {
    Ok(migrator
        .plan(client, UpTo::All)
        .await?
        .migrations
        .iter()
        .map(|m| m.version)
        .filter(|v| *v > to)
        .collect())
}

/// After `up --to V`: the database is up to date at V, not up to date, when later migrations
/// are pending. (In JSON, `up`'s document says nothing of them: `status` lists them.)
fn print_later_pending(context: &Context, to: Option<u64>, later: &[u64], nothing_done: bool) {
    let (Some(to), false, false) = (to, later.is_empty(), context.json()) else {
        return;
    };
    let versions: Vec<String> = later.iter().map(u64::to_string).collect();
    println!(
        "{}",
        context.name_commands(&format!(
            "{}up to date at {to}; {} later migration(s) pending ({}): `migrate up` applies them",
            if nothing_done { "nothing to do: " } else { "" },
            later.len(),
            versions.join(", ")
        ))
    );
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

fn migration_json(m: &AppliedMigration) -> serde_json::Value {
    json!({
        "version": m.version,
        "name": m.name,
        "phase": m.phase.as_str(),
        "mode": m.mode_label(),
        "duration_ms": m.duration.as_millis() as u64,
        "attempts": m.attempts,
    })
}

fn print_applied(context: &Context, verb: &str, list: &[AppliedMigration]) {
    let reverting = verb.starts_with("reverted");
    if context.json() {
        let key = if reverting { "reverted" } else { "applied" };
        let items: Vec<_> = list.iter().map(migration_json).collect();
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
                Cell::new(m.mode_label()),
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

fn plan_json(plan: &Plan) -> Vec<serde_json::Value> {
    plan.migrations
        .iter()
        .map(|m| {
            json!({
                "version": m.version,
                "name": m.name,
                "phase": m.phase.as_str(),
                "file": m.file_name,
                "mode": m.mode_label(),
                "statements": m.statements,
            })
        })
        .collect()
}

fn plan_rows(plan: &Plan) -> Vec<Vec<Cell>> {
    plan.migrations
        .iter()
        .map(|m| {
            vec![
                Cell::new(m.version.to_string()),
                Cell::new(m.file_name.clone()),
                Cell::new(m.mode_label()),
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
            let items: Vec<_> = failed.report.applied.iter().map(migration_json).collect();
            return Some(("applied", json!(items)));
        }
        if let Some(failed) = cause.downcast_ref::<Failed<DownReport>>() {
            let items: Vec<_> = failed.report.reverted.iter().map(migration_json).collect();
            return Some(("reverted", json!(items)));
        }
        if let Some(failed) = cause.downcast_ref::<Failed<Plan>>() {
            return Some(("pending", json!(plan_json(&failed.report))));
        }
    }
    None
}

/// The plan of `up --dry-run`; with `refused`, the migrations before the refusal (the error
/// itself is printed by the caller's error path).
fn print_up_plan(context: &Context, plan: &Plan, refused: Option<&RuntimeError>) {
    if context.json() {
        output::print_json(&json!({ "dry_run": true, "pending": plan_json(plan) }));
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
                &plan_rows(plan),
                context.config.color
            )
        );
    }
}

fn print_down_plan(context: &Context, plan: &Plan, to: u64) {
    if context.json() {
        output::print_json(&json!({ "dry_run": true, "to_revert": plan_json(plan) }));
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
            &plan_rows(plan),
            context.config.color
        )
    );
}
