//! `unparseable`

use crate::classify::Fallback;
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `unparseable` rule: its documentation, examples and check.
/// `migrate explain unparseable` prints it.
pub static RULE: Rule = Rule {
    id: "unparseable",
    default_level: Level::Error,
    summary: "A statement the linter cannot parse, or a DO block, needs an explicit allow.",
    explanation: "The safety rules can only judge what they can read. A statement that sqlparser \
cannot parse, and that is not one of the kinds recognised from its keywords (DROP INDEX, \
REINDEX, CLUSTER, CREATE INDEX ON ONLY, CREATE TABLE, CREATE STATISTICS, ALTER SEQUENCE, ALTER INDEX, \
COMMENT ON, VACUUM/ANALYZE options, column statistics and options, constraint deferrability), \
would run unchecked. A DO block can run any DDL from inside a string, so it is never trusted. \
Allow the statement with a reason after reviewing it by hand; it then runs verbatim.",
    rewrite: "-- migrate:allow unparseable <what you checked by hand>\n<the statement>",
    bad: &[
        Example {
            file_name: "0004_do.expand.sql",
            sql: "DO $$ BEGIN EXECUTE 'ALTER TABLE users ADD COLUMN x int'; END $$;",
        },
        Example {
            file_name: "0005_weird.expand.sql",
            sql: "ALTER TABLE users FROBNICATE COLUMN email;",
        },
    ],
    good: &[
        Example {
            file_name: "0004_do.expand.sql",
            sql: "-- migrate:allow unparseable only grants read access, reviewed by the DBA\n\
DO $$ BEGIN EXECUTE 'GRANT SELECT ON users TO reporting'; END $$;",
        },
        Example {
            file_name: "0005_known.expand.sql",
            sql: "ALTER SEQUENCE IF EXISTS invoice_numbers INCREMENT BY 10;\n\
ALTER TABLE users ALTER COLUMN email SET STATISTICS 500;\n\
COMMENT ON COLUMN users.email IS $$The user's login$$;\n\
CREATE STATISTICS IF NOT EXISTS users_city_zip (dependencies) ON city, zip FROM users;\n\
REINDEX INDEX CONCURRENTLY users_email_key;",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    if context.ast.is_some() {
        return;
    }
    match context.fallback {
        Some(Fallback::DoBlock) => findings.push(Finding::new(
            "a DO block can run any DDL from inside a string: its body is not linted",
        )),
        Some(_) => {}
        None => findings.push(Finding::new(format!(
            "the linter cannot parse this statement, so no safety rule checked it ({})",
            context.parse_error.unwrap_or("unknown error")
        ))),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }
}
