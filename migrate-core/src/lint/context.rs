//! What a rule sees of a statement: the statement, its file and part, and the tables created
//! earlier in that part (the one memory the engine keeps, because many rules need it; a rule
//! that remembers more keeps it itself, see [`super::RuleMemory`]).

use std::collections::HashSet;

use sqlparser::ast::{
    AlterTableOperation, CopySource, ObjectName, SetExpr, Statement, TableObject,
};

use crate::classify::{Fallback, Words};
use crate::lock_analysis::LockAnalysis;
use crate::migration::{Phase, TransactionMode};
use crate::source::SectionKind;
use crate::sql::{Skipped, SplitAlter, UnparsedAction, alter_table_action_starts, table_key};

/// One statement, parsed or not, with its file context.
pub struct StatementContext<'a> {
    /// `None` when sqlparser could not parse it; see `parse_error` and `fallback`.
    pub ast: Option<&'a Statement>,
    /// sqlparser's message when it could not parse the statement whole.
    pub parse_error: Option<&'a str>,
    /// An `ALTER TABLE` sqlparser could not parse whole: `ast` then holds the actions that
    /// parsed on their own, this the others, classified from their keywords.
    pub split_alter: Option<&'a SplitAlter>,
    /// A statement not handed to sqlparser because no rule reads its tree (`ast` is `None`):
    /// what its keywords say it is.
    pub skipped: Option<&'a Skipped>,
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
    /// Tables created by earlier statements of the same part of the same file: invisible to
    /// other sessions until the migration commits, so locks on them block nobody.
    pub created_in_section: &'a HashSet<String>,
    /// Those of `created_in_section` that a statement filled with rows (`CREATE TABLE AS`,
    /// `INSERT ... SELECT`, `COPY`): work on them is not instant.
    pub filled_in_section: &'a HashSet<String>,
    /// How the runtime runs this statement's part of the file.
    pub mode: TransactionMode,
    /// The locks this statement takes and the table work it does under them.
    pub lock: &'a LockAnalysis,
    /// True for the last statement of its part (up or down) of the file.
    pub is_last_in_section: bool,
}

impl StatementContext<'_> {
    /// Where `operation`, an action of this `ALTER TABLE`, starts in the file, when that is on
    /// a later line than the statement's start (a finding about the third action of a
    /// multi-line `ALTER TABLE` points at its line); `None` otherwise, or when the actions as
    /// written cannot be matched one to one with the parsed ones.
    pub fn action_position(&self, operation: &AlterTableOperation) -> Option<(u32, u32)> {
        let Some(Statement::AlterTable(alter)) = self.ast else {
            return None;
        };
        let index = alter
            .operations
            .iter()
            .position(|candidate| std::ptr::eq(candidate, operation))?;
        let mut starts = alter_table_action_starts(&self.words);
        if let Some(split) = self.split_alter {
            // Read action by action: the tree holds the actions that parsed, in order.
            let mut unparsed = split.unparsed.iter().map(|a| a.text.as_str()).peekable();
            starts.retain(|(text, _)| {
                let skip = unparsed.peek() == Some(text);
                if skip {
                    unparsed.next();
                }
                !skip
            });
        }
        if starts.len() != alter.operations.len() {
            return None;
        }
        starts
            .get(index)
            .map(|&(_, position)| position)
            .filter(|&(line, _)| line > self.line)
    }

    /// [`Self::action_position`] of an action sqlparser could not parse, by its text.
    pub fn unparsed_action_position(&self, action: &UnparsedAction) -> Option<(u32, u32)> {
        alter_table_action_starts(&self.words)
            .into_iter()
            .find(|(text, _)| *text == action.text)
            .map(|(_, position)| position)
            .filter(|&(line, _)| line > self.line)
    }

    /// The phase the rules judge by: down parts are contracts.
    pub fn effective_phase(&self) -> Phase {
        super::effective_phase(self.phase, self.section)
    }

    /// True when `table` was created earlier in this part of this file.
    pub fn is_new_table(&self, table: &ObjectName) -> bool {
        self.created_in_section.contains(&table_key(table))
    }

    /// True when `table` was created earlier in this part and nothing filled it since: work
    /// on it is instant.
    pub fn is_empty_new_table(&self, table: &ObjectName) -> bool {
        self.is_new_table(table) && !self.filled_in_section.contains(&table_key(table))
    }
}

/// Records what a statement does to the tables created in its part, once every rule has
/// judged it: a table it creates joins `created` (invisible to other sessions until commit, so
/// its own locks block nobody); a new table it fills joins `filled` too, because its rows make
/// scans and validations long again (a `FOREIGN KEY` added to a table made by
/// `CREATE TABLE ... AS SELECT` scans all of it while holding SHARE ROW EXCLUSIVE on the
/// referenced, visible table). Filling is `CREATE TABLE ... AS` (unless `WITH NO DATA`),
/// `INSERT ... SELECT` from a relation, and `COPY ... FROM`; a few literal rows
/// (`INSERT ... VALUES`) do not count. `SELECT ... INTO` makes a table the rules do not
/// exempt at all.
pub(crate) fn record_new_tables(
    ast: Option<&Statement>,
    fallback: Option<&Fallback>,
    words: &Words<'_>,
    created: &mut HashSet<String>,
    filled: &mut HashSet<String>,
) {
    if let Some(Fallback::CreateTable { table, .. }) = fallback {
        created.insert(table.rsplit('.').next().unwrap_or(table).to_owned());
    }
    match ast {
        Some(Statement::CreateTable(create)) => {
            created.insert(table_key(&create.name));
            if create.query.is_some() && !words.contains_pair("NO", "DATA") {
                filled.insert(table_key(&create.name));
            }
        }
        Some(Statement::Insert(insert)) => {
            if let (TableObject::TableName(table), Some(source)) = (&insert.table, &insert.source)
                && reads_rows(&source.body)
            {
                filled.insert(table_key(table));
            }
        }
        Some(Statement::Copy {
            source: CopySource::Table { table_name, .. },
            to: false,
            ..
        }) => {
            filled.insert(table_key(table_name));
        }
        _ => {}
    }
}

/// True unless the rows are literals: `VALUES (...)` or a `SELECT` without `FROM`.
fn reads_rows(body: &SetExpr) -> bool {
    match body {
        SetExpr::Values(_) => false,
        SetExpr::Select(select) => !select.from.is_empty(),
        _ => true,
    }
}
