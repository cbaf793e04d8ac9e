//! `table-persistence-change`

use sqlparser::ast::AlterTableOperation;

use super::{existing_table_operations, quoted};
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `table-persistence-change` rule: its documentation, examples and check.
/// `migrate explain table-persistence-change` prints it.
pub static RULE: Rule = Rule {
    id: "table-persistence-change",
    default_level: Level::Error,
    summary: "Do not switch an existing table between LOGGED and UNLOGGED: both rewrite it.",
    explanation: "ALTER TABLE ... SET LOGGED and SET UNLOGGED write a new copy of the whole table \
and its indexes while holding an ACCESS EXCLUSIVE lock (checked on PostgreSQL 15: the lock is in \
`pg_locks` and `pg_relation_filenode` changes): no read or write of the table until the copy \
ends. SET LOGGED also writes every row to the WAL, which replicas must replay. There is no online \
form. A table created earlier in the same file is exempt (empty, and invisible to other sessions).",
    rewrite: "Create the table with the persistence it needs (`CREATE [UNLOGGED] TABLE ...`, or \
switch it in the file that creates it). For an existing table, create a new table with the \
right persistence, fill it in batches and move to it (expand, backfill, contract); a small table \
can be switched in a maintenance window: \
`-- migrate:allow table-persistence-change <table size and why the outage is acceptable>`.",
    bad: &[
        Example {
            file_name: "0004_events_logged.expand.sql",
            sql: "ALTER TABLE events SET LOGGED;",
        },
        Example {
            file_name: "0005_sessions_unlogged.expand.sql",
            sql: "ALTER TABLE IF EXISTS sessions SET UNLOGGED;",
        },
    ],
    good: &[Example {
        file_name: "0004_import_batches.expand.sql",
        sql: "CREATE UNLOGGED TABLE IF NOT EXISTS import_batches (id bigint PRIMARY KEY, payload jsonb);\n\
ALTER TABLE import_batches SET LOGGED;",
    }],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let Some((alter, operations)) = existing_table_operations(context) else {
        return;
    };
    for operation in operations {
        let at = context.action_position(operation);
        let kind = match operation {
            AlterTableOperation::SetLogged => "SET LOGGED",
            AlterTableOperation::SetUnlogged => "SET UNLOGGED",
            _ => continue,
        };
        findings.push(Finding::at_action(at, format!(
            "{kind} rewrites the whole of {} and its indexes under an ACCESS EXCLUSIVE lock: reads and writes wait for the copy",
            quoted(&alter.name)
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
