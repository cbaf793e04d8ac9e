//! `migrate backfill` and `migrate verify` against a scratch database.

mod common;

use common::*;

fn write_set(dir: &std::path::Path) {
    std::fs::write(
        dir.join("0001_items.sql"),
        "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v integer NOT NULL, v2 integer);\n\
         -- migrate:down\nDROP TABLE IF EXISTS items;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_items_v2.backfill.sql"),
        "-- migrate:backfill table=items key=id batch=100\n\
         UPDATE items SET v2 = v * 2 WHERE v2 IS NULL;\n-- migrate:down\n",
    )
    .unwrap();
}

#[test]
fn backfill_progress_and_verification() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path());
    let dir_arg = dir.path().to_str().unwrap();
    let url = url(&db);

    migrate()
        .args(["--database-url", &url, "--dir", dir_arg, "up", "--to", "1"])
        .assert()
        .success();
    sql(
        &db,
        "INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 250) g",
    );

    // Before the backfill runs: pending, no progress, nothing to verify.
    let pending = migrate()
        .args([
            "--database-url",
            &url,
            "--dir",
            dir_arg,
            "--format",
            "json",
            "backfill",
        ])
        .output()
        .unwrap();
    assert!(pending.status.success());
    let report = json(&pending);
    assert_eq!(report["backfills"][0]["applied"], false);
    assert!(report["backfills"][0]["rows_done"].is_null());

    migrate()
        .args(["--database-url", &url, "--dir", dir_arg, "up"])
        .assert()
        .success();
    let done = json(
        &migrate()
            .args([
                "--database-url",
                &url,
                "--dir",
                dir_arg,
                "--format",
                "json",
                "backfill",
            ])
            .output()
            .unwrap(),
    );
    assert_eq!(done["backfills"][0]["applied"], true);
    assert_eq!(done["backfills"][0]["rows_done"], 250);
    assert_eq!(done["backfills"][0]["last_key"], "250");

    // A row written in the old shape after the backfill: verify fails and names it.
    sql(&db, "INSERT INTO items (id, v) VALUES (251, 1)");
    let failed = migrate()
        .args([
            "--database-url",
            &url,
            "--dir",
            dir_arg,
            "--format",
            "json",
            "verify",
        ])
        .output()
        .unwrap();
    assert_eq!(failed.status.code(), Some(1));
    assert_eq!(json(&failed)["backfills"][0]["remaining"], 1);
    migrate()
        .args(["--database-url", &url, "--dir", dir_arg, "verify"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("1 row(s) still match"));

    // Fixed: verify passes and records verified_at.
    sql(&db, "UPDATE items SET v2 = v * 2 WHERE v2 IS NULL");
    sql(
        &db,
        "UPDATE schema_migrations_backfill SET verified_at = NULL",
    );
    let passed = migrate()
        .args([
            "--database-url",
            &url,
            "--dir",
            dir_arg,
            "--format",
            "json",
            "verify",
            "--version",
            "2",
        ])
        .output()
        .unwrap();
    assert!(passed.status.success());
    let report = json(&passed);
    assert_eq!(report["backfills"][0]["remaining"], 0);
    assert!(report["backfills"][0]["verified_at"].is_string());
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM schema_migrations_backfill WHERE verified_at IS NOT NULL"
        ),
        "1"
    );

    migrate()
        .args([
            "--database-url",
            &url,
            "--dir",
            dir_arg,
            "verify",
            "--version",
            "1",
        ])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("not a backfill migration"));
}

#[test]
fn backfill_and_verify_need_a_database() {
    for command in ["backfill", "verify"] {
        migrate()
            .args([command])
            .assert()
            .code(1)
            .stderr(predicates::str::contains("needs a database"));
    }
}

/// `backfill pause|resume` from another terminal: stored in the database, shown by
/// `backfill`, and a backfill run under the controller shows its pace.
#[test]
fn pause_resume_and_the_pace_shown() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path());
    // The controller paces this one (no batch=).
    std::fs::write(
        dir.path().join("0002_items_v2.backfill.sql"),
        "-- migrate:backfill table=items key=id target=50\n\
         UPDATE items SET v2 = v * 2 WHERE v2 IS NULL;\n-- migrate:down\n",
    )
    .unwrap();
    let dir_arg = dir.path().to_str().unwrap();
    let url = url(&db);
    let status = || {
        json(
            &migrate()
                .args(["--dir", dir_arg, "--format", "json", "backfill"])
                .args(["--database-url", &url])
                .output()
                .unwrap(),
        )
    };

    // Options after the action too, as for `flag`.
    migrate()
        .args([
            "--dir",
            dir_arg,
            "backfill",
            "pause",
            "--database-url",
            &url,
        ])
        .assert()
        .success();
    assert_eq!(status()["paused"], true);
    assert_eq!(
        sql(
            &db,
            "SELECT enabled FROM schema_migrations_flags WHERE name = 'migrate.backfill_paused'"
        )
        .trim(),
        "t"
    );
    migrate()
        .args([
            "--dir",
            dir_arg,
            "backfill",
            "resume",
            "--database-url",
            &url,
        ])
        .assert()
        .success();
    assert_eq!(status()["paused"], false);

    migrate()
        .args(["--database-url", &url, "--dir", dir_arg, "up", "--to", "1"])
        .assert()
        .success();
    sql(
        &db,
        "INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 3000) g",
    );
    migrate()
        .args(["--database-url", &url, "--dir", dir_arg, "up"])
        .assert()
        .success();
    let done = status();
    let backfill = &done["backfills"][0];
    assert_eq!(backfill["rows_done"], 3000);
    assert_eq!(backfill["pace"], "done");
    assert!(
        backfill["batch_size"]
            .as_u64()
            .is_some_and(|size| size >= 100)
    );
    assert!(
        backfill["rows_per_second"]
            .as_f64()
            .is_some_and(|rate| rate > 0.0)
    );
    let human = migrate()
        .args(["--database-url", &url, "--dir", dir_arg, "backfill"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&human.stdout);
    assert!(
        text.contains("ROWS/S") && text.contains("PACE") && text.contains("done"),
        "{text}"
    );
}

/// A dry run refused at a contract's gate lists what a real run would apply before it: the
/// backfill under the mode it runs in (`batched`), in the table and in the refusal alike.
#[test]
fn a_dry_run_refusal_labels_a_backfill_batched() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path());
    std::fs::rename(
        dir.path().join("0001_items.sql"),
        dir.path().join("0001_items.expand.sql"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0003_items_drop_v.contract.sql"),
        "-- migrate:requires 1\nALTER TABLE items DROP COLUMN IF EXISTS v;\n-- migrate:down\n\
         ALTER TABLE items ADD COLUMN IF NOT EXISTS v integer;\n",
    )
    .unwrap();
    let output = migrate_on(&db, dir.path())
        .args(["up", "--dry-run", "--contract-stabilisation", "1h"])
        .output()
        .unwrap();
    let (out, err) = (stdout(&output), stderr(&output));
    assert_eq!(output.status.code(), Some(1), "{out}\n{err}");
    assert!(err.contains("stabilisation"), "{err}");
    let backfill_rows: Vec<&str> = out
        .lines()
        .chain(err.lines())
        .filter(|line| line.contains("0002_items_v2.backfill.sql"))
        .collect();
    assert_eq!(backfill_rows.len(), 2, "{out}\n{err}");
    for line in backfill_rows {
        assert!(
            line.contains("batched") && !line.contains("transaction"),
            "{line}"
        );
    }
}

/// Polls `done` until it holds or `limit` passes: waits for the server to see a change,
/// never stands in for one.
fn eventually(limit: std::time::Duration, mut done: impl FnMut() -> bool) -> bool {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if done() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    done()
}

/// A backfill whose `migrate up` was killed (SIGKILL, or interrupted: SIGINT) shows
/// `stopped`, not the `running` it last stored: its session is gone from `pg_stat_activity`.
#[test]
fn a_killed_backfill_shows_stopped() {
    for signal in [libc::SIGKILL, libc::SIGINT] {
        a_backfill_stopped_by(signal);
    }
}

fn a_backfill_stopped_by(signal: libc::c_int) {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path());
    // Slow on purpose: 10 rows every 100 ms, so the kill lands mid-run.
    std::fs::write(
        dir.path().join("0002_items_v2.backfill.sql"),
        "-- migrate:backfill table=items key=id batch=10 delay=100\n\
         UPDATE items SET v2 = v * 2 WHERE v2 IS NULL;\n-- migrate:down\n",
    )
    .unwrap();
    migrate_on(&db, dir.path())
        .args(["up", "--to", "1"])
        .assert()
        .success();
    sql(
        &db,
        "INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 600) g",
    );
    let backfill = || {
        json(
            &migrate_on(&db, dir.path())
                .args(["--format", "json", "backfill"])
                .output()
                .unwrap(),
        )["backfills"][0]
            .clone()
    };
    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("migrate"));
    command
        .arg("--dir")
        .arg(dir.path())
        .args(["up", "--database-url", &url(&db)])
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SIGINT as a terminal's Ctrl-C delivers it: a test run started in the background by a
    // non-interactive shell inherits SIGINT ignored, and `up` would then never see it.
    // SAFETY: signal(2) is async-signal-safe, as pre_exec requires.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            libc::signal(libc::SIGINT, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = command.spawn().unwrap();
    let started = eventually(std::time::Duration::from_secs(60), || {
        backfill()["rows_done"]
            .as_i64()
            .is_some_and(|rows| rows > 0)
    });
    // Held mid-run by the operator's pause (read before a batch, at most every 200 ms), so that the signal
    // lands while the run is alive however slow the machine: on a loaded CI machine the
    // polls above took longer than the whole 6 s run, and the kill found it finished.
    migrate_on(&db, dir.path())
        .args(["backfill", "pause"])
        .assert()
        .success();
    let paused = eventually(std::time::Duration::from_secs(60), || {
        backfill()["pace"]
            .as_str()
            .is_some_and(|pace| pace.contains("paused"))
    });
    let running = backfill();
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on our own child, which has not been waited for, so its pid is its own.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    child.wait().unwrap();
    assert!(started, "the backfill never stored progress: {running}");
    assert!(paused, "the backfill never paused: {running}");
    assert_eq!(running["run"], "running", "{running}");

    // The server ends the killed client's session as soon as it sees the socket closed.
    let stopped = eventually(std::time::Duration::from_secs(30), || {
        backfill()["run"] == "stopped"
    });
    let shown = backfill();
    assert!(stopped, "{shown}");
    assert_eq!(shown["pace"], "stopped", "{shown}");
    assert!(shown["error"].is_null(), "{shown}");
    let human = migrate_on(&db, dir.path())
        .arg("backfill")
        .output()
        .unwrap();
    let table = stdout(&human);
    assert!(
        table.contains("stopped") && !table.contains("fixed"),
        "{table}"
    );
    let status = migrate_on(&db, dir.path()).arg("status").output().unwrap();
    assert!(
        stderr(&status).contains("its run stopped"),
        "{}",
        stderr(&status)
    );

    // The next `up` resumes and finishes it.
    migrate_on(&db, dir.path())
        .args(["backfill", "resume"])
        .assert()
        .success();
    migrate_on(&db, dir.path()).arg("up").assert().success();
    assert_eq!(backfill()["run"], "finished");
    assert_eq!(sql(&db, "SELECT count(*) FROM items WHERE v2 IS NULL"), "0");
}

/// A backfill that failed shows `failed` and its error, in the table and in JSON.
#[test]
fn a_failed_backfill_shows_failed_and_why() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_items.sql"),
        "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, a integer, b integer);\n\
         -- migrate:down\nDROP TABLE IF EXISTS items;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_items_b.backfill.sql"),
        "-- migrate:backfill table=items key=id batch=100\n\
         UPDATE items SET b = a WHERE b IS NULL;\n-- migrate:down\n",
    )
    .unwrap();
    migrate_on(&db, dir.path())
        .args(["up", "--to", "1"])
        .assert()
        .success();
    sql(
        &db,
        "INSERT INTO items (id, a) SELECT g, NULLIF(g, 7) FROM generate_series(1, 20) g",
    );
    migrate_on(&db, dir.path())
        .arg("up")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("(id = 7)"));
    let output = migrate_on(&db, dir.path())
        .args(["--format", "json", "backfill"])
        .output()
        .unwrap();
    let shown = &json(&output)["backfills"][0];
    assert_eq!(shown["run"], "failed", "{shown}");
    assert_eq!(shown["pace"], "failed", "{shown}");
    assert!(
        shown["error"]
            .as_str()
            .is_some_and(|e| e.contains("(id = 7)")),
        "{shown}"
    );
    let human = migrate_on(&db, dir.path())
        .arg("backfill")
        .output()
        .unwrap();
    assert!(stdout(&human).contains("failed"), "{}", stdout(&human));
    assert!(
        stderr(&human).contains("its last run failed") && stderr(&human).contains("(id = 7)"),
        "{}",
        stderr(&human)
    );
}

/// After a failed `verify`, the recipe it prints works: `migrate backfill rerun V` fills the
/// rows written in the old shape and verifies; `verify` then passes.
#[test]
fn verify_names_the_rerun_that_fills_the_rows_left() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path());
    let url = url(&db);
    migrate_on(&db, dir.path())
        .args(["up", "--to", "1"])
        .assert()
        .success();
    // Before it is applied, a re-run points to `up`, and changes nothing.
    migrate_on(&db, dir.path())
        .args(["backfill", "rerun", "2"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("`migrate up --to 2`"));
    sql(
        &db,
        "INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 250) g",
    );
    migrate_on(&db, dir.path()).arg("up").assert().success();
    sql(&db, "INSERT INTO items (id, v) VALUES (300, 1), (301, 2)");

    migrate_on(&db, dir.path())
        .arg("verify")
        .assert()
        .code(1)
        .stderr(predicates::str::contains("`migrate backfill rerun 2`"));
    migrate_on(&db, dir.path())
        .args(["up", "--to", "2"])
        .assert()
        .success()
        .stdout(predicates::str::contains("nothing to do"));

    // Options after the version too, as for `backfill pause`.
    let output = migrate()
        .args(["--dir", dir.path().to_str().unwrap(), "--format", "json"])
        .args(["backfill", "rerun", "2", "--database-url", &url])
        .args(["--lock-wait", "10s"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["version"], 2);
    assert_eq!(report["rows_done"], 2);
    assert_eq!(report["verified"], true);
    assert_eq!(sql(&db, "SELECT count(*) FROM items WHERE v2 IS NULL"), "0");
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM schema_migrations WHERE version = 2"
        ),
        "1"
    );
    migrate_on(&db, dir.path()).arg("verify").assert().success();

    migrate_on(&db, dir.path())
        .args(["backfill", "rerun", "1"])
        .assert()
        .code(1)
        .stderr(predicates::str::contains("not a backfill migration"));
}

/// Issue 22, "say what happened": after a backfill under the controller, `up` prints which
/// signal held it and for how long, and `migrate backfill` reports the same line. The throttle
/// query answers true three times (a sequence counts its readings), so the backfill is held
/// by it for a few polls and then finishes.
#[test]
fn up_and_backfill_report_what_held_a_backfill_under_the_controller() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    write_set(dir.path());
    std::fs::write(
        dir.path().join("0002_items_v2.backfill.sql"),
        "-- migrate:backfill table=items key=id\n\
         UPDATE items SET v2 = v * 2 WHERE v2 IS NULL;\n-- migrate:down\n",
    )
    .unwrap();
    let url = url(&db);
    migrate_on(&db, dir.path())
        .args(["up", "--to", "1"])
        .assert()
        .success();
    sql(
        &db,
        "INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 2000) g",
    );
    sql(&db, "CREATE SEQUENCE throttle_readings");

    let up = migrate_on(&db, dir.path())
        .args([
            "--backfill-throttle-query",
            "SELECT nextval('throttle_readings') <= 3",
            "up",
        ])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let printed = stdout(&up);
    let line = printed
        .lines()
        .find(|l| l.starts_with("backfill 2 (0002_items_v2.backfill.sql): "))
        .unwrap_or_else(|| panic!("no impact line in:\n{printed}"));
    assert!(line.contains("held by throttle query "), "{line}");
    assert_eq!(
        sql(&db, "SELECT count(*) FROM items WHERE v2 = v * 2"),
        "2000"
    );

    let report = json(
        &migrate()
            .args(["--database-url", &url, "--dir"])
            .arg(dir.path())
            .args(["--format", "json", "backfill"])
            .output()
            .unwrap(),
    );
    let impact = report["backfills"][0]["impact"]
        .as_str()
        .unwrap_or_default();
    assert!(impact.starts_with("held by throttle query "), "{report}");
    assert_eq!(
        line.split_once(": ").map(|(_, impact)| impact),
        Some(impact),
        "up and backfill say the same"
    );
}
