//! `lock-held-across-statements`

use sqlparser::ast::Statement;

use crate::lint::context::table_key_of;
use crate::lint::{Example, Finding, Level, Rule, StatementContext};
use crate::lock_analysis::TableWork;
use crate::migration::TransactionMode;

pub static RULE: Rule = Rule {
    id: "lock-held-across-statements",
    default_level: Level::Error,
    summary: "In one transaction, no long work after a statement that blocks writes to an existing table.",
    explanation: "PostgreSQL keeps every table lock until the transaction ends. A migration runs \
in one transaction, so after `ALTER TABLE users ...` takes its ACCESS EXCLUSIVE lock, every \
later statement of the file runs while the application's queries on `users` wait: a \
`VALIDATE CONSTRAINT` or an index build that is harmless on its own scans a whole table under \
that lock, and an `UPDATE`/`DELETE` runs for as long as it touches rows. The brief catalog change \
becomes an outage as long as the slowest statement after it. A table created earlier in the same \
file is exempt (no one else can see it).",
    rewrite: "Move the long statement to its own migration (a VALIDATE in the next file, data changes \
in a .backfill.sql). `-- migrate:no-transaction` also releases each lock at once, but only suits \
files whose statements can all run twice (see autocommit-rerun-unsafe).",
    bad: &[
        Example {
            file_name: "0004_status_v2.expand.sql",
            sql: "ALTER TABLE orders ADD COLUMN IF NOT EXISTS status_v2 text;\n\
UPDATE orders SET status_v2 = status WHERE status_v2 IS NULL;",
        },
        Example {
            file_name: "0005_total_check.expand.sql",
            sql: "ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;\n\
ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;",
        },
    ],
    good: &[
        Example {
            file_name: "0005_total_check.expand.sql",
            sql: "ALTER TABLE orders ADD CONSTRAINT orders_total_positive CHECK (total >= 0) NOT VALID;\n\
-- file: 0006_validate_total_check.expand.sql\n\
ALTER TABLE orders VALIDATE CONSTRAINT orders_total_positive;",
        },
        Example {
            file_name: "0004_status_v2.expand.sql",
            sql: "ALTER TABLE orders ADD COLUMN IF NOT EXISTS status_v2 text;\n\
ALTER TABLE orders ADD COLUMN IF NOT EXISTS shipped_at timestamptz;\n\
COMMENT ON COLUMN orders.status_v2 IS 'replaces status';",
        },
        Example {
            file_name: "0006_refunds.expand.sql",
            // The foreign key locks orders (SHARE ROW EXCLUSIVE) until commit, but everything
            // after it works on the new, empty table.
            sql: "CREATE TABLE IF NOT EXISTS refunds (id bigint PRIMARY KEY, order_id bigint NOT NULL REFERENCES orders (id));\n\
CREATE INDEX IF NOT EXISTS refunds_order_id_idx ON refunds (order_id);\n\
INSERT INTO refunds (id, order_id) SELECT 0, 0 WHERE false;",
        },
    ],
    check,
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    if context.mode != TransactionMode::Transactional {
        return;
    }
    let Some(held) = context.held_locks.first() else {
        return;
    };
    let work = match context.ast {
        Some(Statement::Update(_)) => "this UPDATE",
        Some(Statement::Delete(_)) => "this DELETE",
        _ => match context.lock.work {
            TableWork::Scan => "this statement's table scan",
            TableWork::Rewrite => "this statement's table rewrite",
            TableWork::None => return,
        },
    };
    // Work on tables created earlier in this part is work on empty tables: instant.
    let on_new_tables_only = !context.lock.locks.is_empty()
        && context.lock.locks.iter().all(|taken| {
            context
                .created_in_section
                .contains(&table_key_of(&taken.table))
        });
    if on_new_tables_only {
        return;
    }
    let blocked = if held.mode.blocks_reads() {
        "reads and writes"
    } else {
        "writes"
    };
    findings.push(Finding::new(format!(
        "{work} runs while the {} lock on \"{}\" taken at line {} is still held: the application's {blocked} on it wait until the migration commits",
        held.mode, held.table, held.line
    )));
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
