//! `lock-held-across-statements`

use std::collections::HashMap;

use sqlparser::ast::{Query, SetExpr, Statement, TableFactor};

use crate::classify::{Words, text_mentions};

use super::quoted;
use crate::lint::{Check, Example, Finding, Level, Rule, RuleMemory, StatementContext};
use crate::lock_analysis::{LockMode, TableWork};
use crate::migration::TransactionMode;
use crate::source::ParsedFile;
use crate::splitter::TokenKind;
use crate::sql::{ident_key, table_key, table_key_of};

/// The `lock-held-across-statements` rule: its documentation, examples and check.
/// `migrate explain lock-held-across-statements` prints it.
pub static RULE: Rule = Rule {
    id: "lock-held-across-statements",
    default_level: Level::Error,
    summary: "In one transaction, no long work after a statement that blocks writes to an existing table.",
    explanation: "PostgreSQL keeps every table lock until the transaction ends. A migration runs \
in one transaction, so after `ALTER TABLE users ...` takes its ACCESS EXCLUSIVE lock, every \
later statement of the file runs while the application's queries on `users` wait: a \
`VALIDATE CONSTRAINT` or an index build that is harmless on its own scans a whole table under \
that lock, and an `UPDATE`/`DELETE` runs for as long as it touches rows. The brief catalog change \
becomes an outage as long as the slowest statement after it; so does an `INSERT ... SELECT` \
that copies rows (checked on PostgreSQL 15: after `ADD COLUMN`, the ACCESS EXCLUSIVE lock is still \
in `pg_locks` while the INSERT runs). A table created earlier in the same file is exempt (no one \
else can see it).",
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
        Example {
            file_name: "0007_archive.expand.sql",
            sql: "ALTER TABLE orders ADD COLUMN IF NOT EXISTS archived_at timestamptz;\n\
INSERT INTO orders_archive (id, total) SELECT id, total FROM orders WHERE created_at < '2020-01-01';",
        },
        Example {
            file_name: "0008_import.expand.sql",
            sql: "ALTER TABLE orders ADD COLUMN IF NOT EXISTS source text;\n\
CREATE TABLE IF NOT EXISTS orders_staging (id bigint, total numeric);\n\
INSERT INTO orders_staging (id, total) SELECT id, total FROM legacy_orders;",
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
        Example {
            file_name: "0007_status_codes.expand.sql",
            // A few literal rows are brief, whatever the lock held.
            sql: "ALTER TABLE orders ADD COLUMN IF NOT EXISTS status_code text;\n\
INSERT INTO order_status_codes (code, label) VALUES ('new', 'New'), ('paid', 'Paid');",
        },
    ],
    check: Check::WithMemory(HeldLocks::start),
};

/// Write-blocking locks on existing tables taken by earlier statements of this part: in one
/// transaction, PostgreSQL keeps every table lock until the transaction ends.
#[derive(Default)]
struct HeldLocks {
    locks: Vec<HeldLock>,
    /// Index name (folded, without schema) → its table as written, for the indexes the set
    /// creates: `DROP INDEX idx` locks the index *and its table*, and the message names the
    /// table the application waits for.
    index_tables: HashMap<String, String>,
}

/// A lock taken by an earlier statement of the same transaction.
struct HeldLock {
    /// The table as the message names it: `"orders"`, or `the table of index "idx"` for an
    /// index the set does not create.
    table: String,
    mode: LockMode,
    /// Line of the statement that took it.
    line: u32,
}

impl HeldLocks {
    fn start() -> Box<dyn RuleMemory> {
        Box::<HeldLocks>::default()
    }
}

impl RuleMemory for HeldLocks {
    /// The indexes the set creates, read from keywords (no parse): only when some statement
    /// locks an index by name.
    fn start_set(&mut self, files: &[&ParsedFile]) {
        // One pass over the set, lexing a statement whole only when its leading keywords
        // say it may name an index (view queries and function bodies are most of the bytes).
        let mut locks_one = false;
        for file in files {
            for statement in &file.statements {
                let head = file.head_tokens(statement, 3);
                let head = Words::new(&file.source, &head);
                locks_one |= locks_an_index(&head);
                // A table statement records an index only with PRIMARY or UNIQUE.
                let text = file.text(statement);
                let table_without_index = (head.starts_with(&["CREATE", "TABLE"])
                    || head.starts_with(&["ALTER", "TABLE"]))
                    && !text_mentions(text, "PRIMARY")
                    && !text_mentions(text, "UNIQUE");
                if may_create_index(&head) && !table_without_index {
                    let tokens = file.tokens(statement);
                    record_index_tables(&Words::new(&file.source, &tokens), &mut self.index_tables);
                }
            }
        }
        if !locks_one {
            self.index_tables.clear();
        }
    }

    fn start_part(&mut self) {
        self.locks.clear();
    }

    fn check(&self, context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
        if context.mode != TransactionMode::Transactional {
            return;
        }
        let Some(held) = self.locks.first() else {
            return;
        };
        // Tables an INSERT ... SELECT reads, `None` for a source that is not a plain table.
        let mut read: Vec<Option<String>> = Vec::new();
        let work = match context.ast {
            Some(Statement::Update(_)) => "this UPDATE",
            Some(Statement::Delete(_)) => "this DELETE",
            // The lock analysis sees only the ROW EXCLUSIVE lock on the target and no table work,
            // but copying rows takes as long as the rows read.
            Some(Statement::Insert(insert)) => {
                if let Some(source) = &insert.source {
                    relations_read(source, &mut read);
                }
                if read.is_empty() {
                    return;
                }
                "this INSERT ... SELECT"
            }
            // CREATE TABLE ... AS copies rows just the same.
            Some(Statement::CreateTable(create)) if create.query.is_some() => {
                if let Some(query) = &create.query {
                    relations_read(query, &mut read);
                }
                if read.is_empty() {
                    return;
                }
                "this CREATE TABLE ... AS"
            }
            _ => match context.lock.work {
                TableWork::Scan => "this statement's table scan",
                TableWork::Rewrite => "this statement's table rewrite",
                TableWork::None => return,
            },
        };
        // Work on tables created earlier in this part, and not filled since, is work on empty
        // tables: instant.
        let empty_new = |table: &String| {
            context.created_in_section.contains(table) && !context.filled_in_section.contains(table)
        };
        let on_new_tables_only = !(context.lock.locks.is_empty() && read.is_empty())
            && context
                .lock
                .locks
                .iter()
                .all(|taken| empty_new(&table_key_of(&taken.table)))
            && read
                .iter()
                .all(|table| table.as_ref().is_some_and(empty_new));
        if on_new_tables_only {
            return;
        }
        let blocked = if held.mode.blocks_reads() {
            "reads and writes"
        } else {
            "writes"
        };
        findings.push(Finding::new(format!(
            "{work} runs while the {} lock on {} taken at line {} is still held: the application's {blocked} on it wait until the migration commits",
            held.mode, held.table, held.line
        )));
    }

    fn record(&mut self, context: &StatementContext<'_>) {
        if context.mode != TransactionMode::Transactional {
            return;
        }
        let on_index = locks_an_index(&context.words);
        for taken in &context.lock.locks {
            let (table, named) =
                match on_index.then(|| self.index_tables.get(&table_key_of(&taken.table))) {
                    None => (taken.table.clone(), quoted(&taken.table)),
                    Some(Some(table)) => (table.clone(), quoted(table)),
                    Some(None) => (
                        taken.table.clone(),
                        format!("the table of index {}", quoted(&taken.table)),
                    ),
                };
            if taken.mode.blocks_writes()
                && !context.created_in_section.contains(&table_key_of(&table))
            {
                self.locks.push(HeldLock {
                    table: named,
                    mode: taken.mode,
                    line: context.line,
                });
            }
        }
    }
}

/// Statements whose lock analysis names an index where PostgreSQL also locks its table.
fn locks_an_index(words: &Words<'_>) -> bool {
    words.starts_with(&["DROP", "INDEX"]) || words.starts_with(&["REINDEX", "INDEX"])
}

/// True for the statements [`record_index_tables`] reads, from the first three words.
fn may_create_index(words: &Words<'_>) -> bool {
    words.starts_with(&["CREATE", "INDEX"])
        || words.starts_with(&["CREATE", "UNIQUE", "INDEX"])
        || words.starts_with(&["ALTER", "INDEX"])
        || words.starts_with(&["CREATE", "TABLE"])
        || words.starts_with(&["ALTER", "TABLE"])
}

/// Records the index a statement creates, from its keywords: `CREATE [UNIQUE] INDEX
/// [CONCURRENTLY] [IF NOT EXISTS] name ON [ONLY] table`, `CONSTRAINT name PRIMARY KEY |
/// UNIQUE` in a `CREATE TABLE` or `ALTER TABLE` (the constraint's index has its name), the
/// `<table>_pkey` PostgreSQL names an unnamed primary key's index, and `ALTER INDEX a RENAME
/// TO b`.
fn record_index_tables(words: &Words<'_>, index_tables: &mut HashMap<String, String>) {
    if !may_create_index(words) {
        return;
    }
    let creates_index = words.starts_with(&["CREATE", "INDEX"])
        || words.starts_with(&["CREATE", "UNIQUE", "INDEX"]);
    // Upper-cased once: the loops below look words up by position.
    let keywords: Vec<String> = words
        .iter()
        .map(|token| match token.kind {
            TokenKind::Word => token.text(words.source()).to_ascii_uppercase(),
            _ => String::new(),
        })
        .collect();
    let keyword = |index: usize| keywords.get(index).map_or("", String::as_str);
    if creates_index {
        let Some(on) = (0..words.len()).find(|&i| keyword(i) == "ON") else {
            return;
        };
        let table_at = if keyword(on + 1) == "ONLY" {
            on + 2
        } else {
            on + 1
        };
        let name_at = on.saturating_sub(1);
        let named = !matches!(keyword(name_at), "INDEX" | "CONCURRENTLY" | "EXISTS");
        if let (true, Some(name)) = (named, qualified_name(words, name_at)) {
            // `schema.name`: the index lives in its table's schema; the key drops it.
            index_tables.insert(
                table_key_of(&name),
                qualified_name(words, table_at).unwrap_or_default(),
            );
        }
        return;
    }
    if words.starts_with(&["ALTER", "INDEX"]) {
        let at = if keyword(2) == "IF" { 4 } else { 2 };
        if let (Some(old), Some(rename)) = (
            qualified_name(words, at),
            (0..words.len()).find(|&i| keyword(i) == "RENAME" && keyword(i + 1) == "TO"),
        ) && let (Some(table), Some(new)) = (
            index_tables.get(&table_key_of(&old)).cloned(),
            words.text(rename + 2),
        ) {
            index_tables.insert(table_key_of(new), table);
        }
        return;
    }
    let table_at =
        if words.starts_with(&["CREATE", "TABLE"]) || words.starts_with(&["ALTER", "TABLE"]) {
            (2..words.len()).find(|&i| !matches!(keyword(i), "IF" | "NOT" | "EXISTS" | "ONLY"))
        } else {
            None
        };
    let Some(table) = table_at.and_then(|at| qualified_name(words, at)) else {
        return;
    };
    for i in 0..words.len() {
        if keyword(i) == "CONSTRAINT" && matches!(keyword(i + 2), "PRIMARY" | "UNIQUE") {
            if let Some(name) = words.text(i + 1) {
                index_tables.insert(table_key_of(name), table.clone());
            }
        } else if keyword(i) == "PRIMARY" && keyword(i.saturating_sub(2)) != "CONSTRAINT" {
            index_tables.insert(format!("{}_pkey", table_key_of(&table)), table.clone());
        }
    }
}

/// The name at token `at`, with its `schema.` when written (the splitter gives `.` alone).
fn qualified_name(words: &Words<'_>, at: usize) -> Option<String> {
    let first = words.text(at)?;
    match (words.text(at + 1), words.text(at + 2)) {
        (Some("."), Some(second)) => Some(format!("{first}.{second}")),
        _ => Some(first.to_owned()),
    }
}

/// The relations a query reads rows from (FROM items, `TABLE t`, in CTEs and set operations
/// too): `Some(table)` for a table, `None` for anything else (a function, `VALUES` in FROM).
/// A query without FROM (`SELECT 0, 0`, `VALUES (...)`) reads nothing.
fn relations_read(query: &Query, read: &mut Vec<Option<String>>) {
    if let Some(with) = &query.with {
        for cte in &with.cte_tables {
            relations_read(&cte.query, read);
        }
    }
    set_expr_read(&query.body, read);
}

fn set_expr_read(body: &SetExpr, read: &mut Vec<Option<String>>) {
    match body {
        SetExpr::Select(select) => {
            for from in &select.from {
                let joined = from.joins.iter().map(|join| &join.relation);
                for relation in std::iter::once(&from.relation).chain(joined) {
                    match relation {
                        TableFactor::Table { name, .. } => read.push(Some(table_key(name))),
                        TableFactor::Derived { subquery, .. } => relations_read(subquery, read),
                        _ => read.push(None),
                    }
                }
            }
        }
        SetExpr::Query(query) => relations_read(query, read),
        SetExpr::SetOperation { left, right, .. } => {
            set_expr_read(left, read);
            set_expr_read(right, read);
        }
        SetExpr::Values(_) => {}
        SetExpr::Table(table) => read.push(table.table_name.as_ref().map(ident_key)),
        _ => read.push(None),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }

    /// `DROP INDEX` locks the index and its table: the message names the table the
    /// application waits for when the set created the index, and says "the table of index"
    /// otherwise.
    #[test]
    fn a_lock_taken_through_an_index_names_its_table() {
        let set = "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, name text);\n\
-- file: 0002_b.expand.sql\n\
-- migrate:no-transaction\n\
CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_user_name_lower ON public.users (lower(name));\n\
-- file: 0003_c.contract.sql\n\
-- migrate:requires 2\n\
DROP INDEX IF EXISTS idx_user_name_lower;\n\
ALTER TABLE users VALIDATE CONSTRAINT users_name_check;\n\
-- file: 0004_d.contract.sql\n\
-- migrate:requires 2\n\
DROP INDEX IF EXISTS idx_unknown;\n\
ALTER TABLE users VALIDATE CONSTRAINT users_name_check;";
        let messages: Vec<String> = crate::lint::testing::lint_example("0001_a.expand.sql", set)
            .into_iter()
            .filter(|d| d.code == super::RULE.id)
            .map(|d| d.message)
            .collect();
        assert_eq!(messages.len(), 2, "{messages:#?}");
        assert!(
            messages[0].contains("ACCESS EXCLUSIVE lock on \"public.users\" taken at line 2"),
            "{messages:#?}"
        );
        assert!(
            messages[1].contains("lock on the table of index \"idx_unknown\" taken at line 2"),
            "{messages:#?}"
        );
    }

    #[test]
    fn an_insert_is_long_work_when_it_reads_an_existing_table() {
        let lines = |sql: &str| -> Vec<u32> {
            crate::lint::testing::lint_example("0007_x.expand.sql", sql)
                .iter()
                .filter(|d| d.code == super::RULE.id)
                .map(|d| d.line)
                .collect()
        };
        let before = "ALTER TABLE orders ADD COLUMN IF NOT EXISTS note text;\n\
CREATE TABLE IF NOT EXISTS a (id bigint);\nCREATE TABLE IF NOT EXISTS b (id bigint);\n";
        // Rows read through a CTE, a union or a join count; so do rows of a set-returning function.
        for (insert, expected) in [
            (
                "INSERT INTO a WITH x AS (SELECT id FROM orders) SELECT id FROM x",
                vec![4],
            ),
            (
                "INSERT INTO a SELECT id FROM b UNION ALL SELECT id FROM orders",
                vec![4],
            ),
            (
                "INSERT INTO a SELECT b.id FROM b JOIN orders o ON o.id = b.id",
                vec![4],
            ),
            (
                "INSERT INTO a SELECT g FROM generate_series(1, 1000000) g",
                vec![4],
            ),
            // Copying between tables created in this part is copying empty tables.
            ("INSERT INTO a SELECT id FROM b", vec![]),
            ("INSERT INTO a VALUES (1), (2)", vec![]),
            // CREATE TABLE AS copies rows too.
            ("CREATE TABLE c AS SELECT id FROM orders", vec![4]),
            ("CREATE TABLE c AS SELECT id FROM b", vec![]),
        ] {
            assert_eq!(lines(&format!("{before}{insert};")), expected, "{insert}");
        }
        // A new table filled from an existing one is not empty: building its index takes as
        // long as its rows, while the lock on orders is held.
        let filled = format!(
            "{before}INSERT INTO a SELECT id FROM legacy_orders;\nCREATE INDEX IF NOT EXISTS a_id ON a (id);\n\
CREATE INDEX IF NOT EXISTS b_id ON b (id);"
        );
        assert_eq!(lines(&filled), vec![4, 5]);
    }
}
