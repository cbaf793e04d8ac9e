//! What a rule sees of a statement, and the facts the engine keeps between statements.

use std::collections::{HashMap, HashSet};

use sqlparser::ast::{
    AlterTableOperation, ColumnOption, Expr, Ident, ObjectName, Statement, TableConstraint,
};

use crate::classify::{Fallback, Words};
use crate::lock_analysis::{LockAnalysis, LockMode};
use crate::migration::{Phase, TransactionMode};
use crate::source::SectionKind;
use crate::sql::{ident_key, table_key};

/// One statement, parsed or not, with its file context.
pub struct StatementContext<'a> {
    /// The statement text as written, without the `;`.
    pub sql: &'a str,
    /// `None` when sqlparser could not parse it; see `parse_error` and `fallback`.
    pub ast: Option<&'a Statement>,
    pub parse_error: Option<&'a str>,
    /// The statement's tokens, for facts the AST gets wrong or lacks.
    pub words: Words<'a>,
    /// Keyword-level classification of statements sqlparser cannot parse (and of every
    /// `DROP INDEX`, which sqlparser misreads).
    pub fallback: Option<&'a Fallback>,
    /// The file's phase.
    pub phase: Phase,
    pub section: SectionKind,
    /// Tables created by earlier statements of the same part of the same file: still empty
    /// and invisible to other sessions until the migration commits.
    pub created_in_section: &'a HashSet<String>,
    pub facts: &'a SchemaFacts,
    /// How the runtime runs this statement's part of the file.
    pub mode: TransactionMode,
    /// The locks this statement takes and the table work it does under them.
    pub lock: &'a LockAnalysis,
    /// Write-blocking locks on existing tables taken by earlier statements of this part,
    /// still held when the part runs in one transaction.
    pub held_locks: &'a [HeldLock],
    /// Enum values added (`ALTER TYPE ... ADD VALUE`) by earlier statements of this part,
    /// with their line, when the part runs in one transaction.
    pub enum_values_added: &'a [(String, u32)],
    /// True for the last statement of its part (up or down) of the file.
    pub is_last_in_section: bool,
    /// `(table, constraint)` dropped with `DROP CONSTRAINT IF EXISTS` by earlier statements of
    /// this part: re-adding them is re-runnable.
    pub constraints_dropped_if_exists: &'a [(String, String)],
}

/// A lock taken by an earlier statement of the same transaction: PostgreSQL keeps every table
/// lock until the transaction ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldLock {
    pub table: String,
    pub mode: LockMode,
    /// Line of the statement that took it.
    pub line: u32,
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

/// Facts carried from earlier statements of the set, in version order.
#[derive(Debug, Default)]
pub struct SchemaFacts {
    /// `(table, constraint)` → column of a `CHECK (column IS NOT NULL) NOT VALID` not yet validated.
    pending_not_null_checks: HashMap<(String, String), String>,
    /// `(table, column)` pairs with a validated `CHECK (column IS NOT NULL)`.
    validated_not_null: HashSet<(String, String)>,
    /// `(table, leading columns)` of every index the set's up parts create (indexes,
    /// primary keys, unique constraints), whichever file creates them.
    indexes: Vec<(String, Vec<String>)>,
}

impl SchemaFacts {
    /// True when some index of the set starts with exactly `columns` (in any order), so a
    /// lookup by those columns (a foreign key check) can use it.
    pub fn has_index_leading_with(&self, table: &str, columns: &[String]) -> bool {
        let mut wanted: Vec<&String> = columns.iter().collect();
        wanted.sort();
        self.indexes.iter().any(|(indexed_table, indexed)| {
            if indexed_table != table || indexed.len() < columns.len() {
                return false;
            }
            let mut leading: Vec<&String> = indexed[..columns.len()].iter().collect();
            leading.sort();
            leading == wanted
        })
    }

    /// Records the indexes a statement creates (first pass over the set).
    pub(crate) fn record_indexes(&mut self, statement: &Statement) {
        let column_list = |columns: &[sqlparser::ast::IndexColumn]| -> Vec<String> {
            columns
                .iter()
                .map(|c| expression_key(&c.column.expr))
                .collect()
        };
        match statement {
            Statement::CreateIndex(index) => {
                self.indexes
                    .push((table_key(&index.table_name), column_list(&index.columns)));
            }
            Statement::CreateTable(create) => {
                let table = table_key(&create.name);
                for constraint in &create.constraints {
                    if let Some(columns) = key_columns(constraint) {
                        self.indexes.push((table.clone(), column_list(columns)));
                    }
                }
                for column in &create.columns {
                    let unique = column.options.iter().any(|o| {
                        matches!(
                            o.option,
                            ColumnOption::PrimaryKey(_) | ColumnOption::Unique(_)
                        )
                    });
                    if unique {
                        self.indexes
                            .push((table.clone(), vec![ident_key(&column.name)]));
                    }
                }
            }
            Statement::AlterTable(alter) => {
                let table = table_key(&alter.name);
                for operation in &alter.operations {
                    if let AlterTableOperation::AddConstraint { constraint, .. } = operation
                        && let Some(columns) = key_columns(constraint)
                    {
                        self.indexes.push((table.clone(), column_list(columns)));
                    }
                }
            }
            _ => {}
        }
    }

    /// True when a validated `CHECK (column IS NOT NULL)` exists on `table`, which lets
    /// PostgreSQL 12+ skip the full-table scan of `SET NOT NULL`.
    /// <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-DESC-SET-DROP-NOT-NULL>
    pub fn has_validated_not_null_check(&self, table: &str, column: &str) -> bool {
        self.validated_not_null
            .contains(&(table.to_owned(), column.to_owned()))
    }
}

/// The column of `column IS NOT NULL`, looking through parentheses.
pub fn not_null_check_column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Nested(inner) => not_null_check_column(inner),
        Expr::IsNotNull(inner) => match inner.as_ref() {
            Expr::Identifier(ident) => Some(ident_key(ident)),
            Expr::CompoundIdentifier(parts) => parts.last().map(ident_key),
            Expr::Nested(nested) => not_null_check_column(&Expr::IsNotNull(nested.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// Updates the file and set facts after a statement was linted.
pub(crate) fn record(
    ast: Option<&Statement>,
    fallback: Option<&Fallback>,
    created: &mut HashSet<String>,
    facts: &mut SchemaFacts,
) {
    if let Some(Fallback::CreateTable { table, .. }) = fallback {
        created.insert(table.rsplit('.').next().unwrap_or(table).to_owned());
    }
    let Some(statement) = ast else {
        return;
    };
    match statement {
        Statement::CreateTable(create) => {
            let table = table_key(&create.name);
            for constraint in &create.constraints {
                if let TableConstraint::Check(check) = constraint
                    && let Some(column) = not_null_check_column(&check.expr)
                {
                    facts.validated_not_null.insert((table.clone(), column));
                }
            }
            for column in &create.columns {
                for option in &column.options {
                    if let ColumnOption::Check(check) = &option.option
                        && let Some(checked) = not_null_check_column(&check.expr)
                    {
                        facts.validated_not_null.insert((table.clone(), checked));
                    }
                }
            }
            created.insert(table);
        }
        Statement::AlterTable(alter) => {
            let table = table_key(&alter.name);
            for operation in &alter.operations {
                match operation {
                    AlterTableOperation::AddConstraint {
                        constraint: TableConstraint::Check(check),
                        not_valid,
                    } => {
                        let Some(column) = not_null_check_column(&check.expr) else {
                            continue;
                        };
                        match (&check.name, not_valid) {
                            (Some(name), true) => {
                                facts
                                    .pending_not_null_checks
                                    .insert((table.clone(), ident_key(name)), column);
                            }
                            (_, false) => {
                                facts.validated_not_null.insert((table.clone(), column));
                            }
                            (None, true) => {}
                        }
                    }
                    AlterTableOperation::ValidateConstraint { name } => {
                        if let Some(column) = facts
                            .pending_not_null_checks
                            .remove(&(table.clone(), ident_key(name)))
                        {
                            facts.validated_not_null.insert((table.clone(), column));
                        }
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
}

/// The columns of a PRIMARY KEY or UNIQUE constraint (each builds an index).
fn key_columns(constraint: &TableConstraint) -> Option<&[sqlparser::ast::IndexColumn]> {
    match constraint {
        TableConstraint::PrimaryKey(pk) => Some(&pk.columns),
        TableConstraint::Unique(unique) => Some(&unique.columns),
        _ => None,
    }
}

/// A column reference as a key: `"Email"` → `Email`, `Email` → `email`; other expressions
/// keep their text (they never equal a plain column).
pub fn expression_key(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident_key(ident),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_key).unwrap_or_default(),
        other => other.to_string(),
    }
}

/// The name of a table constraint, when it has one.
pub fn constraint_name(constraint: &TableConstraint) -> Option<&Ident> {
    match constraint {
        TableConstraint::Unique(c) => c.name.as_ref(),
        TableConstraint::PrimaryKey(c) => c.name.as_ref(),
        TableConstraint::ForeignKey(c) => c.name.as_ref(),
        TableConstraint::Check(c) => c.name.as_ref(),
        TableConstraint::UniqueUsingIndex(c) | TableConstraint::PrimaryKeyUsingIndex(c) => {
            c.name.as_ref()
        }
        _ => None,
    }
}
