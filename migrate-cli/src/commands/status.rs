//! `migrate status`

use migrate_core::runtime::{MigrationState, Migrator, ReconcileBacklog, StatusReport};
use serde_json::json;

use crate::error::Outcome;
use crate::output::{self, Cell, Style};
use crate::{Context, block_on};

pub fn run(context: &Context) -> anyhow::Result<Outcome> {
    let database = context.database("status")?;
    let migrations = context.migrations()?;
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let (report, queue, unreplayable) = block_on(async {
        let client = context.connect(database).await?;
        let report = migrator.status(&client).await?;
        let queue = queue_lengths(migrator.reconcile_queue(&client).await?);
        let (unreplayable, _) = migrator.unreplayable_keys(&client, 0).await?;
        anyhow::Ok((report, queue, unreplayable))
    })??;
    print_with_queue(context, &report, &queue, unreplayable);
    if !context.json() {
        let missing: Vec<u64> = report
            .entries
            .iter()
            .filter(|e| e.state == MigrationState::MissingFromFiles)
            .map(|e| e.version)
            .collect();
        let on_disk = migrator.files_lacking_in_binary(&missing);
        if !on_disk.is_empty() {
            eprintln!(
                "these files exist on disk but not in the migration set: the binary was built before they were added; rebuild it:"
            );
            for file in on_disk {
                eprintln!("  {}", file.display());
            }
        }
    }
    let disagree =
        report.count(MigrationState::Drifted) + report.count(MigrationState::MissingFromFiles);
    Ok(if disagree > 0 {
        Outcome::Disagreement
    } else {
        Outcome::Success
    })
}

/// Keys waiting per backfill version, as the printers take them.
pub(super) fn queue_lengths(backlog: Vec<ReconcileBacklog>) -> Vec<(u64, i64)> {
    backlog
        .into_iter()
        .map(|b| (b.version, i64::try_from(b.waiting).unwrap_or(i64::MAX)))
        .collect()
}

pub fn state_key(state: MigrationState) -> &'static str {
    match state {
        MigrationState::Applied => "applied",
        MigrationState::Pending => "pending",
        MigrationState::Drifted => "drifted",
        MigrationState::MissingFromFiles => "missing_from_files",
        MigrationState::PartlyApplied => "partly_applied",
        MigrationState::BackfillInProgress => "backfill_in_progress",
        _ => "unknown",
    }
}

#[cfg(feature = "check")]
pub(crate) fn print(context: &Context, report: &StatusReport) {
    print_with_queue(context, report, &[], 0);
}

fn print_with_queue(
    context: &Context,
    report: &StatusReport,
    queue: &[(u64, i64)],
    unreplayable: i64,
) {
    let queued: i64 = queue.iter().map(|(_, n)| n).sum();
    if context.json() {
        let entries: Vec<_> = report
            .entries
            .iter()
            .map(|e| {
                json!({
                    "version": e.version,
                    "name": e.name,
                    "phase": e.phase.map(|p| p.as_str()),
                    "state": state_key(e.state),
                    "applied_at": e.applied_at.map(output::timestamp),
                    "duration_ms": e.duration_ms,
                    "detail": e.detail,
                })
            })
            .collect();
        let queue: Vec<_> = queue
            .iter()
            .map(|(version, keys)| json!({ "version": version, "keys": keys }))
            .collect();
        output::print_json(&json!({
            "migrations": entries,
            "reconcile_queue": { "keys": queued, "by_version": queue, "unreplayable": unreplayable },
        }));
        return;
    }
    if queued > 0 {
        eprintln!("{}", context.name_commands(&format!(
            "reconcile queue: {queued} key(s) whose modern write failed wait for `migrate reconcile`"
        )));
    }
    if unreplayable > 0 {
        eprintln!("{}", context.name_commands(&format!(
            "reconcile queue: {unreplayable} key(s) `migrate reconcile` could not replay are kept there, not retried (`migrate reconcile` names them)"
        )));
    }
    if report.entries.is_empty() {
        println!("no migrations in the folder and none applied");
        return;
    }
    let rows: Vec<Vec<Cell>> = report
        .entries
        .iter()
        .map(|e| {
            let style = match e.state {
                MigrationState::Applied => Style::Green,
                MigrationState::Pending | MigrationState::BackfillInProgress => Style::Yellow,
                _ => Style::Red,
            };
            vec![
                Cell::new(e.version.to_string()),
                Cell::new(e.name.clone()),
                Cell::new(e.phase.map_or("?", |p| p.as_str())),
                Cell::styled(e.state.as_str(), style),
                Cell::new(e.applied_at.map(output::timestamp).unwrap_or_default()),
                Cell::new(
                    e.duration_ms
                        .map(|ms| format!("{ms} ms"))
                        .unwrap_or_default(),
                ),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &[
                "VERSION",
                "NAME",
                "PHASE",
                "STATE",
                "APPLIED AT",
                "DURATION"
            ],
            &rows,
            context.config.color
        )
    );
    let drifted = report.count(MigrationState::Drifted);
    if drifted > 0 {
        eprintln!("{}", context.name_commands(&format!(
            "{drifted} applied migration(s) changed since they were applied: restore the files, \
             or accept the edits with `migrate repair`"
        )));
    }
    let missing = report.count(MigrationState::MissingFromFiles);
    if missing > 0 {
        eprintln!("{missing} applied migration(s) are missing from the files");
    }
    for entry in &report.entries {
        if let Some(detail) = &entry.detail {
            // The runtime's detail may hint at a command: name this program's.
            eprintln!(
                "{} {}: {}: {}",
                entry.version,
                entry.name,
                entry.state.as_str(),
                context.name_commands(detail)
            );
        }
    }
}
