//! `migrate check`: the example set passes; a broken down part is named.

mod common;

use common::*;
use predicates::prelude::*;

#[test]
fn the_example_set_passes() {
    migrate()
        .args(["check", "migrations"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "ok  0007_email_normalized_required.contract.sql: down restores the schema",
        ))
        .stdout(predicate::str::contains("check passed: 7 migration(s)"));
}

#[test]
fn a_down_part_that_leaves_a_column_is_named() {
    let copy = copy_of_examples();
    let file = copy.path().join("0003_email_normalized.expand.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    let broken = text.replace(
        "ALTER TABLE users DROP COLUMN IF EXISTS email_verified_at;\n",
        "",
    );
    assert_ne!(text, broken);
    std::fs::write(&file, broken).unwrap();

    let output = migrate()
        .args(["--format", "json", "check"])
        .arg(copy.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["ok"], false);
    let downs: Vec<(u64, String)> = report["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_u64().unwrap(),
                m["down"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    // Only 0003 is blamed: the walk continues from a fresh database after it.
    for (version, down) in &downs {
        let expected = if *version == 3 { "differs" } else { "restores" };
        assert_eq!(down, expected, "{downs:?}");
    }
    let diff: Vec<String> = report["migrations"][2]["diff"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap().to_owned())
        .collect();
    assert!(
        diff.iter()
            .any(|l| l.starts_with('+') && l.contains("email_verified_at")),
        "{diff:?}"
    );

    migrate()
        .arg("check")
        .arg(copy.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "FAIL  0003_email_normalized.expand.sql: down does not restore the schema",
        ))
        .stderr(predicate::str::contains(
            "the down part of 0003_email_normalized.expand.sql does not restore the schema",
        ));
}

#[test]
fn a_failing_down_part_is_named() {
    let copy = copy_of_examples();
    let file = copy.path().join("0005_email_normalized_check.expand.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(
        &file,
        text.replace(
            "ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_known;",
            "ALTER TABLE orders DROP CONSTRAINT IF EXISTS orders_status_known;\nALTER TABLE no_such_table DROP CONSTRAINT IF EXISTS x;",
        ),
    )
    .unwrap();
    migrate()
        .arg("check")
        .arg(copy.path())
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "FAIL  0005_email_normalized_check.expand.sql: down failed",
        ))
        .stdout(predicate::str::contains("no_such_table"));
}

#[test]
fn check_lints_first() {
    migrate()
        .arg("check")
        .arg(workspace().join("tests/ui/files/every_violation"))
        .assert()
        .code(3)
        .stderr(predicate::str::contains("error[unbounded-update]"));
}

#[test]
fn check_reports_what_postgresql_did_beside_the_plan() {
    let output = migrate()
        .args(["--format", "json", "check", "migrations"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["disagreements"], 0);
    // 0003 builds a unique index CONCURRENTLY (autocommit): seen while it waited.
    let statements = report["migrations"][2]["observed"]["statements"]
        .as_array()
        .unwrap();
    let build = statements
        .iter()
        .find(|s| {
            s["sql"]
                .as_str()
                .unwrap()
                .starts_with("CREATE UNIQUE INDEX CONCURRENTLY")
        })
        .expect("the concurrent build");
    assert_eq!(build["observed_by"], "while_waiting");
    assert_eq!(build["locks"][0]["relation"], "public.users");
    assert_eq!(build["locks"][0]["mode"], "SHARE_UPDATE_EXCLUSIVE");
    assert_eq!(build["scanned"][0], "public.users");
    assert_eq!(build["work"], "scan");
    // 0003's ADD COLUMN in its transaction: ACCESS EXCLUSIVE, no rewrite.
    let add = &statements[0];
    assert_eq!(add["observed_by"], "in_transaction");
    assert_eq!(add["locks"][0]["mode"], "ACCESS_EXCLUSIVE");
    assert_eq!(add["rewritten"].as_array().unwrap().len(), 0);
    // Every migration was observed.
    assert!(
        report["migrations"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["observed"]["error"].is_null() && m["observed"]["statements"].is_array())
    );

    migrate()
        .args(["check", "migrations"])
        .assert()
        .success()
        .stdout(predicate::str::contains("what PostgreSQL did"))
        .stdout(predicate::str::contains(
            "SHARE UPDATE EXCLUSIVE public.users; scan",
        ))
        .stdout(predicate::str::contains("DISAGREES").not());
}

/// The major `check` ran on, read from the scratch server the way the test harness starts it.
fn scratch_major() -> u64 {
    let number = cluster()
        .psql("postgres", "SHOW server_version_num")
        .expect("server_version_num");
    number.trim().parse::<u64>().expect("a number") / 10_000
}

#[test]
fn check_says_which_major_ran_and_that_a_syntax_error_may_need_a_newer_one() {
    let major = scratch_major();
    let output = migrate()
        .args(["--format", "json", "check", "migrations"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(json(&output)["postgres_major"], major);
    migrate()
        .args(["check", "migrations"])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!(
            "checked on PostgreSQL {major} (the scratch cluster's server)"
        )));

    // A statement sqlparser reads but this server refuses as a syntax error (42601): the
    // linter's own unparseable rule is off, as when a set targets a newer major.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("migrate.toml"),
        "[rules]\nunparseable = \"off\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0001_newer_syntax.expand.sql"),
        "CREATE TABLE IF NOT EXISTS gadgets (id bigint PRIMARY KEY) WITH SOME FUTURE SYNTAX;\n",
    )
    .unwrap();
    let output = migrate().arg("check").arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains(&format!(
            "0001_newer_syntax.expand.sql on the scratch database, PostgreSQL {major} (a syntax error on PostgreSQL {major}, the major check ran: the statement may need a newer major"
        )) && text.contains("SQLSTATE 42601"),
        "{text}"
    );

    // Any other error names the major, without the hint.
    std::fs::write(
        dir.path().join("0001_newer_syntax.expand.sql"),
        "CREATE TABLE IF NOT EXISTS gadgets (id bigint PRIMARY KEY REFERENCES nowhere (id));\n",
    )
    .unwrap();
    let output = migrate().arg("check").arg(dir.path()).output().unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains(&format!("on the scratch database, PostgreSQL {major}:"))
            && text.contains("SQLSTATE 42P01")
            && !text.contains("newer major"),
        "{text}"
    );
}
