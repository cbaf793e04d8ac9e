//! `migrate baseline --version V`: a database whose schema was built by other means gets
//! history rows up to V, marked baselined, after its schema is compared with the files'.

mod common;

use std::path::{Path, PathBuf};

use common::{database, json, migrate_on, sql, stderr, stdout};
use migrate_scratch::ScratchDatabase;

fn folder() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/layouts/migrate")
}

/// Migrations up to `to` applied by "other means": migrate under a throwaway history table,
/// which is then dropped.
fn built_by_other_means(db: &ScratchDatabase, to: u64) {
    let output = migrate_on(db, &folder())
        .args([
            "up",
            "--to",
            &to.to_string(),
            "--history-table",
            "built_by_hand",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    sql(
        db,
        "DROP TABLE built_by_hand; DROP TABLE IF EXISTS built_by_hand_partial",
    );
}

fn states(db: &ScratchDatabase) -> Vec<(String, String)> {
    let output = migrate_on(db, &folder())
        .args(["status", "--format", "json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    json(&output)["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["state"].as_str().unwrap().to_owned(),
                m["detail"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

#[test]
fn a_database_built_by_other_means_is_baselined_then_up_continues() {
    let db = database();
    built_by_other_means(&db, 2);
    let output = migrate_on(&db, &folder())
        .args(["baseline", "--version", "2"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("the schema matches"),
        "{}",
        stdout(&output)
    );
    let found = states(&db);
    assert_eq!(found[0].0, "applied");
    assert!(found[1].1.contains("baselined"), "{found:?}");
    assert_eq!(found[2].0, "pending");
    let up = migrate_on(&db, &folder())
        .args(["up", "--format", "json"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    assert_eq!(json(&up)["applied"].as_array().unwrap().len(), 1);
    assert_eq!(
        sql(
            &db,
            "SELECT string_agg(version || ':' || baselined, ',' ORDER BY version) FROM schema_migrations"
        ),
        "1:true,2:true,3:false"
    );
    // The history is no longer empty: a second baseline is refused.
    let again = migrate_on(&db, &folder())
        .args(["baseline", "--version", "3"])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already has 3 row(s)"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn a_schema_that_differs_is_refused_with_its_diff_unless_trusted() {
    let db = database();
    built_by_other_means(&db, 2);
    sql(&db, "ALTER TABLE users ADD COLUMN nickname text");
    let output = migrate_on(&db, &folder())
        .args(["baseline", "--version", "2"])
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(4),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("+     nickname text"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        sql(&db, "SELECT to_regclass('schema_migrations') IS NULL"),
        "t"
    );
    // A version past what the database has: the files' column of 3 is missing here.
    let output = migrate_on(&db, &folder())
        .args(["baseline", "--version", "3"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4));
    assert!(
        stderr(&output).contains("-     last_seen timestamp without time zone"),
        "{}",
        stderr(&output)
    );
    let output = migrate_on(&db, &folder())
        .args(["baseline", "--version", "2", "--trust"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("WARNING: --trust"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM schema_migrations WHERE baselined"
        ),
        "2"
    );
}

#[test]
fn a_version_not_in_the_set_is_refused() {
    let db = database();
    let output = migrate_on(&db, &folder())
        .args(["baseline", "--version", "7"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("version 7 is not a migration of the set"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_older_history_table_is_upgraded_once_and_read_before() {
    let db = database();
    let up = migrate_on(&db, &folder())
        .args(["up", "--to", "1"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{}", stderr(&up));
    // The table as releases before `baselined` created it.
    sql(&db, "ALTER TABLE schema_migrations DROP COLUMN baselined");
    assert_eq!(states(&db)[0], ("applied".to_owned(), String::new()));
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'schema_migrations'::regclass AND attname = 'baselined'"
        ),
        "0",
        "status only reads"
    );
    for _ in 0..2 {
        let up = migrate_on(&db, &folder()).arg("up").output().unwrap();
        assert!(up.status.success(), "{}", stderr(&up));
    }
    assert_eq!(
        sql(
            &db,
            "SELECT string_agg(version || ':' || baselined, ',' ORDER BY version) FROM schema_migrations"
        ),
        "1:false,2:false,3:false"
    );
}
