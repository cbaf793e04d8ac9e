//! One migration file: its name, its text and tokens, its statements and directives walked
//! into up and down parts, and the migration model built from them.

use std::borrow::Cow;

use super::directive::{Allow, Directive, parse_directive};
use super::folder::SourceFile;
use super::layout::{DownFile, Layout, MigrationSource};
use crate::checksum::Checksum;
use crate::classify::{self, Words};
use crate::diagnostic::{Diagnostic, codes};
use crate::migration::{BackfillSpec, Migration, Phase, Section, Statement, TransactionMode};
use crate::splitter::{self, Item, RawStatement, Token};

/// Which part of a file a statement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    /// Before `-- migrate:down` (after `-- migrate:up` when the file has it).
    Up,
    /// After `-- migrate:down`: linted as a contract, since it removes things.
    Down,
}

/// A statement with what the linter needs beyond the model.
#[derive(Debug, Clone)]
pub struct StatementSource {
    /// The part it belongs to.
    pub section: SectionKind,
    pub(crate) raw: RawStatement,
    /// PostgreSQL refuses to run it inside a transaction block (read with its tokens).
    pub(crate) non_transactional: bool,
    /// The `-- migrate:allow` lines between the previous statement and this one: they apply
    /// to this statement alone.
    pub allows: Vec<Allow>,
}

/// A migration file that was read and split successfully.
#[derive(Debug, Clone)]
pub struct ParsedFile {
    /// Path shown in diagnostics (`migrations/0001_users.sql`).
    pub display_path: String,
    /// The file's text (valid UTF-8, as read).
    pub source: String,
    /// The migration the file makes, as it is embedded and applied.
    pub migration: Migration,
    /// Up statements first, then down statements, in file order.
    pub statements: Vec<StatementSource>,
    /// The down part's own file, in layouts that keep it apart (sqlx's `.down.sql`, ...).
    pub down_file: Option<DownFile>,
}

impl ParsedFile {
    /// The statement's tokens, read again from its text: a file's tokens are not kept (they
    /// take several times its size, issue 21, item 20). `Words::new(&file.source, &tokens)`.
    pub(crate) fn tokens(&self, statement: &StatementSource) -> Vec<Token> {
        splitter::statement_tokens(&self.source, &statement.raw)
    }

    /// The statement's tokens up to its `words`-th word: enough to tell its kind by the
    /// leading keywords without lexing a long body to its end.
    pub(crate) fn head_tokens(&self, statement: &StatementSource, words: usize) -> Vec<Token> {
        splitter::statement_head(&self.source, &statement.raw, words)
    }

    /// The statement's text in this file, without its `;`.
    pub fn text(&self, statement: &StatementSource) -> &str {
        &self.source[statement.raw.range.clone()]
    }
}

/// The line `migrate new` writes where the up part's statements go: a file that still has
/// it and no statement is reported as the untouched template.
pub const NEW_FILE_PLACEHOLDER: &str =
    "-- Write the up part's statements here: `migrate lint` refuses this file until it has one.";

/// Parses one file of our layout. `Err` when the file cannot become a migration; `Ok` may
/// still carry diagnostics (bad allows) that do not prevent building the model.
pub fn parse_file(
    source: &SourceFile,
    known_rules: &dyn Fn(&str) -> bool,
) -> Result<(ParsedFile, Vec<Diagnostic>), Vec<Diagnostic>> {
    parse_source(
        &MigrationSource::ours(source).map_err(|d| vec![d])?,
        known_rules,
    )
}

/// Parses one migration of any layout ([`MigrationSource`]); diagnostics in a separate down
/// file name that file and its lines.
pub fn parse_source(
    source: &MigrationSource,
    known_rules: &dyn Fn(&str) -> bool,
) -> Result<(ParsedFile, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut parser = FileParser {
        source,
        diagnostics: Vec::new(),
    };
    let result = parser.parse(known_rules);
    let locate = |mut diagnostics: Vec<Diagnostic>| {
        for diagnostic in &mut diagnostics {
            relocate(diagnostic, source.down_file.as_ref());
        }
        diagnostics
    };
    match result {
        Some((parsed, diagnostics)) => Ok((parsed, locate(diagnostics))),
        None => Err(locate(parser.diagnostics)),
    }
}

/// Points a diagnostic about a combined text's down part at the down file.
pub fn relocate(diagnostic: &mut Diagnostic, down_file: Option<&DownFile>) {
    let (file, line) = DownFile::locate(down_file, &diagnostic.file, diagnostic.line);
    if file != diagnostic.file {
        diagnostic.file = file.to_owned();
        diagnostic.line = line;
    }
}

/// A file being parsed, and the problems found in it so far.
struct FileParser<'a> {
    source: &'a MigrationSource,
    diagnostics: Vec<Diagnostic>,
}

impl FileParser<'_> {
    fn parse(
        &mut self,
        known_rules: &dyn Fn(&str) -> bool,
    ) -> Option<(ParsedFile, Vec<Diagnostic>)> {
        let source = self.source;
        let text = self.decode()?;
        let body = self.walk(&text, source.phase, known_rules)?;
        let phase = body.phase;
        self.check_body(&body, phase, &text);
        if self.prevents_the_migration() {
            return None;
        }
        let mut down = body
            .saw_down_marker
            .then(|| body.section(SectionKind::Down, &text));
        if let (Some(down), Some(down_file)) = (&mut down, &source.down_file) {
            // The model's lines are the down file's own, as the user sees it.
            for statement in down.statements.to_mut() {
                statement.line = statement.line + 1 - down_file.first_line;
            }
            down.file_name = Some(Cow::Owned(down_file.file_name.clone()));
        }
        let migration = Migration {
            version: source.version,
            name: Cow::Owned(source.name.clone()),
            phase,
            file_name: Cow::Owned(source.file.file_name.clone()),
            checksum: Checksum::of_file(&source.file.bytes),
            up: body.section(SectionKind::Up, &text),
            down,
            requires: body.requires,
            backfill: body.backfill,
            compare_line: body.compare.as_ref().map(|(_, line)| *line),
            compare: body.compare.map(|(arguments, _)| Cow::Owned(arguments)),
            requires_compare: body.requires_compare,
            replaces: Cow::Owned(body.replaces),
            analysis: None,
        };
        Some((
            ParsedFile {
                display_path: source.file.display_path.clone(),
                source: text,
                migration,
                statements: body.statements,
                down_file: source.down_file.clone(),
            },
            std::mem::take(&mut self.diagnostics),
        ))
    }

    fn error(
        &mut self,
        line: u32,
        column: u32,
        code: &'static str,
        message: impl Into<String>,
        help: Option<&str>,
    ) {
        let mut diagnostic =
            Diagnostic::error(&self.source.file.display_path, line, column, code, message);
        diagnostic.help = help.map(str::to_owned);
        self.diagnostics.push(diagnostic);
    }

    /// The file's text, which must be UTF-8.
    fn decode(&mut self) -> Option<String> {
        let bytes = &self.source.file.bytes;
        match std::str::from_utf8(bytes) {
            Ok(text) => Some(text.to_owned()),
            Err(error) => {
                let line = bytes[..error.valid_up_to()]
                    .iter()
                    .filter(|&&b| b == b'\n')
                    .count() as u32
                    + 1;
                self.error(
                    line,
                    1,
                    codes::NOT_UTF8,
                    "the file is not valid UTF-8",
                    Some("save the file as UTF-8"),
                );
                None
            }
        }
    }

    fn client_copy_error(&mut self, line: u32, column: u32, direction: &str) {
        self.error(
            line,
            column,
            codes::CLIENT_COPY,
            format!(
                "COPY ... {direction} copies rows through the client, which the runtime cannot do: it sends statements, never COPY data (the lines after it are not SQL)"
            ),
            Some(
                "load the rows with INSERT ... VALUES (...), (...); (or in a backfill), or COPY from a file the server reads (`COPY t FROM '/path'`, needs pg_read_server_files)",
            ),
        );
    }

    /// A file whose tokens do not lex: every string, quoted name, comment and dollar quote
    /// must be closed. `None`, with the error, when `lexed` is one.
    fn lex_error(&mut self, text: &str, lexed: Result<(), splitter::LexError>) -> Option<()> {
        match lexed {
            Ok(()) => Some(()),
            // COPY's data lines are not SQL (an `O'Brien` opens a string): the COPY is the cause.
            Err(_) if let Some((line, direction)) = client_copy_line(text) => {
                self.client_copy_error(line, 1, direction);
                None
            }
            Err(error) => {
                self.error(
                    error.line,
                    error.column,
                    codes::SYNTAX,
                    error.what,
                    Some("close the string, identifier, comment or dollar quote"),
                );
                None
            }
        }
    }

    /// Walks the file's statements and directives, in order, into up and down parts, as the
    /// file is lexed. `None` when it does not lex: then that is the file's one problem.
    fn walk(
        &mut self,
        text: &str,
        phase: Phase,
        known_rules: &dyn Fn(&str) -> bool,
    ) -> Option<Body> {
        let problems_before = self.diagnostics.len();
        let part_no_transaction = self.source.no_transaction;
        let mut walk = Walk {
            parser: self,
            known_rules,
            phase,
            section: SectionKind::Up,
            saw_up_marker: false,
            saw_statement: false,
            pending_allows: Vec::new(),
            body: Body {
                part_no_transaction,
                ..Body::default()
            },
        };
        let lexed = splitter::split_each(text, |item, tokens| match item {
            Item::Statement(raw) => {
                let words = Words::new(text, tokens);
                walk.check_client_copy(&words);
                walk.statement(raw, classify::is_non_transactional(&words))
            }
            Item::LineComment {
                own_line,
                inside_statement,
                ..
            } => walk.line_comment(&tokens[0], text, own_line, inside_statement),
        });
        walk.flush_unused_allows();
        walk.body.phase = walk.phase;
        let mut body = std::mem::take(&mut walk.body);
        // Kept for the file's lifetime: without the growth slack (up to half).
        body.statements.shrink_to_fit();
        if lexed.is_err() {
            // What the walk found before the error is not reported: the file does not lex.
            self.diagnostics.truncate(problems_before);
        }
        self.lex_error(text, lexed)?;
        Some(body)
    }

    /// What only the whole file can tell: it has a statement to apply, and a backfill file
    /// has its directive.
    fn check_body(&mut self, body: &Body, phase: Phase, text: &str) {
        let up_count = body
            .statements
            .iter()
            .filter(|s| s.section == SectionKind::Up)
            .count();
        if up_count == 0 {
            // A file `migrate new` wrote and nobody filled yet: say so, not just "empty".
            let untouched = text
                .lines()
                .any(|line| line.trim_end() == NEW_FILE_PLACEHOLDER);
            let (message, help) = if untouched {
                (
                    "still the `migrate new` template: write its statements",
                    "write the change below `-- migrate:up` (and a down part that undoes it), \
                     or delete the file",
                )
            } else {
                (
                    "the migration has no statement to apply",
                    "write the change in the file, or delete the file",
                )
            };
            self.error(1, 1, codes::EMPTY_FILE, message, Some(help));
        }
        if phase == Phase::Backfill && !body.saw_backfill_directive {
            self.error(
                1,
                1,
                codes::BAD_DIRECTIVE,
                "a backfill file needs `-- migrate:backfill table=<table> key=<column>`",
                Some(
                    "-- migrate:backfill table=users key=id   (batches sized to 100 ms each, backing off under load)",
                ),
            );
        }
    }

    /// True when a problem keeps the file from becoming a migration: any but an allow naming
    /// an unknown rule or followed by no statement, which leave the model intact.
    fn prevents_the_migration(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.code != codes::UNKNOWN_RULE && d.code != codes::UNUSED_ALLOW)
    }
}

/// What the walk over a file collects.
#[derive(Default)]
struct Body {
    /// Up statements first, then down statements, in file order.
    statements: Vec<StatementSource>,
    saw_down_marker: bool,
    requires: Option<u64>,
    backfill: Option<BackfillSpec>,
    /// The arguments of `-- migrate:compare`, checked, and the directive's line.
    compare: Option<(String, u32)>,
    requires_compare: bool,
    /// A malformed backfill directive is reported once, not again as a missing one.
    saw_backfill_directive: bool,
    /// `-- migrate:no-transaction`: both parts.
    no_transaction: bool,
    /// Another tool's switch for one part (sqlx's `-- no-transaction` in one of its files,
    /// dbmate's `transaction:false` on one marker): `[up, down]`.
    part_no_transaction: [bool; 2],
    /// The phase: the source's, or a `-- migrate:phase` line's.
    phase: Phase,
    /// A directive other than `up` was read: `phase` must come before it.
    saw_other_directive: bool,
    /// `-- migrate:replaces`.
    replaces: Vec<u64>,
}

impl Body {
    /// The model of one part: its statements, and how the runtime runs them.
    fn section(&self, kind: SectionKind, text: &str) -> Section {
        let mut list: Vec<Statement> = self
            .statements
            .iter()
            .filter(|s| s.section == kind)
            .map(|s| Statement {
                sql: Cow::Owned(text[s.raw.range.clone()].to_owned()),
                line: s.raw.line,
                column: s.raw.column,
                non_transactional: s.non_transactional,
            })
            .collect();
        list.shrink_to_fit();
        let part = self.part_no_transaction[usize::from(kind == SectionKind::Down)];
        let mode = if self.no_transaction || part || list.iter().any(|s| s.non_transactional) {
            TransactionMode::Autocommit
        } else {
            TransactionMode::Transactional
        };
        Section {
            statements: Cow::Owned(list),
            mode,
            file_name: None,
        }
    }
}

/// The walk over a file's items: the part it is in, and what it has seen so far.
struct Walk<'p, 'a> {
    parser: &'p mut FileParser<'a>,
    known_rules: &'p dyn Fn(&str) -> bool,
    phase: Phase,
    section: SectionKind,
    saw_up_marker: bool,
    saw_statement: bool,
    /// Allows read since the last statement: they belong to the next one.
    pending_allows: Vec<Allow>,
    body: Body,
}

impl Walk<'_, '_> {
    /// `COPY ... FROM STDIN` / `TO STDOUT`: the rows go through the client, which the runtime
    /// is not (it sends statements, never copy data), so the file cannot run.
    fn check_client_copy(&mut self, words: &Words<'_>) {
        if let Some(direction) = client_copy(words)
            && let Some(first) = words.iter().next()
        {
            self.parser
                .client_copy_error(first.line, first.column, direction);
        }
    }

    fn statement(&mut self, raw: RawStatement, non_transactional: bool) {
        self.saw_statement = true;
        self.body.statements.push(StatementSource {
            section: self.section,
            raw,
            non_transactional,
            allows: std::mem::take(&mut self.pending_allows),
        });
    }

    /// A `--` comment: a directive when it starts with `migrate:`, which must stand on its
    /// own line between statements.
    fn line_comment(&mut self, token: &Token, text: &str, own_line: bool, inside_statement: bool) {
        let comment = token.text(text);
        let (line, column) = (token.line, token.column);
        let directive_text = match read_directive_comment(comment) {
            DirectiveComment::Directive(directive_text) => directive_text,
            DirectiveComment::NotADirective => return,
            DirectiveComment::NearMiss { written } => {
                // Read as a plain comment, a misspelled `-- migrate:down` would run the down
                // part as part of up; read leniently, a comment could become a directive.
                self.parser.error(
                    line,
                    column,
                    codes::BAD_DIRECTIVE,
                    format!(
                        "`{}` looks like a `-- migrate:` directive but is not written as one",
                        comment.trim_end()
                    ),
                    Some(&format!(
                        "write it exactly `-- migrate:{written}` (two dashes, one space, lower-case `migrate:` and no space after the colon), or reword the comment"
                    )),
                );
                return;
            }
        };
        if !own_line || inside_statement {
            self.parser.error(
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
            return;
        }
        if directive_text.split_whitespace().next() == Some("backfill") {
            self.body.saw_backfill_directive = true;
        }
        match parse_directive(directive_text, self.phase, line, column) {
            Ok(directive) => self.directive(directive, line, column),
            Err((code, message, help)) => {
                self.parser.error(line, column, code, message, Some(help));
            }
        }
    }

    fn directive(&mut self, directive: Directive, line: u32, column: u32) {
        if !matches!(directive, Directive::Up(_) | Directive::Phase(_)) {
            self.body.saw_other_directive = true;
        }
        match directive {
            Directive::Up(options) => {
                if self.saw_up_marker || self.body.saw_down_marker || self.saw_statement {
                    self.parser.error(line, column, codes::BAD_DIRECTIVE, "`-- migrate:up` must come once, before any statement and before `-- migrate:down`", Some("start the file with `-- migrate:up` or leave it out"));
                }
                self.saw_up_marker = true;
                self.marker_options("up", &options, 0, line, column);
            }
            Directive::Down(options) => {
                if self.body.saw_down_marker {
                    self.parser.error(
                        line,
                        column,
                        codes::BAD_DIRECTIVE,
                        "`-- migrate:down` appears twice",
                        Some("keep one down part at the end of the file"),
                    );
                }
                self.flush_unused_allows();
                self.body.saw_down_marker = true;
                self.section = SectionKind::Down;
                self.marker_options("down", &options, 1, line, column);
            }
            Directive::Phase(phase) => self.set_phase(phase, line, column),
            Directive::Replaces(versions) => {
                let own = self.parser.source.version;
                let problem = if !self.body.replaces.is_empty() {
                    Some("`-- migrate:replaces` appears twice".to_owned())
                } else if versions.last() != Some(&own) {
                    Some(format!(
                        "a squash replaces versions up to its own, {own}, which it must list last"
                    ))
                } else {
                    None
                };
                match problem {
                    Some(problem) => self.parser.error(
                        line,
                        column,
                        codes::BAD_DIRECTIVE,
                        problem,
                        Some("`migrate squash` writes this line; keep it as written"),
                    ),
                    None => self.body.replaces = versions,
                }
            }
            Directive::Allow(allow) => {
                if !(self.known_rules)(&allow.rule) {
                    self.parser.error(
                        allow.line,
                        allow.column,
                        codes::UNKNOWN_RULE,
                        format!("`{}` is not a rule id", allow.rule),
                        Some("`migrate explain` lists the rules"),
                    );
                } else {
                    self.pending_allows.push(allow);
                }
            }
            Directive::Requires(version) => {
                if self.body.requires.replace(version).is_some() {
                    self.parser.error(
                        line,
                        column,
                        codes::BAD_DIRECTIVE,
                        "`-- migrate:requires` appears twice",
                        Some("a contract finishes exactly one expand"),
                    );
                }
            }
            Directive::Backfill(spec) => {
                if self.body.backfill.replace(spec).is_some() {
                    self.parser.error(
                        line,
                        column,
                        codes::BAD_DIRECTIVE,
                        "`-- migrate:backfill` appears twice",
                        Some("one backfill file moves one table"),
                    );
                }
            }
            Directive::NoTransaction => self.body.no_transaction = true,
            Directive::Compare(arguments) => {
                if self.body.compare.replace((arguments, line)).is_some() {
                    self.parser.error(
                        line,
                        column,
                        codes::BAD_DIRECTIVE,
                        "`-- migrate:compare` appears twice",
                        Some("one backfill file declares one compare"),
                    );
                }
            }
            Directive::RequiresCompare => self.body.requires_compare = true,
        }
    }

    /// dbmate's options after `-- migrate:up` / `-- migrate:down`: `transaction:false` is our
    /// autocommit for that part; anything else is refused, never ignored.
    fn marker_options(&mut self, marker: &str, options: &str, part: usize, line: u32, column: u32) {
        if options.is_empty() {
            return;
        }
        let dbmate = self.parser.source.layout == Layout::Dbmate;
        for option in options.split_whitespace() {
            match option {
                "transaction:false" if dbmate => self.body.part_no_transaction[part] = true,
                "transaction:true" if dbmate => {}
                _ => self.parser.error(
                    line,
                    column,
                    codes::BAD_DIRECTIVE,
                    if dbmate {
                        format!("`{option}` after `-- migrate:{marker}` is a dbmate option migrate cannot honour")
                    } else {
                        format!("`-- migrate:{marker}` takes no arguments")
                    },
                    Some(if dbmate {
                        "dbmate's `transaction:false` is read (the part runs without a transaction); remove other options"
                    } else {
                        "`-- migrate:no-transaction` runs a file without a transaction"
                    }),
                ),
            }
        }
    }

    /// `-- migrate:phase`: the phase of another tool's file, which its name cannot say.
    fn set_phase(&mut self, phase: Phase, line: u32, column: u32) {
        let source = self.parser.source;
        let problem = if source.phase_from_name {
            Some(format!(
                "the phase of `{}` comes from its name",
                source.file.file_name
            ))
        } else if self.saw_statement || self.body.saw_other_directive || self.body.saw_down_marker {
            Some("`-- migrate:phase` must come before any statement and any other directive but `-- migrate:up`".to_owned())
        } else if source.phase_from_config && source.phase != phase {
            Some(format!(
                "migrate.toml's [phases] says {} for version {}, this file says {phase}",
                source.phase, source.version
            ))
        } else {
            None
        };
        match problem {
            Some(problem) => self.parser.error(line, column, codes::BAD_DIRECTIVE, problem, Some("name our files `<version>_<name>.<phase>.sql`; in another tool's layout, put `-- migrate:phase <phase>` first, or set it in migrate.toml's [phases] (not both)")),
            None => self.phase = phase,
        }
    }

    /// Allows not followed by a statement in their part suppress nothing.
    fn flush_unused_allows(&mut self) {
        for allow in self.pending_allows.drain(..) {
            self.parser.error(
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
}

/// `Some("FROM STDIN")` / `Some("TO STDOUT")` for a `COPY` through the client.
fn client_copy(words: &Words<'_>) -> Option<&'static str> {
    if !words.starts_with(&["COPY"]) {
        return None;
    }
    if words.find_top_level("STDIN").is_some() {
        Some("FROM STDIN")
    } else if words.find_top_level("STDOUT").is_some() {
        Some("TO STDOUT")
    } else {
        None
    }
}

/// The first line that starts a `COPY` through the client, read from the text alone, for a
/// file that does not lex.
fn client_copy_line(text: &str) -> Option<(u32, &'static str)> {
    text.lines().enumerate().find_map(|(index, line)| {
        let words: Vec<String> = line
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|word| !word.is_empty())
            .map(str::to_ascii_uppercase)
            .collect();
        if words.first().map(String::as_str) != Some("COPY") {
            return None;
        }
        let direction = if words.iter().any(|w| w == "STDIN") {
            "FROM STDIN"
        } else if words.iter().any(|w| w == "STDOUT") {
            "TO STDOUT"
        } else {
            return None;
        };
        Some((index as u32 + 1, direction))
    })
}

/// What a `--` comment is to the directive reader.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum DirectiveComment<'a> {
    /// `-- migrate:<text>`, exactly: the text after the colon.
    Directive(&'a str),
    /// An ordinary comment.
    NotADirective,
    /// A comment that looks like a directive and is not exactly one (`-- Migrate:down`,
    /// `--migrate:down`, `-- migrate: down`, `-- migrations:down`, `-- migrate down`): what it
    /// was probably meant to be, after `migrate:`.
    NearMiss { written: String },
}

/// The directive names, for recognising `-- migrate down` as a near miss.
const DIRECTIVE_NAMES: &[&str] = &[
    "up",
    "down",
    "allow",
    "requires",
    "backfill",
    "no-transaction",
    "compare",
    "requires-compare",
    "phase",
    "replaces",
];

/// Reads a `--` comment's text. A directive is exactly `-- migrate:` followed by its name; a
/// comment whose text, ignoring case and spaces, starts with `migrate:` (or `migration:`,
/// `migrations:`), or that is `migrate` followed by nothing but a directive name, is a near
/// miss, refused rather than read as a plain comment.
pub(super) fn read_directive_comment(comment: &str) -> DirectiveComment<'_> {
    if let Some(directive_text) = comment.strip_prefix("-- migrate:")
        && !directive_text.starts_with(char::is_whitespace)
    {
        return DirectiveComment::Directive(directive_text);
    }
    // `--- migrate:down` too: every leading dash belongs to the comment marker.
    let body = comment.trim_start_matches('-').trim().to_ascii_lowercase();
    let Some((word, rest)) = ["migrations", "migration", "migrate"]
        .into_iter()
        .find_map(|word| Some((word, body.strip_prefix(word)?)))
    else {
        return DirectiveComment::NotADirective;
    };
    let rest = rest.trim_start();
    let guess = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(after_colon) = rest.strip_prefix(':') {
        let written = guess(after_colon);
        let first_word = written.split(' ').next().unwrap_or_default();
        // `-- Migration: add users` is a title; `-- migrate: ...` is our prefix misspelled.
        return if word == "migrate" || DIRECTIVE_NAMES.contains(&first_word) {
            DirectiveComment::NearMiss { written }
        } else {
            DirectiveComment::NotADirective
        };
    }
    // `-- migrate down`, `-- migrate-down`, `--migrate`: no colon, nothing but a name.
    let name = rest.trim_start_matches(['-', '_', '.']).trim();
    if name.is_empty() || DIRECTIVE_NAMES.contains(&name) {
        return DirectiveComment::NearMiss {
            written: if name.is_empty() {
                "<directive>".to_owned()
            } else {
                name.to_owned()
            },
        };
    }
    DirectiveComment::NotADirective
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::load_files;
    use crate::source::testing::{any_rule, codes_of, file};

    #[test]
    fn an_untouched_template_is_named_as_such_and_an_empty_file_as_empty() {
        let template = format!("-- migrate:up\n{NEW_FILE_PLACEHOLDER}\n\n-- migrate:down\n");
        for (body, expected) in [
            (template.as_str(), "still the `migrate new` template"),
            (
                "-- nothing here\n",
                "the migration has no statement to apply",
            ),
        ] {
            let set = load_files(&[file("0001_a.sql", body)], &any_rule);
            assert_eq!(codes_of(&set), ["empty-file"]);
            assert!(
                set.diagnostics[0].message.starts_with(expected),
                "{:?}",
                set.diagnostics
            );
        }
    }

    #[test]
    fn a_file_that_does_not_lex_reports_that_alone() {
        // The file is walked as it is lexed: what the walk found before the unclosed
        // string (a misspelled directive, an allow with no statement after it) is not
        // reported beside it, as when the file was lexed whole first.
        let body = "-- migrate:dwn\nSELECT 1;\n-- migrate:allow drop-in-expand why\nSELECT 'open\n";
        let set = load_files(&[file("0001_a.sql", body)], &any_rule);
        assert_eq!(codes_of(&set), ["syntax"], "{:?}", set.diagnostics);
        assert_eq!((set.diagnostics[0].line, set.diagnostics[0].column), (4, 8));
        assert!(set.files.is_empty());
    }

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
            bytes: b"SELECT 1;\nSELECT '\xff';".to_vec().into(),
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

    #[test]
    fn a_near_miss_directive_is_an_error_at_its_line() {
        for near_miss in [
            "-- Migrate:down",
            "-- MIGRATE:DOWN",
            "--migrate:down",
            "--  migrate:down",
            "--\tmigrate:down",
            "-- migrate: down",
            "-- migrate :down",
            "-- migrations:down",
            "-- migration:down",
            "-- migrate down",
            "-- migrate-down",
            "--- migrate:down",
            "--migrate",
        ] {
            let body = format!(
                "ALTER TABLE t ADD COLUMN IF NOT EXISTS b int;\n{near_miss}\nALTER TABLE t DROP COLUMN IF EXISTS b;\n"
            );
            let set = load_files(&[file("0001_a.sql", &body)], &any_rule);
            assert_eq!(codes_of(&set), ["bad-directive"], "{near_miss:?}");
            let diagnostic = &set.diagnostics[0];
            assert_eq!(
                (diagnostic.file.as_str(), diagnostic.line, diagnostic.column),
                ("migrations/0001_a.sql", 2, 1),
                "{near_miss:?}"
            );
            assert!(set.files.is_empty(), "{near_miss:?}: no migration is made");
        }
        // Ordinary comments that mention the word stay comments.
        for comment in [
            "-- migrate the users table to the new schema",
            "-- Migrated from the old system",
            "-- migrates: nothing here",
            "-- Migration: add the users table",
            "--- separator",
        ] {
            let body = format!("{comment}\nSELECT 1;\n");
            let set = load_files(&[file("0001_a.sql", &body)], &any_rule);
            assert!(
                set.diagnostics.is_empty(),
                "{comment:?}: {:?}",
                set.diagnostics
            );
        }
    }

    #[test]
    fn a_copy_through_the_client_is_an_error_at_the_copy_line() {
        for (body, line, direction) in [
            (
                "CREATE TABLE IF NOT EXISTS t (id int, name text);\nCOPY t (id, name) FROM stdin;\n1\tAda\n2\tO'Brien\n\\.\n",
                2,
                "FROM STDIN",
            ),
            (
                "CREATE TABLE IF NOT EXISTS t (id int);\n\ncopy t from STDIN with (format csv);\n1\n2\n\\.\nSELECT 1;\n",
                3,
                "FROM STDIN",
            ),
            ("SELECT 1;\n  COPY (SELECT 1) TO STDOUT;\n", 2, "TO STDOUT"),
        ] {
            let set = load_files(&[file("0001_a.sql", body)], &any_rule);
            assert_eq!(
                codes_of(&set),
                ["client-copy"],
                "{body:?}: {:?}",
                set.diagnostics
            );
            let diagnostic = &set.diagnostics[0];
            assert_eq!(diagnostic.line, line, "{body:?}");
            assert!(diagnostic.message.contains(direction), "{diagnostic:?}");
        }
        // A server-side file, and a column that happens to be called stdin, are fine.
        let body = "COPY t FROM '/tmp/t.csv';\nCOPY t (stdin) FROM '/tmp/u.csv';\n";
        let set = load_files(&[file("0001_a.sql", body)], &any_rule);
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
    }
}
