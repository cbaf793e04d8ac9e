//! Diagnostics: every problem found in a migration set, with one renderer shared by the
//! macro (which wraps the text in a compile error) and the CLI.

use std::fmt;

/// How bad a [`Diagnostic`] is: errors fail the build (and `migrate lint`), warnings are
/// reported and let it pass. A rule's level in `migrate.toml` decides which one it gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(
    feature = "lint",
    derive(serde::Serialize),
    serde(rename_all = "lowercase")
)]
pub enum Severity {
    /// Fails the build: the set must not be applied as it is.
    Error,
    /// Reported (a compiler warning from the macro) without failing anything.
    Warning,
}

impl Severity {
    /// `error` or `warning`, as rendered in `file:line:col: error[code]: ...`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Codes of problems that are not lint rules: they cannot be allowed or configured.
///
/// Like rule ids, these strings are stable: tools match on them (`--format json`).
pub mod codes {
    /// A `.sql` file whose name is not `<version>_<name>[.<phase>].sql`.
    pub const BAD_FILE_NAME: &str = "bad-file-name";
    /// Two files with the same version (`003` and `0003` included).
    pub const DUPLICATE_VERSION: &str = "duplicate-version";
    /// A file with no statement to apply, or an untouched `migrate new` template.
    pub const EMPTY_FILE: &str = "empty-file";
    /// A file that is not valid UTF-8.
    pub const NOT_UTF8: &str = "not-utf8";
    /// Reserved for a file that cannot be read; an unreadable folder or file currently fails
    /// the whole check with [`CheckError`](crate::checked_set::CheckError) instead.
    pub const IO: &str = "io";
    /// An unclosed string, quoted identifier, comment or dollar quote.
    pub const SYNTAX: &str = "syntax";
    /// A `-- migrate:` line that is not a known directive (never a silent comment).
    pub const UNKNOWN_DIRECTIVE: &str = "unknown-directive";
    /// A known directive misused: bad arguments, wrong place, wrong phase, missing reason.
    pub const BAD_DIRECTIVE: &str = "bad-directive";
    /// A rule id in an allow or in `migrate.toml` that no rule has.
    pub const UNKNOWN_RULE: &str = "unknown-rule";
    /// An allow that suppresses nothing (a stale allow would hide the next real problem).
    pub const UNUSED_ALLOW: &str = "unused-allow";
    /// A contract whose `-- migrate:requires` is missing or does not name an earlier expand.
    pub const BAD_REQUIRES: &str = "bad-requires";
    /// A `migrate.toml` that does not parse: bad TOML, an unknown key or an unknown level.
    pub const CONFIG: &str = "config";
    /// A backfill statement the runtime cannot run in keyed batches.
    pub const BAD_BACKFILL: &str = "bad-backfill";
    /// A folder that mixes other tools' layouts, or fits two that would read it differently;
    /// or a feature of the other tool's files migrate cannot honour (a Flyway placeholder, a
    /// script setting), at its line.
    pub const LAYOUT: &str = "layout";
    /// `COPY ... FROM STDIN` or `TO STDOUT`: rows through the client, which the runtime never
    /// sends or reads.
    pub const CLIENT_COPY: &str = "client-copy";
}

/// One finding: a lint rule violation or a file-level error.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "lint", derive(serde::Serialize))]
pub struct Diagnostic {
    /// Path as the user knows it, e.g. `migrations/0002_add_index.expand.sql`.
    pub file: String,
    /// 1-based; 1:1 for problems of the whole file.
    pub line: u32,
    /// 1-based, in characters; 1 for problems of the whole file.
    pub column: u32,
    /// A rule id (`require-concurrent-index`) or a [`codes`] constant.
    pub code: &'static str,
    /// Error or warning; file-level problems are always errors.
    pub severity: Severity,
    /// What is wrong and what it does to a running database.
    pub message: String,
    /// The safe rewrite or the fix.
    pub help: Option<String>,
}

impl Diagnostic {
    /// An error without help; add the fix with [`Diagnostic::with_help`].
    pub fn error(
        file: impl Into<String>,
        line: u32,
        column: u32,
        code: &'static str,
        message: impl Into<String>,
    ) -> Diagnostic {
        Diagnostic {
            file: file.into(),
            line,
            column,
            code,
            severity: Severity::Error,
            message: message.into(),
            help: None,
        }
    }

    /// The same diagnostic with its help line: the safe rewrite or the fix.
    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

    /// Whether it fails the build.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// `file.sql:line:col: error[code]: message` then `  help: ...` on the next line.
impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}[{}]: {}",
            self.file,
            self.line,
            self.column,
            self.severity.as_str(),
            self.code,
            self.message
        )?;
        if let Some(help) = &self.help {
            for (index, line) in help.lines().enumerate() {
                if index == 0 {
                    write!(f, "\n  help: {line}")?;
                } else {
                    write!(f, "\n        {line}")?;
                }
            }
        }
        Ok(())
    }
}

/// Sorts diagnostics by file, position and code so every consumer prints the same order.
pub fn sort(diagnostics: &mut [Diagnostic]) {
    diagnostics.sort_by(|a, b| {
        (&a.file, a.line, a.column, a.code, &a.message)
            .cmp(&(&b.file, b.line, b.column, b.code, &b.message))
    });
}
