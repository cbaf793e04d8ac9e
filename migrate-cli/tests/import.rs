//! `migrate import --from TOOL`: a database another tool migrated gets our history, `up` then
//! has nothing to do, and the other tool's table is the same before and after. With each
//! real tool where it is installed (sqlx-cli, refinery_cli: see `tool()`), and for every
//! tool with its history rows written as the tool documents them.

mod common;

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};

use common::{cluster, database, json, migrate_on, sql, stderr, stdout, url};
use migrate_scratch::ScratchDatabase;
use sha2::Digest;

fn folder(layout: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/layouts")
        .join(layout)
}

/// The other tool's table, as text, to compare before and after.
fn dump(db: &ScratchDatabase, table: &str) -> String {
    let output = std::process::Command::new(cluster().binaries().program("pg_dump"))
        .args(["--data-only", "--table", table])
        .args([
            "-h",
            db.host(),
            "-p",
            &db.port().to_string(),
            "-U",
            "postgres",
        ])
        .arg(db.name())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains("COPY "), "{text}");
    text.lines()
        .filter(|l| {
            !l.starts_with("--") && !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The schema the layout's migrations make, built with migrate under a throwaway history
/// table that is then dropped: what the other tool would have left.
fn schema_as_the_tool_left_it(db: &ScratchDatabase, layout: &str) {
    let output = migrate_on(db, &folder(layout))
        .args(["up", "--history-table", "throwaway"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    sql(db, "DROP TABLE throwaway");
}

fn file(layout: &str, name: &str) -> String {
    std::fs::read_to_string(folder(layout).join(name)).unwrap()
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// refinery's checksum, written from its documentation and code: SipHash-1-3 (zero keys) over
/// the name, the `i32` version and the text, through `Hash`.
fn refinery_checksum(name: &str, version: i32, text: &str) -> u64 {
    let mut hasher = siphasher::sip::SipHasher13::new();
    name.to_owned().hash(&mut hasher);
    version.hash(&mut hasher);
    text.to_owned().hash(&mut hasher);
    hasher.finish()
}

/// Flyway's checksum: CRC-32 of the lines without their breaks, as a signed int.
fn flyway_checksum(text: &str) -> i32 {
    crc32fast::hash(text.replace(['\r', '\n'], "").as_bytes()) as i32
}

/// The history rows `layout`'s tool writes after applying the three migrations.
fn documented_history(layout: &str) -> (&'static str, String) {
    match layout {
        "sqlx" => {
            let mut rows = Vec::new();
            for (v, name) in [(1, "create_users"), (2, "users_email"), (3, "users_last_seen")] {
                let text = file("sqlx", &format!("{v:04}_{name}.up.sql"));
                let checksum: String = sha2::Sha384::digest(text.as_bytes())
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect();
                rows.push(format!(
                    "({v}, {}, true, '\\x{checksum}', 1500000)",
                    quoted(&name.replace('_', " "))
                ));
            }
            (
                "_sqlx_migrations",
                format!(
                    "CREATE TABLE _sqlx_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL, \
                     installed_on TIMESTAMPTZ NOT NULL DEFAULT now(), success BOOLEAN NOT NULL, \
                     checksum BYTEA NOT NULL, execution_time BIGINT NOT NULL);\n\
                     INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) VALUES {};",
                    rows.join(", ")
                ),
            )
        }
        "refinery" => {
            let mut rows = Vec::new();
            for (v, name) in [(1, "create_users"), (2, "users_email"), (3, "users_last_seen")] {
                let text = file("refinery", &format!("V{v}__{name}.sql"));
                let checksum = refinery_checksum(name, v, &text);
                rows.push(format!("({v}, '{name}', '2024-01-01T00:00:00+00:00', '{checksum}')"));
            }
            (
                "refinery_schema_history",
                format!(
                    "CREATE TABLE refinery_schema_history (version int4 PRIMARY KEY, name VARCHAR(255), \
                     applied_on VARCHAR(255), checksum VARCHAR(255));\n\
                     INSERT INTO refinery_schema_history VALUES {};",
                    rows.join(", ")
                ),
            )
        }
        "flyway" => {
            let mut rows = Vec::new();
            for (v, name) in [(1, "create_users"), (2, "users_email"), (3, "users_last_seen")] {
                let script = format!("V{v}__{name}.sql");
                let checksum = flyway_checksum(&file("flyway", &script));
                rows.push(format!(
                    "({v}, '{v}', '{}', 'SQL', '{script}', {checksum}, 'postgres', 12, true)",
                    name.replace('_', " ")
                ));
            }
            (
                "flyway_schema_history",
                format!(
                    "CREATE TABLE flyway_schema_history (installed_rank integer NOT NULL PRIMARY KEY, \
                     version varchar(50), description varchar(200) NOT NULL, type varchar(20) NOT NULL, \
                     script varchar(1000) NOT NULL, checksum integer, installed_by varchar(100) NOT NULL, \
                     installed_on timestamp NOT NULL DEFAULT now(), execution_time integer NOT NULL, \
                     success boolean NOT NULL);\n\
                     INSERT INTO flyway_schema_history (installed_rank, version, description, type, script, \
                     checksum, installed_by, execution_time, success) VALUES {};",
                    rows.join(", ")
                ),
            )
        }
        "diesel" => (
            "__diesel_schema_migrations",
            "CREATE TABLE __diesel_schema_migrations (version VARCHAR(50) PRIMARY KEY NOT NULL, \
             run_on TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP);\n\
             INSERT INTO __diesel_schema_migrations (version) VALUES \
             ('20240101000001'), ('20240101000002'), ('20240101000003');"
                .to_owned(),
        ),
        "dbmate" => (
            "schema_migrations",
            "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY);\n\
             INSERT INTO schema_migrations VALUES \
             ('20240101000001'), ('20240101000002'), ('20240101000003');"
                .to_owned(),
        ),
        "golang-migrate" => (
            "schema_migrations",
            "CREATE TABLE schema_migrations (version bigint NOT NULL PRIMARY KEY, dirty boolean NOT NULL);\n\
             INSERT INTO schema_migrations VALUES (3, false);"
                .to_owned(),
        ),
        other => unreachable!("{other}"),
    }
}

/// `migrate` on `db` and `layout`'s folder, with a history table that is not
/// golang-migrate's and dbmate's `schema_migrations`.
fn migrate_as(db: &ScratchDatabase, dir: &Path) -> assert_cmd::Command {
    let mut command = migrate_on(db, dir);
    command.args(["--history-table", "migrate_history"]);
    command
}

/// Import, then `up` with nothing to do, every migration applied, the other table unchanged.
fn import_and_prove(db: &ScratchDatabase, dir: &Path, tool: &str, table: &str) {
    let before = dump(db, table);
    let dry = migrate_as(db, dir)
        .args(["import", "--from", tool, "--dry-run", "--format", "json"])
        .output()
        .unwrap();
    assert!(dry.status.success(), "{tool}: {}", stderr(&dry));
    assert_eq!(
        json(&dry)["imported"].as_array().unwrap().len(),
        3,
        "{tool}"
    );
    assert_eq!(
        sql(db, "SELECT to_regclass('migrate_history') IS NULL"),
        "t",
        "dry run wrote"
    );
    let output = migrate_as(db, dir)
        .args(["import", "--from", tool])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{tool}: {}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("imported 3 applied migration(s)"),
        "{}",
        stdout(&output)
    );
    let up = migrate_as(db, dir)
        .args(["up", "--format", "json"])
        .output()
        .unwrap();
    assert!(up.status.success(), "{tool}: {}", stderr(&up));
    assert_eq!(
        json(&up)["applied"].as_array().map(Vec::len),
        Some(0),
        "{tool}: {}",
        stdout(&up)
    );
    let status = migrate_as(db, dir)
        .args(["status", "--format", "json"])
        .output()
        .unwrap();
    assert!(status.status.success(), "{tool}: {}", stderr(&status));
    let states: Vec<String> = json(&status)["migrations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["applied"; 3], "{tool}");
    assert_eq!(
        sql(
            db,
            "SELECT count(*) FROM migrate_history WHERE executed_by LIKE '%(imported from %'"
        ),
        "3"
    );
    assert_eq!(dump(db, table), before, "{tool} changed its table");
    // A second import refuses: our history is no longer empty.
    let again = migrate_as(db, dir)
        .args(["import", "--from", tool])
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(4), "{}", stderr(&again));
}

#[test]
fn every_tools_documented_history_is_imported() {
    for tool in [
        "sqlx",
        "refinery",
        "flyway",
        "diesel",
        "dbmate",
        "golang-migrate",
    ] {
        let db = database();
        schema_as_the_tool_left_it(&db, tool);
        let (table, history) = documented_history(tool);
        sql(&db, &history);
        import_and_prove(&db, &folder(tool), tool, table);
    }
}

/// A copy of a layout's folder with one file edited after the tool applied it.
fn edited_copy(layout: &str, edited: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(folder(layout)).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    let path = dir.path().join(edited);
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, format!("{text}-- edited after it was applied\n")).unwrap();
    dir
}

#[test]
fn an_edited_file_is_refused_by_every_tool_that_records_a_checksum() {
    for (tool, edited) in [
        ("sqlx", "0002_users_email.up.sql"),
        ("refinery", "V2__users_email.sql"),
        ("flyway", "V2__users_email.sql"),
    ] {
        let db = database();
        schema_as_the_tool_left_it(&db, tool);
        let (table, history) = documented_history(tool);
        sql(&db, &history);
        let before = dump(&db, table);
        let dir = edited_copy(tool, edited);
        let output = migrate_as(&db, dir.path())
            .args(["import", "--from", tool])
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(4), "{tool}: {}", stderr(&output));
        let message = stderr(&output);
        assert!(
            message.contains(&format!("2 ({edited})")) && !message.contains("1 ("),
            "{message}"
        );
        assert_eq!(
            sql(&db, "SELECT to_regclass('migrate_history') IS NULL"),
            "t"
        );
        assert_eq!(dump(&db, table), before);
    }
}

#[test]
fn a_shared_table_name_a_dirty_version_and_a_missing_file_are_refused() {
    let db = database();
    schema_as_the_tool_left_it(&db, "golang-migrate");
    sql(&db, &documented_history("golang-migrate").1);
    // Our default history table is golang-migrate's and dbmate's.
    let output = migrate_on(&db, &folder("golang-migrate"))
        .args(["import", "--from", "golang-migrate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("--history-table"),
        "{}",
        stderr(&output)
    );
    // dbmate's shape is not golang-migrate's.
    let output = migrate_as(&db, &folder("dbmate"))
        .args(["import", "--from", "dbmate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("columns"), "{}", stderr(&output));
    sql(&db, "UPDATE schema_migrations SET dirty = true");
    let output = migrate_as(&db, &folder("golang-migrate"))
        .args(["import", "--from", "golang-migrate"])
        .output()
        .unwrap();
    assert!(stderr(&output).contains("dirty"), "{}", stderr(&output));
    sql(
        &db,
        "UPDATE schema_migrations SET dirty = false, version = 4",
    );
    let output = migrate_as(&db, &folder("golang-migrate"))
        .args(["import", "--from", "golang-migrate"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("applied but no file: 4"),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        sql(&db, "SELECT to_regclass('migrate_history') IS NULL"),
        "t"
    );
}

/// A real tool's binary: on PATH, or in `$MIGRATE_TOOLS_DIR/bin` (default
/// `~/.cache/migrate-tools/bin`, where `.ci/run` installs them). `None` says loudly how to
/// install it.
fn tool(binary: &str, install: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("MIGRATE_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME").map(|home| Path::new(&home).join(".cache/migrate-tools"))
        });
    let candidates = dir.map(|d| d.join("bin").join(binary)).into_iter().chain(
        std::env::var_os("PATH")
            .into_iter()
            .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
            .map(|p| p.join(binary)),
    );
    let found = candidates.into_iter().find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "SKIPPED: {binary} is not installed, so this test did not run the real tool. Install it with:\n  {install}"
        );
    }
    found
}

#[test]
fn sqlx_cli_applies_then_import_takes_over() {
    let Some(sqlx) = tool(
        "sqlx",
        "cargo install --locked sqlx-cli --no-default-features --features postgres,rustls --root ~/.cache/migrate-tools",
    ) else {
        return;
    };
    let db = database();
    let run = std::process::Command::new(&sqlx)
        .args(["migrate", "run", "--source"])
        .arg(folder("sqlx"))
        .args(["--database-url", &url(&db)])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    import_and_prove(&db, &folder("sqlx"), "sqlx", "_sqlx_migrations");
    // The same with a file edited after sqlx applied it: refused, naming it.
    let db = database();
    let run = std::process::Command::new(&sqlx)
        .args(["migrate", "run", "--source"])
        .arg(folder("sqlx"))
        .args(["--database-url", &url(&db)])
        .output()
        .unwrap();
    assert!(run.status.success());
    let dir = edited_copy("sqlx", "0003_users_last_seen.up.sql");
    let output = migrate_as(&db, dir.path())
        .args(["import", "--from", "sqlx"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("3 (0003_users_last_seen.up.sql)"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn refinery_cli_applies_then_import_takes_over() {
    let Some(refinery) = tool(
        "refinery",
        "cargo install --locked refinery_cli --no-default-features --features postgresql --root ~/.cache/migrate-tools",
    ) else {
        return;
    };
    // Its own folder: refinery runs each migration in a transaction, so the layout folder's
    // CREATE INDEX CONCURRENTLY cannot go through it.
    let db = database();
    let run = std::process::Command::new(&refinery)
        .args(["migrate", "-e", "DATABASE_URL", "-p"])
        .arg(folder("refinery-cli"))
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    import_and_prove(
        &db,
        &folder("refinery-cli"),
        "refinery",
        "refinery_schema_history",
    );
    let db = database();
    let run = std::process::Command::new(&refinery)
        .args(["migrate", "-e", "DATABASE_URL", "-p"])
        .arg(folder("refinery-cli"))
        .env("DATABASE_URL", db.url())
        .output()
        .unwrap();
    assert!(run.status.success());
    let dir = edited_copy("refinery-cli", "V1__create_users.sql");
    let output = migrate_as(&db, dir.path())
        .args(["import", "--from", "refinery"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(4), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("1 (V1__create_users.sql)"),
        "{}",
        stderr(&output)
    );
}

/// The time each tool recorded (sqlx and Flyway `installed_on`, refinery `applied_on`, diesel
/// `run_on`) becomes our `executed_at`, which `status` shows as APPLIED AT; dbmate and
/// golang-migrate record none, and the import says so.
#[test]
fn each_tools_own_time_of_application_is_carried_over() {
    for (tool, set_time, expected) in [
        (
            "sqlx",
            Some("UPDATE _sqlx_migrations SET installed_on = '2023-05-06 07:08:09.5+00'"),
            Some("'2023-05-06 07:08:09.5+00'::timestamptz"),
        ),
        (
            "refinery",
            Some("UPDATE refinery_schema_history SET applied_on = '2023-05-06T07:08:09.5Z'"),
            Some("'2023-05-06 07:08:09.5+00'::timestamptz"),
        ),
        (
            "flyway",
            Some("UPDATE flyway_schema_history SET installed_on = '2023-05-06 07:08:09'"),
            Some("'2023-05-06 07:08:09'::timestamp::timestamptz"),
        ),
        (
            "diesel",
            Some("UPDATE __diesel_schema_migrations SET run_on = '2023-05-06 07:08:09'"),
            Some("'2023-05-06 07:08:09'::timestamp::timestamptz"),
        ),
        ("dbmate", None, None),
        ("golang-migrate", None, None),
    ] {
        let db = database();
        schema_as_the_tool_left_it(&db, tool);
        sql(&db, &documented_history(tool).1);
        if let Some(update) = set_time {
            sql(&db, update);
        }
        let dry = migrate_as(&db, &folder(tool))
            .args(["import", "--from", tool, "--dry-run", "--format", "json"])
            .output()
            .unwrap();
        assert!(dry.status.success(), "{tool}: {}", stderr(&dry));
        let applied_at: Vec<serde_json::Value> = json(&dry)["imported"]
            .as_array()
            .unwrap()
            .iter()
            .map(|row| row["applied_at"].clone())
            .collect();
        assert_eq!(applied_at.len(), 3, "{tool}");
        assert_eq!(
            applied_at.iter().all(serde_json::Value::is_null),
            expected.is_none(),
            "{tool}: {applied_at:?}"
        );
        let output = migrate_as(&db, &folder(tool))
            .args(["import", "--from", tool])
            .output()
            .unwrap();
        assert!(output.status.success(), "{tool}: {}", stderr(&output));
        match expected {
            Some(time) => {
                assert_eq!(
                    sql(
                        &db,
                        &format!("SELECT count(*) FROM migrate_history WHERE executed_at = {time}")
                    ),
                    "3",
                    "{tool}: {}",
                    sql(
                        &db,
                        "SELECT string_agg(executed_at::text, ', ') FROM migrate_history"
                    )
                );
                assert!(
                    !stdout(&output).contains("records no time"),
                    "{tool}: {}",
                    stdout(&output)
                );
            }
            None => {
                assert!(
                    stdout(&output).contains(&format!("{tool} records no time of application")),
                    "{tool}: {}",
                    stdout(&output)
                );
                assert!(
                    stdout(&output).contains("not recorded"),
                    "{}",
                    stdout(&output)
                );
            }
        }
    }
}
