//! The one list of rules. Dispatch, configuration, `migrate explain`, the README catalogue and
//! the allow directive's validation all read it, so a rule is declared in exactly one place.

use super::Rule;
use super::rules::*;

/// Every rule, in the order of the catalogue (the README's table and `migrate explain`).
pub static RULES: &[&Rule] = &[
    &require_concurrent_index::RULE,
    &unbounded_update::RULE,
    &require_if_not_exists::RULE,
    &drop_in_expand::RULE,
    &constraint_not_valid::RULE,
    &unique_via_index::RULE,
    &set_not_null_scan::RULE,
    &volatile_default::RULE,
    &column_type_change::RULE,
    &blocking_statement::RULE,
    &transaction_control::RULE,
    &session_setting::RULE,
    &unparseable::RULE,
    &identifier_too_long::RULE,
    &lock_held_across_statements::RULE,
    &destructive_cascade::RULE,
    &prefer_robust_types::RULE,
    &enum_value_same_transaction::RULE,
    &foreign_key_without_index::RULE,
    &autocommit_rerun_unsafe::RULE,
    &table_persistence_change::RULE,
    &exclusion_constraint::RULE,
];

/// The rule with this id (`require-concurrent-index`), if there is one.
pub fn rule(id: &str) -> Option<&'static Rule> {
    RULES.iter().copied().find(|rule| rule.id == id)
}

/// The rule catalogue as Markdown, generated from the declarations (the README embeds it and
/// a test fails when the README is stale).
pub fn catalogue_markdown() -> String {
    let mut out = String::from("| rule | what it catches |\n| --- | --- |\n");
    for rule in RULES {
        let level = match rule.default_level {
            super::Level::Error => "",
            super::Level::Warn => " (warning by default)",
            super::Level::Off => " (off by default)",
        };
        out.push_str(&format!("| `{}` | {}{level} |\n", rule.id, rule.summary));
    }
    out
}

/// The full text of one rule, as `migrate explain <id>` prints it.
pub fn explain(rule: &Rule) -> String {
    let mut out = format!(
        "{}\n\n{}\n\nWhy: {}\n\nInstead:\n{}\n",
        rule.id,
        rule.summary,
        rule.explanation,
        indent(rule.rewrite)
    );
    for (title, examples) in [("Flagged", rule.bad), ("Accepted", rule.good)] {
        for example in examples {
            out.push_str(&format!(
                "\n{title} ({}):\n{}\n",
                example.file_name,
                indent(example.sql)
            ));
        }
    }
    out
}

fn indent(text: &str) -> String {
    text.lines()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_kebab_case() {
        let mut seen = std::collections::HashSet::new();
        for rule in RULES {
            assert!(seen.insert(rule.id), "duplicate {}", rule.id);
            assert!(
                rule.id.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'),
                "{}",
                rule.id
            );
        }
    }
}
