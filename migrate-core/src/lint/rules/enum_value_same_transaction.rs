//! `enum-value-same-transaction`

use crate::lint::{Check, Example, Finding, Level, Rule, RuleMemory, StatementContext};
use crate::migration::TransactionMode;
use crate::splitter::TokenKind;

/// The `enum-value-same-transaction` rule: its documentation, examples and check.
/// `migrate explain enum-value-same-transaction` prints it.
pub static RULE: Rule = Rule {
    id: "enum-value-same-transaction",
    default_level: Level::Error,
    summary: "A value added to an enum cannot be used in the same transaction.",
    explanation: "Since PostgreSQL 12, `ALTER TYPE ... ADD VALUE` may run inside a transaction \
block, but the new value cannot be used until that transaction commits: a later statement of \
the same migration that uses it (a DEFAULT, an UPDATE, a CHECK) fails with \"unsafe use of new \
value\", and the deployment stops there. \
<https://www.postgresql.org/docs/current/sql-altertype.html#SQL-ALTERTYPE-NOTES>",
    rewrite: "Add the value in one migration (`ALTER TYPE t ADD VALUE IF NOT EXISTS 'v';`) and use \
it in a later one, or add `-- migrate:no-transaction` so the ALTER TYPE commits first.",
    bad: &[Example {
        file_name: "0004_shipped.expand.sql",
        sql: "ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'shipped' AFTER 'paid';\n\
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'shipped';",
    }],
    good: &[
        Example {
            file_name: "0004_shipped.expand.sql",
            sql: "ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'shipped' AFTER 'paid';\n\
COMMENT ON TYPE order_status IS 'lifecycle of an order';",
        },
        Example {
            file_name: "0005_shipped_default.expand.sql",
            sql: "-- migrate:no-transaction\n\
ALTER TYPE order_status ADD VALUE IF NOT EXISTS 'shipped' AFTER 'paid';\n\
ALTER TABLE orders ALTER COLUMN status SET DEFAULT 'shipped';",
        },
    ],
    check: Check::WithPartMemory(EnumValuesAdded::start),
};

/// The value an `ALTER TYPE ... ADD VALUE [IF NOT EXISTS] 'v'` adds, unquoted.
fn added_enum_value(context: &StatementContext<'_>) -> Option<String> {
    let words = &context.words;
    if !(words.starts_with(&["ALTER", "TYPE"]) && words.contains_pair("ADD", "VALUE")) {
        return None;
    }
    let token = words.iter().find(|t| t.kind == TokenKind::String)?;
    string_value(token.text(words.source()))
}

/// `'it''s'` → `it's`; other string forms (E'', $$) are not enum labels in practice.
fn string_value(literal: &str) -> Option<String> {
    let inner = literal.strip_prefix('\'')?.strip_suffix('\'')?;
    Some(inner.replace("''", "'"))
}

/// Enum values added (`ALTER TYPE ... ADD VALUE`) by earlier statements of this part, with
/// their line, when the part runs in one transaction.
#[derive(Default)]
struct EnumValuesAdded {
    values: Vec<(String, u32)>,
}

impl EnumValuesAdded {
    fn start() -> Box<dyn RuleMemory> {
        Box::<EnumValuesAdded>::default()
    }
}

impl RuleMemory for EnumValuesAdded {
    fn start_part(&mut self) {
        self.values.clear();
    }

    fn check(&self, context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
        if self.values.is_empty() || added_enum_value(context).is_some() {
            return;
        }
        let words = &context.words;
        for token in words.iter().filter(|t| t.kind == TokenKind::String) {
            let Some(value) = string_value(token.text(words.source())) else {
                continue;
            };
            if let Some((_, line)) = self.values.iter().find(|(added, _)| *added == value) {
                findings.push(Finding::new(format!(
                    "uses the enum value '{value}' added at line {line} in the same transaction: PostgreSQL refuses it until that transaction commits"
                )));
                return;
            }
        }
    }

    fn record(&mut self, context: &StatementContext<'_>) {
        if context.mode == TransactionMode::Transactional
            && let Some(value) = added_enum_value(context)
        {
            self.values.push((value, context.line));
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
