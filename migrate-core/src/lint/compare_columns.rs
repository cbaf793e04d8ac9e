//! `-- migrate:compare` against the set's own tables: a column the compare reads from a table
//! the set creates, and that no statement of the set ever gives that table, fails every
//! `verify --compare` with `column ... does not exist`; it is found at build time instead.
//!
//! Only tables whose columns the set fully declares are judged (a plain `CREATE TABLE` with
//! its column list, then `ADD COLUMN` and `RENAME COLUMN`); a table the set does not create
//! existed before it, with columns no file shows, and is never judged.

use std::collections::{HashMap, HashSet};

use sqlparser::ast::{AlterTableOperation, Statement};

use crate::diagnostic::{Diagnostic, codes};
use crate::migration::display_identifier;
use crate::source::{ParsedFile, SectionKind, parse_compare};
use crate::sql::{ident_key, parse_statement_of, table_key};

/// The columns the set gives a table it creates, or `None` when its columns cannot all be
/// known (`CREATE TABLE ... AS`, `LIKE`, `INHERITS`, `PARTITION OF`).
type DeclaredColumns = HashMap<String, Option<HashSet<String>>>;

/// A diagnostic at each compare directive naming a column a table created by the set never
/// has. Parses only the `CREATE TABLE` / `ALTER TABLE` statements of sets that declare a
/// compare.
pub(super) fn check(files: &[&ParsedFile]) -> Vec<Diagnostic> {
    let compares: Vec<&ParsedFile> = files
        .iter()
        .copied()
        .filter(|file| file.migration.compare.is_some())
        .collect();
    if compares.is_empty() {
        return Vec::new();
    }
    let declared = declared_columns(files);
    let mut diagnostics = Vec::new();
    for file in compares {
        let Some(Ok(spec)) = file.migration.compare.as_deref().map(parse_compare) else {
            continue;
        };
        let mut reads = vec![(&spec.target, spec.key.clone())];
        reads.extend(spec.columns.iter().map(|c| (&spec.target, c.clone())));
        reads.push((&spec.source, spec.key.clone()));
        // With map= the source side is expressions, which PostgreSQL checks.
        if spec.map.is_none() {
            reads.extend(spec.columns.iter().map(|c| (&spec.source, c.clone())));
        }
        let mut reported = HashSet::new();
        for (table, column) in reads {
            let Some(Some(columns)) = declared.get(&table.table) else {
                continue;
            };
            if columns.contains(&column) || !reported.insert((table.table.clone(), column.clone()))
            {
                continue;
            }
            let (line, column_at) = directive_position(file);
            diagnostics.push(
                Diagnostic::error(
                    &file.display_path,
                    line,
                    column_at,
                    codes::BAD_DIRECTIVE,
                    format!(
                        "`-- migrate:compare` reads column {} of {}, which the set creates without it: `verify --compare` would fail with \"column does not exist\"",
                        display_identifier(&column),
                        display_identifier(&table.table),
                    ),
                )
                .with_help(
                    "name a column the table has (names follow SQL: unquoted ones fold to lower case), or add it in an expand migration",
                ),
            );
        }
    }
    diagnostics
}

/// Where the file's `-- migrate:compare` line is.
fn directive_position(file: &ParsedFile) -> (u32, u32) {
    file.source
        .lines()
        .enumerate()
        .find_map(|(index, line)| {
            let start = line.find("-- migrate:compare")?;
            line[..start]
                .trim()
                .is_empty()
                .then(|| (index as u32 + 1, line[..start].chars().count() as u32 + 1))
        })
        .unwrap_or((1, 1))
}

/// The tables the set's up parts create, with the columns the set gives them.
fn declared_columns(files: &[&ParsedFile]) -> DeclaredColumns {
    let mut declared = DeclaredColumns::new();
    for file in files {
        for statement in file
            .statements
            .iter()
            .filter(|s| s.section == SectionKind::Up)
        {
            let tokens = file.tokens(statement);
            let words = crate::classify::Words::new(&file.source, &tokens);
            if !words.starts_with(&["CREATE"]) && !words.starts_with(&["ALTER", "TABLE"]) {
                continue;
            }
            let Ok(ast) = parse_statement_of(file.text(statement), &words) else {
                continue;
            };
            match ast {
                Statement::CreateTable(create) => {
                    let complete = create.query.is_none()
                        && create.like.is_none()
                        && create.clone.is_none()
                        && create.inherits.is_none()
                        && create.partition_of.is_none();
                    let columns = complete
                        .then(|| create.columns.iter().map(|c| ident_key(&c.name)).collect());
                    // Tables of one name in two schemas: the columns of either count (a false
                    // "missing" would block the build; schemas are not tracked).
                    let merged = match (declared.remove(&table_key(&create.name)), columns) {
                        (Some(Some(mut known)), Some(columns)) => {
                            known.extend(columns);
                            Some(known)
                        }
                        (Some(None), _) | (_, None) => None,
                        (None, Some(columns)) => Some(columns),
                    };
                    declared.insert(table_key(&create.name), merged);
                }
                Statement::AlterTable(alter) => {
                    let Some(Some(columns)) = declared.get_mut(&table_key(&alter.name)) else {
                        continue;
                    };
                    for operation in &alter.operations {
                        match operation {
                            AlterTableOperation::AddColumn { column_def, .. } => {
                                columns.insert(ident_key(&column_def.name));
                            }
                            AlterTableOperation::RenameColumn {
                                new_column_name, ..
                            } => {
                                columns.insert(ident_key(new_column_name));
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }
    declared
}

#[cfg(test)]
mod tests {
    use crate::source::load_files;
    use crate::source::testing::{any_rule, file};

    fn compare_problems(files: &[(&str, &str)]) -> Vec<(String, u32, String)> {
        let sources: Vec<_> = files.iter().map(|(n, t)| file(n, t)).collect();
        let set = load_files(&sources, &any_rule);
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        crate::lint::lint_files(&set.files, &crate::lint::Config::default())
            .into_iter()
            .filter(|d| d.code == "bad-directive")
            .map(|d| (d.file, d.line, d.message))
            .collect()
    }

    const EXPAND: &str = "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text);\n\
CREATE TABLE IF NOT EXISTS accounts (id bigint PRIMARY KEY, \"Email\" text);\n\
ALTER TABLE accounts ADD COLUMN IF NOT EXISTS plan text;\n";

    fn backfill(compare: &str) -> String {
        format!(
            "-- migrate:backfill table=accounts key=id\n\
-- migrate:compare {compare}\n\
UPDATE accounts SET plan = 'free' WHERE plan IS NULL;\n"
        )
    }

    #[test]
    fn a_column_a_created_table_never_has_is_reported_at_the_directive() {
        let good = backfill("source=users target=accounts key=id columns=\"Email\" map=email");
        assert_eq!(
            compare_problems(&[
                ("0001_t.expand.sql", EXPAND),
                ("0002_b.backfill.sql", &good)
            ]),
            []
        );
        // `Email` unquoted folds to `email`, which accounts does not have; `vv` is nowhere.
        let bad = backfill("source=users target=accounts key=id columns=Email,vv map=email, 1");
        let found =
            compare_problems(&[("0001_t.expand.sql", EXPAND), ("0002_b.backfill.sql", &bad)]);
        assert_eq!(found.len(), 2, "{found:?}");
        for (file, line, message) in &found {
            assert_eq!(
                (file.as_str(), *line),
                ("migrations/0002_b.backfill.sql", 2)
            );
            assert!(message.contains("of accounts"), "{message}");
        }
        assert!(found[0].2.contains("column email "), "{found:?}");
        assert!(found[1].2.contains("column vv "), "{found:?}");
        // Without map= the source is read by the same names.
        let bad = backfill("source=users target=accounts key=id columns=plan");
        let found =
            compare_problems(&[("0001_t.expand.sql", EXPAND), ("0002_b.backfill.sql", &bad)]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].2.contains("column plan of users"), "{found:?}");
    }

    #[test]
    fn tables_the_set_does_not_create_are_not_judged() {
        let bad = backfill("source=legacy target=modern key=id columns=anything");
        assert_eq!(
            compare_problems(&[("0001_t.expand.sql", EXPAND), ("0002_b.backfill.sql", &bad)]),
            []
        );
        let copied = "CREATE TABLE IF NOT EXISTS modern AS SELECT * FROM legacy;\n";
        assert_eq!(
            compare_problems(&[("0001_t.expand.sql", copied), ("0002_b.backfill.sql", &bad)]),
            []
        );
    }
}
