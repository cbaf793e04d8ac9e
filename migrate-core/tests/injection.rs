//! Every identifier from configuration or from a migration file reaches SQL validated and
//! quoted: injection attempts through each, against a real PostgreSQL, where a sentinel
//! table must survive and nothing unexpected may be created.
//!
//! - `MigratorConfig::history_table` (and the tables named after it: `_flags`, `_backfill`,
//!   `_partial`) must be plain identifiers, else `Migrator::new` refuses before any I/O;
//!   legal names that need quoting (reserved words, mixed case) are always quoted.
//! - `application_name` and flag names are values: bound, never spliced.
//! - The backfill directive's `table=` and `key=` follow SQL's quoting, so any name is legal;
//!   the batch SQL, the key-type lookup (a string literal) and the verification quote them.

mod common;

use std::borrow::Cow;

use common::*;
use migrate_core::runtime::state::flags::FlagError;
use migrate_core::runtime::{Migrator, MigratorConfig, RuntimeError, UpTo};
use tokio_postgres::Client;

async fn plant_sentinel(client: &Client) {
    client
        .batch_execute("CREATE TABLE sentinel (id int); INSERT INTO sentinel VALUES (1);")
        .await
        .expect("sentinel");
}

async fn assert_sentinel_survives(client: &Client) {
    assert_eq!(scalar_i64(client, "SELECT count(*) FROM sentinel").await, 1);
}

/// Every table of the database outside the system schemas, as `schema.table`.
async fn tables(client: &Client) -> Vec<String> {
    client
        .query(
            "SELECT schemaname || '.' || tablename FROM pg_tables \
             WHERE schemaname NOT IN ('pg_catalog', 'information_schema') \
             ORDER BY (schemaname || '.' || tablename) COLLATE \"C\"",
            &[],
        )
        .await
        .expect("tables")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

fn with_history_table(name: &str) -> MigratorConfig {
    MigratorConfig {
        history_table: name.into(),
        ..config()
    }
}

/// History table names that are not plain identifiers: statement breaks, quotes of both
/// kinds, comments, spaces, unicode, control characters, too many parts, too long.
fn hostile_names() -> Vec<String> {
    let mut names: Vec<String> = [
        "x; DROP TABLE sentinel; --",
        "x\"; DROP TABLE sentinel; --",
        "public.x\"; DROP TABLE sentinel; --",
        "x'; DROP TABLE sentinel; --",
        "\"quoted\"",
        "x--",
        "x/*",
        "$1",
        "a b",
        " x",
        "x ",
        "x\ny",
        "x\u{0}y",
        "ünïcode",
        "表",
        "x\u{200b}",
        "a.b.c",
        "",
        ".",
        ".x",
        "x.",
        "1x",
        "x-y",
    ]
    .map(str::to_owned)
    .to_vec();
    names.push("x".repeat(64));
    names.push(format!("{}.x", "s".repeat(64)));
    names
}

#[tokio::test]
async fn hostile_history_table_names_are_refused_before_any_io() {
    let db = database();
    let client = client(db.url()).await;
    plant_sentinel(&client).await;
    let migrations = set(vec![tx(1, "a", &["SELECT 1"], &["SELECT 1"])]);
    for name in hostile_names() {
        match Migrator::new(&migrations, with_history_table(&name)) {
            Err(RuntimeError::InvalidIdentifier { value, .. }) => assert_eq!(value, name),
            Err(other) => panic!("{name:?}: expected InvalidIdentifier, got {other:?}"),
            Ok(_) => panic!("{name:?} was accepted"),
        }
    }
    assert_sentinel_survives(&client).await;
    assert_eq!(tables(&client).await, ["public.sentinel"]);
}

/// A name that is a plain identifier but whose derived tables (`<name>_backfill` is the
/// longest) would pass PostgreSQL's 63 bytes used to be accepted, then failed half-way
/// through a deploy (the first backfill) or on every `status`. Refused up front now.
#[tokio::test]
async fn a_history_table_name_whose_derived_tables_are_too_long_is_refused_up_front() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(vec![tx(1, "a", &["SELECT 1"], &["SELECT 1"])]);
    // 54 bytes + `_backfill` = 63: the longest that works.
    let longest = "h".repeat(54);
    let migrator = Migrator::new(&migrations, with_history_table(&longest)).expect("54 bytes");
    migrator.up(&client, UpTo::All).await.expect("up");
    migrator.status(&client).await.expect("status");
    migrator.flags().expect("flags table name");
    for length in 55..=63 {
        let name = "h".repeat(length);
        match Migrator::new(&migrations, with_history_table(&name)) {
            Err(RuntimeError::InvalidIdentifier { what, value }) => {
                assert!(what.contains("history table name +"), "{what}");
                assert!(value.starts_with(&name), "{value}");
            }
            Err(other) => panic!("{length}: expected InvalidIdentifier, got {other:?}"),
            Ok(_) => panic!("a {length}-byte history table name was accepted"),
        }
    }
}

/// Legal names that only work quoted: reserved words, mixed case, a schema that does not
/// exist yet. One database each (a second history table in a database is refused as a
/// probable typo).
#[tokio::test]
async fn legal_history_table_names_are_always_quoted() {
    let migrations = set(vec![tx(
        1,
        "a",
        &["CREATE TABLE IF NOT EXISTS a (id bigint)"],
        &["DROP TABLE IF EXISTS a"],
    )]);
    for (name, created) in [
        ("select.from", ["select.from", "select.from_flags"]),
        (
            "Mixed_Case.History_T",
            ["Mixed_Case.History_T", "Mixed_Case.History_T_flags"],
        ),
        ("user", ["public.user", "public.user_flags"]),
        ("_", ["public._", "public.__flags"]),
    ] {
        let db = database();
        let client = client(db.url()).await;
        plant_sentinel(&client).await;
        let migrator = Migrator::new(&migrations, with_history_table(name)).expect(name);
        migrator.up(&client, UpTo::All).await.expect(name);
        migrator.status(&client).await.expect(name);
        let flags = migrator.flags().expect(name);
        flags.set(&client, "x", true).await.expect(name);
        assert!(flags.get(&client, "x").await.expect(name).enabled);
        migrator.down(&client, 0).await.expect(name);
        assert_sentinel_survives(&client).await;
        let mut expected = vec!["public.sentinel", created[0], created[1]];
        expected.sort();
        assert_eq!(tables(&client).await, expected, "{name}");
    }
}

#[tokio::test]
async fn application_names_and_flag_names_are_bound_not_spliced() {
    let db = database();
    let client = client(db.url()).await;
    plant_sentinel(&client).await;
    let migrations = set(vec![tx(1, "a", &["SELECT 1"], &["SELECT 1"])]);
    let hostile = "x'; DROP TABLE sentinel; --";
    let migrator = Migrator::new(
        &migrations,
        MigratorConfig {
            application_name: hostile.into(),
            ..config()
        },
    )
    .expect("any application name is a value");
    migrator.up(&client, UpTo::All).await.expect("up");
    let flags = migrator.flags().expect("flags");
    for name in [
        hostile,
        "x\"; DROP TABLE sentinel; --",
        "X",
        "a b",
        "ünï",
        "",
    ] {
        assert!(
            matches!(
                flags.set(&client, name, true).await,
                Err(FlagError::InvalidName { .. })
            ),
            "{name:?}"
        );
    }
    flags.set(&client, "a.b-c_1", true).await.expect("legal");
    assert_sentinel_survives(&client).await;
}

/// The backfill directive's names are SQL names: anything can be quoted, and the runtime
/// quotes them back exactly in every statement it builds. Tables named like injections,
/// with a key column, a schema and a single quote (the key-type lookup is a string literal)
/// that would break unquoted SQL.
#[tokio::test]
async fn backfill_names_that_look_like_injections_are_quoted_exactly() {
    let db = database();
    let client = client(db.url()).await;
    plant_sentinel(&client).await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_tables.sql"),
        "CREATE TABLE IF NOT EXISTS \"x\"\"; DROP TABLE sentinel; --\" \
             (\"id\"\" --\" bigint PRIMARY KEY, done boolean);\n\
         INSERT INTO \"x\"\"; DROP TABLE sentinel; --\" SELECT g, NULL FROM generate_series(1, 10) g;\n\
         CREATE SCHEMA IF NOT EXISTS \"o'neil\";\n\
         CREATE TABLE IF NOT EXISTS \"o'neil\".\"t'); DROP TABLE sentinel; --\" \
             (\"k'\" text PRIMARY KEY, done boolean);\n\
         INSERT INTO \"o'neil\".\"t'); DROP TABLE sentinel; --\" SELECT g::text, NULL FROM generate_series(1, 7) g;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_fill.backfill.sql"),
        "-- migrate:backfill table=\"x\"\"; DROP TABLE sentinel; --\" key=\"id\"\" --\" batch=3\n\
         UPDATE \"x\"\"; DROP TABLE sentinel; --\" SET done = true WHERE done IS NOT TRUE;\n\
         -- migrate:down\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0003_fill.backfill.sql"),
        "-- migrate:backfill table=\"o'neil\".\"t'); DROP TABLE sentinel; --\" key=\"k'\" batch=2\n\
         UPDATE \"o'neil\".\"t'); DROP TABLE sentinel; --\" SET done = true WHERE done IS NOT TRUE;\n\
         -- migrate:down\n",
    )
    .unwrap();
    let checked = migrate_core::check_dir(dir.path(), "migrations").unwrap();
    let errors: Vec<String> = checked.errors().map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let migrations = checked.migrations(&dir.path().to_string_lossy());
    let spec = migrations.get(2).and_then(|m| m.backfill.clone()).unwrap();
    assert_eq!(
        (spec.table, spec.key),
        (
            Cow::from("x\"; DROP TABLE sentinel; --"),
            Cow::from("id\" --")
        )
    );

    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::All).await.expect("up");
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM \"x\"\"; DROP TABLE sentinel; --\" WHERE done"
        )
        .await,
        10
    );
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM \"o'neil\".\"t'); DROP TABLE sentinel; --\" WHERE done"
        )
        .await,
        7
    );
    // The verification re-counts with the same quoted names.
    let verified = migrator
        .verify_backfills(&client, None)
        .await
        .expect("verify");
    assert_eq!(verified.len(), 2);
    assert!(
        verified.iter().all(|s| s.remaining == Some(0)),
        "{verified:?}"
    );
    migrator.status(&client).await.expect("status");
    migrator.down(&client, 1).await.expect("down");
    assert_sentinel_survives(&client).await;

    // Unquoted, such names do not parse as a directive at all.
    for directive in [
        "table=x;DROP key=id",
        "table=x key=id;DROP",
        "table=x\"; key=id",
        "table=a.b.c key=id",
    ] {
        let set = migrate_core::source::load_files(
            &[migrate_core::source::SourceFile {
                display_path: "m/0001_a.backfill.sql".into(),
                file_name: "0001_a.backfill.sql".into(),
                bytes: format!(
                    "-- migrate:backfill {directive}\nUPDATE x SET a = 1 WHERE a IS NULL;\n"
                )
                .into_bytes()
                .into(),
            }],
            &|_| true,
        );
        assert!(
            set.diagnostics.iter().any(|d| d.code == "bad-directive"),
            "{directive}: {:?}",
            set.diagnostics
        );
    }
}
