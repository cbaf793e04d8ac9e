//! Commands that need no database: lint, explain, new, usage errors, and up/down refusing to
//! run without one.

mod common;

use common::*;
use predicates::prelude::*;

fn ui_case(case: &str) -> std::path::PathBuf {
    workspace().join("tests/ui/files").join(case)
}

#[test]
fn up_and_down_without_a_database_start_nothing() {
    for args in [
        &["up"][..],
        &["up", "--dry-run"],
        &["down", "--to", "0"],
        &["down", "--to", "0", "--dry-run"],
        &["status"],
        &["repair"],
        &["flag", "list"],
    ] {
        // A scratch cluster would create its folder under TMPDIR: it must stay empty.
        let tmp = tempfile::tempdir().unwrap();
        migrate()
            .env("TMPDIR", tmp.path())
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(
                "needs a database and none is configured",
            ))
            .stderr(predicate::str::contains("never used instead"));
        assert_eq!(
            std::fs::read_dir(tmp.path()).unwrap().count(),
            0,
            "{args:?}"
        );
    }
}

#[test]
fn lint_exit_codes_and_formats() {
    migrate()
        .args(["lint", "migrations"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "7 file(s), 0 error(s), 0 warning(s)",
        ));

    let dir = ui_case("every_violation");
    migrate()
        .current_dir(workspace().join("tests"))
        .args(["lint", "ui/files/every_violation"])
        .assert()
        .code(3)
        .stdout(predicate::str::contains(
            "ui/files/every_violation/0002_email.expand.sql:2:1: error[unbounded-update]: UPDATE without WHERE",
        ))
        .stdout(predicate::str::contains("  help: "));

    let json_output = migrate()
        .args(["--format", "json", "lint"])
        .arg(&dir)
        .output()
        .unwrap();
    assert_eq!(json_output.status.code(), Some(3));
    let report = json(&json_output);
    assert_eq!(report["errors"], 7);
    assert_eq!(report["warnings"], 0);
    let first = &report["diagnostics"][0];
    assert_eq!(first["code"], "require-if-not-exists");
    assert_eq!(first["severity"], "error");
    assert_eq!(first["line"], 1);
    assert!(first["help"].is_string());
    // How each statement was read: every one counted once, none hidden.
    let statements = &report["statements"];
    let counted: u64 = ["parsed", "skipped", "classified", "flagged"]
        .iter()
        .map(|key| statements[key].as_u64().unwrap())
        .sum();
    assert!(statements["parsed"].as_u64().unwrap() > 0, "{statements}");
    assert_eq!(
        statements["total"].as_u64().unwrap(),
        counted,
        "{statements}"
    );
    assert_eq!(statements["hidden"], serde_json::json!([]));

    migrate()
        .args(["--format", "github", "lint", "--dir"])
        .arg(&dir)
        .assert()
        .code(3)
        .stdout(predicate::str::is_match(
            r"(?m)^::error file=[^,]*/every_violation/0002_email\.expand\.sql,line=2,col=1,title=unbounded-update::UPDATE without WHERE.*%0Ahelp: ",
        ).unwrap());

    // Warn-level findings print but do not fail.
    migrate()
        .args(["--format", "github", "lint"])
        .arg(workspace().join("tests/ui/pass/warn_only"))
        .assert()
        .success()
        .stdout(predicate::str::starts_with("::warning file="));
    migrate()
        .args(["lint", "no/such/folder"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot read migration folder"));
}

#[test]
fn commands_refuse_a_folder_that_does_not_lint() {
    migrate()
        .args(["--dir"])
        .arg(ui_case("every_violation"))
        .args(["plan"])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("error[unbounded-update]"))
        .stderr(predicate::str::contains("7 error-level finding(s)"));
}

#[test]
fn explain_lists_explains_and_suggests() {
    migrate()
        .arg("explain")
        .assert()
        .success()
        .stdout(predicate::str::contains("require-concurrent-index"))
        .stdout(predicate::str::contains("volatile-default"));
    migrate()
        .args(["explain", "constraint-not-valid"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("constraint-not-valid\n"))
        .stdout(predicate::str::contains("Why: "))
        .stdout(predicate::str::contains("Flagged (0004_fk.expand.sql)"))
        .stdout(predicate::str::contains("VALIDATE CONSTRAINT"));
    migrate()
        .args(["explain", "require-concurent-index"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unknown rule `require-concurent-index`",
        ))
        .stderr(predicate::str::contains(
            "did you mean `require-concurrent-index`?",
        ));
    let output = migrate()
        .args(["--format", "json", "explain", "unbounded-update"])
        .output()
        .unwrap();
    let rule = json(&output);
    assert_eq!(rule["id"], "unbounded-update");
    assert!(!rule["bad"].as_array().unwrap().is_empty());
    let output = migrate()
        .args(["--format", "json", "explain", "nope"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(json(&output)["error"]["exit_code"], 2);
}

#[test]
fn new_writes_the_next_version_from_a_template() {
    let dir = tempfile::tempdir().unwrap();
    let new = |args: &[&str]| {
        let mut command = migrate();
        command.arg("--dir").arg(dir.path()).arg("new").args(args);
        command
    };
    new(&["create_users", "--phase", "expand"])
        .assert()
        .success()
        .stdout(predicate::str::ends_with("0001_create_users.expand.sql\n"));
    new(&["backfill_email", "--phase", "backfill"])
        .assert()
        .success();
    new(&["drop_old", "--phase", "contract"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--requires"));
    new(&["drop_old", "--phase", "contract", "--requires", "2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no expand migration with that version",
        ));
    new(&["drop_old", "--phase", "contract", "--requires", "1"])
        .assert()
        .success();
    for bad in ["Add-Email", "drop table", ""] {
        new(&[bad, "--phase", "expand"]).assert().code(2);
    }
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "0001_create_users.expand.sql",
            "0002_backfill_email.backfill.sql",
            "0003_drop_old.contract.sql"
        ]
    );
    let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
    let expand = read("0001_create_users.expand.sql");
    assert!(expand.contains("-- migrate:up") && expand.contains("-- migrate:down"));
    assert!(read("0002_backfill_email.backfill.sql").contains("-- migrate:backfill table="));
    assert!(read("0003_drop_old.contract.sql").contains("-- migrate:requires 1\n"));

    // The padding of existing files is kept, and versions are compared as numbers.
    let wide = tempfile::tempdir().unwrap();
    std::fs::write(wide.path().join("000009_a.sql"), "SELECT 1;\n").unwrap();
    std::fs::write(wide.path().join("000010_b.sql"), "SELECT 1;\n").unwrap();
    migrate()
        .arg("--dir")
        .arg(wide.path())
        .args(["--format", "json", "new", "c", "--phase", "expand"])
        .assert()
        .success();
    assert!(wide.path().join("000011_c.expand.sql").is_file());
    let timestamps = tempfile::tempdir().unwrap();
    std::fs::write(
        timestamps.path().join("20260101120000_a.sql"),
        "SELECT 1;\n",
    )
    .unwrap();
    migrate()
        .arg("--dir")
        .arg(timestamps.path())
        .args(["new", "b", "--phase", "expand"])
        .assert()
        .success();
    assert!(
        timestamps
            .path()
            .join("20260101120001_b.expand.sql")
            .is_file()
    );
}

#[test]
fn usage_errors_exit_2() {
    migrate()
        .args(["status", "--format", "github"])
        .assert()
        .code(2);
    migrate()
        .args(["--lock-timeout", "5 parsecs", "status"])
        .assert()
        .code(2);
    migrate()
        .args(["up", "--to", "not-a-number"])
        .assert()
        .code(2);
    migrate().arg("frobnicate").assert().code(2);
    migrate()
        .args(["--history-table", "a.b.c", "plan"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid history table name"));
}

#[test]
fn every_command_has_help_that_explains_its_safety() {
    migrate()
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("Exit codes:"))
        .stdout(predicate::str::contains("DATABASE_URL"));
    for (command, expected) in [
        ("status", "Read only"),
        ("up", "Safety"),
        ("down", "Safety"),
        ("plan", "lock"),
        ("lint", "Exits 3"),
        ("explain", "safe rewrite"),
        ("new", "Never overwrites"),
        ("repair", "Safety"),
        ("check", "scratch"),
        ("flag", "dual-write"),
        ("squash", "nothing is written"),
    ] {
        migrate()
            .args([command, "--help"])
            .assert()
            .success()
            .stdout(predicate::str::contains(expected));
    }
}

#[test]
fn offline_plan_shows_every_migration() {
    let output = migrate()
        .args(["--format", "json", "plan"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = json(&output);
    assert_eq!(plan["database"], false);
    assert_eq!(plan["pending"].as_array().unwrap().len(), 7);
    // 0001 indexes the table it creates in the same transaction: that blocks nobody.
    let index = &plan["pending"][0]["statements"][2];
    assert!(
        index["sql"]
            .as_str()
            .unwrap()
            .starts_with("CREATE UNIQUE INDEX")
    );
    assert_eq!(index["locks"][0]["mode"], "SHARE");
    assert_eq!(index["work"], "none");
    assert!(
        index["note"]
            .as_str()
            .unwrap()
            .contains("created earlier in this migration")
    );
    let blocking: Vec<u64> = plan["pending"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| {
            m["statements"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["blocking_table_work"] == true)
        })
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    // Only 0007's SET NOT NULL takes ACCESS EXCLUSIVE with a (possibly skipped) scan.
    assert_eq!(blocking, [7]);
    // 0002's new table locks the table its foreign key references: the note says which.
    let orders = &plan["pending"][1]["statements"][0];
    assert_eq!(orders["creates"], "orders");
    assert_eq!(orders["locks"][0]["table"], "users");
    assert_eq!(
        orders["note"],
        "orders is new: no other session sees it; the lock is on users, referenced by its \
         foreign key: blocks writes on users"
    );
    migrate()
        .arg("plan")
        .assert()
        .success()
        .stdout(predicate::str::starts_with("no database configured"));
}

#[test]
fn lint_counts_every_file_it_read() {
    // Two files share a version: both are left out of the set, yet both were read.
    let duplicates = tempfile::tempdir().unwrap();
    std::fs::write(duplicates.path().join("0001_a.sql"), "SELECT 1;\n").unwrap();
    std::fs::write(duplicates.path().join("001_b.sql"), "SELECT 2;\n").unwrap();
    migrate()
        .arg("lint")
        .arg(duplicates.path())
        .assert()
        .code(3)
        .stderr(predicate::str::contains("2 file(s), 2 error(s)"));

    // Eight migration files (one empty, one with an upper-case extension) and a config file.
    let mixed = tempfile::tempdir().unwrap();
    for version in 1..=6 {
        std::fs::write(
            mixed.path().join(format!("{version:04}_m{version}.sql")),
            "SELECT 1;\n",
        )
        .unwrap();
    }
    std::fs::write(mixed.path().join("0007_empty.sql"), "-- nothing yet\n").unwrap();
    std::fs::write(mixed.path().join("0008_upper.SQL"), "SELECT 1;\n").unwrap();
    std::fs::write(mixed.path().join("migrate.toml"), "[rules]\n").unwrap();
    std::fs::write(mixed.path().join("notes.txt"), "not a migration\n").unwrap();
    migrate()
        .arg("lint")
        .arg(mixed.path())
        .assert()
        .code(3)
        .stdout(predicate::str::contains(
            "0008_upper.SQL:1:1: error[bad-file-name]: `0008_upper.SQL` is not a migration file name: migration files end in lower-case .sql",
        ))
        .stdout(predicate::str::contains("case-insensitive filesystem"))
        .stderr(predicate::str::contains("8 file(s), 2 error(s), 0 warning(s)"));
}

#[test]
fn new_refuses_a_version_past_the_largest() {
    let dir = tempfile::tempdir().unwrap();
    let last = format!("{}_last.sql", i64::MAX);
    std::fs::write(dir.path().join(&last), "SELECT 1;\n").unwrap();
    migrate().arg("lint").arg(dir.path()).assert().success();
    migrate()
        .arg("--dir")
        .arg(dir.path())
        .args(["new", "next", "--phase", "expand"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "holds version 9223372036854775807, the largest a version can be",
        ))
        .stderr(predicate::str::contains("the next version does not fit"));
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, [last]);
}

#[test]
fn plan_shows_the_index_build_of_an_exclusion_constraint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_no_overlap.expand.sql"),
        "-- migrate:allow exclusion-constraint bookings holds a few hundred rows\n\
         ALTER TABLE bookings ADD CONSTRAINT bookings_no_overlap EXCLUDE USING gist (during WITH &&);\n",
    )
    .unwrap();
    let output = migrate()
        .arg("--dir")
        .arg(dir.path())
        .args(["--format", "json", "plan"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = json(&output);
    let statement = &plan["pending"][0]["statements"][0];
    assert_eq!(statement["locks"][0]["table"], "bookings");
    assert_eq!(statement["locks"][0]["mode"], "ACCESS_EXCLUSIVE");
    assert_eq!(statement["work"], "scan");
    assert_eq!(statement["blocking_table_work"], true);
    assert!(statement["note"].as_str().unwrap().contains("EXCLUDE"));
}

#[test]
fn help_lists_only_the_options_a_command_uses() {
    let help = |args: &[&str]| {
        let output = migrate().args(args).output().unwrap();
        assert!(output.status.success(), "{args:?}: {}", stderr(&output));
        stdout(&output)
    };
    let top = help(&["--help"]);
    assert!(
        top.contains("expand/backfill/contract migration files"),
        "{top}"
    );
    assert!(!top.contains("--lock-timeout <"), "{top}");
    assert!(top.contains("go after the command that uses them"), "{top}");
    for command in ["new", "explain", "lint"] {
        let text = help(&[command, "--help"]);
        for option in [
            "--database-url <",
            "--lock-timeout <",
            "--max-replica-lag <",
        ] {
            assert!(
                !text.contains(option),
                "{command} --help shows {option}:\n{text}"
            );
        }
        assert!(
            text.contains("--dir") && text.contains("--format"),
            "{text}"
        );
    }
    let status = help(&["status", "--help"]);
    assert!(status.contains("--database-url <") && status.contains("--lock-timeout <"));
    assert!(!status.contains("--lock-wait <") && !status.contains("--contract-stabilisation <"));
    let up = help(&["up", "--help"]);
    for option in [
        "--database-url",
        "--history-table",
        "--network-timeout",
        "--lock-timeout",
        "--statement-timeout",
        "--lock-wait",
        "--contract-stabilisation",
        "--max-replica-lag",
    ] {
        assert!(up.contains(option), "up --help lacks {option}");
    }
    // Why a dry run needs a database while `plan` does not.
    assert!(up.contains("--dry-run needs the database too"), "{up}");
    assert!(up.contains("`migrate plan`"), "{up}");
    let check = help(&["check", "--help"]);
    assert!(check.contains("--statement-timeout <") && !check.contains("--database-url <"));
}

#[test]
fn options_go_after_the_command_and_are_still_accepted_before_it() {
    for args in [
        &[
            "up",
            "--dry-run",
            "--lock-timeout",
            "2s",
            "--max-replica-lag",
            "off",
        ][..],
        &[
            "--statement-timeout",
            "1m",
            "--max-replica-lag",
            "off",
            "up",
            "--dry-run",
        ],
        &["flag", "get", "f", "--history-table", "app.history"],
    ] {
        migrate()
            .args(args)
            .assert()
            .code(1)
            .stderr(predicate::str::contains(
                "needs a database and none is configured",
            ));
    }
    // Checked as before, wherever they are written.
    migrate()
        .args(["up", "--lock-timeout", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--lock-timeout"));
    // After a command that does not use it, an option is a usage error.
    migrate()
        .args(["explain", "--lock-timeout", "2s"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "unexpected argument '--lock-timeout'",
        ));
}

#[test]
fn new_says_what_to_do_next_and_its_file_lints_once_written() {
    let dir = tempfile::tempdir().unwrap();
    migrate()
        .arg("--dir")
        .arg(dir.path())
        .args(["new", "add_t", "--phase", "expand"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "next: write the statements of the up part of",
        ))
        .stderr(predicate::str::contains(
            "`migrate lint` refuses the file until its up part has one",
        ));
    let path = dir.path().join("0001_add_t.expand.sql");
    let template = std::fs::read_to_string(&path).unwrap();
    let placeholder = "-- Write the up part's statements here: `migrate lint` refuses this file until it has one.\n";
    assert!(
        template.contains(&format!("-- migrate:up\n{placeholder}")),
        "{template}"
    );
    // Untouched, the template runs nothing: lint refuses it.
    migrate()
        .arg("lint")
        .arg(dir.path())
        .assert()
        .code(3)
        .stdout(predicate::str::contains("error[empty-file]"))
        .stdout(predicate::str::contains(
            "still the `migrate new` template: write its statements",
        ));
    // Written, it lints clean: the template's comments are no obstacle.
    let written = template
        .replace(
            placeholder,
            &format!("{placeholder}CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY);\n"),
        )
        .replace(
            "restores the schema.\n",
            "restores the schema.\nDROP TABLE IF EXISTS t;\n",
        );
    std::fs::write(&path, written).unwrap();
    migrate().arg("lint").arg(dir.path()).assert().success();

    // The backfill template says which placeholders to replace; JSON output stays one document.
    let output = migrate()
        .arg("--dir")
        .arg(dir.path())
        .args(["--format", "json", "new", "fill_t", "--phase", "backfill"])
        .output()
        .unwrap();
    assert!(output.status.success());
    assert_eq!(json(&output)["version"], 2);
    assert!(!stderr(&output).contains("next:"));
    migrate()
        .arg("--dir")
        .arg(dir.path())
        .args(["new", "fill_u", "--phase", "backfill"])
        .assert()
        .success()
        .stderr(predicate::str::contains(
            "name the table and its key in the `-- migrate:backfill` line",
        ));
}

#[test]
fn plan_names_the_tables_a_statement_locks_through_what_the_set_declares() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_people.expand.sql"),
        "CREATE TABLE IF NOT EXISTS person (id bigint PRIMARY KEY);
CREATE TABLE IF NOT EXISTS community (id bigint PRIMARY KEY,
    creator_id bigint REFERENCES person (id) ON DELETE CASCADE);
CREATE INDEX IF NOT EXISTS community_creator_id_idx ON community (creator_id);
",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_drop_creator.contract.sql"),
        "-- migrate:requires 1
ALTER TABLE community DROP COLUMN IF EXISTS creator_id;
",
    )
    .unwrap();
    let output = migrate()
        .args(["--format", "json", "plan", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = json(&output);
    let drop = &plan["pending"][1]["statements"][0];
    let locks = drop["locks"].as_array().unwrap();
    let person = locks
        .iter()
        .find(|l| l["table"] == "person")
        .unwrap_or_else(|| panic!("person not locked: {drop}"));
    assert_eq!(person["mode"], "ACCESS_EXCLUSIVE");
    assert!(
        person["because"]
            .as_str()
            .unwrap()
            .contains("community_creator_id_fkey"),
        "{person}"
    );
    let output = migrate()
        .args(["plan", "--dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("community, person"),
        "{}",
        stdout(&output)
    );
}
