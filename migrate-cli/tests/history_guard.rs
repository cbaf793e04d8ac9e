//! The history-table guard: every command that reads or writes the runtime's tables refuses a
//! history table that is probably a typo (history kept elsewhere) or another tool's, before it
//! creates or reads anything named after it.

mod common;

use common::*;

/// Every database command line, with what it needs to get past its own checks.
const COMMANDS: &[&[&str]] = &[
    &["status"],
    &["plan"],
    &["up"],
    &["up", "--dry-run"],
    &["up", "--to", "1"],
    &["down", "--to", "0"],
    &["down", "--to", "0", "--dry-run"],
    &["repair"],
    &["backfill"],
    &["backfill", "pause"],
    &["backfill", "resume"],
    &["verify"],
    &["verify", "--version", "4"],
    &["verify", "--compare"],
    &["reconcile"],
    &["flag", "set", "new_checkout", "on"],
    &["flag", "get", "new_checkout"],
    &["flag", "list"],
    &["baseline", "--version", "1", "--trust"],
    &["import", "--from", "sqlx"],
];

fn state_tables_named(database: &migrate_scratch::ScratchDatabase, like: &str) -> String {
    sql(
        database,
        &format!(
            "SELECT coalesce(string_agg(n.nspname || '.' || c.relname, ',' ORDER BY 1), '') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE c.relkind IN ('r', 'p') AND c.relname LIKE '{like}'"
        ),
    )
}

#[test]
fn every_database_command_refuses_a_history_table_that_is_probably_a_typo() {
    let database = database();
    let dir = example_migrations();
    let applied = migrate_on(&database, &dir)
        .args(["up", "--to", "3", "--history-table", "ops.hist"])
        .output()
        .unwrap();
    assert!(applied.status.success(), "{}", stderr(&applied));
    let flag = migrate_on(&database, &dir)
        .args([
            "flag",
            "set",
            "new_checkout",
            "off",
            "--history-table",
            "ops.hist",
        ])
        .output()
        .unwrap();
    assert!(flag.status.success(), "{}", stderr(&flag));
    let before = state_tables_named(&database, "hist%");

    for line in COMMANDS {
        let output = migrate_on(&database, &dir).args(*line).output().unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(4), "{line:?}: {text}");
        assert!(
            text.contains("\"public\".\"schema_migrations\" does not exist, but ops.hist is a history table of ours"),
            "{line:?}: {text}"
        );
        assert_eq!(
            state_tables_named(&database, "schema_migrations%"),
            "",
            "{line:?} created a state table under the default name"
        );
    }
    // Nothing changed under the real name either.
    assert_eq!(state_tables_named(&database, "hist%"), before);
    assert_eq!(
        sql(
            &database,
            "SELECT enabled FROM ops.hist_flags WHERE name = 'new_checkout'"
        ),
        "f"
    );
    assert_eq!(sql(&database, "SELECT count(*) FROM ops.hist"), "3");
}

#[test]
fn golang_migrate_and_dbmate_tables_are_named_not_read_as_ours() {
    for (tool, create) in [
        (
            "golang-migrate",
            "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL); \
             INSERT INTO schema_migrations VALUES (3, false);",
        ),
        (
            "dbmate",
            "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY); \
             INSERT INTO schema_migrations VALUES ('1'), ('2');",
        ),
    ] {
        let database = database();
        sql(&database, create);
        let dir = example_migrations();
        for line in COMMANDS {
            let output = migrate_on(&database, &dir).args(*line).output().unwrap();
            let text = stderr(&output);
            assert_eq!(output.status.code(), Some(2), "{tool} {line:?}: {text}");
            assert!(
                text.contains("history table \"public\".\"schema_migrations\" is not ours")
                    && text.contains(&format!("migrate import --from {tool}")),
                "{tool} {line:?}: {text}"
            );
            assert!(!text.contains("does not exist"), "{tool} {line:?}: {text}");
        }
        // Nothing was created beside it, and its rows are untouched.
        assert_eq!(
            state_tables_named(&database, "schema_migrations%"),
            "public.schema_migrations"
        );
        // Imported under another name, the commands work.
        let import = migrate_on(&database, &dir)
            .args([
                "import",
                "--from",
                tool,
                "--history-table",
                "migrate_history",
            ])
            .output()
            .unwrap();
        assert!(import.status.success(), "{tool}: {}", stderr(&import));
        let status = migrate_on(&database, &dir)
            .args(["status", "--history-table", "migrate_history"])
            .output()
            .unwrap();
        assert!(status.status.success(), "{tool}: {}", stderr(&status));
    }
}
