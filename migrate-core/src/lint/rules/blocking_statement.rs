//! `blocking-statement`

use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};

/// The `blocking-statement` rule: its documentation, examples and check.
/// `migrate explain blocking-statement` prints it.
pub static RULE: Rule = Rule {
    id: "blocking-statement",
    default_level: Level::Error,
    summary: "No LOCK TABLE, VACUUM FULL or CLUSTER in a migration.",
    explanation: "LOCK TABLE holds its lock until the migration's transaction ends, and in \
ACCESS EXCLUSIVE mode (the default) stops every query on the table. VACUUM FULL and CLUSTER \
rewrite the whole table under an ACCESS EXCLUSIVE lock. None of them belongs in a deployment \
path: run maintenance out of band, or use pg_repack, which rewrites without the long lock.",
    rewrite: "Remove the statement; run VACUUM (without FULL) or pg_repack out of band.",
    bad: &[
        Example {
            file_name: "0004_lock.expand.sql",
            sql: "LOCK TABLE orders IN ACCESS EXCLUSIVE MODE;",
        },
        Example {
            file_name: "0005_vacuum.expand.sql",
            sql: "VACUUM FULL orders;",
        },
        Example {
            file_name: "0006_vacuum.expand.sql",
            sql: "VACUUM (FULL, ANALYZE) orders;",
        },
        Example {
            file_name: "0007_cluster.expand.sql",
            sql: "CLUSTER orders USING orders_pkey;",
        },
    ],
    good: &[Example {
        file_name: "0005_analyze.expand.sql",
        sql: "VACUUM (ANALYZE) orders;\nANALYZE orders;",
    }],
    check: Check::Statement(check),
};

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    let words = &context.words;
    let problem = if words.starts_with(&["LOCK"]) {
        "LOCK TABLE holds its lock until the migration ends and blocks the application's queries on the table"
    } else if words.starts_with(&["VACUUM"]) && words.contains("FULL") {
        "VACUUM FULL rewrites the whole table under an ACCESS EXCLUSIVE lock"
    } else if words.starts_with(&["CLUSTER"]) {
        "CLUSTER rewrites the whole table under an ACCESS EXCLUSIVE lock"
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
