//! Reading one statement for the passes above: sqlparser's tree when it parses the statement,
//! and an `ALTER TABLE` it cannot parse whole read one action at a time, so that no action is
//! hidden behind another one sqlparser does not know (`SET NOT NULL` beside a PostgreSQL 18
//! `ADD CONSTRAINT x NOT NULL col`).
//!
//! The actions are cut at the commas outside parentheses (strings and dollar quotes are single
//! tokens); each is parsed on its own as `ALTER TABLE <name> <action>`, and what parses is
//! gathered into one `ALTER TABLE` tree every rule reads as usual. An action that does not
//! parse is classified from its leading keywords ([`ActionKind`]); one that is not recognised
//! stays [`ActionKind::Unknown`], which the `unparseable` rule reports by its text.
//!
//! A statement whose tree no pass reads is not parsed at all ([`Skipped`]: a view, read from
//! its head); sqlparser's tokenizer and parser were half of the linter's time.

use sqlparser::ast::Statement;

use super::parse::{parse_statement, parse_statement_of};
use crate::classify::{Words, normalize_identifier};
use crate::splitter::TokenKind;

/// One statement as the passes read it. Only [`ReadStatement::ast`] gives a syntax tree, so
/// a statement that was not parsed can never be read as if it had been.
#[derive(Debug)]
pub enum ReadStatement {
    /// sqlparser parsed it whole. Boxed: a `Statement` is a few kilobytes inline, and a
    /// file's statements are kept together until the set pass (issue 21, item 20).
    Parsed(Box<Statement>),
    /// Not handed to sqlparser: what the passes read of it comes from its leading keywords
    /// and its tokens (see [`Skipped`]).
    Skipped(Skipped),
    /// An `ALTER TABLE` sqlparser could not parse whole, read action by action.
    SplitAlter {
        /// An `ALTER TABLE` with the actions that parsed on their own (`None` when none did).
        parsed: Option<Box<Statement>>,
        /// sqlparser's message for the whole statement.
        parse_error: String,
        /// The actions that did not parse, classified from their keywords.
        split: SplitAlter,
    },
    /// sqlparser could not parse it: its message.
    Unparseable(String),
}

impl ReadStatement {
    /// sqlparser's tree: the whole statement, or for an `ALTER TABLE` read action by action
    /// the actions that parsed; `None` for a statement that was not parsed.
    pub fn ast(&self) -> Option<&Statement> {
        match self {
            ReadStatement::Parsed(ast) => Some(ast),
            ReadStatement::SplitAlter { parsed, .. } => parsed.as_deref(),
            ReadStatement::Skipped(_) | ReadStatement::Unparseable(_) => None,
        }
    }

    /// The tree, owned: see [`ReadStatement::ast`].
    pub fn into_ast(self) -> Option<Statement> {
        match self {
            ReadStatement::Parsed(ast) => Some(*ast),
            ReadStatement::SplitAlter { parsed, .. } => parsed.map(|ast| *ast),
            ReadStatement::Skipped(_) | ReadStatement::Unparseable(_) => None,
        }
    }

    /// sqlparser's message when it could not parse the statement whole.
    pub fn parse_error(&self) -> Option<&str> {
        match self {
            ReadStatement::SplitAlter { parse_error, .. }
            | ReadStatement::Unparseable(parse_error) => Some(parse_error),
            ReadStatement::Parsed(_) | ReadStatement::Skipped(_) => None,
        }
    }

    /// The `ALTER TABLE` read action by action, when sqlparser could not parse it whole.
    pub fn split_alter(&self) -> Option<&SplitAlter> {
        match self {
            ReadStatement::SplitAlter { split, .. } => Some(split),
            _ => None,
        }
    }

    /// What was read of a statement that was not handed to sqlparser.
    pub fn skipped(&self) -> Option<&Skipped> {
        match self {
            ReadStatement::Skipped(skipped) => Some(skipped),
            _ => None,
        }
    }
}

/// A statement kind whose tree no pass reads beyond its leading keywords, so it is not handed
/// to sqlparser (a third of a real corpus's bytes are view queries, issue 26).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skipped {
    /// `CREATE [OR REPLACE] [MATERIALIZED] VIEW [IF NOT EXISTS] name ... AS query`: the lock
    /// analysis needs its name and kind; the relations its query reads are taken from its
    /// tokens (as they were when it was parsed), and no rule reads the query.
    View(ViewHead),
}

/// What the leading keywords of a `CREATE VIEW` say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewHead {
    /// The view, as the lock analysis names objects: unquoted parts folded to lower case,
    /// quoted ones kept with their quotes (`app."Stats"`).
    pub name: String,
    /// `MATERIALIZED` is written.
    pub materialized: bool,
    /// `OR REPLACE` is written.
    pub or_replace: bool,
}

/// An `ALTER TABLE` sqlparser could not parse whole: what of it was read from keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitAlter {
    /// The table as written (`public.users`).
    pub table: String,
    /// The actions sqlparser could not parse on their own, in statement order.
    pub unparsed: Vec<UnparsedAction>,
}

/// One action of an `ALTER TABLE` that sqlparser cannot parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnparsedAction {
    /// The action as written (`ALTER CONSTRAINT fk NOT DEFERRABLE`).
    pub text: String,
    /// What its keywords say it is.
    pub kind: ActionKind,
    /// sqlparser's message for it.
    pub parse_error: String,
}

/// The `ALTER TABLE` actions sqlparser 0.64 cannot parse that migrations use, from their
/// keywords. Lock modes were read in `pg_locks` on PostgreSQL 15; the lock analysis holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionKind {
    /// `ADD [CONSTRAINT name] NOT NULL column [NOT VALID]` (PostgreSQL 18): like `SET NOT
    /// NULL`, it scans the table under ACCESS EXCLUSIVE unless `NOT VALID`.
    AddNotNull {
        /// The column, folded like PostgreSQL folds it.
        column: String,
        /// `NOT VALID` is written: no scan, a later `VALIDATE CONSTRAINT` does it.
        not_valid: bool,
    },
    /// `ALTER CONSTRAINT name [NOT] DEFERRABLE | INITIALLY DEFERRED | INITIALLY IMMEDIATE |
    /// NOT ENFORCED`: a catalog change.
    AlterConstraint,
    /// `ALTER [COLUMN] c SET STATISTICS ...`, `SET (...)`, `RESET (...)`, `CLUSTER ON`,
    /// `SET WITHOUT CLUSTER`: planner settings, SHARE UPDATE EXCLUSIVE.
    PlannerSetting,
    /// `ALTER [COLUMN] c SET STORAGE ...`, `SET COMPRESSION ...` (for future values only),
    /// `SET GENERATED ...`, `DROP IDENTITY`, `RESTART`: a catalog change.
    ColumnCatalog,
    /// Anything else: the `unparseable` rule reports it.
    Unknown,
}

/// A multi-row `INSERT ... VALUES` longer than this is parsed with its first row only.
const ELIDE_ROWS_ABOVE_BYTES: usize = 16 * 1024;

/// Reads one statement: `sql` is its text, `words` its tokens.
pub fn read_statement(sql: &str, words: &Words<'_>) -> ReadStatement {
    if let Some(view) = view_head(words) {
        return ReadStatement::Skipped(Skipped::View(view));
    }
    let parsed = match first_row_only(words) {
        Some(short) => match crate::splitter::tokenize(&short) {
            Ok(tokens) => parse_statement_of(&short, &Words::new(&short, &tokens)),
            Err(_) => parse_statement_of(sql, words),
        },
        None => parse_statement_of(sql, words),
    };
    match parsed {
        Ok(ast) => ReadStatement::Parsed(Box::new(ast)),
        Err(error) if words.starts_with(&["ALTER", "TABLE"]) => read_by_action(words, error),
        Err(error) => ReadStatement::Unparseable(error),
    }
}

/// `CREATE [OR REPLACE] [MATERIALIZED] VIEW [IF NOT EXISTS] name`, followed by `AS` at the
/// top level: the view's head. `None` for another statement, or one whose name cannot
/// be read from its tokens (it is parsed then, as before).
fn view_head(words: &Words<'_>) -> Option<ViewHead> {
    if !words.starts_with(&["CREATE"]) {
        return None;
    }
    let mut index = 1;
    let or_replace = words.starts_with(&["CREATE", "OR", "REPLACE"]);
    if or_replace {
        index += 2;
    }
    let materialized = words.keyword(index).as_deref() == Some("MATERIALIZED");
    if materialized {
        index += 1;
    }
    if words.keyword(index).as_deref() != Some("VIEW") {
        return None;
    }
    index += 1;
    if words.keyword(index).as_deref() == Some("IF") {
        if words.keyword(index + 1).as_deref() != Some("NOT")
            || words.keyword(index + 2).as_deref() != Some("EXISTS")
        {
            return None;
        }
        index += 3;
    }
    let mut parts = Vec::new();
    loop {
        let token = words.iter().nth(index)?;
        let text = token.text(words.source());
        parts.push(match token.kind {
            TokenKind::Word => text.to_lowercase(),
            TokenKind::QuotedIdent => text.to_owned(),
            _ => return None,
        });
        if words.text(index + 1) != Some(".") {
            break;
        }
        index += 2;
    }
    // The query follows `AS`, after the name (and its column list or options).
    if words.find_top_level("AS").is_none_or(|at| at <= index) {
        return None;
    }
    Some(ViewHead {
        name: parts.join("."),
        materialized,
        or_replace,
    })
}

/// A long `INSERT ... VALUES (...), (...), ...` without its rows after the first: what
/// follows the last row (`ON CONFLICT ...`, `RETURNING ...`) is kept. No rule reads literal
/// rows, and sqlparser's tree of a 48 MB INSERT took 1.8 GB (issue 21, item 20). `None` when
/// the statement is short or not of that shape.
fn first_row_only(words: &Words<'_>) -> Option<String> {
    let span = words.span_text();
    if span.len() <= ELIDE_ROWS_ABOVE_BYTES || !words.starts_with(&["INSERT"]) {
        return None;
    }
    let source = words.source();
    let values = words.find_top_level("VALUES")?;
    let tokens = words.iter().skip(values + 1);
    // The end (byte offset in `source`) of each row, while rows follow each other.
    let mut depth = 0usize;
    let mut first_row_end = None;
    let mut last_row_end = None;
    let mut expecting_row = true;
    for token in tokens {
        let text = token.text(source);
        let punct = token.kind == TokenKind::Punct;
        if depth == 0 {
            match (expecting_row, punct, text) {
                (true, true, "(") => {
                    depth = 1;
                    expecting_row = false;
                }
                (false, true, ",") => expecting_row = true,
                _ => break,
            }
            continue;
        }
        if punct && text == "(" {
            depth += 1;
        } else if punct && text == ")" {
            depth -= 1;
            if depth == 0 {
                first_row_end.get_or_insert(token.range.end);
                last_row_end = Some(token.range.end);
            }
        }
    }
    let (first, last) = (first_row_end?, last_row_end?);
    if first == last || depth != 0 {
        return None;
    }
    let start = words.iter().next()?.range.start;
    let end = words.iter().last()?.range.end;
    Some(format!("{} {}", &source[start..first], &source[last..end]))
}

fn read_by_action(words: &Words<'_>, parse_error: String) -> ReadStatement {
    let Some((name_at, actions_at)) = alter_table_prefix(words) else {
        return ReadStatement::Unparseable(parse_error);
    };
    let prefix_words = (0..actions_at)
        .filter_map(|index| words.text(index))
        .collect::<Vec<_>>();
    let prefix = prefix_words.join(" ");
    let table = (name_at..actions_at)
        .filter_map(|index| words.text(index))
        .filter(|text| *text != "*")
        .collect::<String>();
    let mut ast: Option<Statement> = None;
    let mut unparsed = Vec::new();
    for action in words.split_commas(actions_at) {
        let text = action.span_text();
        match parse_statement(&format!("{prefix} {text}")) {
            Ok(Statement::AlterTable(mut one)) => match &mut ast {
                Some(Statement::AlterTable(all)) => all.operations.append(&mut one.operations),
                _ => ast = Some(Statement::AlterTable(one)),
            },
            Ok(_) => unparsed.push(UnparsedAction {
                text: text.to_owned(),
                kind: ActionKind::Unknown,
                parse_error: "not read as an ALTER TABLE action".to_owned(),
            }),
            Err(error) => unparsed.push(UnparsedAction {
                text: text.to_owned(),
                kind: action_kind(&action),
                parse_error: error,
            }),
        }
    }
    ReadStatement::SplitAlter {
        parsed: ast.map(Box::new),
        parse_error,
        split: SplitAlter { table, unparsed },
    }
}

/// Each action of an `ALTER TABLE` as written, with where it starts (`(line, column)` in the
/// file), in statement order; empty for another statement.
pub fn alter_table_action_starts<'a>(words: &Words<'a>) -> Vec<(&'a str, (u32, u32))> {
    if !words.starts_with(&["ALTER", "TABLE"]) {
        return Vec::new();
    }
    let Some((_, actions_at)) = alter_table_prefix(words) else {
        return Vec::new();
    };
    words
        .split_commas(actions_at)
        .iter()
        .filter_map(|action| {
            let first = action.iter().next()?;
            Some((action.span_text(), (first.line, first.column)))
        })
        .collect()
}

/// `ALTER TABLE [IF EXISTS] [ONLY] name [*]`: the token index of the name and of the first
/// action. `None` when no name follows.
fn alter_table_prefix(words: &Words<'_>) -> Option<(usize, usize)> {
    let mut index = 2;
    if words.keyword(index).as_deref() == Some("IF")
        && words.keyword(index + 1).as_deref() == Some("EXISTS")
    {
        index += 2;
    }
    if words.keyword(index).as_deref() == Some("ONLY") {
        index += 1;
    }
    let name_at = index;
    words.text(index)?;
    index += 1;
    // `schema.table`: the splitter gives `.` as its own token.
    while words.text(index) == Some(".") && words.text(index + 1).is_some() {
        index += 2;
    }
    if words.text(index) == Some("*") {
        index += 1;
    }
    Some((name_at, index))
}

/// Classifies an action sqlparser could not parse by its leading keywords.
fn action_kind(action: &Words<'_>) -> ActionKind {
    let keyword = |index: usize| action.keyword(index).unwrap_or_default();
    let keywords_from =
        |start: usize| -> Vec<String> { (start..action.len()).map(keyword).collect() };
    match keyword(0).as_str() {
        "ADD" => {
            // ADD [CONSTRAINT name] NOT NULL column [NOT VALID] [NO INHERIT]
            let at = if keyword(1) == "CONSTRAINT" { 3 } else { 1 };
            if keyword(at) == "NOT"
                && keyword(at + 1) == "NULL"
                && let Some(column) = action.text(at + 2)
            {
                let rest = keywords_from(at + 3);
                let not_valid = rest.windows(2).any(|pair| pair == ["NOT", "VALID"]);
                let known_rest = rest
                    .iter()
                    .all(|word| matches!(word.as_str(), "NOT" | "VALID" | "NO" | "INHERIT"));
                if known_rest {
                    return ActionKind::AddNotNull {
                        column: normalize_identifier(column),
                        not_valid,
                    };
                }
            }
            ActionKind::Unknown
        }
        "ALTER" if keyword(1) == "CONSTRAINT" => {
            let rest = keywords_from(3);
            let deferrability = rest.iter().all(|word| {
                matches!(
                    word.as_str(),
                    "NOT" | "DEFERRABLE" | "INITIALLY" | "DEFERRED" | "IMMEDIATE" | "ENFORCED"
                )
            });
            // `ENFORCED` alone (PostgreSQL 18) validates a foreign key: not a catalog change.
            let enforces = rest
                .iter()
                .enumerate()
                .any(|(i, word)| word == "ENFORCED" && (i == 0 || rest[i - 1] != "NOT"));
            if !rest.is_empty() && deferrability && !enforces {
                ActionKind::AlterConstraint
            } else {
                ActionKind::Unknown
            }
        }
        "ALTER" => {
            // ALTER [COLUMN] c <what>
            let at = if keyword(1) == "COLUMN" { 3 } else { 2 };
            let (first, second) = (keyword(at), keyword(at + 1));
            match (first.as_str(), second.as_str()) {
                ("SET", "STATISTICS") | ("RESET", _) => ActionKind::PlannerSetting,
                ("SET", "") if action.text(at + 1) == Some("(") => ActionKind::PlannerSetting,
                ("SET", "STORAGE" | "COMPRESSION" | "GENERATED")
                | ("DROP", "IDENTITY")
                | ("RESTART", _) => ActionKind::ColumnCatalog,
                _ => ActionKind::Unknown,
            }
        }
        "CLUSTER" if keyword(1) == "ON" => ActionKind::PlannerSetting,
        "SET" if keyword(1) == "WITHOUT" && keyword(2) == "CLUSTER" => ActionKind::PlannerSetting,
        _ => ActionKind::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splitter::tokenize;

    fn read(sql: &str) -> ReadStatement {
        let tokens = tokenize(sql).unwrap();
        read_statement(sql, &Words::new(sql, &tokens))
    }

    fn operations(read: &ReadStatement) -> Vec<String> {
        match read.ast() {
            Some(Statement::AlterTable(alter)) => {
                alter.operations.iter().map(ToString::to_string).collect()
            }
            _ => Vec::new(),
        }
    }

    fn kinds(read: &ReadStatement) -> Vec<ActionKind> {
        read.split_alter()
            .into_iter()
            .flat_map(|split| split.unparsed.iter().map(|a| a.kind.clone()))
            .collect()
    }

    #[test]
    fn a_parsed_statement_is_read_whole() {
        let read = read("ALTER TABLE t ADD COLUMN a int, DROP COLUMN b");
        assert_eq!(operations(&read), ["ADD COLUMN a INT", "DROP COLUMN b"]);
        assert!(read.split_alter().is_none() && read.parse_error().is_none());
    }

    #[test]
    fn an_unparseable_action_hides_none_of_the_others() {
        let read = read(
            "ALTER TABLE ONLY public.t ALTER COLUMN c SET NOT NULL, ALTER CONSTRAINT fk NOT DEFERRABLE, \
             ADD CONSTRAINT t_pk PRIMARY KEY (id), ADD CONSTRAINT x NOT NULL \"Col\" NOT VALID, \
             DROP COLUMN d, FROBNICATE e",
        );
        assert_eq!(
            operations(&read),
            [
                "ALTER COLUMN c SET NOT NULL",
                "ADD CONSTRAINT t_pk PRIMARY KEY (id)",
                "DROP COLUMN d"
            ]
        );
        let split = read.split_alter().unwrap();
        assert_eq!(split.table, "public.t");
        assert_eq!(
            kinds(&read),
            [
                ActionKind::AlterConstraint,
                ActionKind::AddNotNull {
                    column: "Col".to_owned(),
                    not_valid: true
                },
                ActionKind::Unknown
            ]
        );
        assert_eq!(split.unparsed[2].text, "FROBNICATE e");
        assert!(read.parse_error().is_some());
    }

    #[test]
    fn commas_inside_parentheses_strings_and_dollar_quotes_do_not_cut() {
        let read = read(
            "ALTER TABLE t ADD CONSTRAINT c CHECK (a IN (1, 2) AND b <> 'x,y' AND d <> $$p,q$$), \
             ALTER CONSTRAINT fk INITIALLY DEFERRED",
        );
        assert_eq!(operations(&read).len(), 1);
        assert_eq!(kinds(&read), [ActionKind::AlterConstraint]);
    }

    #[test]
    fn action_kinds_from_keywords() {
        for (action, kind) in [
            (
                "ADD NOT NULL c",
                ActionKind::AddNotNull {
                    column: "c".into(),
                    not_valid: false,
                },
            ),
            (
                "ALTER CONSTRAINT fk DEFERRABLE INITIALLY IMMEDIATE",
                ActionKind::AlterConstraint,
            ),
            (
                "ALTER CONSTRAINT fk NOT ENFORCED",
                ActionKind::AlterConstraint,
            ),
            ("ALTER CONSTRAINT fk ENFORCED", ActionKind::Unknown),
            ("ALTER CONSTRAINT fk NO INHERIT", ActionKind::Unknown),
            (
                "ALTER COLUMN c SET STATISTICS DEFAULT",
                ActionKind::PlannerSetting,
            ),
            ("ALTER c SET (n_distinct = 100)", ActionKind::PlannerSetting),
            ("CLUSTER ON t_pkey", ActionKind::PlannerSetting),
            ("SET WITHOUT CLUSTER", ActionKind::PlannerSetting),
            (
                "ALTER COLUMN c SET STORAGE EXTERNAL",
                ActionKind::ColumnCatalog,
            ),
            (
                "ALTER COLUMN c SET COMPRESSION lz4",
                ActionKind::ColumnCatalog,
            ),
            (
                "ALTER COLUMN c DROP IDENTITY IF EXISTS",
                ActionKind::ColumnCatalog,
            ),
            ("SET ACCESS METHOD heap", ActionKind::Unknown),
            (
                "ALTER COLUMN c SET EXPRESSION AS (a * 2)",
                ActionKind::Unknown,
            ),
        ] {
            let read = read(&format!("ALTER TABLE t {action}"));
            assert_eq!(kinds(&read), [kind], "{action}");
        }
    }

    #[test]
    fn alter_table_without_a_name_is_unread() {
        let read = read("ALTER TABLE");
        assert!(read.ast().is_none() && read.split_alter().is_none());
        assert!(read.parse_error().is_some());
    }

    #[test]
    fn a_long_insert_of_literal_rows_is_read_with_its_first_row_only() {
        let rows: Vec<String> = (0..2_000).map(|i| format!("({i}, 'name {i}')")).collect();
        let long = format!(
            "INSERT INTO t (id, name) VALUES {} ON CONFLICT (id) DO NOTHING RETURNING id",
            rows.join(", ")
        );
        assert!(long.len() > ELIDE_ROWS_ABOVE_BYTES);
        let elided = read(&long);
        let Some(Statement::Insert(insert)) = elided.ast() else {
            panic!("an INSERT: {elided:?}");
        };
        let Some(source) = &insert.source else {
            panic!("a source");
        };
        let sqlparser::ast::SetExpr::Values(values) = &*source.body else {
            panic!("VALUES");
        };
        assert_eq!(values.rows.len(), 1);
        assert!(insert.on.is_some(), "what follows the rows is kept");
        assert!(insert.returning.is_some());
        // Short ones, and long ones of another shape, are read whole.
        let short = read_statement_rows("INSERT INTO t (id) VALUES (1), (2)");
        assert_eq!(short, Some(2));
        let select = format!(
            "INSERT INTO t (id) SELECT id FROM u WHERE id IN ({})",
            (0..5_000)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        assert!(read(&select).ast().is_some());
        assert!(
            first_row_only(&Words::new(
                &select,
                &crate::splitter::tokenize(&select).unwrap()
            ))
            .is_none()
        );
    }

    fn read_statement_rows(sql: &str) -> Option<usize> {
        match read(sql).ast() {
            Some(Statement::Insert(insert)) => match insert.source.as_deref().map(|s| &*s.body) {
                Some(sqlparser::ast::SetExpr::Values(values)) => Some(values.rows.len()),
                _ => None,
            },
            _ => None,
        }
    }
}
