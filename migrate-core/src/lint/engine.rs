//! The lint engine: runs every rule of [`RULES`] on every statement of a set, with the
//! context rules need (tables created earlier in the part; what a rule remembers beyond that,
//! it keeps itself), then applies `-- migrate:allow` and the configuration.
//!
//! Each file on its own first, the files spread over every core: its statements parsed,
//! classified and lock-analysed once, then judged by every rule whose memory lasts at most
//! one part of one file. Meanwhile the calling thread lets the rules whose memory spans files
//! read what they need of the whole set ([`RuleMemory::start_set`]). Then, on that thread and
//! in version order, each file as soon as the files before it are done: those rules judge the
//! statements already analysed, and the findings are filtered by allows and
//! levels. So the result never depends on how the threads ran, and the syntax trees of a
//! file are dropped once it is done.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use super::bad_backfill;
use super::compare_columns;
use super::config::{Config, Level};
use super::context::{self, StatementContext};
use super::coverage::{self, Coverage, Place};
use super::registry::RULES;
use super::rule::{Check, Finding, Rule, RuleMemory};
use crate::classify::Words;
use crate::classify::{self, Fallback};
use crate::diagnostic::{Diagnostic, Severity, codes};
use crate::lock_analysis::{DeclaredSchema, LockAnalysis};
use crate::migration::{Phase, TransactionMode};
use crate::parallel;
use crate::source::{ParsedFile, SectionKind};
use crate::splitter::Token;
use crate::sql::{ReadStatement, read_statement};

/// The rule whose findings mean "the linter could not read this statement".
const UNPARSEABLE: &str = "unparseable";

/// Lints parsed files in version order and returns every diagnostic, sorted. Uses every core.
pub fn lint_files(files: &[ParsedFile], config: &Config) -> Vec<Diagnostic> {
    lint_set(files, config).diagnostics
}

/// What linting a set found.
#[derive(Debug, Clone, Default)]
pub struct LintedSet {
    /// Every diagnostic, sorted.
    pub diagnostics: Vec<Diagnostic>,
    /// How each statement was read.
    pub coverage: Coverage,
    /// The tables each statement locks (its lock analysis, the locks the set's declarations
    /// add included), per file by its display path, up statements then down statements as
    /// in [`ParsedFile::statements`]: the runtime names who holds them after a
    /// `lock_timeout`, without analysing the statements again.
    pub locked_tables: BTreeMap<String, Vec<Vec<String>>>,
}

/// Lints parsed files in version order: every diagnostic, sorted, and how each statement was
/// read. Uses every core.
pub fn lint_set(files: &[ParsedFile], config: &Config) -> LintedSet {
    lint_set_on(files, config, parallel::threads_for(files.len()))
}

/// [`lint_set`] on `threads` threads: the result is the same for any number.
pub(crate) fn lint_set_on(files: &[ParsedFile], config: &Config, threads: usize) -> LintedSet {
    let mut ordered: Vec<&ParsedFile> = files.iter().collect();
    ordered.sort_by_key(|f| f.migration.version);
    let mut set = LintedSet::default();
    parallel::for_each_in_order(
        &ordered,
        threads,
        |file| lint_file(file, config),
        // The rules whose memory spans files read what they need of the whole set while the
        // first files are linted.
        || {
            let mut set_wide = Checker::of_reach(Reach::Set, config);
            for (_, checker) in &mut set_wide {
                if let Checker::WithMemory(memory) = checker {
                    memory.start_set(&ordered);
                }
            }
            (DeclaredSchema::new(), set_wide)
        },
        // In version order, each file as soon as the files before it are done; its syntax
        // trees are dropped here, so they never all live at once.
        |(schema, set_wide), index, mut linted| {
            let file = ordered[index];
            add_declared_locks(file, &mut linted.statements, schema);
            run_checkers(file, &mut linted.statements, set_wide);
            let locked = linted
                .statements
                .iter()
                .map(|statement| tables_of(&statement.lock))
                .collect();
            set.locked_tables.insert(file.display_path.clone(), locked);
            apply_allows_and_levels(file, linted, config, &mut set);
        },
    );
    set.diagnostics.extend(compare_columns::check(&ordered));
    crate::diagnostic::sort(&mut set.diagnostics);
    set
}

/// Each table of `lock` once, in its order.
fn tables_of(lock: &LockAnalysis) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    for table_lock in &lock.locks {
        if !tables.contains(&table_lock.table) {
            tables.push(table_lock.table.clone());
        }
    }
    tables
}

/// Adds to each statement's lock analysis the locks on other tables that the foreign keys,
/// views and triggers declared before it imply (only the rules of set reach read them), and
/// records what the file's up part declares. A down part is analysed with what the set has
/// declared up to its own up part, and declares nothing for later files.
fn add_declared_locks(
    file: &ParsedFile,
    statements: &mut [AnalysedStatement],
    schema: &mut DeclaredSchema,
) {
    for (statement, analysed) in file.statements.iter().zip(statements) {
        match (&analysed.literal_insert_into, read_of(&analysed.reading)) {
            (Some(table), _) => schema.extend_insert(table, &mut analysed.lock),
            (None, Some(read)) => schema.extend(read, Arc::make_mut(&mut analysed.lock)),
            (None, None) => {}
        }
        if statement.section == SectionKind::Up {
            let tokens = match &analysed.tokens {
                Some(tokens) => Cow::Borrowed(tokens.as_slice()),
                None => Cow::Owned(file.tokens(statement)),
            };
            if let Some(read) = read_of(&analysed.reading) {
                schema.record(read, &Words::new(&file.source, &tokens));
            }
        }
    }
}

/// One statement as every rule sees it: parsed once, classified, lock-analysed, and what the
/// rules found in it so far.
struct AnalysedStatement {
    /// How it was read, and what its keywords say when that is needed; `None` once dropped
    /// ([`forget_literal_rows`]). Boxed: a file's statements are kept until the set pass,
    /// and most of a big file's are literal INSERTs (issue 21, item 20).
    reading: Reading,
    /// Shared by consecutive literal INSERTs that lock alike ([`share_literal_locks`]).
    lock: Arc<LockAnalysis>,
    /// The table of an `INSERT ... VALUES` whose tree was dropped ([`forget_literal_rows`]),
    /// as the declared schema names tables.
    literal_insert_into: Option<Box<str>>,
    /// `(index in RULES, finding)`, before allows and levels.
    findings: Vec<(usize, Finding)>,
    /// Its tokens, kept from the first pass for the set pass (lexing is a fifth of the
    /// work); `None` once dropped with the reading, the set pass then lexes it again.
    tokens: Option<Vec<Token>>,
}

/// A statement's [`AnalysedStatement::reading`]: how it was read (functions of the field, so
/// that the statement's other fields can be borrowed beside it).
type Reading = Option<Box<(ReadStatement, Option<Fallback>)>>;

/// `None` once the reading was dropped ([`forget_literal_rows`]): parsed, no tree kept.
fn read_of(reading: &Reading) -> Option<&ReadStatement> {
    reading.as_deref().map(|(read, _)| read)
}

/// The statement's tree, while it is kept.
fn ast_of(reading: &Reading) -> Option<&sqlparser::ast::Statement> {
    read_of(reading).and_then(ReadStatement::ast)
}

fn fallback_of(reading: &Reading) -> Option<&Fallback> {
    reading
        .as_deref()
        .and_then(|(_, fallback)| fallback.as_ref())
}

/// A file after the first pass: its statements, and what the backfill check found.
struct LintedFile {
    statements: Vec<AnalysedStatement>,
    diagnostics: Vec<Diagnostic>,
}

/// How far a rule's memory reaches, which decides where it runs.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    /// One statement, or one part of one file: with the file, on any thread.
    File,
    /// Across files: on the calling thread, in version order.
    Set,
}

/// A rule's check during one lint: with the rule's own memory when it keeps one.
enum Checker {
    Statement(fn(&StatementContext<'_>, &mut Vec<Finding>)),
    WithMemory(Box<dyn RuleMemory>),
}

impl Checker {
    /// The checkers of the rules of one reach that are not off: `(index in RULES, checker)`.
    fn of_reach(reach: Reach, config: &Config) -> Vec<(usize, Checker)> {
        RULES
            .iter()
            .enumerate()
            .filter(|(_, rule)| config.level(rule.id) != Level::Off)
            .filter_map(|(index, rule)| {
                let checker = match (rule.check, reach) {
                    (Check::Statement(check), Reach::File) => Checker::Statement(check),
                    (Check::WithPartMemory(start), Reach::File)
                    | (Check::WithMemory(start), Reach::Set) => Checker::WithMemory(start()),
                    _ => return None,
                };
                Some((index, checker))
            })
            .collect()
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

/// The first pass over one file: analyses each statement once, then runs the rules whose
/// memory stays within the file, one statement at a time, so that what is dropped after them
/// ([`forget_literal_rows`]) never piles up.
fn lint_file(file: &ParsedFile, config: &Config) -> LintedFile {
    let mut diagnostics = Vec::new();
    let mut checkers = Checker::of_reach(Reach::File, config);
    let mut walk = CheckerWalk::start(&mut checkers);
    let mut statements = Vec::with_capacity(file.statements.len());
    let mut literal_locks = None;
    for (index, statement) in file.statements.iter().enumerate() {
        let sql = file.text(statement);
        let tokens = file.tokens(statement);
        let words = Words::new(&file.source, &tokens);
        let read = read_statement(sql, &words);
        let fallback = if read.parse_error().is_none() && !words.starts_with(&["DROP", "INDEX"]) {
            None
        } else {
            classify::fallback(&words)
        };
        let lock = crate::lock_analysis::analyze(&read, &words);
        // The runtime batches every up statement of a backfill file by key: refuse at
        // build time what it could not batch, or could not finish.
        bad_backfill::check(file, statement, sql, &read, &mut diagnostics);
        let mut analysed = AnalysedStatement {
            reading: Some(Box::new((read, fallback))),
            lock: Arc::new(lock),
            literal_insert_into: None,
            findings: Vec::new(),
            tokens: None,
        };
        walk.step(file, index, &words, &mut analysed, &mut checkers);
        analysed.tokens = Some(tokens);
        forget_literal_rows(&mut analysed);
        share_literal_locks(&mut analysed, &mut literal_locks);
        statements.push(analysed);
    }
    LintedFile {
        statements,
        diagnostics,
    }
}

/// Drops the syntax tree of an `INSERT ... VALUES` once the file's rules have judged it: the
/// rules of set reach find nothing in literal rows (they read the lock analysis, kept), and a
/// tree of a few kilobytes per statement, kept until the set pass reaches the file, took
/// 6.4 GB for a 50 MB file of 500,000 INSERTs (issue 21, item 20). Its table is kept for the
/// locks the set's triggers add.
fn forget_literal_rows(statement: &mut AnalysedStatement) {
    if let Some(sqlparser::ast::Statement::Insert(insert)) = ast_of(&statement.reading)
        && let (sqlparser::ast::TableObject::TableName(table), Some(source)) =
            (&insert.table, &insert.source)
        && matches!(*source.body, sqlparser::ast::SetExpr::Values(_))
        && source.with.is_none()
    {
        // A parsed INSERT has no parse error, split ALTER or fallback: the tree was all.
        statement.literal_insert_into = Some(crate::lock_analysis::name(table).into());
        statement.reading = None;
        statement.tokens = None;
    }
}

/// Makes a literal INSERT's lock analysis the one of the previous literal INSERT when they
/// are equal: 500,000 INSERTs into one table lock the same way, and one analysis each took
/// about a file's size again (issue 21, item 20). The set pass copies one before changing it.
fn share_literal_locks(
    statement: &mut AnalysedStatement,
    previous: &mut Option<Arc<LockAnalysis>>,
) {
    if statement.literal_insert_into.is_none() {
        return;
    }
    match previous {
        Some(shared) if **shared == *statement.lock => statement.lock = Arc::clone(shared),
        _ => *previous = Some(Arc::clone(&statement.lock)),
    }
}

/// Walks a file's statements in order with their context, runs `checkers` on each and
/// records their findings on the statement.
fn run_checkers(
    file: &ParsedFile,
    statements: &mut [AnalysedStatement],
    checkers: &mut [(usize, Checker)],
) {
    let mut walk = CheckerWalk::start(checkers);
    for (index, analysed) in statements.iter_mut().enumerate() {
        let tokens = analysed
            .tokens
            .take()
            .unwrap_or_else(|| file.tokens(&file.statements[index]));
        let words = Words::new(&file.source, &tokens);
        walk.step(file, index, &words, analysed, checkers);
    }
}

/// What [`run_checkers`] carries from one statement of a file to the next, so that a file's
/// statements can also be judged one at a time as they are analysed.
struct CheckerWalk {
    created_in_section: HashSet<String>,
    filled_in_section: HashSet<String>,
    section: SectionKind,
}

impl CheckerWalk {
    fn start(checkers: &mut [(usize, Checker)]) -> CheckerWalk {
        for (_, checker) in checkers.iter_mut() {
            checker.start_part();
        }
        CheckerWalk {
            created_in_section: HashSet::new(),
            filled_in_section: HashSet::new(),
            section: SectionKind::Up,
        }
    }

    /// Runs `checkers` on the `index`-th statement of `file`, analysed as `analysed`.
    fn step(
        &mut self,
        file: &ParsedFile,
        index: usize,
        words: &Words<'_>,
        analysed: &mut AnalysedStatement,
        checkers: &mut [(usize, Checker)],
    ) {
        let statement = &file.statements[index];
        let is_last_in_section = file
            .statements
            .get(index + 1)
            .is_none_or(|next| next.section != statement.section);
        if statement.section != self.section {
            self.section = statement.section;
            self.created_in_section.clear();
            self.filled_in_section.clear();
            for (_, checker) in checkers.iter_mut() {
                checker.start_part();
            }
        }
        let section = self.section;
        let mode = match section {
            SectionKind::Up => file.migration.up.mode,
            SectionKind::Down => file
                .migration
                .down
                .as_ref()
                .map_or(TransactionMode::Transactional, |d| d.mode),
        };
        let words = *words;
        let context = StatementContext {
            ast: ast_of(&analysed.reading),
            parse_error: read_of(&analysed.reading).and_then(ReadStatement::parse_error),
            split_alter: read_of(&analysed.reading).and_then(ReadStatement::split_alter),
            skipped: read_of(&analysed.reading).and_then(ReadStatement::skipped),
            words,
            fallback: fallback_of(&analysed.reading),
            phase: file.migration.phase,
            section,
            line: statement.raw.line,
            created_in_section: &self.created_in_section,
            filled_in_section: &self.filled_in_section,
            mode,
            lock: &analysed.lock,
            is_last_in_section,
        };
        let mut findings = Vec::new();
        for (rule, checker) in checkers.iter() {
            checker.check(&context, &mut findings);
            analysed
                .findings
                .extend(findings.drain(..).map(|finding| (*rule, finding)));
        }
        for (_, checker) in checkers.iter_mut() {
            checker.record(&context);
        }
        context::record_new_tables(
            ast_of(&analysed.reading),
            fallback_of(&analysed.reading),
            &words,
            &mut self.created_in_section,
            &mut self.filled_in_section,
        );
    }
}

/// Turns a file's findings into diagnostics: a finding of a rule the statement allows is
/// dropped, and an allow that drops nothing is itself reported.
fn apply_allows_and_levels(
    file: &ParsedFile,
    linted: LintedFile,
    config: &Config,
    set: &mut LintedSet,
) {
    let diagnostics = &mut set.diagnostics;
    for (statement, analysed) in file.statements.iter().zip(linted.statements) {
        let flagged = analysed
            .findings
            .iter()
            .any(|(rule, _)| RULES[*rule].id == UNPARSEABLE);
        let reading = coverage::reading(
            read_of(&analysed.reading),
            fallback_of(&analysed.reading),
            flagged,
        );
        set.coverage.add(reading, || Place {
            file: file.display_path.clone(),
            line: statement.raw.line,
            column: statement.raw.column,
        });
        let mut used_allows: Vec<bool> = statement
            .allows
            .iter()
            // An allow for a rule that is off suppresses nothing but is not stale either.
            .map(|allow| config.level(&allow.rule) == Level::Off)
            .collect();
        for (rule_index, finding) in analysed.findings {
            let rule: &Rule = RULES[rule_index];
            if let Some(index) = statement.allows.iter().position(|a| a.rule == rule.id) {
                used_allows[index] = true;
                continue;
            }
            let (line, column) = finding
                .at
                .unwrap_or((statement.raw.line, statement.raw.column));
            diagnostics.push(Diagnostic {
                file: file.display_path.clone(),
                line,
                column,
                code: rule.id,
                severity: if config.level(rule.id) == Level::Warn {
                    Severity::Warning
                } else {
                    Severity::Error
                },
                message: finding.message,
                help: Some(finding.help.unwrap_or_else(|| rule.rewrite.to_owned())),
            });
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
    }
    diagnostics.extend(linted.diagnostics);
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

    /// The statements sqlparser 0.64 fails on that real migrations use (from three public
    /// corpora), written the safe way: none may need an allow.
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

    /// A view is not handed to sqlparser; its lock analysis, and what it declares for later
    /// statements (a `DROP TABLE ... CASCADE` drops the views reading the table), are those
    /// its tree gave.
    #[test]
    fn a_view_read_from_its_keywords_locks_and_declares_as_its_tree_did() {
        use crate::classify::Words;
        use crate::lock_analysis::{DeclaredSchema, analyze};
        use crate::splitter::tokenize;
        use crate::sql::{ReadStatement, parse_statement, read_statement};

        for sql in [
            "CREATE VIEW v AS SELECT a FROM t",
            "CREATE OR REPLACE VIEW public.\"V\" (a) AS SELECT a FROM t JOIN u ON true",
            "CREATE MATERIALIZED VIEW IF NOT EXISTS App.mv AS SELECT 1 AS x FROM t",
            "CREATE OR REPLACE MATERIALIZED VIEW \"Mv\" AS SELECT * FROM t",
        ] {
            let tokens = tokenize(sql).unwrap();
            let words = Words::new(sql, &tokens);
            let read = read_statement(sql, &words);
            assert!(read.skipped().is_some(), "{sql}: {read:?}");
            assert!(
                read.ast().is_none() && read.parse_error().is_none(),
                "{sql}"
            );
            let parsed = ReadStatement::Parsed(Box::new(parse_statement(sql).unwrap()));
            assert_eq!(analyze(&read, &words), analyze(&parsed, &words), "{sql}");
            let (mut from_keywords, mut from_tree) = (DeclaredSchema::new(), DeclaredSchema::new());
            from_keywords.record(&read, &words);
            from_tree.record(&parsed, &words);
            for later in ["DROP TABLE t CASCADE", "DROP TABLE u CASCADE"] {
                assert_eq!(
                    from_keywords.analyze_sql(later),
                    from_tree.analyze_sql(later),
                    "{sql}; {later}"
                );
            }
        }
        // sqlparser 0.64 cannot parse `WITH NO DATA`: such a view was a benign statement of
        // unknown kind; read from its head, it creates the view and runs no query.
        let sql = "create materialized view mv as select 1 from t with no data";
        let tokens = tokenize(sql).unwrap();
        let words = Words::new(sql, &tokens);
        assert!(parse_statement(sql).is_err());
        let analysis = analyze(&read_statement(sql, &words), &words);
        assert_eq!(analysis.creates.as_deref(), Some("mv"));
        assert_eq!(analysis.work, crate::lock_analysis::TableWork::None);
        // Not a view's head: parsed as before.
        for sql in [
            "CREATE VIEW v",
            "CREATE VIEW AS SELECT 1",
            "CREATE TABLE v AS SELECT 1",
        ] {
            let tokens = tokenize(sql).unwrap();
            let read = read_statement(sql, &Words::new(sql, &tokens));
            assert!(read.skipped().is_none(), "{sql}");
        }
        assert_eq!(
            codes("0002_x.expand.sql", "CREATE VIEW v AS SELECT FROM WHERE;"),
            Vec::<&str>::new()
        );
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
                bytes: "\u{feff}SELECT 1;".as_bytes().into(),
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

    /// A name written quoted (every Prisma migration) is shown once quoted, in messages and
    /// in the rewrites, and a finding about one action of a multi-line `ALTER TABLE` points at
    /// that action's line and column.
    #[test]
    fn quoted_names_are_quoted_once_and_findings_point_at_their_action() {
        let sql = "CREATE TABLE IF NOT EXISTS \"Team\" (id bigint PRIMARY KEY);\n\
-- file: 0002_prisma.expand.sql\n\
CREATE INDEX \"Envelope_teamId_idx\" ON \"Envelope\"(\"teamId\");\n\
-- file: 0003_prisma.expand.sql\n\
ALTER TABLE \"Document\"\n  ADD COLUMN IF NOT EXISTS \"x\" text,\n  ALTER COLUMN \"y\" TYPE bigint,\n    ADD CONSTRAINT \"fk\" FOREIGN KEY (\"teamId\") REFERENCES \"Team\"(id);\n\
-- file: 0004_prisma.expand.sql\n\
ALTER TABLE app.\"Document\" ALTER COLUMN \"x\" SET NOT NULL;\n\
-- file: 0005_prisma.expand.sql\n\
ALTER TABLE \"Doc2\" DROP COLUMN IF EXISTS \"a\";\n";
        let found = lint_example("0001_team.expand.sql", sql);
        for diagnostic in &found {
            let text = format!(
                "{} {}",
                diagnostic.message,
                diagnostic.help.as_deref().unwrap_or("")
            );
            assert!(!text.contains("\"\""), "quoted twice: {diagnostic:?}");
            assert!(
                !text.contains("\"_"),
                "a name built from quoted parts: {diagnostic:?}"
            );
        }
        let place = |code: &str, file: &str| {
            found
                .iter()
                .filter(|d| d.code == code && d.file.ends_with(file))
                .map(|d| (d.line, d.column))
                .collect::<Vec<_>>()
        };
        let at_3 = "0003_prisma.expand.sql";
        assert_eq!(place("column-type-change", at_3), [(3, 3)]);
        assert_eq!(place("drop-in-expand", at_3), [(3, 3)]);
        assert_eq!(place("constraint-not-valid", at_3), [(4, 5)]);
        assert_eq!(place("foreign-key-without-index", at_3), [(4, 5)]);
        // A statement-level finding stays at the statement.
        assert_eq!(
            place("require-concurrent-index", "0002_prisma.expand.sql"),
            [(1, 1)]
        );
        let message = |code: &str| {
            found
                .iter()
                .find(|d| d.code == code)
                .map(|d| format!("{} | {}", d.message, d.help.as_deref().unwrap_or("")))
                .unwrap_or_default()
        };
        assert!(
            message("require-concurrent-index").contains("writes to \"Envelope\" for"),
            "{found:#?}"
        );
        assert!(
            message("set-not-null-scan").contains("all of app.\"Document\" under"),
            "{found:#?}"
        );
        assert!(
            message("set-not-null-scan").contains("ADD CONSTRAINT \"Document_x_not_null\" CHECK"),
            "{found:#?}"
        );
        assert!(
            message("foreign-key-without-index")
                .contains("IF NOT EXISTS \"Document_teamId_idx\" ON \"Document\" (\"teamId\")"),
            "{found:#?}"
        );
    }
}

#[cfg(test)]
mod threads {
    use std::collections::BTreeSet;

    use super::lint_set_on;
    use crate::lint::{Config, RULES, rule};
    use crate::source::{SourceFile, load_files, parse_file_name};

    /// Every file of every rule's examples, bad and good, as one set with versions in
    /// declaration order, so per-file and set-wide rules both find things.
    fn every_example_as_one_set() -> Vec<SourceFile> {
        let mut sources = Vec::new();
        for example in RULES.iter().flat_map(|r| r.bad.iter().chain(r.good)) {
            for (name, sql) in example.files() {
                let (_, _, phase) = parse_file_name(&name).expect("example file names parse");
                let version = sources.len() + 1;
                let name = format!("{version:05}_example.{phase}.sql");
                sources.push(SourceFile {
                    display_path: format!("migrations/{name}"),
                    file_name: name,
                    bytes: sql.into_bytes().into(),
                });
            }
        }
        sources
    }

    #[test]
    fn the_findings_are_the_same_on_any_number_of_threads() {
        let set = load_files(&every_example_as_one_set(), &|id| rule(id).is_some());
        let config = Config::default();
        let one_thread = lint_set_on(&set.files, &config, 1).diagnostics;
        let rules_found: BTreeSet<&str> = one_thread.iter().map(|d| d.code).collect();
        // Most rules fire somewhere in the set, set-wide ones included.
        assert!(rules_found.len() > RULES.len() / 2, "{rules_found:?}");
        assert!(rules_found.contains("set-not-null-scan"));
        for threads in [2, 3, 8] {
            assert_eq!(
                lint_set_on(&set.files, &config, threads).diagnostics,
                one_thread,
                "{threads} threads"
            );
        }
    }
}
