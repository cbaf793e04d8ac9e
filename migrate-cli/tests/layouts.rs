//! Other tools' layouts: one folder per tool under `tests/layouts/`, each written in that
//! tool's documented format with the same SQL (a table, a concurrent index, a column whose
//! type draws a warning). Each is linted with the same findings, checked on a scratch
//! cluster and applied; the same unsafe statement is refused in each.

mod common;

use std::path::{Path, PathBuf};

use common::{database, json, migrate, migrate_on, sql, stderr, stdout};

/// Each folder, with a file of it that holds the third migration's up part.
const LAYOUTS: [(&str, &str); 7] = [
    ("migrate", "0003_users_last_seen.sql"),
    ("sqlx", "0003_users_last_seen.up.sql"),
    ("golang-migrate", "000003_users_last_seen.up.sql"),
    ("dbmate", "20240101000003_users_last_seen.sql"),
    ("refinery", "V3__users_last_seen.sql"),
    ("flyway", "V3__users_last_seen.sql"),
    ("diesel", "2024-01-01-000003_users_last_seen/up.sql"),
];

fn folder(layout: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/layouts")
        .join(layout)
}

/// A copy of a layout's folder (sub-folders included), to add files to.
fn copy_of(layout: &str) -> tempfile::TempDir {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).unwrap();
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    copy(&folder(layout), dir.path());
    dir
}

/// `(file, code, message)` of each finding of `migrate lint --format json`, and its exit code.
fn findings(dir: &Path, extra: &[&str]) -> (i32, Vec<(String, String, String)>) {
    let output = migrate()
        .args(["lint", "--format", "json"])
        .args(extra)
        .arg(dir)
        .output()
        .unwrap();
    let report = json(&output);
    let found = report["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            let file = d["file"].as_str().unwrap();
            let relative = file
                .strip_prefix(&format!("{}/", dir.display()))
                .unwrap_or(file);
            (
                relative.to_owned(),
                d["code"].as_str().unwrap().to_owned(),
                d["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    (output.status.code().unwrap(), found)
}

#[test]
fn the_same_sql_gives_the_same_findings_in_every_layout() {
    let (code, ours) = findings(&folder("migrate"), &[]);
    assert_eq!(code, 0);
    assert_eq!(ours.len(), 1, "{ours:?}");
    for (layout, third) in LAYOUTS {
        // Detected from the names, and forced: the same reading.
        for forced in [&[][..], &["--layout", layout][..]] {
            let (code, found) = findings(&folder(layout), forced);
            assert_eq!(code, 0, "{layout}: {found:?}");
            let expected: Vec<_> = ours
                .iter()
                .map(|(_, code, message)| (third.to_owned(), code.clone(), message.clone()))
                .collect();
            assert_eq!(found, expected, "{layout} {forced:?}");
        }
    }
}

#[test]
fn the_same_unsafe_statement_is_refused_in_every_layout() {
    let unsafe_sql = "CREATE INDEX IF NOT EXISTS users_email_lock ON users (email);\n";
    for (layout, _) in LAYOUTS {
        let dir = copy_of(layout);
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        let down = "DROP INDEX CONCURRENTLY IF EXISTS users_email_lock;\n";
        let file = match layout {
            "migrate" => {
                write(
                    "0004_lock.sql",
                    &format!("{unsafe_sql}-- migrate:down\n{down}"),
                );
                "0004_lock.sql"
            }
            "sqlx" | "golang-migrate" => {
                write("0004_lock.up.sql", unsafe_sql);
                write("0004_lock.down.sql", down);
                "0004_lock.up.sql"
            }
            "dbmate" => {
                write(
                    "20240101000004_lock.sql",
                    &format!("-- migrate:up\n{unsafe_sql}-- migrate:down\n{down}"),
                );
                "20240101000004_lock.sql"
            }
            "refinery" | "flyway" => {
                write("V4__lock.sql", unsafe_sql);
                "V4__lock.sql"
            }
            "diesel" => {
                write("2024-01-01-000004_lock/up.sql", unsafe_sql);
                write("2024-01-01-000004_lock/down.sql", down);
                "2024-01-01-000004_lock/up.sql"
            }
            other => unreachable!("{other}"),
        };
        let (code, found) = findings(dir.path(), &[]);
        assert_eq!(code, 3, "{layout}: {found:?}");
        assert!(
            found
                .iter()
                .any(|(f, code, _)| f == file && code == "require-concurrent-index"),
            "{layout}: {found:?}"
        );
    }
}

#[test]
fn a_mixed_folder_is_refused_naming_its_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("V1__a.sql"), "SELECT 1;").unwrap();
    std::fs::write(dir.path().join("2_b.up.sql"), "SELECT 1;").unwrap();
    std::fs::write(dir.path().join("2_b.down.sql"), "SELECT 1;").unwrap();
    let (code, found) = findings(dir.path(), &[]);
    assert_eq!(code, 3);
    assert_eq!(found.len(), 3, "{found:?}");
    for (_, code, message) in &found {
        assert_eq!(code, "layout");
        assert!(
            message.contains("V1__a.sql") && message.contains("2_b.up.sql"),
            "{message}"
        );
    }
    // Forced, the files of the other layout are named as not fitting it.
    let (code, found) = findings(dir.path(), &["--layout", "flyway"]);
    assert_eq!(code, 3);
    let files: Vec<&str> = found.iter().map(|(f, _, _)| f.as_str()).collect();
    assert_eq!(files, ["2_b.down.sql", "2_b.up.sql"], "{found:?}");
}

#[test]
fn an_unknown_layout_is_a_usage_error() {
    let output = migrate()
        .args(["lint", "--layout", "liquibase"])
        .arg(folder("migrate"))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("sqlx"), "{}", stderr(&output));
}

#[test]
fn every_layout_is_checked_and_applied() {
    for (layout, _) in LAYOUTS {
        let output = migrate().arg("check").arg(folder(layout)).output().unwrap();
        assert!(
            output.status.success(),
            "{layout}: {}{}",
            stdout(&output),
            stderr(&output)
        );
        let db = database();
        let output = migrate_on(&db, &folder(layout)).arg("up").output().unwrap();
        assert!(output.status.success(), "{layout}: {}", stderr(&output));
        assert_eq!(
            sql(
                &db,
                "SELECT string_agg(attname, ',' ORDER BY attnum) FROM pg_attribute \
                 WHERE attrelid = 'users'::regclass AND attnum > 0"
            ),
            "id,email,last_seen",
            "{layout}"
        );
        assert_eq!(
            sql(
                &db,
                "SELECT indisvalid FROM pg_index WHERE indexrelid = 'users_email'::regclass"
            ),
            "t"
        );
        let output = migrate_on(&db, &folder(layout))
            .args(["status", "--format", "json"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{layout}: {}", stderr(&output));
        let status = json(&output);
        let states: Vec<&str> = status["migrations"]
            .as_array()
            .unwrap_or_else(|| panic!("{status}"))
            .iter()
            .map(|m| m["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["applied"; 3], "{layout}");
    }
}
