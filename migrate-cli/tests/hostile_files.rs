//! A catalogue of hostile migration folders, each generated in a temporary directory beside a
//! valid first migration, through `migrate lint` and through the runtime path (`migrate up`
//! on its own scratch database).
//!
//! A folder that cannot be a migration set gives exit 3 with a diagnostic naming the file,
//! line and column in both, and `up` changes nothing (it refuses before connecting). A folder
//! that is unusual but valid (byte order mark, CRLF line endings, a symlinked file, the
//! largest version, 10 MB in one file, 5,000 files) lints clean and applies.
//!
//! Symlinks are followed: a symlink to a file is read like the file it points to (its bytes
//! are what is linted, checksummed and applied, as `include_bytes!` in the macro reads
//! them). Entries named `*.sql` that are not files after following links (a directory, a
//! dangling link, a named pipe, a device) are errors naming the entry, never skipped and
//! never read.

mod common;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use migrate_scratch::ScratchDatabase;

const BASE_FILE: &str = "0001_base.sql";
const BASE_SQL: &str = "CREATE TABLE IF NOT EXISTS base (id bigint PRIMARY KEY);\n";

/// A folder with the base migration and `files` (name, bytes).
fn folder(files: &[(&[u8], &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join(BASE_FILE), BASE_SQL).expect("base");
    for (name, bytes) in files {
        std::fs::write(dir.path().join(OsStr::from_bytes(name)), bytes).expect("write");
    }
    dir
}

/// `migrate ARGS` run inside `dir` with `--dir .`, so diagnostics show bare file names.
fn migrate_in(
    dir: &Path,
    database: Option<&ScratchDatabase>,
    args: &[&str],
) -> std::process::Output {
    let mut command = migrate();
    command.current_dir(dir).args(["--dir", "."]);
    if let Some(database) = database {
        command.arg("--database-url").arg(url(database));
    }
    command.args(args).output().expect("migrate")
}

/// Tables outside the system schemas, the runtime's own included, in byte order.
fn user_tables(database: &ScratchDatabase) -> String {
    sql(
        database,
        "SELECT coalesce(string_agg(tablename, ',' ORDER BY tablename COLLATE \"C\"), '') \
         FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
}

/// [`user_tables`] without the runtime's tables (`schema_migrations*`).
fn migrated_tables(database: &ScratchDatabase) -> String {
    user_tables(database)
        .split(',')
        .filter(|name| !name.starts_with("schema_migrations"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `migrate lint` and `migrate up` both refuse `dir` with exit 3, printing every line of
/// `expected` (`file:line:col: error[code]: message`), without a panic; `up` creates nothing.
fn assert_refused(case: &str, dir: &Path, expected: &[&str]) {
    let lint = migrate_in(dir, None, &["lint"]);
    let (out, err) = (stdout(&lint), stderr(&lint));
    assert_eq!(lint.status.code(), Some(3), "{case}: lint\n{out}{err}");
    for line in expected {
        assert!(
            out.lines().any(|l| l == *line),
            "{case}: lint lacks {line:?}\n{out}"
        );
    }
    let db = database();
    let up = migrate_in(dir, Some(&db), &["up"]);
    let err = stderr(&up);
    assert_eq!(up.status.code(), Some(3), "{case}: up\n{err}");
    for line in expected {
        assert!(
            err.lines().any(|l| l == *line),
            "{case}: up lacks {line:?}\n{err}"
        );
    }
    assert!(err.contains("error-level finding(s)"), "{case}: {err}");
    for output in [&lint, &up] {
        let all = format!("{}{}", stdout(output), stderr(output));
        assert!(
            !all.contains("panicked") && !all.contains("overflowed"),
            "{case}: {all}"
        );
    }
    assert_eq!(user_tables(&db), "", "{case}: up changed the database");
}

/// `migrate lint` passes and `migrate up` applies `dir`, creating `tables` (sorted, with
/// `base`). Returns how long lint and up took.
fn assert_applies(
    case: &str,
    dir: &Path,
    files: usize,
    tables: &str,
) -> (Duration, Duration, ScratchDatabase) {
    let started = Instant::now();
    let lint = migrate_in(dir, None, &["lint"]);
    let lint_time = started.elapsed();
    assert_eq!(
        lint.status.code(),
        Some(0),
        "{case}: lint\n{}{}",
        stdout(&lint),
        stderr(&lint)
    );
    let summary = format!("{files} file(s), 0 error(s), 0 warning(s)");
    assert!(
        stderr(&lint).contains(&summary),
        "{case}: {}",
        stderr(&lint)
    );
    let db = database();
    let started = Instant::now();
    let up = migrate_in(dir, Some(&db), &["up"]);
    let up_time = started.elapsed();
    assert_eq!(up.status.code(), Some(0), "{case}: up\n{}", stderr(&up));
    assert_eq!(migrated_tables(&db), format!("base,{tables}"), "{case}");
    (lint_time, up_time, db)
}

#[test]
fn files_that_cannot_be_migrations_are_refused_by_lint_and_up() {
    type Case = (
        &'static str,
        Vec<(&'static [u8], &'static [u8])>,
        Vec<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            "empty file",
            vec![(b"0002_empty.sql", b"")],
            vec!["0002_empty.sql:1:1: error[empty-file]: the migration has no statement to apply"],
        ),
        (
            "only comments",
            vec![(
                b"0002_notes.sql",
                b"-- a note; no statement\n/* a block; /* nested; */ */\n",
            )],
            vec!["0002_notes.sql:1:1: error[empty-file]: the migration has no statement to apply"],
        ),
        (
            "a byte order mark before an error takes no column",
            vec![(
                b"0002_bom.sql",
                "\u{feff}UPDATE base SET id = 1;\n".as_bytes(),
            )],
            vec![
                "0002_bom.sql:1:1: error[unbounded-update]: UPDATE without WHERE rewrites every row of \"base\" in one transaction, locking them all until it commits",
            ],
        ),
        (
            "bytes that are not UTF-8",
            vec![(b"0002_latin1.sql", b"SELECT 1;\nSELECT 'caf\xe9';\n")],
            vec!["0002_latin1.sql:2:1: error[not-utf8]: the file is not valid UTF-8"],
        ),
        (
            "unterminated string",
            vec![(
                b"0002_string.sql",
                b"INSERT INTO base VALUES (1);\nINSERT INTO base VALUES ('open);\n",
            )],
            vec!["0002_string.sql:2:26: error[syntax]: unterminated string"],
        ),
        (
            "unterminated dollar quote",
            vec![(
                b"0002_dollar.sql",
                b"CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $$ LANGUAGE sql;\n",
            )],
            vec!["0002_dollar.sql:1:36: error[syntax]: unterminated dollar-quoted string"],
        ),
        (
            "unterminated nested block comment",
            vec![(
                b"0002_comment.sql",
                b"SELECT 1;\n  /* outer /* inner */ still open\nSELECT 2;\n",
            )],
            vec!["0002_comment.sql:2:3: error[syntax]: unterminated /* comment"],
        ),
        (
            "COPY FROM STDIN with its data lines, one of which does not lex",
            vec![(
                b"0002_copy.sql",
                b"SELECT 1;\nCOPY base (id) FROM stdin;\n1\n2'\n\\.\n",
            )],
            vec![
                "0002_copy.sql:2:1: error[client-copy]: COPY ... FROM STDIN copies rows through the client, which the runtime cannot do: it sends statements, never COPY data (the lines after it are not SQL)",
            ],
        ),
        (
            "a session-level SET of a setting the runtime owns",
            vec![(
                b"0002_timeout.sql",
                b"SET lock_timeout = 0;\nALTER TABLE base ADD COLUMN IF NOT EXISTS note text;\n",
            )],
            vec![
                "0002_timeout.sql:1:1: error[session-setting]: SET changes lock_timeout for the rest of the session, which the runtime owns: the change escapes this migration's bounds and outlives it, into the next migrations and the caller's connection",
            ],
        ),
        (
            "a misspelled down marker",
            vec![(
                b"0002_down.sql",
                b"ALTER TABLE base ADD COLUMN IF NOT EXISTS b int;\n-- Migrate:down\nALTER TABLE base DROP COLUMN IF EXISTS b;\n",
            )],
            vec![
                "0002_down.sql:2:1: error[bad-directive]: `-- Migrate:down` looks like a `-- migrate:` directive but is not written as one",
            ],
        ),
        (
            "unterminated quoted identifier",
            vec![(
                b"0002_ident.sql",
                b"CREATE TABLE IF NOT EXISTS \"open (id bigint);\n",
            )],
            vec!["0002_ident.sql:1:28: error[syntax]: unterminated quoted identifier"],
        ),
        (
            "a version past bigint",
            vec![
                (b"9223372036854775808_big.sql", b"SELECT 1;\n"),
                (b"99999999999999999999999_huge.sql", b"SELECT 1;\n"),
            ],
            vec![
                "9223372036854775808_big.sql:1:1: error[bad-file-name]: `9223372036854775808_big.sql` is not a migration file name: version `9223372036854775808` is too large (at most 9223372036854775807)",
                "99999999999999999999999_huge.sql:1:1: error[bad-file-name]: `99999999999999999999999_huge.sql` is not a migration file name: version `99999999999999999999999` is too large (at most 9223372036854775807)",
            ],
        ),
        (
            "names with spaces",
            vec![
                (b"0002_add column.sql", b"SELECT 1;\n"),
                (b" 0003_lead.sql", b"SELECT 1;\n"),
                (b"0004_trail .sql", b"SELECT 1;\n"),
            ],
            vec![
                "0002_add column.sql:1:1: error[bad-file-name]: `0002_add column.sql` is not a migration file name: name `add column` must match [a-z0-9_]+",
                " 0003_lead.sql:1:1: error[bad-file-name]: ` 0003_lead.sql` is not a migration file name: version ` 0003` is not a number",
                "0004_trail .sql:1:1: error[bad-file-name]: `0004_trail .sql` is not a migration file name: name `trail ` must match [a-z0-9_]+",
            ],
        ),
        (
            "a file name that is not UTF-8",
            vec![(b"0002_caf\xe9.sql", b"SELECT 1;\n")],
            vec![
                "0002_caf\u{fffd}.sql:1:1: error[bad-file-name]: `0002_caf\u{fffd}.sql` is not a migration file name: name `caf\u{fffd}` must match [a-z0-9_]+",
            ],
        ),
        (
            "duplicate versions",
            vec![
                (b"003_a.sql", b"SELECT 1;\n"),
                (b"0003_b.sql", b"SELECT 2;\n"),
            ],
            vec![
                "003_a.sql:1:1: error[duplicate-version]: version 3 is used by 2 files: 0003_b.sql, 003_a.sql",
                "0003_b.sql:1:1: error[duplicate-version]: version 3 is used by 2 files: 0003_b.sql, 003_a.sql",
            ],
        ),
    ];
    for (case, files, expected) in cases {
        let dir = folder(&files);
        assert_refused(case, dir.path(), &expected);
    }
    // It overflowed the stack (an abort, no message) before the parser bounded the depth.
    let deep = format!("SELECT {};\n", vec!["1"; 100_000].join("-"));
    assert_refused(
        "an expression nested 100,000 operators deep",
        folder(&[(b"0002_deep.sql", deep.as_bytes())]).path(),
        &[
            "0002_deep.sql:1:1: error[unparseable]: the linter cannot parse this statement, so no \
           safety rule checked it (its expressions nest about 99999 levels deep, more than the \
           1000 the linter reads)",
        ],
    );
}

#[test]
fn entries_that_are_not_files_are_refused_not_skipped() {
    let dir = folder(&[]);
    let path = dir.path();
    // A directory named like a migration (with a file inside, as git would keep it).
    std::fs::create_dir(path.join("0002_folder.sql")).unwrap();
    std::fs::write(path.join("0002_folder.sql/0002_folder.sql"), "SELECT 1;").unwrap();
    std::fs::create_dir(path.join("x.sql")).unwrap();
    // Links to nothing, to a directory, to a device that never ends.
    std::os::unix::fs::symlink("no/such/file.sql", path.join("0003_dangling.sql")).unwrap();
    std::os::unix::fs::symlink("0002_folder.sql", path.join("0004_to_dir.sql")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", path.join("0005_zero.sql")).unwrap();
    // A named pipe: reading it would wait for a writer forever.
    let fifo = std::ffi::CString::new(path.join("0006_pipe.sql").as_os_str().as_bytes()).unwrap();
    // SAFETY: a valid NUL-terminated path; mkfifo only creates the node.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    assert_refused(
        "entries that are not files",
        path,
        &[
            "0002_folder.sql:1:1: error[io]: `0002_folder.sql` is a directory, not a migration file",
            "0003_dangling.sql:1:1: error[io]: cannot read `0003_dangling.sql`: No such file or directory (os error 2)",
            "0004_to_dir.sql:1:1: error[io]: `0004_to_dir.sql` is a directory, not a migration file",
            "0005_zero.sql:1:1: error[io]: `0005_zero.sql` is not a regular file (a device, a pipe or a socket)",
            "0006_pipe.sql:1:1: error[io]: `0006_pipe.sql` is not a regular file (a device, a pipe or a socket)",
            "x.sql:1:1: error[io]: `x.sql` is a directory, not a migration file",
        ],
    );
}

#[test]
fn byte_order_marks_crlf_symlinks_and_the_largest_version_work() {
    let crlf = "-- migrate:up\r\nCREATE TABLE IF NOT EXISTS crlf_t (\r\n    id bigint PRIMARY KEY\r\n);\r\n\
                -- migrate:allow require-concurrent-index base is still empty here\r\n\
                CREATE INDEX IF NOT EXISTS crlf_i ON base (id);\r\n\
                -- migrate:down\r\nDROP INDEX CONCURRENTLY IF EXISTS crlf_i;\r\n\
                DROP TABLE IF EXISTS crlf_t;\r\n";
    let dir = folder(&[
        (
            b"0002_bom.sql",
            "\u{feff}CREATE TABLE IF NOT EXISTS bom_t (id bigint PRIMARY KEY);\n\
             -- migrate:down\nDROP TABLE IF EXISTS bom_t;\n"
                .as_bytes(),
        ),
        (b"0003_crlf.sql", crlf.as_bytes()),
        (
            b"9223372036854775807_last.sql",
            b"CREATE TABLE IF NOT EXISTS last_t (id bigint PRIMARY KEY);\n\
              -- migrate:down\nDROP TABLE IF EXISTS last_t;\n",
        ),
    ]);
    let path = dir.path();
    // A symlink to a file outside the folder: followed.
    let shared = tempfile::tempdir().unwrap();
    std::fs::write(
        shared.path().join("shared.sql"),
        "CREATE TABLE IF NOT EXISTS linked_t (id bigint PRIMARY KEY);\n\
         -- migrate:down\nDROP TABLE IF EXISTS linked_t;\n",
    )
    .unwrap();
    std::os::unix::fs::symlink(
        shared.path().join("shared.sql"),
        path.join("0004_linked.sql"),
    )
    .unwrap();

    let (_, _, db) = assert_applies("edge cases", path, 5, "bom_t,crlf_t,last_t,linked_t");
    // The CRLF file's checksum is that of its LF checkout.
    let lf = crlf.replace("\r\n", "\n");
    assert_eq!(
        sql(
            &db,
            "SELECT checksum FROM schema_migrations WHERE version = 3"
        ),
        migrate_core::Checksum::of_file(lf.as_bytes()).to_hex()
    );
    assert_eq!(
        sql(&db, "SELECT max(version) FROM schema_migrations"),
        "9223372036854775807"
    );
    // The down parts (behind `-- migrate:down\r` in the CRLF file) were read: all revert.
    let down = migrate_in(path, Some(&db), &["down", "--to", "1"]);
    assert_eq!(down.status.code(), Some(0), "{}", stderr(&down));
    assert_eq!(migrated_tables(&db), "base");
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'crlf_i'"
        ),
        "0"
    );
}

#[test]
fn a_ten_megabyte_file_lints_and_applies() {
    let row = "x".repeat(1000);
    let mut body = String::from(
        "CREATE TABLE IF NOT EXISTS big (id bigint PRIMARY KEY, payload text NOT NULL);\n",
    );
    let mut rows = 0;
    while body.len() < 10 * 1024 * 1024 {
        rows += 1;
        body.push_str(&format!(
            "INSERT INTO big (id, payload) VALUES ({rows}, '{row}');\n"
        ));
    }
    let dir = folder(&[(b"0002_big.sql", body.as_bytes())]);
    let (lint, up, db) = assert_applies("10 MB", dir.path(), 2, "big");
    assert_eq!(sql(&db, "SELECT count(*) FROM big"), rows.to_string());
    eprintln!(
        "10 MB file ({} bytes, {} statements): lint {lint:.2?}, up {up:.2?}",
        body.len(),
        rows + 1
    );
    // Linear work: a quadratic step would take minutes here.
    assert!(lint < Duration::from_secs(60), "lint took {lint:?}");
    assert!(up < Duration::from_secs(120), "up took {up:?}");
}

#[test]
fn five_thousand_files_lint_and_apply() {
    let dir = folder(&[]);
    for version in 2..=5000 {
        std::fs::write(
            dir.path().join(format!("{version:04}_t{version}.sql")),
            format!("CREATE TABLE IF NOT EXISTS t{version} (id bigint PRIMARY KEY);\n"),
        )
        .unwrap();
    }
    let tables = {
        let mut names: Vec<String> = (2..=5000).map(|v| format!("t{v}")).collect();
        names.sort();
        names.join(",")
    };
    let (lint, up, db) = assert_applies("5,000 files", dir.path(), 5000, &tables);
    assert_eq!(sql(&db, "SELECT count(*) FROM schema_migrations"), "5000");
    eprintln!("5,000 files: lint {lint:.2?}, up {up:.2?}");
    assert!(lint < Duration::from_secs(60), "lint took {lint:?}");
    assert!(up < Duration::from_secs(300), "up took {up:?}");
}
