//! `constraint-not-valid`

use sqlparser::ast::{AlterTableOperation, Statement, TableConstraint};

use super::quoted;
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `constraint-not-valid` rule: its documentation, examples and check.
/// `migrate explain constraint-not-valid` prints it.
pub static RULE: Rule = Rule {
    id: "constraint-not-valid",
    default_level: Level::Error,
    summary: "Add FOREIGN KEY and CHECK constraints to existing tables NOT VALID, then VALIDATE separately.",
    explanation: "ADD CONSTRAINT ... CHECK takes an ACCESS EXCLUSIVE lock on the table and ADD \
FOREIGN KEY a SHARE ROW EXCLUSIVE lock on both the table and the referenced table; then every row \
is checked while the lock is held: for a CHECK nothing can read or write the table during the \
scan, for a foreign key no row of either table can be written. With NOT VALID \
the constraint is added instantly and enforced for new rows; `VALIDATE CONSTRAINT`, run in a \
later migration, scans under a SHARE UPDATE EXCLUSIVE lock that lets reads and writes continue. \
A table created earlier in the same file is exempt.",
    rewrite: "ALTER TABLE <t> ADD CONSTRAINT <name> FOREIGN KEY (...) REFERENCES <other> (...) NOT VALID;\n\
-- then, in a later migration:\nALTER TABLE <t> VALIDATE CONSTRAINT <name>;",
    bad: &[
        Example {
            file_name: "0004_fk.expand.sql",
            sql: "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
        },
        Example {
            file_name: "0005_check.expand.sql",
            sql: "ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0);",
        },
        Example {
            // A table filled by CREATE TABLE AS is new but not empty: validating the key
            // scans every copied row while writes to users wait.
            file_name: "0006_order_totals.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS order_totals AS SELECT user_id, sum(total) AS total FROM orders GROUP BY user_id;\n\
ALTER TABLE order_totals ADD CONSTRAINT order_totals_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
        },
        Example {
            // So is a new table filled by INSERT ... SELECT.
            file_name: "0007_order_archive.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS order_archive (id bigint PRIMARY KEY, user_id bigint, total numeric);\n\
INSERT INTO order_archive (id, user_id, total) SELECT id, user_id, total FROM orders WHERE created_at < '2020-01-01';\n\
ALTER TABLE order_archive ADD CONSTRAINT order_archive_user_fk FOREIGN KEY (user_id) REFERENCES users (id);",
        },
    ],
    good: &[
        Example {
            file_name: "0004_fk.expand.sql",
            sql: "ALTER TABLE orders ADD CONSTRAINT orders_user_fk FOREIGN KEY (user_id) REFERENCES users (id) NOT VALID;\n\
ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;\n\
-- file: 0005_orders_user_id_idx.expand.sql\n\
-- the index the foreign key needs (see foreign-key-without-index), in its own migration\n\
CREATE INDEX CONCURRENTLY IF NOT EXISTS orders_user_id_idx ON orders (user_id);",
        },
        Example {
            file_name: "0001_orders.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, user_id bigint, total numeric);\n\
ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0);",
        },
        Example {
            // A CHECK on a new, filled table locks only that table, which no one else sees.
            file_name: "0006_order_totals.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS order_totals AS SELECT user_id, sum(total) AS total FROM orders GROUP BY user_id;\n\
ALTER TABLE order_totals ADD CONSTRAINT order_totals_total_positive CHECK (total >= 0);",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let Some(Statement::AlterTable(alter)) = context.ast else {
        return;
    };
    // A table created earlier in the part is invisible: a lock on it blocks nobody. A foreign
    // key also locks the referenced table, visible, for as long as the new table's rows take
    // to check: exempt only while the new table is empty.
    if context.is_empty_new_table(&alter.name) {
        return;
    }
    let new_table = context.is_new_table(&alter.name);
    for operation in &alter.operations {
        let at = context.action_position(operation);
        if new_table
            && !matches!(
                operation,
                AlterTableOperation::AddConstraint {
                    constraint: TableConstraint::ForeignKey(_),
                    ..
                }
            )
        {
            continue;
        }
        let AlterTableOperation::AddConstraint {
            constraint,
            not_valid: false,
        } = operation
        else {
            continue;
        };
        let (kind, consequence) = match constraint {
            TableConstraint::ForeignKey(fk) if new_table => (
                "FOREIGN KEY",
                format!(
                    "of {}, created and filled earlier in this part, under a SHARE ROW EXCLUSIVE lock on {}: writes to it wait for the whole scan",
                    quoted(&alter.name),
                    quoted(&fk.foreign_table)
                ),
            ),
            TableConstraint::ForeignKey(fk) => (
                "FOREIGN KEY",
                format!(
                    "under a SHARE ROW EXCLUSIVE lock on {} and {}: writes to both wait for the whole scan",
                    quoted(&alter.name),
                    quoted(&fk.foreign_table)
                ),
            ),
            TableConstraint::Check(_) => (
                "CHECK",
                format!(
                    "under an ACCESS EXCLUSIVE lock on {}: reads and writes wait for the whole scan",
                    quoted(&alter.name)
                ),
            ),
            _ => continue,
        };
        findings.push(
            Finding::new(format!("adding a {kind} constraint checks every existing row {consequence}"))
            .at(at)
            .help(format!(
                "ALTER TABLE {} ADD CONSTRAINT ... {kind} (...) NOT VALID;\nthen in a later migration: ALTER TABLE {} VALIDATE CONSTRAINT <name>;",
                alter.name, alter.name
            )),
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
