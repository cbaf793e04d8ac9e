//! Messages that must say what is true: an unapplied backfill is not "verified", `up --to`
//! does not call a database with later pending migrations "up to date", settings read as
//! they were written, sizes in PostgreSQL's units and their IEC names.

mod common;

use common::*;

#[test]
fn verify_of_a_backfill_that_is_not_applied_fails_naming_it() {
    let db = database();
    let dir = example_migrations();
    let up = migrate_on(&db, &dir)
        .args(["up", "--to", "3"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    for format in ["human", "json"] {
        let output = migrate_on(&db, &dir)
            .args(["verify", "--version", "4", "--format", format])
            .output()
            .unwrap();
        let text = format!("{}{}", stdout(&output), stderr(&output));
        assert_eq!(output.status.code(), Some(1), "{text}");
        assert!(
            text.contains(
                "backfill migration 4 (0004_email_normalized.backfill.sql) is not applied"
            ),
            "{text}"
        );
        assert!(!text.contains("nothing to verify:"), "{text}");
    }
    // Applied, the same command verifies it.
    let up = migrate_on(&db, &dir)
        .args(["up", "--to", "4"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    let output = migrate_on(&db, &dir)
        .args(["verify", "--version", "4"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}

#[test]
fn up_to_a_version_names_the_later_pending_migrations() {
    let db = database();
    let dir = example_migrations();
    let later = "up to date at 4; 3 later migration(s) pending (5, 6, 7)";
    let first = migrate_on(&db, &dir)
        .args(["up", "--to", "4"])
        .output()
        .unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(
        stdout(&first).contains("applied 4 migration(s)"),
        "{}",
        stdout(&first)
    );
    assert!(stdout(&first).contains(later), "{}", stdout(&first));
    for args in [&["up", "--to", "4"][..], &["up", "--to", "4", "--dry-run"]] {
        let again = migrate_on(&db, &dir).args(args).output().unwrap();
        assert!(again.status.success(), "{args:?}: {}", stderr(&again));
        assert!(
            stdout(&again).contains(later),
            "{args:?}: {}",
            stdout(&again)
        );
        assert!(
            !stdout(&again).contains("is up to date"),
            "{args:?}: {}",
            stdout(&again)
        );
    }
    // Nothing later: up to date is the truth.
    let all = migrate_on(&db, &dir).args(["up"]).output().unwrap();
    assert!(all.status.success(), "{}", stderr(&all));
    let at_end = migrate_on(&db, &dir)
        .args(["up", "--to", "7"])
        .output()
        .unwrap();
    assert!(
        stdout(&at_end).contains("nothing to do: the database is up to date"),
        "{}",
        stdout(&at_end)
    );
}

#[test]
fn a_refused_duration_reads_as_it_was_written() {
    for (flag, written) in [("--lock-timeout", "0"), ("--network-timeout", "0")] {
        let output = migrate()
            .args([
                "status",
                "--dir",
                "migrations",
                "--database-url",
                "postgres://u@127.0.0.1:1/x",
            ])
            .args([flag, written])
            .output()
            .unwrap();
        let text = stderr(&output);
        assert_eq!(output.status.code(), Some(2), "{flag}: {text}");
        assert!(
            text.contains(" = 0:") || text.contains(" 0 "),
            "{flag}: {text}"
        );
        assert!(!text.contains("0ns"), "{flag}: {text}");
    }
}

#[test]
fn sizes_take_postgresql_units_and_their_iec_names() {
    for size in [
        "1GiB",
        "1GB",
        "1024MiB",
        "1073741824",
        "1 TiB",
        "512kB",
        "512KiB",
    ] {
        let output = migrate()
            .args(["plan", "--dir", "migrations", "--large-table", size])
            .output()
            .unwrap();
        assert!(output.status.success(), "{size}: {}", stderr(&output));
    }
    let output = migrate()
        .args(["plan", "--dir", "migrations", "--large-table", "1 parsec"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("KiB, MiB, GiB, TiB"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn lock_retry_warnings_name_the_blocking_session() {
    use std::io::{BufRead, BufReader};

    let db = database();
    sql(&db, "CREATE TABLE t (id int PRIMARY KEY)");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_t_note.expand.sql"),
        "ALTER TABLE t ADD COLUMN IF NOT EXISTS note text;\n-- migrate:down\nALTER TABLE t DROP COLUMN IF EXISTS note;\n",
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let blocker = runtime.block_on(async {
        let (client, connection) = tokio_postgres::connect(
            &format!("{}&application_name=report-job", url(&db)),
            tokio_postgres::NoTls,
        )
        .await
        .expect("blocker");
        tokio::spawn(connection);
        client
    });
    let blocker_pid: i32 = runtime
        .block_on(blocker.query_one("SELECT pg_backend_pid()", &[]))
        .unwrap()
        .get(0);
    runtime
        .block_on(blocker.batch_execute("BEGIN; LOCK TABLE t IN ACCESS SHARE MODE"))
        .expect("lock");

    let mut command = std::process::Command::new(assert_cmd::cargo::cargo_bin("migrate"));
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        if key == "DATABASE_URL" || key.starts_with("PG") || key.starts_with("DB_") {
            command.env_remove(key);
        }
    }
    let mut child = command
        .args(["up", "--dir"])
        .arg(dir.path())
        .args(["--database-url", &url(&db), "--lock-timeout", "100ms"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr_lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut before = Vec::new();
    let warning = stderr_lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| {
            before.push(line.clone());
            line.contains("lock_timeout (55P03)")
        })
        .unwrap_or_else(|| panic!("no retry warning: {}", before.join("\n")));
    // The warning came while the blocker holds its lock: let the retry succeed.
    runtime.block_on(blocker.batch_execute("COMMIT")).unwrap();
    let status = child.wait().unwrap();
    let rest: Vec<String> = stderr_lines.map_while(Result::ok).collect();
    assert!(status.success(), "{warning}\n{}", rest.join("\n"));
    for part in [
        format!("pid {blocker_pid}"),
        "\"report-job\"".to_owned(),
        "idle in transaction".to_owned(),
        "last query started".to_owned(),
        " ago: BEGIN; LOCK TABLE t IN ACCESS SHARE MODE".to_owned(),
    ] {
        assert!(warning.contains(&part), "{part} missing: {warning}");
    }
}
