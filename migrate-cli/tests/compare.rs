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
