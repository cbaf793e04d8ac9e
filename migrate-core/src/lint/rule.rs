//! What a rule is: its declaration (documentation, level, examples, check) and what it
//! reports.

use super::config::Level;
use super::context::StatementContext;
use crate::source::ParsedFile;

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
    /// How the rule judges a statement.
    pub(crate) check: Check,
}

/// How a rule judges statements.
#[derive(Debug, Clone, Copy)]
pub enum Check {
    /// Each statement on its own, with what its [`StatementContext`] tells of the file.
    Statement(fn(&StatementContext<'_>, &mut Vec<Finding>)),
    /// With what it remembers of earlier statements of the same part (up or down) of the same
    /// file, kept in the rule's own file: the engine makes a fresh memory for every file and
    /// drives it (see [`RuleMemory`]); files are linted in parallel.
    WithPartMemory(fn() -> Box<dyn RuleMemory>),
    /// With what it remembers across files (a constraint validated by an earlier migration,
    /// an index a later one creates): the engine makes a fresh memory for every set it lints
    /// and drives it over the whole set in version order, on one thread.
    WithMemory(fn() -> Box<dyn RuleMemory>),
}

/// What a rule remembers of the statements before the one it judges (the locks an open
/// transaction holds, the constraints validated earlier in the set, ...). Each rule keeps its
/// own, beside its check, so the engine holds no rule's state.
///
/// The engine walks the set in version order: [`RuleMemory::start_set`] once, then for each
/// part (up or down) of each file [`RuleMemory::start_part`], then for each statement
/// [`RuleMemory::check`] and, once every rule has judged the statement,
/// [`RuleMemory::record`].
pub trait RuleMemory {
    /// Before the first statement, with the whole set in version order: for what a later file
    /// may provide. Called only for [`Check::WithMemory`] rules.
    fn start_set(&mut self, _files: &[&ParsedFile]) {}

    /// A part (up or down) of a file begins: forget what lasted only the previous part, such as
    /// what its transaction held.
    fn start_part(&mut self) {}

    /// Judges one statement with what was remembered.
    fn check(&self, context: &StatementContext<'_>, findings: &mut Vec<Finding>);

    /// Remembers one statement. Called for every statement, whatever was found in it or
    /// allowed, and whatever the rule's level.
    fn record(&mut self, _context: &StatementContext<'_>) {}
}

/// A migration file used as a rule example. Some safe patterns span several migrations:
/// a line `-- file: <name>` in `sql` starts another file of the same example set.
#[derive(Debug)]
pub struct Example {
    /// A file name, which gives the phase: `0002_add.expand.sql`.
    pub file_name: &'static str,
    /// The file's content, possibly with `-- file: <name>` lines starting further files.
    pub sql: &'static str,
}

/// The marker that starts another file inside an [`Example`].
pub(crate) const EXAMPLE_FILE_MARKER: &str = "-- file: ";

impl Example {
    /// The example's files as (name, content), in order.
    pub fn files(&self) -> Vec<(String, String)> {
        example_files(self.file_name, self.sql)
    }
}

/// Splits an example's text into files at `-- file: <name>` lines; the first file is
/// `file_name`.
pub(crate) fn example_files(file_name: &str, sql: &str) -> Vec<(String, String)> {
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
    /// Where in the file the finding is, `(line, column)`, when not at the statement's start:
    /// the action of a multi-line `ALTER TABLE` it is about.
    pub at: Option<(u32, u32)>,
}

impl Finding {
    pub fn new(message: impl Into<String>) -> Finding {
        Finding {
            message: message.into(),
            help: None,
            at: None,
        }
    }

    pub fn help(mut self, help: impl Into<String>) -> Finding {
        self.help = Some(help.into());
        self
    }

    /// [`Finding::new`] placed at `position`, an action's (see [`Finding::at`]).
    pub fn at_action(position: Option<(u32, u32)>, message: impl Into<String>) -> Finding {
        Finding::new(message).at(position)
    }

    /// Places the finding at `position` (from [`StatementContext::action_position`]) instead
    /// of the statement's start.
    ///
    /// [`StatementContext::action_position`]: super::StatementContext::action_position
    pub fn at(mut self, position: Option<(u32, u32)>) -> Finding {
        self.at = position;
        self
    }
}
