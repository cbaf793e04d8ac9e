//! `migrate verify --compare` on the example set: JSON, exit codes, a difference named.

mod common;

use common::*;

#[test]
fn verify_compare_on_the_example_set_passes_then_names_a_corrupted_row() {
    let db = database();
    let dir = example_migrations();
    migrate_on(&db, &dir)
        .args(["up", "--to", "3"])
        .assert()
        .success();
    sql(
        &db,
        "INSERT INTO users (email) SELECT 'User' || g || '@Example.com' FROM generate_series(1, 3000) g",
    );
    migrate_on(&db, &dir)
        .args(["up", "--to", "4"])
        .assert()
        .success();

    let compare = |extra: &[&str]| {
        migrate_on(&db, &dir)
            .args(["--format", "json", "verify", "--compare"])
            .args(extra)
            .output()
            .unwrap()
    };
    let clean = compare(&[]);
    assert!(clean.status.success(), "{}", stderr(&clean));
    let report = json(&clean);
    assert_eq!(report["compares"][0]["version"], 4);
    assert_eq!(report["compares"][0]["rows_compared"], 3000);
    assert_eq!(report["compares"][0]["passed"], true);

    // The dual-writing trigger keeps new rows right; a write that bypasses it does not.
    sql(
        &db,
        "ALTER TABLE users DISABLE TRIGGER users_normalize_email; \
         UPDATE users SET email = 'Changed@Example.com' WHERE id = 1234; \
         ALTER TABLE users ENABLE TRIGGER users_normalize_email",
    );
    let failed = compare(&["--version", "4", "--max-keys", "5"]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let report = json(&failed);
    assert_eq!(report["compares"][0]["differing"], 1);
    assert_eq!(report["compares"][0]["differing_keys"][0]["key"], "1234");
    assert_eq!(
        report["compares"][0]["differing_keys"][0]["difference"],
        "differs"
    );

    // Human output names the key too; a version without a compare is a clear error.
    let human = migrate_on(&db, &dir)
        .args(["verify", "--compare"])
        .output()
        .unwrap();
    assert_eq!(human.status.code(), Some(1));
    assert!(stdout(&human).contains("1234"), "{}", stdout(&human));
    let wrong = migrate_on(&db, &dir)
        .args(["verify", "--compare", "--version", "3"])
        .output()
        .unwrap();
    assert_eq!(wrong.status.code(), Some(1));
    assert!(
        stderr(&wrong).contains("migrate:compare"),
        "{}",
        stderr(&wrong)
    );

    // The corrupted key queued as a failed dual write: status counts it, reconcile replays
    // it with the compare's mapping, and the compare passes.
    sql(
        &db,
        "CREATE TABLE IF NOT EXISTS schema_migrations_reconcile (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         version bigint NOT NULL, key text NOT NULL, flag text NOT NULL, error text, queued_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO schema_migrations_reconcile (version, key, flag) VALUES (4, '1234', 'users.email_normalized')",
    );
    let status = json(
        &migrate_on(&db, &dir)
            .args(["--format", "json", "status"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["reconcile_queue"]["keys"], 1);
    assert_eq!(status["reconcile_queue"]["by_version"][0]["version"], 4);
    let reconciled = migrate_on(&db, &dir)
        .args(["--format", "json", "reconcile"])
        .output()
        .unwrap();
    assert!(reconciled.status.success(), "{}", stderr(&reconciled));
    let report = json(&reconciled);
    assert_eq!(report["reconciled"][0]["version"], 4);
    assert_eq!(report["reconciled"][0]["changed"], 1);
    let status = json(
        &migrate_on(&db, &dir)
            .args(["--format", "json", "status"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["reconcile_queue"]["keys"], 0);
    compare(&[])
        .status
        .success()
        .then_some(())
        .expect("the compare passes after reconcile");
}

/// Two backfills, each declaring a compare of its own pair of tables.
fn write_two_compares(dir: &std::path::Path) {
    let files = [
        (
            "0001_tables.sql",
            "CREATE TABLE IF NOT EXISTS a_src (id bigint PRIMARY KEY, v text, note text);\n\
             CREATE TABLE IF NOT EXISTS a_dst (id bigint NOT NULL, v text);\n\
             CREATE TABLE IF NOT EXISTS b_src (id bigint PRIMARY KEY, v text, note text);\n\
             CREATE TABLE IF NOT EXISTS b_dst (id bigint PRIMARY KEY, v text);\n\
             -- migrate:down\nDROP TABLE IF EXISTS a_src, a_dst, b_src, b_dst;\n",
        ),
        (
            "0002_a.backfill.sql",
            "-- migrate:backfill table=a_src key=id\n\
             -- migrate:compare source=a_src target=a_dst key=id columns=v\n\
             UPDATE a_src SET note = '' WHERE note IS NULL;\n-- migrate:down\n",
        ),
        (
            "0003_b.backfill.sql",
            "-- migrate:backfill table=b_src key=id\n\n\
             -- migrate:compare source=b_src target=b_dst key=id columns=v\n\
             UPDATE b_src SET note = '' WHERE note IS NULL;\n-- migrate:down\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
}

#[test]
fn a_failing_compare_is_named_by_file_and_line_and_the_others_still_run() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    write_two_compares(dir.path());
    migrate_on(&db, dir.path()).arg("up").assert().success();
    // a: a key twice in the target, which the compare cannot judge; b: one wrong row.
    sql(
        &db,
        "INSERT INTO a_src SELECT g, 'v' FROM generate_series(1, 100) g; \
         INSERT INTO a_dst SELECT id, v FROM a_src; INSERT INTO a_dst VALUES (5, 'v'); \
         INSERT INTO b_src SELECT g, 'v' FROM generate_series(1, 100) g; \
         INSERT INTO b_dst SELECT id, v FROM b_src; UPDATE b_dst SET v = 'w' WHERE id = 42",
    );
    let output = migrate_on(&db, dir.path())
        .args(["--format", "json", "verify", "--compare"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let report = json(&output);
    assert_eq!(report["compares"].as_array().map(Vec::len), Some(1));
    assert_eq!(report["compares"][0]["version"], 3);
    assert_eq!(report["compares"][0]["differing_keys"][0]["key"], "42");
    assert_eq!(report["errors"][0]["version"], 2);
    let error = report["errors"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("0002_a.backfill.sql:2")
            && error.contains("target a_dst")
            && error.contains("5 (2 rows)"),
        "{error}"
    );

    let human = migrate_on(&db, dir.path())
        .args(["verify", "--compare"])
        .output()
        .unwrap();
    assert_eq!(human.status.code(), Some(1));
    assert!(stdout(&human).contains("42"), "{}", stdout(&human));
    assert!(
        stderr(&human).contains("0002_a.backfill.sql:2 (migration 2)"),
        "{}",
        stderr(&human)
    );

    // Reconcile names a queued key that is no bigint, replays the others, and keeps it.
    sql(
        &db,
        "CREATE TABLE IF NOT EXISTS schema_migrations_reconcile (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
         version bigint NOT NULL, key text NOT NULL, flag text NOT NULL, error text, queued_at timestamptz NOT NULL DEFAULT now()); \
         INSERT INTO schema_migrations_reconcile (version, key, flag) VALUES (3, 'abc', 'f'), (3, '42', 'f')",
    );
    let reconciled = migrate_on(&db, dir.path())
        .args(["reconcile", "--version", "3"])
        .output()
        .unwrap();
    assert_eq!(reconciled.status.code(), Some(1), "{}", stderr(&reconciled));
    assert!(
        stderr(&reconciled).contains("key abc of version 3 cannot be replayed"),
        "{}",
        stderr(&reconciled)
    );
    let status = json(
        &migrate_on(&db, dir.path())
            .args(["--format", "json", "status"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["reconcile_queue"]["keys"], 0);
    assert_eq!(status["reconcile_queue"]["unreplayable"], 1);
    let output = migrate_on(&db, dir.path())
        .args(["--format", "json", "verify", "--compare", "--version", "3"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
}
