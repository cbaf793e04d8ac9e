//! `plan --database-url`: each pending statement with the size of the table it locks, and
//! the statements that block the application while a table over `--large-table` is scanned
//! or rewritten, flagged.

mod common;

use common::*;
use predicates::prelude::*;

#[test]
fn statements_blocking_a_large_table_during_a_scan_are_flagged() {
    let db = database();
    migrate_on(&db, &example_migrations())
        .args(["up", "--to", "5"])
        .assert()
        .success();
    sql(
        &db,
        "INSERT INTO users (email) SELECT 'u' || g || '@example.com' \
         FROM generate_series(1, 20000) g; ANALYZE users",
    );
    let bytes: u64 = sql(&db, "SELECT pg_total_relation_size('users')")
        .parse()
        .unwrap();
    assert!(bytes > 1 << 20, "{bytes}");

    let output = migrate_on(&db, &example_migrations())
        .args(["--format", "json", "plan", "--large-table", "1MB"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let plan = json(&output);
    assert_eq!(plan["large_table_bytes"], 1 << 20);
    let statements: Vec<&serde_json::Value> = plan["pending"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["statements"].as_array().unwrap())
        .collect();
    let set_not_null = statements
        .iter()
        .find(|s| s["sql"].as_str().unwrap().contains("SET NOT NULL"))
        .expect("0007's SET NOT NULL");
    assert_eq!(set_not_null["large_table_work"], true);
    assert_eq!(set_not_null["table_sizes"][0]["table"], "users");
    assert_eq!(set_not_null["table_sizes"][0]["total_bytes"], bytes);
    let rows = set_not_null["table_sizes"][0]["rows_estimate"]
        .as_f64()
        .unwrap();
    assert!((19_000.0..=21_000.0).contains(&rows), "{rows}");
    // VALIDATE scans without blocking: not flagged, whatever the size.
    let validate = statements
        .iter()
        .find(|s| {
            s["sql"]
                .as_str()
                .unwrap()
                .contains("VALIDATE CONSTRAINT users")
        })
        .expect("0006's VALIDATE");
    assert_eq!(validate["large_table_work"], false);
    assert_eq!(
        statements
            .iter()
            .filter(|s| s["large_table_work"] == true)
            .count(),
        1
    );

    migrate_on(&db, &example_migrations())
        .args(["plan", "--large-table", "1MB"])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "LARGE: blocks reads and writes while users",
        ))
        .stdout(predicate::str::contains("1 statement(s) hold a lock"));
    migrate_on(&db, &example_migrations())
        .args(["plan", "--large-table", "1GB"])
        .assert()
        .success()
        .stdout(predicate::str::contains("LARGE").not());
    migrate_on(&db, &example_migrations())
        .args(["plan", "--large-table", "lots"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("invalid size `lots`"));
}
