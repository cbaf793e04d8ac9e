//! The `-- migrate:` directives: `up`, `down`, `allow`, `requires`, `backfill`,
//! `no-transaction`, each read from the text after `migrate:`.

use std::borrow::Cow;

use super::compare_directive::{COMPARE_USAGE, parse_compare};
use crate::diagnostic::codes;
use crate::migration::{BackfillPace, BackfillSpec, Phase};

/// `-- migrate:allow <rule> <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allow {
    /// The rule id it suppresses (an unknown id is an error, `unknown-rule`).
    pub rule: String,
    /// Why the statement is safe anyway; required, kept for reviewers.
    pub reason: String,
    /// 1-based line of the comment, for `unused-allow`.
    pub line: u32,
    /// 1-based column of the comment.
    pub column: u32,
}

/// A parsed `-- migrate:` line.
pub(super) enum Directive {
    /// `up`, with dbmate's options after it when there are any (`transaction:false`).
    Up(String),
    /// `down`, likewise.
    Down(String),
    /// `phase <expand|backfill|contract>`: another tool's file has no phase in its name.
    Phase(Phase),
    /// `replaces <v>,<v>,...`: the versions a squash stands for.
    Replaces(Vec<u64>),
    Allow(Allow),
    Requires(u64),
    Backfill(BackfillSpec),
    NoTransaction,
    /// The arguments, checked by [`super::compare_directive::parse_compare`].
    Compare(String),
    RequiresCompare,
}

pub(super) type DirectiveError = (&'static str, String, &'static str);

pub(super) fn parse_directive(
    body: &str,
    phase: Phase,
    line: u32,
    column: u32,
) -> Result<Directive, DirectiveError> {
    let body = body.trim();
    let (name, rest) = body.split_once(char::is_whitespace).unwrap_or((body, ""));
    let rest = rest.trim();
    let known = "known directives: up, down, allow <rule> <reason>, requires <version>, backfill table=<t> key=<col> [target=<ms> | batch=<n> delay=<ms>], no-transaction, compare source=<t> target=<t> key=<col> columns=<c,...> [map=<exprs>], requires-compare, replaces <v>,<v>,... (written by `migrate squash`)";
    let no_arguments = |directive: Directive| {
        if rest.is_empty() {
            Ok(directive)
        } else {
            Err((
                codes::BAD_DIRECTIVE,
                format!("`-- migrate:{name}` takes no arguments"),
                known,
            ))
        }
    };
    match name {
        "up" => Ok(Directive::Up(rest.to_owned())),
        "down" => Ok(Directive::Down(rest.to_owned())),
        "replaces" => {
            let versions: Option<Vec<u64>> = rest
                .split(',')
                .map(|v| v.trim().parse::<u64>().ok())
                .collect();
            match versions {
                Some(mut versions) if !versions.is_empty() => {
                    versions.sort_unstable();
                    versions.dedup();
                    Ok(Directive::Replaces(versions))
                }
                _ => Err((
                    codes::BAD_DIRECTIVE,
                    format!("`-- migrate:replaces {rest}`: expected versions separated by commas"),
                    "-- migrate:replaces 1,2,3 (written by `migrate squash`)",
                )),
            }
        }
        "phase" => Phase::parse(rest).map(Directive::Phase).ok_or_else(|| {
            (
                codes::BAD_DIRECTIVE,
                format!("`-- migrate:phase {rest}`: expected expand, backfill or contract"),
                "-- migrate:phase backfill",
            )
        }),
        "no-transaction" => no_arguments(Directive::NoTransaction),
        "compare" => {
            if phase != Phase::Backfill {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!(
                        "`-- migrate:compare` belongs in a backfill file, this file's phase is {phase}"
                    ),
                    "declare the compare beside the backfill that fills the target",
                ));
            }
            parse_compare(rest)
                .map(|_| Directive::Compare(rest.to_owned()))
                .map_err(|problem| (codes::BAD_DIRECTIVE, problem, COMPARE_USAGE))
        }
        "requires-compare" => {
            if phase != Phase::Contract {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!(
                        "`-- migrate:requires-compare` belongs in a contract file, this file's phase is {phase}"
                    ),
                    "name the file `<version>_<name>.contract.sql`",
                ));
            }
            no_arguments(Directive::RequiresCompare)
        }
        "allow" => {
            let (rule, reason) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            if rule.is_empty() {
                return Err((
                    codes::BAD_DIRECTIVE,
                    "`-- migrate:allow` needs a rule id and a reason".into(),
                    "-- migrate:allow <rule-id> <why this is safe here>",
                ));
            }
            if reason.trim().is_empty() {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!("`-- migrate:allow {rule}` needs a reason"),
                    "-- migrate:allow <rule-id> <why this is safe here>",
                ));
            }
            Ok(Directive::Allow(Allow {
                rule: rule.to_owned(),
                reason: reason.trim().to_owned(),
                line,
                column,
            }))
        }
        "requires" => {
            if phase != Phase::Contract {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!(
                        "`-- migrate:requires` belongs in a contract file, this file's phase is {phase}"
                    ),
                    "name the file `<version>_<name>.contract.sql`",
                ));
            }
            rest.parse::<u64>().map(Directive::Requires).map_err(|_| {
                (
                    codes::BAD_DIRECTIVE,
                    format!("`-- migrate:requires {rest}`: expected one version number"),
                    "-- migrate:requires 2",
                )
            })
        }
        "backfill" => {
            if phase != Phase::Backfill {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!(
                        "`-- migrate:backfill` belongs in a backfill file, this file's phase is {phase}"
                    ),
                    "name the file `<version>_<name>.backfill.sql`",
                ));
            }
            parse_backfill(rest).map(Directive::Backfill)
        }
        _ => Err((
            codes::UNKNOWN_DIRECTIVE,
            format!("unknown directive `-- migrate:{name}`"),
            known,
        )),
    }
}

const BACKFILL_USAGE: &str = "-- migrate:backfill table=[<schema>.]<table> key=<column> \
[target=<ms> (batches sized to take that long, the default) | batch=<rows> delay=<ms> (fixed)]; \
names follow SQL: unquoted ones are folded to lower case, \"Quoted\" ones are kept exactly";

fn parse_backfill(arguments: &str) -> Result<BackfillSpec, DirectiveError> {
    let usage = BACKFILL_USAGE;
    let mut table = None;
    let mut key = None;
    let mut batch_size = None;
    let mut delay_ms = None;
    let mut target_ms = None;
    let mut rest = arguments.trim_start();
    while !rest.is_empty() {
        let name_end = rest
            .find(|c: char| c == '=' || c.is_whitespace())
            .unwrap_or(rest.len());
        let name = &rest[..name_end];
        let Some(after) = rest[name_end..].strip_prefix('=') else {
            let pair = rest.split_whitespace().next().unwrap_or(rest);
            return Err((
                codes::BAD_DIRECTIVE,
                format!("backfill argument `{pair}` is not name=value"),
                usage,
            ));
        };
        // A quoted name may hold spaces: names are read with SQL's rules, other values end at
        // the next space.
        let value_len = match name {
            "table" | "key" => sql_name_len(after),
            _ => after.find(char::is_whitespace).unwrap_or(after.len()),
        };
        let value = &after[..value_len];
        rest = after[value_len..].trim_start();
        let number = |value: &str| -> Result<u32, DirectiveError> {
            value
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0 || name == "delay")
                .ok_or_else(|| {
                    (
                        codes::BAD_DIRECTIVE,
                        format!("backfill `{name}={value}` is not a valid number"),
                        usage,
                    )
                })
        };
        let bad_name = |problem: String| {
            (
                codes::BAD_DIRECTIVE,
                format!("backfill `{name}={value}`: {problem}"),
                usage,
            )
        };
        match name {
            "table" => {
                let mut parts = parse_sql_name(value).map_err(bad_name)?;
                let table_part = parts.pop();
                match (parts.pop(), table_part, parts.is_empty()) {
                    (schema, Some(table_part), true) => table = Some((schema, table_part)),
                    _ => {
                        return Err(bad_name(
                            "expected `<table>` or `<schema>.<table>`".to_owned(),
                        ));
                    }
                }
            }
            "key" => {
                if value.contains(',') || value.starts_with('(') {
                    return Err(bad_name(
                        "a backfill pages by one column, composite keys are not supported: \
                         name one unique, ordered column (the primary key, or a unique column \
                         added for the backfill, e.g. a bigint identity)"
                            .to_owned(),
                    ));
                }
                let mut parts = parse_sql_name(value).map_err(bad_name)?;
                match (parts.pop(), parts.is_empty()) {
                    (Some(column), true) => key = Some(column),
                    _ => return Err(bad_name("expected one column name".to_owned())),
                }
            }
            "batch" => batch_size = Some(number(value)?),
            "delay" => delay_ms = Some(number(value)?),
            "target" => target_ms = Some(number(value)?),
            _ => {
                return Err((
                    codes::BAD_DIRECTIVE,
                    format!("unknown backfill argument `{name}`"),
                    usage,
                ));
            }
        }
    }
    let pace = match (target_ms, batch_size, delay_ms) {
        (target_ms, None, None) => BackfillPace::Adaptive { target_ms },
        (None, batch_size, delay_ms) => BackfillPace::Fixed {
            batch_size: batch_size.unwrap_or(BackfillSpec::DEFAULT_BATCH_SIZE),
            delay_ms: delay_ms.unwrap_or(BackfillSpec::DEFAULT_DELAY_MS),
        },
        (Some(_), _, _) => {
            return Err((
                codes::BAD_DIRECTIVE,
                "backfill `target=` cannot be combined with `batch=` or `delay=`: target= lets \
                 the runtime size and pace the batches, batch=/delay= fix them"
                    .into(),
                usage,
            ));
        }
    };
    match (table, key) {
        (Some((schema, table)), Some(key)) => Ok(BackfillSpec {
            schema: schema.map(Cow::Owned),
            table: Cow::Owned(table),
            key: Cow::Owned(key),
            pace,
        }),
        _ => Err((
            codes::BAD_DIRECTIVE,
            "`-- migrate:backfill` needs table= and key=".into(),
            usage,
        )),
    }
}

/// The length of the name at the start of `text`: up to the first space outside double
/// quotes.
pub(super) fn sql_name_len(text: &str) -> usize {
    let mut quoted = false;
    for (index, c) in text.char_indices() {
        match c {
            '"' => quoted = !quoted,
            c if c.is_whitespace() && !quoted => return index,
            _ => {}
        }
    }
    text.len()
}

/// A possibly qualified name written as in SQL (`app.Orders`, `"App"."Orders"`), as the exact
/// names PostgreSQL looks up: unquoted parts are folded to lower case (ASCII letters only, as
/// PostgreSQL does), quoted parts are kept with `""` read as `"`.
/// <https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS>
pub(super) fn parse_sql_name(text: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = text.chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err("a quoted name is not closed".to_owned()),
                }
            }
            if part.is_empty() {
                return Err("a quoted name cannot be empty".to_owned());
            }
        } else {
            while let Some(&c) = chars.peek() {
                let fits = if part.is_empty() {
                    c.is_ascii_alphabetic() || c == '_' || !c.is_ascii()
                } else {
                    c.is_ascii_alphanumeric() || c == '_' || c == '$' || !c.is_ascii()
                };
                if !fits {
                    break;
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
            if part.is_empty() {
                return Err(match chars.peek() {
                    Some(c) => format!("`{c}` cannot start a name (quote the name: \"...\")"),
                    None => "a name is missing".to_owned(),
                });
            }
        }
        // PostgreSQL would silently truncate the name to its first 63 bytes (NAMEDATALEN - 1).
        if part.len() > 63 {
            return Err(format!("`{part}` is longer than 63 bytes"));
        }
        parts.push(part);
        match chars.next() {
            Some('.') => continue,
            None => return Ok(parts),
            Some(c) => return Err(format!("unexpected `{c}` in the name")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::migration::BackfillPace;
    use crate::source::load_files;
    use crate::source::testing::{any_rule, codes_of, file};

    #[test]
    fn allow_needs_a_reason_a_known_rule_and_a_statement() {
        let known = |rule: &str| rule == "unbounded-update";
        let set = load_files(
            &[
                file("0001_a.sql", "-- migrate:allow unbounded-update\nSELECT 1;"),
                file(
                    "0002_b.sql",
                    "-- migrate:allow no-such-rule because\nSELECT 1;",
                ),
                file(
                    "0003_c.sql",
                    "SELECT 1;\n-- migrate:allow unbounded-update because\n",
                ),
            ],
            &known,
        );
        let mut found = codes_of(&set);
        found.sort();
        assert_eq!(found, ["bad-directive", "unknown-rule", "unused-allow"]);
    }

    #[test]
    fn replaces_lists_versions_ending_with_its_own_and_the_files_are_gone() {
        let messages = |files: &[(&str, &str)]| {
            let sources: Vec<_> = files.iter().map(|(n, t)| file(n, t)).collect();
            let set = load_files(&sources, &any_rule);
            set.diagnostics
                .iter()
                .map(|d| format!("{}:{}: {}", d.file, d.code, d.message))
                .collect::<Vec<_>>()
        };
        let squash = "-- migrate:replaces 1, 2,3\nCREATE TABLE IF NOT EXISTS t (id bigint);";
        assert!(messages(&[("0003_squashed.sql", squash)]).is_empty());
        let set = load_files(&[file("0003_squashed.sql", squash)], &any_rule);
        assert_eq!(set.files[0].migration.replaces.as_ref(), [1, 2, 3]);
        let found = messages(&[
            ("0002_b.sql", "SELECT 1;"),
            ("0003_squashed.sql", squash),
            ("0004_c.sql", "-- migrate:replaces 1,two,4\nSELECT 1;"),
            ("0005_d.sql", "-- migrate:replaces 1,4\nSELECT 1;"),
            ("0006_e.sql", "-- migrate:replaces\nSELECT 1;"),
            (
                "0007_f.sql",
                "-- migrate:replaces 6,7\n-- migrate:replaces 6,7\nSELECT 1;",
            ),
        ]);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found.iter().any(|m| m.contains("0003_squashed.sql:bad-directive: this squash replaces versions 2, whose files are still in the set")), "{found:#?}");
        assert!(found.iter().any(|m| m.contains("0004_c.sql:bad-directive: `-- migrate:replaces 1,two,4`: expected versions separated by commas")), "{found:#?}");
        assert!(found.iter().any(|m| m.contains("0005_d.sql:bad-directive: a squash replaces versions up to its own, 5, which it must list last")), "{found:#?}");
        assert!(
            found.iter().any(|m| m
                .contains("0006_e.sql:bad-directive: `-- migrate:replaces `: expected versions")),
            "{found:#?}"
        );
        assert!(
            found.iter().any(
                |m| m.contains("0007_f.sql:bad-directive: `-- migrate:replaces` appears twice")
            ),
            "{found:#?}"
        );
    }

    #[test]
    fn backfill_names_follow_sql_folding_and_quoting() {
        let spec_of = |directive: &str| {
            let body =
                format!("-- migrate:backfill {directive}\nUPDATE t SET a = 1 WHERE a IS NULL;");
            let set = load_files(&[file("0001_a.backfill.sql", &body)], &any_rule);
            match set.files.first() {
                Some(parsed) if set.diagnostics.is_empty() => {
                    Ok(parsed.migration.backfill.clone().unwrap())
                }
                _ => Err(set.diagnostics),
            }
        };
        let names = |directive: &str| {
            let spec = spec_of(directive).unwrap_or_else(|e| panic!("{directive}: {e:?}"));
            (
                spec.schema.map(String::from),
                spec.table.into_owned(),
                spec.key.into_owned(),
            )
        };
        let name = |text: &str| text.to_owned();
        // PostgreSQL folds unquoted names: `Orders` is the table created as `orders`.
        assert_eq!(
            names("table=Orders key=Id"),
            (None, name("orders"), name("id"))
        );
        assert_eq!(
            names("table=\"Orders\" key=\"Id\""),
            (None, name("Orders"), name("Id"))
        );
        assert_eq!(
            names("table=app.orders key=id"),
            (Some(name("app")), name("orders"), name("id"))
        );
        assert_eq!(
            names("batch=5 table=\"App\".\"Orders\" key=id delay=10"),
            (Some(name("App")), name("Orders"), name("id"))
        );
        assert_eq!(
            names("table=App.\"Order.s\" key=\"the \"\"key\"\"\""),
            (Some(name("app")), name("Order.s"), name("the \"key\""))
        );
        assert_eq!(
            spec_of("table=\"App\".\"Orders\" key=id")
                .unwrap()
                .table_name(),
            "\"App\".\"Orders\""
        );
        let pace = |directive: &str| spec_of(directive).unwrap().pace;
        assert_eq!(
            pace("table=t key=id"),
            BackfillPace::Adaptive { target_ms: None }
        );
        assert_eq!(
            pace("table=t key=id target=250"),
            BackfillPace::Adaptive {
                target_ms: Some(250)
            }
        );
        assert_eq!(
            pace("table=t key=id delay=100"),
            BackfillPace::Fixed {
                batch_size: 1000,
                delay_ms: 100
            }
        );
        assert_eq!(
            pace("table=t key=id batch=5000"),
            BackfillPace::Fixed {
                batch_size: 5000,
                delay_ms: 0
            }
        );
        let too_long = format!("table={} key=id", "x".repeat(64));
        for bad in [
            "table=\"Orders key=id",
            "table=a.b.c key=id",
            "table=orders key=a.b",
            "table=orders key=a,b",
            "table=orders key=(a,b)",
            "table=\"\" key=id",
            "table=1orders key=id",
            "table=orders; key=id",
            "table=orders key=id batch=0",
            "table=orders key=id target=0",
            "table=orders key=id target=100 batch=10",
            "table=orders key=id delay=5 target=100",
            "table= key=id",
            "table=orders",
            too_long.as_str(),
        ] {
            // Reported once: a malformed directive is not also a missing one.
            let problems = spec_of(bad).unwrap_err();
            let codes: Vec<&str> = problems.iter().map(|d| d.code).collect();
            assert_eq!(codes, ["bad-directive"], "{bad}: {problems:?}");
            assert!(
                problems[0].message.contains("backfill"),
                "{bad}: {problems:?}"
            );
        }
    }
}
