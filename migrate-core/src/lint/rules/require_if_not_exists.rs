//! `require-if-not-exists`

use sqlparser::ast::{AlterTableOperation, Statement};

use crate::classify::Fallback;
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `require-if-not-exists` rule: its documentation, examples and check.
/// `migrate explain require-if-not-exists` prints it.
pub static RULE: Rule = Rule {
    id: "require-if-not-exists",
    default_level: Level::Error,
    summary: "CREATE and ADD COLUMN need IF NOT EXISTS, DROP needs IF EXISTS, so a re-run is a no-op.",
    explanation: "A migration in autocommit mode (any CONCURRENTLY statement) is not atomic: if it \
fails half-way, the statements before the failure stay applied and the migration is run again. \
Without IF [NOT] EXISTS the re-run fails on the objects the first run created or dropped, and \
the deployment is stuck until someone edits the database by hand. The guards also keep a \
migration safe when an object was created manually ahead of time.",
    rewrite: "CREATE TABLE IF NOT EXISTS ... / CREATE INDEX CONCURRENTLY IF NOT EXISTS ... / \
ALTER TABLE t ADD COLUMN IF NOT EXISTS ... / DROP ... IF EXISTS ...",
    bad: &[
        Example {
            file_name: "0001_users.expand.sql",
            sql: "CREATE TABLE users (id bigint PRIMARY KEY);",
        },
        Example {
            file_name: "0002_email.expand.sql",
            sql: "ALTER TABLE users ADD COLUMN email text;",
        },
        Example {
            file_name: "0003_ext.expand.sql",
            sql: "CREATE EXTENSION pgcrypto;",
        },
        Example {
            file_name: "0004_schema.expand.sql",
            sql: "CREATE SCHEMA billing;",
        },
        Example {
            file_name: "0005_seq.expand.sql",
            sql: "CREATE SEQUENCE invoice_numbers;",
        },
        Example {
            file_name: "0006_idx.expand.sql",
            sql: "CREATE INDEX CONCURRENTLY idx_users_email ON users (email);",
        },
        Example {
            file_name: "0007_gone.contract.sql",
            sql: "-- migrate:requires 2\nALTER TABLE users DROP COLUMN legacy_name;",
        },
        Example {
            file_name: "0008_gone.contract.sql",
            sql: "-- migrate:requires 2\nDROP TABLE legacy_users;",
        },
        Example {
            file_name: "0010_status.expand.sql",
            sql: "ALTER TYPE order_status ADD VALUE 'refunded';",
        },
        Example {
            file_name: "0009_idx.contract.sql",
            sql: "-- migrate:requires 6\nDROP INDEX CONCURRENTLY idx_users_email;",
        },
    ],
    good: &[
        Example {
            file_name: "0001_users.expand.sql",
            sql: "CREATE EXTENSION IF NOT EXISTS pgcrypto;\nCREATE SCHEMA IF NOT EXISTS billing;\n\
CREATE SEQUENCE IF NOT EXISTS billing.invoice_numbers;\n\
CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY);\n\
ALTER TABLE users ADD COLUMN IF NOT EXISTS email text;\n\
-- migrate:down\nDROP TABLE IF EXISTS users;\nDROP SEQUENCE IF EXISTS billing.invoice_numbers;",
        },
        Example {
            file_name: "0007_gone.contract.sql",
            sql: "-- migrate:requires 1\nALTER TABLE users DROP COLUMN IF EXISTS legacy_name;\n\
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_legacy_check;\n\
DROP INDEX CONCURRENTLY IF EXISTS idx_users_legacy;",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let words = &context.words;
    let missing = |what: &str, guard: &str| {
        Finding::new(format!(
            "{what} without {guard} fails when a re-run finds it already done"
        ))
    };
    match context.fallback {
        Some(Fallback::DropIndex {
            if_exists: false, ..
        }) => {
            findings.push(
                missing("DROP INDEX", "IF EXISTS")
                    .help("DROP INDEX CONCURRENTLY IF EXISTS <index>;"),
            );
            return;
        }
        Some(Fallback::CreateTable {
            if_not_exists: false,
            ..
        }) => {
            findings.push(missing("CREATE TABLE", "IF NOT EXISTS"));
            return;
        }
        Some(Fallback::CreateStatistics {
            if_not_exists: false,
        }) => {
            findings.push(missing("CREATE STATISTICS", "IF NOT EXISTS"));
            return;
        }
        Some(Fallback::CreateIndexOnOnly {
            if_not_exists: false,
        }) => {
            findings.push(missing("CREATE INDEX", "IF NOT EXISTS"));
            return;
        }
        Some(Fallback::DropIndex { .. }) => return,
        _ => {}
    }
    if words.starts_with(&["ALTER", "TYPE"])
        && words.contains_pair("ADD", "VALUE")
        && !words.contains_pair("NOT", "EXISTS")
    {
        findings.push(missing("ALTER TYPE ... ADD VALUE", "IF NOT EXISTS"));
        return;
    }
    let Some(statement) = context.ast else {
        return;
    };
    match statement {
        Statement::CreateTable(create) if !create.if_not_exists && !create.or_replace => {
            findings.push(missing(
                &format!("CREATE TABLE {}", create.name),
                "IF NOT EXISTS",
            ));
        }
        Statement::CreateIndex(index) if !index.if_not_exists => {
            findings.push(
                missing("CREATE INDEX", "IF NOT EXISTS")
                    .help("CREATE INDEX CONCURRENTLY IF NOT EXISTS <index> ON <table> (...); the runtime drops an INVALID leftover of a failed build first, so IF NOT EXISTS never skips a broken index"),
            );
        }
        Statement::CreateSchema {
            if_not_exists: false,
            schema_name,
            ..
        } => {
            findings.push(missing(
                &format!("CREATE SCHEMA {schema_name}"),
                "IF NOT EXISTS",
            ));
        }
        Statement::CreateSequence {
            if_not_exists: false,
            name,
            ..
        } => {
            findings.push(missing(&format!("CREATE SEQUENCE {name}"), "IF NOT EXISTS"));
        }
        Statement::CreateExtension(extension) if !extension.if_not_exists => {
            findings.push(missing(
                &format!("CREATE EXTENSION {}", extension.name),
                "IF NOT EXISTS",
            ));
        }
        Statement::AlterTable(alter) => {
            for operation in &alter.operations {
                match operation {
                    AlterTableOperation::AddColumn {
                        if_not_exists: false,
                        column_def,
                        ..
                    } => {
                        findings.push(missing(
                            &format!("ADD COLUMN {}", column_def.name),
                            "IF NOT EXISTS",
                        ));
                    }
                    AlterTableOperation::DropColumn {
                        if_exists: false,
                        column_names,
                        ..
                    } => {
                        let names: Vec<String> =
                            column_names.iter().map(ToString::to_string).collect();
                        findings.push(missing(
                            &format!("DROP COLUMN {}", names.join(", ")),
                            "IF EXISTS",
                        ));
                    }
                    AlterTableOperation::DropConstraint {
                        if_exists: false,
                        name,
                        ..
                    } => {
                        findings.push(missing(&format!("DROP CONSTRAINT {name}"), "IF EXISTS"));
                    }
                    _ => {}
                }
            }
        }
        // Every other DROP: the keyword check covers all object kinds sqlparser models
        // differently (functions, triggers, policies, types ...).
        _ if words.starts_with(&["DROP"])
            && !words.starts_with(&["DROP", "OWNED"])
            && !words.contains_pair("IF", "EXISTS") =>
        {
            let kind = words.keyword(1).unwrap_or_default();
            findings.push(missing(&format!("DROP {kind}"), "IF EXISTS"));
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
