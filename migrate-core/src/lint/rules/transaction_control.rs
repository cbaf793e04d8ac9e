//! `transaction-control`

use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `transaction-control` rule: its documentation, examples and check.
/// `migrate explain transaction-control` prints it.
pub static RULE: Rule = Rule {
    id: "transaction-control",
    default_level: Level::Error,
    summary: "No BEGIN, COMMIT, ROLLBACK or SAVEPOINT in a migration file: the runtime owns transactions.",
    explanation: "The runtime wraps each migration and its history row in one transaction (or \
runs statements one by one in autocommit mode when PostgreSQL requires it). A COMMIT inside the \
file would make part of the migration permanent without its history row, so a failure later in \
the file leaves the database half-changed and the migration is run again on top of it. Use \
`-- migrate:no-transaction` when statements must commit separately.",
    rewrite: "Remove BEGIN/COMMIT; split the file in two, or add `-- migrate:no-transaction`.",
    bad: &[
        Example {
            file_name: "0004_tx.expand.sql",
            sql: "BEGIN;\nALTER TABLE users ADD COLUMN IF NOT EXISTS nickname text;\nCOMMIT;",
        },
        Example {
            file_name: "0005_tx.expand.sql",
            sql: "START TRANSACTION;\nSAVEPOINT before_change;\nROLLBACK TO SAVEPOINT before_change;",
        },
    ],
    good: &[Example {
        file_name: "0004_nickname.expand.sql",
        sql: "ALTER TABLE users ADD COLUMN IF NOT EXISTS nickname text;\n\
CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$\nBEGIN\n  NEW.updated_at := now();\n  RETURN NEW;\nEND\n$$;",
    }],
    check: Check::Statement(check),
};

const TRANSACTION_KEYWORDS: &[&str] = &[
    "BEGIN",
    "START",
    "COMMIT",
    "END",
    "ROLLBACK",
    "ABORT",
    "SAVEPOINT",
    "RELEASE",
    "PREPARE",
];

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let Some(first) = context.words.keyword(0) else {
        return;
    };
    if first == "PREPARE" && context.words.keyword(1).as_deref() != Some("TRANSACTION") {
        return;
    }
    if TRANSACTION_KEYWORDS.contains(&first.as_str()) {
        findings.push(Finding::new(format!(
            "{first} in a migration file fights the runtime's own transaction: part of the file could commit without its history row"
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
