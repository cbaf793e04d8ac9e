//! Reading a folder of migration files: the file-name grammar, the `-- migrate:` directives,
//! and the split of each file into up and down statements.
//!
//! The macro and the runtime both go through [`crate::check_dir`], so a set embedded at build time and
//! a set read at run time are the same.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::Path;

use crate::checksum::Checksum;
use crate::classify::{self, Words};
use crate::diagnostic::{Diagnostic, codes};
use crate::migration::{
    BackfillSpec, Migration, Migrations, Phase, Section, Statement, TransactionMode,
};
use crate::splitter::{self, Item, RawStatement, Token};

/// A `.sql` file as read from disk.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Path shown in diagnostics (`migrations/0001_users.sql`).
    pub display_path: String,
    pub file_name: String,
    pub bytes: Vec<u8>,
}

/// Which part of a file a statement belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SectionKind {
    Up,
    Down,
}

/// `-- migrate:allow <rule> <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    pub rule: String,
    pub reason: String,
    pub line: u32,
    pub column: u32,
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

/// The result of reading a folder: the files that parsed, and every problem found.
#[derive(Debug, Clone, Default)]
pub struct LoadedSet {
    pub files: Vec<ParsedFile>,
    pub diagnostics: Vec<Diagnostic>,
}

impl LoadedSet {
    /// The migration set, in version order.
    pub fn migrations(&self, dir: &str) -> Migrations {
        Migrations {
            dir: Cow::Owned(dir.to_owned()),
            migrations: Cow::Owned(self.files.iter().map(|f| f.migration.clone()).collect()),
        }
    }
}

/// True for every name the loader reads: `.sql` in any case (`.SQL`, `.Sql`), so a name
/// that is almost right is an error instead of a file silently left out.
pub fn is_sql_like(file_name: &str) -> bool {
    let bytes = file_name.as_bytes();
    bytes.len() >= 4 && bytes[bytes.len() - 4..].eq_ignore_ascii_case(b".sql")
}

/// The help for a `.sql` extension in another case.
const LOWER_CASE_EXTENSION_HELP: &str = "rename the file to end in `.sql`. Other cases are refused rather than accepted: \
the runtime looks for `.sql` files exactly, and on a case-insensitive filesystem `0002_a.SQL` and \
`0002_a.sql` are one file, so the macro and the runtime would disagree about the set";

/// `<version>_<name>[.<phase>].sql` → (version, name, phase).
pub fn parse_file_name(file_name: &str) -> Result<(u64, String, Phase), String> {
    let stem = match file_name.strip_suffix(".sql") {
        Some(stem) => stem,
        None if is_sql_like(file_name) => {
            return Err("migration files end in lower-case .sql".to_owned());
        }
        None => return Err("a migration file name ends in .sql".to_owned()),
    };
    let (stem, phase) = match stem.rsplit_once('.') {
        Some((stem, phase_text)) => match Phase::parse(phase_text) {
            Some(phase) => (stem, phase),
            None => {
                return Err(format!(
                    "unknown phase `{phase_text}` (expected expand, backfill or contract)"
                ));
            }
        },
        None => (stem, Phase::Expand),
    };
    let (version_text, name) = stem
        .split_once('_')
        .ok_or_else(|| "expected `<version>_<name>[.<phase>].sql`".to_owned())?;
    if version_text.is_empty() || !version_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("version `{version_text}` is not a number"));
    }
    let version: u64 = version_text.parse().map_err(|_| {
        format!(
            "version `{version_text}` is too large (at most {})",
            i64::MAX
        )
    })?;
    if version > i64::MAX as u64 {
        return Err(format!(
            "version `{version_text}` is too large (at most {})",
            i64::MAX
        ));
    }
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    {
        return Err(format!("name `{name}` must match [a-z0-9_]+"));
    }
    Ok((version, name.to_owned(), phase))
}

/// Reads every `.sql` file of `dir` (not recursively), whatever the case of the extension
/// (see [`is_sql_like`]). `display_dir` prefixes the paths shown in diagnostics. Other files
/// are ignored.
pub fn read_dir(dir: &Path, display_dir: &str) -> Result<Vec<SourceFile>, std::io::Error> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let file_name = entry.file_name().to_string_lossy().into_owned();
        if !is_sql_like(&file_name) {
            continue;
        }
        let bytes = std::fs::read(entry.path())?;
        files.push(SourceFile {
            display_path: display_join(display_dir, &file_name),
            file_name,
            bytes,
        });
    }
    files.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    Ok(files)
}

pub fn display_join(dir: &str, file_name: &str) -> String {
    if dir.is_empty() || dir == "." {
        file_name.to_owned()
    } else {
        format!("{}/{}", dir.trim_end_matches('/'), file_name)
    }
}

/// Parses files into a set: each file on its own, then the checks across files (duplicate
/// versions, `requires`). Files with errors are left out of `files`.
pub fn load_files(sources: &[SourceFile], known_rules: &dyn Fn(&str) -> bool) -> LoadedSet {
    let mut set = LoadedSet::default();
    for source in sources {
        match parse_file(source, known_rules) {
            Ok((parsed, diagnostics)) => {
                set.diagnostics.extend(diagnostics);
                set.files.push(parsed);
            }
            Err(diagnostics) => set.diagnostics.extend(diagnostics),
        }
    }
    check_versions(sources, &mut set);
    set.files.sort_by_key(|f| f.migration.version);
    check_requires(&mut set);
    set
}

fn check_versions(sources: &[SourceFile], set: &mut LoadedSet) {
    let mut by_version: BTreeMap<u64, Vec<&SourceFile>> = BTreeMap::new();
    for source in sources {
        if let Ok((version, _, _)) = parse_file_name(&source.file_name) {
            by_version.entry(version).or_default().push(source);
        }
    }
    for (version, files) in by_version {
        if files.len() < 2 {
            continue;
        }
        let names: Vec<&str> = files.iter().map(|f| f.file_name.as_str()).collect();
        for file in &files {
            set.diagnostics.push(
                Diagnostic::error(
                    &file.display_path,
                    1,
                    1,
                    codes::DUPLICATE_VERSION,
                    format!(
                        "version {version} is used by {} files: {}",
                        files.len(),
                        names.join(", ")
                    ),
                )
                .with_help(
                    "give each migration its own version, e.g. the next free number or a timestamp",
                ),
            );
        }
        set.files.retain(|f| f.migration.version != version);
    }
}

fn check_requires(set: &mut LoadedSet) {
    let phases: BTreeMap<u64, Phase> = set
        .files
        .iter()
        .map(|f| (f.migration.version, f.migration.phase))
        .collect();
    for file in &set.files {
        let migration = &file.migration;
        if migration.phase != Phase::Contract {
            continue;
        }
        let problem = match migration.requires {
            None => Some("a contract file must name the expand it finishes with `-- migrate:requires <version>`".to_owned()),
            Some(required) if required >= migration.version => {
                Some(format!("requires {required}, which is not an earlier version"))
            }
            Some(required) => match phases.get(&required) {
                Some(Phase::Expand) => None,
                Some(phase) => Some(format!("requires {required}, which is a {phase} migration, not an expand")),
                None => Some(format!("requires {required}, which is not a migration of this set")),
            },
        };
        if let Some(problem) = problem {
            set.diagnostics.push(
                Diagnostic::error(&file.display_path, 1, 1, codes::BAD_REQUIRES, problem)
                    .with_help("-- migrate:requires <version of the expand migration this contract finishes>"),
            );
        }
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

/// A parsed `-- migrate:` line.
enum Directive {
    Up,
    Down,
    Allow(Allow),
    Requires(u64),
    Backfill(BackfillSpec),
    NoTransaction,
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

type DirectiveError = (&'static str, String, &'static str);

fn parse_directive(
    body: &str,
    phase: Phase,
    line: u32,
    column: u32,
) -> Result<Directive, DirectiveError> {
    let body = body.trim();
    let (name, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    let rest = rest.trim();
    let known = "known directives: up, down, allow <rule> <reason>, requires <version>, backfill table=<t> key=<col> [batch=<n>] [delay=<ms>], no-transaction";
    let no_arguments = |directive: Directive| {
        if rest.is_empty() {
            Ok(directive)
        } else {
            Err((
                codes::BAD_DIRECTIVE,
                format!("`-- migrate:{name}` takes no arguments"),
                known,
            ))
        }
    };
    match name {
        "up" => no_arguments(Directive::Up),
        "down" => no_arguments(Directive::Down),
        "no-transaction" => no_arguments(Directive::NoTransaction),
        "allow" => {
            let (rule, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if rule.is_empty() {
                return Err((
                    codes::BAD_DIRECTIVE,
                    "`-- migrate:allow` needs a rule id and a reason".into(),
                    "-- migrate:allow <rule-id> <why this is safe here>",
                ));
            }
            if reason.trim().is_empty() {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!("`-- migrate:allow {rule}` needs a reason"),
                    "-- migrate:allow <rule-id> <why this is safe here>",
                ));
            }
            Ok(Directive::Allow(Allow {
                rule: rule.to_owned(),
                reason: reason.trim().to_owned(),
                line,
                column,
            }))
        }
        "requires" => {
            if phase != Phase::Contract {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!(
                        "`-- migrate:requires` belongs in a contract file, this file's phase is {phase}"
                    ),
                    "name the file `<version>_<name>.contract.sql`",
                ));
            }
            rest.parse::<u64>().map(Directive::Requires).map_err(|_| {
                (
                    codes::BAD_DIRECTIVE,
                    format!("`-- migrate:requires {rest}`: expected one version number"),
                    "-- migrate:requires 2",
                )
            })
        }
        "backfill" => {
            if phase != Phase::Backfill {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!(
                        "`-- migrate:backfill` belongs in a backfill file, this file's phase is {phase}"
                    ),
                    "name the file `<version>_<name>.backfill.sql`",
                ));
            }
            parse_backfill(rest).map(Directive::Backfill)
        }
        _ => Err((
            codes::UNKNOWN_DIRECTIVE,
            format!("unknown directive `-- migrate:{name}`"),
            known,
        )),
    }
}

const BACKFILL_USAGE: &str = "-- migrate:backfill table=[<schema>.]<table> key=<column> [batch=<rows>] [delay=<ms>]; \
names follow SQL: unquoted ones are folded to lower case, \"Quoted\" ones are kept exactly";

fn parse_backfill(arguments: &str) -> Result<BackfillSpec, DirectiveError> {
    let usage = BACKFILL_USAGE;
    let mut table = None;
    let mut key = None;
    let mut batch_size = BackfillSpec::DEFAULT_BATCH_SIZE;
    let mut delay_ms = BackfillSpec::DEFAULT_DELAY_MS;
    let mut rest = arguments.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        let Some(after) = rest[name_end..].strip_prefix('=') else {
            let pair = rest.split_whitespace().next().unwrap_or(rest);
            return Err((
                codes::BAD_DIRECTIVE,
                format!("backfill argument `{pair}` is not name=value"),
                usage,
            ));
        };
        // A quoted name may hold spaces: names are read with SQL's rules, other values end at
        // the next space.
        let value_len = match name {
            "table" | "key" => sql_name_len(after),
            _ => after.find(char::is_whitespace).unwrap_or(after.len()),
        };
        let value = &after[..value_len];
        rest = after[value_len..].trim_start();
        let number = |value: &str| -> Result<u32, DirectiveError> {
            value
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0 || name == "delay")
                .ok_or_else(|| {
                    (
                        codes::BAD_DIRECTIVE,
                        format!("backfill `{name}={value}` is not a valid number"),
                        usage,
                    )
                })
        };
        let bad_name = |problem: String| {
            (
                codes::BAD_DIRECTIVE,
                format!("backfill `{name}={value}`: {problem}"),
                usage,
            )
        };
        match name {
            "table" => {
                let mut parts = parse_sql_name(value).map_err(bad_name)?;
                let table_part = parts.pop();
                match (parts.pop(), table_part, parts.is_empty()) {
                    (schema, Some(table_part), true) => table = Some((schema, table_part)),
                    _ => {
                        return Err(bad_name(
                            "expected `<table>` or `<schema>.<table>`".to_owned(),
                        ));
                    }
                }
            }
            "key" => {
                let mut parts = parse_sql_name(value).map_err(bad_name)?;
                match (parts.pop(), parts.is_empty()) {
                    (Some(column), true) => key = Some(column),
                    _ => return Err(bad_name("expected one column name".to_owned())),
                }
            }
            "batch" => batch_size = number(value)?,
            "delay" => delay_ms = number(value)?,
            _ => {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!("unknown backfill argument `{name}`"),
                    usage,
                ));
            }
        }
    }
    match (table, key) {
        (Some((schema, table)), Some(key)) => Ok(BackfillSpec {
            schema: schema.map(Cow::Owned),
            table: Cow::Owned(table),
            key: Cow::Owned(key),
            batch_size,
            delay_ms,
        }),
        _ => Err((
            codes::BAD_DIRECTIVE,
            "`-- migrate:backfill` needs table= and key=".into(),
            usage,
        )),
    }
}

/// The length of the name at the start of `text`: up to the first space outside double
/// quotes.
fn sql_name_len(text: &str) -> usize {
    let mut quoted = false;
    for (index, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return index,
            _ => {}
        }
    }
    text.len()
}

/// A possibly qualified name written as in SQL (`app.Orders`, `"App"."Orders"`), as the exact
/// names PostgreSQL looks up: unquoted parts are folded to lower case (ASCII letters only, as
/// PostgreSQL does), quoted parts are kept with `""` read as `"`.
/// <https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS>
fn parse_sql_name(text: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err("a quoted name is not closed".to_owned()),
                }
            }
            if part.is_empty() {
                return Err("a quoted name cannot be empty".to_owned());
            }
        } else {
            while let Some(&c) = chars.peek() {
                let fits = if part.is_empty() {
                    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
                } else {
                    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
                };
                if !fits {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err(match chars.peek() {
                    Some(c) => format!("`{c}` cannot start a name (quote the name: \"...\")"),
                    None => "a name is missing".to_owned(),
                });
            }
        }
        // PostgreSQL would silently truncate the name to its first 63 bytes (NAMEDATALEN - 1).
        if part.len() > 63 {
            return Err(format!("`{part}` is longer than 63 bytes"));
        }
        parts.push(part);
        match chars.next() {
            Some('.') => continue,
            None => return Ok(parts),
            Some(c) => return Err(format!("unexpected `{c}` in the name")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, body: &str) -> SourceFile {
        SourceFile {
            display_path: format!("migrations/{name}"),
            file_name: name.to_owned(),
            bytes: body.as_bytes().to_vec(),
        }
    }

    fn any_rule(_: &str) -> bool {
        true
    }

    fn codes_of(set: &LoadedSet) -> Vec<&'static str> {
        set.diagnostics.iter().map(|d| d.code).collect()
    }

    #[test]
    fn file_name_grammar() {
        assert_eq!(
            parse_file_name("0002_email.expand.sql").unwrap(),
            (2, "email".into(), Phase::Expand)
        );
        assert_eq!(
            parse_file_name("20261124093000_x_1.sql").unwrap(),
            (20261124093000, "x_1".into(), Phase::Expand)
        );
        assert_eq!(
            parse_file_name("3_b.contract.sql").unwrap().2,
            Phase::Contract
        );
        for bad in [
            "x_name.sql",
            "0001.sql",
            "0001_Name.sql",
            "0001_a.shrink.sql",
            "0001_.sql",
            "99999999999999999999_a.sql",
            "1_a-b.sql",
        ] {
            assert!(parse_file_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn upper_case_extensions_are_refused_not_ignored() {
        for name in ["0002_b.SQL", "0003_c.Sql", "0004_d.expand.sQl"] {
            assert_eq!(
                parse_file_name(name).unwrap_err(),
                "migration files end in lower-case .sql",
                "{name}"
            );
        }
        let temp = tempfile::tempdir().unwrap();
        let dir = temp.path();
        for name in [
            "0001_a.sql",
            "0002_b.SQL",
            "0003_c.Sql",
            "notes.txt",
            "x.sq",
        ] {
            std::fs::write(dir.join(name), "SELECT 1;").unwrap();
        }
        let read: Vec<String> = read_dir(dir, "m")
            .unwrap()
            .into_iter()
            .map(|f| f.file_name)
            .collect();
        assert_eq!(read, ["0001_a.sql", "0002_b.SQL", "0003_c.Sql"]);
        let set = load_files(&read_dir(dir, "m").unwrap(), &any_rule);
        let problems: Vec<(&str, &str, &str)> = set
            .diagnostics
            .iter()
            .map(|d| (d.file.as_str(), d.code, d.message.as_str()))
            .collect();
        assert_eq!(
            problems,
            [
                (
                    "m/0002_b.SQL",
                    "bad-file-name",
                    "`0002_b.SQL` is not a migration file name: migration files end in lower-case .sql"
                ),
                (
                    "m/0003_c.Sql",
                    "bad-file-name",
                    "`0003_c.Sql` is not a migration file name: migration files end in lower-case .sql"
                ),
            ]
        );
        assert!(
            set.diagnostics[0]
                .help
                .as_deref()
                .unwrap()
                .contains("case-insensitive filesystem")
        );
        assert_eq!(set.files.len(), 1);
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
    fn file_level_errors_name_the_file() {
        let set = load_files(
            &[
                file("003_a.sql", "SELECT 1;"),
                file("0003_b.sql", "SELECT 1;"),
                file("0004_empty.sql", "  -- nothing here\n"),
                file("0005_x.sql", "-- migrate:frobnicate\nSELECT 1;"),
                file("notes.sql", "SELECT 1;"),
                file("0006_u.sql", "SELECT 'open"),
            ],
            &any_rule,
        );
        let mut found = codes_of(&set);
        found.sort();
        assert_eq!(
            found,
            [
                "bad-file-name",
                "duplicate-version",
                "duplicate-version",
                "empty-file",
                "syntax",
                "unknown-directive"
            ]
        );
        assert!(
            set.diagnostics
                .iter()
                .any(|d| d.file == "migrations/0003_b.sql" && d.message.contains("003_a.sql"))
        );
        assert!(set.files.is_empty());
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
    fn allow_needs_a_reason_a_known_rule_and_a_statement() {
        let known = |rule: &str| rule == "unbounded-update";
        let set = load_files(
            &[
                file("0001_a.sql", "-- migrate:allow unbounded-update\nSELECT 1;"),
                file(
                    "0002_b.sql",
                    "-- migrate:allow no-such-rule because\nSELECT 1;",
                ),
                file(
                    "0003_c.sql",
                    "SELECT 1;\n-- migrate:allow unbounded-update because\n",
                ),
            ],
            &known,
        );
        let mut found = codes_of(&set);
        found.sort();
        assert_eq!(found, ["bad-directive", "unknown-rule", "unused-allow"]);
    }

    #[test]
    fn contract_requires_an_earlier_expand() {
        let set = load_files(
            &[
                file("0001_a.sql", "SELECT 1;"),
                file(
                    "0002_b.backfill.sql",
                    "-- migrate:backfill table=a key=id\nUPDATE a SET x = 1 WHERE x IS NULL;",
                ),
                file("0003_c.contract.sql", "-- migrate:requires 1\nSELECT 1;"),
                file("0004_d.contract.sql", "SELECT 1;"),
                file("0005_e.contract.sql", "-- migrate:requires 2\nSELECT 1;"),
                file("0006_f.contract.sql", "-- migrate:requires 9\nSELECT 1;"),
            ],
            &any_rule,
        );
        let problems: Vec<&str> = set.diagnostics.iter().map(|d| d.file.as_str()).collect();
        assert_eq!(
            problems,
            [
                "migrations/0004_d.contract.sql",
                "migrations/0005_e.contract.sql",
                "migrations/0006_f.contract.sql"
            ]
        );
        let backfill = set.files[1].migration.backfill.clone().unwrap();
        assert_eq!(
            (
                backfill.table.as_ref(),
                backfill.key.as_ref(),
                backfill.batch_size
            ),
            ("a", "id", 1000)
        );
    }

    #[test]
    fn backfill_names_follow_sql_folding_and_quoting() {
        let spec_of = |directive: &str| {
            let body =
                format!("-- migrate:backfill {directive}\nUPDATE t SET a = 1 WHERE a IS NULL;");
            let set = load_files(&[file("0001_a.backfill.sql", &body)], &any_rule);
            match set.files.first() {
                Some(parsed) if set.diagnostics.is_empty() => {
                    Ok(parsed.migration.backfill.clone().unwrap())
                }
                _ => Err(set.diagnostics),
            }
        };
        let names = |directive: &str| {
            let spec = spec_of(directive).unwrap_or_else(|e| panic!("{directive}: {e:?}"));
            (
                spec.schema.map(String::from),
                spec.table.into_owned(),
                spec.key.into_owned(),
            )
        };
        let name = |text: &str| text.to_owned();
        // PostgreSQL folds unquoted names: `Orders` is the table created as `orders`.
        assert_eq!(
            names("table=Orders key=Id"),
            (None, name("orders"), name("id"))
        );
        assert_eq!(
            names("table=\"Orders\" key=\"Id\""),
            (None, name("Orders"), name("Id"))
        );
        assert_eq!(
            names("table=app.orders key=id"),
            (Some(name("app")), name("orders"), name("id"))
        );
        assert_eq!(
            names("batch=5 table=\"App\".\"Orders\" key=id delay=10"),
            (Some(name("App")), name("Orders"), name("id"))
        );
        assert_eq!(
            names("table=App.\"Order.s\" key=\"the \"\"key\"\"\""),
            (Some(name("app")), name("Order.s"), name("the \"key\""))
        );
        assert_eq!(
            spec_of("table=\"App\".\"Orders\" key=id")
                .unwrap()
                .table_name(),
            "\"App\".\"Orders\""
        );
        let too_long = format!("table={} key=id", "x".repeat(64));
        for bad in [
            "table=\"Orders key=id",
            "table=a.b.c key=id",
            "table=orders key=a.b",
            "table=\"\" key=id",
            "table=1orders key=id",
            "table=orders; key=id",
            "table=orders key=id batch=0",
            "table= key=id",
            "table=orders",
            too_long.as_str(),
        ] {
            // Reported once: a malformed directive is not also a missing one.
            let problems = spec_of(bad).unwrap_err();
            let codes: Vec<&str> = problems.iter().map(|d| d.code).collect();
            assert_eq!(codes, ["bad-directive"], "{bad}: {problems:?}");
            assert!(
                problems[0].message.contains("backfill"),
                "{bad}: {problems:?}"
            );
        }
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
