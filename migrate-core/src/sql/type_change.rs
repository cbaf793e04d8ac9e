//! Which column type changes PostgreSQL makes without rewriting the table: those where the
//! old values are valid, bit for bit, in the new type, and the new one only relaxes a limit.
//! Each case below was checked on PostgreSQL 15 by comparing the table's and its indexes'
//! `pg_class.relfilenode` before and after the `ALTER` (a rewrite gives new files); the
//! mechanism (binary-coercible casts, and the length/precision "support functions" that drop
//! a widening coercion) exists since PostgreSQL 9.2.
//! <https://www.postgresql.org/docs/current/sql-altertable.html#SQL-ALTERTABLE-NOTES>
//!
//! A `USING` clause always rewrites (checked: `varchar(10)` to `varchar(50) USING c` did), and
//! so does anything not listed: `int` to `bigint`, `char(n)` to `text`, `text` to
//! `varchar(n)`, a numeric scale change, `bit(n)` to `varbit(m)`.

use sqlparser::ast::DataType;

/// Why changing a column from `old` to `new` (without `USING`) does not rewrite the table, or
/// `None` when it does or may.
pub fn rewrite_free_change(old: &DataType, new: &DataType) -> Option<&'static str> {
    let (old_base, old_args) = shape(old);
    let (new_base, new_args) = shape(new);
    // A limit that only grows (or goes): `None` is "no limit".
    let widens = |old: Option<u64>, new: Option<u64>| match (old, new) {
        (_, None) => true,
        (Some(old), Some(new)) => new >= old,
        (None, Some(_)) => false,
    };
    let first = |args: &[u64]| args.first().copied();
    match (old_base.as_str(), new_base.as_str()) {
        ("varchar", "text") => Some("varchar to text is binary-coercible"),
        ("text", "varchar") if new_args.is_empty() => {
            Some("text to varchar without a length is binary-coercible")
        }
        ("varchar", "varchar") | ("varbit", "varbit")
            if widens(first(&old_args), first(&new_args)) =>
        {
            Some("a longer (or no) length limit keeps every value as it is")
        }
        ("numeric", "numeric") => {
            // numeric(p) is numeric(p, 0); the scale must stay, the precision may only grow.
            let scale = |args: &[u64]| args.get(1).copied().or(args.first().map(|_| 0));
            let same_scale = new_args.is_empty() || scale(&old_args) == scale(&new_args);
            (same_scale && widens(first(&old_args), first(&new_args)))
                .then_some("a higher (or no) precision with the same scale keeps every value")
        }
        (old @ ("timestamp" | "timestamptz" | "time" | "timetz"), new)
            if old == new && widens(first(&old_args), first(&new_args)) =>
        {
            Some("a higher (or no) fractional-seconds precision keeps every value")
        }
        ("cidr", "inet") => Some("cidr to inet is binary-coercible"),
        _ => None,
    }
}

/// The type's base name, aliases folded (`character varying` → `varchar`), and its numeric
/// arguments: `VARCHAR(20)` → (`varchar`, [20]).
fn shape(data_type: &DataType) -> (String, Vec<u64>) {
    let written = data_type.to_string().to_ascii_lowercase();
    let (name, args) = match written.split_once('(') {
        Some((before, rest)) => {
            let (inside, after) = rest.split_once(')').unwrap_or((rest, ""));
            let args = inside
                .split(',')
                .filter_map(|arg| arg.trim().parse().ok())
                .collect();
            (format!("{before} {after}"), args)
        }
        None => (written, Vec::new()),
    };
    let name = name.split_whitespace().collect::<Vec<_>>().join(" ");
    let base = match name.as_str() {
        "character varying" | "varchar" => "varchar",
        "numeric" | "decimal" => "numeric",
        "bit varying" | "varbit" => "varbit",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "time" | "time without time zone" => "time",
        "timetz" | "time with time zone" => "timetz",
        other => other,
    };
    (base.to_owned(), args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sql::parse_statement;
    use sqlparser::ast::{AlterColumnOperation, AlterTableOperation, Statement};

    fn data_type(written: &str) -> DataType {
        let sql = format!("ALTER TABLE t ALTER COLUMN c TYPE {written}");
        match parse_statement(&sql).unwrap() {
            Statement::AlterTable(alter) => match &alter.operations[0] {
                AlterTableOperation::AlterColumn {
                    op: AlterColumnOperation::SetDataType { data_type, .. },
                    ..
                } => data_type.clone(),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    /// Each pair as observed on PostgreSQL 15 (relfilenode of the table and its indexes).
    #[test]
    fn changes_observed_without_a_rewrite() {
        for (old, new) in [
            ("varchar(10)", "text"),
            ("character varying(10)", "varchar(20)"),
            ("varchar(10)", "varchar"),
            ("text", "varchar"),
            ("numeric(10, 2)", "numeric(12, 2)"),
            ("numeric(10, 2)", "numeric"),
            ("numeric(8)", "numeric(12, 0)"),
            ("timestamp(3)", "timestamp(6)"),
            ("timestamptz(3)", "timestamptz"),
            ("time(2)", "time(5)"),
            ("varbit(5)", "varbit(10)"),
            ("cidr", "inet"),
        ] {
            assert!(
                rewrite_free_change(&data_type(old), &data_type(new)).is_some(),
                "{old} -> {new}"
            );
        }
    }

    #[test]
    fn changes_observed_to_rewrite() {
        for (old, new) in [
            ("varchar(10)", "varchar(5)"),
            ("text", "varchar(30)"),
            ("numeric(10, 2)", "numeric(14, 4)"),
            ("numeric(8)", "numeric(12, 2)"),
            ("char(5)", "text"),
            ("char(5)", "char(10)"),
            ("int", "bigint"),
            ("bit(4)", "varbit(8)"),
            ("timestamp", "timestamptz"),
        ] {
            assert_eq!(
                rewrite_free_change(&data_type(old), &data_type(new)),
                None,
                "{old} -> {new}"
            );
        }
    }
}
