//! What the runtime needs from a migration's statements, read once when the set is checked
//! and stored in the set: each statement's locked tables ([`Statement::locked_tables`]), a
//! backfill's batch pieces and what a contract removes ([`StatementAnalysis`]). The macro
//! does it at build time and emits the result, so applying an embedded set never parses SQL
//! and a service built without the `lint` feature links no SQL parser.

use std::borrow::Cow;

use crate::batch_plan;
use crate::lock_analysis;
use crate::migration::{Migration, Phase, Statement, StatementAnalysis};
use crate::queries;
use crate::source::{ParsedFile, SectionKind};

/// Fills the file's migration analysis, and each statement's locked tables from `locks`: the
/// linter's lock analysis of each of [`ParsedFile::statements`], in order (the statements
/// were parsed once for it; reading them again would double the macro's work). Without
/// `locks`, each statement's tables are read from its text.
pub fn analyse(file: &mut ParsedFile, locks: Option<Vec<Vec<String>>>) {
    let migration = &mut file.migration;
    match locks {
        Some(locks) if locks.len() == file.statements.len() => {
            let (mut up, mut down) = (0, 0);
            for (source, tables) in file.statements.iter().zip(locks) {
                let (section, index) = match source.section {
                    SectionKind::Up => (Some(&mut migration.up), &mut up),
                    SectionKind::Down => (migration.down.as_mut(), &mut down),
                };
                if let Some(statement) = section.and_then(|s| s.statements.to_mut().get_mut(*index))
                {
                    statement.locked_tables = tables
                        .into_iter()
                        .map(Cow::Owned)
                        .collect::<Vec<_>>()
                        .into();
                }
                *index += 1;
            }
        }
        _ => {
            let sections = std::iter::once(&mut migration.up).chain(migration.down.as_mut());
            for section in sections {
                for statement in section.statements.to_mut() {
                    statement.locked_tables = locked_tables(&statement.sql);
                }
            }
        }
    }
    migration.analysis = Some(analysis_of(migration));
}

/// The analysis of `migration`'s statements, without changing it.
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
    }
}

/// The tables `sql` locks (the static lock analysis), each once, in the analysis' order.
pub fn locked_tables(sql: &str) -> Cow<'static, [Cow<'static, str>]> {
    let mut tables: Vec<Cow<'static, str>> = Vec::new();
    for lock in lock_analysis::analyze_sql(sql).locks {
        if !tables.iter().any(|table| *table == lock.table) {
            tables.push(lock.table.into());
        }
    }
    tables.into()
}

/// The tables `statement` locks: its stored list, or (for a set built by hand, which has
/// none stored) read from its text.
pub fn statement_locks(statement: &Statement) -> Cow<'_, [Cow<'static, str>]> {
    if statement.locked_tables.is_empty() {
        locked_tables(&statement.sql)
    } else {
        Cow::Borrowed(&statement.locked_tables)
    }
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
