//! `prefer-robust-types`

use sqlparser::ast::{AlterTableOperation, ColumnDef, ColumnOption, Statement, TableConstraint};

use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};
use crate::sql::ident_key;

/// The `prefer-robust-types` rule: its documentation, examples and check.
/// `migrate explain prefer-robust-types` prints it.
pub static RULE: Rule = Rule {
    id: "prefer-robust-types",
    default_level: Level::Warn,
    summary: "New columns use the types that do not need a table rewrite later: timestamptz, jsonb, text, identity, bigint keys.",
    explanation: "Some types are chosen once and regretted under load, and changing a column's type \
later is a full table rewrite under an ACCESS EXCLUSIVE lock (see `column-type-change`). \
`timestamp` without time zone stores wall-clock times that shift meaning with the server's \
setting; `json` keeps the text, re-parses it on every access and cannot be indexed like `jsonb`; \
`varchar(n)` and `char(n)` turn a product decision into a rewrite when the limit must grow (use \
`text`, with a CHECK when a limit matters); `serial` hides a sequence with its own ownership and \
permission quirks (identity columns are the standard form); an `integer` key runs out at 2^31 \
rows, and widening it rewrites the table and every referencing one; `money` depends on \
`lc_monetary`. This rule warns by default (set it to `error` or `off` in migrate.toml).",
    rewrite: "timestamptz, jsonb, text (+ CHECK (length(col) <= n)), \
bigint GENERATED ALWAYS AS IDENTITY, bigint keys, numeric for money.",
    bad: &[
        Example {
            file_name: "0001_events.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS events (\n    id serial PRIMARY KEY,\n    happened_at timestamp NOT NULL,\n    payload json,\n    code varchar(16),\n    price money\n);",
        },
        Example {
            file_name: "0002_accounts.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS accounts (id integer PRIMARY KEY, name text);",
        },
        Example {
            file_name: "0003_seen.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS last_seen timestamp;",
        },
    ],
    good: &[
        Example {
            file_name: "0002_lines.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS order_lines (order_id bigint NOT NULL, line_no integer NOT NULL, PRIMARY KEY (order_id, line_no));",
        },
        Example {
            file_name: "0001_events.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS events (\n    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n    happened_at timestamptz NOT NULL,\n    payload jsonb,\n    code text CHECK (length(code) <= 16),\n    price numeric(12, 2),\n    attempts integer NOT NULL DEFAULT 0\n);\n\
ALTER TABLE users ADD COLUMN IF NOT EXISTS last_seen timestamp with time zone;",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    match context.ast {
        Some(Statement::CreateTable(create)) => {
            let table_keys: Vec<String> = create
                .constraints
                .iter()
                .filter_map(|constraint| match constraint {
                    // A composite key's parts (e.g. a line number within an order) are not
                    // row counters.
                    TableConstraint::PrimaryKey(pk) if pk.columns.len() == 1 => {
                        Some(pk.columns[0].column.expr.to_string().to_lowercase())
                    }
                    _ => None,
                })
                .collect();
            for column in &create.columns {
                let is_key = table_keys.contains(&ident_key(&column.name));
                check_column(column, is_key, findings);
            }
        }
        Some(Statement::AlterTable(alter)) => {
            for operation in &alter.operations {
                if let AlterTableOperation::AddColumn { column_def, .. } = operation {
                    check_column(column_def, false, findings);
                }
            }
        }
        _ => {}
    }
}

fn check_column(column: &ColumnDef, table_key: bool, findings: &mut Vec<Finding>) {
    let name = &column.name;
    let type_name = column.data_type.to_string().to_lowercase();
    let base = type_name.split('(').next().unwrap_or(&type_name).trim();
    let advice = match base {
        "timestamp" => Some(("timestamp without time zone", "timestamptz")),
        "json" => Some(("json", "jsonb")),
        "varchar" | "character varying" if type_name.contains('(') => {
            Some(("varchar(n)", "text with CHECK (length(col) <= n)"))
        }
        "char" | "character" | "bpchar" => Some(("char(n)", "text")),
        "serial" | "bigserial" | "smallserial" | "serial4" | "serial8" | "serial2" => {
            Some(("serial", "bigint GENERATED ALWAYS AS IDENTITY"))
        }
        "money" => Some(("money", "numeric")),
        _ => None,
    };
    if let Some((found, instead)) = advice {
        findings.push(
            Finding::new(format!("column {name} is {found}: prefer {instead}"))
                .help(format!("{name} {instead}")),
        );
    }
    let is_key = table_key
        || column
            .options
            .iter()
            .any(|option| matches!(option.option, ColumnOption::PrimaryKey(_)));
    if is_key && matches!(base, "int" | "integer" | "int4" | "smallint" | "int2") {
        findings.push(
            Finding::new(format!(
                "key column {name} is {base}: it runs out at {} rows, and widening it later rewrites this table and every table that references it",
                if matches!(base, "smallint" | "int2") { "32,767" } else { "2,147,483,647" }
            ))
            .help(format!("{name} bigint")),
        );
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
    fn every_weak_type_is_reported_as_a_warning() {
        let found = lint_example("0001_events.expand.sql", super::RULE.bad[0].sql);
        let ours: Vec<_> = found
            .iter()
            .filter(|d| d.code == "prefer-robust-types")
            .collect();
        assert_eq!(ours.len(), 5, "{ours:#?}");
        assert!(
            ours.iter()
                .all(|d| d.severity == crate::diagnostic::Severity::Warning)
        );
    }
}
