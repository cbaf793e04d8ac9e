//! `migrate up` and `migrate down`.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use migrate_core::runtime::{
    AppliedMigration, MigrationState, Migrator, Plan, ProgressEvent, ProgressHook, StatusReport,
    UpTo,
};
use migrate_core::{Migrations, TransactionMode};
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
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?
        .with_progress(progress_hook(&bar));
    let target = to.map_or(UpTo::All, UpTo::Version);
    if dry_run {
        let plan = block_on(async {
            let client = context.connect(database).await?;
            anyhow::Ok(migrator.plan(&client, target).await?)
        })??;
        print_up_plan(context, &plan);
        return Ok(Outcome::Success);
    }
    let result = block_on(async {
        let client = context.connect(database).await?;
        anyhow::Ok(migrator.up(&client, target).await)
    })?;
    bar.finish_and_clear();
    match result? {
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
        .with_progress(progress_hook(&bar));
    if dry_run {
        let status = block_on(async {
            let client = context.connect(database).await?;
            anyhow::Ok(migrator.status(&client).await?)
        })??;
        print_down_plan(context, &migrations, &status, to);
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
fn progress_hook(bar: &ProgressBar) -> ProgressHook {
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
        ProgressEvent::BackfillBatch {
            migration,
            rows_done,
        } => bar.set_message(format!(
            "backfilling {}: {rows_done} rows",
            migration.file_name
        )),
        ProgressEvent::Finished { index, .. } => bar.set_position(index as u64 + 1),
        _ => {}
    })
}

/// How a migration ran: a backfill's up part runs in keyed batches, each its own transaction.
fn mode_label(m: &AppliedMigration, reverting: bool) -> &'static str {
    if m.phase == migrate_core::Phase::Backfill && !reverting {
        "batched"
    } else {
        m.mode.as_str()
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
        println!("nothing to do: the database is up to date");
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

fn print_up_plan(context: &Context, plan: &Plan) {
    if context.json() {
        let pending: Vec<_> = plan
            .migrations
            .iter()
            .map(|m| {
                json!({
                    "version": m.version,
                    "name": m.name,
                    "phase": m.phase.as_str(),
                    "file": m.file_name,
                    "mode": m.mode.as_str(),
                    "statements": m.statements,
                })
            })
            .collect();
        output::print_json(&json!({ "dry_run": true, "pending": pending }));
        return;
    }
    if plan.migrations.is_empty() {
        println!("dry run: nothing to do, the database is up to date");
        return;
    }
    println!(
        "dry run: would apply {} migration(s), nothing was changed:",
        plan.migrations.len()
    );
    let rows: Vec<Vec<Cell>> = plan
        .migrations
        .iter()
        .map(|m| {
            vec![
                Cell::new(m.version.to_string()),
                Cell::new(m.file_name.clone()),
                Cell::new(m.mode.as_str()),
                Cell::new(m.statements.to_string()),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["VERSION", "FILE", "MODE", "STATEMENTS"],
            &rows,
            context.config.color
        )
    );
}

fn print_down_plan(context: &Context, migrations: &Migrations, status: &StatusReport, to: u64) {
    let entries: Vec<_> = status
        .entries
        .iter()
        .rev()
        .filter(|e| e.version > to && e.state != MigrationState::Pending)
        .collect();
    let describe = |version: u64| -> (Option<&str>, Option<TransactionMode>, bool) {
        match migrations.get(version) {
            Some(m) => (
                Some(m.file_name.as_ref()),
                m.down.as_ref().map(|d| d.mode),
                m.down.is_some(),
            ),
            None => (None, None, false),
        }
    };
    if context.json() {
        let items: Vec<_> = entries
            .iter()
            .map(|e| {
                let (file, mode, has_down) = describe(e.version);
                json!({
                    "version": e.version,
                    "name": e.name,
                    "file": file,
                    "state": super::status::state_key(e.state),
                    "mode": mode.map(TransactionMode::as_str),
                    "has_down": has_down,
                })
            })
            .collect();
        output::print_json(&json!({ "dry_run": true, "to_revert": items }));
        return;
    }
    if entries.is_empty() {
        println!("dry run: nothing to revert above version {to}");
        return;
    }
    println!(
        "dry run: would revert {} migration(s), newest first, nothing was changed:",
        entries.len()
    );
    let rows: Vec<Vec<Cell>> = entries
        .iter()
        .map(|e| {
            let (file, mode, has_down) = describe(e.version);
            let note = match (e.state, has_down) {
                (MigrationState::Drifted, _) => "refused: edited since applied",
                (MigrationState::MissingFromFiles, _) => "refused: file missing",
                (_, false) => "refused: no down part",
                _ => "",
            };
            vec![
                Cell::new(e.version.to_string()),
                Cell::new(file.unwrap_or(&e.name).to_owned()),
                Cell::new(mode.map_or("-", TransactionMode::as_str)),
                Cell::new(note),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["VERSION", "FILE", "MODE", "NOTE"],
            &rows,
            context.config.color
        )
    );
}
