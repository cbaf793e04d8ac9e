//! `identifier-too-long`

use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};
use crate::splitter::TokenKind;

/// PostgreSQL's NAMEDATALEN - 1.
/// <https://www.postgresql.org/docs/current/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS>
const MAX_IDENTIFIER_BYTES: usize = 63;

/// The `identifier-too-long` rule: its documentation, examples and check.
/// `migrate explain identifier-too-long` prints it.
pub static RULE: Rule = Rule {
    id: "identifier-too-long",
    default_level: Level::Error,
    summary: "Identifiers longer than 63 bytes are silently truncated by PostgreSQL.",
    explanation: "PostgreSQL truncates every identifier to 63 bytes (NAMEDATALEN - 1) with only a \
NOTICE. Two long names that share their first 63 bytes become the same object, so \
`CREATE INDEX IF NOT EXISTS` or `ADD COLUMN IF NOT EXISTS` with the second name silently does \
nothing, and a later `DROP ... IF EXISTS` of the long name drops the other one. Tools that \
compare names (ORMs, this runtime's INVALID-index recovery) see a different name than the \
catalog holds.",
    rewrite: "Shorten the name to at most 63 bytes (e.g. abbreviate the table part of an index name).",
    bad: &[Example {
        file_name: "0003_long_index.expand.sql",
        sql: "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_customer_subscription_invoices_on_billing_period_start_and_status ON customer_subscription_invoices (billing_period_start, status);",
    }],
    good: &[Example {
        file_name: "0003_short_index.expand.sql",
        sql: "CREATE INDEX CONCURRENTLY IF NOT EXISTS idx_csi_billing_period_start_status ON customer_subscription_invoices (billing_period_start, status);\n\
COMMENT ON INDEX idx_csi_billing_period_start_status IS 'a comment may be as long as it likes: the 63-byte limit applies to names, not to strings like this one';",
    }],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    for token in context.words.iter() {
        let name = match token.kind {
            TokenKind::Word => token.text(context.words.source()),
            TokenKind::QuotedIdent => {
                let text = token.text(context.words.source());
                text.get(1..text.len().saturating_sub(1)).unwrap_or(text)
            }
            _ => continue,
        };
        if name.len() > MAX_IDENTIFIER_BYTES {
            let mut cut = MAX_IDENTIFIER_BYTES;
            while !name.is_char_boundary(cut) {
                cut -= 1;
            }
            findings.push(Finding::new(format!(
                "`{name}` is {} bytes: PostgreSQL silently truncates it to `{}`",
                name.len(),
                &name[..cut]
            )));
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
