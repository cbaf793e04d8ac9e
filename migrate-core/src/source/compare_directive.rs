//! `-- migrate:compare source=<table> target=<table> key=<column> columns=<c>[,<c>...]
//! [map=<SQL expressions>]` in a backfill file, and `-- migrate:requires-compare` in a
//! contract file.
//!
//! Names follow SQL's rules (unquoted ones fold to lower case, `"Quoted"` ones are kept);
//! `map=` is last and takes the rest of the line: a select list over a source row, one
//! expression per target column, parsed here so a typo fails the build, not the deploy.

#[cfg(feature = "lint")]
use sqlparser::ast::{SetExpr, Statement};

use super::directive::{parse_sql_name, sql_name_len};
use crate::migration::{CompareSpec, TableRef};
#[cfg(feature = "lint")]
use crate::sql::parse_statement;

/// The help line of every compare directive error.
pub(super) const COMPARE_USAGE: &str = "-- migrate:compare source=<table> target=<table> key=<column> columns=<col>[,<col>...] [map=<one SQL expression per column, the rest of the line>]";

/// Reads the arguments of `-- migrate:compare` (the text after `compare`). The runtime reads
/// the text a set stores ([`crate::Migration::compare`]) through it too.
pub fn parse_compare(arguments: &str) -> Result<CompareSpec, String> {
    let mut source = None;
    let mut target = None;
    let mut key = None;
    let mut columns: Option<Vec<String>> = None;
    let mut map = None;
    let mut rest = arguments.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        let Some(after) = rest[name_end..].strip_prefix('=') else {
            let pair = rest.split_whitespace().next().unwrap_or(rest);
            return Err(format!("compare argument `{pair}` is not name=value"));
        };
        if name == "map" {
            map = Some(after.trim().to_owned());
            break;
        }
        let value_len = sql_name_len(after);
        let value = &after[..value_len];
        rest = after[value_len..].trim_start();
        let bad = |problem: String| format!("compare `{name}={value}`: {problem}");
        match name {
            "source" | "target" => {
                let mut parts = parse_sql_name(value).map_err(bad)?;
                let table = parts.pop();
                let table = match (parts.pop(), table, parts.is_empty()) {
                    (schema, Some(table), true) => TableRef { schema, table },
                    _ => return Err(bad("expected `<table>` or `<schema>.<table>`".to_owned())),
                };
                if name == "source" {
                    source = Some(table);
                } else {
                    target = Some(table);
                }
            }
            "key" => {
                let mut parts = parse_sql_name(value).map_err(bad)?;
                match (parts.pop(), parts.is_empty()) {
                    (Some(column), true) => key = Some(column),
                    _ => return Err(bad("expected one column name".to_owned())),
                }
            }
            "columns" => {
                let mut list = Vec::new();
                for part in split_commas(value) {
                    let mut parts = parse_sql_name(part).map_err(bad)?;
                    match (parts.pop(), parts.is_empty()) {
                        (Some(column), true) => list.push(column),
                        _ => return Err(bad("expected column names".to_owned())),
                    }
                }
                columns = Some(list);
            }
            _ => return Err(format!("unknown compare argument `{name}`")),
        }
    }
    let (Some(source), Some(target), Some(key), Some(columns)) = (source, target, key, columns)
    else {
        return Err("`-- migrate:compare` needs source=, target=, key= and columns=".into());
    };
    if columns.contains(&key) {
        return Err(format!(
            "compare columns= lists the key `{key}`: the key is compared by itself"
        ));
    }
    // Without the parser (a service that only applies) `map=` is taken as it was checked
    // when the set was read: the macro refused a set whose map does not parse.
    #[cfg(feature = "lint")]
    if let Some(map) = &map {
        let count = select_list_len(map)?;
        if count != columns.len() {
            return Err(format!(
                "compare map= has {count} expression(s) for {} column(s)",
                columns.len()
            ));
        }
    }
    if map.is_none() && source == target {
        return Err(
            "compare of one table needs map=: without it both sides read the same columns".into(),
        );
    }
    Ok(CompareSpec {
        source,
        target,
        key,
        columns,
        map,
    })
}

/// `a,"b,c",d` into its names, splitting on commas outside double quotes.
fn split_commas(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (index, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&text[start..index]);
                start = index + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// How many expressions `map` lists, refusing anything but a plain select list: it is
/// spliced into `SELECT <map> FROM <source>`, so a `FROM`, a `;` or a second statement
/// would change what the compare reads.
#[cfg(feature = "lint")]
fn select_list_len(map: &str) -> Result<usize, String> {
    if map.is_empty() {
        return Err("compare map= is empty".into());
    }
    let statement = parse_statement(&format!("SELECT {map}"))
        .map_err(|e| format!("compare map= is not a list of SQL expressions: {e}"))?;
    let Statement::Query(query) = statement else {
        return Err("compare map= is not a list of SQL expressions".into());
    };
    match query.body.as_ref() {
        SetExpr::Select(select)
            if select.from.is_empty()
                && select.selection.is_none()
                && query.order_by.is_none()
                && query.limit_clause.is_none()
                && select.group_by == sqlparser::ast::GroupByExpr::Expressions(vec![], vec![])
                && select.having.is_none() =>
        {
            Ok(select.projection.len())
        }
        _ => Err("compare map= must be only expressions (no FROM, WHERE, ORDER BY ...)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::load_files;
    use crate::source::testing::{any_rule, codes_of, file};

    #[test]
    fn reads_tables_key_columns_and_map() {
        let spec = parse_compare(
            "source=Legacy.Users target=\"Modern\".users key=Id columns=email,\"Name\" map=lower(email), name || 'x'",
        )
        .unwrap();
        assert_eq!(spec.source.to_string(), "legacy.users");
        assert_eq!(spec.target.quoted(), "\"Modern\".\"users\"");
        assert_eq!(spec.key, "id");
        assert_eq!(spec.columns, ["email", "Name"]);
        assert_eq!(spec.map.as_deref(), Some("lower(email), name || 'x'"));
        assert!(!spec.same_table());
        let same =
            parse_compare("source=users target=users key=id columns=e map=lower(email)").unwrap();
        assert!(same.same_table());
        assert_eq!(same.source_values(), "lower(email)");
    }

    #[test]
    fn refuses_what_would_compare_the_wrong_thing() {
        for bad in [
            "source=users target=users key=id columns=e",
            "source=users target=users2 key=id",
            "source=users target=users2 key=id columns=a,b map=lower(a)",
            "source=users target=users2 key=id columns=id,b",
            "source=users target=users2 key=id columns=a map=a FROM other",
            "source=users target=users2 key=id columns=a map=1; DROP TABLE users",
            "source=users target=users2 key=id columns=a map=",
            "source=a.b.c target=users2 key=id columns=a",
            "source=users target=users2 key=id columns=a extra=1",
            "source=users target=users2 key=a.b columns=a",
        ] {
            assert!(parse_compare(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn directives_belong_to_their_phase() {
        let set = load_files(
            &[
                file(
                    "0001_t.sql",
                    "CREATE TABLE IF NOT EXISTS t (id bigint, a text, b text);",
                ),
                file(
                    "0002_a.backfill.sql",
                    "-- migrate:backfill table=t key=id\n-- migrate:compare source=t target=t key=id columns=b map=lower(a)\nUPDATE t SET b = lower(a) WHERE b IS NULL;",
                ),
                file(
                    "0003_b.contract.sql",
                    "-- migrate:requires 1\n-- migrate:requires-compare\nSELECT 1;",
                ),
            ],
            &any_rule,
        );
        assert!(set.diagnostics.is_empty(), "{:?}", set.diagnostics);
        let backfill = &set.files[1].migration;
        assert!(backfill.compare.as_deref().unwrap().starts_with("source=t"));
        assert!(set.files[2].migration.requires_compare);
        let set = load_files(
            &[
                file(
                    "0001_a.sql",
                    "-- migrate:compare source=t target=u key=id columns=b\nSELECT 1;",
                ),
                file("0002_b.sql", "-- migrate:requires-compare\nSELECT 1;"),
                file(
                    "0003_c.backfill.sql",
                    "-- migrate:backfill table=t key=id\n-- migrate:compare source=t key=id\nUPDATE t SET b = 1 WHERE b IS NULL;",
                ),
            ],
            &any_rule,
        );
        assert_eq!(
            codes_of(&set),
            ["bad-directive", "bad-directive", "bad-directive"]
        );
    }
}
