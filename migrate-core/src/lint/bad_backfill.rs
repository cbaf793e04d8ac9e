//! `bad-backfill`: a backfill file's up statements must be UPDATEs (or purging DELETEs) the
//! runtime can batch, and batches that end.
//!
//! Not a configurable rule: the runtime cannot run what fails here, so there is nothing to
//! allow. The runtime sweeps until a pass changes nothing and writes the history row only once
//! no row matches the WHERE, so an UPDATE whose SET never makes its WHERE false can never
//! finish; it is refused when the statement itself shows it.

use std::collections::BTreeSet;

use sqlparser::ast::{
    AssignmentTarget, BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    InTarget, ObjectName, Statement, TableFactor, Update, Value,
};

use crate::batch_plan::{self, BackfillPlanError};
use crate::diagnostic::{Diagnostic, codes};
use crate::source::{ParsedFile, SectionKind, StatementSource};
use crate::sql::{ReadStatement, ident_key};

const SHAPE_HELP: &str = "UPDATE <table> SET <col> = <expr> WHERE <rows not done yet>; or DELETE FROM <table> WHERE <rows to purge>; one table, the one named by -- migrate:backfill";

/// Checks one statement of a backfill file. (A missing WHERE is `unbounded-update`'s finding.)
pub(super) fn check(
    file: &ParsedFile,
    statement: &StatementSource,
    sql: &str,
    read: &ReadStatement,
    diagnostics: &mut Vec<Diagnostic>,
) {
    let Some(spec) = &file.migration.backfill else {
        return;
    };
    if statement.section != SectionKind::Up {
        return;
    }
    let diagnostic = |message: String, help: String| {
        Diagnostic::error(
            &file.display_path,
            statement.raw.line,
            statement.raw.column,
            codes::BAD_BACKFILL,
            message,
        )
        .with_help(help)
    };
    let planned = match read {
        ReadStatement::Parsed(ast) => batch_plan::plan_parsed(ast, sql, spec, "bigint"),
        // A view, from its keywords: refused as the parsed one was.
        ReadStatement::Skipped(_) => {
            Err(BackfillPlanError::NotAnUpdate(batch_plan::first_words(sql)))
        }
        _ => Err(BackfillPlanError::NotAnUpdate(
            read.parse_error().unwrap_or_default().to_owned(),
        )),
    };
    match planned {
        Ok(_) => {
            if let Some(Statement::Update(update)) = read.ast()
                && let Some(endless) = never_finishes(update)
            {
                diagnostics.push(diagnostic(endless.message, endless.help));
            }
        }
        Err(BackfillPlanError::MissingWhere) => {}
        Err(error) => diagnostics.push(diagnostic(error.to_string(), SHAPE_HELP.to_owned())),
    }
}

/// Why an UPDATE's rows keep matching its WHERE after the SET, and the rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endless {
    pub message: String,
    pub help: String,
}

/// Decides, from the statement alone, whether rows the UPDATE changed can still match its
/// WHERE forever. A row stops matching only when a column the WHERE reads changes, so the
/// backfill never finishes when no such column is assigned, or when the only ones assigned
/// get the value the WHERE demands (`SET a = NULL WHERE a IS NULL`, `SET a = a`). `None` when
/// it can end, and when it cannot be told: a subquery, a whole-row reference or an expression
/// kind not read here (a trigger can still change a column behind the SET's back; the rewrite
/// names the column in the SET, which is clearer anyway).
pub(crate) fn never_finishes(update: &Update) -> Option<Endless> {
    let selection = update.selection.as_ref()?;
    let mut read = BTreeSet::new();
    columns_read(selection, &mut read)?;
    if let TableFactor::Table { name, alias, .. } = &update.table.relation {
        // `WHERE t IS NOT NULL` or `f(t)` reads the whole row, every column included.
        let row_names = [last_part(name), alias.as_ref().map(|a| ident_key(&a.name))];
        if row_names.iter().flatten().any(|row| read.contains(row)) {
            return None;
        }
    }
    let required_null = required_null_columns(selection);
    let mut assigned: Vec<(String, &Expr)> = Vec::new();
    for assignment in &update.assignments {
        match &assignment.target {
            AssignmentTarget::ColumnName(column) => {
                assigned.push((last_part(column)?, &assignment.value));
            }
            // `SET (a, b) = (...)`: every column may change.
            AssignmentTarget::Tuple(columns) => {
                for column in columns {
                    assigned.push((last_part(column)?, &assignment.value));
                }
            }
        }
    }
    let keeps_value = |column: &str, value: &Expr| match value {
        Expr::Value(value) if value.value == Value::Null => required_null.contains(column),
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            column_of(value).as_deref() == Some(column)
        }
        _ => false,
    };
    if assigned
        .iter()
        .any(|(column, value)| read.contains(column) && !keeps_value(column, value))
    {
        return None;
    }
    let (first_column, first_value) = assigned.first()?;
    let consequence = "so every row it updates still matches: each sweep updates the same rows \
again and the final check (no row may still match) never passes";
    let no_op = assigned
        .iter()
        .find(|(column, value)| read.contains(column) && keeps_value(column, value));
    let (message, help) = match no_op {
        Some((column, value)) => (
            format!(
                "this backfill never finishes: `SET {column} = {value}` does not change `{column}` in the rows its WHERE matches, {consequence}"
            ),
            format!(
                "the WHERE selects the rows whose value must change, e.g. `WHERE {column} IS DISTINCT FROM {value}`"
            ),
        ),
        None => {
            let read_text = if read.is_empty() {
                "reads no column".to_owned()
            } else {
                format!(
                    "reads {}",
                    read.iter()
                        .map(|c| format!("`{c}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            (
                format!(
                    "this backfill never finishes: its WHERE {read_text}, which the SET does not change, {consequence}"
                ),
                format!(
                    "make the WHERE false once a row is done, on a column the SET assigns: \
`WHERE {first_column} IS NULL` when the SET fills an empty column, or \
`WHERE {first_column} IS DISTINCT FROM {first_value}`"
                ),
            )
        }
    };
    Some(Endless { message, help })
}

fn last_part(name: &ObjectName) -> Option<String> {
    name.0.last()?.as_ident().map(ident_key)
}

fn column_of(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(ident) => Some(ident_key(ident)),
        Expr::CompoundIdentifier(parts) => parts.last().map(ident_key),
        _ => None,
    }
}

/// Columns the WHERE requires to be NULL: `col IS NULL` conjuncts at its top level.
fn required_null_columns(expr: &Expr) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut pending = vec![expr];
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::Nested(inner) => pending.push(inner),
            Expr::BinaryOp {
                left,
                op: BinaryOperator::And,
                right,
            } => {
                pending.push(left);
                pending.push(right);
            }
            Expr::IsNull(inner) => found.extend(column_of(inner)),
            _ => {}
        }
    }
    found
}

/// Adds the columns `expr` reads (the last part of each name, folded). `None` when that
/// cannot be told from the expression: subqueries, wildcards, kinds not listed here.
fn columns_read(expr: &Expr, out: &mut BTreeSet<String>) -> Option<()> {
    let all = |exprs: &[&Expr], out: &mut BTreeSet<String>| -> Option<()> {
        for expr in exprs {
            columns_read(expr, out)?;
        }
        Some(())
    };
    match expr {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => {
            out.extend(column_of(expr));
            Some(())
        }
        Expr::Value(_) | Expr::TypedString(_) => Some(()),
        Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsNotTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsNotFalse(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotUnknown(e)
        | Expr::Nested(e)
        | Expr::UnaryOp { expr: e, .. }
        | Expr::Cast { expr: e, .. }
        | Expr::Collate { expr: e, .. } => columns_read(e, out),
        Expr::IsDistinctFrom(a, b)
        | Expr::IsNotDistinctFrom(a, b)
        | Expr::BinaryOp {
            left: a, right: b, ..
        }
        | Expr::AnyOp {
            left: a, right: b, ..
        }
        | Expr::AllOp {
            left: a, right: b, ..
        }
        | Expr::AtTimeZone {
            timestamp: a,
            time_zone: b,
        } => all(&[a, b], out),
        Expr::Like {
            expr,
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            expr,
            pattern,
            escape_char,
            ..
        }
        | Expr::SimilarTo {
            expr,
            pattern,
            escape_char,
            ..
        } => {
            all(&[expr, pattern], out)?;
            escape_char.iter().try_for_each(|e| columns_read(e, out))
        }
        Expr::Between {
            expr, low, high, ..
        } => all(&[expr, low, high], out),
        Expr::In {
            expr,
            target: InTarget::List(list),
            ..
        } => {
            columns_read(expr, out)?;
            list.iter().try_for_each(|e| columns_read(e, out))
        }
        Expr::Tuple(list) => list.iter().try_for_each(|e| columns_read(e, out)),
        Expr::Array(array) => array.elem.iter().try_for_each(|e| columns_read(e, out)),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            operand.iter().try_for_each(|e| columns_read(e, out))?;
            for when in conditions {
                all(&[&when.condition, &when.result], out)?;
            }
            else_result.iter().try_for_each(|e| columns_read(e, out))
        }
        Expr::Function(function) => {
            if function.filter.is_some() || !function.within_group.is_empty() {
                return None;
            }
            match &function.args {
                FunctionArguments::None => Some(()),
                FunctionArguments::Subquery(_) => None,
                FunctionArguments::List(list) => list.args.iter().try_for_each(|arg| {
                    let (FunctionArg::Named { arg, .. }
                    | FunctionArg::ExprNamed { arg, .. }
                    | FunctionArg::Unnamed(arg)) = arg;
                    match arg {
                        FunctionArgExpr::Expr(e) => columns_read(e, out),
                        _ => None,
                    }
                }),
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::{SourceFile, load_files};

    fn endless(sql: &str) -> Option<Endless> {
        match crate::sql::parse_statement(sql).unwrap() {
            Statement::Update(update) => never_finishes(&update),
            other => panic!("not an update: {other}"),
        }
    }

    #[test]
    fn a_where_the_set_never_falsifies_never_finishes() {
        let found = endless("UPDATE t SET a = 2 WHERE id > 5").unwrap();
        assert!(found.message.contains("reads `id`"), "{found:?}");
        assert!(found.message.contains("never finishes"), "{found:?}");
        assert!(found.help.contains("`WHERE a IS NULL`"), "{found:?}");
        assert!(
            found.help.contains("`WHERE a IS DISTINCT FROM 2`"),
            "{found:?}"
        );
        for sql in [
            "UPDATE t SET a = 2 WHERE b IS NULL",
            "UPDATE t SET a = lower(b) WHERE lower(b) <> '' AND c BETWEEN 1 AND 9",
            "UPDATE t SET a = 1 WHERE true",
            "UPDATE t SET (a, b) = (1, 2) WHERE c IS NULL",
            "UPDATE t SET a = 1 WHERE t.c IN (1, 2)",
            "UPDATE t SET \"A\" = 1 WHERE a IS NULL",
            // Assigning a column its own value or the NULL the WHERE demands changes nothing.
            "UPDATE t SET a = a WHERE a > 0",
            "UPDATE t SET a = NULL WHERE a IS NULL",
            "UPDATE t SET a = NULL WHERE (a IS NULL AND b > 0)",
        ] {
            assert!(endless(sql).is_some(), "{sql}");
        }
        let null = endless("UPDATE t SET a = NULL WHERE a IS NULL").unwrap();
        assert!(
            null.message
                .contains("`SET a = NULL` does not change `a` in the rows its WHERE matches"),
            "{null:?}"
        );
        assert!(
            null.help.contains("`WHERE a IS DISTINCT FROM NULL`"),
            "{null:?}"
        );
    }

    #[test]
    fn the_linter_reports_an_endless_backfill_at_its_statement() {
        let found = crate::lint::testing::lint_example(
            "0005_fill.backfill.sql",
            "-- migrate:backfill table=t key=id\n\
UPDATE t SET a = 2 WHERE id > 5;\n\
UPDATE t SET a = NULL WHERE a IS NULL;\n\
UPDATE t SET a = 2 WHERE a IS NULL;\n",
        );
        let at: Vec<(u32, &str)> = found.iter().map(|d| (d.line, d.code)).collect();
        assert_eq!(at, [(2, "bad-backfill"), (3, "bad-backfill")], "{found:#?}");
        assert!(
            found[0]
                .help
                .as_deref()
                .unwrap()
                .contains("IS DISTINCT FROM 2")
        );
    }

    /// Moved from the source tests: the loader accepts these statements, the linter refuses them.
    #[test]
    fn backfill_statements_must_be_batchable_updates_or_deletes() {
        let known = |_: &str| true;
        let set = load_files(
            &[SourceFile {
                display_path: "migrations/0001_a.backfill.sql".to_owned(),
                file_name: "0001_a.backfill.sql".to_owned(),
                bytes: "-- migrate:backfill table=users key=id\nDELETE FROM users USING orders WHERE users.id = orders.user_id;\nUPDATE orders SET a = 1 WHERE a IS NULL;\nUPDATE users SET a = 1 WHERE a IS NULL;".as_bytes().into(),
            }],
            &known,
        );
        assert!(set.diagnostics.is_empty());
        let found = crate::lint::lint_files(&set.files, &crate::lint::Config::default());
        let lines: Vec<(u32, &str)> = found.iter().map(|d| (d.line, d.code)).collect();
        assert_eq!(lines, [(2, "bad-backfill"), (3, "bad-backfill")]);
    }

    #[test]
    fn a_where_the_set_can_falsify_or_that_cannot_be_read_is_accepted() {
        for sql in [
            "UPDATE t SET a = 2 WHERE a IS NULL",
            "UPDATE t SET a = 2 WHERE a IS DISTINCT FROM 2",
            "UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL",
            "UPDATE t SET a = 1, b = 2 WHERE b IS NULL AND id > 5",
            "UPDATE t SET a = 1 WHERE t.a IS NULL",
            "UPDATE t SET \"A\" = 1 WHERE \"A\" IS NULL",
            "UPDATE t SET a = NULL WHERE a IS NOT NULL",
            "UPDATE t SET a = NULL, b = 1 WHERE a IS NULL AND b IS NULL",
            "UPDATE t SET (a, b) = (1, 2) WHERE b IS NULL",
            "UPDATE t SET a = 1 WHERE coalesce(a, 0) = 0",
            "UPDATE t SET a = 1 WHERE CASE WHEN b THEN a IS NULL ELSE false END",
            // Undecidable from the statement: left alone.
            "UPDATE t SET a = 1 WHERE id IN (SELECT id FROM todo)",
            "UPDATE t SET a = 1 WHERE NOT EXISTS (SELECT 1 FROM done WHERE done.id = t.id)",
            "UPDATE t SET a = 1 WHERE needs_work(t)",
            "UPDATE t AS x SET a = 1 WHERE x IS NOT NULL",
        ] {
            assert_eq!(endless(sql), None, "{sql}");
        }
    }
}
