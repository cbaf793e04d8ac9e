//! `set-not-null-scan`

use std::collections::{HashMap, HashSet};

use sqlparser::ast::{
    AlterColumnOperation, AlterTableOperation, ColumnOption, Expr, Statement, TableConstraint,
};

use super::{existing_table_operations, quoted};
use crate::lint::{Check, Example, Finding, Level, Rule, RuleMemory, StatementContext};
use crate::migration::display_identifier;
use crate::sql::{ActionKind, ident_key, table_key, table_key_of};

/// The `set-not-null-scan` rule: its documentation, examples and check.
/// `migrate explain set-not-null-scan` prints it.
pub static RULE: Rule = Rule {
    id: "set-not-null-scan",
    default_level: Level::Error,
    summary: "SET NOT NULL only after a validated CHECK (col IS NOT NULL).",
    explanation: "ALTER COLUMN ... SET NOT NULL scans the whole table under an ACCESS EXCLUSIVE \
lock to prove there is no NULL: nothing can read or write the table meanwhile. Since \
PostgreSQL 12 the scan is skipped when a validated CHECK (col IS NOT NULL) constraint already \
proves it. So: add the CHECK NOT VALID (instant), VALIDATE it in a later migration (scans \
without blocking writes), then SET NOT NULL (instant) and drop the CHECK. The rule looks for the \
validated CHECK in earlier statements of the whole set, in version order. A table created \
earlier in the same file is exempt.",
    rewrite: "ALTER TABLE <t> ADD CONSTRAINT <t>_<col>_not_null CHECK (<col> IS NOT NULL) NOT VALID;\n\
-- later migration:\nALTER TABLE <t> VALIDATE CONSTRAINT <t>_<col>_not_null;\n\
-- then:\nALTER TABLE <t> ALTER COLUMN <col> SET NOT NULL;\nALTER TABLE <t> DROP CONSTRAINT IF EXISTS <t>_<col>_not_null;",
    bad: &[
        Example {
            file_name: "0006_email_required.contract.sql",
            sql: "-- migrate:requires 5\nALTER TABLE users ALTER COLUMN email SET NOT NULL;",
        },
        Example {
            // Beside an action sqlparser cannot parse, the SET NOT NULL is still read.
            file_name: "0007_name_required.contract.sql",
            sql: "-- migrate:requires 5\n\
ALTER TABLE users ALTER COLUMN name SET NOT NULL, ALTER CONSTRAINT users_org_fk NOT DEFERRABLE;",
        },
        Example {
            // PostgreSQL 18's named NOT NULL constraint scans like SET NOT NULL.
            file_name: "0008_email_constraint.contract.sql",
            sql: "-- migrate:requires 5\n\
ALTER TABLE users ADD CONSTRAINT users_email_not_null NOT NULL email;",
        },
    ],
    good: &[
        Example {
            file_name: "0005_email_required.expand.sql",
            // Three migrations: the CHECK is added NOT VALID (instant), validated in its own
            // transaction (no lock held from the ADD), then SET NOT NULL skips its scan.
            sql: "ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;\n\
-- file: 0006_validate_email_check.expand.sql\n\
ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;\n\
-- file: 0007_email_required.contract.sql\n\
-- migrate:requires 5\n\
ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n\
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_not_null;",
        },
        Example {
            file_name: "0001_users.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text);\n\
ALTER TABLE users ALTER COLUMN email SET NOT NULL;",
        },
        Example {
            // PostgreSQL 18: the NOT NULL constraint added NOT VALID, validated in its own
            // migration (SHARE UPDATE EXCLUSIVE: reads and writes go on).
            file_name: "0005_email_required.expand.sql",
            sql: "ALTER TABLE users ADD CONSTRAINT users_email_not_null NOT NULL email NOT VALID;\n\
-- file: 0006_validate_email_not_null.expand.sql\n\
ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;",
        },
    ],
    check: Check::WithMemory(NotNullChecks::start),
};

/// The `CHECK (column IS NOT NULL)` constraints of the set so far, in version order.
#[derive(Default)]
struct NotNullChecks {
    /// `(table, constraint)` → column of a `CHECK (column IS NOT NULL) NOT VALID` not yet
    /// validated.
    pending: HashMap<(String, String), String>,
    /// `(table, column)` pairs with a validated `CHECK (column IS NOT NULL)`.
    validated: HashSet<(String, String)>,
}

impl NotNullChecks {
    fn start() -> Box<dyn RuleMemory> {
        Box::<NotNullChecks>::default()
    }

    /// True when a validated `CHECK (column IS NOT NULL)` exists on `table`, which lets
    /// PostgreSQL 12+ skip the full-table scan of `SET NOT NULL`.
    /// <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-SET-DROP-NOT-NULL>
    fn has_validated_not_null_check(&self, table: &str, column: &str) -> bool {
        self.validated
            .contains(&(table.to_owned(), column.to_owned()))
    }
}

/// The checks span the whole set (a CHECK validated in an earlier file counts), so nothing is
/// forgotten when a part starts.
impl RuleMemory for NotNullChecks {
    fn check(&self, context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
        not_null_constraints(context, findings);
        let Some((alter, operations)) = existing_table_operations(context) else {
            return;
        };
        let table = table_key(&alter.name);
        for operation in operations {
            let at = context.action_position(operation);
            let AlterTableOperation::AlterColumn {
                column_name,
                op: AlterColumnOperation::SetNotNull,
            } = operation
            else {
                continue;
            };
            if self.has_validated_not_null_check(&table, &ident_key(column_name)) {
                continue;
            }
            findings.push(
                Finding::new(format!(
                    "SET NOT NULL on {column_name} scans all of {} under an ACCESS EXCLUSIVE lock: reads and writes wait for the whole scan",
                    quoted(&alter.name)
                ))
                .at(at)
                .help(format!(
                    "first: ALTER TABLE {t} ADD CONSTRAINT {check} CHECK ({c} IS NOT NULL) NOT VALID;\n\
    then, in a later migration: ALTER TABLE {t} VALIDATE CONSTRAINT {check};\n\
    then SET NOT NULL is instant",
                    t = alter.name,
                    c = column_name,
                    check = display_identifier(&format!("{table}_{}_not_null", ident_key(column_name))),
                )),
            );
        }
    }

    fn record(&mut self, context: &StatementContext<'_>) {
        match context.ast {
            Some(Statement::CreateTable(create)) => {
                let table = table_key(&create.name);
                for constraint in &create.constraints {
                    if let TableConstraint::Check(check) = constraint
                        && let Some(column) = not_null_check_column(&check.expr)
                    {
                        self.validated.insert((table.clone(), column));
                    }
                }
                for column in &create.columns {
                    for option in &column.options {
                        if let ColumnOption::Check(check) = &option.option
                            && let Some(checked) = not_null_check_column(&check.expr)
                        {
                            self.validated.insert((table.clone(), checked));
                        }
                    }
                }
            }
            Some(Statement::AlterTable(alter)) => {
                let table = table_key(&alter.name);
                for operation in &alter.operations {
                    match operation {
                        AlterTableOperation::AddConstraint {
                            constraint: TableConstraint::Check(check),
                            not_valid,
                        } => {
                            let Some(column) = not_null_check_column(&check.expr) else {
                                continue;
                            };
                            match (&check.name, not_valid) {
                                (Some(name), true) => {
                                    self.pending
                                        .insert((table.clone(), ident_key(name)), column);
                                }
                                (_, false) => {
                                    self.validated.insert((table.clone(), column));
                                }
                                (None, true) => {}
                            }
                        }
                        AlterTableOperation::ValidateConstraint { name } => {
                            if let Some(column) =
                                self.pending.remove(&(table.clone(), ident_key(name)))
                            {
                                self.validated.insert((table.clone(), column));
                            }
                        }
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
}

/// PostgreSQL 18's `ADD [CONSTRAINT name] NOT NULL column` (read from keywords: sqlparser 0.64
/// lacks it) scans like SET NOT NULL unless `NOT VALID`. Whether a validated CHECK spares its
/// scan as it spares SET NOT NULL's is not documented, so it is not assumed: the NOT VALID
/// form, validated in a later migration, is the rewrite.
fn not_null_constraints(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let Some(split) = context.split_alter else {
        return;
    };
    if context
        .created_in_section
        .contains(&table_key_of(&split.table))
    {
        return;
    }
    for action in &split.unparsed {
        let ActionKind::AddNotNull {
            column,
            not_valid: false,
        } = &action.kind
        else {
            continue;
        };
        findings.push(
            Finding::new(format!(
                "`{}` scans all of {} under an ACCESS EXCLUSIVE lock to prove {} has no NULL: reads and writes wait for the whole scan",
                action.text,
                quoted(&split.table),
                display_identifier(column)
            ))
            .at(context.unparsed_action_position(action))
            .help(format!(
                "on PostgreSQL 18: ALTER TABLE {t} ADD CONSTRAINT {check} NOT NULL {shown} NOT VALID;\n\
    then, in a later migration: ALTER TABLE {t} VALIDATE CONSTRAINT {check}; (scans without blocking reads or writes)",
                t = split.table,
                check = display_identifier(&format!("{}_{column}_not_null", table_key_of(&split.table))),
                shown = display_identifier(column),
            )),
        );
    }
}

/// The column of `column IS NOT NULL`, looking through parentheses.
fn not_null_check_column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Nested(inner) => not_null_check_column(inner),
        Expr::IsNotNull(inner) => match inner.as_ref() {
            Expr::Identifier(ident) => Some(ident_key(ident)),
            Expr::CompoundIdentifier(parts) => parts.last().map(ident_key),
            Expr::Nested(nested) => not_null_check_column(&Expr::IsNotNull(nested.clone())),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::lint_example;

    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }

    #[test]
    fn a_check_validated_in_an_earlier_file_counts() {
        let set = "ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
-- file: 0002_b.expand.sql\n\
ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n\
-- file: 0003_c.contract.sql\n\
-- migrate:requires 1\n\
ALTER TABLE users ALTER COLUMN email SET NOT NULL;";
        assert_eq!(lint_example("0001_a.expand.sql", set), vec![]);
    }
    #[test]
    fn an_unvalidated_check_or_another_column_does_not_count() {
        let sql = "-- migrate:no-transaction\n\
ALTER TABLE users ADD CONSTRAINT users_email_nn CHECK (email IS NOT NULL) NOT VALID;\n\
ALTER TABLE users ALTER COLUMN email SET NOT NULL;\n\
ALTER TABLE users VALIDATE CONSTRAINT users_email_nn;\n\
ALTER TABLE users ALTER COLUMN name SET NOT NULL;";
        let lines: Vec<u32> = lint_example("0002_x.expand.sql", sql)
            .iter()
            .filter(|d| d.code == "set-not-null-scan")
            .map(|d| d.line)
            .collect();
        assert_eq!(lines, [3, 5]);
    }
}
