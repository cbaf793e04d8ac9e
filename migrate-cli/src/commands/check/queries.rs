//! `check --queries`, `--next-queries`, `--queries-from`: the application's queries prepared
//! on the scratch database after each pending migration (migrate_core::queries does the
//! reading and the checking; this walks and reports).
//!
//! - a query of the running release that worked before an expand or backfill and does not
//!   after it fails the check;
//! - one a contract breaks is reported, not failed: it must be gone from production before
//!   that contract runs;
//! - a query of the next release must work after the last migration, else the check fails,
//!   naming the migration after which it stopped working, or "never worked";
//! - a running-release query that works at no point of the walk fails it too ("never
//!   worked"): it is a wrong query file more likely than a finding.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use indicatif::ProgressBar;
use migrate_core::queries::{self, Query, QueryOrigin, QueryProblem};
use migrate_core::runtime::{ConnectOptions, Migrator, MigratorConfig, UpTo, connect_with};
use migrate_core::{Migration, Migrations, Phase};
use migrate_scratch::ScratchCluster;
use serde_json::json;

use super::base::Base;
use crate::output::{self, Style};
use crate::{Context, block_on};

/// `check`'s query options.
#[derive(Debug, Default)]
pub struct QueryOptions {
    /// `--queries`: files or folders of the release running now.
    pub running: Vec<PathBuf>,
    /// `--next-queries`: files or folders of the release deployed after the pending set.
    pub next: Vec<PathBuf>,
    /// `--queries-from`: a database whose pg_stat_statements holds the running release's
    /// queries (read-only).
    pub from: Option<String>,
    /// `--queries-window`: only the statements called during this long.
    pub window: Option<Duration>,
}

impl QueryOptions {
    pub(super) fn is_empty(&self) -> bool {
        self.running.is_empty() && self.next.is_empty() && self.from.is_none()
    }
}

/// Which release a query belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Release {
    Running,
    Next,
}

/// The queries to walk.
pub(super) struct QuerySet {
    running: Vec<Query>,
    next: Vec<Query>,
}

/// Reads every source before anything starts: bad input stops the check with nothing run.
/// `state_tables`: the runtime's own tables (quoted), whose statements in pg_stat_statements
/// are the migrator's, not the application's.
pub(super) fn load(
    context: &Context,
    options: &QueryOptions,
    state_tables: &[String],
) -> anyhow::Result<QuerySet> {
    let read_all = |paths: &[PathBuf]| -> anyhow::Result<Vec<Query>> {
        let mut all = Vec::new();
        for path in paths {
            all.extend(queries::read_path(path)?);
        }
        Ok(all)
    };
    let mut running = read_all(&options.running)?;
    let next = read_all(&options.next)?;
    if let Some(url) = &options.from {
        running.extend(
            from_stat_statements(context, url, options.window)?
                .into_iter()
                .filter(|query| {
                    !state_tables
                        .iter()
                        .any(|table| queries::names_relation(&query.text, table))
                }),
        );
    }
    Ok(QuerySet { running, next })
}

/// The statements of a database's pg_stat_statements, in a read-only session; with a window,
/// only those called during it.
fn from_stat_statements(
    context: &Context,
    url: &str,
    window: Option<Duration>,
) -> anyhow::Result<Vec<Query>> {
    let mut options = ConnectOptions::parse(url).context("the --queries-from connection string")?;
    options
        .config
        .application_name(&context.config.migrator.application_name)
        .options("-c default_transaction_read_only=on");
    block_on(async {
        let client = connect_with(options)
            .await
            .context("connecting to the --queries-from database")?;
        let first = queries::read_calls(&client).await?;
        let statements = match window {
            None => first.into_values().collect(),
            Some(window) => {
                tokio::time::sleep(window).await;
                let second = queries::read_calls(&client).await?;
                queries::called_between(&first, &second)
            }
        };
        anyhow::Ok(statements.iter().map(|s| s.to_query()).collect::<Vec<_>>())
    })?
}

/// What happens to a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// An expand or backfill breaks a running-release query; a next-release query does not
    /// work after the last migration: the check fails.
    Fails,
    /// A contract breaks a running-release query: it must be gone from production first.
    MustBeGoneBefore,
    /// A statement of pg_stat_statements that works at no point of the walk: an entry kept
    /// from long ago (a dropped table, a temporary one), reported and not failed, since the
    /// statistics keep what the running release no longer sends (`--queries-window` keeps
    /// only recent ones).
    NeverWorkedStatistic,
}

/// One query a migration breaks (or that never worked).
pub(super) struct Finding {
    /// `None`: it never worked at any point of the walk.
    migration: Option<(String, Phase)>,
    release: Release,
    origin: String,
    query: String,
    problems: Vec<QueryProblem>,
    verdict: Verdict,
}

/// What the query walk found.
pub(super) struct QueryReport {
    running: usize,
    next: usize,
    findings: Vec<Finding>,
}

impl QueryReport {
    pub(super) fn ok(&self) -> bool {
        self.findings.iter().all(|f| f.verdict != Verdict::Fails)
    }

    pub(super) fn failures(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.verdict == Verdict::Fails)
            .count()
    }
}

/// Applies `pending` one by one on a fresh database of `base`, checking every query before
/// the first and after each.
pub(super) fn walk(
    context: &Context,
    migrations: &Migrations,
    pending: &[&Migration],
    cluster: &ScratchCluster,
    base: &Base,
    set: &QuerySet,
    progress: &ProgressBar,
) -> anyhow::Result<QueryReport> {
    let scratch_config = MigratorConfig {
        contract_stabilisation: Duration::ZERO,
        max_replica_lag: None,
        running_queries_window: None,
        ..context.config.migrator.clone()
    };
    let migrator = Migrator::new(migrations, scratch_config)?;
    let database = base.fresh_database(cluster)?;
    let all: Vec<(Release, &Query)> = set
        .running
        .iter()
        .map(|q| (Release::Running, q))
        .chain(set.next.iter().map(|q| (Release::Next, q)))
        .collect();
    block_on(async {
        let client = super::connect_scratch(context, database).await?;
        let check_all = || async {
            let mut results = Vec::with_capacity(all.len());
            for (_, query) in &all {
                results.push(queries::check_query(&client, query).await?);
            }
            anyhow::Ok(results)
        };
        // worked[i]: query i worked at the latest step; last_worked[i]: the latest step at
        // which it did (0: before the first pending migration, k: after pending[k - 1]).
        let initial = check_all().await?;
        let mut worked: Vec<bool> = initial.iter().map(Vec::is_empty).collect();
        let mut last_worked: Vec<Option<usize>> = worked.iter().map(|ok| ok.then_some(0)).collect();
        let mut latest = initial;
        let mut findings = Vec::new();
        for (index, m) in pending.iter().enumerate() {
            progress.set_message(format!("queries after {}", m.file_name));
            migrator
                .up(&client, UpTo::Version(m.version))
                .await
                .map_err(|failed| {
                    anyhow::Error::new(failed)
                        .context(format!("applying {} on the scratch database", m.file_name))
                })?;
            latest = check_all().await?;
            for (i, problems) in latest.iter().enumerate() {
                let (release, query) = all[i];
                if problems.is_empty() {
                    worked[i] = true;
                    last_worked[i] = Some(index + 1);
                    continue;
                }
                if worked[i] && release == Release::Running {
                    findings.push(Finding {
                        migration: Some((m.file_name.to_string(), m.phase)),
                        release,
                        origin: query.origin.to_string(),
                        query: query.shortened(),
                        problems: problems.clone(),
                        verdict: if m.phase == Phase::Contract {
                            Verdict::MustBeGoneBefore
                        } else {
                            Verdict::Fails
                        },
                    });
                }
                worked[i] = false;
            }
        }
        for (i, problems) in latest.iter().enumerate() {
            let (release, query) = all[i];
            let never_worked = last_worked[i].is_none();
            let next_broken = release == Release::Next && !problems.is_empty();
            if !(never_worked || next_broken) {
                continue;
            }
            let migration = last_worked[i]
                .and_then(|step| pending.get(step))
                .map(|m| (m.file_name.to_string(), m.phase));
            let from_statistics = matches!(query.origin, QueryOrigin::StatStatements { .. });
            findings.push(Finding {
                migration,
                release,
                origin: query.origin.to_string(),
                query: query.shortened(),
                problems: problems.clone(),
                verdict: if never_worked && from_statistics {
                    Verdict::NeverWorkedStatistic
                } else {
                    Verdict::Fails
                },
            });
        }
        anyhow::Ok(QueryReport {
            running: set.running.len(),
            next: set.next.len(),
            findings,
        })
    })?
}

fn problem_text(problems: &[QueryProblem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// `check --format json`'s `queries`: one entry per (migration, query, error).
pub(super) fn json_of(report: &QueryReport) -> serde_json::Value {
    let findings: Vec<_> = report
        .findings
        .iter()
        .map(|f| {
            json!({
                "migration": f.migration.as_ref().map(|(file, _)| file),
                "phase": f.migration.as_ref().map(|(_, phase)| phase.as_str()),
                "release": match f.release { Release::Running => "running", Release::Next => "next" },
                "origin": f.origin,
                "query": f.query,
                "error": problem_text(&f.problems),
                "code": f.problems.first().and_then(QueryProblem::code),
                "verdict": match f.verdict {
                    Verdict::Fails => "fails",
                    Verdict::MustBeGoneBefore => "must_be_gone_before",
                    Verdict::NeverWorkedStatistic => "never_worked_statistic",
                },
            })
        })
        .collect();
    json!({
        "ok": report.ok(),
        "running": report.running,
        "next": report.next,
        "findings": findings,
    })
}

/// The human report.
pub(super) fn print_human(report: &QueryReport, color: bool) {
    println!(
        "queries: {} of the running release, {} of the next release, prepared after each migration",
        report.running, report.next
    );
    for f in &report.findings {
        let error = problem_text(&f.problems);
        let (mark, style, what) = match (f.verdict, f.release, &f.migration) {
            (Verdict::MustBeGoneBefore, _, Some((file, _))) => (
                "note",
                Style::Yellow,
                format!(
                    "{file} breaks a running-release query: it must be gone from production \
                     before {file} runs"
                ),
            ),
            (Verdict::NeverWorkedStatistic, _, _) => (
                "note",
                Style::Yellow,
                "a statement of pg_stat_statements works at no point (an old entry?): not checked"
                    .to_owned(),
            ),
            (_, Release::Running, Some((file, phase))) => (
                "FAIL",
                Style::Red,
                format!(
                    "{file} ({}) breaks a query of the running release",
                    phase.as_str()
                ),
            ),
            (_, Release::Next, Some((file, _))) => (
                "FAIL",
                Style::Red,
                format!("a query of the next release stops working after {file}"),
            ),
            (_, release, None) => (
                "FAIL",
                Style::Red,
                format!(
                    "a query of the {} release never worked",
                    if release == Release::Running {
                        "running"
                    } else {
                        "next"
                    }
                ),
            ),
        };
        println!("{:>4}  {what}", output::paint(mark, style, color));
        println!("      {}: {}", f.origin, f.query);
        println!("      {error}");
    }
    if report.findings.is_empty() {
        println!(
            "{:>4}  every query works before and after each migration",
            output::paint("ok", Style::Green, color)
        );
    }
}
