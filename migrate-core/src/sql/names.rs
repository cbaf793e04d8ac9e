//! Identifiers and table names as PostgreSQL reads them: unquoted names fold to lower case,
//! quoted ones are exact.
//! <https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS>

use sqlparser::ast::{Ident, ObjectName};

use crate::classify;

/// Lower-cases unquoted identifiers like PostgreSQL does.
pub fn ident_key(ident: &Ident) -> String {
    if ident.quote_style.is_some() {
        ident.value.clone()
    } else {
        ident.value.to_lowercase()
    }
}

/// The table part of a possibly schema-qualified name, normalised. Schemas are ignored:
/// migrations rarely disambiguate, and a false "same table" only relaxes a rule for a table
/// created in the same file.
pub fn table_key(name: &ObjectName) -> String {
    name.0
        .last()
        .and_then(|part| part.as_ident())
        .map(ident_key)
        .unwrap_or_default()
}

/// [`table_key`] of a table name as written (`public.Orders`, `"Orders"`): the table part,
/// folded like PostgreSQL folds unquoted names.
pub fn table_key_of(written: &str) -> String {
    let normalized = classify::normalize_identifier(written);
    match normalized.rsplit_once('.') {
        Some((_, table)) => table.to_owned(),
        None => normalized,
    }
}
