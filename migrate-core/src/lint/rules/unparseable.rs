//! `unparseable`

use crate::classify::Fallback;
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};
use crate::sql::ActionKind;

/// The `unparseable` rule: its documentation, examples and check.
/// `migrate explain unparseable` prints it.
pub static RULE: Rule = Rule {
    id: "unparseable",
    default_level: Level::Error,
    summary: "A statement the linter cannot parse, or a DO block, needs an explicit allow.",
    explanation: "The safety rules can only judge what they can read. A statement that sqlparser \
cannot parse, and that is not one of the kinds recognised from its keywords (DROP INDEX, \
REINDEX, CLUSTER, CREATE INDEX ON ONLY, CREATE TABLE, CREATE STATISTICS, ALTER SEQUENCE, ALTER INDEX, \
COMMENT ON, VACUUM/ANALYZE options, publications, security labels, casts), would run unchecked. \
An ALTER TABLE sqlparser cannot parse whole is read one action at a time: the actions that parse \
are checked by every rule, and those recognised from their keywords (PostgreSQL 18's \
ADD CONSTRAINT ... NOT NULL, ALTER CONSTRAINT deferrability, column statistics, options, storage, \
compression and identity settings, CLUSTER ON) by the rules they concern; any other action is \
reported here, so one action is never hidden behind another. A DO block can run any DDL from inside a string, so it is never trusted. \
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
        Example {
            // The deferrability change is harmless; the action beside it is not read.
            file_name: "0006_hidden.expand.sql",
            sql: "ALTER TABLE users ALTER CONSTRAINT users_org_fk DEFERRABLE INITIALLY DEFERRED, SET ACCESS METHOD heap2;",
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
REINDEX INDEX CONCURRENTLY users_email_key;\n\
ALTER TABLE users ALTER CONSTRAINT users_org_fk INITIALLY DEFERRED, ALTER COLUMN email SET STATISTICS 1000;\n\
ALTER TABLE users ALTER CONSTRAINT users_org_fk NOT DEFERRABLE;",
        },
    ],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    // An ALTER TABLE read action by action: every action the keywords do not recognise is
    // reported, whatever the others are.
    if let Some(split) = context.split_alter {
        for action in &split.unparsed {
            if action.kind == ActionKind::Unknown {
                findings.push(
                    Finding::new(format!(
                        "the linter cannot read the action `{}` of this ALTER TABLE, so no safety rule checked it ({})",
                        action.text, action.parse_error
                    ))
                    .at(context.unparsed_action_position(action)),
                );
            }
        }
        return;
    }
    // Not parsed on purpose: its kind is known from its keywords (a view, whose query no
    // rule reads).
    if context.ast.is_some() || context.skipped.is_some() {
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
