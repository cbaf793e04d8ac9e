//! Property tests (proptest) of the layers that read untrusted text: the splitter, the
//! `-- migrate:` directives through the loader, and the lint engine. `no_panics.rs` throws a
//! fixed stream of SQL-ish pieces at them; these generate arbitrary strings as well, shrink a
//! failure to a small input, and check more than "no panic": the splitter's pieces cover the
//! input exactly, and every problem comes back as a diagnostic inside the file.
//!
//! Cases per property: proptest's default, 256, or `PROPTEST_CASES`
//! (`PROPTEST_CASES=20000 cargo test -p migrate-core --test properties`). Every case runs on a
//! thread of its own with a deadline, so a hang fails the test instead of stalling it.

use std::sync::mpsc;
use std::time::Duration;

use migrate_core::Diagnostic;
use migrate_core::lint::{Config, lint_files, rule};
use migrate_core::source::{LoadedSet, SourceFile, load_files, parse_file};
use migrate_core::splitter::{Item, Token, TokenKind, split, statement_texts, tokenize};
use proptest::prelude::*;

/// Far above what any case needs (a few milliseconds), far below a CI timeout.
const DEADLINE: Duration = Duration::from_secs(30);

/// Runs `work` on its own thread and returns its result; fails when it has not returned
/// within [`DEADLINE`] ("always terminates"), and passes its panic on (so proptest shrinks).
fn terminates<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, result) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let _ = done.send(work());
    });
    match result.recv_timeout(DEADLINE) {
        Ok(value) => value,
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker returned without sending"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("did not return within {DEADLINE:?}"),
    }
}

/// Fragments that steer the lexer into every state: quotes of each kind (closed and not),
/// dollar tags, nested and unbalanced comments, `BEGIN ATOMIC` bodies, semicolons, line
/// breaks of each kind, a byte order mark, multi-byte characters.
const LEXER_PIECES: &[&str] = &[
    ";",
    ";;",
    "'",
    "''",
    "'a;b'",
    "E'",
    "E'\\''",
    "e'\\\\'",
    "\\",
    "\"",
    "\"\"",
    "\"we;ird\"",
    "U&'x'",
    "U&\"x\"",
    "B'01'",
    "X'",
    "$",
    "$$",
    "$$;$$",
    "$a$",
    "$a$ ; $a$",
    "$a$ $b$ ; $b$ $a$",
    "$_1$",
    "$1",
    "a$b",
    "--",
    "-- c;\n",
    "/*",
    "*/",
    "/* ; */",
    "/* /* ; */ */",
    "/*/",
    "(",
    ")",
    "BEGIN",
    "ATOMIC",
    "END",
    "CASE",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END",
    "CREATE PROCEDURE",
    "CREATE",
    "FUNCTION",
    "SELECT 1",
    "x",
    "1.5e3",
    " ",
    "\t",
    "\n",
    "\r\n",
    "\r",
    "\u{feff}",
    "é",
    "日本",
    "\u{0}",
];

/// SQL-ish text: lexer fragments, statement keywords and arbitrary characters.
fn sqlish_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        6 => prop::sample::select(LEXER_PIECES).prop_map(str::to_owned),
        3 => prop::sample::select(KEYWORDS).prop_map(str::to_owned),
        1 => any::<char>().prop_map(String::from),
        1 => "[ -~]{0,6}",
    ];
    prop::collection::vec(piece, 0..48).prop_map(|pieces| pieces.join(""))
}

/// Any string at all, or SQL-ish text, sometimes behind a byte order mark.
fn any_text() -> impl Strategy<Value = String> {
    let text = prop_oneof![any::<String>(), sqlish_text()];
    (text, any::<bool>()).prop_map(|(text, bom)| if bom { format!("\u{feff}{text}") } else { text })
}

/// The 1-based line and character column of byte `offset`, as the splitter counts them:
/// only `\n` ends a line, and a byte order mark at the very start takes no column.
fn position(source: &str, offset: usize) -> (u32, u32) {
    let before = &source[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let mut column_text = &before[line_start..];
    if line_start == 0 {
        column_text = column_text.strip_prefix('\u{feff}').unwrap_or(column_text);
    }
    (line as u32, column_text.chars().count() as u32 + 1)
}

/// What the splitter promises about `source` and its tokens.
fn check_tokens(source: &str, tokens: &[Token]) -> Result<(), TestCaseError> {
    let bom = if source.starts_with('\u{feff}') { 3 } else { 0 };
    let mut end = 0;
    for token in tokens {
        let range = token.range.clone();
        prop_assert!(range.start < range.end, "empty token {token:?}");
        prop_assert!(source.is_char_boundary(range.start) && source.is_char_boundary(range.end));
        // Between two tokens: whitespace only (and the byte order mark before the first).
        let gap_start = if end == 0 { bom } else { end };
        prop_assert!(range.start >= gap_start, "overlapping token {token:?}");
        let gap = &source[gap_start..range.start];
        prop_assert!(
            gap.bytes().all(|b| b.is_ascii_whitespace()),
            "{gap:?} before {token:?} is not whitespace"
        );
        prop_assert_eq!(
            (token.line, token.column),
            position(source, range.start),
            "position of {:?}",
            token
        );
        let text = token.text(source);
        match token.kind {
            TokenKind::Semicolon => prop_assert_eq!(text, ";"),
            TokenKind::LineComment => {
                prop_assert!(text.starts_with("--") && !text.contains('\n'), "{text:?}")
            }
            TokenKind::BlockComment => prop_assert!(
                text.starts_with("/*") && text.ends_with("*/") && text.len() >= 4,
                "{text:?}"
            ),
            TokenKind::String => prop_assert!(text.ends_with('\'') && text.len() >= 2, "{text:?}"),
            TokenKind::QuotedIdent => {
                prop_assert!(text.ends_with('"') && text.len() >= 2, "{text:?}")
            }
            TokenKind::DollarString => {
                let tag_len = text[1..].find('$').map(|i| i + 2);
                prop_assert!(tag_len.is_some(), "{text:?}");
                let tag = &text[..tag_len.unwrap_or(0)];
                prop_assert!(
                    text.len() >= 2 * tag.len() && text.ends_with(tag),
                    "{text:?} is not closed by {tag:?}"
                );
            }
            TokenKind::Parameter => prop_assert!(
                text.starts_with('$') && text[1..].bytes().all(|b| b.is_ascii_digit()),
                "{text:?}"
            ),
            TokenKind::Word | TokenKind::Number | TokenKind::Punct => {
                prop_assert!(
                    !text.contains(|c: char| c.is_ascii_whitespace()),
                    "{text:?}"
                )
            }
        }
        end = range.end;
    }
    let tail = &source[end.max(bom).min(source.len())..];
    prop_assert!(
        tail.bytes().all(|b| b.is_ascii_whitespace()),
        "{tail:?} after the last token is not whitespace"
    );
    Ok(())
}

/// The items cover the input exactly: every byte is in one statement, one comment or
/// semicolon outside statements, or whitespace; statements hold whole tokens, in order.
fn check_items(source: &str, tokens: &[Token], items: &[Item]) -> Result<(), TestCaseError> {
    // Which statement (if any) each token belongs to.
    let mut owner: Vec<Option<usize>> = vec![None; tokens.len()];
    let mut comments_seen = Vec::new();
    let mut previous_end = 0;
    for (number, item) in items.iter().enumerate() {
        match item {
            Item::LineComment { token, .. } => {
                prop_assert_eq!(tokens[*token].kind, TokenKind::LineComment);
                comments_seen.push(*token);
            }
            Item::Statement(statement) => {
                let first = &tokens[statement.tokens.start];
                let last = &tokens[statement.tokens.end - 1];
                prop_assert!(statement.tokens.start >= previous_end, "statements overlap");
                previous_end = statement.tokens.end;
                prop_assert_eq!(
                    statement.range.clone(),
                    first.range.start..last.range.end,
                    "statement range"
                );
                prop_assert_eq!(
                    (statement.line, statement.column),
                    (first.line, first.column)
                );
                for edge in [first, last] {
                    prop_assert!(
                        !edge.is_comment(),
                        "a statement starts or ends at a comment"
                    );
                }
                prop_assert!(first.kind != TokenKind::Semicolon);
                for index in statement.tokens.clone() {
                    owner[index] = Some(number);
                }
            }
        }
    }
    // Every line comment is reported once, in order.
    let line_comments: Vec<usize> = (0..tokens.len())
        .filter(|&i| tokens[i].kind == TokenKind::LineComment)
        .collect();
    prop_assert_eq!(comments_seen, line_comments);
    // Outside statements only comments and separating semicolons remain.
    for (index, token) in tokens.iter().enumerate() {
        if owner[index].is_none() {
            prop_assert!(
                token.is_comment() || token.kind == TokenKind::Semicolon,
                "token {:?} ({:?}) is in no statement",
                token,
                token.text(source)
            );
        }
    }
    // A statement's text is its tokens: lexed alone it gives the same tokens (the lexer never
    // looks behind a token's start).
    for item in items {
        let Item::Statement(statement) = item else {
            continue;
        };
        let text = &source[statement.range.clone()];
        if text.starts_with('\u{feff}') {
            continue; // alone, a leading U+FEFF would be read as a byte order mark
        }
        let alone = tokenize(text);
        prop_assert!(alone.is_ok(), "{text:?} alone: {alone:?}");
        let alone: Vec<(TokenKind, usize, usize)> = alone
            .unwrap_or_default()
            .into_iter()
            .map(|t| (t.kind, t.range.start, t.range.end))
            .collect();
        let base = statement.range.start;
        let original: Vec<(TokenKind, usize, usize)> = tokens[statement.tokens.clone()]
            .iter()
            .map(|t| (t.kind, t.range.start - base, t.range.end - base))
            .collect();
        prop_assert_eq!(alone, original, "{:?}", text);
    }
    Ok(())
}

/// Every diagnostic renders, names a file of the set and points inside it.
fn check_diagnostics<'a>(
    sources: &[SourceFile],
    diagnostics: impl IntoIterator<Item = &'a Diagnostic>,
) -> Result<(), TestCaseError> {
    for diagnostic in diagnostics {
        prop_assert!(!diagnostic.message.is_empty());
        prop_assert!(!diagnostic.to_string().is_empty());
        let source = sources.iter().find(|s| s.display_path == diagnostic.file);
        prop_assert!(source.is_some(), "{diagnostic} names no file of the set");
        let text = String::from_utf8_lossy(source.map_or(&[][..], |s| &s.bytes[..])).into_owned();
        let lines = text.split('\n').count() as u32;
        prop_assert!(
            diagnostic.line >= 1 && diagnostic.line <= lines && diagnostic.column >= 1,
            "{diagnostic} points outside the file ({lines} lines)"
        );
    }
    Ok(())
}

proptest! {
    #[test]
    fn splitter_pieces_cover_the_input_exactly(source in any_text()) {
        let result = terminates({
            let source = source.clone();
            move || tokenize(&source).map(|tokens| {
                let items = split(&source, &tokens);
                (tokens, items)
            })
        });
        match result {
            Ok((tokens, items)) => {
                check_tokens(&source, &tokens)?;
                check_items(&source, &tokens, &items)?;
                let texts = statement_texts(&source);
                prop_assert!(texts.is_ok());
                for text in texts.unwrap_or_default() {
                    let trimmed = text.trim_matches(|c: char| c.is_ascii_whitespace());
                    prop_assert!(!text.is_empty() && trimmed == text, "{:?}", text);
                }
            }
            Err(error) => {
                // An error points at a character of the input, at or before its end.
                let lines = source.split('\n').count() as u32;
                prop_assert!(error.line >= 1 && error.line <= lines && error.column >= 1, "{error}");
                prop_assert!(error.what.starts_with("unterminated"), "{error}");
                prop_assert!(statement_texts(&source).is_err());
            }
        }
    }
}

/// Directive lines: the known ones with arguments good and bad, and arbitrary text after
/// `-- migrate:`.
fn directive_line() -> impl Strategy<Value = String> {
    let name_part = prop_oneof![
        Just("t".to_owned()),
        Just("Orders".to_owned()),
        Just("app.orders".to_owned()),
        Just("\"App\".\"Orders\"".to_owned()),
        Just("\"x\"\"; DROP TABLE users; --\"".to_owned()),
        Just("\"unclosed".to_owned()),
        Just("\"\"".to_owned()),
        Just("a.b.c".to_owned()),
        Just("1x".to_owned()),
        "[a-zA-Z_\". ;é$]{0,12}",
    ];
    let number = prop_oneof![
        Just("0".to_owned()),
        Just("1000".to_owned()),
        Just("-1".to_owned()),
        Just("99999999999999999999".to_owned()),
        "[0-9a-z]{0,5}",
    ];
    let argument = prop_oneof![
        name_part.clone().prop_map(|n| format!("table={n}")),
        name_part.prop_map(|n| format!("key={n}")),
        number.clone().prop_map(|n| format!("batch={n}")),
        number.clone().prop_map(|n| format!("delay={n}")),
        "[a-z=]{0,6}",
    ];
    let body = prop_oneof![
        Just("up".to_owned()),
        Just("down".to_owned()),
        Just("no-transaction".to_owned()),
        Just("up now".to_owned()),
        prop::sample::select(RULE_IDS).prop_map(|id| format!("allow {id}")),
        prop::sample::select(RULE_IDS).prop_map(|id| format!("allow {id} the reason")),
        "allow [a-z-]{0,12}( [a-z ]{0,8})?",
        number.prop_map(|n| format!("requires {n}")),
        prop::collection::vec(argument, 0..5).prop_map(|a| format!("backfill {}", a.join(" "))),
        "[^\n\r]{0,24}",
    ];
    (body, prop::sample::select(&["", " ", "  ", "\t"][..]))
        .prop_map(|(body, space)| format!("--{space}migrate:{body}"))
}

const RULE_IDS: &[&str] = &[
    "unbounded-update",
    "require-concurrent-index",
    "unparseable",
    "no-such-rule",
    "",
];

/// A file body: directive lines between statements and SQL-ish text, with `\n` or `\r\n`.
fn file_body() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        3 => directive_line(),
        2 => prop::sample::select(STATEMENTS).prop_map(str::to_owned),
        1 => sqlish_text(),
        1 => directive_line().prop_map(|d| format!("SELECT 1; {d}")),
    ];
    (prop::collection::vec(line, 0..12), any::<bool>())
        .prop_map(|(lines, crlf)| lines.join(if crlf { "\r\n" } else { "\n" }))
}

/// File names: valid ones of each phase, and arbitrary text before `.sql`.
fn file_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => (1u64..20, prop::sample::select(&["", ".expand", ".backfill", ".contract"][..]))
            .prop_map(|(version, phase)| format!("{version:04}_f{version}{phase}.sql")),
        1 => any::<String>().prop_map(|stem| format!("{stem}.sql")),
        1 => "[0-9]{0,22}_[a-zA-Z0-9_ .-]{0,8}\\.(sql|SQL|Sql)",
    ]
}

/// Bytes of a file: mostly a UTF-8 body, sometimes arbitrary bytes.
fn file_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        8 => file_body().prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..64),
        1 => (file_body(), prop::collection::vec(any::<u8>(), 1..4)).prop_map(|(body, bytes)| {
            let mut all = body.into_bytes();
            let at = all.len() / 2;
            all.splice(at..at, bytes);
            all
        }),
    ]
}

fn source_files(files: Vec<(String, Vec<u8>)>) -> Vec<SourceFile> {
    files
        .into_iter()
        .enumerate()
        .map(|(index, (file_name, bytes))| SourceFile {
            // Unique even when two generated names are equal.
            display_path: format!("m{index}/{file_name}"),
            file_name,
            bytes: bytes.into(),
        })
        .collect()
}

/// Loads and lints `sources` on a thread with a deadline.
fn load_and_lint(sources: &[SourceFile]) -> (LoadedSet, Vec<Diagnostic>) {
    let sources = sources.to_vec();
    terminates(move || {
        for source in &sources {
            // Each file alone through the file parser as well.
            let _ = parse_file(source, &|id| rule(id).is_some());
        }
        let set = load_files(&sources, &|id| rule(id).is_some());
        let findings = lint_files(&set.files, &Config::default());
        for file in &set.files {
            for statement in file.migration.up.statements.iter() {
                let _ = migrate_core::lock_analysis::analyze_sql(&statement.sql);
                if let Some(spec) = &file.migration.backfill {
                    let _ = migrate_core::batch_plan::plan(&statement.sql, spec, "bigint");
                }
            }
        }
        (set, findings)
    })
}

proptest! {
    #[test]
    fn directives_never_panic_and_every_problem_is_a_diagnostic(
        files in prop::collection::vec((file_name(), file_bytes()), 1..4)
    ) {
        let sources = source_files(files);
        let (set, findings) = load_and_lint(&sources);
        check_diagnostics(&sources, set.diagnostics.iter().chain(&findings))?;
        // A file is either in the set or has an error saying why not.
        for source in &sources {
            let loaded = set.files.iter().any(|f| f.display_path == source.display_path);
            let refused = set
                .diagnostics
                .iter()
                .any(|d| d.file == source.display_path && d.is_error());
            prop_assert!(loaded || refused, "{} vanished without an error", source.display_path);
        }
        for file in &set.files {
            prop_assert!(!file.migration.up.statements.is_empty(), "{} has no up statement", file.display_path);
            if let Some(spec) = &file.migration.backfill {
                prop_assert!(!spec.table.is_empty() && !spec.key.is_empty());
                if let migrate_core::BackfillPace::Fixed { batch_size, .. } = spec.pace {
                    prop_assert!(batch_size > 0);
                }
            }
        }
    }
}

/// Statements the rules look at, and their near misses.
const STATEMENTS: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, a text);",
    "CREATE TABLE t (id serial, b int REFERENCES u (id));",
    "CREATE INDEX i ON t (a);",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a);",
    "DROP INDEX CONCURRENTLY IF EXISTS i;",
    "DROP TABLE t CASCADE;",
    "ALTER TABLE t ADD COLUMN IF NOT EXISTS c timestamptz DEFAULT now();",
    "ALTER TABLE t ADD COLUMN c uuid DEFAULT gen_random_uuid() NOT NULL;",
    "ALTER TABLE t ADD CONSTRAINT c CHECK (a IS NOT NULL) NOT VALID;",
    "ALTER TABLE t VALIDATE CONSTRAINT c;",
    "ALTER TABLE t ALTER COLUMN a SET NOT NULL;",
    "ALTER TABLE t ALTER COLUMN a TYPE bigint;",
    "ALTER TABLE t ADD CONSTRAINT u UNIQUE USING INDEX i;",
    "ALTER TABLE t ADD CONSTRAINT e EXCLUDE USING gist (a WITH =);",
    "ALTER TABLE t SET LOGGED;",
    "ALTER TYPE e ADD VALUE IF NOT EXISTS 'v';",
    "UPDATE t SET a = lower(a) WHERE a IS NULL;",
    "UPDATE \"x\"\"; DROP TABLE users; --\" SET a = 1 WHERE a IS NULL;",
    "UPDATE t SET a = 1;",
    "DELETE FROM t;",
    "LOCK TABLE t;",
    "VACUUM FULL t;",
    "BEGIN;",
    "COMMIT;",
    "DO $$ BEGIN PERFORM 1; END $$;",
    "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;",
    "REINDEX INDEX CONCURRENTLY i;",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY v;",
    "CREATE UNIQUE INDEX CONCURRENTLY i ON ONLY t (a);",
];

/// Words for SQL-ish text that the classifier and rules react to.
const KEYWORDS: &[&str] = &[
    " CREATE ",
    " INDEX ",
    " CONCURRENTLY ",
    " TABLE ",
    " IF NOT EXISTS ",
    " DROP ",
    " ALTER ",
    " ADD COLUMN ",
    " UPDATE ",
    " SET ",
    " WHERE ",
    " DELETE FROM ",
    " DEFAULT ",
    " now() ",
    " random() ",
    " CHECK ",
    " NOT VALID ",
    " NULL ",
    " CONSTRAINT ",
    " REFERENCES ",
    " PRIMARY KEY ",
    " UNIQUE ",
    " TYPE ",
    " CASCADE ",
    " t ",
    " = ",
    ", ",
    ".",
];

proptest! {
    #[test]
    fn linting_arbitrary_files_never_panics(
        bodies in prop::collection::vec(
            prop_oneof![
                3 => prop::collection::vec(prop::sample::select(STATEMENTS), 0..8)
                    .prop_map(|s| s.join("\n")),
                2 => sqlish_text(),
                1 => file_body(),
                1 => any::<String>(),
            ],
            1..4,
        ),
        toml in prop_oneof![
            Just(None),
            Just(Some("[rules]\nvolatile-default = \"warn\"\n".to_owned())),
            any::<String>().prop_map(Some),
            "\\[rules\\]\n[a-z-]{0,20} = \"(error|warn|off|x)\"".prop_map(Some),
        ],
    ) {
        let phases = ["expand", "backfill", "contract"];
        let sources = source_files(
            bodies
                .into_iter()
                .enumerate()
                .map(|(index, body)| {
                    let phase = phases[index % 3];
                    let body = if phase == "backfill" {
                        format!("-- migrate:backfill table=t key=id\n{body}")
                    } else if phase == "contract" {
                        format!("-- migrate:requires 1\n{body}")
                    } else {
                        body
                    };
                    (format!("{:04}_f.{phase}.sql", index + 1), body.into_bytes())
                })
                .collect(),
        );
        let config = match &toml {
            Some(text) => terminates({
                let text = text.clone();
                move || Config::parse(&text, "m/migrate.toml")
            })
            .unwrap_or_default(),
            None => Config::default(),
        };
        let (set, mut findings) = load_and_lint(&sources);
        findings.extend(terminates({
            let files = set.files.clone();
            move || lint_files(&files, &config)
        }));
        check_diagnostics(&sources, set.diagnostics.iter().chain(&findings))?;
    }
}
