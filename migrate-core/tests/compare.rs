//! `migrate verify --compare` against a real PostgreSQL: differing keys named exactly, a
//! clean compare passes, a killed compare resumes, and the contract gate waits for a pass.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use common::*;
use migrate_core::Migrations;
use migrate_core::runtime::{
    CompareOptions, CompareSide, Difference, GateFailure, KeyProblem, Migrator, RuntimeError, UpTo,
};

/// Loads `files` (name, text) from a folder exactly as the CLI would.
fn load(dir: &Path, files: &[(&str, &str)]) -> Migrations {
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    checked.migrations(&dir.to_string_lossy())
}

/// Two tables: a legacy one and its modern copy with the email lower-cased. The backfill
/// file only declares the compare (its UPDATE keeps the copy's other column in shape).
fn copy_set(dir: &Path) -> Migrations {
    load(
        dir,
        &[
            (
                "0001_tables.sql",
                "CREATE TABLE IF NOT EXISTS users_legacy (id bigint PRIMARY KEY, email text NOT NULL);\n\
                 CREATE TABLE IF NOT EXISTS users_modern (id bigint PRIMARY KEY, email_normalized text, note text);\n\
                 -- migrate:down\nDROP TABLE IF EXISTS users_modern;\nDROP TABLE IF EXISTS users_legacy;\n",
            ),
            (
                "0002_copy.backfill.sql",
                "-- migrate:backfill table=users_modern key=id\n\
                 -- migrate:compare source=users_legacy target=users_modern key=id columns=email_normalized map=lower(email)\n\
                 UPDATE users_modern SET note = '' WHERE note IS NULL;\n-- migrate:down\n",
            ),
        ],
    )
}

async fn fill_copy(client: &tokio_postgres::Client, rows: i64) {
    client
        .batch_execute(&format!(
            "INSERT INTO users_legacy SELECT g, 'User' || g || '@Example.com' FROM generate_series(1, {rows}) g;\n\
             INSERT INTO users_modern (id, email_normalized) SELECT id, lower(email) FROM users_legacy;\n\
             ANALYZE users_legacy; ANALYZE users_modern;"
        ))
        .await
        .unwrap();
}

fn keys(report: &migrate_core::runtime::CompareReport) -> BTreeSet<(String, Difference)> {
    report
        .differing_keys
        .iter()
        .map(|k| (k.key.clone(), k.difference))
        .collect()
}

#[tokio::test]
async fn a_million_rows_with_three_corrupted_and_one_missing_name_exactly_those_keys() {
    let set = Prepared::new(copy_set, "").await;
    let (client, migrator) = (&set.client, set.migrator());
    fill_copy(client, 1_000_000).await;
    // Corrupted: a wrong value, a NULL, a value that differs only in case; missing: a
    // deleted row.
    client
        .batch_execute(
            "UPDATE users_modern SET email_normalized = 'someone@else' WHERE id = 17;\n\
             UPDATE users_modern SET email_normalized = NULL WHERE id = 500000;\n\
             UPDATE users_modern SET email_normalized = 'User999999@Example.com' WHERE id = 999999;\n\
             DELETE FROM users_modern WHERE id = 123456;",
        )
        .await
        .unwrap();

    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(report.rows_compared, 1_000_000);
    assert_eq!(report.differing, 4, "{report:?}");
    let expected: BTreeSet<(String, Difference)> = [
        ("17", Difference::Differs),
        ("123456", Difference::Missing),
        ("500000", Difference::Differs),
        ("999999", Difference::Differs),
    ]
    .into_iter()
    .map(|(k, d)| (k.to_owned(), d))
    .collect();
    assert_eq!(keys(&report), expected);
    assert!(!report.passed() && report.passed_at.is_none());

    // An extra row in the target, above every source key, is found too.
    client
        .batch_execute("INSERT INTO users_modern (id, email_normalized) VALUES (2000000, 'x')")
        .await
        .unwrap();
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(report.differing, 5);
    assert!(
        report
            .differing_keys
            .iter()
            .any(|k| k.key == "2000000" && k.difference == Difference::Extra)
    );
}

#[tokio::test]
async fn a_clean_compare_passes_and_is_recorded() {
    let set = Prepared::new(copy_set, "").await;
    let (client, migrator) = (&set.client, set.migrator());
    fill_copy(client, 20_000).await;
    let options = CompareOptions {
        initial_chunk: 1000,
        max_chunk: 1000,
        ..CompareOptions::default()
    };
    let report = migrator.compare(client, 2, &options).await.unwrap();
    assert!(report.passed(), "{report:?}");
    assert_eq!((report.rows_compared, report.chunks), (20_000, 21));
    assert!(report.passed_at.is_some());
    let stored = scalar_i64(
        client,
        "SELECT count(*) FROM schema_migrations_compare WHERE version = 2 AND passed_at IS NOT NULL",
    )
    .await;
    assert_eq!(stored, 1);

    // A later difference clears the pass.
    client
        .batch_execute("UPDATE users_legacy SET email = 'changed' WHERE id = 20000")
        .await
        .unwrap();
    let report = migrator.compare(client, 2, &options).await.unwrap();
    assert_eq!(report.differing, 1);
    let stored = scalar_i64(
        client,
        "SELECT count(*) FROM schema_migrations_compare WHERE version = 2 AND passed_at IS NOT NULL",
    )
    .await;
    assert_eq!(stored, 0);
}

#[tokio::test]
async fn a_compare_killed_midway_resumes_after_its_last_chunk() {
    let set = Prepared::new(copy_set, "").await;
    let (db, migrations, setup) = (&set.db, &set.migrations, &set.client);
    fill_copy(setup, 200_000).await;
    setup
        .batch_execute(
            "UPDATE users_modern SET email_normalized = 'first' WHERE id = 5;\n\
             UPDATE users_modern SET email_normalized = 'last' WHERE id = 199990;",
        )
        .await
        .unwrap();
    // Fixed 1,000-row chunks with a pause: about 200 chunks, so the kill lands midway.
    let options = CompareOptions {
        initial_chunk: 1000,
        min_chunk: 1000,
        max_chunk: 1000,
        delay: Some(Duration::from_millis(10)),
        ..CompareOptions::default()
    };

    let victim = client(db.url()).await;
    let pid: i32 = victim
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    let run = {
        let migrations = migrations.clone();
        let options = options.clone();
        tokio::spawn(async move {
            let migrator = Migrator::new(&migrations, config()).unwrap();
            migrator.compare(&victim, 2, &options).await
        })
    };
    // Observed, not timed: wait until the progress table shows chunks past the first
    // difference, then end the compare's session.
    let reached = loop {
        let row = setup
            .query_opt(
                "SELECT rows_compared FROM schema_migrations_compare WHERE version = 2",
                &[],
            )
            .await;
        if let Ok(Some(row)) = row {
            let rows: i64 = row.get(0);
            if rows >= 20_000 {
                break rows;
            }
        }
        assert!(!run.is_finished(), "the compare ended before it was killed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    setup
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .await
        .unwrap();
    let killed = run.await.unwrap();
    assert!(killed.is_err(), "{killed:?}");

    let client = client(db.url()).await;
    let report = Migrator::new(migrations, config())
        .unwrap()
        .compare(&client, 2, &CompareOptions::default())
        .await
        .unwrap();
    let resumed_from: i64 = report
        .resumed_from
        .as_deref()
        .expect("resumed")
        .parse()
        .unwrap();
    assert!(
        resumed_from >= reached && resumed_from < 200_000,
        "{report:?}"
    );
    assert_eq!(report.rows_compared, 200_000);
    assert_eq!(report.rows_this_run, 200_000 - resumed_from);
    let found: Vec<&str> = report
        .differing_keys
        .iter()
        .map(|k| k.key.as_str())
        .collect();
    assert_eq!(found, ["5", "199990"]);
}

fn gated_set(dir: &Path) -> Migrations {
    load(
        dir,
        &[
            (
                "0001_users.sql",
                "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text NOT NULL, email_normalized text);\n\
                 -- migrate:down\nDROP TABLE IF EXISTS users;\n",
            ),
            (
                "0002_normalize.backfill.sql",
                "-- migrate:backfill table=users key=id\n\
                 -- migrate:compare source=users target=users key=id columns=email_normalized map=lower(email)\n\
                 UPDATE users SET email_normalized = lower(email) WHERE email_normalized IS NULL;\n-- migrate:down\n",
            ),
            (
                "0003_drop_email.contract.sql",
                "-- migrate:requires 1\n-- migrate:requires-compare\n\
                 ALTER TABLE users DROP COLUMN IF EXISTS email;\n",
            ),
        ],
    )
}

fn compare_refusal(error: &RuntimeError) -> Option<String> {
    match error {
        RuntimeError::ContractGate { failure, .. } => match failure.as_ref() {
            GateFailure::CompareNotPassed { reason, .. } => Some(reason.clone()),
            _ => None,
        },
        _ => None,
    }
}

#[tokio::test]
async fn the_gate_refuses_a_contract_until_its_compare_passed() {
    let set = Prepared::new(gated_set, "").await;
    let (client, migrator) = (&set.client, set.migrator());
    client
        .batch_execute(
            "INSERT INTO users (id, email) SELECT g, 'A' || g FROM generate_series(1, 5000) g",
        )
        .await
        .unwrap();
    migrator.up(client, UpTo::Version(2)).await.unwrap();

    let refused = migrator.up(client, UpTo::All).await.unwrap_err();
    assert_eq!(
        compare_refusal(refused.error()).as_deref(),
        Some("it never ran"),
        "{refused}"
    );
    // The dry run refuses the same way.
    let dry = migrator.dry_run_up(client, UpTo::All).await.unwrap_err();
    assert!(compare_refusal(dry.error()).is_some(), "{}", dry.error());

    // A row written by a release that forgot the new column: the compare fails, and so does
    // the gate.
    client
        .batch_execute("UPDATE users SET email_normalized = 'stale' WHERE id = 42")
        .await
        .unwrap();
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(report.differing, 1);
    let refused = migrator.up(client, UpTo::All).await.unwrap_err();
    assert_eq!(
        compare_refusal(refused.error()).as_deref(),
        Some("it found 1 differing key(s)")
    );
    assert_eq!(
        scalar_i64(client, "SELECT count(*) FROM information_schema.columns WHERE table_name = 'users' AND column_name = 'email'").await,
        1
    );

    client
        .batch_execute("UPDATE users SET email_normalized = lower(email) WHERE id = 42")
        .await
        .unwrap();
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert!(report.passed());
    let applied = migrator.up(client, UpTo::All).await.unwrap();
    assert_eq!(applied.versions(), vec![3]);
}

/// A set whose 0001 runs `tables` (a `src` table with a `note` column the backfill fills
/// included) and whose backfill 0002 declares `-- migrate:compare <compare>` on line 2.
fn compare_set(dir: &Path, tables: &str, compare: &str) -> Migrations {
    load(
        dir,
        &[
            (
                "0001_tables.sql",
                &format!("{tables}\n-- migrate:down\nSELECT 1;\n"),
            ),
            (
                "0002_copy.backfill.sql",
                &format!(
                    "-- migrate:backfill table=src key=id\n-- migrate:compare {compare}\n\
                     UPDATE src SET note = '' WHERE note IS NULL;\n-- migrate:down\n"
                ),
            ),
        ],
    )
}

/// A test's own database and folder, holding a set whose 0001 is applied and whose tables
/// got the test's rows: what every test here starts from.
/// (Fields drop in this order: the session before its database.)
struct Prepared {
    client: tokio_postgres::Client,
    migrations: Migrations,
    _dir: tempfile::TempDir,
    db: migrate_scratch::ScratchDatabase,
}

impl Prepared {
    /// Loads the set `set` writes into a fresh folder, applies its 0001 on a fresh
    /// database, then runs `data` (nothing when empty).
    async fn new(set: impl FnOnce(&Path) -> Migrations, data: &str) -> Prepared {
        let db = database();
        let dir = tempfile::tempdir().unwrap();
        let migrations = set(dir.path());
        let client = client(db.url()).await;
        up_to(&client, &migrations, 1).await;
        if !data.is_empty() {
            client.batch_execute(data).await.unwrap();
        }
        Prepared {
            client,
            migrations,
            _dir: dir,
            db,
        }
    }

    /// [`compare_set`] with `tables` and `compare`, then `data`.
    async fn compare(tables: &str, compare: &str, data: &str) -> Prepared {
        Prepared::new(|dir| compare_set(dir, tables, compare), data).await
    }

    fn migrator(&self) -> Migrator<'_> {
        Migrator::new(&self.migrations, config()).unwrap()
    }
}

fn key_list(report: &migrate_core::runtime::CompareReport) -> Vec<&str> {
    report
        .differing_keys
        .iter()
        .map(|k| k.key.as_str())
        .collect()
}

#[tokio::test]
async fn a_key_duplicated_or_null_on_a_side_fails_naming_the_side_the_keys_and_the_counts() {
    // No unique index and no NOT NULL on the target's key: the catalog proves nothing, the
    // rows are counted. The source's key is unique by its data alone.
    let set = Prepared::compare(
        "CREATE TABLE IF NOT EXISTS src (id bigint, v text, note text);\n\
         CREATE TABLE IF NOT EXISTS dst (id bigint, v text);",
        "source=src target=dst key=id columns=v",
        "INSERT INTO src SELECT g, 'v' || g FROM generate_series(1, 5000) g;\n\
         INSERT INTO dst SELECT id, v FROM src;",
    )
    .await;
    let client = &set.client;
    let migrator = set.migrator();
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert!(report.passed(), "{report:?}");

    // The case: a second row for key 5 and two NULL keys in the target.
    client
        .batch_execute(
            "INSERT INTO dst VALUES (5, 'v5'), (NULL, 'x'), (NULL, 'y'), (7, 'v7'), (7, 'v7')",
        )
        .await
        .unwrap();
    let error = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap_err();
    let RuntimeError::CompareKey { at, key, problems } = &error else {
        panic!("{error}");
    };
    assert_eq!(
        (at.version, at.file.as_str(), at.line),
        (2, "0002_copy.backfill.sql", Some(2))
    );
    assert_eq!(key, "id");
    assert_eq!(
        problems.as_slice(),
        [KeyProblem {
            side: CompareSide::Target,
            table: "dst".into(),
            null_rows: 2,
            duplicated_keys: 2,
            duplicates: vec![("5".into(), 2), ("7".into(), 3)],
        }]
    );
    let message = error.to_string();
    assert!(message.contains("0002_copy.backfill.sql:2"), "{message}");
    assert!(message.contains("target dst"), "{message}");
    // The earlier pass no longer holds.
    assert_eq!(
        scalar_i64(
            client,
            "SELECT count(*) FROM schema_migrations_compare WHERE passed_at IS NOT NULL"
        )
        .await,
        0
    );

    // Both sides named when both are wrong; a same-table compare checks its one table.
    client
        .batch_execute("INSERT INTO src VALUES (NULL, 'z'), (9, 'v9')")
        .await
        .unwrap();
    let error = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap_err();
    let RuntimeError::CompareKey { problems, .. } = &error else {
        panic!("{error}");
    };
    let sides: Vec<(CompareSide, i64, i64)> = problems
        .iter()
        .map(|p| (p.side, p.null_rows, p.duplicated_keys))
        .collect();
    assert_eq!(
        sides,
        [(CompareSide::Source, 1, 1), (CompareSide::Target, 2, 2)]
    );
}

#[tokio::test]
async fn a_unique_not_null_key_is_proven_by_the_catalog_and_an_invalid_unique_index_is_not() {
    // A unique index left INVALID (its build failed on the duplicate) proves nothing.
    let set = Prepared::compare(
        "CREATE TABLE IF NOT EXISTS src (id bigint PRIMARY KEY, v text, note text);\n\
         CREATE TABLE IF NOT EXISTS dst (id bigint NOT NULL, v text);",
        "source=src target=dst key=id columns=v",
        "INSERT INTO src SELECT g, 'v' FROM generate_series(1, 100) g;\n\
         INSERT INTO dst SELECT id, v FROM src; INSERT INTO dst VALUES (3, 'v');",
    )
    .await;
    let client = &set.client;
    let failed = client
        .batch_execute("CREATE UNIQUE INDEX CONCURRENTLY dst_id ON dst (id)")
        .await
        .unwrap_err();
    assert_eq!(
        failed.code(),
        Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION)
    );
    let migrator = set.migrator();
    let error = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, RuntimeError::CompareKey { .. }), "{error}");
    client
        .batch_execute("DELETE FROM dst WHERE ctid = (SELECT max(ctid) FROM dst WHERE id = 3); REINDEX INDEX dst_id;")
        .await
        .unwrap();
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert!(report.passed(), "{report:?}");
}

/// Queues `keys` of version 2 as failed dual writes.
async fn queue_keys(client: &tokio_postgres::Client, keys: &[&str]) {
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations_reconcile (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
             version bigint NOT NULL, key text NOT NULL, flag text NOT NULL, error text, queued_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .unwrap();
    for key in keys {
        client
            .execute(
                "INSERT INTO schema_migrations_reconcile (version, key, flag) VALUES (2, $1, 'f')",
                &[key],
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn reconcile_rewrites_exactly_the_rows_the_compare_reports_and_then_it_passes() {
    // Each key tries one way two values can be "equal": a numeric's scale (into an unscaled
    // and into a scaled column), json into jsonb, timestamp into timestamptz, NULL and NULL,
    // -0 and 0, arrays of another element type.
    let set = Prepared::compare(
        "-- migrate:allow prefer-robust-types the legacy types are what is tested\n\
         CREATE TABLE IF NOT EXISTS src (id bigint PRIMARY KEY, amount numeric, rounded numeric, \
            doc json, at timestamp, f float8, tags varchar(20)[], note text);\n\
         CREATE TABLE IF NOT EXISTS dst (id bigint PRIMARY KEY, amount numeric, rounded numeric(10,1), \
            doc jsonb, at timestamptz, f float8, tags text[]);",
        "source=src target=dst key=id columns=amount,rounded,doc,at,f,tags",
        "SET TimeZone = 'UTC';\n\
         INSERT INTO src VALUES (1, 1.00, 1.00, '{\"b\": 1,   \"a\": [1, 2]}', '2026-01-02 03:04:05', 0.1, '{x,y}'),\n\
                                (2, 2.5, 2.5, NULL, NULL, NULL, NULL),\n\
                                (3, 3, 3, '{}', '2026-01-02 03:04:05', '-0', '{}');\n\
         INSERT INTO dst VALUES (1, 1.0, 1.0, '{\"a\": [1, 2], \"b\": 1}', '2026-01-02 03:04:05+00', 0.1, '{x,y}'),\n\
                                (2, 2.5, 2.5, NULL, NULL, NULL, NULL),\n\
                                (3, 3, 3, '{}', '2026-01-02 03:04:05+00', 0.0, '{}');",
    )
    .await;
    let client = &set.client;
    client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    let migrator = set.migrator();
    // Key 1: 1.00 and 1.0 in an unscaled numeric (a reader sees both texts); the scaled
    // column, the jsonb and the timestamptz hold what the source's values become. Key 3: -0.
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(key_list(&report), ["1", "3"], "{report:?}");

    queue_keys(client, &["1", "2", "3"]).await;
    let reconciled = migrator.reconcile(client, Some(2)).await.unwrap();
    assert_eq!(
        (reconciled[0].keys, reconciled[0].changed),
        (3, 2),
        "{reconciled:?}"
    );
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert!(report.passed(), "{report:?}");
    // Replayed again, nothing is rewritten: reconcile and compare agree on every row.
    queue_keys(client, &["1", "2", "3"]).await;
    let reconciled = migrator.reconcile(client, Some(2)).await.unwrap();
    assert_eq!(reconciled[0].changed, 0, "{reconciled:?}");
}

#[tokio::test]
async fn one_table_reconcile_and_compare_agree_on_a_numeric_scale() {
    let set = Prepared::compare(
        "CREATE TABLE IF NOT EXISTS src (id bigint PRIMARY KEY, price numeric, price_new numeric, note text);",
        "source=src target=src key=id columns=price_new map=price",
        "INSERT INTO src VALUES (1, 1.00, 1.0), (2, 2, 2), (3, NULL, NULL);",
    )
    .await;
    let client = &set.client;
    let migrator = set.migrator();
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(key_list(&report), ["1"], "{report:?}");
    queue_keys(client, &["1", "2", "3"]).await;
    let reconciled = migrator.reconcile(client, Some(2)).await.unwrap();
    assert_eq!(reconciled[0].changed, 1, "{reconciled:?}");
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert!(report.passed(), "{report:?}");
}

#[tokio::test]
async fn differing_keys_come_in_key_order_lowest_first_in_every_mode() {
    // 9, 10 and 100 differ, and so does every key from 95707 up: in text order 100000
    // would come first.
    let set = Prepared::compare(
        "CREATE TABLE IF NOT EXISTS src (id bigint PRIMARY KEY, a text, b text, note text);",
        "source=src target=src key=id columns=b map=a",
        "INSERT INTO src SELECT g, 'x', 'x' FROM generate_series(1, 100000) g;\n\
         UPDATE src SET b = 'y' WHERE id IN (9, 10, 100) OR id >= 95707;",
    )
    .await;
    let client = &set.client;
    let migrator = set.migrator();
    let options = CompareOptions {
        max_keys: 5,
        ..CompareOptions::default()
    };
    let report = migrator.compare(client, 2, &options).await.unwrap();
    assert_eq!(key_list(&report), ["9", "10", "100", "95707", "95708"]);
    assert_eq!(report.differing, 3 + (100000 - 95707 + 1));

    // One chunk: the lowest keys of the chunk, not its lowest texts.
    let one_chunk = CompareOptions {
        max_keys: 2,
        initial_chunk: 1_000_000,
        ..CompareOptions::default()
    };
    let report = migrator.compare(client, 2, &one_chunk).await.unwrap();
    assert_eq!(key_list(&report), ["9", "10"]);
    let count_only = CompareOptions {
        max_keys: 0,
        ..CompareOptions::default()
    };
    let report = migrator.compare(client, 2, &count_only).await.unwrap();
    assert_eq!((report.differing, report.differing_keys.len()), (4297, 0));

    // Resumed: a killed run stored 100 keys (the lowest, with its cursor at 99999); the
    // resumed run honours its own --max-keys.
    let stored: Vec<String> = [9, 10, 100]
        .into_iter()
        .chain(95707..95804)
        .map(|k| k.to_string())
        .collect();
    let kinds = vec!["differs".to_owned(); stored.len()];
    client
        .execute(
            "UPDATE schema_migrations_compare SET last_key = '99999', rows_compared = 99999, \
             chunks = 50, differing = 4296, differing_keys = $1, differing_kinds = $2, \
             finished_at = NULL, passed_at = NULL WHERE version = 2",
            &[&stored, &kinds],
        )
        .await
        .unwrap();
    let resumed = migrator.compare(client, 2, &options).await.unwrap();
    assert_eq!(resumed.resumed_from.as_deref(), Some("99999"));
    assert_eq!(resumed.differing, 4297);
    assert_eq!(key_list(&resumed), ["9", "10", "100", "95707", "95708"]);
}

#[tokio::test]
async fn text_keys_in_different_collations_and_uuid_keys_compare_in_one_order() {
    if !common::has_collation("und-x-icu") {
        return;
    }
    // The source orders its keys bytewise, the target by ICU's root collation (a < B < c):
    // chunk bounds taken from the source must select the same keys on both sides.
    let set = Prepared::compare(
        "CREATE TABLE IF NOT EXISTS src (id text COLLATE \"C\" PRIMARY KEY, v text, note text);\n\
         CREATE TABLE IF NOT EXISTS dst (id text COLLATE \"und-x-icu\" PRIMARY KEY, v text);",
        "source=src target=dst key=id columns=v",
        "INSERT INTO src SELECT k, 'v' FROM (SELECT chr(65 + g % 26) || g AS k FROM generate_series(1, 200) g \
            UNION ALL SELECT lower(chr(65 + g % 26)) || g FROM generate_series(1, 200) g) AS keys(k);\n\
         INSERT INTO dst SELECT id, v FROM src; UPDATE dst SET v = 'w' WHERE id IN ('B1', 'a26');",
    )
    .await;
    let client = &set.client;
    let migrator = set.migrator();
    let small = CompareOptions {
        initial_chunk: 7,
        min_chunk: 7,
        max_chunk: 7,
        ..CompareOptions::default()
    };
    let report = migrator.compare(client, 2, &small).await.unwrap();
    assert_eq!(report.rows_compared, 400);
    // Bytewise, as the source orders: upper case first.
    assert_eq!(key_list(&report), ["B1", "a26"], "{report:?}");

    let set = Prepared::compare(
        "CREATE TABLE IF NOT EXISTS src (id uuid PRIMARY KEY, v text, note text);\n\
         CREATE TABLE IF NOT EXISTS dst (id uuid PRIMARY KEY, v text);",
        "source=src target=dst key=id columns=v",
        "INSERT INTO src SELECT gen_random_uuid(), 'v' FROM generate_series(1, 1000);\n\
         INSERT INTO dst SELECT id, v FROM src;\n\
         DELETE FROM dst WHERE id = (SELECT id FROM dst ORDER BY id LIMIT 1);\n\
         INSERT INTO dst VALUES ('ffffffff-ffff-ffff-ffff-ffffffffffff', 'x');",
    )
    .await;
    let client = &set.client;
    let migrator = set.migrator();
    let report = migrator.compare(client, 2, &small).await.unwrap();
    let lowest: String = client
        .query_one("SELECT id::text FROM src ORDER BY id LIMIT 1", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        keys(&report),
        [
            (lowest, Difference::Missing),
            (
                "ffffffff-ffff-ffff-ffff-ffffffffffff".to_owned(),
                Difference::Extra
            )
        ]
        .into_iter()
        .collect()
    );
}

#[tokio::test]
async fn an_empty_source_or_an_empty_target_never_passes_a_copy_that_differs() {
    let set = Prepared::compare(
        "CREATE TABLE IF NOT EXISTS src (id bigint PRIMARY KEY, v text, note text);\n\
         CREATE TABLE IF NOT EXISTS dst (id bigint PRIMARY KEY, v text);",
        "source=src target=dst key=id columns=v",
        "INSERT INTO dst VALUES (1, 'a'), (2, NULL)",
    )
    .await;
    let client = &set.client;
    let migrator = set.migrator();
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(
        keys(&report),
        [
            ("1".to_owned(), Difference::Extra),
            ("2".to_owned(), Difference::Extra)
        ]
        .into_iter()
        .collect()
    );
    client
        .batch_execute(
            "TRUNCATE dst; INSERT INTO src SELECT g, NULL FROM generate_series(1, 3000) g",
        )
        .await
        .unwrap();
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!((report.differing, report.rows_compared), (3000, 3000));
    assert!(
        report
            .differing_keys
            .iter()
            .all(|k| k.difference == Difference::Missing)
    );
}

#[tokio::test]
async fn compare_errors_name_the_directive_file_and_line() {
    // The tables exist before the set: `lint` judges `columns=` only against tables the set
    // creates, so this misspelled column reaches the run time.
    let set = Prepared::compare(
        "SELECT 1;",
        "source=src target=dst key=id columns=vv",
        "CREATE TABLE src (id bigint PRIMARY KEY, v text, note text);\n\
         CREATE TABLE dst (id bigint PRIMARY KEY, v text);\n\
         INSERT INTO src VALUES (1, 'a')",
    )
    .await;
    let client = &set.client;
    let migrator = set.migrator();
    let error = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap_err();
    let RuntimeError::Compare { at, problem } = &error else {
        panic!("{error}");
    };
    assert_eq!((at.version, at.line), (2, Some(2)));
    assert_eq!(problem, "target table dst has no column vv");
    assert!(
        error
            .to_string()
            .starts_with("compare declared at 0002_copy.backfill.sql:2 (migration 2): "),
        "{error}"
    );

    // A mapping the server refuses: its SQLSTATE is kept, the location added.
    let dir = tempfile::tempdir().unwrap();
    let migrations = compare_set(
        dir.path(),
        "SELECT 1;",
        "source=src target=dst key=id columns=v map=lower(nope)",
    );
    let migrator = Migrator::new(&migrations, config()).unwrap();
    let error = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, RuntimeError::CompareFailed { at, .. } if at.line == Some(2)),
        "{error}"
    );
    assert_eq!(
        error.sql_state(),
        Some(&tokio_postgres::error::SqlState::UNDEFINED_COLUMN)
    );
    assert!(
        error.to_string().contains("0002_copy.backfill.sql:2"),
        "{error}"
    );
}

#[tokio::test]
async fn reconcile_names_and_sets_aside_a_key_it_cannot_replay_and_replays_the_others() {
    let set = Prepared::compare(
        "CREATE TABLE IF NOT EXISTS src (id bigint PRIMARY KEY, v text, note text);\n\
         CREATE TABLE IF NOT EXISTS dst (id bigint PRIMARY KEY, v text CHECK (v <> 'bad'));",
        "source=src target=dst key=id columns=v",
        "INSERT INTO src SELECT g, CASE g WHEN 77 THEN 'bad' ELSE 'v' || g END FROM generate_series(1, 600) g;",
    )
    .await;
    let client = &set.client;
    // Two keys that are no bigint, one whose row breaks the target's CHECK, and 599 good
    // ones: more than one batch of 500.
    let mut queued: Vec<String> = (1..=600).map(|k| k.to_string()).collect();
    queued.insert(10, "abc".into());
    queued.insert(20, "12x".into());
    let queued: Vec<&str> = queued.iter().map(String::as_str).collect();
    queue_keys(client, &queued).await;
    let migrator = set.migrator();
    let reports = migrator.reconcile(client, Some(2)).await.unwrap();
    let mut unreplayable: Vec<(&str, Option<&str>)> = reports[0]
        .unreplayable
        .iter()
        .map(|k| (k.key.as_str(), k.failure.rsplit("SQLSTATE ").next()))
        .collect();
    unreplayable.sort();
    assert_eq!(
        unreplayable,
        [
            ("12x", Some("22P02)")),
            ("77", Some("23514)")),
            ("abc", Some("22P02)"))
        ]
    );
    assert_eq!((reports[0].keys, reports[0].changed), (599, 599));
    assert_eq!(scalar_i64(client, "SELECT count(*) FROM dst").await, 599);
    // Kept, out of the way: nothing waits, three are reported, none is taken again.
    assert!(migrator.reconcile_queue(client).await.unwrap().is_empty());
    let (count, kept) = migrator.unreplayable_keys(client, 10).await.unwrap();
    assert_eq!(count, 3);
    assert!(
        kept.iter()
            .any(|k| k.key == "abc" && k.failure.contains("bigint")),
        "{kept:?}"
    );
    queue_keys(client, &["5"]).await;
    let again = migrator.reconcile(client, Some(2)).await.unwrap();
    assert_eq!((again[0].replayed, again[0].unreplayable.len()), (1, 0));
    assert_eq!(migrator.unreplayable_keys(client, 0).await.unwrap().0, 3);
}

#[tokio::test]
async fn the_gate_refuses_while_an_unreplayable_key_failed_after_the_pass() {
    let set = Prepared::new(gated_set, "").await;
    let (client, migrator) = (&set.client, set.migrator());
    client
        .batch_execute(
            "INSERT INTO users (id, email) SELECT g, 'A' || g FROM generate_series(1, 100) g",
        )
        .await
        .unwrap();
    migrator.up(client, UpTo::Version(2)).await.unwrap();
    assert!(
        migrator
            .compare(client, 2, &CompareOptions::default())
            .await
            .unwrap()
            .passed()
    );
    // A dual write failed after the pass under a key reconcile cannot read.
    queue_keys(client, &["not-a-number"]).await;
    let reports = migrator.reconcile(client, Some(2)).await.unwrap();
    assert_eq!(reports[0].unreplayable.len(), 1);
    let refused = migrator.up(client, UpTo::All).await.unwrap_err();
    let reason = compare_refusal(refused.error()).expect("a compare refusal");
    assert!(reason.contains("key not-a-number"), "{reason}");
    // A compare after it covers it.
    assert!(
        migrator
            .compare(client, 2, &CompareOptions::default())
            .await
            .unwrap()
            .passed()
    );
    let applied = migrator.up(client, UpTo::All).await.unwrap();
    assert_eq!(applied.versions(), vec![3]);
}

#[tokio::test]
async fn a_value_too_long_for_a_varchar_target_is_no_match_for_its_truncation() {
    let set = Prepared::compare(
        "CREATE TABLE IF NOT EXISTS src (id bigint PRIMARY KEY, v text, note text);\n\
         -- migrate:allow prefer-robust-types a bounded target is what is tested\n\
         CREATE TABLE IF NOT EXISTS dst (id bigint PRIMARY KEY, v varchar(3));",
        "source=src target=dst key=id columns=v",
        "INSERT INTO src VALUES (1, 'abcdef'), (2, 'ab'); INSERT INTO dst VALUES (1, 'abc'), (2, 'ab');",
    )
    .await;
    let client = &set.client;
    let migrator = set.migrator();
    let report = migrator
        .compare(client, 2, &CompareOptions::default())
        .await
        .unwrap();
    assert_eq!(key_list(&report), ["1"], "{report:?}");
    // The write a reconcile would do fails (22001): the key is set aside, named.
    queue_keys(client, &["1", "2"]).await;
    let reports = migrator.reconcile(client, Some(2)).await.unwrap();
    let failed: Vec<&str> = reports[0]
        .unreplayable
        .iter()
        .map(|k| k.key.as_str())
        .collect();
    assert_eq!(failed, ["1"]);
    assert!(
        reports[0].unreplayable[0].failure.contains("22001"),
        "{reports:?}"
    );
}
