//! `exclusion-constraint`

use sqlparser::ast::{AlterTableOperation, TableConstraint};

use super::{existing_table_operations, quoted};
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `exclusion-constraint` rule: its documentation, examples and check.
/// `migrate explain exclusion-constraint` prints it.
pub static RULE: Rule = Rule {
    id: "exclusion-constraint",
    default_level: Level::Error,
    summary: "Add EXCLUDE constraints only to tables created in the same file: the index is built under ACCESS EXCLUSIVE.",
    explanation: "ADD CONSTRAINT ... EXCLUDE USING gist (...) builds the constraint's index while \
holding an ACCESS EXCLUSIVE lock on the table (checked on PostgreSQL 15 in `pg_locks`): nothing \
reads or writes the table until the whole index is built. Unlike UNIQUE and PRIMARY KEY there is \
no way around it: an exclusion constraint cannot be attached USING INDEX to an index built \
CONCURRENTLY, and PostgreSQL refuses NOT VALID for it. A table created earlier in the same file \
is exempt (empty, and invisible to other sessions).",
    rewrite: "Declare the exclusion constraint when the table is created (in the CREATE TABLE, or \
later in the same file). For an existing table, create a new table with the constraint and move \
to it (expand, backfill, contract); a small table can take it in a maintenance window: \
`-- migrate:allow exclusion-constraint <table size and why the outage is acceptable>`.",
    bad: &[Example {
        file_name: "0004_no_double_booking.expand.sql",
        sql: "ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist (room_id WITH =, during WITH &&);",
    }],
    good: &[
        Example {
            file_name: "0003_bookings.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS bookings (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    room_id bigint NOT NULL,\n    during tstzrange NOT NULL,\n    CONSTRAINT bookings_no_overlap EXCLUDE USING gist (room_id WITH =, during WITH &&)\n);",
        },
        Example {
            file_name: "0003_bookings.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS bookings (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, room_id bigint NOT NULL, during tstzrange NOT NULL);\n\
ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist (room_id WITH =, during WITH &&);",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let Some((alter, operations)) = existing_table_operations(context) else {
        return;
    };
    for operation in operations {
        let at = context.action_position(operation);
        if let AlterTableOperation::AddConstraint {
            constraint: TableConstraint::Exclude(_),
            ..
        } = operation
        {
            findings.push(Finding::at_action(at, format!(
                "adding an EXCLUDE constraint builds its index under an ACCESS EXCLUSIVE lock on {}: reads and writes wait for the whole build, and there is no CONCURRENTLY form",
                quoted(&alter.name)
            )));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
