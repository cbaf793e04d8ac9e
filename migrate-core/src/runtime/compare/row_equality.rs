//! The one definition of "the target holds what the source says", used by the compare (its
//! checksums and its diff) and by reconcile (which rows it rewrites), so a row reconcile
//! leaves alone is a row the compare passes, and the other way round.
//!
//! A row is its key and its values, in a `ROW(..)::text`:
//!
//! - each source value is first cast to its target column's type (`format_type` of the
//!   column, typmod included): what the target would hold after writing it. `1.00` read
//!   into a `numeric(10,1)` is `1.0`; a `json` source read into a `jsonb` target is
//!   normalised; a `timestamp` read into a `timestamptz` is placed in the session's
//!   `TimeZone`, as the write would place it. Exception: `varchar(n)`/`varbit(n)` (and their
//!   arrays) are cast without the length, because an explicit cast truncates where a write
//!   fails, and a truncated value must not compare equal;
//! - the two texts are then compared byte for byte (`COLLATE "C"`, `IS DISTINCT FROM`).
//!
//! So what the target's reader sees is what is compared: `1.00` and `1.0` in an unscaled
//! `numeric` differ (reconcile rewrites the row, after which they are equal); a float
//! prints its exact value (`extra_float_digits` > 0, [`SESSION`]) so two floats are equal
//! only when they are the same number, `-0` included; NULL equals NULL (the row text shows
//! NULL as an empty field and `''` as `""`); arrays and composites compare element by
//! element through their text; collations play no part. `json` has no `=` operator, which
//! the text form does not need.

/// Set in each transaction that compares rows: floats print their exact value (the default
/// since PostgreSQL 12, but a role or database may lower it, and a rounded text would let
/// two different floats compare equal).
pub(crate) const SESSION: &str = "SET LOCAL extra_float_digits = 3";

/// The target column types the source values are cast to, in `columns=` order, each as a
/// type name PostgreSQL reads back (`format_type`).
#[derive(Debug, Clone)]
pub(crate) struct RowEquality {
    target_types: Vec<String>,
}

impl RowEquality {
    pub(crate) fn new(target_types: Vec<String>) -> RowEquality {
        RowEquality { target_types }
    }

    /// The source row's text: `key` and `values` are expressions (one per target column).
    pub(crate) fn source_row(&self, key: &str, values: &[String]) -> String {
        let cast: Vec<String> = values
            .iter()
            .zip(&self.target_types)
            .map(|(value, target_type)| format!("CAST({value} AS {target_type})"))
            .collect();
        row_text(key, &cast)
    }

    /// The target row's text: `key` and `columns` are expressions of the target's types.
    pub(crate) fn target_row(&self, key: &str, columns: &[String]) -> String {
        row_text(key, columns)
    }

    /// The condition "these two row texts differ".
    pub(crate) fn differ(source_row: &str, target_row: &str) -> String {
        format!("({source_row}) COLLATE \"C\" IS DISTINCT FROM ({target_row}) COLLATE \"C\"")
    }

    /// How many values a row has.
    pub(crate) fn len(&self) -> usize {
        self.target_types.len()
    }
}

fn row_text(key: &str, values: &[String]) -> String {
    format!("ROW({key}, {})::text", values.join(", "))
}

/// `prefix1, prefix2, ...`: the column aliases of a derived table holding `count` values.
pub(crate) fn aliases(prefix: &str, count: usize) -> Vec<String> {
    (1..=count).map(|i| format!("{prefix}{i}")).collect()
}

/// The SQL reading a column's type for a cast to it: `format_type` with the typmod, except
/// for the length of `varchar`/`varbit` and their arrays (see the module docs). Columns:
/// `$1` the table (regclass text), `$2` the column names (`text[]`); one row per name, in
/// order, the type NULL when the column does not exist.
pub(crate) const TARGET_TYPES: &str = "\
    SELECT wanted.name, \
           CASE WHEN a.attnum IS NULL THEN NULL \
                WHEN coalesce(nullif(t.typelem, 0), t.oid) IN ('varchar'::regtype, 'varbit'::regtype) \
                     AND t.typlen = -1 \
                THEN format_type(a.atttypid, NULL) \
                ELSE format_type(a.atttypid, a.atttypmod) END \
    FROM unnest($2::text[]) WITH ORDINALITY AS wanted(name, position) \
    LEFT JOIN pg_attribute a ON a.attrelid = to_regclass($1) AND a.attname = wanted.name \
         AND a.attnum > 0 AND NOT a.attisdropped \
    LEFT JOIN pg_type t ON t.oid = a.atttypid \
    ORDER BY wanted.position";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_values_are_cast_to_the_target_types_and_compared_as_bytes() {
        let equality = RowEquality::new(vec!["numeric(10,1)".into(), "jsonb".into()]);
        let source = equality.source_row("s.k", &aliases("s.v", 2));
        assert_eq!(
            source,
            "ROW(s.k, CAST(s.v1 AS numeric(10,1)), CAST(s.v2 AS jsonb))::text"
        );
        let target = equality.target_row("t.k", &aliases("t.c", 2));
        assert_eq!(target, "ROW(t.k, t.c1, t.c2)::text");
        assert_eq!(
            RowEquality::differ("a", "b"),
            "(a) COLLATE \"C\" IS DISTINCT FROM (b) COLLATE \"C\""
        );
    }
}
