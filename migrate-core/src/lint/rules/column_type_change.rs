//! `column-type-change`

use sqlparser::ast::{AlterColumnOperation, AlterTableOperation};

use super::{existing_table_operations, quoted};
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `column-type-change` rule: its documentation, examples and check.
/// `migrate explain column-type-change` prints it.
pub static RULE: Rule = Rule {
    id: "column-type-change",
    default_level: Level::Error,
    summary: "Do not change a column's type in place.",
    explanation: "ALTER COLUMN ... TYPE takes an ACCESS EXCLUSIVE lock and, for most type \
changes, rewrites the whole table and rebuilds its indexes while holding it: no reads, no \
writes, for as long as the rewrite takes. Only binary-coercible changes (varchar(n) to text, a \
longer varchar) skip the rewrite; allow those with a reason. It also breaks the running release \
if it reads the old type. The zero-downtime path is a new column, dual writes, a backfill, \
then a contract that drops the old column. A table created earlier in the same file is exempt.",
    rewrite: "ALTER TABLE <t> ADD COLUMN IF NOT EXISTS <col>_new <new type>;\n\
-- dual-write both columns, backfill <col>_new in a .backfill.sql file, switch reads,\n\
-- then drop <col> in a .contract.sql file",
    bad: &[
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
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let Some((alter, operations)) = existing_table_operations(context) else {
        return;
    };
    for operation in operations {
        if let AlterTableOperation::AlterColumn {
            column_name,
            op: AlterColumnOperation::SetDataType { data_type, .. },
        } = operation
        {
            findings.push(Finding::new(format!(
                "changing {column_name} to {data_type} holds an ACCESS EXCLUSIVE lock on {} and usually rewrites the table and its indexes",
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
