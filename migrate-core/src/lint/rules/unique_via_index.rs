//! `unique-via-index`

use sqlparser::ast::{AlterTableOperation, ColumnOption, TableConstraint};

use super::{existing_table_operations, quoted};
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `unique-via-index` rule: its documentation, examples and check.
/// `migrate explain unique-via-index` prints it.
pub static RULE: Rule = Rule {
    id: "unique-via-index",
    default_level: Level::Error,
    summary: "Add UNIQUE and PRIMARY KEY constraints USING INDEX built CONCURRENTLY first.",
    explanation: "ADD UNIQUE / ADD PRIMARY KEY builds the index while holding an ACCESS EXCLUSIVE \
lock on the table: nothing can read or write it until the build ends. Build the unique index \
CONCURRENTLY first (in its own migration, which runs in autocommit mode), then attach it with \
`ADD CONSTRAINT ... UNIQUE USING INDEX`, which only takes the lock for an instant. A table created \
earlier in the same file is exempt.",
    rewrite: "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS <t>_<col>_key ON <t> (<col>);\n\
-- then, in a later migration:\nALTER TABLE <t> ADD CONSTRAINT <t>_<col>_key UNIQUE USING INDEX <t>_<col>_key;",
    bad: &[
        Example {
            file_name: "0004_unique.expand.sql",
            sql: "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
        },
        Example {
            file_name: "0005_pk.expand.sql",
            sql: "ALTER TABLE events ADD PRIMARY KEY (id);",
        },
        Example {
            file_name: "0006_col.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS handle text UNIQUE;",
        },
    ],
    good: &[
        Example {
            file_name: "0004_unique_index.expand.sql",
            sql: "CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS users_email_key ON users (email);",
        },
        Example {
            file_name: "0005_unique.expand.sql",
            sql: "ALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE USING INDEX users_email_key;\n\
ALTER TABLE events ADD CONSTRAINT events_pkey PRIMARY KEY USING INDEX events_id_idx;",
        },
        Example {
            file_name: "0001_users.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS users (id bigint, email text);\n\
ALTER TABLE users ADD PRIMARY KEY (id);\nALTER TABLE users ADD CONSTRAINT users_email_key UNIQUE (email);",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let Some((alter, operations)) = existing_table_operations(context) else {
        return;
    };
    let table = quoted(&alter.name);
    for operation in operations {
        let at = context.action_position(operation);
        let kind = match operation {
            AlterTableOperation::AddConstraint {
                constraint: TableConstraint::Unique(_),
                ..
            } => "UNIQUE",
            AlterTableOperation::AddConstraint {
                constraint: TableConstraint::PrimaryKey(_),
                ..
            } => "PRIMARY KEY",
            AlterTableOperation::AddColumn { column_def, .. } => {
                match column_def.options.iter().find(|o| {
                    matches!(
                        o.option,
                        ColumnOption::Unique(_) | ColumnOption::PrimaryKey(_)
                    )
                }) {
                    Some(option) if matches!(option.option, ColumnOption::Unique(_)) => "UNIQUE",
                    Some(_) => "PRIMARY KEY",
                    None => continue,
                }
            }
            _ => continue,
        };
        findings.push(Finding::at_action(at, format!(
            "adding a {kind} constraint builds its index under an ACCESS EXCLUSIVE lock on {table}: reads and writes wait for the whole build"
        )));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
