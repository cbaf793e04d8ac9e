//! `unbounded-update`

use sqlparser::ast::{FromTable, Statement, TableFactor};

use super::quoted;
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `unbounded-update` rule: its documentation, examples and check.
/// `migrate explain unbounded-update` prints it.
pub static RULE: Rule = Rule {
    id: "unbounded-update",
    default_level: Level::Error,
    summary: "UPDATE and DELETE need a WHERE; bulk data changes belong in a batched backfill file.",
    explanation: "An UPDATE or DELETE without WHERE touches every row in one transaction: it \
row-locks the whole table (blocking the application's writes), writes a new version of every \
row (WAL burst, replica lag, bloat) and cannot be resumed if it is killed. PostgreSQL has no \
`UPDATE ... LIMIT`. Put the change in a `.backfill.sql` file with \
`-- migrate:backfill table=<t> key=<col>`: the runtime runs it in short keyed batches, and the \
WHERE clause makes it idempotent (rows already done no longer match). A table created earlier in \
the same file is exempt.",
    rewrite: "-- in <version>_<name>.backfill.sql\n\
-- migrate:backfill table=<table> key=<primary key> batch=1000\n\
UPDATE <table> SET <col> = <expr> WHERE <col> IS NULL;",
    bad: &[
        Example {
            file_name: "0003_normalize.expand.sql",
            sql: "UPDATE users SET email_normalized = lower(email);",
        },
        Example {
            file_name: "0004_purge.contract.sql",
            sql: "-- migrate:requires 3\nDELETE FROM sessions;",
        },
        Example {
            file_name: "0005_fill.backfill.sql",
            sql: "-- migrate:backfill table=users key=id\nUPDATE users SET email_normalized = lower(email);",
        },
    ],
    good: &[
        Example {
            file_name: "0005_fill.backfill.sql",
            sql: "-- migrate:backfill table=users key=id batch=500\n\
UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL;",
        },
        Example {
            file_name: "0001_plans.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS plans (id bigint PRIMARY KEY, name text NOT NULL);\n\
INSERT INTO plans (id, name) VALUES (1, 'free');\nUPDATE plans SET name = 'Free';\n\
-- the string 'UPDATE users SET x = 1' is data, not a statement\n\
INSERT INTO plans (id, name) VALUES (2, 'UPDATE users SET x = 1; DELETE FROM users');",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    match context.ast {
        Some(Statement::Update(update)) if update.selection.is_none() => {
            if let TableFactor::Table { name, .. } = &update.table.relation {
                if context.is_new_table(name) {
                    return;
                }
                findings.push(Finding::new(format!(
                    "UPDATE without WHERE rewrites every row of {} in one transaction, locking them all until it commits",
                    quoted(name)
                )));
            }
        }
        Some(Statement::Delete(delete)) if delete.selection.is_none() => {
            let tables = match &delete.from {
                FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => tables,
            };
            let Some(TableFactor::Table { name, .. }) = tables.first().map(|t| &t.relation) else {
                return;
            };
            if context.is_new_table(name) {
                return;
            }
            findings.push(Finding::new(format!(
                "DELETE without WHERE removes every row of {} in one transaction, locking them all until it commits",
                quoted(name)
            )));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
