//! Token-level facts about a statement, for what the AST cannot be trusted with.
//!
//! sqlparser fails on several statements that everyday migrations use (and that our own rules
//! recommend, such as `DROP INDEX CONCURRENTLY IF EXISTS`), and it misreads
//! `DROP INDEX CONCURRENTLY idx` as an index named "concurrently". A statement our rules tell
//! users to write must never need an allow, so these kinds are recognised here from their
//! keywords, in order. See [`Fallback`] for the list and the policy per kind.

use crate::splitter::{Token, TokenKind};

/// The non-comment tokens of one statement.
#[derive(Debug, Clone, Copy)]
pub struct Words<'a> {
    source: &'a str,
    tokens: &'a [Token],
    /// Whether `tokens` holds a comment; without one, the `index`-th word is `tokens[index]`
    /// (rules index words in loops, and a walk per lookup made those quadratic).
    has_comments: bool,
}

impl<'a> Words<'a> {
    /// `tokens` may contain comments; they are skipped by every accessor.
    pub fn new(source: &'a str, tokens: &'a [Token]) -> Words<'a> {
        let has_comments = tokens.iter().any(Token::is_comment);
        Words {
            source,
            tokens,
            has_comments,
        }
    }

    /// The whole file's text, which the tokens' ranges index.
    pub fn source(&self) -> &'a str {
        self.source
    }

    /// The tokens, comments skipped.
    pub fn iter(&self) -> impl Iterator<Item = &'a Token> + 'a {
        self.tokens.iter().filter(|t| !t.is_comment())
    }

    /// The `index`-th token, comments skipped.
    fn nth(&self, index: usize) -> Option<&'a Token> {
        if self.has_comments {
            self.iter().nth(index)
        } else {
            self.tokens.get(index)
        }
    }

    /// The `index`-th token's text if it is an unquoted word, upper-cased.
    pub fn keyword(&self, index: usize) -> Option<String> {
        let token = self.nth(index)?;
        (token.kind == TokenKind::Word).then(|| token.text(self.source).to_ascii_uppercase())
    }

    /// True when the statement begins with these keywords (upper case).
    pub fn starts_with(&self, keywords: &[&str]) -> bool {
        let mut tokens = self.iter();
        keywords.iter().all(|keyword| {
            tokens
                .next()
                .is_some_and(|t| t.is_word(self.source, keyword))
        })
    }

    /// Position of the first unquoted word `keyword` at parenthesis depth 0.
    pub fn find_top_level(&self, keyword: &str) -> Option<usize> {
        let mut depth = 0i32;
        for (index, token) in self.iter().enumerate() {
            match token.text(self.source) {
                "(" if token.kind == TokenKind::Punct => depth += 1,
                ")" if token.kind == TokenKind::Punct => depth -= 1,
                _ if depth == 0 && token.is_word(self.source, keyword) => return Some(index),
                _ => {}
            }
        }
        None
    }

    /// True when `keyword` appears anywhere as an unquoted word (strings and bodies excluded).
    pub fn contains(&self, keyword: &str) -> bool {
        self.iter().any(|t| t.is_word(self.source, keyword))
    }

    /// True when `a` is immediately followed by `b` somewhere. Each is an unquoted word or a
    /// punctuation character such as `(`.
    pub fn contains_pair(&self, a: &str, b: &str) -> bool {
        let matches = |token: &Token, text: &str| {
            matches!(token.kind, TokenKind::Word | TokenKind::Punct)
                && token.text(self.source).eq_ignore_ascii_case(text)
        };
        let tokens: Vec<&Token> = self.iter().collect();
        tokens
            .windows(2)
            .any(|pair| matches(pair[0], a) && matches(pair[1], b))
    }

    /// The `index`-th token's text, as written.
    pub fn text(&self, index: usize) -> Option<&'a str> {
        Some(self.nth(index)?.text(self.source))
    }

    /// How many tokens, comments skipped.
    pub fn len(&self) -> usize {
        if self.has_comments {
            self.iter().count()
        } else {
            self.tokens.len()
        }
    }

    /// True when there is no token but comments.
    pub fn is_empty(&self) -> bool {
        self.iter().next().is_none()
    }

    /// The text from the first token to the last, comments between them included.
    pub fn span_text(&self) -> &'a str {
        let mut tokens = self.iter();
        match (tokens.next(), tokens.last()) {
            (Some(first), Some(last)) => &self.source[first.range.start..last.range.end],
            (Some(only), None) => only.text(self.source),
            _ => "",
        }
    }

    /// The tokens from the `from`-th on, cut at every `,` outside parentheses and brackets:
    /// the actions of an `ALTER TABLE`. Strings, dollar quotes and quoted identifiers are one
    /// token each, so their commas never cut. Empty items are dropped.
    pub fn split_commas(&self, from: usize) -> Vec<Words<'a>> {
        let mut items = Vec::new();
        let mut depth = 0i32;
        let mut seen = 0;
        let mut start = None;
        for (index, token) in self.tokens.iter().enumerate() {
            if token.is_comment() {
                continue;
            }
            seen += 1;
            if seen <= from {
                continue;
            }
            let start_index = *start.get_or_insert(index);
            if token.kind != TokenKind::Punct {
                continue;
            }
            match token.text(self.source) {
                "(" | "[" => depth += 1,
                ")" | "]" => depth -= 1,
                "," if depth == 0 => {
                    items.push(Words::new(self.source, &self.tokens[start_index..index]));
                    start = Some(index + 1);
                }
                _ => {}
            }
        }
        if let Some(start_index) = start {
            items.push(Words::new(self.source, &self.tokens[start_index..]));
        }
        items.retain(|item| !item.is_empty());
        items
    }
}

/// True when `word` occurs in `text`, ASCII case-insensitively, anywhere (strings and comments
/// included): a cheap test before lexing a statement to look for a keyword, since a word
/// among its tokens is always in its text.
pub fn text_mentions(text: &str, word: &str) -> bool {
    text.as_bytes()
        .windows(word.len())
        .any(|window| window.eq_ignore_ascii_case(word.as_bytes()))
}

/// True when PostgreSQL refuses to run the statement inside a transaction block, so its
/// migration must run in autocommit mode.
/// <https://www.postgresql.org/docs/current/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY>
pub fn is_non_transactional(words: &Words<'_>) -> bool {
    let concurrently = words.contains("CONCURRENTLY");
    (concurrently
        && (words.starts_with(&["CREATE", "INDEX"])
            || words.starts_with(&["CREATE", "UNIQUE", "INDEX"])
            || words.starts_with(&["DROP", "INDEX"])
            || words.starts_with(&["REINDEX"])
            || (words.starts_with(&["ALTER", "TABLE"])
                && words.contains_pair("DETACH", "PARTITION"))))
        || words.starts_with(&["VACUUM"])
        || words.starts_with(&["CREATE", "DATABASE"])
        || words.starts_with(&["DROP", "DATABASE"])
        || words.starts_with(&["CREATE", "TABLESPACE"])
        || words.starts_with(&["DROP", "TABLESPACE"])
        || words.starts_with(&["ALTER", "SYSTEM"])
        || words.starts_with(&["CREATE", "SUBSCRIPTION"])
        || words.starts_with(&["DROP", "SUBSCRIPTION"])
}

/// Statements sqlparser 0.64 cannot parse (or misparses) that real migrations use, recognised
/// from their keywords. Policy per kind:
/// - index and maintenance statements carry the facts the rules need (concurrently, if
///   exists) and are linted from them;
/// - `DO` blocks can hide any DDL, so they always need `-- migrate:allow unparseable <reason>`;
/// - [`Fallback::Benign`] kinds take no lock worth a rule (statistics targets, comments,
///   sequence options) and are accepted; rename and drop checks still run on their keywords.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fallback {
    /// `DROP INDEX [CONCURRENTLY] [IF EXISTS] name`.
    DropIndex {
        /// `CONCURRENTLY` is written.
        concurrently: bool,
        /// `IF EXISTS` is written.
        if_exists: bool,
    },
    /// `REINDEX [(options)] {INDEX|TABLE|SCHEMA|DATABASE|SYSTEM} [CONCURRENTLY] name`.
    Reindex {
        /// `CONCURRENTLY` is written anywhere (as a keyword or as an option).
        concurrently: bool,
    },
    /// `CLUSTER ...`.
    Cluster,
    /// `CREATE [UNIQUE] INDEX ... ON ONLY parent (...)`: builds only the (invalid) parent
    /// index of a partitioned table, which is instant; CONCURRENTLY is not allowed there.
    CreateIndexOnOnly {
        /// `IF NOT EXISTS` is written.
        if_not_exists: bool,
    },
    /// A `CREATE TABLE` sqlparser cannot parse: `(LIKE other INCLUDING ALL)`, pg_dump 18's
    /// named `CONSTRAINT x NOT NULL col`, ... A new table locks nothing that exists.
    CreateTable {
        /// `IF NOT EXISTS` is written.
        if_not_exists: bool,
        /// The first name token after `CREATE TABLE [IF NOT EXISTS]`, folded like PostgreSQL
        /// folds it.
        table: String,
    },
    /// `CREATE STATISTICS [IF NOT EXISTS] ...`.
    CreateStatistics {
        /// `IF NOT EXISTS` is written.
        if_not_exists: bool,
    },
    /// `DO $$ ... $$`.
    DoBlock,
    /// A kind that takes no lock worth a rule; the name says which.
    Benign(&'static str),
}

/// Recognises the statement kinds of [`Fallback`]. `None` means: not a known kind.
pub fn fallback(words: &Words<'_>) -> Option<Fallback> {
    let concurrently = words.contains("CONCURRENTLY");
    if words.starts_with(&["DROP", "INDEX"]) {
        return Some(Fallback::DropIndex {
            concurrently: words.starts_with(&["DROP", "INDEX", "CONCURRENTLY"]),
            if_exists: words.contains_pair("IF", "EXISTS"),
        });
    }
    if words.starts_with(&["REINDEX"]) {
        return Some(Fallback::Reindex { concurrently });
    }
    if words.starts_with(&["CLUSTER"]) {
        return Some(Fallback::Cluster);
    }
    if (words.starts_with(&["CREATE", "INDEX"])
        || words.starts_with(&["CREATE", "UNIQUE", "INDEX"]))
        && words.contains_pair("ON", "ONLY")
    {
        return Some(Fallback::CreateIndexOnOnly {
            if_not_exists: words.contains_pair("NOT", "EXISTS"),
        });
    }
    if words.starts_with(&["CREATE", "TABLE"]) {
        let if_not_exists = words.starts_with(&["CREATE", "TABLE", "IF", "NOT", "EXISTS"]);
        let name_index = if if_not_exists { 5 } else { 2 };
        let table = words
            .text(name_index)
            .map(normalize_identifier)
            .unwrap_or_default();
        return Some(Fallback::CreateTable {
            if_not_exists,
            table,
        });
    }
    if words.starts_with(&["CREATE", "STATISTICS"]) {
        return Some(Fallback::CreateStatistics {
            if_not_exists: words.contains_pair("NOT", "EXISTS"),
        });
    }
    if words.starts_with(&["DO"]) {
        return Some(Fallback::DoBlock);
    }
    let benign = [
        (&["ALTER", "SEQUENCE"][..], "ALTER SEQUENCE"),
        (&["ALTER", "INDEX"][..], "ALTER INDEX"),
        (&["COMMENT", "ON"][..], "COMMENT ON"),
        (&["VACUUM"][..], "VACUUM"),
        (&["ANALYZE"][..], "ANALYZE"),
        (&["DROP", "STATISTICS"][..], "DROP STATISTICS"),
        (&["ALTER", "STATISTICS"][..], "ALTER STATISTICS"),
        (
            &["CREATE", "MATERIALIZED", "VIEW"][..],
            "CREATE MATERIALIZED VIEW",
        ),
        (&["CREATE", "FUNCTION"][..], "CREATE FUNCTION"),
        (
            &["CREATE", "OR", "REPLACE", "FUNCTION"][..],
            "CREATE FUNCTION",
        ),
        (&["CREATE", "PROCEDURE"][..], "CREATE PROCEDURE"),
        (&["CREATE", "PUBLICATION"][..], "CREATE PUBLICATION"),
        (&["ALTER", "PUBLICATION"][..], "ALTER PUBLICATION"),
        (&["DROP", "PUBLICATION"][..], "DROP PUBLICATION"),
        (&["SECURITY", "LABEL"][..], "SECURITY LABEL"),
        (&["CREATE", "CAST"][..], "CREATE CAST"),
        (
            &["CREATE", "OR", "REPLACE", "PROCEDURE"][..],
            "CREATE PROCEDURE",
        ),
    ];
    for (prefix, name) in benign {
        if words.starts_with(prefix) {
            return Some(Fallback::Benign(name));
        }
    }
    // An `ALTER TABLE` is never judged whole from its keywords: one harmless action must not
    // hide a dangerous one beside it. `sql::read_statement` reads it action by action.
    None
}

/// `"Users"` → `Users`, `Users` → `users`, `public.users` → `public.users` (each part).
pub fn normalize_identifier(text: &str) -> String {
    let mut normalized = String::with_capacity(text.len());
    for (index, part) in text.split('.').enumerate() {
        if index > 0 {
            normalized.push('.');
        }
        match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
            Some(inner) if inner.contains("\"\"") => {
                normalized.push_str(&inner.replace("\"\"", "\""))
            }
            Some(inner) => normalized.push_str(inner),
            None => normalized.extend(part.chars().map(|c| c.to_ascii_lowercase())),
        }
    }
    normalized
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::splitter::tokenize;

    fn with_words<T>(sql: &str, f: impl FnOnce(&Words<'_>) -> T) -> T {
        let tokens = tokenize(sql).unwrap();
        f(&Words::new(sql, &tokens))
    }

    #[test]
    fn words_are_looked_up_alike_with_and_without_comments() {
        let plain = "ALTER TABLE t ADD COLUMN c int";
        let commented = "ALTER /* why */ TABLE t -- note\n ADD COLUMN c int";
        with_words(plain, |without| {
            with_words(commented, |with| {
                assert_eq!(with.len(), without.len());
                for index in 0..=without.len() {
                    assert_eq!(with.keyword(index), without.keyword(index), "{index}");
                    assert_eq!(with.text(index), without.text(index), "{index}");
                }
            })
        });
        with_words(plain, |words| {
            assert_eq!(words.len(), 7);
            assert_eq!(words.keyword(5).as_deref(), Some("C"));
            assert_eq!(words.text(7), None);
        });
    }

    #[test]
    fn non_transactional_statements() {
        for sql in [
            "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON t (a)",
            "create unique index concurrently i on t (a)",
            "DROP INDEX CONCURRENTLY IF EXISTS i",
            "REINDEX INDEX CONCURRENTLY i",
            "ALTER TABLE p DETACH PARTITION c CONCURRENTLY",
            "VACUUM (ANALYZE) t",
        ] {
            assert!(with_words(sql, is_non_transactional), "{sql}");
        }
        for sql in [
            "CREATE INDEX i ON t (a)",
            "REFRESH MATERIALIZED VIEW CONCURRENTLY v",
            "SELECT 'CREATE INDEX CONCURRENTLY'",
            "COMMENT ON INDEX i IS 'built concurrently'",
        ] {
            assert!(!with_words(sql, is_non_transactional), "{sql}");
        }
    }

    #[test]
    fn drop_index_is_read_from_tokens() {
        assert_eq!(
            with_words("DROP INDEX CONCURRENTLY idx", fallback),
            Some(Fallback::DropIndex {
                concurrently: true,
                if_exists: false
            })
        );
        assert_eq!(
            with_words("drop index if exists idx", fallback),
            Some(Fallback::DropIndex {
                concurrently: false,
                if_exists: true
            })
        );
    }

    #[test]
    fn unknown_kinds_are_none() {
        assert_eq!(with_words("FROBNICATE t", fallback), None);
        assert_eq!(
            with_words("DO $$ BEGIN END $$", fallback),
            Some(Fallback::DoBlock)
        );
    }

    #[test]
    fn identifiers_normalise_like_postgres() {
        assert_eq!(normalize_identifier("Public.\"Users\""), "public.Users");
    }
}
