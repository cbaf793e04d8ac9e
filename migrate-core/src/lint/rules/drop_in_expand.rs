//! `drop-in-expand`

use sqlparser::ast::{AlterColumnOperation, AlterTable, AlterTableOperation, Statement};

use super::{existing_table_operations, quoted};
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};
use crate::migration::Phase;

/// The `drop-in-expand` rule: its documentation, examples and check.
/// `migrate explain drop-in-expand` prints it.
pub static RULE: Rule = Rule {
    id: "drop-in-expand",
    default_level: Level::Error,
    summary: "An expand migration only adds: no DROP, TRUNCATE, RENAME or column type change.",
    explanation: "Expand migrations are deployed while the previous release of the application is \
still running, and must keep it working. Dropping, truncating or renaming anything it uses, or \
changing a column's type, breaks the old code the moment the migration commits (and a rename or \
type change takes an ACCESS EXCLUSIVE lock). Removing things belongs in a contract migration, \
which runs only after the new code is everywhere and the gates pass. Down parts are linted as \
contracts, so they may drop what their up part added.",
    rewrite: "Move the DROP/RENAME into a `<version>_<name>.contract.sql` with \
`-- migrate:requires <expand version>`; for a rename, add the new column, dual-write, backfill, \
then drop the old one in the contract.",
    bad: &[
        Example {
            file_name: "0002_cleanup.expand.sql",
            sql: "ALTER TABLE users DROP COLUMN IF EXISTS legacy_name;",
        },
        Example {
            file_name: "0003_rename.expand.sql",
            sql: "ALTER TABLE users RENAME COLUMN name TO full_name;",
        },
        Example {
            file_name: "0004_drop.expand.sql",
            sql: "DROP TABLE IF EXISTS old_sessions;",
        },
        Example {
            file_name: "0005_truncate.expand.sql",
            sql: "TRUNCATE audit_log;",
        },
        Example {
            file_name: "0006_seq.expand.sql",
            sql: "ALTER SEQUENCE invoice_seq RENAME TO invoice_numbers;",
        },
    ],
    good: &[
        Example {
            file_name: "0002_full_name.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS full_name text;\n\
-- migrate:down\nALTER TABLE users DROP COLUMN IF EXISTS full_name;",
        },
        Example {
            file_name: "0007_cleanup.contract.sql",
            sql: "-- migrate:requires 2\nALTER TABLE users DROP COLUMN IF EXISTS name;\n\
DROP TABLE IF EXISTS old_sessions;",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    if context.effective_phase() != Phase::Expand {
        return;
    }
    let words = &context.words;
    let problem = if words.starts_with(&["DROP"]) {
        Some(format!(
            "DROP {} in an expand migration breaks the running release that still uses it",
            words.keyword(1).unwrap_or_default()
        ))
    } else if words.starts_with(&["TRUNCATE"]) {
        Some(
            "TRUNCATE in an expand migration deletes data the running release still reads"
                .to_owned(),
        )
    } else if let Some((alter, operations)) = existing_table_operations(context) {
        // A table created earlier in this file is unknown to the running release.
        let found = operations.iter().find_map(|operation| {
            drop_action(alter, operation)
                .map(|problem| (problem, context.action_position(operation)))
        });
        if let Some((problem, at)) = found {
            findings.push(Finding::at_action(at, problem));
        }
        return;
    } else if matches!(context.ast, Some(Statement::AlterTable(_))) {
        None
    } else if words.starts_with(&["ALTER"]) && words.find_top_level("RENAME").is_some() {
        Some(format!(
            "ALTER {} ... RENAME breaks the running release that uses the old name",
            words.keyword(1).unwrap_or_default()
        ))
    } else {
        None
    };
    if let Some(problem) = problem {
        findings.push(Finding::new(problem));
    }
}

/// What dropping or renaming `operation` of `alter` breaks, when it does.
fn drop_action(alter: &AlterTable, operation: &AlterTableOperation) -> Option<String> {
    match operation {
            AlterTableOperation::DropColumn { column_names, .. } => Some(format!(
                "dropping column {} of {} breaks the running release that still reads it",
                column_names.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "),
                quoted(&alter.name)
            )),
            AlterTableOperation::DropConstraint { name, .. } => {
                Some(format!("dropping constraint {name} in an expand migration removes a guarantee the running release relies on"))
            }
            AlterTableOperation::DropPrimaryKey { .. } | AlterTableOperation::DropForeignKey { .. } => {
                Some("dropping a key in an expand migration removes a guarantee the running release relies on".to_owned())
            }
            AlterTableOperation::RenameColumn { old_column_name, new_column_name } => Some(format!(
                "renaming {old_column_name} to {new_column_name} breaks every query of the running release that names {old_column_name}"
            )),
            AlterTableOperation::RenameTable { .. } => {
                Some(format!("renaming table {} breaks every query of the running release", quoted(&alter.name)))
            }
            AlterTableOperation::RenameConstraint { .. } => Some("renaming a constraint in an expand migration".to_owned()),
            AlterTableOperation::AlterColumn { column_name, op: AlterColumnOperation::SetDataType { .. } } => Some(format!(
                "changing the type of {column_name} in an expand migration breaks the running release and rewrites the table"
            )),
            _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
