//! The lint engine: runs every rule of [`RULES`] on every statement of a set, in version
//! order, with the context rules need (tables created earlier in the part; what a rule
//! remembers beyond that, it keeps itself), then applies `-- migrate:allow` and the
//! configuration.

use std::collections::HashSet;

use super::bad_backfill;
use super::config::{Config, Level};
use super::context::{self, StatementContext};
use super::registry::RULES;
use super::rule::{Check, Finding, Rule, RuleMemory};
use crate::classify;
use crate::diagnostic::{Diagnostic, Severity, codes};
use crate::migration::{Phase, TransactionMode};
use crate::source::{ParsedFile, SectionKind};
use crate::sql::read_statement;

/// Lints parsed files in version order and returns every diagnostic, sorted.
pub fn lint_files(files: &[ParsedFile], config: &Config) -> Vec<Diagnostic> {
    let mut diagnostics = Vec::new();
    let mut ordered: Vec<&ParsedFile> = files.iter().collect();
    ordered.sort_by_key(|f| f.migration.version);
    let mut checkers: Vec<(&Rule, Checker)> = RULES
        .iter()
        .map(|&rule| (rule, Checker::new(rule)))
        .collect();
    for (_, checker) in &mut checkers {
        if let Checker::WithMemory(memory) = checker {
            memory.start_set(&ordered);
        }
    }
    for file in ordered {
        lint_file(file, config, &mut checkers, &mut diagnostics);
    }
    crate::diagnostic::sort(&mut diagnostics);
    diagnostics
}

/// A rule's check during one lint of a set: with the rule's own memory when it keeps one.
enum Checker {
    Statement(fn(&StatementContext<'_>, &mut Vec<Finding>)),
    WithMemory(Box<dyn RuleMemory>),
}

impl Checker {
    fn new(rule: &Rule) -> Checker {
        match rule.check {
            Check::Statement(check) => Checker::Statement(check),
            Check::WithMemory(start) => Checker::WithMemory(start()),
        }
    }

    fn check(&self, context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
        match self {
            Checker::Statement(check) => check(context, findings),
            Checker::WithMemory(memory) => memory.check(context, findings),
        }
    }

    fn start_part(&mut self) {
        if let Checker::WithMemory(memory) = self {
            memory.start_part();
        }
    }

    fn record(&mut self, context: &StatementContext<'_>) {
        if let Checker::WithMemory(memory) = self {
            memory.record(context);
        }
    }
}

fn lint_file(
    file: &ParsedFile,
    config: &Config,
    checkers: &mut [(&Rule, Checker)],
    diagnostics: &mut Vec<Diagnostic>,
) {
    let mut created_in_section: HashSet<String> = HashSet::new();
    let mut filled_in_section: HashSet<String> = HashSet::new();
    for (_, checker) in checkers.iter_mut() {
        checker.start_part();
    }
    let mut section = SectionKind::Up;
    for (index, statement) in file.statements.iter().enumerate() {
        let is_last_in_section = file
            .statements
            .get(index + 1)
            .is_none_or(|next| next.section != statement.section);
        if statement.section != section {
            section = statement.section;
            created_in_section.clear();
            filled_in_section.clear();
            for (_, checker) in checkers.iter_mut() {
                checker.start_part();
            }
        }
        let mode = match section {
            SectionKind::Up => file.migration.up.mode,
            SectionKind::Down => file
                .migration
                .down
                .as_ref()
                .map_or(TransactionMode::Transactional, |d| d.mode),
        };
        let sql = file.text(statement);
        let words = file.words(statement);
        let read = read_statement(sql, &words);
        let fallback = if read.parse_error.is_none() && !words.starts_with(&["DROP", "INDEX"]) {
            None
        } else {
            classify::fallback(&words)
        };
        let lock = crate::lock_analysis::analyze(&read, &words);
        let context = StatementContext {
            ast: read.ast.as_ref(),
            parse_error: read.parse_error.as_deref(),
            split_alter: read.split_alter.as_ref(),
            words,
            fallback: fallback.as_ref(),
            phase: file.migration.phase,
            section,
            line: statement.raw.line,
            created_in_section: &created_in_section,
            filled_in_section: &filled_in_section,
            mode,
            lock: &lock,
            is_last_in_section,
        };
        let mut used_allows = vec![false; statement.allows.len()];
        for (rule, checker) in checkers.iter() {
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
            checker.check(&context, &mut findings);
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
        for (_, checker) in checkers.iter_mut() {
            checker.record(&context);
        }
        context::record_new_tables(
            read.ast.as_ref(),
            fallback.as_ref(),
            &words,
            &mut created_in_section,
            &mut filled_in_section,
        );
        // The runtime batches every up statement of a backfill file by key: refuse at build
        // time what it could not batch, or could not finish.
        bad_backfill::check(file, statement, sql, &read, diagnostics);
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

    /// The statements sqlparser 0.64 fails on that real migrations use (docs/design.md,
    /// "Reading SQL", and three public corpora), written the safe way: none may need an allow.
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
            // PostgreSQL 16-18 forms, in ALTER TABLEs read action by action.
            "ALTER TABLE t ALTER CONSTRAINT t_fk INITIALLY DEFERRED",
            "ALTER TABLE t ALTER CONSTRAINT t_fk NOT DEFERRABLE",
            "ALTER TABLE t ALTER CONSTRAINT t_fk DEFERRABLE INITIALLY IMMEDIATE",
            "ALTER TABLE t ALTER CONSTRAINT t_fk NOT ENFORCED",
            "ALTER TABLE t ADD CONSTRAINT t_c_not_null NOT NULL c NOT VALID",
            "ALTER TABLE t ALTER COLUMN c SET STATISTICS DEFAULT",
            "ALTER TABLE t ALTER COLUMN c SET STORAGE EXTERNAL, ALTER COLUMN c SET COMPRESSION lz4",
            "ALTER TABLE t ALTER COLUMN id SET GENERATED BY DEFAULT",
            "ALTER TABLE t ALTER COLUMN id RESTART WITH 1000",
            "ALTER TABLE t CLUSTER ON t_pkey",
            "ALTER TABLE t SET WITHOUT CLUSTER",
            "CREATE PUBLICATION p FOR TABLE t",
            "ALTER PUBLICATION p ADD TABLE t",
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

    /// One action sqlparser cannot parse (here PostgreSQL 18's named NOT NULL) used to make
    /// the whole ALTER TABLE unreadable, hiding the primary key build, the SET NOT NULL scan
    /// and the dropped columns beside it.
    #[test]
    fn every_action_of_an_unparseable_alter_table_is_linted() {
        let sql = "ALTER TABLE community_follower\n\
    DROP CONSTRAINT IF EXISTS community_actions_pkey,\n\
    ADD CONSTRAINT community_follower_pkey PRIMARY KEY (community_id, person_id),\n\
    ALTER COLUMN published SET NOT NULL,\n\
    ADD CONSTRAINT community_follower_pending_not_null NOT NULL pending,\n\
    ALTER CONSTRAINT community_follower_person_fk INITIALLY DEFERRED,\n\
    DROP COLUMN IF EXISTS followed,\n\
    SET ACCESS METHOD heap2;";
        let found: Vec<(&str, String)> = lint_example("0002_x.expand.sql", sql)
            .into_iter()
            .map(|d| (d.code, d.message))
            .collect();
        let has = |code: &str, text: &str| {
            found
                .iter()
                .any(|(c, message)| *c == code && message.contains(text))
        };
        assert!(has("unique-via-index", "community_follower"), "{found:#?}");
        assert!(
            has("set-not-null-scan", "SET NOT NULL on published"),
            "{found:#?}"
        );
        assert!(has("set-not-null-scan", "NOT NULL pending"), "{found:#?}");
        assert!(
            has("drop-in-expand", "community_actions_pkey"),
            "{found:#?}"
        );
        assert!(has("unparseable", "SET ACCESS METHOD heap2"), "{found:#?}");
        // The deferrability change is read and harmless: the only unparseable action is one.
        assert_eq!(found.iter().filter(|(c, _)| *c == "unparseable").count(), 1);
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
