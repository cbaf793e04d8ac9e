//! `migrate plan`: every pending statement with its transaction mode and lock analysis.

use std::collections::BTreeMap;

use migrate_core::Migration;
use migrate_core::lock_analysis::{DeclaredSchema, LockAnalysis, TableWork};
use migrate_core::runtime::{Migrator, UpTo};
use serde_json::json;

use crate::error::Outcome;
use crate::output::{self, Cell, Style};
use crate::{Context, block_on};

pub fn run(context: &Context, large_table: u64) -> anyhow::Result<Outcome> {
    let migrations = context.migrations()?;
    let migrator = Migrator::new(&migrations, context.config.migrator.clone())?;
    let analyses = analyse_set(&migrations);
    // Offline, every migration is "pending": useful in CI before any database exists.
    let (pending, sizes): (Vec<&Migration>, Option<Sizes>) = match &context.config.database {
        Some(database) => block_on(async {
            let client = context.connect(database).await?;
            let plan = migrator.plan(&client, UpTo::All).await?;
            let pending: Vec<&Migration> = plan
                .migrations
                .iter()
                .filter_map(|p| migrations.get(p.version))
                .collect();
            let sizes = table_sizes(&client, &pending, &analyses).await;
            anyhow::Ok((pending, Some(sizes)))
        })??,
        None => (migrations.iter().collect(), None),
    };
    let sizes = sizes.map(|sizes| (sizes, large_table));
    if context.json() {
        print_json(&pending, &analyses, sizes.as_ref());
    } else {
        print_human(context, &pending, &analyses, sizes.as_ref());
    }
    Ok(Outcome::Success)
}

/// The size of a table a pending statement locks, from the catalog.
#[derive(Debug, Clone, Copy)]
struct TableSize {
    /// `pg_class.reltuples`: an estimate; `None` before the table's first VACUUM or ANALYZE.
    rows: Option<f64>,
    /// `pg_total_relation_size`: the table, its indexes and TOAST.
    bytes: u64,
}

/// Sizes by the name as the statement writes it; names that do not exist yet (created by an
/// earlier pending migration) are absent.
type Sizes = BTreeMap<String, TableSize>;

/// The sizes of every table the pending statements lock. An index's name counts as its table
/// (`DROP INDEX` names the index). A name the server cannot read is left out.
async fn table_sizes(
    client: &tokio_postgres::Client,
    pending: &[&Migration],
    analyses: &Analyses,
) -> Sizes {
    let mut sizes = Sizes::new();
    for m in pending {
        for analysis in analyses.of(m) {
            for lock in analysis.locks {
                if sizes.contains_key(&lock.table) {
                    continue;
                }
                let row = client
                    .query_opt(
                        "SELECT c.reltuples::float8, pg_total_relation_size(c.oid) FROM pg_class c \
                         WHERE c.oid = COALESCE( \
                           (SELECT indrelid FROM pg_index WHERE indexrelid = to_regclass($1)), \
                           to_regclass($1))",
                        &[&lock.table],
                    )
                    .await;
                if let Ok(Some(row)) = row {
                    let rows: f64 = row.get(0);
                    let bytes: i64 = row.get(1);
                    sizes.insert(
                        lock.table,
                        TableSize {
                            rows: (rows >= 0.0).then_some(rows),
                            bytes: u64::try_from(bytes).unwrap_or(0),
                        },
                    );
                }
            }
        }
    }
    sizes
}

/// The largest table the statement locks, with its name.
fn largest<'a>(analysis: &'a LockAnalysis, sizes: &Sizes) -> Option<(&'a str, TableSize)> {
    analysis
        .locks
        .iter()
        .filter_map(|l| sizes.get(&l.table).map(|s| (l.table.as_str(), *s)))
        .max_by_key(|(_, s)| s.bytes)
}

/// The statement blocks the application while it scans or rewrites a table over the limit.
fn large_table_work(analysis: &LockAnalysis, sizes: &Sizes, limit: u64) -> bool {
    analysis.blocks_during_table_work()
        && largest(analysis, sizes).is_some_and(|(_, size)| size.bytes > limit)
}

fn size_text(size: TableSize) -> String {
    let rows = match size.rows {
        Some(rows) if rows >= 1_000_000.0 => format!("~{:.1}M rows", rows / 1_000_000.0),
        Some(rows) if rows >= 1_000.0 => format!("~{:.0}k rows", rows / 1_000.0),
        Some(rows) => format!("~{rows:.0} rows"),
        None => "rows unknown (never analyzed)".to_owned(),
    };
    format!("{}, {rows}", crate::size::pretty(size.bytes))
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

/// The lock analysis of every migration's up statements, by version.
struct Analyses(BTreeMap<u64, Vec<LockAnalysis>>);

impl Analyses {
    fn of(&self, m: &Migration) -> Vec<LockAnalysis> {
        self.0.get(&m.version).cloned().unwrap_or_default()
    }
}

/// Analyses every up part in version order, applied ones included: a statement's locks on
/// other tables come from the foreign keys, views and triggers the statements before it
/// declared, wherever they are in the set.
fn analyse_set(migrations: &migrate_core::Migrations) -> Analyses {
    let mut schema = DeclaredSchema::new();
    Analyses(
        migrations
            .iter()
            .map(|m| (m.version, analyse(m, &mut schema)))
            .collect(),
    )
}

/// Analyses a migration's up statements in order. A table created earlier in the same
/// transaction is empty and invisible to other sessions, so locking or scanning it blocks
/// nobody; such statements are marked instead of flagged.
fn analyse(m: &Migration, schema: &mut DeclaredSchema) -> Vec<LockAnalysis> {
    let transactional = m.up.mode == migrate_core::TransactionMode::Transactional;
    let mut created: Vec<String> = Vec::new();
    m.up.statements
        .iter()
        .map(|s| {
            let mut analysis = schema.analyze_sql(&s.sql);
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

fn print_json(pending: &[&Migration], analyses: &Analyses, sizes: Option<&(Sizes, u64)>) {
    let items: Vec<_> = pending
        .iter()
        .map(|m| {
            let statements: Vec<_> = m
                .up
                .statements
                .iter()
                .zip(analyses.of(m))
                .map(|(s, analysis)| {
                    let tables: Vec<_> = sizes.map_or_else(Vec::new, |(sizes, _)| {
                        analysis
                            .locks
                            .iter()
                            .filter_map(|l| {
                                sizes.get(&l.table).map(|size| {
                                    json!({
                                        "table": l.table,
                                        "rows_estimate": size.rows,
                                        "total_bytes": size.bytes,
                                    })
                                })
                            })
                            .collect()
                    });
                    let large = sizes
                        .is_some_and(|(sizes, limit)| large_table_work(&analysis, sizes, *limit));
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
                        "table_sizes": tables,
                        "large_table_work": large,
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
    output::print_json(&json!({
        "database": sizes.is_some(),
        "large_table_bytes": sizes.map(|(_, limit)| limit),
        "pending": items,
    }));
}

fn print_human(
    context: &Context,
    pending: &[&Migration],
    analyses: &Analyses,
    sizes: Option<&(Sizes, u64)>,
) {
    let color = context.config.color;
    if sizes.is_none() {
        println!("no database configured: every migration is shown as pending\n");
    }
    if pending.is_empty() {
        println!("nothing to do: the database is up to date");
        return;
    }
    let mut large = 0;
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
        for (statement, analysis) in m.up.statements.iter().zip(analyses.of(m)) {
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
            let mut row = vec![
                Cell::new(format!("{}:{}", statement.line, statement.column)),
                Cell::new(output::one_line(&statement.sql, 56)),
                Cell::styled(lock, style),
                Cell::new(if tables.is_empty() {
                    "-".into()
                } else {
                    tables
                }),
                Cell::styled(work, work_style),
            ];
            let mut note = analysis.note.clone().unwrap_or_default();
            if let Some((sizes, limit)) = sizes {
                let size = largest(&analysis, sizes);
                row.push(Cell::new(size.map_or_else(
                    || {
                        if analysis.locks.is_empty() {
                            "-".to_owned()
                        } else {
                            "new".to_owned()
                        }
                    },
                    |(_, size)| size_text(size),
                )));
                if large_table_work(&analysis, sizes, *limit) {
                    large += 1;
                    let (table, size) = size.expect("a large table has a size");
                    let what = if analysis.work == TableWork::Rewrite {
                        "rewritten"
                    } else {
                        "scanned"
                    };
                    let flag = format!(
                        "LARGE: {} while {table} ({}) is {what}",
                        analysis.strongest().map_or("", |m| m.impact()),
                        crate::size::pretty(size.bytes)
                    );
                    note = if note.is_empty() {
                        flag
                    } else {
                        format!("{flag}; {note}")
                    };
                }
            }
            let note_style = if note.starts_with("LARGE") {
                Style::Red
            } else {
                Style::Plain
            };
            row.push(Cell::styled(note, note_style));
            rows.push(row);
        }
        let headers: &[&str] = if sizes.is_some() {
            &[
                "AT",
                "STATEMENT",
                "LOCK",
                "ON",
                "TABLE WORK",
                "SIZE",
                "NOTE",
            ]
        } else {
            &["AT", "STATEMENT", "LOCK", "ON", "TABLE WORK", "NOTE"]
        };
        print!("{}", output::table(headers, &rows, color));
    }
    if let Some((_, limit)) = sizes
        && large > 0
    {
        println!(
            "\n{}",
            output::paint(
                &format!(
                    "{large} statement(s) hold a lock that blocks the application while a table \
                     over {} is scanned or rewritten (--large-table)",
                    crate::size::pretty(*limit)
                ),
                Style::Red,
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
        let analysis = migrate_core::lock_analysis::analyze_sql(sql);
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
                .ends_with(
                    "; CREATE TABLE AS runs its query: reads t in full under ACCESS SHARE (blocks no reads or writes)"
                )
        );
    }
}
