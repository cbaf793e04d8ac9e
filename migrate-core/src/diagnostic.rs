//! Diagnostics: every problem found in a migration set, with one renderer shared by the
//! macro (which wraps the text in a compile error) and the CLI.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

/// Codes of problems that are not lint rules: they cannot be allowed or configured.
pub mod codes {
    pub const BAD_FILE_NAME: &str = "bad-file-name";
    pub const DUPLICATE_VERSION: &str = "duplicate-version";
    pub const EMPTY_FILE: &str = "empty-file";
    pub const NOT_UTF8: &str = "not-utf8";
    pub const IO: &str = "io";
    pub const SYNTAX: &str = "syntax";
    pub const UNKNOWN_DIRECTIVE: &str = "unknown-directive";
    pub const BAD_DIRECTIVE: &str = "bad-directive";
    pub const UNKNOWN_RULE: &str = "unknown-rule";
    pub const UNUSED_ALLOW: &str = "unused-allow";
    pub const BAD_REQUIRES: &str = "bad-requires";
    pub const CONFIG: &str = "config";
    pub const BAD_BACKFILL: &str = "bad-backfill";
}

/// One finding: a lint rule violation or a file-level error.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Diagnostic {
    /// Path as the user knows it, e.g. `migrations/0002_add_index.expand.sql`.
    pub file: String,
    /// 1-based; 1:1 for problems of the whole file.
    pub line: u32,
    pub column: u32,
    /// A rule id (`require-concurrent-index`) or a [`codes`] constant.
    pub code: &'static str,
    pub severity: Severity,
    /// What is wrong and what it does to a running database.
    pub message: String,
    /// The safe rewrite or the fix.
    pub help: Option<String>,
}

impl Diagnostic {
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

    pub fn with_help(mut self, help: impl Into<String>) -> Diagnostic {
        self.help = Some(help.into());
        self
    }

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
