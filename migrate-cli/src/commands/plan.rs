//! `migrate plan`: every pending statement with its transaction mode and lock analysis.

use migrate_core::Migration;
use migrate_core::lock_analysis::{self, LockAnalysis, TableWork};
use migrate_core::runtime::{Migrator, UpTo};
use serde_json::json;

use crate::error::Outcome;
use crate::output::{self, Cell, Style};
use crate::{Context, block_on};

pub fn run(context: &Context) -> anyhow::Result<Outcome> {
    let migrations = context.migrations()?;
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    // Offline, every migration is "pending": useful in CI before any database exists.
    let (pending, database): (Vec<&Migration>, bool) = match &context.config.database {
        Some(database) => {
            let plan = block_on(async {
                let client = context.connect(database).await?;
                anyhow::Ok(migrator.plan(&client, UpTo::All).await?)
            })??;
            let pending = plan
                .migrations
                .iter()
                .filter_map(|p| migrations.get(p.version))
                .collect();
            (pending, true)
        }
        None => (migrations.iter().collect(), false),
    };
    if context.json() {
        print_json(&pending, database);
    } else {
        print_human(context, &pending, database);
    }
    Ok(Outcome::Success)
}

/// How the table work reads next to its lock.
fn work_text(analysis: &LockAnalysis) -> &'static str {
    match (analysis.work, analysis.blocks_during_table_work()) {
        (TableWork::None, _) => "-",
        (TableWork::Scan, true) => "scan under lock",
        (TableWork::Scan, false) => "scan (non-blocking)",
        (TableWork::Rewrite, true) => "rewrite under lock",
        (TableWork::Rewrite, false) => "rewrite (non-blocking)",
    }
}

/// Analyses a migration's up statements in order. A table created earlier in the same
/// transaction is empty and invisible to other sessions, so locking or scanning it blocks
/// nobody; such statements are marked instead of flagged.
fn analyse(m: &Migration) -> Vec<LockAnalysis> {
    let transactional = m.up.mode == migrate_core::TransactionMode::Transactional;
    let mut created: Vec<String> = Vec::new();
    m.up.statements
        .iter()
        .map(|s| {
            let mut analysis = lock_analysis::analyze_sql(&s.sql);
            if let Some(table) = &analysis.creates {
                created.push(table.clone());
            } else if transactional
                && !analysis.locks.is_empty()
                && analysis.locks.iter().all(|l| created.contains(&l.table))
            {
                analysis.note = Some(match analysis.note.take() {
                    Some(note) => {
                        format!("table created earlier in this migration: blocks nobody; {note}")
                    }
                    None => "table created earlier in this migration: blocks nobody".to_owned(),
                });
                analysis.work = TableWork::None;
            }
            analysis
        })
        .collect()
}

fn print_json(pending: &[&Migration], database: bool) {
    let items: Vec<_> = pending
        .iter()
        .map(|m| {
            let statements: Vec<_> = m
                .up
                .statements
                .iter()
                .zip(analyse(m))
                .map(|(s, analysis)| {
                    json!({
                        "line": s.line,
                        "column": s.column,
                        "sql": s.sql,
                        "locks": analysis.locks,
                        "blocks_reads": analysis.strongest().is_some_and(|l| l.blocks_reads()),
                        "blocks_writes": analysis.strongest().is_some_and(|l| l.blocks_writes()),
                        "work": analysis.work,
                        "blocking_table_work": analysis.blocks_during_table_work(),
                        "known": analysis.known,
                        "note": analysis.note,
                    })
                })
                .collect();
            json!({
                "version": m.version,
                "name": m.name,
                "phase": m.phase.as_str(),
                "file": m.file_name,
                "mode": if m.backfill.is_some() { "batched" } else { m.up.mode.as_str() },
                "statements": statements,
            })
        })
        .collect();
    output::print_json(&json!({ "database": database, "pending": items }));
}

fn print_human(context: &Context, pending: &[&Migration], database: bool) {
    let color = context.config.color;
    if !database {
        println!("no database configured: every migration is shown as pending\n");
    }
    if pending.is_empty() {
        println!("nothing to do: the database is up to date");
        return;
    }
    for (index, m) in pending.iter().enumerate() {
        if index > 0 {
            println!();
        }
        println!(
            "{} ({}, {})",
            output::paint(&m.file_name, Style::Bold, color),
            m.phase,
            execution_label(m)
        );
        let mut rows = Vec::new();
        for (statement, analysis) in m.up.statements.iter().zip(analyse(m)) {
            let (lock, style) = match analysis.strongest() {
                Some(mode) if mode.blocks_reads() => (mode.as_str(), Style::Red),
                Some(mode) if mode.blocks_writes() => (mode.as_str(), Style::Yellow),
                Some(mode) => (mode.as_str(), Style::Green),
                None if analysis.known => ("-", Style::Plain),
                None => ("unknown", Style::Yellow),
            };
            let tables = analysis
                .locks
                .iter()
                .map(|l| {
                    if Some(l.mode) == analysis.strongest() {
                        l.table.clone()
                    } else {
                        format!("{} ({})", l.table, l.mode)
                    }
                })
                .collect::<Vec<_>>()
                .join(", ");
            let work = work_text(&analysis);
            let work_style = if analysis.blocks_during_table_work() {
                Style::Red
            } else {
                Style::Plain
            };
            rows.push(vec![
                Cell::new(format!("{}:{}", statement.line, statement.column)),
                Cell::new(output::one_line(&statement.sql, 56)),
                Cell::styled(lock, style),
                Cell::new(if tables.is_empty() {
                    "-".into()
                } else {
                    tables
                }),
                Cell::styled(work, work_style),
                Cell::new(analysis.note.clone().unwrap_or_default()),
            ]);
        }
        print!(
            "{}",
            output::table(
                &["AT", "STATEMENT", "LOCK", "ON", "TABLE WORK", "NOTE"],
                &rows,
                color
            )
        );
    }
}

/// How the runtime executes a migration's up part.
fn execution_label(m: &migrate_core::Migration) -> String {
    match (&m.backfill, m.up.mode) {
        (Some(spec), _) => format!(
            "keyed batches of {} rows on {}.{}, each its own transaction",
            spec.batch_size,
            spec.table_name(),
            spec.key
        ),
        (None, migrate_core::TransactionMode::Transactional) => "one transaction".to_owned(),
        (None, migrate_core::TransactionMode::Autocommit) => {
            "autocommit, statement by statement".to_owned()
        }
    }
}
