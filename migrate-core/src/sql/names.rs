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
    // The last part of `normalize_identifier(written)`, which cuts at every `.`: folded
    // alone, without building the others (the lock analysis compares names in loops).
    let last = written.rsplit('.').next().unwrap_or(written);
    classify::normalize_identifier(last)
}

/// `table_key_of(written) == key`, without building the key: the lock analysis compares every
/// declared foreign key, view and trigger with each statement's tables.
pub fn table_key_is(written: &str, key: &str) -> bool {
    // Most names compared differ: an unquoted name whose last letter differs from the key's
    // is told apart without looking for its last part.
    match (written.as_bytes().last(), key.as_bytes().last()) {
        (Some(b'"'), _) => {}
        (Some(written), Some(key)) if written.to_ascii_lowercase() != *key => return false,
        _ => {}
    }
    let last = written.rsplit('.').next().unwrap_or(written);
    match last.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
        Some(inner) if inner.contains("\"\"") => inner.replace("\"\"", "\"") == key,
        Some(inner) => inner == key,
        None => {
            last.len() == key.len()
                && last
                    .bytes()
                    .zip(key.bytes())
                    .all(|(written, key)| written.to_ascii_lowercase() == key)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{table_key_is, table_key_of};

    #[test]
    fn table_key_of_is_the_last_part_folded() {
        for (written, key) in [
            ("Orders", "orders"),
            ("public.Orders", "orders"),
            ("app.\"Orders\"", "Orders"),
            ("\"Sch\".\"Or\"\"ders\"", "Or\"ders"),
            ("\"a.b\"", "b\""),
            ("", ""),
        ] {
            assert_eq!(table_key_of(written), key, "{written}");
            assert!(table_key_is(written, key), "{written}");
        }
        for (written, other) in [
            ("Orders", "Orders"),
            ("public.orders", "public.orders"),
            ("\"Orders\"", "orders"),
            ("orders", "order"),
            ("\"Or\"\"ders\"", "Or\"\"ders"),
        ] {
            assert_ne!(table_key_of(written), other, "{written}");
            assert!(!table_key_is(written, other), "{written}");
        }
    }
}
