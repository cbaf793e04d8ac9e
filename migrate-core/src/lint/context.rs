//! What a rule sees of a statement: the statement, its file and part, and the tables created
//! earlier in that part (the one memory the engine keeps, because many rules need it; a rule
//! that remembers more keeps it itself, see [`super::RuleMemory`]).

use std::collections::HashSet;

use sqlparser::ast::{ObjectName, Statement};

use crate::classify::{Fallback, Words};
use crate::lock_analysis::LockAnalysis;
use crate::migration::{Phase, TransactionMode};
use crate::source::SectionKind;
use crate::sql::{SplitAlter, table_key};

/// One statement, parsed or not, with its file context.
pub struct StatementContext<'a> {
    /// `None` when sqlparser could not parse it; see `parse_error` and `fallback`.
    pub ast: Option<&'a Statement>,
    /// sqlparser's message when it could not parse the statement whole.
    pub parse_error: Option<&'a str>,
    /// An `ALTER TABLE` sqlparser could not parse whole: `ast` then holds the actions that
    /// parsed on their own, this the others, classified from their keywords.
    pub split_alter: Option<&'a SplitAlter>,
    /// The statement's tokens, for facts the AST gets wrong or lacks.
    pub words: Words<'a>,
    /// Keyword-level classification of statements sqlparser cannot parse (and of every
    /// `DROP INDEX`, which sqlparser misreads).
    pub fallback: Option<&'a Fallback>,
    /// The file's phase.
    pub phase: Phase,
    /// The part of the file (up or down) the statement is in.
    pub section: SectionKind,
    /// The line the statement starts on.
    pub line: u32,
    /// Tables created by earlier statements of the same part of the same file: still empty
    /// and invisible to other sessions until the migration commits.
    pub created_in_section: &'a HashSet<String>,
    /// How the runtime runs this statement's part of the file.
    pub mode: TransactionMode,
    /// The locks this statement takes and the table work it does under them.
    pub lock: &'a LockAnalysis,
    /// True for the last statement of its part (up or down) of the file.
    pub is_last_in_section: bool,
}

impl StatementContext<'_> {
    /// The phase the rules judge by: down parts are contracts.
    pub fn effective_phase(&self) -> Phase {
        super::effective_phase(self.phase, self.section)
    }

    /// True when `table` was created earlier in this part of this file.
    pub fn is_new_table(&self, table: &ObjectName) -> bool {
        self.created_in_section.contains(&table_key(table))
    }
}

/// Records the table a statement creates, once every rule has judged the statement: the
/// later statements of the part find it in `created_in_section`.
pub(crate) fn record_created_table(
    ast: Option<&Statement>,
    fallback: Option<&Fallback>,
    created: &mut HashSet<String>,
) {
    if let Some(Fallback::CreateTable { table, .. }) = fallback {
        created.insert(table.rsplit('.').next().unwrap_or(table).to_owned());
    }
    if let Some(Statement::CreateTable(create)) = ast {
        created.insert(table_key(&create.name));
    }
}
