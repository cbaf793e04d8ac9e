//! The lint engine: runs every rule of [`RULES`] on every statement of a set, in version
//! order, with the context rules need (tables created earlier in the file, CHECK constraints
//! validated earlier in the set), then applies `-- migrate:allow` and the configuration.

use std::collections::HashSet;

use super::config::{Config, Level};
use super::context::{self, HeldLock, SchemaFacts, StatementContext};
use super::registry::RULES;
use super::{bad_backfill, rules};
use crate::classify;
use crate::diagnostic::{Diagnostic, Severity, codes};
use crate::migration::Phase;
use crate::source::{ParsedFile, SectionKind};
use crate::sql::{self, parse_statement};

/// Lints parsed files in version order and returns every diagnostic, sorted.
pub fn lint_files(files: &[ParsedFile], config: &Config) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut ordered: Vec<&ParsedFile> = files.iter().collect();
    ordered.sort_by_key(|f| f.migration.version);
    let mut facts = SchemaFacts::default();
    record_set_indexes(&ordered, &mut facts);
    for file in ordered {
        lint_file(file, config, &mut facts, &mut diagnostics);
    }
    crate::diagnostic::sort(&mut diagnostics);
    diagnostics
}

/// First pass for `foreign-key-without-index`: the indexes of the whole set, because a later
/// migration may add the index a foreign key needs. Only when some statement declares a
/// foreign key (`REFERENCES`, from the tokens), and only index-making statements are parsed,
/// so sets without foreign keys pay nothing.
fn record_set_indexes(files: &[&ParsedFile], facts: &mut SchemaFacts) {
    let up_statements = || {
        files.iter().flat_map(|file| {
            file.statements
                .iter()
                .filter(|s| s.section == SectionKind::Up)
                .map(move |s| (*file, s))
        })
    };
    if !up_statements().any(|(file, s)| file.words(s).contains("REFERENCES")) {
        return;
    }
    for (file, statement) in up_statements() {
        let words = file.words(statement);
        let makes_index = words.starts_with(&["CREATE", "INDEX"])
            || words.starts_with(&["CREATE", "UNIQUE", "INDEX"])
            || words.starts_with(&["CREATE", "TABLE"])
            || (words.starts_with(&["ALTER", "TABLE"])
                && (words.contains("PRIMARY") || words.contains("UNIQUE")));
        if makes_index && let Ok(ast) = parse_statement(file.text(statement)) {
            facts.record_indexes(&ast);
        }
    }
}

fn lint_file(
    file: &ParsedFile,
    config: &Config,
    facts: &mut SchemaFacts,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut created_in_section: HashSet<String> = HashSet::new();
    let mut held_locks: Vec<HeldLock> = Vec::new();
    let mut enum_values_added: Vec<(String, u32)> = Vec::new();
    let mut constraints_dropped_if_exists: Vec<(String, String)> = Vec::new();
    let mut section = SectionKind::Up;
    for (index, statement) in file.statements.iter().enumerate() {
        let is_last_in_section = file
            .statements
            .get(index + 1)
            .is_none_or(|next| next.section != statement.section);
        if statement.section != section {
            section = statement.section;
            created_in_section.clear();
            held_locks.clear();
            enum_values_added.clear();
            constraints_dropped_if_exists.clear();
        }
        let mode = match section {
            SectionKind::Up => file.migration.up.mode,
            SectionKind::Down => file
                .migration
                .down
                .as_ref()
                .map_or(crate::migration::TransactionMode::Transactional, |d| d.mode),
        };
        let sql = file.text(statement);
        let words = file.words(statement);
        let parsed = parse_statement(sql);
        let fallback = if parsed.is_ok() && !words.starts_with(&["DROP", "INDEX"]) {
            None
        } else {
            classify::fallback(&words)
        };
        let lock = crate::lock_analysis::analyze(parsed.as_ref().ok(), &words);
        let context = StatementContext {
            sql,
            ast: parsed.as_ref().ok(),
            parse_error: parsed.as_ref().err().map(String::as_str),
            words,
            fallback: fallback.as_ref(),
            phase: file.migration.phase,
            section,
            created_in_section: &created_in_section,
            facts,
            mode,
            lock: &lock,
            held_locks: &held_locks,
            enum_values_added: &enum_values_added,
            is_last_in_section,
            constraints_dropped_if_exists: &constraints_dropped_if_exists,
        };
        let mut used_allows = vec![false; statement.allows.len()];
        for rule in RULES {
            let level = config.level(rule.id);
            if level == Level::Off {
                // An allow for a rule that is off suppresses nothing but is not stale either.
                for (index, allow) in statement.allows.iter().enumerate() {
                    if allow.rule == rule.id {
                        used_allows[index] = true;
                    }
                }
                continue;
            }
            let mut findings = Vec::new();
            (rule.check)(&context, &mut findings);
            if findings.is_empty() {
                continue;
            }
            if let Some(index) = statement.allows.iter().position(|a| a.rule == rule.id) {
                used_allows[index] = true;
                continue;
            }
            for finding in findings {
                diagnostics.push(Diagnostic {
                    file: file.display_path.clone(),
                    line: statement.raw.line,
                    column: statement.raw.column,
                    code: rule.id,
                    severity: if level == Level::Warn {
                        Severity::Warning
                    } else {
                        Severity::Error
                    },
                    message: finding.message,
                    help: Some(finding.help.unwrap_or_else(|| rule.rewrite.to_owned())),
                });
            }
        }
        for (allow, used) in statement.allows.iter().zip(used_allows) {
            if !used {
                diagnostics.push(
                    Diagnostic::error(
                        &file.display_path,
                        allow.line,
                        allow.column,
                        codes::UNUSED_ALLOW,
                        format!(
                            "`-- migrate:allow {}` suppresses nothing: the statement at {}:{} does not trigger it",
                            allow.rule, statement.raw.line, statement.raw.column
                        ),
                    )
                    .with_help("remove the stale allow: it would hide the next real problem"),
                );
            }
        }
        if mode == crate::migration::TransactionMode::Transactional
            && let Some(value) = rules::enum_value_same_transaction::added_enum_value(&context)
        {
            enum_values_added.push((value, statement.raw.line));
        }
        if mode == crate::migration::TransactionMode::Transactional {
            for taken in &lock.locks {
                let table = sql::table_key_of(&taken.table);
                if taken.mode.blocks_writes() && !created_in_section.contains(&table) {
                    held_locks.push(HeldLock {
                        table: taken.table.clone(),
                        mode: taken.mode,
                        line: statement.raw.line,
                    });
                }
            }
        }
        if let Ok(sqlparser::ast::Statement::AlterTable(alter)) = &parsed {
            for operation in &alter.operations {
                if let sqlparser::ast::AlterTableOperation::DropConstraint {
                    if_exists: true,
                    name,
                    ..
                } = operation
                {
                    constraints_dropped_if_exists
                        .push((sql::table_key(&alter.name), sql::ident_key(name)));
                }
            }
        }
        context::record(
            parsed.as_ref().ok(),
            fallback.as_ref(),
            &mut created_in_section,
            facts,
        );
        // The runtime batches every up statement of a backfill file by key: refuse at build
        // time what it could not batch, or could not finish.
        bad_backfill::check(file, statement, sql, &parsed, diagnostics);
    }
}

/// The phase rules apply to a statement: a down part removes things, so it is linted as a
/// contract whatever the file's phase.
pub fn effective_phase(phase: Phase, section: SectionKind) -> Phase {
    match section {
        SectionKind::Down => Phase::Contract,
        SectionKind::Up => phase,
    }
}

#[cfg(test)]
mod hard_cases {
    use crate::lint::testing::lint_example;
    use crate::source::{SourceFile, load_files};

    fn codes(file_name: &str, sql: &str) -> Vec<&'static str> {
        lint_example(file_name, sql)
            .iter()
            .map(|d| d.code)
            .collect()
    }

    /// The statements sqlparser 0.64 fails on that real migrations use (design.md and three
    /// public corpora), written the safe way: none may need an allow.
    #[test]
    fn statements_sqlparser_cannot_parse_do_not_need_an_allow() {
        let cases = [
            "DROP INDEX CONCURRENTLY IF EXISTS idx_a",
            "REINDEX INDEX CONCURRENTLY idx_a",
            "REINDEX (VERBOSE) TABLE CONCURRENTLY t",
            "CREATE INDEX IF NOT EXISTS idx_events_at ON ONLY events (at)",
            "CREATE TABLE IF NOT EXISTS t2 (LIKE t INCLUDING ALL)",
            "CREATE TABLE IF NOT EXISTS t3 (id bigint, CONSTRAINT t3_id_not_null NOT NULL id)",
            "ALTER SEQUENCE IF EXISTS s RESTART WITH 100",
            "ALTER TABLE t ALTER COLUMN c SET STATISTICS 1000",
            "ALTER TABLE t ALTER COLUMN c SET (n_distinct = 100)",
            "ALTER TABLE t ALTER CONSTRAINT t_fk DEFERRABLE INITIALLY DEFERRED",
            "CREATE STATISTICS IF NOT EXISTS s1 (dependencies) ON a, b FROM t",
            "COMMENT ON COLUMN t.c IS $$it's documented$$",
            "COMMENT ON FUNCTION f(integer, text) IS 'does things'",
            "CREATE OR REPLACE FUNCTION f(a int) RETURNS int LANGUAGE sql IMMUTABLE COST 5 AS $$ SELECT a $$",
            "VACUUM (ANALYZE) t",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS mv AS SELECT 1 AS x WITH NO DATA",
        ];
        for sql in cases {
            // Drops belong in contracts; everything else is an expand.
            let file_name = if sql.starts_with("DROP") {
                "0003_x.contract.sql"
            } else {
                "0002_x.expand.sql"
            };
            let found = codes(file_name, &format!("{sql};"));
            assert!(found.is_empty(), "{sql}: {found:?}");
        }
    }

    #[test]
    fn sql_words_in_strings_comments_and_bodies_are_not_statements() {
        let sql = "-- DROP TABLE users; UPDATE users SET a = 1;\n\
/* CREATE INDEX i ON users (a); /* nested: DELETE FROM users; */ */\n\
INSERT INTO notes (body) VALUES ('DROP TABLE users; TRUNCATE users;'), (E'LOCK TABLE users\\';');\n\
CREATE OR REPLACE FUNCTION purge() RETURNS void LANGUAGE plpgsql AS $fn$\n\
BEGIN\n  DELETE FROM sessions;\n  EXECUTE 'DROP TABLE ' || 'old';\nEND\n$fn$;\n\
SELECT \"DROP\" FROM \"TRUNCATE\";";
        assert_eq!(codes("0002_x.expand.sql", sql), Vec::<&str>::new());
    }

    #[test]
    fn a_down_part_is_linted_as_a_contract() {
        let sql = "ALTER TABLE users ADD COLUMN IF NOT EXISTS nickname text;\n\
-- migrate:down\nALTER TABLE users DROP COLUMN IF EXISTS nickname;\nDROP INDEX idx;";
        // The DROP COLUMN is fine in the down part; the blocking DROP INDEX is still caught.
        assert_eq!(
            codes("0002_x.expand.sql", sql),
            ["require-concurrent-index", "require-if-not-exists"]
        );
    }

    /// The lint half of the source test `a_byte_order_mark_is_skipped_but_kept_in_the_checksum`:
    /// a statement right after the mark (invisible in editors) lints clean.
    #[test]
    fn a_statement_right_after_a_byte_order_mark_lints_clean() {
        let any_rule = |_: &str| true;
        let set = load_files(
            &[SourceFile {
                display_path: "migrations/0002_b.sql".to_owned(),
                file_name: "0002_b.sql".to_owned(),
                bytes: "\u{feff}SELECT 1;".as_bytes().to_vec(),
            }],
            &any_rule,
        );
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        let found = crate::lint::lint_files(&set.files, &crate::lint::Config::default());
        assert!(found.is_empty(), "{found:?}");
    }

    #[test]
    fn allow_suppresses_only_its_rule_and_only_the_next_statement() {
        // no-transaction: otherwise the second build also runs under the first one's lock.
        let sql = "-- migrate:no-transaction\n\
-- migrate:allow require-concurrent-index orders is empty in every environment\n\
CREATE INDEX IF NOT EXISTS i1 ON orders (a);\nCREATE INDEX IF NOT EXISTS i2 ON orders (b);";
        let found = lint_example("0002_x.expand.sql", sql);
        let lines: Vec<(u32, &str)> = found.iter().map(|d| (d.line, d.code)).collect();
        assert_eq!(lines, [(4, "require-concurrent-index")]);
    }
}
