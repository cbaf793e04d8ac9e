//! What a rule is: its declaration (documentation, level, examples, check) and what it
//! reports.

use super::config::Level;
use super::context::StatementContext;

/// A lint rule: its documentation, its examples (run as its tests) and its check, in one
/// declaration. The catalogue, `migrate explain` and the README are generated from these.
#[derive(Debug)]
pub struct Rule {
    /// Stable kebab-case id. Never reused or renamed.
    pub id: &'static str,
    /// The level when `migrate.toml` does not set one.
    pub default_level: Level,
    /// One line: what the rule catches.
    pub summary: &'static str,
    /// Why it is dangerous: the lock, the rewrite, the failure mode.
    pub explanation: &'static str,
    /// The safe way to write it.
    pub rewrite: &'static str,
    /// Files this rule must flag.
    pub bad: &'static [Example],
    /// Files this rule must accept.
    pub good: &'static [Example],
    pub check: fn(&StatementContext<'_>, &mut Vec<Finding>),
}

/// A migration file used as a rule example. Some safe patterns span several migrations:
/// a line `-- file: <name>` in `sql` starts another file of the same example set.
#[derive(Debug)]
pub struct Example {
    /// A file name, which gives the phase: `0002_add.expand.sql`.
    pub file_name: &'static str,
    pub sql: &'static str,
}

/// The marker that starts another file inside an [`Example`].
pub const EXAMPLE_FILE_MARKER: &str = "-- file: ";

impl Example {
    /// The example's files as (name, content), in order.
    pub fn files(&self) -> Vec<(String, String)> {
        example_files(self.file_name, self.sql)
    }
}

/// Splits an example's text into files at `-- file: <name>` lines; the first file is
/// `file_name`.
pub fn example_files(file_name: &str, sql: &str) -> Vec<(String, String)> {
    let mut files = vec![(file_name.to_owned(), String::new())];
    for line in sql.split_inclusive('\n') {
        match line.strip_prefix(EXAMPLE_FILE_MARKER) {
            Some(name) => files.push((name.trim().to_owned(), String::new())),
            None => {
                if let Some((_, content)) = files.last_mut() {
                    content.push_str(line);
                }
            }
        }
    }
    files
}

/// What a rule reports for one statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// What the statement does to a running database, naming the object.
    pub message: String,
    /// Overrides the rule's generic rewrite when the rule can be specific.
    pub help: Option<String>,
}

impl Finding {
    pub fn new(message: impl Into<String>) -> Finding {
        Finding {
            message: message.into(),
            help: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Finding {
        self.help = Some(help.into());
        self
    }
}
