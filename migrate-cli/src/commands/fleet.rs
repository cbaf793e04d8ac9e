//! `migrate fleet up|status|verify|backfill`: a thin layer over `migrate_core::fleet::Fleet`
//! that resolves the settings (flags over migrate.toml's `[fleet]`), shows a live view on a
//! terminal and prints the report.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use migrate_core::fleet::{
    Fleet, FleetBackfillReport, FleetError, FleetEvent, FleetFailed, FleetStatusReport,
    FleetUpReport, SchemaGlob, TargetError, TargetFailure, TargetHealth, TargetList, TargetRun,
    TargetState,
};
use serde_json::{Value, json};

use crate::cli::{BackfillAction, FleetAction, FleetArgs};
use crate::config::UrlSource;
use crate::error::{CliError, Outcome};
use crate::output::{self, Cell, Style};
use crate::{Context, block_on_multi_thread};

/// Reads run this many targets at once unless told: they are short and read only.
const DEFAULT_READ_PARALLEL: usize = 32;

/// The fleet settings, flags over migrate.toml's `[fleet]`.
#[derive(Debug, Default)]
struct FleetSettings {
    targets: Option<PathBuf>,
    schemas: Option<String>,
    parallel: Option<usize>,
    canary: Option<usize>,
    target_timeout: Option<Duration>,
}

pub fn run(context: &Context, args: &FleetArgs, action: &FleetAction) -> anyhow::Result<Outcome> {
    if context
        .config
        .database
        .as_ref()
        .is_some_and(|d| d.source == UrlSource::Flag)
    {
        return Err(CliError::Usage(
            "`fleet` takes its databases from --targets FILE (or [fleet] targets in \
             migrate.toml), not --database-url"
                .into(),
        )
        .into());
    }
    let (folder, _) = context.folder(None);
    let mut settings = from_migrate_toml(&folder)?;
    settings.targets = args.targets.clone().or(settings.targets);
    settings.schemas = args.schemas.clone().or(settings.schemas);
    settings.parallel = args.parallel.or(settings.parallel);
    settings.target_timeout = args.target_timeout.or(settings.target_timeout);
    if let FleetAction::Up {
        canary: Some(canary),
        ..
    } = action
    {
        settings.canary = Some(*canary);
    }
    let Some(targets_path) = &settings.targets else {
        return Err(CliError::Usage(
            "`fleet` needs its targets: --targets FILE, or `targets = \"FILE\"` in the [fleet] \
             table of migrate.toml"
                .into(),
        )
        .into());
    };
    let targets = TargetList::read(targets_path).map_err(usage)?;
    let migrations = context.migrations()?;
    let default_parallel = match action {
        FleetAction::Up { .. } => migrate_core::fleet::DEFAULT_PARALLEL,
        _ => DEFAULT_READ_PARALLEL,
    };
    let mut fleet = Fleet::new(&migrations, context.config.migrator.clone(), targets)
        .map_err(usage)?
        .parallel(settings.parallel.unwrap_or(default_parallel))
        .map_err(usage)?
        .canary(settings.canary.unwrap_or(0));
    if let Some(glob) = &settings.schemas {
        fleet = fleet.schemas(SchemaGlob::parse(glob).map_err(usage)?);
    }
    if let Some(limit) = settings.target_timeout {
        fleet = fleet.target_timeout(limit);
    }
    match action {
        FleetAction::Up { .. } => up(context, fleet),
        FleetAction::Status => status(context, &fleet),
        FleetAction::Verify { version } => {
            if let Some(version) = version
                && !migrations
                    .iter()
                    .any(|m| m.version == *version && m.backfill.is_some())
            {
                return Err(CliError::Usage(format!(
                    "version {version} is not a backfill migration of this set"
                ))
                .into());
            }
            let report = block_on_multi_thread(fleet.verify(*version))?;
            print_backfills(context, &report, true);
            Ok(if report.errors() > 0 || report.remaining() > 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            })
        }
        FleetAction::Backfill { action } => {
            let report = match action {
                None => block_on_multi_thread(fleet.backfills())?,
                Some(action) => {
                    block_on_multi_thread(fleet.pause_backfills(*action == BackfillAction::Pause))?
                }
            };
            print_backfills(context, &report, false);
            Ok(if report.errors() > 0 {
                Outcome::Failure
            } else {
                Outcome::Success
            })
        }
    }
}

/// Input problems are usage errors (exit 2); the rest fail (exit 1).
fn usage(error: FleetError) -> anyhow::Error {
    if error.is_usage() {
        CliError::Usage(error.to_string()).into()
    } else {
        error.into()
    }
}

/// `[fleet]` of `<folder>/migrate.toml`: `targets` (relative to the folder), `schemas`,
/// `parallel`, `canary`, `target_timeout`. Unknown keys are refused, naming the file.
fn from_migrate_toml(folder: &Path) -> anyhow::Result<FleetSettings> {
    let path = folder.join(migrate_core::lint::config::CONFIG_FILE_NAME);
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(FleetSettings::default());
    };
    let display = path.display().to_string();
    let bad = |what: String| CliError::Usage(format!("{display}: [fleet]: {what}"));
    // The file's other tables are the linter's, which reports their problems itself.
    let Ok(table) = text.parse::<toml::Table>() else {
        return Ok(FleetSettings::default());
    };
    let Some(fleet) = table.get("fleet") else {
        return Ok(FleetSettings::default());
    };
    let fleet = fleet
        .as_table()
        .ok_or_else(|| bad("must be a table".into()))?;
    let mut settings = FleetSettings::default();
    for (key, value) in fleet {
        let count = |value: &toml::Value| {
            value
                .as_integer()
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| bad(format!("`{key}` must be a whole number")))
        };
        let text = |value: &toml::Value| {
            value
                .as_str()
                .map(str::to_owned)
                .ok_or_else(|| bad(format!("`{key}` must be a string")))
        };
        match key.as_str() {
            "targets" => settings.targets = Some(folder.join(text(value)?)),
            "schemas" => settings.schemas = Some(text(value)?),
            "parallel" => settings.parallel = Some(count(value)?),
            "canary" => settings.canary = Some(count(value)?),
            "target_timeout" => {
                settings.target_timeout = Some(
                    crate::duration::parse_duration(&text(value)?)
                        .map_err(|reason| bad(format!("`target_timeout`: {reason}")))?,
                );
            }
            other => {
                return Err(bad(format!(
                    "unknown key `{other}` (known: targets, schemas, parallel, canary, \
                     target_timeout)"
                ))
                .into());
            }
        }
    }
    Ok(settings)
}

fn up(context: &Context, fleet: Fleet<'_>) -> anyhow::Result<Outcome> {
    let view = context.config.progress.then(LiveView::new);
    let fleet = match &view {
        Some(view) => {
            let view = Arc::clone(view);
            fleet.with_events(Box::new(move |event| view.on(event)))
        }
        None => fleet,
    };
    let result = block_on_multi_thread(fleet.up())?;
    if let Some(view) = &view {
        view.finish();
    }
    match result {
        Ok(report) => {
            print_up(context, &report, None);
            Ok(Outcome::Success)
        }
        Err(failed) => {
            print_up(context, &failed.report, Some(&failed));
            Ok(match &failed.error {
                // Every target refused because its history and the files disagree.
                FleetError::Preflight { failures } if failures.iter().all(is_refusal) => {
                    Outcome::Disagreement
                }
                _ => Outcome::Failure,
            })
        }
    }
}

fn is_refusal(failure: &TargetFailure) -> bool {
    use migrate_core::runtime::RuntimeError;
    matches!(
        failure.error.runtime(),
        Some(
            RuntimeError::ChecksumMismatch { .. }
                | RuntimeError::UnknownApplied { .. }
                | RuntimeError::OutOfOrder { .. }
                | RuntimeError::PartlySquashed { .. }
        )
    )
}

fn failure_json(failure: &TargetFailure) -> Value {
    json!({
        "target": failure.target,
        "error": failure.error.to_string(),
        "kind": error_kind(&failure.error),
    })
}

/// A stable word for each kind of target error, for pipelines.
fn error_kind(error: &TargetError) -> &'static str {
    match error {
        TargetError::Unreachable(_) => "unreachable",
        TargetError::NoMatchingSchema { .. } => "no_matching_schema",
        TargetError::UnsupportedSchemaName { .. } => "unsupported_schema_name",
        TargetError::TimedOut { .. } => "timed_out",
        TargetError::Runtime(error) => match error {
            migrate_core::runtime::RuntimeError::ChecksumMismatch { .. }
            | migrate_core::runtime::RuntimeError::UnknownApplied { .. } => "drifted",
            migrate_core::runtime::RuntimeError::OutOfOrder { .. } => "out_of_order",
            _ => "failed",
        },
        _ => "failed",
    }
}

/// A run's error; the first failure's moved into the rollout's error, so it is found there.
fn run_error(run: &TargetRun, failed: Option<&FleetFailed>) -> Option<String> {
    if let Some(error) = &run.error {
        return Some(error.to_string());
    }
    match failed.map(|f| &f.error) {
        Some(FleetError::RolloutStopped { failure }) if failure.target == run.target => {
            Some(failure.error.to_string())
        }
        _ => None,
    }
}

fn print_up(context: &Context, report: &FleetUpReport, failed: Option<&FleetFailed>) {
    if context.json() {
        let targets: Vec<Value> = report
            .targets
            .iter()
            .map(|run| run_json(run, run_error(run, failed)))
            .collect();
        let error = failed.map(|failed| {
            let mut error = json!({ "message": failed.error.to_string() });
            match &failed.error {
                FleetError::Preflight { failures } => {
                    error["failures"] = failures.iter().map(failure_json).collect();
                }
                FleetError::RolloutStopped { failure } => {
                    error["failures"] = json!([failure_json(failure)]);
                }
                _ => {}
            }
            error
        });
        output::print_json(&json!({
            "targets": targets,
            "summary": summary_json(report),
            "error": error,
        }));
        return;
    }
    if !report.targets.is_empty() {
        let rows: Vec<Vec<Cell>> = report
            .targets
            .iter()
            .map(|run| {
                let style = match run.state {
                    TargetState::Done => Style::Green,
                    TargetState::Failed => Style::Red,
                    _ => Style::Yellow,
                };
                let applied: Vec<String> =
                    run.applied.iter().map(|m| m.version.to_string()).collect();
                vec![
                    Cell::new(run.target.clone()),
                    Cell::styled(run.state.as_str(), style),
                    Cell::new(if applied.is_empty() {
                        "-".to_owned()
                    } else {
                        applied.join(",")
                    }),
                    Cell::new(format!("{:.1}s", run.duration.as_secs_f64())),
                    Cell::new(run_error(run, failed).unwrap_or_default()),
                ]
            })
            .collect();
        print!(
            "{}",
            output::table(
                &["TARGET", "RESULT", "APPLIED", "TIME", "ERROR"],
                &rows,
                context.config.color
            )
        );
        println!("{}", context.name_commands(&report.to_string()));
    }
    if let Some(failed) = failed {
        eprintln!(
            "error: {}",
            context.name_commands(&failed.error.to_string())
        );
        if let FleetError::RolloutStopped { .. } = failed.error {
            eprintln!(
                "{}",
                context.name_commands(&format!(
                    "{} target(s) not started and {} stopped after their current migration; fix \
                 the cause and run `migrate fleet up` again: finished targets have nothing to do",
                    report.count(TargetState::NotStarted),
                    report.count(TargetState::Stopped)
                ))
            );
        }
    }
}

fn run_json(run: &TargetRun, error: Option<String>) -> Value {
    json!({
        "target": run.target,
        "database": run.database,
        "schema": run.schema,
        "state": run.state.as_str(),
        "applied": run.applied.iter().map(|m| json!({
            "version": m.version,
            "name": m.name,
            "duration_ms": u64::try_from(m.duration.as_millis()).unwrap_or(u64::MAX),
        })).collect::<Vec<_>>(),
        "error": error,
        "duration_ms": u64::try_from(run.duration.as_millis()).unwrap_or(u64::MAX),
    })
}

fn summary_json(report: &FleetUpReport) -> Value {
    json!({
        "targets": report.targets.len(),
        "done": report.count(TargetState::Done),
        "failed": report.count(TargetState::Failed),
        "stopped": report.count(TargetState::Stopped),
        "not_started": report.count(TargetState::NotStarted),
        "applied": report.applied_count(),
    })
}

fn status(context: &Context, fleet: &Fleet<'_>) -> anyhow::Result<Outcome> {
    let report = block_on_multi_thread(fleet.status())?;
    print_status(context, &report);
    let problem = |health: TargetHealth| report.count(health) > 0;
    Ok(
        if problem(TargetHealth::Unreachable)
            || problem(TargetHealth::Failed)
            || problem(TargetHealth::Error)
        {
            Outcome::Failure
        } else if problem(TargetHealth::Drifted) {
            Outcome::Disagreement
        } else {
            Outcome::Success
        },
    )
}

const HEALTHS: [TargetHealth; 6] = [
    TargetHealth::UpToDate,
    TargetHealth::Pending,
    TargetHealth::Drifted,
    TargetHealth::Failed,
    TargetHealth::Error,
    TargetHealth::Unreachable,
];

fn versions(list: &[u64]) -> String {
    list.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

fn print_status(context: &Context, report: &FleetStatusReport) {
    let counts: Vec<(TargetHealth, usize)> = HEALTHS
        .iter()
        .map(|&h| (h, report.count(h)))
        .filter(|(_, n)| *n > 0)
        .collect();
    if context.json() {
        let targets: Vec<Value> = report
            .targets
            .iter()
            .map(|t| {
                json!({
                    "target": t.target,
                    "database": t.database,
                    "schema": t.schema,
                    "state": t.health.as_str(),
                    "applied_up_to": t.applied_up_to,
                    "pending": t.pending,
                    "drifted": t.drifted,
                    "failed": t.failed,
                    "error": t.error.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        let by_state: serde_json::Map<String, Value> = counts
            .iter()
            .map(|(h, n)| (h.as_str().replace(' ', "_"), json!(n)))
            .collect();
        output::print_json(&json!({
            "targets": targets,
            "summary": { "targets": report.targets.len(), "by_state": by_state },
        }));
        return;
    }
    let rows: Vec<Vec<Cell>> = report
        .targets
        .iter()
        .map(|t| {
            let style = match t.health {
                TargetHealth::UpToDate => Style::Green,
                TargetHealth::Pending => Style::Yellow,
                _ => Style::Red,
            };
            let detail = match &t.error {
                Some(error) => error.to_string(),
                None if !t.drifted.is_empty() => format!("drifted: {}", versions(&t.drifted)),
                None if !t.failed.is_empty() => format!("failed: {}", versions(&t.failed)),
                None => String::new(),
            };
            vec![
                Cell::new(t.target.clone()),
                Cell::styled(t.health.as_str(), style),
                Cell::new(t.applied_up_to.map_or("-".to_owned(), |v| v.to_string())),
                Cell::new(if t.pending.is_empty() {
                    "-".to_owned()
                } else {
                    versions(&t.pending)
                }),
                Cell::new(detail),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["TARGET", "STATE", "APPLIED UP TO", "PENDING", "DETAIL"],
            &rows,
            context.config.color
        )
    );
    let summary: Vec<String> = counts
        .iter()
        .map(|(h, n)| format!("{n} {}", h.as_str()))
        .collect();
    println!("{} target(s): {}", report.targets.len(), summary.join(", "));
    for target in report
        .targets
        .iter()
        .filter(|t| t.health == TargetHealth::Unreachable)
    {
        eprintln!("unreachable: {}", target.target);
    }
}

fn print_backfills(context: &Context, report: &FleetBackfillReport, verified: bool) {
    if context.json() {
        let targets: Vec<Value> = report
            .targets
            .iter()
            .map(|t| {
                json!({
                    "target": t.target,
                    "database": t.database,
                    "schema": t.schema,
                    "paused": t.paused,
                    "remaining": verified.then(|| t.remaining()),
                    "backfills": t.states.iter().map(|s| json!({
                        "version": s.version,
                        "statement": s.statement,
                        "applied": s.applied,
                        "rows_done": s.rows_done,
                        "finished": s.finished_at.is_some(),
                        "verified": s.verified_at.is_some(),
                        "remaining": s.remaining,
                    })).collect::<Vec<_>>(),
                    "error": t.error.as_ref().map(ToString::to_string),
                })
            })
            .collect();
        output::print_json(&json!({
            "targets": targets,
            "remaining": verified.then(|| report.remaining()),
            "errors": report.errors(),
        }));
        return;
    }
    let rows: Vec<Vec<Cell>> = report
        .targets
        .iter()
        .map(|t| {
            let (state, style) = match &t.error {
                Some(_) => ("error".to_owned(), Style::Red),
                None if verified && t.remaining() > 0 => {
                    (format!("{} row(s) left", t.remaining()), Style::Red)
                }
                None if verified => ("verified".to_owned(), Style::Green),
                None => {
                    let finished = t.states.iter().filter(|s| s.finished_at.is_some()).count();
                    let paused = if t.paused == Some(true) {
                        ", paused"
                    } else {
                        ""
                    };
                    (
                        format!("{finished}/{} finished{paused}", t.states.len()),
                        Style::Plain,
                    )
                }
            };
            let rows_done: i64 = t.states.iter().filter_map(|s| s.rows_done).sum();
            vec![
                Cell::new(t.target.clone()),
                Cell::styled(state, style),
                Cell::new(rows_done.to_string()),
                Cell::new(
                    t.error
                        .as_ref()
                        .map(ToString::to_string)
                        .unwrap_or_default(),
                ),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["TARGET", "BACKFILLS", "ROWS DONE", "ERROR"],
            &rows,
            context.config.color
        )
    );
    if verified && report.remaining() > 0 {
        eprintln!(
            "verification failed: {} row(s) still match a backfill's WHERE; do not deploy the \
             contract on those targets yet",
            report.remaining()
        );
    }
}

/// The rollout on a terminal: a bar of targets finished, and one line per target in
/// flight with its current migration. Only shown when stderr is a terminal.
struct LiveView {
    multi: MultiProgress,
    overall: ProgressBar,
    in_flight: Mutex<HashMap<String, ProgressBar>>,
    failed: Mutex<usize>,
}

impl LiveView {
    fn new() -> Arc<LiveView> {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template("{bar:30} {pos}/{len} targets done {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        overall.set_message("checking every target");
        Arc::new(LiveView {
            multi,
            overall,
            in_flight: Mutex::new(HashMap::new()),
            failed: Mutex::new(0),
        })
    }

    fn on(&self, event: &FleetEvent<'_>) {
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        match event {
            FleetEvent::Checked { targets, canaries } => {
                self.overall.set_length(*targets as u64);
                self.overall.set_message(if *canaries > 0 {
                    format!("({canaries} canaries first)")
                } else {
                    String::new()
                });
            }
            FleetEvent::TargetStarted { target } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("  {spinner} {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.enable_steady_tick(Duration::from_millis(120));
                bar.set_message(format!("{target}: connecting"));
                in_flight.insert((*target).to_owned(), bar);
            }
            FleetEvent::MigrationStarted {
                target,
                version,
                name,
            } => {
                if let Some(bar) = in_flight.get(*target) {
                    bar.set_message(format!("{target}: {version} {name}"));
                }
            }
            FleetEvent::TargetFinished { run } => {
                if let Some(bar) = in_flight.remove(&run.target) {
                    bar.finish_and_clear();
                    self.multi.remove(&bar);
                }
                if run.state == TargetState::Failed {
                    let mut failed = self.failed.lock().unwrap_or_else(|e| e.into_inner());
                    *failed += 1;
                    let _ = self.multi.println(format!(
                        "failed: {}: {}",
                        run.target,
                        run.error
                            .as_ref()
                            .map(ToString::to_string)
                            .unwrap_or_default()
                    ));
                    self.overall
                        .set_message(format!("{failed} failed: stopping after in-flight ones"));
                }
                self.overall.inc(1);
            }
            _ => {}
        }
    }

    fn finish(&self) {
        let in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        for bar in in_flight.values() {
            bar.finish_and_clear();
        }
        self.overall.finish_and_clear();
    }
}
