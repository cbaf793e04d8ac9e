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
            if let Some(table) = analysis.creates.clone() {
                let earlier: &[String] = if transactional { &created } else { &[] };
                analysis.note = Some(new_table_note(&table, &analysis, earlier));
                created.push(table);
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

/// What the analysis says of a new table (no other session sees it) is about that table
/// only: the locks a `CREATE TABLE` shows are on the tables its foreign keys reference, which
/// other sessions may be using. The note names both, so the row does not read as a
/// contradiction. `created`: the tables created earlier in the same transaction.
fn new_table_note(table: &str, analysis: &LockAnalysis, created: &[String]) -> String {
    // The core's wording, replaced here by one that names the table.
    const CORE: &str = "new table: no other session sees it";
    let mut note = format!("{table} is new: no other session sees it");
    // A self-reference locks the new table itself: nobody else sees that one either.
    let referenced: Vec<&str> = analysis
        .locks
        .iter()
        .map(|l| l.table.as_str())
        .filter(|t| *t != table)
        .collect();
    if !referenced.is_empty() {
        let (locks, keys) = match referenced.as_slice() {
            [_] => ("the lock is", "its foreign key"),
            _ => ("the locks are", "its foreign keys"),
        };
        let list = referenced.join(", ");
        let impact = if referenced.iter().all(|t| created.iter().any(|c| c == t)) {
            " and created earlier in this migration: blocks nobody".to_owned()
        } else {
            analysis.strongest().map_or(String::new(), |mode| {
                format!(": {} on {list}", mode.impact())
            })
        };
        note.push_str(&format!(
            "; {locks} on {list}, referenced by {keys}{impact}"
        ));
    }
    let rest = analysis.note.as_deref().unwrap_or_default();
    let rest = rest.trim_start_matches(CORE).trim_start_matches("; ");
    if !rest.is_empty() {
        note.push_str("; ");
        note.push_str(rest);
    }
    note
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
                        "creates": analysis.creates,
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
        (Some(spec), _) => {
            let batches = match spec.pace {
                migrate_core::BackfillPace::Adaptive {
                    target_ms: Some(ms),
                } => {
                    format!("keyed batches sized to take {ms} ms")
                }
                migrate_core::BackfillPace::Adaptive { target_ms: None } => {
                    "keyed batches sized to the configured target".to_owned()
                }
                migrate_core::BackfillPace::Fixed {
                    batch_size,
                    delay_ms: 0,
                } => format!("keyed batches of {batch_size} rows"),
                migrate_core::BackfillPace::Fixed {
                    batch_size,
                    delay_ms,
                } => format!("keyed batches of {batch_size} rows, {delay_ms} ms apart"),
            };
            format!(
                "{batches} on {}.{}, each its own transaction",
                spec.table_name(),
                spec.key
            )
        }
        (None, migrate_core::TransactionMode::Transactional) => "one transaction".to_owned(),
        (None, migrate_core::TransactionMode::Autocommit) => {
            "autocommit, statement by statement".to_owned()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn note(sql: &str, created: &[&str]) -> String {
        let analysis = lock_analysis::analyze_sql(sql);
        let table = analysis.creates.clone().expect("a CREATE TABLE");
        let created: Vec<String> = created.iter().map(|t| (*t).to_owned()).collect();
        new_table_note(&table, &analysis, &created)
    }

    #[test]
    fn a_new_tables_note_is_about_it_and_names_the_tables_its_locks_are_on() {
        assert_eq!(
            note("CREATE TABLE t (id bigint PRIMARY KEY)", &[]),
            "t is new: no other session sees it"
        );
        assert_eq!(
            note(
                "CREATE TABLE orders (user_id bigint REFERENCES users (id))",
                &[]
            ),
            "orders is new: no other session sees it; the lock is on users, referenced by its \
             foreign key: blocks writes on users"
        );
        assert_eq!(
            note(
                "CREATE TABLE items (order_id bigint REFERENCES orders (id))",
                &["orders"]
            ),
            "items is new: no other session sees it; the lock is on orders, referenced by its \
             foreign key and created earlier in this migration: blocks nobody"
        );
        let two = note(
            "CREATE TABLE x (a bigint REFERENCES a (id), b bigint, FOREIGN KEY (b) REFERENCES b (id))",
            &[],
        );
        assert_eq!(
            two,
            "x is new: no other session sees it; the locks are on b, a, referenced by its \
             foreign keys: blocks writes on b, a"
        );
        assert_eq!(
            note(
                "CREATE TABLE tree (parent bigint REFERENCES tree (id))",
                &[]
            ),
            "tree is new: no other session sees it"
        );
        assert!(
            note("CREATE TABLE c AS SELECT * FROM t", &[])
                .ends_with("; CREATE TABLE AS reads its query's tables")
        );
    }
}
