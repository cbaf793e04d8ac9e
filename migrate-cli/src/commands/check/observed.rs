//! The observation pass of `migrate check`: every up part applied on a database of its own
//! while `runtime::observe` records the locks, rewrites and scans PostgreSQL really did, then
//! shown beside `plan`'s prediction with every disagreement flagged.

use migrate_core::Migration;
use migrate_core::lock_analysis::{DeclaredSchema, TableWork};
use migrate_core::runtime::observe::{
    LockObservation, ObservedLock, SectionEffects, StatementEffects, observe_section_in,
};
use serde_json::json;
use tokio_postgres::Client;

use crate::output::{self, Cell, Style};

/// What the pass saw of one migration.
pub(super) struct Observed {
    pub version: u64,
    pub effects: SectionEffects,
}

impl Observed {
    pub fn disagreements(&self) -> usize {
        self.effects
            .statements
            .iter()
            .map(|s| s.disagreements.len())
            .sum()
    }
}

/// Applies the up parts of `migrations` in order, observing each statement. Stops after a
/// migration that failed: what follows it would run on a schema it does not expect.
pub(super) async fn observe_all(
    client: &Client,
    observer: &Client,
    migrations: &[&Migration],
    progress: &indicatif::ProgressBar,
) -> anyhow::Result<Vec<Observed>> {
    let mut observed = Vec::new();
    // The prediction of each statement knows the foreign keys, views and triggers the
    // statements before it declared.
    let mut schema = DeclaredSchema::new();
    for m in migrations {
        progress.set_message(format!("observing {}", m.file_name));
        let effects = observe_section_in(client, observer, &m.up, &mut schema).await?;
        let failed = effects.error.is_some();
        observed.push(Observed {
            version: m.version,
            effects,
        });
        progress.inc(1);
        if failed {
            break;
        }
    }
    Ok(observed)
}

/// The JSON of one migration's observation (`check --format json`, `migrations[].observed`).
pub(super) fn json_of(observed: Option<&Observed>, m: &Migration, major: u32) -> serde_json::Value {
    match observed {
        None => serde_json::Value::Null,
        Some(observed) => json!({
            "batched": m.backfill.is_some(),
            "statements": observed.effects.statements,
            "error": observed.effects.error.clone().map(|error| super::with_hint(error, major)),
        }),
    }
}

/// The strongest lock per relation, as `relation MODE` items; indexes shown only when no
/// table is locked (their locks follow their table's).
fn locks_text(locks: &[ObservedLock]) -> String {
    let mut strongest: Vec<(&str, migrate_core::lock_analysis::LockMode, bool)> = Vec::new();
    for lock in locks {
        match strongest.iter_mut().find(|(r, _, _)| *r == lock.relation) {
            Some(entry) => entry.1 = entry.1.max(lock.mode),
            None => strongest.push((&lock.relation, lock.mode, lock.kind.holds_rows())),
        }
    }
    let tables: Vec<String> = strongest
        .iter()
        .filter(|(_, _, table)| *table)
        .map(|(r, m, _)| format!("{m} {r}"))
        .collect();
    if !tables.is_empty() {
        return tables.join(", ");
    }
    let all: Vec<String> = strongest
        .iter()
        .map(|(r, m, _)| format!("{m} {r}"))
        .collect();
    if all.is_empty() {
        "-".to_owned()
    } else {
        all.join(", ")
    }
}

fn work_text(work: TableWork) -> &'static str {
    match work {
        TableWork::None => "",
        TableWork::Scan => "; scan",
        TableWork::Rewrite => "; rewrite",
    }
}

fn predicted_text(statement: &StatementEffects) -> String {
    let predicted = &statement.predicted;
    if !predicted.known {
        return "unknown".to_owned();
    }
    let locks: Vec<String> = predicted
        .locks
        .iter()
        .map(|l| format!("{} {}", l.mode, l.table))
        .collect();
    let locks = if locks.is_empty() {
        "-".to_owned()
    } else {
        locks.join(", ")
    };
    format!("{locks}{}", work_text(predicted.work))
}

fn observed_text(statement: &StatementEffects) -> String {
    let locks = match statement.observed_by {
        LockObservation::NotSeen => "locks not seen".to_owned(),
        _ if statement.locks.is_empty() && !statement.already_held.is_empty() => {
            format!("held already: {}", locks_text(&statement.already_held))
        }
        _ => locks_text(&statement.locks),
    };
    format!("{locks}{}", work_text(statement.work))
}

/// Prints the observation of each migration beside the prediction; returns the number of
/// disagreements.
pub(super) fn print_human(
    migrations: &[&Migration],
    observed: &[Observed],
    color: bool,
    limit_note: usize,
    major: u32,
) -> usize {
    let mut disagreements = 0;
    println!(
        "{}",
        output::paint(
            "what PostgreSQL did (locks granted, files rewritten, full scans) beside plan:",
            Style::Bold,
            color
        )
    );
    for o in observed {
        let Some(m) = migrations.iter().find(|m| m.version == o.version) else {
            continue;
        };
        println!("{}", m.file_name);
        let mut rows = Vec::new();
        for statement in &o.effects.statements {
            let note = if !statement.disagreements.is_empty() {
                disagreements += statement.disagreements.len();
                let text: Vec<String> = statement
                    .disagreements
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                Cell::styled(format!("DISAGREES: {}", text.join("; ")), Style::Red)
            } else if let Some(reason) = &statement.not_compared {
                Cell::new(output::one_line(reason, limit_note))
            } else if statement.observed_by == LockObservation::NotSeen {
                Cell::new("finished without waiting: its locks ended unseen")
            } else {
                Cell::styled("agrees", Style::Green)
            };
            rows.push(vec![
                Cell::new(format!("{}:{}", statement.line, statement.column)),
                Cell::new(output::one_line(&statement.sql, 48)),
                Cell::new(predicted_text(statement)),
                Cell::new(observed_text(statement)),
                note,
            ]);
        }
        print!(
            "{}",
            output::table(&["AT", "STATEMENT", "PLAN", "OBSERVED", ""], &rows, color)
        );
        if m.backfill.is_some() {
            println!(
                "      (a backfill: observed as one statement; the runtime runs it in keyed batches)"
            );
        }
        if let Some(error) = &o.effects.error {
            println!(
                "      {} {}",
                output::paint("failed:", Style::Red, color),
                super::with_hint(error.clone(), major)
            );
        }
    }
    disagreements
}
