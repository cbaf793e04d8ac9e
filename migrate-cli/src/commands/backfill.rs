//! `migrate backfill`, `migrate backfill pause|resume`, `migrate backfill rerun V` and
//! `migrate verify [--version V]`

use migrate_core::runtime::{BackfillRun, BackfillState, Migrator};
use serde_json::json;

use crate::cli::BackfillAction;
use crate::error::Outcome;
use crate::output::{self, Cell, Style};
use crate::{Context, block_on};

pub fn status(context: &Context) -> anyhow::Result<Outcome> {
    let database = context.database("backfill")?;
    let migrations = context.migrations()?;
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let (states, paused) = block_on(async {
        let client = context.connect(database).await?;
        let states = migrator.backfills(&client).await?;
        anyhow::Ok((states, migrator.backfills_paused(&client).await?))
    })??;
    print(context, &states, false, paused);
    Ok(Outcome::Success)
}

/// `migrate backfill pause|resume`: the flag every runner reads before a batch (at most
/// every 200 ms).
pub fn pause(context: &Context, action: BackfillAction) -> anyhow::Result<Outcome> {
    let database = context.database("backfill")?;
    let migrations = context.migrations()?;
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let paused = action == BackfillAction::Pause;
    block_on(async {
        let client = context.connect(database).await?;
        anyhow::Ok(migrator.pause_backfills(&client, paused).await?)
    })??;
    if context.json() {
        output::print_json(&json!({ "paused": paused }));
    } else if paused {
        println!("{}", context.name_commands("backfills paused: running ones stop before their next batch and wait (`migrate backfill resume` lets them go on)"));
    } else {
        println!("backfills resumed: paused ones go on before their next check");
    }
    Ok(Outcome::Success)
}

/// `migrate backfill rerun V`: an applied backfill's statements again, batched and verified.
pub fn rerun(context: &Context, version: u64) -> anyhow::Result<Outcome> {
    let database = context.database("backfill rerun")?;
    let migrations = context.migrations()?;
    let backfill = migrations
        .get(version)
        .is_some_and(|m| m.backfill.is_some());
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let rerun = block_on(async {
        let client = context.connect(database).await?;
        // The controller watches the server on a second connection while each batch runs,
        // and the backfill's vacuum is watched from it (opened by the runtime under the
        // migration lock).
        let migrator = if backfill {
            migrator.with_backfill_sessions(context.connect_options(database)?)
        } else {
            migrator
        };
        anyhow::Ok(migrator.rerun_backfill(&client, version).await?)
    })??;
    if context.json() {
        output::print_json(&json!({
            "version": rerun.version,
            "file": rerun.file_name,
            "rows_done": rerun.rows_done,
            "duration_ms": u64::try_from(rerun.duration.as_millis()).unwrap_or(u64::MAX),
            "attempts": rerun.attempts,
            "verified": true,
        }));
    } else {
        println!(
            "re-ran {}: {} row(s) filled in {} ms; verified: no row matches its WHERE",
            rerun.file_name,
            rerun.rows_done,
            rerun.duration.as_millis()
        );
    }
    Ok(Outcome::Success)
}

pub fn verify(context: &Context, version: Option<u64>) -> anyhow::Result<Outcome> {
    let database = context.database("verify")?;
    let migrations = context.migrations()?;
    if let Some(version) = version
        && !migrations
            .iter()
            .any(|m| m.version == version && m.backfill.is_some())
    {
        anyhow::bail!("version {version} is not a backfill migration of this set");
    }
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let states = block_on(async {
        let client = context.connect(database).await?;
        anyhow::Ok(migrator.verify_backfills(&client, version).await?)
    })??;
    // Asked for one backfill that is not applied: nothing was verified, which is no pass.
    if let Some(version) = version
        && states.is_empty()
    {
        let file = migrations
            .get(version)
            .map_or_else(String::new, |m| format!(" ({})", m.file_name));
        anyhow::bail!(
            "backfill migration {version}{file} is not applied, so there is nothing to verify \
             yet: `migrate up --to {version}` applies it (`migrate status` shows what is pending)"
        );
    }
    print(context, &states, true, false);
    let left: i64 = states.iter().filter_map(|s| s.remaining).sum();
    if left > 0 {
        if !context.json() {
            let mut versions: Vec<u64> = states
                .iter()
                .filter(|s| s.remaining.is_some_and(|n| n > 0))
                .map(|s| s.version)
                .collect();
            versions.dedup();
            let reruns: Vec<String> = versions
                .iter()
                .map(|v| format!("`migrate backfill rerun {v}`"))
                .collect();
            eprintln!("{}", context.name_commands(&format!(
                "verification failed: {left} row(s) still match a backfill's WHERE: rows were written in the old shape after it ran (is a release without dual writes still running?). Do not deploy the contract yet: deploy code that writes the new shape, then fill those rows with {} (it runs the backfill's UPDATE again in batches, idempotent, and verifies)",
                reruns.join(", then ")
            )));
        }
        return Ok(Outcome::Failure);
    }
    Ok(Outcome::Success)
}

fn time(value: Option<std::time::SystemTime>) -> String {
    value.map_or_else(|| "-".to_owned(), output::timestamp)
}

fn print(context: &Context, states: &[BackfillState], verified: bool, paused: bool) {
    if context.json() {
        let items: Vec<_> = states
            .iter()
            .map(|s| {
                json!({
                    "version": s.version,
                    "file": s.file_name,
                    "statement": s.statement,
                    "line": s.line,
                    "applied": s.applied,
                    "rows_done": s.rows_done,
                    "last_key": s.last_key,
                    "updated_at": s.updated_at.map(output::timestamp),
                    "finished_at": s.finished_at.map(output::timestamp),
                    "verified_at": s.verified_at.map(output::timestamp),
                    "remaining": s.remaining,
                    "rows_per_second": s.rows_per_second,
                    "batch_size": s.batch_size,
                    "pace": pace(s),
                    "run": s.run.as_ref().map(BackfillRun::as_str),
                    "error": failure(s),
                    "impact": s.impact,
                })
            })
            .collect();
        if verified {
            output::print_json(&json!({ "backfills": items }));
        } else {
            output::print_json(&json!({ "backfills": items, "paused": paused }));
        }
        return;
    }
    if paused {
        println!(
            "{}",
            context.name_commands(
                "backfills are paused by an operator (`migrate backfill resume` lets them go on)"
            )
        );
    }
    if states.is_empty() {
        println!(
            "{}",
            if verified {
                "nothing to verify: no applied backfill migration"
            } else {
                "the set has no backfill migration"
            }
        );
        return;
    }
    let color = context.config.color;
    let rows: Vec<Vec<Cell>> = states
        .iter()
        .map(|s| {
            let mut row = vec![
                Cell::new(s.version.to_string()),
                Cell::new(format!("{}:{}", s.file_name, s.line)),
                Cell::new(if s.applied { "applied" } else { "pending" }),
                Cell::new(
                    s.rows_done
                        .map_or_else(|| "-".to_owned(), |n| n.to_string()),
                ),
                Cell::new(
                    s.rows_per_second
                        .map_or_else(|| "-".to_owned(), |rate| format!("{rate:.0}")),
                ),
                Cell::new(
                    s.batch_size
                        .map_or_else(|| "-".to_owned(), |size| size.to_string()),
                ),
                Cell::new(pace(s).unwrap_or_else(|| "-".to_owned())),
                Cell::new(s.last_key.clone().unwrap_or_else(|| "-".to_owned())),
                Cell::new(time(s.finished_at)),
                Cell::new(time(s.verified_at)),
            ];
            if verified {
                let remaining = s.remaining.unwrap_or(0);
                row.push(Cell::styled(
                    remaining.to_string(),
                    if remaining == 0 {
                        Style::Green
                    } else {
                        Style::Red
                    },
                ));
            }
            row
        })
        .collect();
    let mut headers = vec![
        "VERSION",
        "STATEMENT",
        "STATE",
        "ROWS DONE",
        "ROWS/S",
        "BATCH",
        "PACE",
        "LAST KEY",
        "FINISHED",
        "VERIFIED",
    ];
    if verified {
        headers.push("REMAINING");
    }
    print!("{}", output::table(&headers, &rows, color));
    // Which signals held each backfill and the application's measured change.
    for s in states {
        if let Some(impact) = &s.impact {
            println!("{} {}:{}: {impact}", s.version, s.file_name, s.line);
        }
    }
    for s in states {
        if let Some(error) = failure(s) {
            eprintln!("{}:{}: its last run failed: {error}", s.file_name, s.line);
        }
    }
}

/// The PACE column: the stored pace while the run is alive; `stopped` or `failed` once its
/// process is gone, whatever the pace it last stored, but for an abort by a stop signal
/// (`aborted: <why>`), which says why it stopped.
fn pace(s: &BackfillState) -> Option<String> {
    if let Some(aborted) = s.pace_state.as_ref().filter(|p| p.starts_with("aborted")) {
        return Some(aborted.clone());
    }
    match &s.run {
        Some(run @ (BackfillRun::Stopped | BackfillRun::Failed { .. })) => {
            Some(run.as_str().to_owned())
        }
        _ => s.pace_state.clone(),
    }
}

fn failure(s: &BackfillState) -> Option<&str> {
    match &s.run {
        Some(BackfillRun::Failed { error }) => Some(error),
        _ => None,
    }
}
