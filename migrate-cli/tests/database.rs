//! `migrate` against real PostgreSQL: status, up, down, plan, drift and repair, flags,
//! connection failures and password hygiene. Each test has its own database.

mod common;

use common::*;
use predicates::prelude::*;

#[test]
fn up_status_and_down_round_trip() {
    let db = database();
    let dir = example_migrations();

    let status = migrate_on(&db, &dir)
        .args(["--format", "json", "status"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", stderr(&status));
    let entries = json(&status)["migrations"].as_array().unwrap().clone();
    assert_eq!(entries.len(), 7);
    assert!(entries.iter().all(|e| e["state"] == "pending"));

    migrate_on(&db, &dir)
        .args(["up", "--to", "3"])
        .assert()
        .success()
        .stdout(predicate::str::contains("applied 3 migration(s)"));
    let status = migrate_on(&db, &dir)
        .args(["--format", "json", "status"])
        .output()
        .unwrap();
    assert_eq!(
        states(&status),
        [
            "applied", "applied", "applied", "pending", "pending", "pending", "pending"
        ]
    );
    let first = &json(&status)["migrations"][0];
    assert_eq!(first["phase"], "expand");
    assert!(first["applied_at"].as_str().unwrap().ends_with('Z'));
    assert!(first["duration_ms"].is_i64());

    migrate_on(&db, &dir)
        .arg("up")
        .assert()
        .success()
        .stdout(predicate::str::contains("applied 4 migration(s)"));
    migrate_on(&db, &dir)
        .arg("status")
        .assert()
        .success()
        .stdout(predicate::str::contains("email_normalized_required"))
        .stdout(predicate::str::contains("pending").not());

    // The dry run lists, newest first, and changes nothing.
    let dry = migrate_on(&db, &dir)
        .args(["--format", "json", "down", "--to", "5", "--dry-run"])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{}", stderr(&dry));
    let versions: Vec<u64> = json(&dry)["to_revert"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [7, 6]);
    assert_eq!(sql(&db, "SELECT count(*) FROM schema_migrations"), "7");

    migrate_on(&db, &dir)
        .args(["down", "--to", "0"])
        .assert()
        .success()
        .stdout(predicate::str::contains("reverted 7 migration(s)"));
    assert_eq!(sql(&db, "SELECT count(*) FROM schema_migrations"), "0");
    assert_eq!(sql(&db, "SELECT to_regclass('users') IS NULL"), "t");
}

#[test]
fn dry_run_touches_nothing() {
    let db = database();
    let output = migrate_on(&db, &example_migrations())
        .args(["--format", "json", "up", "--dry-run"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = json(&output);
    assert_eq!(plan["dry_run"], true);
    assert_eq!(plan["pending"].as_array().unwrap().len(), 7);
    assert_eq!(plan["pending"][2]["mode"], "autocommit");
    // Not even the history table was created.
    assert_eq!(
        sql(
            &db,
            "SELECT to_regclass('public.schema_migrations') IS NULL"
        ),
        "t"
    );
}

#[test]
fn plan_shows_pending_statements_with_their_locks() {
    let db = database();
    let dir = example_migrations();
    migrate_on(&db, &dir)
        .args(["up", "--to", "2"])
        .assert()
        .success();
    let output = migrate_on(&db, &dir)
        .args(["--format", "json", "plan"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = json(&output);
    assert_eq!(plan["database"], true);
    let pending = plan["pending"].as_array().unwrap();
    let versions: Vec<u64> = pending
        .iter()
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, [3, 4, 5, 6, 7]);
    let statements = pending[0]["statements"].as_array().unwrap();
    let index = statements
        .iter()
        .find(|s| {
            s["sql"]
                .as_str()
                .unwrap()
                .starts_with("CREATE UNIQUE INDEX CONCURRENTLY")
        })
        .unwrap();
    assert_eq!(index["locks"][0]["table"], "users");
    assert_eq!(index["locks"][0]["mode"], "SHARE_UPDATE_EXCLUSIVE");
    assert_eq!(index["work"], "scan");
    assert_eq!(index["blocking_table_work"], false);
    let validate = &pending[3]["statements"][0];
    assert_eq!(validate["locks"][0]["mode"], "SHARE_UPDATE_EXCLUSIVE");
    assert_eq!(validate["work"], "scan");
    let set_not_null = &pending[4]["statements"][0];
    assert_eq!(set_not_null["locks"][0]["mode"], "ACCESS_EXCLUSIVE");
    assert_eq!(set_not_null["blocks_reads"], true);

    migrate_on(&db, &dir)
        .arg("plan")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "0003_email_normalized.expand.sql (expand, autocommit",
        ))
        .stdout(predicate::str::contains("SHARE UPDATE EXCLUSIVE"))
        .stdout(predicate::str::contains("0001_create_users").not());
}

#[test]
fn drift_is_refused_with_exit_4_until_repaired() {
    let db = database();
    let copy = copy_of_examples();
    let dir = copy.path();
    migrate_on(&db, dir)
        .args(["up", "--to", "5"])
        .assert()
        .success();
    let file = dir.join("0002_create_orders.expand.sql");
    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, format!("-- reviewed after the fact\n{text}")).unwrap();

    migrate_on(&db, dir)
        .arg("status")
        .assert()
        .code(4)
        .stdout(predicate::str::is_match(r"(?m)^2\s+create_orders\s+expand\s+drifted").unwrap())
        .stderr(predicate::str::contains("migrate repair"));
    migrate_on(&db, dir)
        .arg("up")
        .assert()
        .code(4)
        .stderr(predicate::str::contains(
            "migration 2 (0002_create_orders.expand.sql) was changed",
        ));
    // Refused before anything ran.
    assert_eq!(sql(&db, "SELECT max(version) FROM schema_migrations"), "5");
    migrate_on(&db, dir)
        .args(["down", "--to", "0"])
        .assert()
        .code(4);

    let old = sql(
        &db,
        "SELECT checksum FROM schema_migrations WHERE version = 2",
    );
    let output = migrate_on(&db, dir)
        .args(["--format", "json", "repair", "--version", "2"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let repaired = &json(&output)["repaired"];
    assert_eq!(repaired.as_array().unwrap().len(), 1);
    assert_eq!(repaired[0]["version"], 2);
    assert_eq!(repaired[0]["old_checksum"], old.as_str());
    let new = sql(
        &db,
        "SELECT checksum FROM schema_migrations WHERE version = 2",
    );
    assert_eq!(repaired[0]["new_checksum"], new.as_str());
    assert_ne!(old, new);
    assert_eq!(
        sql(
            &db,
            "SELECT repaired_at IS NOT NULL FROM schema_migrations WHERE version = 2"
        ),
        "t"
    );
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM schema_migrations WHERE repaired_at IS NOT NULL"
        ),
        "1"
    );

    migrate_on(&db, dir).arg("status").assert().success();
    migrate_on(&db, dir)
        .arg("repair")
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to repair"));
    migrate_on(&db, dir).arg("up").assert().success();
    // A version that is not applied has no row to repair.
    migrate_on(&db, dir)
        .args(["down", "--to", "6"])
        .assert()
        .success();
    migrate_on(&db, dir)
        .args(["repair", "--version", "7"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("migration 7 is not applied"));
}

#[test]
fn applied_versions_missing_from_the_files_are_refused() {
    let db = database();
    let copy = copy_of_examples();
    migrate_on(&db, copy.path()).arg("up").assert().success();
    std::fs::remove_file(
        copy.path()
            .join("0007_email_normalized_required.contract.sql"),
    )
    .unwrap();
    migrate_on(&db, copy.path())
        .arg("status")
        .assert()
        .code(4)
        .stdout(predicate::str::contains("missing from files"));
    migrate_on(&db, copy.path())
        .arg("up")
        .assert()
        .code(4)
        .stderr(predicate::str::contains("[7]"));
}

#[test]
fn flags_set_get_list() {
    let db = database();
    let dir = example_migrations();
    migrate_on(&db, &dir)
        .args(["flag", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no flags set"));
    migrate_on(&db, &dir)
        .args(["flag", "get", "orders.dual_write"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains(
            "flag `orders.dual_write` is not set",
        ));
    migrate_on(&db, &dir)
        .args(["flag", "set", "orders.dual_write", "on"])
        .assert()
        .success()
        .stdout(predicate::str::starts_with("orders.dual_write on"));
    migrate_on(&db, &dir)
        .args(["flag", "set", "email-v2", "off"])
        .assert()
        .success();
    let get = migrate_on(&db, &dir)
        .args(["--format", "json", "flag", "get", "orders.dual_write"])
        .output()
        .unwrap();
    assert_eq!(json(&get)["enabled"], true);
    migrate_on(&db, &dir)
        .args(["flag", "set", "orders.dual_write", "off"])
        .assert()
        .success();
    let list = migrate_on(&db, &dir)
        .args(["--format", "json", "flag", "list"])
        .output()
        .unwrap();
    let flags = json(&list)["flags"].clone();
    assert_eq!(flags[0]["name"], "email-v2");
    assert_eq!(flags[1]["name"], "orders.dual_write");
    assert_eq!(flags[1]["enabled"], false);
    assert_eq!(
        sql(
            &db,
            "SELECT enabled FROM schema_migrations_flags WHERE name = 'orders.dual_write'"
        ),
        "f"
    );

    // The flags table follows the history table's name.
    migrate_on(&db, &dir)
        .args([
            "--history-table",
            "deploy_history",
            "flag",
            "set",
            "x",
            "on",
        ])
        .assert()
        .success();
    assert_eq!(sql(&db, "SELECT count(*) FROM deploy_history_flags"), "1");

    for bad in ["Upper", "a b", "x;drop table users"] {
        migrate_on(&db, &dir)
            .args(["flag", "set", bad, "on"])
            .assert()
            .code(2)
            .stderr(predicate::str::contains("invalid flag name"));
    }
    migrate_on(&db, &dir)
        .args([
            "--history-table",
            "x\"; drop table users; --",
            "flag",
            "list",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid history table name"));
}

#[test]
fn unreachable_database_is_a_clear_failure() {
    // A port that was free a moment ago: nothing listens on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    migrate()
        .args(["--dir", "migrations", "--database-url"])
        .arg(format!(
            "postgres://postgres:s3cr3t-unreachable@127.0.0.1:{port}/app?sslmode=disable"
        ))
        .arg("status")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("error: connecting to PostgreSQL"))
        .stderr(predicate::str::contains("s3cr3t-unreachable").not());
}

#[test]
fn passwords_never_appear_in_the_output() {
    const PASSWORD: &str = "Corr3ct-horse-battery";
    const WRONG: &str = "Wr0ng-staple-guess";
    let db = database();
    cluster()
        .create_login_role("cli_password_user", PASSWORD)
        .unwrap();
    let host = db.host().to_owned();
    let port = db.port().to_string();

    // A wrong password in the URL: refused by scram-sha-256, neither password printed.
    for format in ["human", "json"] {
        let output = migrate()
            .args(["--format", format, "--database-url"])
            .arg(format!(
                "postgres://cli_password_user:{WRONG}@{host}:{port}/{}?sslmode=disable",
                db.name()
            ))
            .arg("status")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(1));
        let all = format!("{}{}", stdout(&output), stderr(&output));
        assert!(all.contains("password authentication failed"), "{all}");
        assert!(!all.contains(WRONG) && !all.contains(PASSWORD), "{all}");
    }

    // The right password through the PG* variables, and then through DB_*.
    let pg = migrate()
        .env("PGHOST", &host)
        .env("PGPORT", &port)
        .env("PGDATABASE", db.name())
        .env("PGUSER", "cli_password_user")
        .env("PGPASSWORD", PASSWORD)
        .env("PGSSLMODE", "disable")
        .args(["-vv", "status"])
        .output()
        .unwrap();
    assert!(pg.status.success(), "{}", stderr(&pg));
    assert!(stdout(&pg).contains("pending"));
    let db_vars = migrate()
        .env("DB_HOST", &host)
        .env("DB_PORT", &port)
        .env("DB_NAME", db.name())
        .env("DB_USER", "cli_password_user")
        .env("DB_PASSWORD", WRONG)
        .env("PGSSLMODE", "disable")
        .args(["-vv", "status"])
        .output()
        .unwrap();
    assert_eq!(db_vars.status.code(), Some(1));
    assert!(stderr(&db_vars).contains("password authentication failed"));
    for output in [&pg, &db_vars] {
        let all = format!("{}{}", stdout(output), stderr(output));
        assert!(!all.contains(WRONG) && !all.contains(PASSWORD), "{all}");
    }
}

#[test]
fn a_listener_that_never_answers_fails_within_the_connect_timeout() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds every connection, never sending a byte.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for socket in listener.incoming() {
            held.push(socket);
        }
    });
    for command in ["status", "up"] {
        let started = std::time::Instant::now();
        migrate()
            .args(["--dir", "migrations", "--database-url"])
            .arg(format!(
                "postgres://postgres@127.0.0.1:{port}/app?sslmode=disable&connect_timeout=1"
            ))
            .arg(command)
            .assert()
            .code(1)
            .stderr(predicate::str::contains("no complete answer within 1s"));
        let waited = started.elapsed();
        assert!(
            waited < std::time::Duration::from_secs(10),
            "{command}: {waited:?}"
        );
    }
}

#[test]
fn a_malformed_url_names_where_it_came_from_once() {
    let output = migrate()
        .args(["--dir", "migrations"])
        .env("DATABASE_URL", "postgres://u:s3cret@localhost:notaport/db")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stderr(&output);
    assert!(
        text.contains("the connection string from DATABASE_URL"),
        "{text}"
    );
    assert_eq!(
        text.matches("invalid connection string").count(),
        1,
        "{text}"
    );
    assert!(!text.contains("s3cret"), "{text}");
}

#[test]
fn a_zero_lock_timeout_is_refused_before_connecting() {
    let db = database();
    assert_cmd::Command::cargo_bin("migrate")
        .unwrap()
        .env_remove("DATABASE_URL")
        .arg("--database-url")
        .arg(url(&db))
        .arg("--dir")
        .arg(example_migrations())
        .args(["--lock-timeout", "0", "up"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--lock-timeout"))
        .stderr(predicate::str::contains("wait forever"));
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'schema_migrations'"
        ),
        "0"
    );
}

/// A dry run evaluates the gates the real run does and exits as it would.
#[test]
fn dry_runs_refuse_what_the_real_runs_refuse() {
    let db = database();
    let dir = example_migrations();
    let dry = migrate_on(&db, &dir)
        .args(["--contract-stabilisation", "1h", "up", "--dry-run"])
        .output()
        .unwrap();
    assert_eq!(dry.status.code(), Some(1), "{}", stderr(&dry));
    assert!(
        stdout(&dry).contains("would apply 6 migration(s), then be refused"),
        "{}",
        stdout(&dry)
    );
    assert!(
        stderr(&dry).contains("stabilisation period is 1h"),
        "{}",
        stderr(&dry)
    );
    assert_eq!(
        sql(
            &db,
            "SELECT to_regclass('public.schema_migrations') IS NULL"
        ),
        "t",
        "the dry run changed nothing"
    );
    let dry_json = migrate_on(&db, &dir)
        .args([
            "--format",
            "json",
            "--contract-stabilisation",
            "1h",
            "up",
            "--dry-run",
        ])
        .output()
        .unwrap();
    assert_eq!(dry_json.status.code(), Some(1));
    let document = json(&dry_json);
    assert_eq!(document["pending"].as_array().unwrap().len(), 6);
    assert_eq!(document["pending"][3]["mode"], "batched");
    assert!(
        document["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stabilisation")
    );

    let real = migrate_on(&db, &dir)
        .args(["--format", "json", "--contract-stabilisation", "1h", "up"])
        .output()
        .unwrap();
    assert_eq!(real.status.code(), dry.status.code());
    // The partial report is structured, not only inside the message.
    let document = json(&real);
    let applied: Vec<u64> = document["applied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["version"].as_u64().unwrap())
        .collect();
    assert_eq!(applied, [1, 2, 3, 4, 5, 6]);
    assert_eq!(document["error"]["exit_code"], 1);

    // down: a missing file refuses the dry run with the real run's exit code.
    let copy = copy_of_examples();
    std::fs::remove_file(copy.path().join("0004_email_normalized.backfill.sql")).unwrap();
    for args in [
        &["down", "--to", "0", "--dry-run"][..],
        &["down", "--to", "0"][..],
    ] {
        migrate_on(&db, copy.path())
            .args(args)
            .assert()
            .code(4)
            .stderr(predicate::str::contains("[4]"))
            .stderr(predicate::str::contains("--ignore-missing"));
    }
    migrate_on(&db, &dir)
        .args(["down", "--to", "99"])
        .assert()
        .success()
        .stdout(predicate::str::contains("nothing to revert"))
        .stdout(predicate::str::contains("up to date").not());
    migrate_on(&db, &dir)
        .args(["down", "--to", "99", "--dry-run"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "no applied migration is newer than version 99",
        ));
}

#[test]
fn the_flags_that_messages_name_exist() {
    let db = database();
    let copy = copy_of_examples();
    let held_back = copy.path().join("0004_email_normalized.backfill.sql");
    let text = std::fs::read_to_string(&held_back).unwrap();
    std::fs::remove_file(&held_back).unwrap();
    migrate_on(&db, copy.path()).arg("up").assert().success();
    std::fs::write(&held_back, text).unwrap();
    migrate_on(&db, copy.path())
        .arg("up")
        .assert()
        .code(4)
        .stderr(predicate::str::contains("--allow-out-of-order"));
    migrate_on(&db, copy.path())
        .args(["up", "--allow-out-of-order"])
        .assert()
        .success()
        .stdout(predicate::str::contains("applied 1 migration(s)"));

    std::fs::remove_file(
        copy.path()
            .join("0007_email_normalized_required.contract.sql"),
    )
    .unwrap();
    migrate_on(&db, copy.path())
        .arg("up")
        .assert()
        .code(4)
        .stderr(predicate::str::contains("--ignore-missing"))
        .stderr(predicate::str::contains("this binary").not());
    migrate_on(&db, copy.path())
        .args(["up", "--ignore-missing"])
        .assert()
        .success();
}

#[test]
fn logs_on_a_redirected_stderr_carry_no_colour_codes() {
    let db = database();
    let output = migrate_on(&db, &example_migrations())
        .args(["-vv", "up"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let logs = stderr(&output);
    assert!(logs.contains("applying"), "{logs}");
    assert!(
        logs.contains("mode=\"batched\"") || logs.contains("mode=batched"),
        "{logs}"
    );
    assert!(!logs.contains('\x1b'), "{logs:?}");
}

#[test]
fn up_expands_only_applies_the_leading_expands_and_names_what_it_holds_back() {
    let db = database();
    let dir = example_migrations();
    let versions = |list: &serde_json::Value| -> Vec<u64> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|m| m["version"].as_u64().unwrap())
            .collect()
    };

    // The dry run: the expands before the first backfill, and the rest with why.
    let dry = migrate_on(&db, &dir)
        .args(["--format", "json", "up", "--expands-only", "--dry-run"])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{}", stderr(&dry));
    let dry = json(&dry);
    assert_eq!(versions(&dry["pending"]), [1, 2, 3]);
    assert_eq!(versions(&dry["held_back"]), [4, 5, 6, 7]);
    assert_eq!(dry["held_back"][0]["phase"], "backfill");
    assert!(
        dry["held_back"][1]["reason"]
            .as_str()
            .unwrap()
            .contains('4'),
        "{dry}"
    );

    let up = migrate_on(&db, &dir)
        .args(["up", "--expands-only"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let out = stdout(&up);
    assert!(out.contains("applied 3 migration(s)"), "{out}");
    assert!(
        out.contains("held back for operations, 4 migration(s)"),
        "{out}"
    );
    assert!(out.contains("0004_email_normalized.backfill.sql"), "{out}");
    let status = migrate_on(&db, &dir)
        .args(["--format", "json", "status"])
        .output()
        .unwrap();
    assert_eq!(
        states(&status),
        [
            "applied", "applied", "applied", "pending", "pending", "pending", "pending"
        ]
    );

    // Again: the next pending migration is the backfill, so nothing is applied.
    migrate_on(&db, &dir)
        .args(["up", "--expands-only"])
        .assert()
        .success()
        .stdout(predicate::str::contains("no expand to apply"));
    // A target version and the expands only exclude each other.
    migrate_on(&db, &dir)
        .args(["up", "--expands-only", "--to", "3"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("--expands-only"));
    // `up` applies the rest.
    migrate_on(&db, &dir)
        .arg("up")
        .assert()
        .success()
        .stdout(predicate::str::contains("applied 4 migration(s)"));
}

/// Each migration's state in a `--format json status` output, in version order.
fn states(status: &std::process::Output) -> Vec<String> {
    json(status)["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state"].as_str().unwrap().to_owned())
        .collect()
}
