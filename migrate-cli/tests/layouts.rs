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

/// Writes `files` (path under the folder, text) into a new temporary folder.
fn folder_of(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    dir
}

fn table_exists(db: &migrate_scratch::ScratchDatabase, table: &str) -> bool {
    sql(db, &format!("SELECT to_regclass('{table}') IS NOT NULL")) == "t"
}

/// A misspelled `-- migrate:down` must not turn the down part into more of the up part: it is
/// refused by lint and by `up`, naming the file and line, and nothing runs.
#[test]
fn a_misspelled_directive_is_refused_and_nothing_runs() {
    for (layout, name, up_marker) in [
        ("migrate", "0001_t.sql", "-- migrate:up\n"),
        ("dbmate", "20240101000001_t.sql", "-- migrate:up\n"),
        ("migrate", "0001_t.sql", ""),
    ] {
        for near_miss in ["-- Migrate:down", "--migrate:down", "-- migrate: down"] {
            let text = format!(
                "{up_marker}CREATE TABLE IF NOT EXISTS t (id int);\n{near_miss}\nDROP TABLE IF EXISTS t;\n"
            );
            let dir = folder_of(&[(name, &text)]);
            let line = if up_marker.is_empty() { 2 } else { 3 };
            let place = format!("{name}:{line}:1");
            let (code, found) = findings(dir.path(), &["--layout", layout]);
            assert_eq!(code, 3, "{layout} {near_miss:?}: {found:?}");
            assert!(
                found.iter().any(|(file, code, message)| file == name
                    && code == "bad-directive"
                    && message.contains(near_miss)),
                "{layout} {near_miss:?}: {found:?}"
            );
            let db = database();
            let output = migrate_on(&db, dir.path())
                .args(["up", "--layout", layout])
                .output()
                .unwrap();
            assert!(!output.status.success(), "{layout} {near_miss:?}");
            assert!(
                stderr(&output).contains(&place),
                "{layout} {near_miss:?}: {}",
                stderr(&output)
            );
            assert!(!table_exists(&db, "t"), "{layout} {near_miss:?}: up ran");
        }
    }
}

/// In a layout with the down part in a file of its own, a failing down statement is reported
/// in that file at its own line; an up file whose last statement has no `;` (valid for
/// diesel) is read and applied.
#[test]
fn two_file_layouts_name_the_down_file_and_take_an_up_file_without_a_final_semicolon() {
    let up = "CREATE TABLE IF NOT EXISTS t (id int);\nCREATE OR REPLACE FUNCTION f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$";
    let down = "-- undo\nDROP TABLE IF EXISTS t;\nSELECT * FROM no_such_table;\n";
    for (layout, up_name, down_name) in [
        (
            "diesel",
            "2024-01-01-000001_t/up.sql",
            "2024-01-01-000001_t/down.sql",
        ),
        ("golang-migrate", "000001_t.up.sql", "000001_t.down.sql"),
        ("sqlx", "1_t.up.sql", "1_t.down.sql"),
    ] {
        let dir = folder_of(&[(up_name, up), (down_name, down)]);
        let db = database();
        let output = migrate_on(&db, dir.path())
            .args(["up", "--layout", layout])
            .output()
            .unwrap();
        assert!(output.status.success(), "{layout}: {}", stderr(&output));
        assert!(table_exists(&db, "t"), "{layout}");
        let output = migrate_on(&db, dir.path())
            .args(["down", "--to", "0", "--layout", layout])
            .output()
            .unwrap();
        assert!(!output.status.success(), "{layout}");
        let message = stderr(&output);
        assert!(
            message.contains(&format!("{down_name}:3:1")) && message.contains("42P01"),
            "{layout}: {message}"
        );
        assert!(
            !message.contains(&format!("{up_name}:")),
            "{layout}: {message}"
        );
        // The down part's transaction rolled back: the table is still there.
        assert!(table_exists(&db, "t"), "{layout}");
    }
}
