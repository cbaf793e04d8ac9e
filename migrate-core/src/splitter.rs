//! Exact statement splitting with source positions.
//!
//! A small PostgreSQL lexer (strings, `E''` strings, quoted identifiers, `--` and nested
//! `/* */` comments, `$$`/`$tag$` dollar quotes) followed by a splitter that cuts at top-level
//! `;` the way psql does: not inside parentheses, and not inside a SQL-standard
//! `BEGIN ATOMIC ... END` function body. Every token keeps its byte range and its 1-based
//! line and column (in characters) in the original file.
//!
//! A UTF-8 byte order mark at the start of the file (some Windows editors write one) is
//! skipped like whitespace: it is not part of the first statement, and it takes no column,
//! since no editor shows it. Byte ranges still index the original text.

use std::ops::Range;

/// What a token is; enough to split statements and read keywords, not a full SQL grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// Keyword or unquoted identifier.
    Word,
    /// `"identifier"`.
    QuotedIdent,
    /// `'text'`, `E'text'`, `B'..'`, `X'..'`, `U&'..'`.
    String,
    /// `$$text$$` or `$tag$text$tag$`.
    DollarString,
    /// `42`, `3.14`, `1e6`.
    Number,
    /// `$1`.
    Parameter,
    /// `;`, where statements end unless inside parentheses or a `BEGIN ATOMIC` body.
    Semicolon,
    /// Any other character (operators, parentheses, commas).
    Punct,
    /// `-- ...` up to the end of the line: where `-- migrate:` directives live.
    LineComment,
    /// `/* ... */`, nested ones included.
    BlockComment,
}

/// One token, located in the original text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Byte range in the original text (offsets count a byte order mark).
    pub range: Range<usize>,
    /// 1-based line of its first character.
    pub line: u32,
    /// 1-based column of its first character, in characters.
    pub column: u32,
}

impl Token {
    /// The token's text in `source`, the text it was read from.
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        &source[self.range.clone()]
    }

    /// True when this is the unquoted word `keyword` (ASCII case-insensitive).
    pub fn is_word(&self, source: &str, keyword: &str) -> bool {
        self.kind == TokenKind::Word && self.text(source).eq_ignore_ascii_case(keyword)
    }

    /// A `--` or `/* */` comment.
    pub fn is_comment(&self) -> bool {
        matches!(self.kind, TokenKind::LineComment | TokenKind::BlockComment)
    }
}

/// Text that cannot be split: a string, quoted identifier, comment or dollar quote that is
/// never closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{line}:{column}: {what}")]
pub struct LexError {
    /// 1-based line where the unclosed token starts.
    pub line: u32,
    /// 1-based column, in characters, where it starts.
    pub column: u32,
    /// What is left open.
    pub what: &'static str,
}

struct Cursor<'a> {
    bytes: &'a [u8],
    source: &'a str,
    pos: usize,
    line: u32,
    column: u32,
}

impl Cursor<'_> {
    fn peek(&self, ahead: usize) -> Option<u8> {
        self.bytes.get(self.pos + ahead).copied()
    }

    /// Advances one character, keeping line and column right for multi-byte UTF-8.
    fn bump(&mut self) {
        let Some(ch) = self.source[self.pos..].chars().next() else {
            return;
        };
        self.pos += ch.len_utf8();
        if ch == '\n' {
            self.line += 1;
            self.column = 1;
        } else {
            self.column += 1;
        }
    }

    fn bump_n(&mut self, count: usize) {
        for _ in 0..count {
            self.bump();
        }
    }

    fn starts_with(&self, prefix: &[u8]) -> bool {
        self.bytes[self.pos..].starts_with(prefix)
    }
}

fn is_ident_start(byte: u8) -> bool {
    byte.is_ascii_alphabetic() || byte == b'_' || byte >= 0x80
}

fn is_ident_continue(byte: u8) -> bool {
    is_ident_start(byte) || byte.is_ascii_digit() || byte == b'$'
}

/// U+FEFF at the start of a file: an encoding mark, not text.
const BYTE_ORDER_MARK: char = '\u{feff}';

/// The length in bytes of a byte order mark at the start of `source` (0 or 3).
fn byte_order_mark_len(source: &str) -> usize {
    if source.starts_with(BYTE_ORDER_MARK) {
        BYTE_ORDER_MARK.len_utf8()
    } else {
        0
    }
}

/// Tokenizes `source`, keeping comments and dropping whitespace (and a leading byte order
/// mark).
pub fn tokenize(source: &str) -> Result<Vec<Token>, LexError> {
    Lexer::new(source).collect()
}

/// The tokens of `source` one at a time, as [`tokenize`] reads them; nothing follows an error.
/// For big files: a file's tokens take several times its size (issue 21, item 20).
pub struct Lexer<'a> {
    cursor: Cursor<'a>,
    failed: bool,
}

impl<'a> Lexer<'a> {
    /// Reads `source` from its start.
    pub fn new(source: &'a str) -> Lexer<'a> {
        Lexer {
            cursor: Cursor {
                bytes: source.as_bytes(),
                source,
                // Otherwise the mark (bytes >= 0x80 read as identifier characters) would glue
                // itself to the first word: `\u{feff}CREATE` is not a keyword.
                pos: byte_order_mark_len(source),
                line: 1,
                column: 1,
            },
            failed: false,
        }
    }
}

impl Iterator for Lexer<'_> {
    type Item = Result<Token, LexError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let token = next_token(&mut self.cursor)?;
        self.failed = token.is_err();
        Some(token)
    }
}

/// The tokens of a statement [`split`] found in `source` (comments inside it included), read
/// again from its text: the same tokens, ranges and positions as the file's, for passes that
/// do not keep the file's tokens.
pub fn statement_tokens(source: &str, statement: &RawStatement) -> Vec<Token> {
    // The file was lexed whole before: its statements' tokens lex again.
    statement_lexer(source, statement)
        .map_while(Result::ok)
        .collect()
}

/// The first tokens of a statement, up to its `words`-th word (comments are not words): what
/// a pass needs to tell the statement's kind by its leading keywords without lexing a long
/// view query or function body to its end.
pub fn statement_head(source: &str, statement: &RawStatement, words: usize) -> Vec<Token> {
    let mut seen = 0;
    statement_lexer(source, statement)
        .map_while(Result::ok)
        .take_while(|token| {
            let more = seen < words;
            seen += usize::from(!token.is_comment());
            more
        })
        .collect()
}

/// [`Lexer`] over one statement [`split`] found in `source`.
fn statement_lexer<'a>(source: &'a str, statement: &RawStatement) -> Lexer<'a> {
    let end = statement.range.end;
    Lexer {
        cursor: Cursor {
            bytes: &source.as_bytes()[..end],
            source: &source[..end],
            pos: statement.range.start,
            line: statement.line,
            column: statement.column,
        },
        failed: false,
    }
}

/// The next token at the cursor, whitespace skipped; `None` at the end.
fn next_token(cursor: &mut Cursor<'_>) -> Option<Result<Token, LexError>> {
    while cursor.peek(0)?.is_ascii_whitespace() {
        cursor.bump();
    }
    let (start, line, column) = (cursor.pos, cursor.line, cursor.column);
    Some(match lex_token(cursor) {
        Ok(kind) => Ok(Token {
            kind,
            range: start..cursor.pos,
            line,
            column,
        }),
        Err(what) => Err(LexError { line, column, what }),
    })
}

/// Reads the token that starts at the cursor (not whitespace): its kind, or what is left open.
fn lex_token(cursor: &mut Cursor<'_>) -> Result<TokenKind, &'static str> {
    let source = cursor.source;
    let byte = cursor.peek(0).unwrap_or(b' ');
    Ok(match byte {
        b'-' if cursor.peek(1) == Some(b'-') => {
            while cursor.peek(0).is_some_and(|b| b != b'\n') {
                cursor.bump();
            }
            TokenKind::LineComment
        }
        b'/' if cursor.peek(1) == Some(b'*') => {
            // PostgreSQL block comments nest.
            let mut depth = 0usize;
            loop {
                if cursor.starts_with(b"/*") {
                    depth += 1;
                    cursor.bump_n(2);
                } else if cursor.starts_with(b"*/") {
                    depth -= 1;
                    cursor.bump_n(2);
                    if depth == 0 {
                        break;
                    }
                } else if cursor.peek(0).is_none() {
                    return Err("unterminated /* comment");
                } else {
                    cursor.bump();
                }
            }
            TokenKind::BlockComment
        }
        b'\'' => {
            lex_quoted(cursor, b'\'', false).ok_or("unterminated string")?;
            TokenKind::String
        }
        b'"' => {
            lex_quoted(cursor, b'"', false).ok_or("unterminated quoted identifier")?;
            TokenKind::QuotedIdent
        }
        b'$' if cursor.peek(1).is_some_and(|b| b.is_ascii_digit()) => {
            cursor.bump();
            while cursor.peek(0).is_some_and(|b| b.is_ascii_digit()) {
                cursor.bump();
            }
            TokenKind::Parameter
        }
        b'$' => match dollar_tag(&source[cursor.pos..]) {
            Some(tag_len) => {
                let tag = &source[cursor.pos..cursor.pos + tag_len];
                cursor.bump_n(tag.chars().count());
                match source[cursor.pos..].find(tag) {
                    Some(offset) => {
                        let body_chars = source[cursor.pos..cursor.pos + offset].chars().count();
                        cursor.bump_n(body_chars + tag.chars().count());
                    }
                    None => return Err("unterminated dollar-quoted string"),
                }
                TokenKind::DollarString
            }
            None => {
                cursor.bump();
                TokenKind::Punct
            }
        },
        b'0'..=b'9' => {
            while cursor
                .peek(0)
                .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
            {
                cursor.bump();
            }
            TokenKind::Number
        }
        b';' => {
            cursor.bump();
            TokenKind::Semicolon
        }
        byte if is_ident_start(byte) => {
            // E'...' strings take backslash escapes; B'', X'', N'' are plain strings.
            let next = cursor.peek(1);
            if next == Some(b'\'') && matches!(byte, b'e' | b'E') {
                cursor.bump();
                lex_quoted(cursor, b'\'', true).ok_or("unterminated E'' string")?;
                TokenKind::String
            } else if next == Some(b'\'') && matches!(byte, b'b' | b'B' | b'x' | b'X' | b'n' | b'N')
            {
                cursor.bump();
                lex_quoted(cursor, b'\'', false).ok_or("unterminated string")?;
                TokenKind::String
            } else if matches!(byte, b'u' | b'U')
                && next == Some(b'&')
                && matches!(cursor.peek(2), Some(b'\'' | b'"'))
            {
                let quote = cursor.peek(2).unwrap_or(b'\'');
                cursor.bump_n(2);
                lex_quoted(cursor, quote, false).ok_or("unterminated U& string")?;
                if quote == b'"' {
                    TokenKind::QuotedIdent
                } else {
                    TokenKind::String
                }
            } else {
                while cursor.peek(0).is_some_and(is_ident_continue) {
                    cursor.bump();
                }
                TokenKind::Word
            }
        }
        _ => {
            cursor.bump();
            TokenKind::Punct
        }
    })
}

/// Consumes a quoted token starting at the opening quote. A doubled quote is an escaped
/// quote; with `backslash_escapes` (E'' strings) a backslash escapes the next character.
fn lex_quoted(cursor: &mut Cursor<'_>, quote: u8, backslash_escapes: bool) -> Option<()> {
    cursor.bump();
    loop {
        match cursor.peek(0)? {
            b'\\' if backslash_escapes => {
                cursor.bump();
                cursor.peek(0)?;
                cursor.bump();
            }
            byte if byte == quote => {
                cursor.bump();
                if cursor.peek(0) == Some(quote) {
                    cursor.bump();
                } else {
                    return Some(());
                }
            }
            _ => cursor.bump(),
        }
    }
}

/// Length of a `$tag$` opening at the start of `text`, if it is one.
fn dollar_tag(text: &str) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut index = 1;
    if bytes.get(index).is_some_and(|&b| is_ident_start(b)) {
        while bytes
            .get(index)
            .is_some_and(|&b| is_ident_start(b) || b.is_ascii_digit())
        {
            index += 1;
        }
    }
    (bytes.get(index) == Some(&b'$')).then_some(index + 1)
}

/// A statement found by [`split`]: a range of non-comment tokens ended by `;` or the end of
/// the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawStatement {
    /// Index range into the token list (comments inside the statement included).
    pub tokens: Range<usize>,
    /// Byte range of the text, from the first token to the end of the last one (no `;`).
    pub range: Range<usize>,
    /// 1-based line of the first token.
    pub line: u32,
    /// 1-based column of the first token, in characters.
    pub column: u32,
}

/// One item of a file in source order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    /// A `--` comment. Whether it starts its line and whether it lies inside a statement
    /// matter for `-- migrate:` directives.
    LineComment {
        /// Index of the comment in the token list.
        token: usize,
        /// Nothing but whitespace before it on its line.
        own_line: bool,
        /// It lies between the first and the last token of a statement.
        inside_statement: bool,
    },
    /// A statement, without its `;`.
    Statement(RawStatement),
}

/// Splits tokens into statements at top-level semicolons. Comments between statements are
/// reported as items in order; a comment inside a statement is reported before that statement.
pub fn split(source: &str, tokens: &[Token]) -> Vec<Item> {
    let mut splitter = Splitter::default();
    let mut items: Vec<Item> = tokens
        .iter()
        .enumerate()
        .filter_map(|(index, token)| splitter.push(source, index, token))
        .collect();
    items.extend(splitter.finish());
    items
}

/// [`split`] as the file is lexed, without keeping its tokens (a big file's tokens take
/// several times its size, issue 21, item 20): `each` gets the items in order, each with its
/// tokens (a line comment's own, a statement's with the comments inside it).
pub fn split_each(source: &str, mut each: impl FnMut(Item, &[Token])) -> Result<(), LexError> {
    let mut splitter = Splitter::default();
    // The tokens of the statement being read, from its first.
    let mut statement: Vec<Token> = Vec::new();
    let mut first_index = 0;
    for (index, token) in Lexer::new(source).enumerate() {
        let token = token?;
        match splitter.push(source, index, &token) {
            Some(item @ Item::LineComment { .. }) => each(item, std::slice::from_ref(&token)),
            Some(Item::Statement(raw)) => {
                let tokens = &statement[..raw.tokens.end - first_index];
                each(Item::Statement(raw), tokens);
                statement.clear();
            }
            None => {}
        }
        if splitter.current.is_some() {
            if statement.is_empty() {
                first_index = index;
            }
            statement.push(token);
        }
    }
    if let Some(item) = splitter.finish() {
        if let Item::Statement(raw) = &item {
            statement.truncate(raw.tokens.end - first_index);
        }
        each(item, &statement);
    }
    Ok(())
}

/// The statement being read by a [`Splitter`].
struct OpenStatement {
    /// Index of its first token.
    first: usize,
    /// Index of its last non-comment token.
    last: usize,
    /// Byte offset where it starts and where its last token ends.
    start: usize,
    end: usize,
    /// Position of its first token.
    line: u32,
    column: u32,
    /// Its first token is the word `CREATE`.
    starts_with_create: bool,
}

/// Where statements end, read one token at a time: psql's rules.
#[derive(Default)]
struct Splitter {
    current: Option<OpenStatement>,
    paren_depth: i32,
    atomic_depth: i32,
    routine: bool,
}

impl Splitter {
    /// Reads the `index`-th token: the item it completes, if any.
    fn push(&mut self, source: &str, index: usize, token: &Token) -> Option<Item> {
        if token.kind == TokenKind::LineComment {
            let line_start = source[..token.range.start]
                .rfind('\n')
                .map_or(byte_order_mark_len(source), |i| i + 1);
            let own_line = source[line_start..token.range.start].trim().is_empty();
            return Some(Item::LineComment {
                token: index,
                own_line,
                inside_statement: self.current.is_some(),
            });
        }
        if token.kind == TokenKind::BlockComment {
            return None;
        }
        if token.kind == TokenKind::Semicolon && self.paren_depth <= 0 && self.atomic_depth <= 0 {
            self.paren_depth = 0;
            self.atomic_depth = 0;
            self.routine = false;
            return self.finish();
        }
        let current = match &mut self.current {
            Some(current) => {
                current.last = index;
                current.end = token.range.end;
                current
            }
            None => {
                self.routine = false;
                self.current.insert(OpenStatement {
                    first: index,
                    last: index,
                    start: token.range.start,
                    end: token.range.end,
                    line: token.line,
                    column: token.column,
                    starts_with_create: token.is_word(source, "create"),
                })
            }
        };
        if token.kind == TokenKind::Semicolon {
            // A `;` inside BEGIN ATOMIC ... END or parentheses belongs to the statement.
            return None;
        }
        match token.kind {
            TokenKind::Punct if token.text(source) == "(" => self.paren_depth += 1,
            TokenKind::Punct if token.text(source) == ")" => self.paren_depth -= 1,
            TokenKind::Word => {
                if index - current.first <= 4
                    && (token.is_word(source, "function") || token.is_word(source, "procedure"))
                    && current.starts_with_create
                {
                    self.routine = true;
                }
                // psql counts BEGIN/CASE against END inside CREATE FUNCTION/PROCEDURE so a
                // SQL-standard body (BEGIN ATOMIC ...; ...; END) stays one statement.
                if self.routine {
                    if token.is_word(source, "begin") || token.is_word(source, "case") {
                        self.atomic_depth += 1;
                    } else if token.is_word(source, "end") {
                        self.atomic_depth -= 1;
                    }
                }
            }
            _ => {}
        }
        None
    }

    /// The statement being read, ended by a top-level `;` or the end of the input.
    fn finish(&mut self) -> Option<Item> {
        let current = self.current.take()?;
        Some(Item::Statement(RawStatement {
            tokens: current.first..current.last + 1,
            range: current.start..current.end,
            line: current.line,
            column: current.column,
        }))
    }
}

/// The statement texts of `source`, for tests and tools.
pub fn statement_texts(source: &str) -> Result<Vec<&str>, LexError> {
    let tokens = tokenize(source)?;
    Ok(split(source, &tokens)
        .into_iter()
        .filter_map(|item| match item {
            Item::Statement(statement) => Some(&source[statement.range]),
            Item::LineComment { .. } => None,
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(source: &str) -> Vec<&str> {
        statement_texts(source).unwrap()
    }

    #[test]
    fn splits_on_top_level_semicolons() {
        assert_eq!(
            texts("SELECT 1; SELECT 2;\nSELECT 3"),
            ["SELECT 1", "SELECT 2", "SELECT 3"]
        );
        assert_eq!(texts(";;  ; "), Vec::<&str>::new());
    }

    #[test]
    fn semicolons_in_strings_identifiers_and_comments_do_not_split() {
        let sql = "INSERT INTO t VALUES ('a;b', 'it''s;');\n\
                   SELECT \"we;ird\"\"col\" FROM t; -- trailing; comment\n\
                   /* outer /* nested; */ still; comment */ SELECT 2;";
        assert_eq!(
            texts(sql),
            [
                "INSERT INTO t VALUES ('a;b', 'it''s;')",
                "SELECT \"we;ird\"\"col\" FROM t",
                "SELECT 2"
            ]
        );
    }

    #[test]
    fn escape_strings_take_backslashes() {
        assert_eq!(
            texts(r"SELECT E'a\';b'; SELECT 'c\'; SELECT 3"),
            [r"SELECT E'a\';b'", r"SELECT 'c\'", "SELECT 3"]
        );
    }

    #[test]
    fn dollar_quotes_with_and_without_tags() {
        let sql = "CREATE FUNCTION f() RETURNS int AS $$ SELECT 1; $$ LANGUAGE sql;\n\
                   CREATE FUNCTION g() RETURNS int AS $body$ BEGIN RETURN $$x;$$; END; $body$ LANGUAGE plpgsql;\n\
                   SELECT $1, a$b FROM t;";
        let statements = texts(sql);
        assert_eq!(statements.len(), 3, "{statements:#?}");
        assert!(statements[1].ends_with("$body$ LANGUAGE plpgsql"));
        assert_eq!(statements[2], "SELECT $1, a$b FROM t");
    }

    #[test]
    fn begin_atomic_bodies_stay_whole() {
        let sql = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT a; SELECT CASE WHEN a > 0 THEN 1 END; END; SELECT 2;";
        let statements = texts(sql);
        assert_eq!(statements.len(), 2, "{statements:#?}");
        assert!(statements[0].ends_with("END; END"));
    }

    #[test]
    fn positions_are_exact_lines_and_character_columns() {
        let sql = "-- header\n  SELECT 'é';  SELECT 2;\n\n   CREATE TABLE t ();";
        let tokens = tokenize(sql).unwrap();
        let positions: Vec<(u32, u32)> = split(sql, &tokens)
            .into_iter()
            .filter_map(|item| match item {
                Item::Statement(s) => Some((s.line, s.column)),
                _ => None,
            })
            .collect();
        assert_eq!(positions, [(2, 3), (2, 16), (4, 4)]);
    }

    #[test]
    fn unterminated_constructs_are_errors_with_positions() {
        assert_eq!(
            tokenize("SELECT 'abc").unwrap_err(),
            LexError {
                line: 1,
                column: 8,
                what: "unterminated string"
            }
        );
        assert!(tokenize("SELECT $$abc").is_err());
        assert!(tokenize("/* /* */").is_err());
        assert!(tokenize("SELECT \"x").is_err());
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_statement() {
        let sql = "\u{feff}-- migrate:up\nCREATE TABLE t ();\n";
        let tokens = tokenize(sql).unwrap();
        let items = split(sql, &tokens);
        assert_eq!(
            items[0],
            Item::LineComment {
                token: 0,
                own_line: true,
                inside_statement: false
            }
        );
        assert_eq!((tokens[0].line, tokens[0].column), (1, 1));
        assert_eq!(tokens[0].range.start, 3, "ranges index the original text");
        assert_eq!(texts(sql), ["CREATE TABLE t ()"]);
        let statement_first = "\u{feff}SELECT 1;";
        let tokens = tokenize(statement_first).unwrap();
        assert_eq!(
            (
                tokens[0].text(statement_first),
                tokens[0].line,
                tokens[0].column
            ),
            ("SELECT", 1, 1)
        );
        // Only at the start of the file: elsewhere U+FEFF is an ordinary character.
        assert_eq!(texts("SELECT 1;\u{feff}x")[1], "\u{feff}x");
    }

    #[test]
    fn comments_report_whether_they_own_their_line() {
        let sql = "-- a\nSELECT 1; -- b\nSELECT\n-- c\n2;";
        let tokens = tokenize(sql).unwrap();
        let comments: Vec<(bool, bool)> = split(sql, &tokens)
            .into_iter()
            .filter_map(|item| match item {
                Item::LineComment {
                    own_line,
                    inside_statement,
                    ..
                } => Some((own_line, inside_statement)),
                _ => None,
            })
            .collect();
        assert_eq!(comments, [(true, false), (false, false), (true, true)]);
    }

    /// The sources the streaming split is compared on: comments inside and between
    /// statements, a SQL-standard body, dollar quotes, a byte order mark, multi-byte
    /// characters, no final `;`, a trailing comment.
    const STREAMED: &[&str] = &[
        "CREATE TABLE t (id int); -- after\n-- own line\nINSERT INTO t VALUES (1) /* in */ ; SELECT 1",
        "\u{feff}SELECT 'é';\nSELECT $$ ; $$ -- inside\n, \"ü;\" ;;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT 2; END;\nDO $tag$ BEGIN PERFORM 1; END $tag$;\n-- last",
        "SELECT (1;2); SELECT E'\\'' ; /* only a comment */",
        "",
    ];

    #[test]
    fn split_each_gives_split_items_with_their_tokens() {
        for source in STREAMED {
            let tokens = tokenize(source).unwrap();
            let expected: Vec<(Item, Vec<Token>)> = split(source, &tokens)
                .into_iter()
                .map(|item| {
                    let own = match &item {
                        Item::LineComment { token, .. } => vec![tokens[*token].clone()],
                        Item::Statement(raw) => tokens[raw.tokens.clone()].to_vec(),
                    };
                    (item, own)
                })
                .collect();
            let mut streamed = Vec::new();
            split_each(source, |item, own| streamed.push((item, own.to_vec()))).unwrap();
            assert_eq!(streamed, expected, "{source:?}");
            for (item, own) in &expected {
                if let Item::Statement(raw) = item {
                    assert_eq!(&statement_tokens(source, raw), own, "{source:?}");
                }
            }
        }
    }

    #[test]
    fn split_each_stops_at_what_does_not_lex() {
        let mut items = 0;
        let error = split_each("SELECT 1;\nSELECT 'open", |_, _| items += 1).unwrap_err();
        assert_eq!(
            (error.line, error.column, error.what),
            (2, 8, "unterminated string")
        );
        assert_eq!(items, 1, "the statement before the error was given");
        assert_eq!(tokenize("SELECT 1;\nSELECT 'open").unwrap_err(), error);
    }
}
