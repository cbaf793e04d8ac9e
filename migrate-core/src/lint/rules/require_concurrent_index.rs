//! `require-concurrent-index`

use sqlparser::ast::Statement;

use super::quoted;
use crate::classify::Fallback;
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `require-concurrent-index` rule: its documentation, examples and check.
/// `migrate explain require-concurrent-index` prints it.
pub static RULE: Rule = Rule {
    id: "require-concurrent-index",
    default_level: Level::Error,
    summary: "Build, drop, rebuild and refresh indexes CONCURRENTLY.",
    explanation: "CREATE INDEX holds a SHARE lock on the table for the whole build: every INSERT, \
UPDATE and DELETE waits, for minutes on a large table. DROP INDEX and REINDEX take ACCESS \
EXCLUSIVE (or SHARE) locks the same way, and REFRESH MATERIALIZED VIEW blocks every reader of the \
view. The CONCURRENTLY forms let reads and writes go on. An index on a table created earlier in \
the same file is exempt: the table is empty and invisible to other sessions. A failed \
CREATE INDEX CONCURRENTLY leaves an INVALID index behind; the runtime drops and rebuilds it.",
    rewrite: "CREATE INDEX CONCURRENTLY IF NOT EXISTS <index> ON <table> (<columns>);\n\
DROP INDEX CONCURRENTLY IF EXISTS <index>; REINDEX INDEX CONCURRENTLY <index>;\n\
REFRESH MATERIALIZED VIEW CONCURRENTLY <view>;",
    bad: &[
        Example {
            file_name: "0002_orders_created.expand.sql",
            sql: "CREATE INDEX IF NOT EXISTS idx_orders_created ON orders (created_at);",
        },
        Example {
            file_name: "0003_drop_idx.contract.sql",
            sql: "-- migrate:requires 2\nDROP INDEX IF EXISTS idx_orders_created;",
        },
        Example {
            file_name: "0005_reindex.expand.sql",
            sql: "REINDEX INDEX idx_orders_created;",
        },
        Example {
            file_name: "0006_refresh.expand.sql",
            sql: "REFRESH MATERIALIZED VIEW order_totals;",
        },
    ],
    good: &[
        Example {
            file_name: "0002_orders_created.expand.sql",
            sql: "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_orders_created ON orders (created_at);\n\
-- migrate:down\nDROP INDEX CONCURRENTLY IF EXISTS idx_orders_created;",
        },
        Example {
            file_name: "0001_orders.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS orders (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);\n\
CREATE INDEX IF NOT EXISTS idx_orders_created ON orders (created_at);",
        },
        Example {
            file_name: "0005_reindex.expand.sql",
            sql: "REINDEX INDEX CONCURRENTLY idx_orders_created;\nREFRESH MATERIALIZED VIEW CONCURRENTLY order_totals;",
        },
        Example {
            file_name: "0007_parent.expand.sql",
            sql: "-- ON ONLY builds just the (invalid) parent index of a partitioned table: instant\n\
CREATE INDEX IF NOT EXISTS idx_events_at ON ONLY events (at);",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    match context.fallback {
        Some(Fallback::DropIndex {
            concurrently: false,
            ..
        }) => {
            findings.push(
                Finding::new(
                    "DROP INDEX takes an ACCESS EXCLUSIVE lock on the index's table: every query on it waits",
                )
                .help("DROP INDEX CONCURRENTLY IF EXISTS <index>;"),
            );
            return;
        }
        Some(Fallback::Reindex {
            concurrently: false,
        }) => {
            findings.push(
                Finding::new("REINDEX blocks writes to the table (and reads that use the index) for the whole rebuild")
                    .help("REINDEX INDEX CONCURRENTLY <index>;"),
            );
            return;
        }
        _ => {}
    }
    match context.ast {
        Some(Statement::CreateIndex(index))
            if !index.concurrently && !context.is_new_table(&index.table_name) =>
        {
            let name = index
                .name
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_else(|| "<index>".into());
            let unique = if index.unique { "UNIQUE " } else { "" };
            findings.push(
                Finding::new(format!(
                    "CREATE INDEX locks writes to {} for the whole build",
                    quoted(&index.table_name)
                ))
                .help(format!(
                    "CREATE {unique}INDEX CONCURRENTLY IF NOT EXISTS {name} ON {} (...);",
                    index.table_name
                )),
            );
        }
        Some(Statement::RefreshMaterializedView(refresh)) if !refresh.concurrently => {
            findings.push(
                Finding::new(format!(
                    "REFRESH MATERIALIZED VIEW blocks every read of {} until it finishes",
                    quoted(&refresh.name)
                ))
                .help(format!(
                    "REFRESH MATERIALIZED VIEW CONCURRENTLY {}; (needs a unique index on the view)",
                    refresh.name
                )),
            );
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
