//! `destructive-cascade`

use crate::classify::Words;
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};
use crate::splitter::TokenKind;

/// The `destructive-cascade` rule: its documentation, examples and check.
/// `migrate explain destructive-cascade` prints it.
pub static RULE: Rule = Rule {
    id: "destructive-cascade",
    default_level: Level::Error,
    summary: "No DROP ... CASCADE, TRUNCATE ... CASCADE, DROP SCHEMA or DROP DATABASE, in any phase.",
    explanation: "CASCADE removes every object that depends on the one named — views, foreign \
keys, and with TRUNCATE the rows of every referencing table — none of which the migration names, \
so no review sees them go and the running release loses objects it uses. DROP SCHEMA removes \
everything in the schema at once, DROP DATABASE everything; neither belongs in a deployment path. \
Even contract migrations should name each object they remove.",
    rewrite: "Drop the dependent objects explicitly, each with IF EXISTS, then the object itself \
without CASCADE (PostgreSQL then refuses if something still depends on it).",
    bad: &[
        Example {
            file_name: "0009_cleanup.contract.sql",
            sql: "-- migrate:requires 8\nALTER TABLE users DROP COLUMN IF EXISTS legacy_email CASCADE;",
        },
        Example {
            file_name: "0010_purge.contract.sql",
            sql: "-- migrate:requires 8\nTRUNCATE audit_log CASCADE;",
        },
        Example {
            file_name: "0011_schema.contract.sql",
            sql: "-- migrate:requires 8\nDROP SCHEMA IF EXISTS reporting;",
        },
        Example {
            // The referential action is harmless; the drop behaviour after it is not.
            file_name: "0012_comments.contract.sql",
            sql: "-- migrate:requires 8\n\
ALTER TABLE comments ADD COLUMN IF NOT EXISTS post_id bigint REFERENCES posts (id) ON DELETE CASCADE, \
DROP COLUMN IF EXISTS legacy_post_id CASCADE;",
        },
    ],
    good: &[
        Example {
            file_name: "0009_cleanup.contract.sql",
            sql: "-- migrate:requires 8\nDROP VIEW IF EXISTS users_legacy_view;\n\
ALTER TABLE users DROP COLUMN IF EXISTS legacy_email;\n\
-- 'CASCADE' in a string or a comment is not a keyword\n\
COMMENT ON TABLE users IS 'no CASCADE here';",
        },
        Example {
            // Referential actions remove nothing when the statement runs: they say what a later
            // DELETE of the referenced row does.
            file_name: "0002_comments.expand.sql",
            sql: "ALTER TABLE comments ADD COLUMN IF NOT EXISTS post_id bigint REFERENCES posts (id) ON DELETE CASCADE ON UPDATE CASCADE;",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let words = &context.words;
    let problem = if words.starts_with(&["DROP", "DATABASE"]) {
        "DROP DATABASE removes every object and row of the database".to_owned()
    } else if words.starts_with(&["DROP", "SCHEMA"]) {
        "DROP SCHEMA removes a whole namespace: with CASCADE every object in it, unnamed and unreviewed".to_owned()
    } else if (words.starts_with(&["DROP"])
        || words.starts_with(&["TRUNCATE"])
        || words.starts_with(&["ALTER"]))
        && drops_dependents(words)
    {
        format!(
            "{} ... CASCADE also removes every dependent object (views, foreign keys, referencing rows) without naming them",
            words.keyword(0).unwrap_or_default()
        )
    } else {
        return;
    };
    findings.push(Finding::new(problem));
}

/// True when a top-level `CASCADE` is the drop behaviour (`DROP ... CASCADE`, `TRUNCATE ...
/// CASCADE`), not a foreign key's referential action (`ON DELETE CASCADE`, `ON UPDATE
/// CASCADE`), which removes nothing when the statement runs.
fn drops_dependents(words: &Words<'_>) -> bool {
    let mut depth = 0i32;
    let mut previous: Option<&str> = None;
    for token in words.iter() {
        let text = token.text(words.source());
        match text {
            "(" if token.kind == TokenKind::Punct => depth += 1,
            ")" if token.kind == TokenKind::Punct => depth -= 1,
            _ if depth == 0 && token.is_word(words.source(), "CASCADE") => {
                let referential = previous.is_some_and(|word| {
                    word.eq_ignore_ascii_case("DELETE") || word.eq_ignore_ascii_case("UPDATE")
                });
                if !referential {
                    return true;
                }
            }
            _ => {}
        }
        previous = Some(text);
    }
    false
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
