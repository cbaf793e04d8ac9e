//! `destructive-cascade`

use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

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
    ],
    good: &[Example {
        file_name: "0009_cleanup.contract.sql",
        sql: "-- migrate:requires 8\nDROP VIEW IF EXISTS users_legacy_view;\n\
ALTER TABLE users DROP COLUMN IF EXISTS legacy_email;\n\
-- 'CASCADE' in a string or a comment is not a keyword\n\
COMMENT ON TABLE users IS 'no CASCADE here';",
    }],
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
        && words.find_top_level("CASCADE").is_some()
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

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
