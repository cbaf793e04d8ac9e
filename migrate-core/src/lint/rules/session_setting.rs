//! `session-setting`

use crate::classify::Words;
use crate::lint::{Check, Example, Finding, Level, Rule, StatementContext};
use crate::migration::TransactionMode;
use crate::splitter::TokenKind;

/// The `session-setting` rule: its documentation, examples and check.
/// `migrate explain session-setting` prints it.
pub static RULE: Rule = Rule {
    id: "session-setting",
    default_level: Level::Error,
    summary: "No session-level SET or RESET of a setting the runtime owns (timeouts, role, search_path, application_name).",
    explanation: "The runtime runs every migration under the bounds it was given: `lock_timeout` \
(how long the application may queue behind a lock the migration waits for), `statement_timeout`, \
the role it connected as, the `search_path` names resolve in, and an `application_name` that \
shows the session in `pg_stat_activity`. A plain `SET` (or `SET SESSION`, `RESET`, \
`set_config(..., false)`) changes them for the rest of the session: `SET lock_timeout = 0` \
makes the next ALTER TABLE wait behind a reader for as long as `statement_timeout` allows while \
every query of the application queues behind it, and the change outlives the file, into the \
next migrations of the same run and the caller's pooled connection. `SET LOCAL` inside the \
migration's transaction ends with it; in a `-- migrate:no-transaction` file each statement is \
its own transaction, so `SET LOCAL` does nothing there.",
    rewrite: "SET LOCAL <setting> = <value>;  -- inside the migration's transaction, it ends with it\n\
-- or the runner's option: --lock-timeout, --statement-timeout; connect as the right role;\n\
-- schema-qualify names instead of changing search_path",
    bad: &[
        Example {
            file_name: "0004_no_timeout.expand.sql",
            sql: "SET lock_timeout = 0;\nALTER TABLE users ADD COLUMN IF NOT EXISTS nickname text;",
        },
        Example {
            file_name: "0005_session.expand.sql",
            sql: "SET SESSION statement_timeout TO '1h';\nRESET ROLE;\nSET search_path TO app, public;\nRESET application_name;\nSELECT set_config('lock_timeout', '0', false);",
        },
        Example {
            file_name: "0006_autocommit.expand.sql",
            sql: "-- migrate:no-transaction\nSET LOCAL lock_timeout = '10s';\nCREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);",
        },
    ],
    good: &[Example {
        file_name: "0004_nickname.expand.sql",
        sql: "SET LOCAL lock_timeout = '1s';\nSET LOCAL search_path TO app, public;\nSELECT set_config('statement_timeout', '5min', true);\nSET LOCAL maintenance_work_mem = '256MB';\nALTER TABLE users ADD COLUMN IF NOT EXISTS nickname text;",
    }],
    check: Check::Statement(check),
};

/// The settings the runtime sets or relies on, as `SET` names them (lower case).
const OWNED_SETTINGS: &[&str] = &[
    "lock_timeout",
    "statement_timeout",
    "idle_in_transaction_session_timeout",
    "transaction_timeout",
    "role",
    "session_authorization",
    "search_path",
    "application_name",
];

/// What `RESET ALL` changes.
const EVERY_SETTING: &str =
    "every setting (lock_timeout, statement_timeout, role, search_path ... included)";

/// How a statement changes a setting.
#[derive(Debug, PartialEq, Eq)]
enum Change {
    /// `SET`, `SET SESSION`, `RESET`, `set_config(..., false)`: until the session ends.
    Session { setting: String, verb: &'static str },
    /// `SET LOCAL`, `set_config(..., true)`: until the transaction ends.
    Local { setting: String },
}

fn check(context: &StatementContext<'_>, findings: &mut Vec<Finding>) {
    for change in setting_changes(&context.words) {
        match change {
            Change::Session { setting, verb } => {
                findings.push(
                    Finding::new(format!(
                        "{verb} changes {setting} for the rest of the session, which the runtime owns: the change escapes this migration's bounds and outlives it, into the next migrations and the caller's connection"
                    ))
                    .help(rewrite(&setting, context.mode)),
                );
            }
            Change::Local { setting } if context.mode == TransactionMode::Autocommit => {
                findings.push(
                    Finding::new(format!(
                        "SET LOCAL of {setting} does nothing here: this part runs without a transaction, each statement on its own"
                    ))
                    .help(rewrite(&setting, context.mode)),
                );
            }
            Change::Local { .. } => {}
        }
    }
}

/// The safe way to get what a change of `setting` wanted.
fn rewrite(setting: &str, mode: TransactionMode) -> String {
    let runner = match setting {
        "lock_timeout" => "the runner's --lock-timeout (RuntimeConfig's lock_timeout)",
        "statement_timeout" => {
            "the runner's --statement-timeout (RuntimeConfig's statement_timeout)"
        }
        "role" | "session_authorization" => {
            "connect as the role that should own the objects, or ALTER ... OWNER TO it"
        }
        "search_path" => "schema-qualified names (app.orders)",
        "application_name" => "RuntimeConfig's application_name",
        _ => "the runner's configuration",
    };
    let local = match setting {
        "role" => "SET LOCAL ROLE <role>".to_owned(),
        "session_authorization" => "SET LOCAL SESSION AUTHORIZATION <role>".to_owned(),
        EVERY_SETTING => "SET LOCAL <setting> = <value>".to_owned(),
        _ => format!("SET LOCAL {setting} = <value>"),
    };
    match mode {
        TransactionMode::Transactional => {
            format!("{local}; (inside this migration's transaction, it ends with it), or {runner}")
        }
        TransactionMode::Autocommit => format!(
            "{runner}; or move the statements that need it to a file that runs in a transaction and use {local} there"
        ),
    }
}

/// The owned settings a statement changes, and how.
fn setting_changes(words: &Words<'_>) -> Vec<Change> {
    let keyword = |index: usize| words.keyword(index).unwrap_or_default();
    let mut changes = Vec::new();
    match keyword(0).as_str() {
        "SET" => {
            let (local, at) = match keyword(1).as_str() {
                "LOCAL" => (true, 2),
                "SESSION" if keyword(2) != "AUTHORIZATION" => (false, 2),
                _ => (false, 1),
            };
            if let Some(setting) = setting_at(words, at) {
                let verb = if local { "" } else { "SET" };
                changes.push(change(setting, local, verb));
            }
        }
        "RESET" => {
            if keyword(1) == "ALL" {
                changes.push(change(EVERY_SETTING.to_owned(), false, "RESET ALL"));
            } else if let Some(setting) = setting_at(words, 1) {
                changes.push(change(setting, false, "RESET"));
            }
        }
        _ => {}
    }
    changes.extend(set_config_calls(words));
    changes.retain(|change| {
        let (Change::Session { setting, .. } | Change::Local { setting }) = change;
        setting == EVERY_SETTING || OWNED_SETTINGS.contains(&setting.as_str())
    });
    changes
}

fn change(setting: String, local: bool, verb: &'static str) -> Change {
    if local {
        Change::Local { setting }
    } else {
        Change::Session { setting, verb }
    }
}

/// The setting `SET`/`RESET` names at word `at`: `ROLE`, `SESSION AUTHORIZATION`, `SCHEMA`
/// (`search_path`), or a parameter name (case-insensitive, possibly quoted).
fn setting_at(words: &Words<'_>, at: usize) -> Option<String> {
    let keyword = words.keyword(at);
    match keyword.as_deref() {
        Some("ROLE") => Some("role".to_owned()),
        Some("SESSION") if words.keyword(at + 1).as_deref() == Some("AUTHORIZATION") => {
            Some("session_authorization".to_owned())
        }
        Some("SCHEMA") => Some("search_path".to_owned()),
        Some(word) => Some(word.to_ascii_lowercase()),
        // `SET "lock_timeout" = 0`: a quoted name is the parameter, PostgreSQL matches it
        // without regard to case.
        None => {
            let text = words.text(at)?;
            let name = text.strip_prefix('"')?.strip_suffix('"')?;
            Some(name.to_ascii_lowercase())
        }
    }
}

/// `set_config('<setting>', <value>, <is_local>)` calls anywhere in the statement, with a
/// literal setting name and a literal `true`/`false`.
fn set_config_calls(words: &Words<'_>) -> Vec<Change> {
    let source = words.source();
    let tokens: Vec<_> = words.iter().collect();
    let mut changes = Vec::new();
    for (index, token) in tokens.iter().enumerate() {
        if !token.is_word(source, "set_config")
            || tokens.get(index + 1).map(|t| t.text(source)) != Some("(")
        {
            continue;
        }
        let Some(name) = tokens
            .get(index + 2)
            .filter(|t| t.kind == TokenKind::String)
            .and_then(|t| t.text(source).strip_prefix('\''))
            .and_then(|t| t.strip_suffix('\''))
        else {
            continue;
        };
        // The last argument: the word before the call's closing parenthesis.
        let mut depth = 0;
        let mut last_word = None;
        for inner in &tokens[index + 1..] {
            match (inner.kind, inner.text(source)) {
                (TokenKind::Punct, "(") => depth += 1,
                (TokenKind::Punct, ")") => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                (TokenKind::Punct, ",") if depth == 1 => last_word = None,
                (TokenKind::Word, word) if depth == 1 => last_word = Some(word),
                _ => {}
            }
        }
        let local = match last_word.map(str::to_ascii_lowercase).as_deref() {
            Some("true") => true,
            Some("false") => false,
            _ => continue,
        };
        changes.push(change(
            name.to_ascii_lowercase(),
            local,
            "set_config(..., false)",
        ));
    }
    changes
}

#[cfg(test)]
mod tests {
    use crate::lint::testing::lint_example;

    #[test]
    fn examples() {
        crate::lint::testing::check_examples(&super::RULE);
    }

    /// Every way of changing an owned setting for the session is one finding on its line;
    /// transaction-scoped ones and settings the runtime does not own are fine.
    #[test]
    fn every_session_change_of_an_owned_setting_is_found() {
        let flagged = [
            "SET lock_timeout = 0",
            "set Lock_Timeout to 0",
            "SET \"lock_timeout\" = 0",
            "SET SESSION statement_timeout = 0",
            "SET idle_in_transaction_session_timeout = 0",
            "SET ROLE admin",
            "SET SESSION ROLE admin",
            "SET SESSION AUTHORIZATION admin",
            "RESET ROLE",
            "RESET SESSION AUTHORIZATION",
            "RESET ALL",
            "RESET lock_timeout",
            "SET search_path TO lab, public",
            "SET SCHEMA 'lab'",
            "SET application_name = 'x'",
            "SELECT set_config('search_path', 'lab', false)",
            "SELECT pg_catalog.set_config('lock_timeout', '0', FALSE)",
        ];
        for statement in flagged {
            let sql = format!("SELECT 1;\n{statement};");
            let found = lint_example("0004_a.expand.sql", &sql);
            // (`SET SCHEMA` is also beyond sqlparser: `unparseable` may report it as well.)
            let lines: Vec<(u32, &str)> = found
                .iter()
                .filter(|d| d.code == "session-setting")
                .map(|d| (d.line, d.code))
                .collect();
            assert_eq!(lines, [(2, "session-setting")], "{statement}: {found:?}");
        }
        let accepted = [
            "SET LOCAL lock_timeout = 0",
            "SET LOCAL ROLE admin",
            "SET LOCAL search_path TO lab",
            "SELECT set_config('search_path', 'lab', true)",
            "SET TIME ZONE 'UTC'",
            "SET maintenance_work_mem = '1GB'",
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            "SET CONSTRAINTS ALL DEFERRED",
            "SELECT set_config('myapp.flag', 'on', false)",
        ];
        for statement in accepted {
            let sql = format!("{statement};\nSELECT 1;");
            let found = lint_example("0004_a.expand.sql", &sql);
            assert!(
                found.iter().all(|d| d.code != "session-setting"),
                "{statement}: {found:?}"
            );
        }
        // Without a transaction SET LOCAL is a no-op, which is reported too.
        let found = lint_example(
            "0004_a.expand.sql",
            "-- migrate:no-transaction\nSET LOCAL statement_timeout = '1h';\nSELECT 1;",
        );
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].message.contains("does nothing"), "{found:?}");
    }
}
