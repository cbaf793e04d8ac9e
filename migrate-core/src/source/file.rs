//! One migration file: its name, its text and tokens, its statements and directives walked
//! into up and down parts, and the migration model built from them.

use std::borrow::Cow;

use super::directive::{Allow, Directive, parse_directive};
use super::file_name::{LOWER_CASE_EXTENSION_HELP, is_sql_like, parse_file_name};
use super::folder::SourceFile;
use crate::checksum::Checksum;
use crate::classify::{self, Words};
use crate::diagnostic::{Diagnostic, codes};
use crate::migration::{Migration, Phase, Section, Statement, TransactionMode};
use crate::splitter::{self, Item, RawStatement, Token};

/// Which part of a file a statement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Up,
    Down,
}

/// A statement with what the linter needs beyond the model.
#[derive(Debug, Clone)]
pub struct StatementSource {
    pub section: SectionKind,
    pub raw: RawStatement,
    pub allows: Vec<Allow>,
}

/// A migration file that was read and split successfully.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    pub display_path: String,
    pub source: String,
    pub tokens: Vec<Token>,
    pub migration: Migration,
    /// Up statements first, then down statements, in file order.
    pub statements: Vec<StatementSource>,
}

impl ParsedFile {
    pub fn words(&self, statement: &StatementSource) -> Words<'_> {
        Words::new(&self.source, &self.tokens[statement.raw.tokens.clone()])
    }

    pub fn text(&self, statement: &StatementSource) -> &str {
        &self.source[statement.raw.range.clone()]
    }
}

struct FileParser<'a> {
    source: &'a SourceFile,
    diagnostics: Vec<Diagnostic>,
}

impl FileParser<'_> {
    fn error(
        &mut self,
        line: u32,
        column: u32,
        code: &'static str,
        message: impl Into<String>,
        help: Option<&str>,
    ) {
        let mut diagnostic =
            Diagnostic::error(&self.source.display_path, line, column, code, message);
        diagnostic.help = help.map(str::to_owned);
        self.diagnostics.push(diagnostic);
    }
}

/// Parses one file. `Err` when the file cannot become a migration; `Ok` may still carry
/// diagnostics (bad allows) that do not prevent building the model.
pub fn parse_file(
    source: &SourceFile,
    known_rules: &dyn Fn(&str) -> bool,
) -> Result<(ParsedFile, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut parser = FileParser {
        source,
        diagnostics: Vec::new(),
    };
    let (version, name, phase) = match parse_file_name(&source.file_name) {
        Ok(parts) => parts,
        Err(problem) => {
            let help = if is_sql_like(&source.file_name) && !source.file_name.ends_with(".sql") {
                LOWER_CASE_EXTENSION_HELP
            } else {
                "name files `<version>_<name>[.<phase>].sql`, e.g. `0002_email_verified.expand.sql`; phase is expand (default), backfill or contract"
            };
            parser.error(
                1,
                1,
                codes::BAD_FILE_NAME,
                format!(
                    "`{}` is not a migration file name: {problem}",
                    source.file_name
                ),
                Some(help),
            );
            return Err(parser.diagnostics);
        }
    };
    let text = match std::str::from_utf8(&source.bytes) {
        Ok(text) => text.to_owned(),
        Err(error) => {
            let line = source.bytes[..error.valid_up_to()]
                .iter()
                .filter(|&&b| b == b'\n')
                .count() as u32
                + 1;
            parser.error(
                line,
                1,
                codes::NOT_UTF8,
                "the file is not valid UTF-8",
                Some("save the file as UTF-8"),
            );
            return Err(parser.diagnostics);
        }
    };
    let tokens = match splitter::tokenize(&text) {
        Ok(tokens) => tokens,
        Err(error) => {
            parser.error(
                error.line,
                error.column,
                codes::SYNTAX,
                error.what,
                Some("close the string, identifier, comment or dollar quote"),
            );
            return Err(parser.diagnostics);
        }
    };

    let mut section = SectionKind::Up;
    let mut saw_up_marker = false;
    let mut saw_down_marker = false;
    let mut saw_statement = false;
    let mut pending_allows: Vec<Allow> = Vec::new();
    let mut statements: Vec<StatementSource> = Vec::new();
    let mut requires = None;
    let mut backfill = None;
    // A malformed backfill directive is reported once, not again as a missing one.
    let mut saw_backfill_directive = false;
    let mut no_transaction = false;

    for item in splitter::split(&text, &tokens) {
        match item {
            Item::Statement(raw) => {
                saw_statement = true;
                statements.push(StatementSource {
                    section,
                    raw,
                    allows: std::mem::take(&mut pending_allows),
                });
            }
            Item::LineComment {
                token,
                own_line,
                inside_statement,
            } => {
                let token = &tokens[token];
                let comment = token.text(&text);
                let Some(body) = comment[2..].trim_start().strip_prefix("migrate:") else {
                    continue;
                };
                let (line, column) = (token.line, token.column);
                if !own_line || inside_statement {
                    parser.error(
                        line,
                        column,
                        codes::BAD_DIRECTIVE,
                        if inside_statement {
                            "a `-- migrate:` directive inside a statement (is the statement before it missing its `;`?)"
                        } else {
                            "a `-- migrate:` directive must be on its own line"
                        },
                        Some("put the directive on its own line between statements"),
                    );
                    continue;
                }
                if body.split_whitespace().next() == Some("backfill") {
                    saw_backfill_directive = true;
                }
                let directive = match parse_directive(body, phase, line, column) {
                    Ok(directive) => directive,
                    Err((code, message, help)) => {
                        parser.error(line, column, code, message, Some(help));
                        continue;
                    }
                };
                match directive {
                    Directive::Up => {
                        if saw_up_marker || saw_down_marker || saw_statement {
                            parser.error(line, column, codes::BAD_DIRECTIVE, "`-- migrate:up` must come once, before any statement and before `-- migrate:down`", Some("start the file with `-- migrate:up` or leave it out"));
                        }
                        saw_up_marker = true;
                    }
                    Directive::Down => {
                        if saw_down_marker {
                            parser.error(
                                line,
                                column,
                                codes::BAD_DIRECTIVE,
                                "`-- migrate:down` appears twice",
                                Some("keep one down part at the end of the file"),
                            );
                        }
                        if !pending_allows.is_empty() {
                            flush_unused_allows(&mut parser, &mut pending_allows);
                        }
                        saw_down_marker = true;
                        section = SectionKind::Down;
                    }
                    Directive::Allow(allow) => {
                        if !known_rules(&allow.rule) {
                            parser.error(
                                allow.line,
                                allow.column,
                                codes::UNKNOWN_RULE,
                                format!("`{}` is not a rule id", allow.rule),
                                Some("`migrate explain` lists the rules"),
                            );
                        } else {
                            pending_allows.push(allow);
                        }
                    }
                    Directive::Requires(version) => {
                        if requires.replace(version).is_some() {
                            parser.error(
                                line,
                                column,
                                codes::BAD_DIRECTIVE,
                                "`-- migrate:requires` appears twice",
                                Some("a contract finishes exactly one expand"),
                            );
                        }
                    }
                    Directive::Backfill(spec) => {
                        if backfill.replace(spec).is_some() {
                            parser.error(
                                line,
                                column,
                                codes::BAD_DIRECTIVE,
                                "`-- migrate:backfill` appears twice",
                                Some("one backfill file moves one table"),
                            );
                        }
                    }
                    Directive::NoTransaction => no_transaction = true,
                }
            }
        }
    }
    flush_unused_allows(&mut parser, &mut pending_allows);

    let up_count = statements
        .iter()
        .filter(|s| s.section == SectionKind::Up)
        .count();
    if up_count == 0 {
        parser.error(
            1,
            1,
            codes::EMPTY_FILE,
            "the migration has no statement to apply",
            Some("write the change in the file, or delete the file"),
        );
    }
    if phase == Phase::Backfill && !saw_backfill_directive {
        parser.error(
            1,
            1,
            codes::BAD_DIRECTIVE,
            "a backfill file needs `-- migrate:backfill table=<table> key=<column>`",
            Some("-- migrate:backfill table=users key=id batch=1000 delay=0"),
        );
    }
    if parser
        .diagnostics
        .iter()
        .any(|d| d.code != codes::UNKNOWN_RULE && d.code != codes::UNUSED_ALLOW)
    {
        return Err(parser.diagnostics);
    }

    let section_of = |kind: SectionKind| -> Section {
        let list: Vec<Statement> = statements
            .iter()
            .filter(|s| s.section == kind)
            .map(|s| Statement {
                sql: Cow::Owned(text[s.raw.range.clone()].to_owned()),
                line: s.raw.line,
                column: s.raw.column,
                non_transactional: classify::is_non_transactional(&Words::new(
                    &text,
                    &tokens[s.raw.tokens.clone()],
                )),
            })
            .collect();
        let mode = if no_transaction || list.iter().any(|s| s.non_transactional) {
            TransactionMode::Autocommit
        } else {
            TransactionMode::Transactional
        };
        Section {
            statements: Cow::Owned(list),
            mode,
        }
    };
    let migration = Migration {
        version,
        name: Cow::Owned(name),
        phase,
        file_name: Cow::Owned(source.file_name.clone()),
        checksum: Checksum::of_file(&source.bytes),
        up: section_of(SectionKind::Up),
        down: saw_down_marker.then(|| section_of(SectionKind::Down)),
        requires,
        backfill,
    };
    let diagnostics = std::mem::take(&mut parser.diagnostics);
    Ok((
        ParsedFile {
            display_path: source.display_path.clone(),
            source: text,
            tokens,
            migration,
            statements,
        },
        diagnostics,
    ))
}

fn flush_unused_allows(parser: &mut FileParser<'_>, pending: &mut Vec<Allow>) {
    for allow in pending.drain(..) {
        parser.error(
            allow.line,
            allow.column,
            codes::UNUSED_ALLOW,
            format!(
                "`-- migrate:allow {}` is not followed by a statement in the same part",
                allow.rule
            ),
            Some("put the allow right before the statement it is for, or remove it"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::load_files;
    use crate::source::testing::{any_rule, codes_of, file};

    #[test]
    fn sections_directives_and_modes() {
        let body = "-- migrate:up\nCREATE TABLE IF NOT EXISTS a (id bigint);\n-- migrate:allow require-concurrent-index table is empty\nCREATE INDEX IF NOT EXISTS i ON a (id);\nCREATE INDEX CONCURRENTLY IF NOT EXISTS j ON a (id);\n-- migrate:down\nDROP TABLE IF EXISTS a;\n";
        let set = load_files(&[file("0001_a.sql", body)], &any_rule);
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        let parsed = &set.files[0];
        let migration = &parsed.migration;
        assert_eq!(migration.up.statements.len(), 3);
        assert_eq!(migration.up.mode, TransactionMode::Autocommit);
        assert_eq!(
            migration.down.as_ref().unwrap().mode,
            TransactionMode::Transactional
        );
        assert_eq!(
            parsed.statements[1].allows[0].rule,
            "require-concurrent-index"
        );
        assert_eq!(parsed.statements[1].allows[0].reason, "table is empty");
        assert_eq!(
            (
                migration.up.statements[1].line,
                migration.up.statements[1].column
            ),
            (4, 1)
        );
    }

    #[test]
    fn non_utf8_is_an_error() {
        let source = SourceFile {
            display_path: "m/0001_a.sql".into(),
            file_name: "0001_a.sql".into(),
            bytes: b"SELECT 1;\nSELECT '\xff';".to_vec(),
        };
        let set = load_files(&[source], &any_rule);
        assert_eq!(codes_of(&set), ["not-utf8"]);
        assert_eq!(set.diagnostics[0].line, 2);
    }

    #[test]
    fn a_byte_order_mark_is_skipped_but_kept_in_the_checksum() {
        let body = "\u{feff}-- migrate:up\nCREATE TABLE IF NOT EXISTS a (id bigint);\n-- migrate:down\nDROP TABLE IF EXISTS a;\n";
        let set = load_files(&[file("0001_a.sql", body)], &any_rule);
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        let migration = &set.files[0].migration;
        let first = &migration.up.statements[0];
        assert_eq!(first.sql, "CREATE TABLE IF NOT EXISTS a (id bigint)");
        assert_eq!((first.line, first.column), (2, 1));
        assert_eq!(migration.down.as_ref().unwrap().statements[0].line, 4);
        assert_eq!(migration.checksum, Checksum::of_file(body.as_bytes()));
        assert_ne!(
            migration.checksum,
            Checksum::of_file(body.trim_start_matches('\u{feff}').as_bytes())
        );
        // A statement right after the mark: the mark is invisible in editors, so column 1.
        let set = load_files(&[file("0002_b.sql", "\u{feff}SELECT 1;")], &any_rule);
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        let statement = &set.files[0].migration.up.statements[0];
        assert_eq!(
            (statement.sql.as_ref(), statement.line, statement.column),
            ("SELECT 1", 1, 1)
        );
    }

    #[test]
    fn directives_must_stand_alone() {
        let set = load_files(
            &[file(
                "0001_a.sql",
                "SELECT 1; -- migrate:down\nSELECT\n-- migrate:down\n2;",
            )],
            &any_rule,
        );
        assert_eq!(codes_of(&set), ["bad-directive", "bad-directive"]);
    }
}
