//! `volatile-default`

use sqlparser::ast::{AlterTableOperation, ColumnOption};

use super::{existing_table_operations, quoted};
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};
use crate::sql::volatile_function;

/// The `volatile-default` rule: its documentation, examples and check.
/// `migrate explain volatile-default` prints it.
pub static RULE: Rule = Rule {
    id: "volatile-default",
    default_level: Level::Error,
    summary: "ADD COLUMN must not rewrite the table (volatile default, serial, identity, stored generated) or fail on existing rows (NOT NULL without default).",
    explanation: "Since PostgreSQL 11, ADD COLUMN with a constant or stable default (`now()`, \
`'x'`, `0`) only updates the catalog. A volatile default (`gen_random_uuid()`, `random()`, \
`clock_timestamp()`, `nextval()`), a serial or identity column, or a STORED generated column \
must compute a value per row: PostgreSQL rewrites the whole table under an ACCESS EXCLUSIVE \
lock. `NOT NULL` without a default fails outright on a table that has rows. Functions the rule \
does not know are treated as possibly volatile. A table created earlier in the same file is \
exempt.",
    rewrite: "ALTER TABLE <t> ADD COLUMN IF NOT EXISTS <col> <type>;           -- nullable, no default\n\
ALTER TABLE <t> ALTER COLUMN <col> SET DEFAULT gen_random_uuid();  -- for new rows only\n\
-- then a backfill file fills existing rows in batches, and a later migration adds NOT NULL",
    bad: &[
        Example {
            file_name: "0003_public_id.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS public_id uuid DEFAULT gen_random_uuid();",
        },
        Example {
            file_name: "0004_seen.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS seen_at timestamptz DEFAULT clock_timestamp();",
        },
        Example {
            file_name: "0005_rank.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS rank float8 NOT NULL DEFAULT random();",
        },
        Example {
            file_name: "0006_required.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS tenant_id bigint NOT NULL;",
        },
        Example {
            file_name: "0007_serial.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS seq bigserial;",
        },
        Example {
            file_name: "0008_identity.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS n bigint GENERATED ALWAYS AS IDENTITY;",
        },
        Example {
            file_name: "0009_stored.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS email_lower text GENERATED ALWAYS AS (lower(email)) STORED;",
        },
    ],
    good: &[
        Example {
            file_name: "0003_defaults.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS created_at timestamptz NOT NULL DEFAULT now();\n\
ALTER TABLE users ADD COLUMN IF NOT EXISTS status text NOT NULL DEFAULT 'active';\n\
ALTER TABLE users ADD COLUMN IF NOT EXISTS settings jsonb NOT NULL DEFAULT '{}'::jsonb;\n\
ALTER TABLE users ADD COLUMN IF NOT EXISTS login_count integer DEFAULT 0;\n\
ALTER TABLE users ADD COLUMN IF NOT EXISTS public_id uuid;\n\
ALTER TABLE users ALTER COLUMN public_id SET DEFAULT gen_random_uuid();",
        },
        Example {
            file_name: "0001_tokens.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS tokens (id bigint PRIMARY KEY);\n\
ALTER TABLE tokens ADD COLUMN IF NOT EXISTS value uuid NOT NULL DEFAULT gen_random_uuid();",
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
        let AlterTableOperation::AddColumn { column_def, .. } = operation else {
            continue;
        };
        let column = &column_def.name;
        let type_name = column_def.data_type.to_string().to_ascii_lowercase();
        let mut has_default = false;
        let mut not_null = false;
        for option in &column_def.options {
            match &option.option {
                ColumnOption::Default(expr) => {
                    has_default = true;
                    if let Some(function) = volatile_function(expr) {
                        findings.push(Finding::at_action(at, format!(
                            "ADD COLUMN {column} with the volatile default {function}() rewrites every row of {table} under an ACCESS EXCLUSIVE lock"
                        )));
                    }
                }
                ColumnOption::NotNull => not_null = true,
                ColumnOption::Generated { .. } => {
                    findings.push(Finding::at_action(at, format!(
                        "ADD COLUMN {column} as an identity or stored generated column rewrites every row of {table} under an ACCESS EXCLUSIVE lock"
                    )));
                }
                _ => {}
            }
        }
        if matches!(
            type_name.as_str(),
            "serial" | "bigserial" | "smallserial" | "serial2" | "serial4" | "serial8"
        ) {
            findings.push(Finding::at_action(at, format!(
                "ADD COLUMN {column} {type_name} fills every existing row from a sequence: a rewrite of {table} under an ACCESS EXCLUSIVE lock"
            )));
        }
        if not_null && !has_default {
            findings.push(
                Finding::at_action(at, format!(
                    "ADD COLUMN {column} NOT NULL without a default fails as soon as {table} has a row"
                ))
                .help("add the column nullable (or with a constant default), backfill it, then add NOT NULL via a validated CHECK"),
            );
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
