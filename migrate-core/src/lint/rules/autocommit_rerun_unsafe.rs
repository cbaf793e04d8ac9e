//! `autocommit-rerun-unsafe`

use sqlparser::ast::{AlterTable, AlterTableOperation, Ident, Statement, TableConstraint};

use crate::classify::Words;
use crate::lint::{Check, Example, Finding, Level, Rule, RuleMemory, StatementContext};
use crate::migration::TransactionMode;
use crate::sql::{ident_key, table_key};

/// The `autocommit-rerun-unsafe` rule: its documentation, examples and check.
/// `migrate explain autocommit-rerun-unsafe` prints it.
pub static RULE: Rule = Rule {
    id: "autocommit-rerun-unsafe",
    default_level: Level::Error,
    summary: "In an autocommit migration, every statement but the last must succeed when run a second time.",
    explanation: "A migration that runs statement by statement (it has a CONCURRENTLY statement, \
or `-- migrate:no-transaction`) is not atomic: when a later statement fails, the earlier ones \
stay applied, no history row is written, and the next deploy runs the whole file again. A \
statement with no re-runnable form then fails on its own leftovers — `ADD CONSTRAINT` (PostgreSQL \
has no IF NOT EXISTS for it), `CREATE TRIGGER/VIEW/FUNCTION` without OR REPLACE, `CREATE TYPE`, \
a RENAME, an INSERT without ON CONFLICT — and the deployment is stuck until someone repairs the \
database by hand. The last statement is exempt: nothing after it can fail.",
    rewrite: "Put such statements in a transactional migration of their own (no CONCURRENTLY in \
it), use the re-runnable form (OR REPLACE, IF NOT EXISTS, ON CONFLICT DO NOTHING; for a constraint, \
`DROP CONSTRAINT IF EXISTS c` right before `ADD CONSTRAINT c`), or make it the last statement of \
the file.",
    bad: &[Example {
        file_name: "0005_email_check.expand.sql",
        sql: "-- migrate:no-transaction\n\
ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;\n\
ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;",
    }],
    good: &[
        Example {
            file_name: "0005_email_check.expand.sql",
            sql: "ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;\n\
-- file: 0006_validate_email_check.expand.sql\n\
ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;",
        },
        Example {
            file_name: "0007_login_index.expand.sql",
            sql: "CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.updated_at := now(); RETURN NEW; END $$;\n\
CREATE OR REPLACE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch();\n\
INSERT INTO plans (id, name) VALUES (1, 'free') ON CONFLICT DO NOTHING;\n\
CREATE INDEX CONCURRENTLY IF NOT EXISTS users_login_idx ON users (login);\n\
ALTER TABLE users ADD CONSTRAINT users_login_key UNIQUE USING INDEX users_login_idx;",
        },
        Example {
            file_name: "0008_restore_check.contract.sql",
            sql: "-- migrate:requires 5\n-- migrate:no-transaction\n\
ALTER TABLE users DROP CONSTRAINT IF EXISTS users_email_not_null;\n\
ALTER TABLE users ADD CONSTRAINT users_email_not_null CHECK (email IS NOT NULL) NOT VALID;\n\
ALTER TABLE users VALIDATE CONSTRAINT users_email_not_null;",
        },
    ],
    check: Check::WithPartMemory(DroppedConstraints::start),
};

/// `(table, constraint)` dropped with `DROP CONSTRAINT IF EXISTS` by earlier statements of
/// this part: re-adding them is re-runnable.
#[derive(Default)]
struct DroppedConstraints {
    dropped: Vec<(String, String)>,
}

impl DroppedConstraints {
    fn start() -> Box<dyn RuleMemory> {
        Box::<DroppedConstraints>::default()
    }

    /// Why an `ALTER TABLE` fails when run again, if it does.
    fn alter_table_problem(&self, alter: &AlterTable) -> Option<String> {
        alter
            .operations
            .iter()
            .find_map(|operation| match operation {
                AlterTableOperation::AddConstraint { constraint, .. } => {
                    // `DROP CONSTRAINT IF EXISTS c` earlier in the part makes
                    // `ADD CONSTRAINT c` re-runnable: a second run drops the leftover first.
                    let dropped_first = constraint_name(constraint).is_some_and(|name| {
                        self.dropped
                            .contains(&(table_key(&alter.name), ident_key(name)))
                    });
                    (!dropped_first).then(|| ADD_CONSTRAINT_PROBLEM.to_owned())
                }
                AlterTableOperation::RenameColumn { .. }
                | AlterTableOperation::RenameTable { .. }
                | AlterTableOperation::RenameConstraint { .. } => {
                    Some("a RENAME fails when run again: the old name is gone".to_owned())
                }
                _ => None,
            })
    }
}

const ADD_CONSTRAINT_PROBLEM: &str =
    "ADD CONSTRAINT has no IF NOT EXISTS: a re-run fails with \"already exists\"";

/// Why a `CREATE` without a re-runnable form, or a `RENAME`, fails when run again.
fn create_or_rename_problem(words: &Words<'_>) -> Option<String> {
    let or_replace = words.starts_with(&["CREATE", "OR", "REPLACE"]);
    let if_not_exists = words.contains_pair("NOT", "EXISTS");
    let kinds: [(&[&str], &str); 7] = [
        (&["CREATE", "TRIGGER"], "CREATE TRIGGER"),
        (
            &["CREATE", "CONSTRAINT", "TRIGGER"],
            "CREATE CONSTRAINT TRIGGER",
        ),
        (&["CREATE", "VIEW"], "CREATE VIEW"),
        (&["CREATE", "FUNCTION"], "CREATE FUNCTION"),
        (&["CREATE", "PROCEDURE"], "CREATE PROCEDURE"),
        (&["CREATE", "TYPE"], "CREATE TYPE"),
        (&["CREATE", "POLICY"], "CREATE POLICY"),
    ];
    kinds
        .iter()
        .find(|(prefix, _)| words.starts_with(prefix))
        .filter(|_| !or_replace && !if_not_exists)
        .map(|(_, kind)| {
            format!("{kind} fails when run again: the object exists after the first run")
        })
        .or_else(|| {
            (words.starts_with(&["CREATE", "DOMAIN"])
                || (words.starts_with(&["ALTER"]) && words.find_top_level("RENAME").is_some()))
            .then(|| "fails when run again after a partial run".to_owned())
        })
}

impl RuleMemory for DroppedConstraints {
    fn start_part(&mut self) {
        self.dropped.clear();
    }

    fn check(&self, context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
        if context.mode != TransactionMode::Autocommit || context.is_last_in_section {
            return;
        }
        let problem = match context.ast {
            Some(Statement::AlterTable(alter)) => self.alter_table_problem(alter),
            Some(Statement::Insert(_)) if !context.words.contains("CONFLICT") => Some(
                "an INSERT without ON CONFLICT adds the rows again, or fails on a key".to_owned(),
            ),
            _ => create_or_rename_problem(&context.words),
        };
        if let Some(problem) = problem {
            findings.push(Finding::new(format!(
                "{problem}; this migration runs statement by statement, so a failure of a later statement leaves this one applied and the next deploy runs it again"
            )));
        }
    }

    fn record(&mut self, context: &StatementContext<'_>) {
        if let Some(Statement::AlterTable(alter)) = context.ast {
            for operation in &alter.operations {
                if let AlterTableOperation::DropConstraint {
                    if_exists: true,
                    name,
                    ..
                } = operation
                {
                    self.dropped.push((table_key(&alter.name), ident_key(name)));
                }
            }
        }
    }
}

/// The name of a table constraint, when it has one.
fn constraint_name(constraint: &TableConstraint) -> Option<&Ident> {
    match constraint {
        TableConstraint::Unique(c) => c.name.as_ref(),
        TableConstraint::PrimaryKey(c) => c.name.as_ref(),
        TableConstraint::ForeignKey(c) => c.name.as_ref(),
        TableConstraint::Check(c) => c.name.as_ref(),
        TableConstraint::UniqueUsingIndex(c) | TableConstraint::PrimaryKeyUsingIndex(c) => {
            c.name.as_ref()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
