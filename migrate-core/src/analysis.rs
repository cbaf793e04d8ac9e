//! What the runtime needs from a migration's statements, read once when the set is checked
//! and stored in the set ([`StatementAnalysis`]): a backfill's batch pieces, what a contract
//! removes, the tables the statements lock. The macro does it at build time and emits the
//! result, so applying an embedded set never parses SQL and a service built without the
//! `lint` feature links no SQL parser.

use std::borrow::Cow;

use crate::batch_plan;
use crate::lock_analysis;
use crate::migration::{Migration, Phase, StatementAnalysis};
use crate::queries;
use crate::source::ParsedFile;

/// Fills the file's migration analysis. `locks` is the linter's lock analysis of each of
/// [`ParsedFile::statements`] (the statements were parsed once for it; reading them again
/// would double the macro's work); without it the tables are read from the statements.
pub fn analyse(file: &mut ParsedFile, locks: Option<Vec<Vec<String>>>) {
    let migration = &mut file.migration;
    let tables = match locks {
        Some(locks) => distinct(locks.into_iter().flatten()),
        None => locked_tables(migration),
    };
    migration.analysis = Some(StatementAnalysis {
        locked_tables: tables.into_iter().map(Cow::Owned).collect(),
        ..analysis_of(migration)
    });
}

/// The analysis of `migration`'s statements, without changing it: the batch pieces and what
/// a contract removes (the locked tables are left empty: see [`locked_tables`]).
pub fn analysis_of(migration: &Migration) -> StatementAnalysis {
    let batches = match &migration.backfill {
        Some(spec) => migration
            .up
            .statements
            .iter()
            .map(|statement| batch_plan::source_of(&statement.sql, spec))
            .collect(),
        None => Vec::new(),
    };
    // Only a contract's gate asks what it removes.
    let removes = match migration.phase {
        Phase::Contract => queries::removed_by(migration),
        Phase::Expand | Phase::Backfill => Vec::new(),
    };
    StatementAnalysis {
        batches: batches.into(),
        removes: removes.into(),
        locked_tables: Cow::Borrowed(&[]),
    }
}

/// The tables the migration's statements (up and down) lock, each once, from the static lock
/// analysis of each statement on its own.
pub fn locked_tables(migration: &Migration) -> Vec<String> {
    let sections = std::iter::once(&migration.up).chain(&migration.down);
    distinct(
        sections
            .flat_map(|section| section.statements.iter())
            .flat_map(|statement| lock_analysis::analyze_sql(&statement.sql).locks)
            .map(|lock| lock.table),
    )
}

/// Each of `tables` once, in order of first appearance.
fn distinct(tables: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut seen: Vec<String> = Vec::new();
    for table in tables {
        if !seen.contains(&table) {
            seen.push(table);
        }
    }
    seen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_statement_that_cannot_be_batched_keeps_its_reason() {
        let spec = crate::migration::BackfillSpec {
            schema: None,
            table: "users".into(),
            key: "id".into(),
            pace: crate::migration::BackfillPace::Adaptive { target_ms: None },
        };
        let refused = batch_plan::source_of("UPDATE orders SET a = 1 WHERE a IS NULL", &spec);
        let crate::migration::BatchSource::Refused(problem) = &refused else {
            panic!("{refused:?}");
        };
        assert!(problem.contains("names table=users"), "{problem}");
        assert_eq!(
            batch_plan::plan_source(&refused, &spec, "bigint"),
            Err(problem.as_ref())
        );
    }
}
