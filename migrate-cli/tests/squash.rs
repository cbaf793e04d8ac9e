//! `migrate squash --to V`: the files up to V replaced by one migration made from
//! `pg_dump --schema-only`, proven before it is written; databases that applied the files
//! read it as applied, those that applied some are refused, fresh ones run it.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{
    cluster, database, has_extension, json, migrate, migrate_on, schema_of, sql, stderr, stdout,
};
use migrate_scratch::ScratchDatabase;

/// Five migrations (the set needs pgcrypto: the tests that apply it skip on a build without it):
/// an extension and an enum; tables with an identity column, a serial, a
/// sequence, CHECK, UNIQUE and FOREIGN KEY constraints and an index; a plpgsql function, a
/// trigger and a view; a unique expression index built concurrently; a later column.
fn original() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/squash_set")
}

fn copy_of(from: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

/// Every file of a folder with its bytes.
fn contents(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect()
}

fn names(dir: &Path) -> Vec<String> {
    contents(dir).into_keys().collect()
}

fn run(command: &mut assert_cmd::Command) -> std::process::Output {
    let output = command.output().unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    output
}

fn squash(dir: &Path, to: &str) -> std::process::Output {
    migrate()
        .args(["--dir"])
        .arg(dir)
        .args(["squash", "--to", to])
        .output()
        .unwrap()
}

fn up(db: &ScratchDatabase, dir: &Path, args: &[&str]) -> serde_json::Value {
    json(&run(migrate_on(db, dir)
        .args(["up", "--format", "json"])
        .args(args)))
}

/// (version, state, name) per migration of `status`.
fn states(db: &ScratchDatabase, dir: &Path) -> Vec<(u64, String, String)> {
    let status = json(&run(
        migrate_on(db, dir).args(["status", "--format", "json"])
    ));
    status["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["version"].as_u64().unwrap(),
                m["state"].as_str().unwrap().to_owned(),
                m["name"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

fn history(db: &ScratchDatabase) -> String {
    sql(
        db,
        "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations",
    )
}

#[test]
fn a_squash_replaces_the_files_and_builds_the_same_schema() {
    if !has_extension("pgcrypto") {
        return;
    }
    let dir = copy_of(&original());
    let output = squash(dir.path(), "4");
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("removed 0001_extension_and_enum.sql, 0002_accounts.sql"),
        "{}",
        stdout(&output)
    );
    assert_eq!(
        names(dir.path()),
        ["0004_squashed.sql", "0005_accounts_nickname.sql"]
    );
    let text = std::fs::read_to_string(dir.path().join("0004_squashed.sql")).unwrap();
    assert!(text.contains("\n-- migrate:replaces 1,2,3,4\n"), "{text}");
    for object in [
        "CREATE EXTENSION IF NOT EXISTS pgcrypto",
        "CREATE TYPE public.mood AS ENUM",
        "ADD GENERATED ALWAYS AS IDENTITY",
        "CREATE SEQUENCE public.invoice_numbers",
        "CREATE FUNCTION public.touch_updated_at()",
        "-- keep the row's time current\n\n",
        "CREATE TRIGGER accounts_touch",
        "CREATE VIEW public.account_totals",
        "CREATE UNIQUE INDEX accounts_email_key",
        "FOREIGN KEY (account_id)",
        "CHECK ((POSITION",
    ] {
        assert!(text.contains(object), "{object} missing:\n{text}");
    }
    assert!(!text.contains("OWNER TO"), "{text}");
    assert!(!text.contains("schema_migrations"), "{text}");

    // `migrate check` passes on the new folder.
    run(migrate().args(["check"]).arg(dir.path()));

    // A fresh database from the squash has the schema of one from the original files.
    let from_files = database();
    up(&from_files, &original(), &["--to", "4"]);
    let from_squash = database();
    let applied = up(&from_squash, dir.path(), &["--to", "4"]);
    assert_eq!(applied["applied"].as_array().unwrap().len(), 1, "{applied}");
    assert_eq!(
        schema_of(cluster(), &from_files),
        schema_of(cluster(), &from_squash)
    );
    assert_eq!(history(&from_squash), "4");
    // The squash's objects work: the trigger fires, the identity and sequences number rows.
    sql(
        &from_squash,
        "INSERT INTO accounts (email) VALUES ('a@example.com'); \
         INSERT INTO invoices (account_id, total) VALUES (1, 2.50); \
         UPDATE accounts SET email = 'b@example.com'",
    );
    assert_eq!(
        sql(&from_squash, "SELECT number || ':' || total FROM invoices"),
        "1000:2.50"
    );
    // Later migrations still apply after it.
    up(&from_squash, dir.path(), &[]);
    assert_eq!(history(&from_squash), "4,5");
}

#[test]
fn a_database_that_applied_the_replaced_files_reads_the_squash_as_applied() {
    if !has_extension("pgcrypto") {
        return;
    }
    let db = database();
    up(&db, &original(), &["--to", "4"]);
    let dir = copy_of(&original());
    let output = squash(dir.path(), "4");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(names(dir.path())[0], "0004_squashed.sql");

    // Nothing to do up to the squash, no drift; status names the squash applied.
    let nothing = up(&db, dir.path(), &["--to", "4"]);
    assert!(
        nothing["applied"].as_array().unwrap().is_empty(),
        "{nothing}"
    );
    // `repair` sees no drift either: the last replaced row keeps its file's checksum.
    let checksums = "SELECT string_agg(checksum, ',' ORDER BY version) FROM schema_migrations";
    let before = sql(&db, checksums);
    run(migrate_on(&db, dir.path()).args(["repair"]));
    assert_eq!(sql(&db, checksums), before);
    let found = states(&db, dir.path());
    assert_eq!(found[0].0, 4);
    assert_eq!(found[0].1, "applied", "{found:?}");
    assert_eq!(found[0].2, "squashed", "{found:?}");
    assert_eq!(found[1].1, "pending", "{found:?}");
    // The history keeps the rows of the files; later migrations apply and revert.
    let later = up(&db, dir.path(), &[]);
    assert_eq!(later["applied"].as_array().unwrap().len(), 1, "{later}");
    assert_eq!(history(&db), "1,2,3,4,5");
    run(migrate_on(&db, dir.path()).args(["down", "--to", "4"]));
    assert_eq!(history(&db), "1,2,3,4");
    // The squash has no down part: reverting it is refused, nothing changes.
    let down = migrate_on(&db, dir.path())
        .args(["down", "--to", "0"])
        .output()
        .unwrap();
    assert!(!down.status.success());
    assert!(
        stderr(&down).contains("cannot revert migrations [4]: they have no `-- migrate:down` part"),
        "{}",
        stderr(&down)
    );
    assert_eq!(history(&db), "1,2,3,4");
}

#[test]
fn a_database_that_applied_only_some_replaced_versions_is_refused() {
    if !has_extension("pgcrypto") {
        return;
    }
    let db = database();
    up(&db, &original(), &["--to", "2"]);
    let dir = copy_of(&original());
    assert!(squash(dir.path(), "4").status.success());
    let before = schema_of(cluster(), &db);
    for command in [vec!["up"], vec!["status"]] {
        let output = migrate_on(&db, dir.path()).args(&command).output().unwrap();
        assert_eq!(
            output.status.code(),
            Some(4),
            "{command:?}: {}",
            stderr(&output)
        );
        assert!(
            stderr(&output).contains(
                "migration 4 squashes versions this database applied only in part (missing: [3, 4])"
            ),
            "{}",
            stderr(&output)
        );
    }
    assert_eq!(history(&db), "1,2");
    assert_eq!(schema_of(cluster(), &db), before);
}

#[test]
fn a_squash_of_a_squash_keeps_every_database_working() {
    if !has_extension("pgcrypto") {
        return;
    }
    let dir = copy_of(&original());
    assert!(squash(dir.path(), "4").status.success());
    // One database applied the original files, one the first squash and then 5.
    let from_files = database();
    up(&from_files, &original(), &[]);
    let from_first = database();
    up(&from_first, dir.path(), &[]);
    let output = squash(dir.path(), "5");
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(names(dir.path()), ["0005_squashed.sql"]);
    let text = std::fs::read_to_string(dir.path().join("0005_squashed.sql")).unwrap();
    assert!(text.contains("\n-- migrate:replaces 1,2,3,4,5\n"), "{text}");
    for db in [&from_files, &from_first] {
        let nothing = up(db, dir.path(), &[]);
        assert!(
            nothing["applied"].as_array().unwrap().is_empty(),
            "{nothing}"
        );
        assert_eq!(states(db, dir.path())[0].1, "applied");
    }
    let fresh = database();
    up(&fresh, dir.path(), &[]);
    assert_eq!(
        schema_of(cluster(), &fresh),
        schema_of(cluster(), &from_files)
    );
}

#[test]
fn dry_run_prints_the_squash_and_writes_nothing() {
    if !has_extension("pgcrypto") {
        return;
    }
    let dir = copy_of(&original());
    let before = contents(dir.path());
    let output = migrate()
        .args(["--dir"])
        .arg(dir.path())
        .args(["squash", "--to", "3", "--dry-run"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("-- migrate:replaces 1,2,3\n"),
        "{}",
        stdout(&output)
    );
    assert!(
        stderr(&output).contains(
            "would write {}/0003_squashed.sql and remove 0001_extension_and_enum.sql, \
             0002_accounts.sql, 0003_touch_trigger.sql"
                .replace("{}", &dir.path().to_string_lossy())
                .as_str()
        ),
        "{}",
        stderr(&output)
    );
    assert_eq!(contents(dir.path()), before);
}

#[test]
fn refusals_leave_the_folder_byte_identical() {
    let refused = |dir: &Path, to: &str, expected: &str| {
        let before = contents(dir);
        let output = squash(dir, to);
        assert!(!output.status.success(), "{}", stdout(&output));
        assert!(stderr(&output).contains(expected), "{}", stderr(&output));
        assert_eq!(contents(dir), before);
    };
    let dir = copy_of(&original());
    refused(
        dir.path(),
        "6",
        "--to 6 is not a version of the set (its versions: 1, 2, 3, 4, 5)",
    );
    refused(dir.path(), "1", "1 is the first migration of the set");

    // Rows a schema dump would lose: a seed INSERT, a COPY, a backfill.
    std::fs::write(
        dir.path().join("0003_touch_trigger.sql"),
        std::fs::read_to_string(original().join("0003_touch_trigger.sql"))
            .unwrap()
            .replace(
                "CREATE OR REPLACE VIEW",
                "INSERT INTO accounts (email) VALUES ('seed@example.com');\nCREATE OR REPLACE VIEW",
            ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0006_fill.backfill.sql"),
        "-- migrate:backfill table=accounts key=id\n\
         UPDATE accounts SET nickname = email WHERE nickname IS NULL;\n",
    )
    .unwrap();
    refused(
        dir.path(),
        "6",
        "write rows, which a schema-only dump does not carry: 0003_touch_trigger.sql \
         (INSERT at line 12), 0006_fill.backfill.sql (a backfill)",
    );

    // Privileges the squash would leave out.
    std::fs::write(
        dir.path().join("0005_accounts_nickname.sql"),
        "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS nickname text;\n\
         GRANT SELECT ON accounts TO PUBLIC;\n",
    )
    .unwrap();
    refused(
        dir.path(),
        "5",
        "; and change roles, owners or privileges, which a squash leaves out (the scratch \
         cluster's are not yours): 0005_accounts_nickname.sql (GRANT at line 2)",
    );

    // Another tool's layout.
    let sqlx = copy_of(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/layouts/sqlx"));
    let first = names(sqlx.path())
        .into_iter()
        .find(|n| n.ends_with(".sql"))
        .unwrap();
    let version: String = first.chars().take_while(char::is_ascii_digit).collect();
    refused(sqlx.path(), &version, "is in sqlx's layout");
}
