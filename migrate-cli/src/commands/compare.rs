//! `migrate verify --compare [--version V]`

use migrate_core::runtime::{CompareOptions, CompareReport, Migrator, RuntimeError};
use serde_json::json;

use crate::cli::CompareArgs;
use crate::error::Outcome;
use crate::output::{self, Cell, Style};
use crate::{Context, block_on};

pub fn run(context: &Context, version: Option<u64>, args: &CompareArgs) -> anyhow::Result<Outcome> {
    let database = context.database("verify --compare")?;
    let migrations = context.migrations()?;
    let declared: Vec<u64> = migrations
        .iter()
        .filter(|m| m.compare.is_some() && version.is_none_or(|v| v == m.version))
        .map(|m| m.version)
        .collect();
    if let Some(version) = version
        && declared.is_empty()
    {
        anyhow::bail!(
            "version {version} is not a backfill migration of this set with a `-- migrate:compare`"
        );
    }
    let options = CompareOptions {
        chunk_target: args.chunk_target,
        delay: args.delay,
        max_keys: args.max_keys,
        restart: args.restart,
        ..CompareOptions::default()
    };
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let (reports, failures) = block_on(async {
        let mut client = context.connect(database).await?;
        // Without --version, the applied backfills: a pending one has not filled its target.
        let applied: Vec<u64> = migrator
            .backfills(&client)
            .await?
            .iter()
            .filter(|b| b.applied)
            .map(|b| b.version)
            .collect();
        // One compare failing does not stop the others: each is reported.
        let mut reports = Vec::new();
        let mut failures = Vec::new();
        for candidate in declared {
            if version.is_none() && !applied.contains(&candidate) {
                continue;
            }
            match migrator.compare(&client, candidate, &options).await {
                Ok(report) => reports.push(report),
                Err(error) => {
                    failures.push((candidate, error));
                    // The failure may have left the session unusable (a lost or abandoned
                    // connection): the next compare starts on a fresh one.
                    client = context.connect(database).await?;
                }
            }
        }
        anyhow::Ok((reports, failures))
    })??;
    print(context, &reports, &failures);
    let differing: i64 = reports.iter().map(|r| r.differing).sum();
    if !failures.is_empty() {
        if !context.json() {
            for (_, error) in &failures {
                eprintln!("error: {}", context.name_commands(&error.to_string()));
            }
            eprintln!(
                "{} compare(s) could not run; the others are reported above",
                failures.len()
            );
        }
        return Ok(Outcome::Failure);
    }
    if differing > 0 {
        if !context.json() {
            eprintln!("{}", context.name_commands(&format!(
                "compare failed: {differing} key(s) differ between source and target. Do not switch reads or deploy the contract yet: fix the mapping or the writer, `migrate reconcile` queued dual writes, then compare again"
            )));
        }
        return Ok(Outcome::Failure);
    }
    Ok(Outcome::Success)
}

fn print(context: &Context, reports: &[CompareReport], failures: &[(u64, RuntimeError)]) {
    if context.json() {
        let items: Vec<_> = reports
            .iter()
            .map(|r| {
                json!({
                    "version": r.version,
                    "file": r.file,
                    "source": r.source,
                    "target": r.target,
                    "rows_compared": r.rows_compared,
                    "rows_this_run": r.rows_this_run,
                    "chunks": r.chunks,
                    "resumed_from": r.resumed_from,
                    "differing": r.differing,
                    "differing_keys": r.differing_keys.iter().map(|k| json!({
                        "key": k.key,
                        "difference": k.difference.as_str(),
                    })).collect::<Vec<_>>(),
                    "passed": r.passed(),
                    "passed_at": r.passed_at.map(output::timestamp),
                })
            })
            .collect();
        let errors: Vec<_> = failures
            .iter()
            .map(|(version, error)| json!({ "version": version, "error": error.to_string() }))
            .collect();
        output::print_json(&json!({ "compares": items, "errors": errors }));
        return;
    }
    if reports.is_empty() && failures.is_empty() {
        println!("nothing to compare: no applied backfill migration declares `-- migrate:compare`");
        return;
    }
    let color = context.config.color;
    for r in reports {
        let resumed = r
            .resumed_from
            .as_deref()
            .map_or_else(String::new, |key| format!(", resumed after key {key}"));
        let verdict = if r.passed() {
            Cell::styled("passed", Style::Green)
        } else {
            Cell::styled(format!("{} differing key(s)", r.differing), Style::Red)
        };
        let rows = vec![vec![
            Cell::new(r.version.to_string()),
            Cell::new(format!("{} -> {}", r.source, r.target)),
            Cell::new(format!(
                "{} rows in {} chunks{resumed}",
                r.rows_compared, r.chunks
            )),
            verdict,
        ]];
        print!(
            "{}",
            output::table(&["VERSION", "COMPARE", "ROWS", "RESULT"], &rows, color)
        );
        if !r.differing_keys.is_empty() {
            let keys: Vec<Vec<Cell>> = r
                .differing_keys
                .iter()
                .map(|k| vec![Cell::new(k.key.clone()), Cell::new(k.difference.as_str())])
                .collect();
            print!("{}", output::table(&["KEY", "DIFFERENCE"], &keys, color));
            if r.differing > keys.len() as i64 {
                println!("... and {} more", r.differing - keys.len() as i64);
            }
        }
    }
}
