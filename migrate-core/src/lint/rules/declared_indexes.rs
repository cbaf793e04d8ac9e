//! The indexes a statement declares, for the rules that look them up across the set: every
//! index for `foreign-key-without-index`, the unique ones (keys) for `unbounded-update`.

use sqlparser::ast::{
    AlterTableOperation, ColumnDef, ColumnOption, Expr, IndexColumn, Statement, TableConstraint,
};

use crate::sql::{ident_key, table_key};

/// An index a statement creates: `CREATE [UNIQUE] INDEX`, a primary key, a unique constraint
/// (in `CREATE TABLE`, `ADD CONSTRAINT` or `ADD COLUMN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeclaredIndex {
    /// The table, as [`table_key`] gives it.
    pub table: String,
    /// Its columns in order, folded; an expression keeps its text (never a plain column).
    pub columns: Vec<String>,
    /// A primary key, a unique constraint, or a unique index without a `WHERE`: one row per
    /// value of its columns.
    pub unique: bool,
}

/// The indexes `statement` creates.
pub(crate) fn declared_indexes(statement: &Statement) -> Vec<DeclaredIndex> {
    let mut found = Vec::new();
    match statement {
        Statement::CreateIndex(index) => found.push(DeclaredIndex {
            table: table_key(&index.table_name),
            columns: column_list(&index.columns),
            unique: index.unique && index.predicate.is_none(),
        }),
        Statement::CreateTable(create) => {
            let table = table_key(&create.name);
            for constraint in &create.constraints {
                found.extend(constraint_index(&table, constraint));
            }
            for column in &create.columns {
                found.extend(column_index(&table, column));
            }
        }
        Statement::AlterTable(alter) => {
            let table = table_key(&alter.name);
            for operation in &alter.operations {
                match operation {
                    AlterTableOperation::AddConstraint { constraint, .. } => {
                        found.extend(constraint_index(&table, constraint));
                    }
                    AlterTableOperation::AddColumn { column_def, .. } => {
                        found.extend(column_index(&table, column_def));
                    }
                    _ => {}
                }
            }
        }
        _ => {}
    }
    found
}

fn constraint_index(table: &str, constraint: &TableConstraint) -> Option<DeclaredIndex> {
    let columns = match constraint {
        TableConstraint::PrimaryKey(pk) => &pk.columns,
        TableConstraint::Unique(unique) => &unique.columns,
        _ => return None,
    };
    Some(DeclaredIndex {
        table: table.to_owned(),
        columns: column_list(columns),
        unique: true,
    })
}

fn column_index(table: &str, column: &ColumnDef) -> Option<DeclaredIndex> {
    column
        .options
        .iter()
        .any(|o| {
            matches!(
                o.option,
                ColumnOption::PrimaryKey(_) | ColumnOption::Unique(_)
            )
        })
        .then(|| DeclaredIndex {
            table: table.to_owned(),
            columns: vec![ident_key(&column.name)],
            unique: true,
        })
}

fn column_list(columns: &[IndexColumn]) -> Vec<String> {
    columns
        .iter()
        .map(|c| expression_key(&c.column.expr))
        .collect()
}

/// A column reference as a key: `"Email"` → `Email`, `Email` → `email`; other expressions
/// keep their text (they never equal a plain column).
pub(crate) fn expression_key(expr: &Expr) -> String {
    match expr {
        Expr::Identifier(ident) => ident_key(ident),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_key).unwrap_or_default(),
        other => other.to_string(),
    }
}
