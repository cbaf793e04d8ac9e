//! The history table against the files: drift, applied versions the binary lacks,
//! out-of-order versions, and the table's own name.

use crate::common::*;
use crate::fixtures::*;
use migrate_core::runtime::{MigrationState, Migrator, MigratorConfig, RuntimeError, UpTo};

#[tokio::test]
async fn drift_is_refused_naming_the_version() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    Migrator::new(&migrations, config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");

    let mut edited = basic_set();
    edited[1] = tx(
        2,
        "users_name",
        &["ALTER TABLE users ADD COLUMN name varchar(100)"],
        &["ALTER TABLE users DROP COLUMN name"],
    );
    edited.push(tx(
        4,
        "later",
        &["CREATE TABLE later (id int)"],
        &["DROP TABLE later"],
    ));
    let edited = set(edited);
    let migrator = Migrator::new(&edited, config()).expect("config");
    let error = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("drift must be refused");
    assert!(error.report.nothing_to_do());
    match error.error() {
        RuntimeError::ChecksumMismatch {
            version,
            file,
            expected,
            found,
        } => {
            assert_eq!(*version, 2);
            assert_eq!(file, "0002_users_name.sql");
            assert_eq!(expected, &migrations.get(2).unwrap().checksum.to_hex());
            assert_eq!(found, &edited.get(2).unwrap().checksum.to_hex());
        }
        other => panic!("expected ChecksumMismatch, got {other:?}"),
    }
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);
    let status = migrator.status(&client).await.expect("status");
    assert_eq!(status.entries[1].state, MigrationState::Drifted);
}

#[tokio::test]
async fn applied_versions_unknown_to_the_binary_are_refused_naming_files_on_disk() {
    let db = database();
    let client = client(db.url()).await;
    let mut full = basic_set();
    full.push(tx(9, "x", &["CREATE TABLE x (id int)"], &["DROP TABLE x"]));
    Migrator::new(&set(full), config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");

    // A binary built before 0009_x.sql was added, run while the folder has it.
    let folder = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        folder.path().join("0009_x.sql"),
        "CREATE TABLE x (id int);\n",
    )
    .unwrap();
    std::fs::write(folder.path().join("0001_users.sql"), "-- known\n").unwrap();
    let older = set_in(folder.path().to_str().unwrap(), basic_set());
    let error = Migrator::new(&older, config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect_err("unknown applied version must be refused");
    match error.error() {
        RuntimeError::UnknownApplied {
            versions,
            files_on_disk_lacking_in_binary,
        } => {
            assert_eq!(versions, &vec![9]);
            assert_eq!(
                files_on_disk_lacking_in_binary,
                &vec![folder.path().join("0009_x.sql")]
            );
        }
        other => panic!("expected UnknownApplied, got {other:?}"),
    }
    assert!(error.to_string().contains("0009_x.sql"), "{error}");
    assert!(error.to_string().contains("rebuild"), "{error}");

    // Without the folder the error still names the version.
    let error = Migrator::new(&set(basic_set()), config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect_err("refused");
    assert!(matches!(
        error.error(),
        RuntimeError::UnknownApplied { versions, files_on_disk_lacking_in_binary }
            if versions == &vec![9] && files_on_disk_lacking_in_binary.is_empty()
    ));

    let ignoring = MigratorConfig {
        ignore_missing: true,
        ..config()
    };
    let report = Migrator::new(&set(basic_set()), ignoring)
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("ignore_missing proceeds");
    assert!(report.nothing_to_do());
}

#[tokio::test]
async fn out_of_order_pending_is_refused_and_applies_when_allowed() {
    let db = database();
    let client = client(db.url()).await;
    let mut first = basic_set();
    first.remove(1); // 1 and 3 applied, 2 arrives later (a merged branch).
    Migrator::new(&set(first), config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");

    let full = set(basic_set());
    let error = Migrator::new(&full, config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect_err("out of order refused");
    assert!(matches!(
        error.error(),
        RuntimeError::OutOfOrder { pending, newest_applied: 3 } if pending == &vec![2]
    ));
    assert_eq!(history_versions(&client).await, vec![1, 3]);

    let allowed = MigratorConfig {
        allow_out_of_order: true,
        ..config()
    };
    let report = Migrator::new(&full, allowed)
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("allowed");
    assert_eq!(report.versions(), vec![2]);
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);
}

#[tokio::test]
async fn a_custom_schema_qualified_history_table_is_created_quoted() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    let custom = MigratorConfig {
        history_table: "ops.Deploy_History".into(),
        ..config()
    };
    let migrator = Migrator::new(&migrations, custom).expect("config");
    migrator.up(&client, UpTo::All).await.expect("up");
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM ops.\"Deploy_History\"").await,
        3
    );
    assert!(
        migrator
            .up(&client, UpTo::All)
            .await
            .expect("again")
            .nothing_to_do()
    );

    for bad in ["ops.x; DROP TABLE users", "a.b.c", "\"quoted\""] {
        let invalid = MigratorConfig {
            history_table: bad.into(),
            ..config()
        };
        assert!(matches!(
            Migrator::new(&migrations, invalid),
            Err(RuntimeError::InvalidIdentifier { .. })
        ));
    }
}

/// A typo in the history table's name must not start an empty history and apply every
/// migration again.
#[tokio::test]
async fn a_history_table_name_with_a_typo_is_refused_when_ours_exists_elsewhere() {
    let db = database();
    let client = client(db.url()).await;
    let migrations = set(basic_set());
    Migrator::new(&migrations, config())
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect("up");
    for typo in ["public.schema_migration", "opps.schema_migrations"] {
        let mistyped = Migrator::new(
            &migrations,
            MigratorConfig {
                history_table: typo.into(),
                ..config()
            },
        )
        .unwrap();
        let error = mistyped
            .up(&client, UpTo::All)
            .await
            .expect_err("typo")
            .into_error();
        match &error {
            RuntimeError::OtherHistoryTable { found, .. } => {
                assert_eq!(found, &["public.schema_migrations"])
            }
            other => panic!("expected OtherHistoryTable, got {other:?}"),
        }
        assert!(error.to_string().contains("--history-table"), "{error}");
        assert!(matches!(
            mistyped.status(&client).await,
            Err(RuntimeError::OtherHistoryTable { .. })
        ));
    }
    // Nothing was created or applied twice.
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'opps'"
        )
        .await,
        0
    );
    assert_eq!(history_versions(&client).await, vec![1, 2, 3]);
}

/// golang-migrate's and dbmate's history tables are also called `schema_migrations`: our
/// default name finds theirs, which every operation refuses naming the tool, never reading it
/// as ours (`column "name" does not exist`) nor creating our tables beside it.
#[tokio::test]
async fn another_tools_table_under_our_name_is_refused_naming_the_tool() {
    for (tool, create) in [
        (
            "golang-migrate",
            "CREATE TABLE schema_migrations (version bigint PRIMARY KEY, dirty boolean NOT NULL); \
             INSERT INTO schema_migrations VALUES (2, false)",
        ),
        (
            "dbmate",
            "CREATE TABLE schema_migrations (version varchar(128) PRIMARY KEY); \
             INSERT INTO schema_migrations VALUES ('1')",
        ),
    ] {
        let db = database();
        let client = client(db.url()).await;
        client.batch_execute(create).await.expect("their table");
        let migrations = set(basic_set());
        let migrator = Migrator::new(&migrations, config()).unwrap();
        let assert_refused = |error: &RuntimeError| match error {
            RuntimeError::NotOurHistoryTable {
                tool: found,
                columns,
                ..
            } => {
                assert_eq!(*found, Some(tool));
                assert_eq!(columns[0], "version");
                assert!(
                    error
                        .to_string()
                        .contains(&format!("migrate import --from {tool}")),
                    "{error}"
                );
            }
            other => panic!("{tool}: expected NotOurHistoryTable, got {other:?}"),
        };
        assert_refused(
            &migrator
                .up(&client, UpTo::All)
                .await
                .expect_err("up")
                .into_error(),
        );
        assert_refused(&migrator.status(&client).await.expect_err("status"));
        assert_refused(
            &migrator
                .pause_backfills(&client, true)
                .await
                .expect_err("pause"),
        );
        assert_refused(
            &migrator
                .reconcile(&client, None)
                .await
                .expect_err("reconcile"),
        );
        assert_eq!(
            scalar_i64(
                &client,
                "SELECT count(*) FROM pg_class WHERE relname LIKE 'schema_migrations_%' \
                 AND relkind = 'r'"
            )
            .await,
            0,
            "{tool}"
        );
        assert_eq!(
            scalar_i64(
                &client,
                "SELECT count(*) FROM pg_class WHERE relname = 'users'"
            )
            .await,
            0
        );
    }
}
