//! `check --queries/--next-queries/--queries-from` and `up --running-queries-window` on real
//! PostgreSQL: each source, each kind of breakage, a change that breaks nothing, and the
//! contract gate refusing while a loop runs a query the contract would break.
//!
//! sqlx-cli is not installed on the machine these tests were written on, so the sqlx offline
//! files are written by hand in the exact format `cargo sqlx prepare` writes (sqlx 0.7/0.8:
//! `db_name`, `query`, `describe.columns[].type_info`, `describe.nullable`, `hash`).

mod common;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Output;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use common::{cluster, database, migrate, migrate_on, sql, url};
use migrate_scratch::{ScratchCluster, ScratchDatabase};
use serde_json::Value;

/// A cluster whose server preloads pg_stat_statements, shared by the tests that need it.
fn stats_cluster() -> &'static ScratchCluster {
    static CLUSTER: OnceLock<ScratchCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        ScratchCluster::start_with_preloaded(&["pg_stat_statements"]).expect("scratch cluster")
    })
}

/// A database of [`stats_cluster`] with the extension created.
fn stats_database() -> ScratchDatabase {
    let database = stats_cluster().create_database().expect("database");
    stats_cluster()
        .psql(database.name(), "CREATE EXTENSION pg_stat_statements")
        .expect("extension");
    database
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}

/// accounts and teams, each with a `name`-free join partner: `SELECT name FROM accounts JOIN
/// teams` is unambiguous until teams gets a `name` too.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS accounts (\n    id bigint PRIMARY KEY,\n    \
    name text NOT NULL,\n    legacy text\n);\nCREATE TABLE IF NOT EXISTS teams (\n    id bigint \
    PRIMARY KEY,\n    title text\n);\n-- migrate:down\nDROP TABLE IF EXISTS teams;\nDROP TABLE IF EXISTS accounts;\n";

fn set(migrations: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "0001_create.expand.sql", CREATE);
    for (name, text) in migrations {
        write(dir.path(), name, text);
    }
    dir
}

const TEAM_NAME: (&str, &str) = (
    "0002_team_name.expand.sql",
    "ALTER TABLE teams ADD COLUMN IF NOT EXISTS name text;\n-- migrate:down\nALTER TABLE teams DROP COLUMN IF EXISTS name;\n",
);

const DROP_LEGACY: (&str, &str) = (
    "0002_drop_legacy.contract.sql",
    "-- migrate:requires 1\nALTER TABLE accounts DROP COLUMN IF EXISTS legacy;\n-- migrate:down\nALTER TABLE accounts ADD COLUMN IF NOT EXISTS legacy text;\n",
);

/// `migrate --format json check <dir> <flags>`: every JSON check run of these tests.
fn check_json(dir: &Path, flags: &[&dyn AsRef<OsStr>]) -> Output {
    migrate()
        .args(["--format", "json", "check"])
        .arg(dir)
        .args(flags.iter().map(|flag| flag.as_ref()))
        .output()
        .unwrap()
}

fn json_of(output: &[u8]) -> Value {
    serde_json::from_slice(output).expect("one JSON document")
}

fn findings(document: &Value) -> &Vec<Value> {
    document["queries"]["findings"]
        .as_array()
        .expect("findings")
}

#[test]
fn an_expand_that_makes_a_running_query_ambiguous_fails_the_check() {
    let migrations = set(&[TEAM_NAME]);
    let queries = tempfile::tempdir().unwrap();
    write(
        queries.path(),
        "app.sql",
        "SELECT id FROM accounts WHERE id = $1;\n\nSELECT name\n  FROM accounts JOIN teams ON teams.id = accounts.id;\n",
    );
    let output = check_json(
        migrations.path(),
        &[&"--queries", &queries.path().join("app.sql")],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let document = json_of(&output.stdout);
    assert_eq!(document["ok"], false);
    let found = findings(&document);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["migration"], "0002_team_name.expand.sql");
    assert_eq!(found[0]["release"], "running");
    assert_eq!(found[0]["code"], "42702");
    assert_eq!(found[0]["verdict"], "fails");
    assert!(found[0]["origin"].as_str().unwrap().ends_with("app.sql:3"));
    assert_eq!(
        found[0]["query"],
        "SELECT name FROM accounts JOIN teams ON teams.id = accounts.id"
    );

    // The human report names the file, the query and PostgreSQL's error.
    let human = migrate()
        .arg("check")
        .arg(migrations.path())
        .arg("--queries")
        .arg(queries.path())
        .output()
        .unwrap();
    assert_eq!(human.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(
        stdout.contains("0002_team_name.expand.sql (expand) breaks a query of the running release"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ERROR 42702: column reference \"name\" is ambiguous"),
        "{stdout}"
    );
}

#[test]
fn an_added_column_that_breaks_an_insert_select_star_fails_the_check() {
    let migrations = set(&[
        (
            "0002_archive.expand.sql",
            "CREATE TABLE IF NOT EXISTS archive (id bigint, name text, legacy text);\n-- migrate:down\nDROP TABLE IF EXISTS archive;\n",
        ),
        (
            "0003_accounts_tier.expand.sql",
            "ALTER TABLE accounts ADD COLUMN IF NOT EXISTS tier text;\n-- migrate:down\nALTER TABLE accounts DROP COLUMN IF EXISTS tier;\n",
        ),
    ]);
    let queries = tempfile::tempdir().unwrap();
    write(
        queries.path(),
        "archive.sql",
        "INSERT INTO archive SELECT * FROM accounts WHERE id = $1;\n",
    );
    let output = check_json(migrations.path(), &[&"--queries", &queries.path()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let document = json_of(&output.stdout);
    let found = findings(&document);
    assert_eq!(found.len(), 1, "{document}");
    assert_eq!(found[0]["migration"], "0003_accounts_tier.expand.sql");
    assert_eq!(
        found[0]["code"], "42601",
        "more expressions than target columns"
    );
}

#[test]
fn a_contract_that_breaks_a_running_query_is_reported_not_failed() {
    let migrations = set(&[DROP_LEGACY]);
    let queries = tempfile::tempdir().unwrap();
    write(
        queries.path(),
        "app.sql",
        "SELECT legacy FROM accounts WHERE id = $1;\nSELECT name FROM accounts;\n",
    );
    let output = check_json(migrations.path(), &[&"--queries", &queries.path()]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let document = json_of(&output.stdout);
    let found = findings(&document);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["migration"], "0002_drop_legacy.contract.sql");
    assert_eq!(found[0]["verdict"], "must_be_gone_before");
    assert_eq!(found[0]["code"], "42703");

    let human = migrate()
        .arg("check")
        .arg(migrations.path())
        .arg("--queries")
        .arg(queries.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(
        stdout
            .contains("it must be gone from production before 0002_drop_legacy.contract.sql runs"),
        "{stdout}"
    );
    assert!(
        stdout.contains("SELECT legacy FROM accounts WHERE id = $1"),
        "{stdout}"
    );
}

#[test]
fn a_next_release_query_must_work_after_the_last_migration() {
    let migrations = set(&[DROP_LEGACY]);
    let queries = tempfile::tempdir().unwrap();
    write(
        queries.path(),
        "next.sql",
        "SELECT legacy FROM accounts;\nSELECT nickname FROM accounts;\nSELECT name FROM accounts;\n",
    );
    let output = check_json(migrations.path(), &[&"--next-queries", &queries.path()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let document = json_of(&output.stdout);
    let found = findings(&document);
    assert_eq!(found.len(), 2, "{found:?}");
    let legacy = found
        .iter()
        .find(|f| f["query"] == "SELECT legacy FROM accounts")
        .unwrap();
    assert_eq!(legacy["migration"], "0002_drop_legacy.contract.sql");
    assert_eq!(legacy["release"], "next");
    assert_eq!(legacy["verdict"], "fails");
    let nickname = found
        .iter()
        .find(|f| f["query"] == "SELECT nickname FROM accounts")
        .unwrap();
    assert_eq!(nickname["migration"], Value::Null, "it never worked");
    assert_eq!(nickname["code"], "42703");

    let human = migrate()
        .arg("check")
        .arg(migrations.path())
        .arg("--next-queries")
        .arg(queries.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&human.stdout);
    assert!(
        stdout.contains("a query of the next release never worked"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "a query of the next release stops working after 0002_drop_legacy.contract.sql"
        ),
        "{stdout}"
    );
}

#[test]
fn inserts_that_leave_out_a_not_null_column_without_default_are_found() {
    // The expand adds a NOT NULL column without a default to a table that is empty on the
    // scratch side: PREPARE of the running release's INSERT still works, every row fails.
    let migrations = set(&[(
        "0002_accounts_plan.expand.sql",
        "-- migrate:allow volatile-default accounts is empty in production\nALTER TABLE accounts ADD COLUMN IF NOT EXISTS plan text NOT NULL;\n-- migrate:down\nALTER TABLE accounts DROP COLUMN IF EXISTS plan;\n",
    )]);
    let queries = tempfile::tempdir().unwrap();
    write(
        queries.path(),
        "running.sql",
        "INSERT INTO accounts (id, name) VALUES ($1, $2);\n",
    );
    write(
        queries.path(),
        "next.sql",
        "INSERT INTO accounts (id, name, plan) VALUES ($1, $2, $3);\nINSERT INTO accounts VALUES ($1, $2);\n",
    );
    let output = check_json(
        migrations.path(),
        &[
            &"--queries",
            &queries.path().join("running.sql"),
            &"--next-queries",
            &queries.path().join("next.sql"),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let document = json_of(&output.stdout);
    let found = findings(&document);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|f| f["code"] == "23502"), "{found:?}");
    let running = found.iter().find(|f| f["release"] == "running").unwrap();
    assert_eq!(running["migration"], "0002_accounts_plan.expand.sql");
    assert!(
        running["error"]
            .as_str()
            .unwrap()
            .contains("column plan of accounts")
    );
    let next = found.iter().find(|f| f["release"] == "next").unwrap();
    assert_eq!(next["query"], "INSERT INTO accounts VALUES ($1, $2)");
}

/// What `cargo sqlx prepare` writes for `query_as!(Account, "SELECT id, name FROM accounts
/// WHERE id = $1", id)` on the 0001 schema.
const SQLX_ACCOUNT: &str = r#"{
  "db_name": "PostgreSQL",
  "query": "SELECT id, name FROM accounts WHERE id = $1",
  "describe": {
    "columns": [
      {
        "ordinal": 0,
        "name": "id",
        "type_info": "Int8"
      },
      {
        "ordinal": 1,
        "name": "name",
        "type_info": "Text"
      }
    ],
    "parameters": {
      "Left": [
        "Int8"
      ]
    },
    "nullable": [
      false,
      false
    ]
  },
  "hash": "5f0c0c3c52cc8a0d6cd48b29f8a8bd8d3b0b1ff3a4e1dca3b4ab7a0a2e4f1c11"
}
"#;

#[test]
fn a_sqlx_result_column_whose_type_or_nullability_changed_is_found() {
    let sqlx = tempfile::tempdir().unwrap();
    write(
        sqlx.path(),
        "query-5f0c0c3c52cc8a0d6cd48b29f8a8bd8d3b0b1ff3a4e1dca3b4ab7a0a2e4f1c11.json",
        SQLX_ACCOUNT,
    );
    // Unchanged schema: the describe still matches.
    let unchanged = set(&[TEAM_NAME]);
    let output = check_json(unchanged.path(), &[&"--queries", &sqlx.path()]);
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert!(findings(&json_of(&output.stdout)).is_empty());

    for (name, change, expected) in [
        (
            "0002_name_nullable.expand.sql",
            "ALTER TABLE accounts ALTER COLUMN name DROP NOT NULL;\n-- migrate:down\n-- migrate:allow set-not-null-scan a test table\nALTER TABLE accounts ALTER COLUMN name SET NOT NULL;\n",
            "is now name Text (nullable)",
        ),
        (
            "0002_name_varchar.expand.sql",
            "-- migrate:allow column-type-change a test table\n-- migrate:allow drop-in-expand a test table\nALTER TABLE accounts ALTER COLUMN name TYPE varchar(200);\n-- migrate:down\n-- migrate:allow column-type-change a test table\nALTER TABLE accounts ALTER COLUMN name TYPE text;\n",
            "is now name Varchar (NOT NULL)",
        ),
    ] {
        let migrations = set(&[(name, change)]);
        let output = check_json(migrations.path(), &[&"--queries", &sqlx.path()]);
        let document = json_of(&output.stdout);
        let found = findings(&document);
        assert_eq!(found.len(), 1, "{name}: {document}");
        assert_eq!(found[0]["migration"], name);
        assert_eq!(found[0]["code"], Value::Null);
        let error = found[0]["error"].as_str().unwrap();
        assert!(
            error.contains("was name Text (NOT NULL) in sqlx's describe"),
            "{error}"
        );
        assert!(error.contains(expected), "{error}");
        assert_eq!(output.status.code(), Some(1), "{name}");
    }
}

#[test]
fn bad_query_input_is_a_clear_error_naming_the_file_and_nothing_runs() {
    let migrations = set(&[]);
    let sqlx = tempfile::tempdir().unwrap();
    write(
        sqlx.path(),
        "query-abc.json",
        r#"{"db_name": "PostgreSQL", "hash": "abc"}"#,
    );
    let output = migrate()
        .arg("check")
        .arg(migrations.path())
        .arg("--queries")
        .arg(sqlx.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("query-abc.json: not a sqlx offline query file (no \"query\" string)"),
        "{stderr}"
    );
    assert!(output.stdout.is_empty(), "nothing was checked");

    let sql_file = sqlx.path().join("broken.sql");
    std::fs::write(&sql_file, "SELECT 1;\nSELECT 'unterminated;\n").unwrap();
    let output = migrate()
        .arg("check")
        .arg(migrations.path())
        .arg("--next-queries")
        .arg(&sql_file)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("broken.sql:2:"), "{stderr}");

    // A database without pg_stat_statements.
    let plain = database();
    let output = migrate()
        .arg("check")
        .arg(migrations.path())
        .arg("--queries-from")
        .arg(url(&plain))
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("cannot read pg_stat_statements"),
        "{stderr}"
    );
}

#[test]
fn pg_stat_statements_gives_the_running_release_queries_of_production() {
    let migrations = set(&[TEAM_NAME]);
    let production = stats_database();
    let cluster = stats_cluster();
    let on = |args: &[&str]| {
        let mut command = migrate();
        command
            .arg("--database-url")
            .arg(url(&production))
            .arg("--dir")
            .arg(migrations.path())
            .args(args);
        command
    };
    on(&["up", "--to", "1"]).assert().success();
    for id in 1..=3 {
        cluster
            .psql(
                production.name(),
                &format!("SELECT name FROM accounts JOIN teams ON teams.id = accounts.id WHERE accounts.id = {id}"),
            )
            .unwrap();
    }
    let output = check_json(
        migrations.path(),
        &[
            &"--schema-from",
            &url(&production),
            &"--queries-from",
            &url(&production),
        ],
    );
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let document = json_of(&output.stdout);
    let found = findings(&document);
    assert_eq!(found.len(), 1, "{document}");
    assert_eq!(found[0]["migration"], "0002_team_name.expand.sql");
    assert_eq!(found[0]["code"], "42702");
    assert!(
        found[0]["origin"]
            .as_str()
            .unwrap()
            .starts_with("pg_stat_statements queryid ")
    );
    // pg_stat_statements replaced the constant with $1; the query is shortened to 80 characters.
    assert_eq!(
        found[0]["query"],
        "SELECT name FROM accounts JOIN teams ON teams.id = accounts.id WHERE accounts..."
    );
    // Production is as it was: 0002 is still pending there.
    assert_eq!(
        cluster
            .psql(
                production.name(),
                "SELECT count(*) FROM public.schema_migrations"
            )
            .unwrap()
            .trim(),
        "1"
    );
}

#[test]
fn a_change_that_breaks_nothing_passes() {
    let migrations = set(&[TEAM_NAME]);
    let queries = tempfile::tempdir().unwrap();
    write(
        queries.path(),
        "running.sql",
        "SELECT accounts.name, teams.title FROM accounts JOIN teams USING (id);\nUPDATE accounts SET legacy = $1 WHERE id = $2;\n",
    );
    write(
        queries.path(),
        "next.sql",
        "SELECT t.name FROM teams t WHERE t.id = $1;\n",
    );
    let output = migrate()
        .arg("check")
        .arg(migrations.path())
        .arg("--queries")
        .arg(queries.path().join("running.sql"))
        .arg("--next-queries")
        .arg(queries.path().join("next.sql"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("queries: 2 of the running release, 1 of the next release"),
        "{stdout}"
    );
    assert!(
        stdout.contains("every query works before and after each migration"),
        "{stdout}"
    );
}

/// Runs `SELECT legacy ...` on `database` until `stop`; counts the calls made.
fn query_loop(
    database: &ScratchDatabase,
    stop: Arc<AtomicBool>,
    calls: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let name = database.name().to_owned();
    std::thread::spawn(move || {
        while !stop.load(Ordering::SeqCst) {
            stats_cluster()
                .psql(&name, "SELECT legacy FROM accounts WHERE id = 42")
                .expect("the old release's query");
            calls.fetch_add(1, Ordering::SeqCst);
        }
    })
}

fn legacy_exists(database: &ScratchDatabase) -> bool {
    stats_cluster()
        .psql(
            database.name(),
            "SELECT count(*) FROM pg_attribute WHERE attrelid = 'accounts'::regclass AND attname = 'legacy' AND NOT attisdropped",
        )
        .unwrap()
        .trim()
        == "1"
}

#[test]
fn the_contract_gate_refuses_while_the_old_release_runs_a_query_it_breaks() {
    let migrations = set(&[DROP_LEGACY]);
    let production = stats_database();
    let up = |window: &str| {
        let mut command = migrate();
        command
            .arg("--database-url")
            .arg(url(&production))
            .arg("--dir")
            .arg(migrations.path())
            .args([
                "--max-replica-lag",
                "off",
                "up",
                "--running-queries-window",
                window,
            ]);
        command.output().unwrap()
    };
    let mut to_one = migrate();
    to_one
        .arg("--database-url")
        .arg(url(&production))
        .arg("--dir")
        .arg(migrations.path())
        .args(["up", "--to", "1"])
        .assert()
        .success();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let old_release = query_loop(&production, stop.clone(), calls.clone());
    // The loop is running before the gate's first reading.
    while calls.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    let refused = up("2s");
    let calls_after_refusal = calls.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    old_release.join().unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("0002_drop_legacy.contract.sql"), "{stderr}");
    assert!(
        stderr.contains("\"SELECT legacy FROM accounts WHERE id = $1\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("column accounts.legacy (dropped)"),
        "{stderr}"
    );
    assert!(stderr.contains("time(s) in the last 2.0s"), "{stderr}");
    assert!(calls_after_refusal > 1);
    // Nothing of the contract ran.
    assert!(legacy_exists(&production));
    assert_eq!(
        sql_on_stats(
            &production,
            "SELECT max(version) FROM public.schema_migrations"
        ),
        "1"
    );

    // The loop has stopped: during the next window nothing calls the query.
    let passed = up("1s");
    assert_eq!(passed.status.code(), Some(0), "{passed:?}");
    assert!(!legacy_exists(&production));
}

fn sql_on_stats(database: &ScratchDatabase, query: &str) -> String {
    stats_cluster()
        .psql(database.name(), query)
        .unwrap()
        .trim()
        .to_owned()
}

#[test]
fn without_pg_stat_statements_the_gate_refuses_unless_turned_off() {
    let migrations = set(&[DROP_LEGACY]);
    let plain = database();
    migrate_on(&plain, migrations.path())
        .args(["up", "--to", "1"])
        .assert()
        .success();
    let refused = migrate_on(&plain, migrations.path())
        .args(["up", "--running-queries-window", "100ms"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cannot read pg_stat_statements"),
        "{stderr}"
    );
    assert!(stderr.contains("--running-queries-window off"), "{stderr}");
    assert_eq!(
        sql(&plain, "SELECT max(version) FROM public.schema_migrations"),
        "1"
    );

    migrate_on(&plain, migrations.path())
        .args(["up", "--running-queries-window", "off"])
        .assert()
        .success();
    assert_eq!(
        sql(&plain, "SELECT max(version) FROM public.schema_migrations"),
        "2"
    );
    let _ = cluster();
}

#[test]
fn a_running_release_query_that_never_works_fails_the_check() {
    let migrations = set(&[TEAM_NAME]);
    let queries = tempfile::tempdir().unwrap();
    write(queries.path(), "typo.sql", "SELECT nmae FROM accounts;\n");
    let output = check_json(migrations.path(), &[&"--queries", &queries.path()]);
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let document = json_of(&output.stdout);
    let found = findings(&document);
    assert_eq!(found.len(), 1, "{document}");
    assert_eq!(found[0]["migration"], Value::Null);
    assert_eq!(found[0]["release"], "running");
    assert_eq!(found[0]["verdict"], "fails");
    assert_eq!(found[0]["code"], "42703");
}
