//! `unbounded-update`

use std::collections::{HashMap, HashSet};

use sqlparser::ast::{
    AlterTableOperation, BinaryOperator, Expr, FromTable, InTarget, ObjectName,
    RenameTableNameKind, Statement, TableFactor, UnaryOperator,
};

use super::declared_indexes::{declared_indexes, expression_key};
use super::quoted;
use crate::lint::{Check, Example, Finding, Level, Rule, RuleMemory, StatementContext};
use crate::migration::Phase;
use crate::source::SectionKind;
use crate::sql::{ident_key, table_key};

/// The `unbounded-update` rule: its documentation, examples and check.
/// `migrate explain unbounded-update` prints it.
pub static RULE: Rule = Rule {
    id: "unbounded-update",
    default_level: Level::Error,
    summary: "UPDATE and DELETE of an existing table pin their rows by key; bulk changes belong in a batched backfill file.",
    explanation: "An UPDATE or DELETE runs in one transaction whatever its WHERE: every row it \
matches stays row-locked until the migration commits (blocking the application's writes to \
them), each gets a new version (WAL burst, replica lag, bloat), and a killed run starts over. \
`WHERE c IS NULL` or `WHERE created_at < '2020-01-01'` may match the whole table. Outside a \
backfill file, the WHERE must pin the rows by key: equality or a constant IN list on every \
column of a primary key or unique constraint (or unique index without WHERE) that the set \
declares earlier, in version order. A table the set does not declare a key of is flagged \
too: the linter cannot tell its key, so allow the statement with a reason naming it. \
PostgreSQL has no `UPDATE ... LIMIT`: put bulk changes in a `.backfill.sql` file with \
`-- migrate:backfill table=<t> key=<col>`; the runtime runs its UPDATE or DELETE in short \
keyed batches, resumable, and the WHERE makes it idempotent (rows done no longer match). A \
table created earlier in the same file is exempt; a small lookup table takes an allow with \
its reason.",
    rewrite: "-- in <version>_<name>.backfill.sql\n\
-- migrate:backfill table=<table> key=<primary key>\n\
UPDATE <table> SET <col> = <expr> WHERE <col> IS NULL;   -- or: DELETE FROM <table> WHERE <rows to purge>;",
    bad: &[
        Example {
            file_name: "0003_normalize.expand.sql",
            sql: "UPDATE users SET email_normalized = lower(email);",
        },
        Example {
            file_name: "0004_purge.contract.sql",
            sql: "-- migrate:requires 3\nDELETE FROM sessions;",
        },
        Example {
            file_name: "0005_fill.backfill.sql",
            sql: "-- migrate:backfill table=users key=id\nUPDATE users SET email_normalized = lower(email);",
        },
        Example {
            // Any WHERE is not a bound: this one matches every row.
            file_name: "0006_flag.expand.sql",
            sql: "UPDATE users SET newsletter = false WHERE 1 = 1;",
        },
        Example {
            // Nor is one on a column that is not a key: it may match the whole table.
            file_name: "0007_defaults.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS plans (id bigint PRIMARY KEY, name text NOT NULL, price numeric);\n\
-- file: 0008_prices.expand.sql\n\
UPDATE plans SET price = 0 WHERE price IS NULL;",
        },
    ],
    good: &[
        Example {
            file_name: "0005_fill.backfill.sql",
            sql: "-- migrate:backfill table=users key=id batch=500\n\
UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL;",
        },
        Example {
            // A purge runs in the same keyed batches.
            file_name: "0006_purge_sessions.backfill.sql",
            sql: "-- migrate:backfill table=sessions key=id\n\
DELETE FROM sessions WHERE expires_at < '2024-01-01';",
        },
        Example {
            file_name: "0001_plans.expand.sql",
            sql: "CREATE TABLE IF NOT EXISTS plans (id bigint PRIMARY KEY, code text UNIQUE, name text NOT NULL);\n\
INSERT INTO plans (id, name) VALUES (1, 'free');\nUPDATE plans SET name = 'Free';\n\
-- the string 'UPDATE users SET x = 1' is data, not a statement\n\
INSERT INTO plans (id, name) VALUES (2, 'UPDATE users SET x = 1; DELETE FROM users');\n\
-- file: 0002_plan_names.expand.sql\n\
-- rows pinned by the primary key or a unique column: one row each\n\
UPDATE plans SET name = 'Pro' WHERE id = 2;\n\
DELETE FROM plans WHERE id IN (7, 8) AND name = 'legacy';\n\
UPDATE plans SET name = 'Team' WHERE code = 'team';",
        },
        Example {
            file_name: "0003_countries.expand.sql",
            sql: "-- migrate:allow unbounded-update countries is a 250-row lookup table\n\
UPDATE countries SET name = initcap(name) WHERE name <> initcap(name);",
        },
    ],
    check: Check::WithMemory(SetKeys::start),
};

/// The keys (primary keys, unique constraints and unique indexes without WHERE) the set has
/// declared so far, in version order: a key added by a later migration does not exist yet
/// when the statement runs.
#[derive(Default)]
struct SetKeys {
    /// Table → the column sets of its keys.
    keys: HashMap<String, Vec<Vec<String>>>,
}

impl SetKeys {
    fn start() -> Box<dyn RuleMemory> {
        Box::<SetKeys>::default()
    }

    /// True when `pinned` covers every column of some key of `table`.
    fn pins_a_key(&self, table: &str, pinned: &HashSet<String>) -> bool {
        self.keys.get(table).is_some_and(|keys| {
            keys.iter()
                .any(|key| key.iter().all(|column| pinned.contains(column)))
        })
    }
}

impl RuleMemory for SetKeys {
    fn check(&self, context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
        let (verb, name, selection) = match context.ast {
            Some(Statement::Update(update)) => match &update.table.relation {
                TableFactor::Table { name, .. } => ("UPDATE", name, update.selection.as_ref()),
                _ => return,
            },
            Some(Statement::Delete(delete)) => {
                let tables = match &delete.from {
                    FromTable::WithFromKeyword(tables) | FromTable::WithoutKeyword(tables) => {
                        tables
                    }
                };
                match tables.first().map(|t| &t.relation) {
                    Some(TableFactor::Table { name, .. }) => {
                        ("DELETE", name, delete.selection.as_ref())
                    }
                    _ => return,
                }
            }
            _ => return,
        };
        if context.is_new_table(name) {
            return;
        }
        let Some(selection) = selection else {
            let what = if verb == "UPDATE" {
                "rewrites"
            } else {
                "removes"
            };
            findings.push(Finding::new(format!(
                "{verb} without WHERE {what} every row of {} in one transaction, locking them all until it commits",
                quoted(name)
            )));
            return;
        };
        // A backfill file's statement runs in keyed batches (its shape is bad-backfill's).
        let batched = context.phase == Phase::Backfill && context.section == SectionKind::Up;
        if batched || self.pins_a_key(&table_key(name), &pinned_columns(selection)) {
            return;
        }
        findings.push(unpinned(
            verb,
            name,
            selection,
            self.keys.contains_key(&table_key(name)),
        ));
    }

    fn record(&mut self, context: &StatementContext<'_>) {
        if context.section != SectionKind::Up {
            return;
        }
        let Some(statement) = context.ast else {
            return;
        };
        for index in declared_indexes(statement) {
            if index.unique {
                self.keys
                    .entry(index.table)
                    .or_default()
                    .push(index.columns);
            }
        }
        // Keys follow their table and columns through renames.
        let Statement::AlterTable(alter) = statement else {
            return;
        };
        let table = table_key(&alter.name);
        for operation in &alter.operations {
            match operation {
                AlterTableOperation::RenameTable {
                    table_name: RenameTableNameKind::To(new) | RenameTableNameKind::As(new),
                } => {
                    if let Some(keys) = self.keys.remove(&table) {
                        self.keys.insert(table_key(new), keys);
                    }
                }
                AlterTableOperation::RenameColumn {
                    old_column_name,
                    new_column_name,
                } => {
                    let (old, new) = (ident_key(old_column_name), ident_key(new_column_name));
                    for column in self.keys.get_mut(&table).into_iter().flatten().flatten() {
                        if *column == old {
                            column.clone_from(&new);
                        }
                    }
                }
                _ => {}
            }
        }
    }
}

/// The finding for a WHERE that does not pin its rows by key, with the backfill rewrite.
fn unpinned(verb: &str, name: &ObjectName, selection: &Expr, key_known: bool) -> Finding {
    let why = if key_known {
        "it does not pin its rows by key (equality or a constant IN list on every column of a primary key or unique constraint)"
    } else {
        "the set declares no primary key or unique constraint of this table, so nothing shows it matches a few rows"
    };
    let statement = if verb == "UPDATE" {
        format!("UPDATE {name} SET ... WHERE {selection};")
    } else {
        format!("DELETE FROM {name} WHERE {selection};")
    };
    Finding::new(format!(
        "{verb} of {} WHERE {selection}: {why}; it may match the whole table, and every matching row stays locked until the migration commits",
        quoted(name)
    ))
    .help(format!(
        "move it to a backfill file, run in keyed batches:\n\
    -- in <version>_<name>.backfill.sql\n\
    -- migrate:backfill table={name} key=<primary key>\n\
    {statement}\n\
    or, for a small lookup table: -- migrate:allow unbounded-update <why it is small>"
    ))
}

/// The columns `where_clause` pins to constants: `col = <constant>` (either side) and
/// `col IN (<constants>)`, through `AND` and parentheses. An `OR` pins nothing.
fn pinned_columns(where_clause: &Expr) -> HashSet<String> {
    let mut pinned = HashSet::new();
    collect_pinned(where_clause, &mut pinned);
    pinned
}

fn collect_pinned(expr: &Expr, pinned: &mut HashSet<String>) {
    match expr {
        Expr::Nested(inner) => collect_pinned(inner, pinned),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            collect_pinned(left, pinned);
            collect_pinned(right, pinned);
        }
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            for (column, value) in [(left, right), (right, left)] {
                if is_column(column) && is_constant(value) {
                    pinned.insert(expression_key(column));
                }
            }
        }
        Expr::In {
            expr,
            target: InTarget::List(list),
            negated: false,
            ..
        } if is_column(expr) && list.iter().all(is_constant) => {
            pinned.insert(expression_key(expr));
        }
        _ => {}
    }
}

fn is_column(expr: &Expr) -> bool {
    matches!(expr, Expr::Identifier(_) | Expr::CompoundIdentifier(_))
}

/// A literal, possibly typed, cast or signed: `42`, `'x'`, `uuid '...'`, `'7'::bigint`, `-1`.
fn is_constant(expr: &Expr) -> bool {
    match expr {
        Expr::Value(_) | Expr::TypedString { .. } => true,
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => is_constant(inner),
        Expr::UnaryOp {
            op: UnaryOperator::Minus | UnaryOperator::Plus,
            expr,
        } => is_constant(expr),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::lint_example;

    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }

    /// (statement, flagged) after a set declaring `users (id PRIMARY KEY, email UNIQUE)` and a
    /// composite key `memberships (org_id, user_id)`.
    #[test]
    fn only_a_where_pinning_a_declared_key_bounds_the_rows() {
        let schema = "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text UNIQUE, name text);\n\
CREATE TABLE IF NOT EXISTS memberships (org_id bigint, user_id bigint, role text, PRIMARY KEY (org_id, user_id));\n\
-- file: 0002_b.expand.sql\n";
        for (statement, flagged) in [
            ("UPDATE users SET name = 'x' WHERE id = 1", false),
            ("UPDATE users SET name = 'x' WHERE 1 = id", false),
            ("UPDATE users SET name = 'x' WHERE id IN (1, 2, -3)", false),
            (
                "UPDATE users SET name = 'x' WHERE (id = '7'::bigint) AND name IS NULL",
                false,
            ),
            (
                "UPDATE users SET name = 'x' WHERE users.email = 'a@b.c'",
                false,
            ),
            ("DELETE FROM users WHERE id = 1", false),
            (
                "UPDATE memberships SET role = 'x' WHERE org_id = 1 AND user_id = 2",
                false,
            ),
            ("UPDATE users SET name = 'x' WHERE 1 = 1", true),
            ("UPDATE users SET name = 'x' WHERE name IS NULL", true),
            ("UPDATE users SET name = 'x' WHERE id = 1 OR id = 2", true),
            ("UPDATE users SET name = 'x' WHERE id > 10", true),
            (
                "UPDATE users SET name = 'x' WHERE id IN (SELECT user_id FROM memberships)",
                true,
            ),
            ("UPDATE users SET name = 'x' WHERE id NOT IN (1)", true),
            ("UPDATE memberships SET role = 'x' WHERE org_id = 1", true),
            ("DELETE FROM users WHERE name = 'x'", true),
            // A table the set declares no key of.
            ("UPDATE legacy SET a = 1 WHERE id = 1", true),
        ] {
            let found = lint_example("0001_a.expand.sql", &format!("{schema}{statement};"));
            let hit = found.iter().any(|d| d.code == super::RULE.id);
            assert_eq!(hit, flagged, "{statement}: {found:#?}");
        }
    }

    /// Keys follow renames of their table and columns.
    #[test]
    fn keys_follow_renames() {
        let set = "CREATE TABLE IF NOT EXISTS user_ (id bigint PRIMARY KEY, name text);\n\
-- file: 0002_b.contract.sql\n\
-- migrate:requires 1\n\
ALTER TABLE user_ RENAME TO person;\n\
ALTER TABLE person RENAME COLUMN id TO person_id;\n\
-- file: 0003_c.expand.sql\n\
UPDATE person SET name = 'x' WHERE person_id = 1;";
        let found = lint_example("0001_a.expand.sql", set);
        assert!(
            !found.iter().any(|d| d.code == super::RULE.id),
            "{found:#?}"
        );
    }

    /// A key declared by a later migration does not exist yet when the statement runs.
    #[test]
    fn a_key_declared_later_does_not_count() {
        let set = "UPDATE accounts SET plan = 'free' WHERE id = 1;\n\
-- file: 0002_b.expand.sql\n\
CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS accounts_id_key ON accounts (id);";
        let found = lint_example("0001_a.expand.sql", set);
        assert!(found.iter().any(|d| d.code == super::RULE.id), "{found:#?}");
    }
}
