//! `migrate_core::queries` against a real PostgreSQL: what `check_query` finds on a schema,
//! `pg_stat_statements` as a source, and the running-queries contract gate of the library
//! (`MigratorConfig::running_queries_window`).

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use common::*;
use migrate_core::queries::{self, Query, QueryOrigin, QueryProblem, ResultColumn};
use migrate_core::runtime::{GateFailure, Migrator, MigratorConfig, RuntimeError, UpTo};
use migrate_scratch::{ScratchCluster, ScratchDatabase};

fn query(text: &str) -> Query {
    Query {
        origin: QueryOrigin::SqlFile {
            path: PathBuf::from("app.sql"),
            line: 1,
        },
        text: text.to_owned(),
        expected_columns: None,
    }
}

const SCHEMA: &str = "CREATE TABLE accounts (\
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, \
    email text NOT NULL, \
    plan text NOT NULL DEFAULT 'free', \
    nickname text, \
    email_lower text GENERATED ALWAYS AS (lower(email)) STORED, \
    created_at timestamptz NOT NULL); \
    CREATE TABLE teams (id bigint PRIMARY KEY, email text)";

#[tokio::test]
async fn check_query_reports_what_postgresql_refuses_with_its_sqlstate() {
    let db = database();
    let client = client(db.url()).await;
    client.batch_execute(SCHEMA).await.unwrap();
    let problems = queries::check_query(
        &client,
        &query("SELECT email FROM accounts JOIN teams USING (id) WHERE id = $1"),
    )
    .await
    .unwrap();
    assert!(
        matches!(&problems[..], [QueryProblem::DoesNotPrepare { code, .. }] if code == "42702"),
        "{problems:?}"
    );
    let problems = queries::check_query(&client, &query("SELECT missing FROM accounts"))
        .await
        .unwrap();
    assert_eq!(problems[0].code(), Some("42703"));
    // The session is usable afterwards: the transaction was rolled back.
    let works = queries::check_query(&client, &query("SELECT email, plan FROM accounts"))
        .await
        .unwrap();
    assert!(works.is_empty(), "{works:?}");
    let open: String = client
        .query_one("SELECT pg_current_xact_id_if_assigned()::text IS NULL", &[])
        .await
        .map(|row| row.get::<_, bool>(0).to_string())
        .unwrap();
    assert_eq!(open, "true");
}

#[tokio::test]
async fn an_insert_that_leaves_out_a_not_null_column_without_default_is_found() {
    let db = database();
    let client = client(db.url()).await;
    client.batch_execute(SCHEMA).await.unwrap();
    let omitted = |problems: Vec<QueryProblem>| -> Vec<String> {
        problems
            .into_iter()
            .map(|problem| match problem {
                QueryProblem::InsertOmitsNotNull { column, .. } => column,
                other => panic!("{other:?}"),
            })
            .collect()
    };
    for (sql, expected) in [
        // Identity, default, generated and nullable columns may be left out.
        (
            "INSERT INTO accounts (email, created_at) VALUES ($1, $2)",
            vec![],
        ),
        (
            "INSERT INTO accounts (email) VALUES ($1)",
            vec!["created_at"],
        ),
        (
            "INSERT INTO public.accounts AS a (\"email\") SELECT $1 RETURNING a.id",
            vec!["created_at"],
        ),
        (
            "INSERT INTO accounts DEFAULT VALUES",
            vec!["email", "created_at"],
        ),
        ("INSERT INTO teams VALUES ($1)", vec![]),
    ] {
        let problems = queries::check_query(&client, &query(sql)).await.unwrap();
        assert_eq!(omitted(problems), expected, "{sql}");
    }
}

#[tokio::test]
async fn a_result_column_that_no_longer_matches_sqlx_describe_is_found() {
    let db = database();
    let client = client(db.url()).await;
    client.batch_execute(SCHEMA).await.unwrap();
    let column = |name: &str, type_name: &str, nullable| ResultColumn {
        name: name.into(),
        type_name: type_name.into(),
        nullable,
    };
    let described = Query {
        expected_columns: Some(vec![
            column("id", "Int8", Some(false)),
            column("email", "Text", Some(false)),
            column("nickname", "Text", Some(true)),
        ]),
        ..query("SELECT id, email, nickname FROM accounts WHERE id = $1")
    };
    assert!(
        queries::check_query(&client, &described)
            .await
            .unwrap()
            .is_empty()
    );
    client
        .batch_execute(
            "ALTER TABLE accounts ALTER COLUMN email DROP NOT NULL; \
             ALTER TABLE accounts ALTER COLUMN nickname TYPE varchar(40)",
        )
        .await
        .unwrap();
    let problems = queries::check_query(&client, &described).await.unwrap();
    let changed: Vec<(usize, Option<ResultColumn>)> = problems
        .into_iter()
        .map(|problem| match problem {
            QueryProblem::ResultColumnChanged { ordinal, found, .. } => (ordinal, found),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(
        changed,
        vec![
            (1, Some(column("email", "Text", Some(true)))),
            (2, Some(column("nickname", "Varchar", Some(true)))),
        ]
    );
}

/// A cluster whose server preloads pg_stat_statements.
fn stats_cluster() -> &'static ScratchCluster {
    static CLUSTER: OnceLock<ScratchCluster> = OnceLock::new();
    CLUSTER.get_or_init(|| {
        ScratchCluster::start_with_preloaded(&["pg_stat_statements"]).expect("scratch cluster")
    })
}

fn stats_database() -> ScratchDatabase {
    let database = stats_cluster().create_database().expect("database");
    stats_cluster()
        .psql(database.name(), "CREATE EXTENSION pg_stat_statements")
        .expect("extension");
    database
}

/// 0001 makes `items (id, v, legacy)`, 0002 (contract) drops `legacy`.
fn write_set(dir: &Path) -> migrate_core::Migrations {
    std::fs::write(
        dir.join("0001_items.expand.sql"),
        "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v integer, legacy text);\n\
         -- migrate:down\nDROP TABLE IF EXISTS items;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_items_drop_legacy.contract.sql"),
        "-- migrate:requires 1\nALTER TABLE items DROP COLUMN IF EXISTS legacy;\n",
    )
    .unwrap();
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    assert!(!checked.has_errors(), "{:?}", checked.diagnostics);
    checked.migrations(&dir.to_string_lossy())
}

fn gated(window: Duration) -> MigratorConfig {
    MigratorConfig {
        max_replica_lag: None,
        running_queries_window: Some(window),
        ..config()
    }
}

async fn applied(client: &tokio_postgres::Client) -> i64 {
    scalar_i64(client, "SELECT count(*) FROM public.schema_migrations").await
}

#[tokio::test]
async fn pg_stat_statements_lists_what_was_called_with_its_calls() {
    let db = stats_database();
    let client = client(db.url()).await;
    client
        .batch_execute("CREATE TABLE items (id bigint PRIMARY KEY, v integer)")
        .await
        .unwrap();
    let before = queries::read_calls(&client).await.unwrap();
    let statement = client
        .prepare("SELECT v FROM items WHERE id = $1")
        .await
        .unwrap();
    for id in 0..5_i64 {
        client.query(&statement, &[&id]).await.unwrap();
    }
    let after = queries::read_calls(&client).await.unwrap();
    let called = queries::called_between(&before, &after);
    let select = called
        .iter()
        .find(|c| c.text == "SELECT v FROM items WHERE id = $1")
        .unwrap_or_else(|| panic!("{called:?}"));
    assert_eq!(select.calls, 5);
    assert!(
        !after.values().any(|c| c.text.starts_with("CREATE TABLE")),
        "utility statements are left out"
    );
}

#[tokio::test]
async fn the_gate_refuses_a_contract_while_a_query_it_breaks_is_called_then_lets_it_run() {
    let db = stats_database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path());
    let client = client(db.url()).await;
    Migrator::new(&migrations, config())
        .unwrap()
        .up(&client, UpTo::Version(1))
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let old_release = {
        let app = plain_client(db.url()).await;
        let (stop, calls) = (stop.clone(), calls.clone());
        tokio::spawn(async move {
            let statement = app
                .prepare("SELECT legacy FROM items WHERE id = $1")
                .await
                .unwrap();
            while !stop.load(Ordering::SeqCst) {
                app.query(&statement, &[&1_i64]).await.unwrap();
                calls.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    while calls.load(Ordering::SeqCst) == 0 {
        tokio::task::yield_now().await;
    }
    let failed = Migrator::new(&migrations, gated(Duration::from_millis(500)))
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect_err("the old release is still calling the query");
    stop.store(true, Ordering::SeqCst);
    old_release.await.unwrap();
    assert!(failed.error().is_transient());
    match failed.error() {
        RuntimeError::ContractGate {
            version: 2,
            failure,
            ..
        } => match failure.as_ref() {
            GateFailure::RunningQueryBreaks {
                query,
                calls,
                object,
                ..
            } => {
                assert_eq!(query, "SELECT legacy FROM items WHERE id = $1");
                assert!(*calls > 0);
                assert_eq!(object, "column items.legacy (dropped)");
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(applied(&client).await, 1, "nothing of the contract ran");

    // The old release has stopped: nothing calls the query during the next window.
    Migrator::new(&migrations, gated(Duration::from_millis(300)))
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .unwrap();
    assert_eq!(applied(&client).await, 2);
}

#[tokio::test]
async fn without_pg_stat_statements_the_gate_refuses() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path());
    let client = client(db.url()).await;
    let failed = Migrator::new(&migrations, gated(Duration::from_millis(10)))
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect_err("no pg_stat_statements");
    assert!(!failed.error().is_transient());
    assert!(
        matches!(
            failed.error(),
            RuntimeError::ContractGate { failure, .. }
                if matches!(failure.as_ref(), GateFailure::RunningQueriesUnknown { .. })
        ),
        "{failed:?}"
    );
    assert_eq!(
        applied(&client).await,
        1,
        "the expand ran, the contract did not"
    );
}

#[tokio::test]
async fn a_query_on_a_view_over_a_dropped_column_refuses_the_contract() {
    let db = stats_database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path());
    let client = client(db.url()).await;
    Migrator::new(&migrations, config())
        .unwrap()
        .up(&client, UpTo::Version(1))
        .await
        .unwrap();
    // Made outside the migrations (by hand, by another service): only the catalog knows.
    client
        .batch_execute(
            "CREATE VIEW item_labels AS SELECT id, legacy AS label FROM items; \
             CREATE VIEW item_label_count AS SELECT count(label) FROM item_labels",
        )
        .await
        .unwrap();
    let app = plain_client(db.url()).await;
    let statement = app.prepare("SELECT * FROM item_label_count").await.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let old_release = {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::SeqCst) {
                app.query(&statement, &[]).await.unwrap();
            }
        })
    };
    let failed = Migrator::new(&migrations, gated(Duration::from_millis(300)))
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect_err("the view's query is still called");
    stop.store(true, Ordering::SeqCst);
    old_release.await.unwrap();
    match failed.error() {
        RuntimeError::ContractGate { failure, .. } => match failure.as_ref() {
            GateFailure::RunningQueryBreaks { object, .. } => assert_eq!(
                object,
                "view item_label_count (depends on view item_labels)"
            ),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert_eq!(applied(&client).await, 1);
}
