//! `migrate check`: lint, then prove on a scratch PostgreSQL that every down part restores
//! the schema the migration found, and that the set applies again after the down walk; then
//! apply the set once more on a database of its own, observing what PostgreSQL does for each
//! statement ([`observed`]). With `--queries`/`--next-queries`/`--queries-from`, the
//! application's queries are prepared after each pending migration ([`queries`]).

mod base;
mod observed;
mod queries;

pub use self::queries::QueryOptions;

use std::path::{Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use migrate_core::runtime::MigrationState;
use migrate_core::{Migration, Migrations};

use self::base::Base;
use migrate_core::runtime::state::backfill_progress::BackfillProgressTable;
use migrate_core::runtime::state::flags::FlagStore;
use migrate_core::runtime::state::partial::PartialRunTable;
use migrate_core::runtime::{Migrator, MigratorConfig, TableName, UpTo};
use migrate_scratch::{PgBinaries, ScratchCluster, ScratchDatabase};
use serde_json::json;

use crate::diff::line_diff;
use crate::error::Outcome;
use crate::output::{self, Style};
use crate::{Context, block_on};

/// Diff lines shown per problem; the JSON output has them all.
const DIFF_LINES_SHOWN: usize = 30;

/// What the down walk found for one migration.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DownResult {
    Restores,
    /// The schema after the down part differs from the schema before the up part.
    Differs(Vec<String>),
    /// The down part failed with an error.
    Failed(String),
    /// No `-- migrate:down`: the walk stopped here.
    NoDownPart,
    /// Not reached (the walk stopped at a newer migration).
    NotRun,
}

impl DownResult {
    fn key(&self) -> &'static str {
        match self {
            DownResult::Restores => "restores",
            DownResult::Differs(_) => "differs",
            DownResult::Failed(_) => "failed",
            DownResult::NoDownPart => "no_down_part",
            DownResult::NotRun => "not_run",
        }
    }
}

#[derive(Debug)]
enum Reapply {
    Same,
    Differs(Vec<String>),
    Failed(String),
}

struct Report {
    down: Vec<DownResult>,
    reapply: Reapply,
    observed: Vec<observed::Observed>,
}

impl Report {
    fn ok(&self) -> bool {
        self.down
            .iter()
            .all(|d| !matches!(d, DownResult::Differs(_) | DownResult::Failed(_)))
            && matches!(self.reapply, Reapply::Same)
    }
}

/// Where the check starts, from `check`'s options.
#[derive(Debug, Default)]
pub struct CheckSource {
    /// `--schema-from`: a database to read the schema and the history of (read-only).
    pub schema_from: Option<String>,
    /// `--schema-file`: a dump to load instead.
    pub schema_file: Option<PathBuf>,
    /// `--sample-rows`: rows copied per table from `schema_from`.
    pub sample_rows: Option<u64>,
    /// `--pg-dump`: the pg_dump binary to read `schema_from` with.
    pub pg_dump: Option<PathBuf>,
    /// The application's queries to prepare after each migration.
    pub queries: QueryOptions,
}

pub fn run(
    context: &Context,
    path: Option<&Path>,
    source: &CheckSource,
) -> anyhow::Result<Outcome> {
    let (dir, display) = context.folder(path);
    let checked = context.check(&dir, &display)?;
    if checked.has_errors() {
        for diagnostic in &checked.diagnostics {
            eprintln!("{diagnostic}");
        }
        if context.json() {
            output::print_json(&json!({
                "ok": false,
                "diagnostics": checked.diagnostics,
                "migrations": [],
            }));
        }
        return Ok(Outcome::LintFindings);
    }
    let absolute = std::fs::canonicalize(&dir).unwrap_or(dir);
    let migrations = checked.migrations(&absolute.to_string_lossy());
    let history = TableName::parse(&context.config.migrator.history_table)?;
    let state_tables = state_tables(&history)?;
    // Before anything starts: a bad query file stops the check with nothing run.
    let query_set = if source.queries.is_empty() {
        None
    } else {
        Some(queries::load(context, &source.queries, &state_tables)?)
    };

    let base = match (&source.schema_from, &source.schema_file) {
        (Some(url), _) => base::from_database(
            context,
            &base::SourceOptions {
                url,
                pg_dump: source.pg_dump.as_deref(),
                sample_rows: source.sample_rows,
                state_tables: &state_tables,
            },
        )?,
        (None, Some(file)) => base::from_file(file)?,
        (None, None) => Base::Empty,
    };

    let progress = progress_bar(context, migrations.len() as u64 * 4 + 1);
    progress.set_message("starting a scratch PostgreSQL");
    let cluster = start_scratch(base.production_major())?;
    let major = server_major(&cluster)?;
    let pending: Vec<&Migration> = if base.is_empty() {
        migrations.iter().collect()
    } else {
        progress.set_message("loading the schema");
        let database = base.fresh_database(&cluster)?;
        let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
        let status = block_on(async {
            let client = connect_scratch(context, database).await?;
            anyhow::Ok(migrator.status(&client).await?)
        })??;
        let disagree =
            status.count(MigrationState::Drifted) + status.count(MigrationState::MissingFromFiles);
        if disagree > 0 {
            progress.finish_and_clear();
            super::status::print(context, &status);
            eprintln!(
                "error: the history of {} disagrees with the files (drifted, or applied \
                 migrations missing from the files, as `migrate status` reports): nothing was checked",
                base.origin()
            );
            return Ok(Outcome::Disagreement);
        }
        let waiting: Vec<u64> = status
            .entries
            .iter()
            .filter(|e| {
                matches!(
                    e.state,
                    MigrationState::Pending
                        | MigrationState::PartlyApplied
                        | MigrationState::BackfillInProgress
                )
            })
            .map(|e| e.version)
            .collect();
        migrations
            .iter()
            .filter(|m| waiting.contains(&m.version))
            .collect()
    };
    progress.set_length(pending.len() as u64 * 4 + 1);

    let mut report = walk(
        context,
        &migrations,
        &pending,
        &cluster,
        &base,
        &history,
        &progress,
        major,
    )?;
    let observation = base.fresh_database(&cluster)?;
    report.observed = block_on(async {
        let client = connect_scratch(context, observation.clone()).await?;
        let observer = connect_scratch(context, observation.clone()).await?;
        observed::observe_all(&client, &observer, &pending, &progress).await
    })??;
    let query_report = match &query_set {
        Some(set) => Some(queries::walk(
            context,
            &migrations,
            &pending,
            &cluster,
            &base,
            set,
            &progress,
        )?),
        None => None,
    };
    progress.finish_and_clear();
    print(
        context,
        &pending,
        &base,
        &report,
        &checked.diagnostics,
        major,
        query_report.as_ref(),
    );
    let queries_ok = query_report.as_ref().is_none_or(queries::QueryReport::ok);
    if report.ok() && !queries_ok {
        if !context.json() {
            let failures = query_report
                .as_ref()
                .map_or(0, queries::QueryReport::failures);
            eprintln!(
                "error: check failed: {failures} query finding(s) above break the application"
            );
        }
        Ok(Outcome::Failure)
    } else if report.ok() {
        Ok(Outcome::Success)
    } else {
        let broken: Vec<String> = pending
            .iter()
            .zip(&report.down)
            .filter(|(_, d)| matches!(d, DownResult::Differs(_) | DownResult::Failed(_)))
            .map(|(m, _)| m.file_name.to_string())
            .collect();
        let what = if broken.is_empty() {
            "re-applying the set after the down walk does not give the same schema".to_owned()
        } else {
            format!(
                "the down part of {} does not restore the schema",
                broken.join(", ")
            )
        };
        // The JSON document above already says so; a second document would break parsers.
        if !context.json() {
            eprintln!("error: check failed: {what}");
        }
        Ok(Outcome::Failure)
    }
}

fn progress_bar(context: &Context, steps: u64) -> ProgressBar {
    if !context.config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(steps);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}") {
        bar.set_style(style);
    }
    bar
}

/// The scratch cluster: with `--schema-from`, on production's own major where its binaries
/// are installed (`$MIGRATE_PG_BIN`, the cache folder `scripts/install-pg.sh` fills, Debian's
/// folders), as locks, rewrites and the syntax accepted differ between majors; else on the
/// default server, with a warning naming both majors.
fn start_scratch(production_major: Option<u32>) -> anyhow::Result<ScratchCluster> {
    if let Some(binaries) = production_major.and_then(PgBinaries::locate_major) {
        return Ok(ScratchCluster::start_on(binaries)?);
    }
    let cluster = ScratchCluster::start()?;
    if let Some(production) = production_major
        && production != cluster.version().major
    {
        eprintln!(
            "warning: production runs PostgreSQL {production}, whose server binaries are not \
             installed here; checking on {} instead, whose locks, rewrites and accepted syntax \
             may differ (install {production}: scripts/install-pg.sh {production}, apt-get \
             install postgresql-{production}, or point ${} at its bin folder)",
            cluster.version(),
            migrate_scratch::PG_BIN_ENV,
        );
    }
    Ok(cluster)
}

/// The major version of the scratch cluster's server (`15` for 15.18): what `check` proves
/// is proven on that major only.
fn server_major(cluster: &ScratchCluster) -> anyhow::Result<u32> {
    let number = cluster.psql("postgres", "SHOW server_version_num")?;
    let number: u32 = number.trim().parse().map_err(|_| {
        anyhow::anyhow!(
            "the scratch server reported server_version_num {:?}",
            number.trim()
        )
    })?;
    Ok(number / 10_000)
}

/// What a syntax error (SQLSTATE 42601) on the scratch server may mean: the statement is
/// valid only on a newer major (a subquery in FROM without an alias needs 16, `ADD
/// CONSTRAINT ... NOT NULL col` 18). `None` for any other error.
fn newer_major_hint(error: &str, major: u32) -> Option<String> {
    error.contains("SQLSTATE 42601").then(|| {
        format!(
            "a syntax error on PostgreSQL {major}, the major check ran: the statement may need a \
             newer major (point $MIGRATE_PG_BIN at a newer server's bin folder)"
        )
    })
}

/// `error`, then the hint of [`newer_major_hint`] when it applies.
fn with_hint(error: String, major: u32) -> String {
    match newer_major_hint(&error, major) {
        Some(hint) => format!("{error}; {hint}"),
        None => error,
    }
}

#[allow(clippy::too_many_arguments)]
fn walk(
    context: &Context,
    migrations: &Migrations,
    pending: &[&Migration],
    cluster: &ScratchCluster,
    base: &Base,
    history: &TableName,
    progress: &ProgressBar,
    major: u32,
) -> anyhow::Result<Report> {
    // The scratch cluster has no replicas, and the walk applies each contract right after
    // its expand: the time-based gates would only refuse there.
    let scratch_config = MigratorConfig {
        contract_stabilisation: Duration::ZERO,
        max_replica_lag: None,
        ..context.config.migrator.clone()
    };
    let migrator = Migrator::new(migrations, scratch_config)?;
    let connect = |database: &ScratchDatabase| connect_scratch(context, database.clone());
    let mut database = base.fresh_database(cluster)?;
    block_on(async {
        let mut client = connect(&database).await?;
        // schemas[i]: the schema before pending migration i; schemas[n]: after all of them.
        let mut schemas = vec![schema_dump(cluster, &database, history)?];
        progress.inc(1);
        for m in pending {
            progress.set_message(format!("up {}", m.file_name));
            migrator
                .up(&client, UpTo::Version(m.version))
                .await
                .map_err(|failed| {
                    let hint = newer_major_hint(&failed.to_string(), major)
                        .map_or_else(String::new, |hint| format!(" ({hint})"));
                    anyhow::Error::new(failed).context(format!(
                        "applying {} on the scratch database, PostgreSQL {major}{hint}",
                        m.file_name
                    ))
                })?;
            schemas.push(schema_dump(cluster, &database, history)?);
            progress.inc(1);
        }

        let mut down = vec![DownResult::NotRun; pending.len()];
        for (index, m) in pending.iter().enumerate().rev() {
            progress.set_message(format!("down {}", m.file_name));
            if m.down.is_none() {
                down[index] = DownResult::NoDownPart;
                break;
            }
            let Some(to) = m.version.checked_sub(1) else {
                break;
            };
            down[index] = match migrator.down(&client, to).await {
                Err(failed) => {
                    DownResult::Failed(with_hint(crate::error::render(&failed.into()), major))
                }
                Ok(_) => {
                    let after = schema_dump(cluster, &database, history)?;
                    if after == schemas[index] {
                        DownResult::Restores
                    } else {
                        DownResult::Differs(line_diff(&schemas[index], &after))
                    }
                }
            };
            progress.inc(1);
            if down[index] != DownResult::Restores && index > 0 {
                // What this down part left behind (or broke) must not be blamed on the older
                // ones: continue from a fresh database brought up to the previous version.
                database = base.fresh_database(cluster)?;
                client = connect(&database).await?;
                let previous = pending[index - 1].version;
                migrator
                    .up(&client, UpTo::Version(previous))
                    .await
                    .map_err(|failed| {
                        anyhow::Error::new(failed)
                            .context("rebuilding the scratch database after a failed down part")
                    })?;
            }
        }

        progress.set_message("up again");
        let reapply = match migrator.up(&client, UpTo::All).await {
            Err(failed) => Reapply::Failed(with_hint(crate::error::render(&failed.into()), major)),
            Ok(_) => {
                let after = schema_dump(cluster, &database, history)?;
                let last = schemas.last().map(String::as_str).unwrap_or_default();
                if after == last {
                    Reapply::Same
                } else {
                    Reapply::Differs(line_diff(last, &after))
                }
            }
        };
        progress.inc(pending.len() as u64);
        anyhow::Ok(Report {
            down,
            reapply,
            observed: Vec::new(),
        })
    })?
}

/// A connection to a scratch database (no TLS there).
pub(super) async fn connect_scratch(
    context: &Context,
    database: ScratchDatabase,
) -> anyhow::Result<tokio_postgres::Client> {
    let url = format!("{}?sslmode=disable", database.url());
    Ok(migrate_core::runtime::connect(&url, &context.config.migrator).await?)
}

/// `pg_dump --schema-only` of the scratch database without the runtime's state tables.
fn schema_dump(
    cluster: &ScratchCluster,
    database: &ScratchDatabase,
    history: &TableName,
) -> anyhow::Result<String> {
    Ok(cluster.schema_of(database, &state_tables(history)?)?)
}

/// The runtime's own state tables (history, backfill progress, flags, partial runs), quoted:
/// not the schema under test (the backfill progress table, for one, appears with the first
/// backfill).
pub(crate) fn state_tables(history: &TableName) -> anyhow::Result<Vec<String>> {
    Ok(vec![
        history.quoted(),
        BackfillProgressTable::for_history(history)?
            .quoted()
            .to_owned(),
        FlagStore::for_history_table(history)?.table().quoted(),
        PartialRunTable::for_history(history)?.quoted().to_owned(),
    ])
}

fn print(
    context: &Context,
    pending: &[&Migration],
    base: &Base,
    report: &Report,
    diagnostics: &[migrate_core::Diagnostic],
    major: u32,
    query_report: Option<&queries::QueryReport>,
) {
    if context.json() {
        let items: Vec<_> = pending
            .iter()
            .zip(&report.down)
            .map(|(m, d)| {
                json!({
                    "version": m.version,
                    "file": m.file_name,
                    "up": "ok",
                    "down": d.key(),
                    "diff": match d { DownResult::Differs(diff) => diff.clone(), _ => Vec::new() },
                    "error": match d { DownResult::Failed(error) => Some(error.clone()), _ => None },
                    "observed": observed::json_of(
                        report.observed.iter().find(|o| o.version == m.version),
                        m,
                        major,
                    ),
                })
            })
            .collect();
        let (reapply, reapply_diff, reapply_error) = match &report.reapply {
            Reapply::Same => ("same", Vec::new(), None),
            Reapply::Differs(diff) => ("differs", diff.clone(), None),
            Reapply::Failed(error) => ("failed", Vec::new(), Some(error.clone())),
        };
        output::print_json(&json!({
            "ok": report.ok() && query_report.is_none_or(queries::QueryReport::ok),
            "postgres_major": major,
            "production_major": base.production_major(),
            "diagnostics": diagnostics,
            "migrations": items,
            "queries": query_report.map(queries::json_of),
            "reapply": reapply,
            "reapply_diff": reapply_diff,
            "reapply_error": reapply_error,
            "disagreements": report.observed.iter().map(|o| o.disagreements()).sum::<usize>(),
            "base": base.json(),
        }));
        return;
    }
    let color = context.config.color;
    for diagnostic in diagnostics {
        println!("{diagnostic}");
    }
    println!("checked on PostgreSQL {major} (the scratch cluster's server)");
    if let Some(production) = base.production_major() {
        println!("production runs PostgreSQL {production}");
    }
    if let Some(text) = base.describe() {
        println!("{text}");
    }
    let show_diff = |diff: &[String]| {
        for line in diff.iter().take(DIFF_LINES_SHOWN) {
            let style = if line.starts_with('-') {
                Style::Red
            } else {
                Style::Green
            };
            println!("      {}", output::paint(line, style, color));
        }
        if diff.len() > DIFF_LINES_SHOWN {
            println!(
                "      ... {} more line(s) (--format json shows all)",
                diff.len() - DIFF_LINES_SHOWN
            );
        }
    };
    for (m, down) in pending.iter().zip(&report.down) {
        let (mark, style, text) = match down {
            DownResult::Restores => ("ok", Style::Green, "down restores the schema".to_owned()),
            DownResult::Differs(_) => (
                "FAIL",
                Style::Red,
                "down does not restore the schema (- before up, + after down):".to_owned(),
            ),
            DownResult::Failed(error) => ("FAIL", Style::Red, format!("down failed: {error}")),
            DownResult::NoDownPart => (
                "skip",
                Style::Yellow,
                "no down part: cannot be reverted (older ones were not checked)".to_owned(),
            ),
            DownResult::NotRun => ("skip", Style::Yellow, "not reverted".to_owned()),
        };
        println!(
            "{:>4}  {}: {text}",
            output::paint(mark, style, color),
            m.file_name
        );
        if let DownResult::Differs(diff) = down {
            show_diff(diff);
        }
    }
    match &report.reapply {
        Reapply::Same => println!(
            "{:>4}  applying the set again gives the same schema",
            output::paint("ok", Style::Green, color)
        ),
        Reapply::Differs(diff) => {
            println!(
                "{:>4}  applying the set again gives a different schema (- first run, + second run):",
                output::paint("FAIL", Style::Red, color)
            );
            show_diff(diff);
        }
        Reapply::Failed(error) => println!(
            "{:>4}  applying the set again failed: {error}",
            output::paint("FAIL", Style::Red, color)
        ),
    }
    println!();
    if let Some(query_report) = query_report {
        queries::print_human(query_report, color);
        println!();
    }
    let disagreements = observed::print_human(pending, &report.observed, color, 60, major);
    if disagreements > 0 {
        println!(
            "{}",
            output::paint(
                &format!(
                    "{disagreements} disagreement(s) between plan and PostgreSQL: what PostgreSQL \
                     did is the truth; please report plan's mistake"
                ),
                Style::Yellow,
                color
            )
        );
    }
    if report.ok() && query_report.is_none_or(queries::QueryReport::ok) {
        println!(
            "check passed: {} {}migration(s) apply, revert and apply again on PostgreSQL",
            pending.len(),
            if base.is_empty() { "" } else { "pending " }
        );
    }
}
