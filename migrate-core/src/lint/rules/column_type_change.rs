//! `column-type-change`

use std::collections::HashMap;

use sqlparser::ast::{AlterColumnOperation, AlterTableOperation, DataType, Statement};

use super::{existing_table_operations, quoted};
use crate::lint::{Check, Example, Finding, Level, Rule, RuleMemory, StatementContext};
use crate::source::SectionKind;
use crate::sql::{ident_key, rewrite_free_change, table_key};

/// The `column-type-change` rule: its documentation, examples and check.
/// `migrate explain column-type-change` prints it.
pub static RULE: Rule = Rule {
    id: "column-type-change",
    default_level: Level::Error,
    summary: "Do not change a column's type in place.",
    explanation: "ALTER COLUMN ... TYPE takes an ACCESS EXCLUSIVE lock and, for most type \
changes, rewrites the whole table and rebuilds its indexes while holding it: no reads, no \
writes, for as long as the rewrite takes. Only binary-coercible changes and relaxed limits skip the rewrite \
(varchar(n) to text or to a longer varchar, text to varchar, numeric(p, s) to a higher precision \
with the same scale, a higher timestamp/time precision, cidr to inet; never with USING): when the \
set declares the column's old type, the message says so. They still take the ACCESS EXCLUSIVE \
lock, and readers of the old type see the new one at once; allow those with a reason. It also breaks the running release \
if it reads the old type. The zero-downtime path is a new column, dual writes, a backfill, \
then a contract that drops the old column. A table created earlier in the same file is exempt.",
    rewrite: "ALTER TABLE <t> ADD COLUMN IF NOT EXISTS <col>_new <new type>;\n\
-- dual-write both columns, backfill <col>_new in a .backfill.sql file, switch reads,\n\
-- then drop <col> in a .contract.sql file",
    bad: &[
        Example {
            // No rewrite (the message says so), but readers see the new type at once.
            file_name: "0006_wider_amount.contract.sql",
            sql: "-- migrate:requires 3\n\
ALTER TABLE invoices ALTER COLUMN amount TYPE numeric(14, 2);\n\
-- file: 0003_invoices.expand.sql\n\
CREATE TABLE IF NOT EXISTS invoices (id bigint PRIMARY KEY, amount numeric(10, 2));",
        },
        Example {
            file_name: "0004_amount_numeric.contract.sql",
            sql: "-- migrate:requires 3\nALTER TABLE orders ALTER COLUMN amount TYPE numeric(12, 2);",
        },
        Example {
            file_name: "0005_id_bigint.contract.sql",
            sql: "-- migrate:requires 3\nALTER TABLE orders ALTER COLUMN id SET DATA TYPE bigint USING id::bigint;",
        },
    ],
    good: &[
        Example {
            file_name: "0004_amount_v2.expand.sql",
            sql: "ALTER TABLE orders ADD COLUMN IF NOT EXISTS amount_v2 numeric(12, 2);",
        },
        Example {
            file_name: "0001_orders.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, amount integer);\n\
ALTER TABLE orders ALTER COLUMN amount TYPE numeric(12, 2);",
        },
    ],
    check: Check::WithMemory(ColumnTypes::start),
};

/// The column types the set declared so far, in version order (up parts only: a down part
/// undoes its own file), to tell a change that rewrites from one that does not.
#[derive(Default)]
struct ColumnTypes {
    /// `(table, column)` → the column's type.
    types: HashMap<(String, String), DataType>,
}

impl ColumnTypes {
    fn start() -> Box<dyn RuleMemory> {
        Box::<ColumnTypes>::default()
    }
}

impl RuleMemory for ColumnTypes {
    fn check(&self, context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
        let Some((alter, operations)) = existing_table_operations(context) else {
            return;
        };
        let table = table_key(&alter.name);
        for operation in operations {
            let at = context.action_position(operation);
            let AlterTableOperation::AlterColumn {
                column_name,
                op:
                    AlterColumnOperation::SetDataType {
                        data_type, using, ..
                    },
            } = operation
            else {
                continue;
            };
            let old = self.types.get(&(table.clone(), ident_key(column_name)));
            let no_rewrite = old
                .filter(|_| using.is_none())
                .and_then(|old| rewrite_free_change(old, data_type).map(|why| (old, why)));
            let message = match no_rewrite {
                Some((old, why)) => format!(
                    "changing {column_name} from {old} to {data_type} does not rewrite {} ({why}; checked on PostgreSQL 15, the same since 9.2), \
but it still takes an ACCESS EXCLUSIVE lock, waiting behind every open transaction on the table, and readers of the old type \
(the running release, replicas' consumers, other services) see the new one at once: allow it with the reason if they all accept it",
                    quoted(&alter.name)
                ),
                None => format!(
                    "changing {column_name} to {data_type} holds an ACCESS EXCLUSIVE lock on {} and {}",
                    quoted(&alter.name),
                    if using.is_some() {
                        "rewrites the table and its indexes (a USING clause always does)"
                    } else {
                        "usually rewrites the table and its indexes"
                    }
                ),
            };
            findings.push(Finding::new(message).at(at));
        }
    }

    fn record(&mut self, context: &StatementContext<'_>) {
        if context.section != SectionKind::Up {
            return;
        }
        match context.ast {
            Some(Statement::CreateTable(create)) => {
                let table = table_key(&create.name);
                for column in &create.columns {
                    self.types.insert(
                        (table.clone(), ident_key(&column.name)),
                        column.data_type.clone(),
                    );
                }
            }
            Some(Statement::AlterTable(alter)) => {
                let table = table_key(&alter.name);
                for operation in &alter.operations {
                    match operation {
                        AlterTableOperation::AddColumn { column_def, .. } => {
                            self.types.insert(
                                (table.clone(), ident_key(&column_def.name)),
                                column_def.data_type.clone(),
                            );
                        }
                        AlterTableOperation::AlterColumn {
                            column_name,
                            op: AlterColumnOperation::SetDataType { data_type, .. },
                        } => {
                            self.types
                                .insert((table.clone(), ident_key(column_name)), data_type.clone());
                        }
                        AlterTableOperation::RenameColumn {
                            old_column_name,
                            new_column_name,
                        } => {
                            if let Some(data_type) = self
                                .types
                                .remove(&(table.clone(), ident_key(old_column_name)))
                            {
                                self.types
                                    .insert((table.clone(), ident_key(new_column_name)), data_type);
                            }
                        }
                        AlterTableOperation::DropColumn { column_names, .. } => {
                            for column in column_names {
                                self.types.remove(&(table.clone(), ident_key(column)));
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

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }

    /// The old type comes from the set; without it, or with USING, no claim is made.
    #[test]
    fn a_change_known_not_to_rewrite_says_so() {
        let message = |change: &str| -> String {
            let set = format!(
                "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, name varchar(80));\n\
-- file: 0002_b.contract.sql\n-- migrate:requires 1\n{change};"
            );
            crate::lint::testing::lint_example("0001_a.expand.sql", &set)
                .into_iter()
                .find(|d| d.code == super::RULE.id)
                .map(|d| d.message)
                .unwrap_or_default()
        };
        let widened = message("ALTER TABLE users ALTER COLUMN name TYPE varchar(200)");
        assert!(
            widened.contains("from VARCHAR(80) to VARCHAR(200) does not rewrite"),
            "{widened}"
        );
        assert!(widened.contains("ACCESS EXCLUSIVE"), "{widened}");
        let narrowed = message("ALTER TABLE users ALTER COLUMN name TYPE varchar(20)");
        assert!(narrowed.contains("usually rewrites"), "{narrowed}");
        let using = message("ALTER TABLE users ALTER COLUMN name TYPE text USING name");
        assert!(using.contains("a USING clause always does"), "{using}");
        let unknown = message("ALTER TABLE users ALTER COLUMN email TYPE text");
        assert!(unknown.contains("usually rewrites"), "{unknown}");
    }
}
