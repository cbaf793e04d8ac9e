//! `migrate explain [RULE]`

use migrate_core::lint::{RULES, Rule, registry};
use serde_json::json;

use crate::Context;
use crate::error::{CliError, Outcome};
use crate::output::{self, Cell};

pub fn run(context: &Context, rule: Option<&str>) -> anyhow::Result<Outcome> {
    let Some(id) = rule else {
        list(context);
        return Ok(Outcome::Success);
    };
    let Some(rule) = migrate_core::lint::rule(id) else {
        return Err(CliError::UnknownRule {
            id: id.to_owned(),
            suggestion: closest(id),
        }
        .into());
    };
    if context.json() {
        output::print_json(&rule_json(rule));
    } else {
        print!("{}", registry::explain(rule));
    }
    Ok(Outcome::Success)
}

fn list(context: &Context) {
    if context.json() {
        let rules: Vec<_> = RULES
            .iter()
            .map(|r| json!({ "id": r.id, "summary": r.summary, "default_level": level_name(r.default_level) }))
            .collect();
        output::print_json(&json!({ "rules": rules }));
        return;
    }
    let rows: Vec<Vec<Cell>> = RULES
        .iter()
        .map(|r| {
            vec![
                Cell::new(r.id),
                Cell::new(level_name(r.default_level)),
                Cell::new(r.summary),
            ]
        })
        .collect();
    print!(
        "{}",
        output::table(
            &["RULE", "DEFAULT", "WHAT IT CATCHES"],
            &rows,
            context.config.color
        )
    );
    println!(
        "{}",
        context
            .name_commands("\n`migrate explain <rule>` prints why, the safe rewrite and examples.")
    );
}

fn rule_json(rule: &Rule) -> serde_json::Value {
    let examples = |list: &[migrate_core::lint::Example]| -> Vec<serde_json::Value> {
        list.iter()
            .map(|e| json!({ "file_name": e.file_name, "sql": e.sql }))
            .collect()
    };
    json!({
        "id": rule.id,
        "summary": rule.summary,
        "explanation": rule.explanation,
        "rewrite": rule.rewrite,
        "bad": examples(rule.bad),
        "good": examples(rule.good),
    })
}

/// The rule id nearest to `id` by edit distance, when it is near enough to be a typo.
fn closest(id: &str) -> Option<&'static str> {
    let id = id.to_ascii_lowercase();
    RULES
        .iter()
        .map(|r| (levenshtein(&id, r.id), r.id))
        .filter(|(distance, rule)| {
            *distance <= (rule.len() / 3).max(2) || rule.contains(id.as_str())
        })
        .min()
        .map(|(_, rule)| rule)
}

fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(ca != *cb);
            current.push(substitution.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The level a rule has when migrate.toml does not set one.
fn level_name(level: migrate_core::lint::Level) -> &'static str {
    match level {
        migrate_core::lint::Level::Error => "error",
        migrate_core::lint::Level::Warn => "warn",
        migrate_core::lint::Level::Off => "off",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_suggest_the_rule() {
        assert_eq!(
            closest("require-concurent-index"),
            Some("require-concurrent-index")
        );
        assert_eq!(closest("volatile-defaults"), Some("volatile-default"));
        assert_eq!(closest("xyz"), None);
        assert_eq!(levenshtein("kitten", "sitting"), 3);
    }
}
