//! Security through the `migrate` binary: identifiers from flags and files are validated or
//! quoted (a sentinel table survives every injection attempt), passwords never reach stdout
//! or stderr (any command, format or verbosity), and a role that owns its database but is no
//! superuser applies the example set.

mod common;

use std::path::Path;

use common::*;
use migrate_scratch::ScratchDatabase;

fn plant_sentinel(db: &ScratchDatabase) {
    sql(
        db,
        "CREATE TABLE sentinel (id int); INSERT INTO sentinel VALUES (1);",
    );
}

fn assert_sentinel_survives(db: &ScratchDatabase, case: &str) {
    assert_eq!(sql(db, "SELECT count(*) FROM sentinel"), "1", "{case}");
}

/// Tables outside the system schemas, as `schema.table`, in byte order.
fn tables(db: &ScratchDatabase) -> String {
    sql(
        db,
        "SELECT coalesce(string_agg(schemaname || '.' || tablename, ',' \
             ORDER BY (schemaname || '.' || tablename) COLLATE \"C\"), '') \
         FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema')",
    )
}

#[test]
fn hostile_history_table_names_are_refused_by_every_database_command() {
    let db = database();
    plant_sentinel(&db);
    let dir = example_migrations();
    let names = [
        "x; DROP TABLE sentinel; --",
        "x\"; DROP TABLE sentinel; --",
        "public.x'; DROP TABLE sentinel; --",
        "a b",
        "ünïcode",
        "a.b.c",
        "",
        // A plain identifier whose `_backfill` table would pass 63 bytes.
        "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh",
    ];
    let commands: [&[&str]; 10] = [
        &["status"],
        &["up"],
        &["up", "--dry-run"],
        &["plan"],
        &["down", "--to", "0"],
        &["repair"],
        &["backfill"],
        &["verify"],
        &["flag", "list"],
        &["flag", "set", "f", "on"],
    ];
    for name in names {
        for command in commands {
            let output = migrate_on(&db, &dir)
                .args(["--history-table", name])
                .args(command)
                .output()
                .unwrap();
            let err = stderr(&output);
            let case = format!("{command:?} --history-table {name:?}");
            assert_eq!(output.status.code(), Some(2), "{case}: {err}");
            assert!(err.contains("invalid"), "{case}: {err}");
            assert!(err.contains("history table name"), "{case}: {err}");
        }
    }
    assert_sentinel_survives(&db, "history table names");
    assert_eq!(tables(&db), "public.sentinel");
}

#[test]
fn hostile_flag_names_are_refused_and_legal_ones_are_bound() {
    let db = database();
    plant_sentinel(&db);
    let dir = example_migrations();
    for name in [
        "x'; DROP TABLE sentinel; --",
        "x\"; DROP TABLE sentinel; --",
        "a b",
        "Upper",
        "ünï",
        "",
    ] {
        for action in [&["set", name, "on"][..], &["get", name]] {
            let output = migrate_on(&db, &dir)
                .arg("flag")
                .args(action)
                .output()
                .unwrap();
            assert_eq!(output.status.code(), Some(2), "{action:?}");
            assert!(
                stderr(&output).contains("invalid flag name"),
                "{action:?}: {}",
                stderr(&output)
            );
        }
    }
    let set = migrate_on(&db, &dir)
        .args(["flag", "set", "a.b-c_1", "on"])
        .output()
        .unwrap();
    assert!(set.status.success(), "{}", stderr(&set));
    assert_eq!(
        sql(&db, "SELECT name FROM schema_migrations_flags"),
        "a.b-c_1"
    );
    assert_sentinel_survives(&db, "flag names");
}

/// The backfill directive's names in a migration file, quoted as SQL allows, through every
/// command that builds SQL from them.
#[test]
fn backfill_names_that_look_like_injections_run_quoted_through_the_cli() {
    let db = database();
    plant_sentinel(&db);
    let dir = tempfile::tempdir().unwrap();
    write_hostile_backfill(dir.path());
    for command in [
        &["plan"][..],
        &["up", "--dry-run"],
        &["up"],
        &["backfill"],
        &["verify"],
        &["status"],
        &["down", "--to", "1"],
        &["up"],
    ] {
        let output = migrate_on(&db, dir.path()).args(command).output().unwrap();
        assert!(
            output.status.success(),
            "{command:?}: {}{}",
            stdout(&output),
            stderr(&output)
        );
        assert_sentinel_survives(&db, &format!("{command:?}"));
    }
    assert_eq!(
        sql(
            &db,
            "SELECT count(*) FROM \"x\"\"; DROP TABLE sentinel; --\" WHERE done"
        ),
        "10"
    );
}

fn write_hostile_backfill(dir: &Path) {
    std::fs::write(
        dir.join("0001_tables.sql"),
        "CREATE TABLE IF NOT EXISTS \"x\"\"; DROP TABLE sentinel; --\" \
             (\"id'); DROP TABLE sentinel; --\" bigint PRIMARY KEY, done boolean);\n\
         INSERT INTO \"x\"\"; DROP TABLE sentinel; --\" SELECT g, NULL FROM generate_series(1, 10) g;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_fill.backfill.sql"),
        "-- migrate:backfill table=\"x\"\"; DROP TABLE sentinel; --\" \
             key=\"id'); DROP TABLE sentinel; --\" batch=4\n\
         UPDATE \"x\"\"; DROP TABLE sentinel; --\" SET done = true WHERE done IS NOT TRUE;\n\
         -- migrate:down\n",
    )
    .unwrap();
}

/// Wrong and right passwords, in the URL (percent-encoded special characters too) and in
/// DATABASE_URL, through status, up, plan and up --dry-run, in human and JSON output, quiet
/// and with debug tracing (-vv): neither the password nor its encoded form is printed.
#[test]
fn passwords_never_appear_in_any_command_format_or_verbosity() {
    // `%`, `@`, `:` and `/` must be percent-encoded in a URL: both spellings are checked.
    const PASSWORD: &str = "Right-p@ss:w/rd%42-Zq7";
    const PASSWORD_ENCODED: &str = "Right-p%40ss%3Aw%2Frd%2542-Zq7";
    const WRONG: &str = "Wr0ng-guess-Kx9";
    let db = database();
    cluster()
        .create_login_role("security_user", PASSWORD)
        .unwrap();
    sql(
        &db,
        &format!("ALTER DATABASE \"{}\" OWNER TO security_user", db.name()),
    );
    let url_with = |password: &str| {
        format!(
            "postgres://security_user:{password}@{}:{}/{}?sslmode=disable",
            db.host(),
            db.port(),
            db.name()
        )
    };
    let secrets = [PASSWORD, PASSWORD_ENCODED, WRONG];
    // `up` first, with -vv first: the first right-password run applies the set with
    // tracing on, so the logs hold the most there is to leak (checked: they name each
    // migration being applied).
    let commands: [&[&str]; 4] = [&["up"], &["status"], &["up", "--dry-run"], &["plan"]];
    let mut runs = 0;
    let mut traced_apply = false;
    for (password, succeeds) in [(WRONG, false), (PASSWORD_ENCODED, true)] {
        for via_env in [false, true] {
            for format in ["human", "json"] {
                for verbosity in [Some("-vv"), None] {
                    for command in commands {
                        let mut migrate = migrate();
                        migrate
                            .arg("--dir")
                            .arg(example_migrations())
                            .args(["--format", format])
                            .args(verbosity);
                        if via_env {
                            migrate.env("DATABASE_URL", url_with(password));
                        } else {
                            migrate.arg("--database-url").arg(url_with(password));
                        }
                        let output = migrate.args(command).output().unwrap();
                        runs += 1;
                        let all = format!("{}{}", stdout(&output), stderr(&output));
                        let case = format!(
                            "{command:?} {format} {verbosity:?} env={via_env} right={succeeds}"
                        );
                        if succeeds {
                            assert_eq!(output.status.code(), Some(0), "{case}: {all}");
                        } else {
                            assert_eq!(output.status.code(), Some(1), "{case}: {all}");
                            assert!(
                                all.contains("password authentication failed"),
                                "{case}: {all}"
                            );
                        }
                        traced_apply |= verbosity.is_some() && all.contains(": applying");
                        for secret in secrets {
                            assert!(!all.contains(secret), "{case}: {secret} printed:\n{all}");
                        }
                    }
                }
            }
        }
    }
    assert_eq!(runs, 64);
    assert!(traced_apply, "no run logged its migrations");
    // The successful runs applied the set as security_user.
    assert_eq!(
        sql(&db, "SELECT DISTINCT executed_by FROM schema_migrations"),
        "security_user"
    );
}

/// A deploy role that owns its database and nothing else (NOSUPERUSER, NOCREATEDB,
/// NOCREATEROLE) applies the example set through the CLI: its `CREATE EXTENSION pg_trgm` is
/// a trusted extension (PostgreSQL 13+), which a database owner may create.
#[test]
fn a_role_owning_its_database_without_superuser_applies_the_example_set() {
    const PASSWORD: &str = "deploy-role-password";
    let db = database();
    cluster()
        .create_login_role("deploy_owner", PASSWORD)
        .unwrap();
    sql(
        &db,
        &format!(
            "ALTER ROLE deploy_owner NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS; \
             ALTER DATABASE \"{}\" OWNER TO deploy_owner",
            db.name()
        ),
    );
    assert_eq!(
        sql(
            &db,
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls \
             FROM pg_roles WHERE rolname = 'deploy_owner'"
        ),
        "f|f|f|f|f"
    );
    let url = format!(
        "postgres://deploy_owner:{PASSWORD}@{}:{}/{}?sslmode=disable",
        db.host(),
        db.port(),
        db.name()
    );
    for command in [
        &["up"][..],
        &["status"],
        &["verify"],
        &["down", "--to", "0"],
        &["up"],
    ] {
        let output = migrate()
            .arg("--dir")
            .arg(example_migrations())
            .arg("--database-url")
            .arg(&url)
            .args(command)
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "{command:?} as deploy_owner: {}{}",
            stdout(&output),
            stderr(&output)
        );
    }
    assert_eq!(
        sql(
            &db,
            "SELECT count(*), min(executed_by), max(executed_by) FROM schema_migrations"
        ),
        "7|deploy_owner|deploy_owner"
    );
    // Everything the set made belongs to the deploy role.
    assert_eq!(
        sql(
            &db,
            "SELECT coalesce(string_agg(DISTINCT tableowner, ','), '') FROM pg_tables \
             WHERE schemaname = 'public'"
        ),
        "deploy_owner"
    );
    assert_eq!(
        sql(
            &db,
            "SELECT r.rolname FROM pg_extension e JOIN pg_roles r ON r.oid = e.extowner \
             WHERE e.extname = 'pg_trgm'"
        ),
        "deploy_owner"
    );
}
