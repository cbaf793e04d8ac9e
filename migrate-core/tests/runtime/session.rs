//! Session state a migration changes (settings, role, SQL prepared statements, LISTEN,
//! temporary tables) does not reach the next migration of the run, nor the caller's client
//! afterwards, after a failed run too; the client's protocol-level prepared statements (what
//! tokio-postgres and pools cache) survive.

use crate::common::*;
use migrate_core::TransactionMode;
use migrate_core::runtime::{Migrator, UpTo};
use tokio_postgres::Client;

/// Every kind of session state a migration can change, in one migration.
const CHANGES_EVERYTHING: &[&str] = &[
    "CREATE SCHEMA lab",
    "SET search_path TO lab, public",
    "SET statement_timeout = 0",
    "SET lock_timeout = 0",
    "SET work_mem = '64MB'",
    "SET ROLE session_test_owner",
    "PREPARE migration_statement AS SELECT 1",
    "LISTEN migration_channel",
    "CREATE TEMP TABLE migration_scratch (id int)",
];

/// What the next migration sees of the session, recorded in a table.
const RECORDS_WHAT_IT_SEES: &[&str] = &["CREATE TABLE gadgets AS SELECT \
    current_setting('search_path') AS search_path, \
    current_user::text AS who, \
    current_setting('statement_timeout') AS statement_timeout, \
    current_setting('lock_timeout') AS lock_timeout, \
    current_setting('work_mem') AS work_mem, \
    (SELECT count(*) FROM pg_prepared_statements WHERE from_sql) AS prepared, \
    (SELECT count(*) FROM pg_listening_channels()) AS channels, \
    (SELECT count(*) FROM pg_class WHERE relnamespace = pg_my_temp_schema()) AS temp_tables"];

async fn setup_role(client: &Client) {
    // Roles are cluster-wide and tests run in parallel: a concurrent creation is no failure.
    // A superuser: what runs after the migration's `SET ROLE` (its history row) is allowed.
    client
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE session_test_owner SUPERUSER; \
             EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
        )
        .await
        .expect("role");
    client
        .batch_execute("GRANT CREATE, USAGE ON SCHEMA public TO session_test_owner")
        .await
        .expect("grants");
}

/// The session as a caller sees it: settings, role, and what it created itself.
async fn session_view(client: &Client) -> Vec<String> {
    let row = client
        .query_one(
            "SELECT current_setting('search_path'), current_user::text, \
                    current_setting('statement_timeout'), current_setting('lock_timeout'), \
                    current_setting('work_mem'), current_setting('application_name'), \
                    (SELECT string_agg(name, ',' ORDER BY name) FROM pg_prepared_statements \
                     WHERE from_sql), \
                    (SELECT string_agg(c, ',' ORDER BY c) FROM pg_listening_channels() c), \
                    (SELECT string_agg(relname, ',' ORDER BY relname) FROM pg_class \
                     WHERE relnamespace = pg_my_temp_schema() AND relkind = 'r')",
            &[],
        )
        .await
        .expect("session view");
    (0..9)
        .map(|i| row.get::<_, Option<String>>(i).unwrap_or_default())
        .collect()
}

/// A client as a pool hands it out: its own settings, a SQL prepared statement, a channel, a
/// temporary table and a protocol-level prepared statement.
async fn pooled_client(url: &str) -> (Client, tokio_postgres::Statement) {
    let client = plain_client(url).await;
    client
        .batch_execute(
            "SET search_path TO public, pg_catalog; SET statement_timeout = '42s'; \
             SET application_name = 'pool-client'; PREPARE callers_own AS SELECT 2; \
             LISTEN callers_channel; CREATE TEMP TABLE callers_scratch (id int)",
        )
        .await
        .expect("caller's session");
    let cached = client
        .prepare("SELECT count(*) FROM pg_class")
        .await
        .expect("prepare");
    (client, cached)
}

#[tokio::test]
async fn each_migration_starts_from_the_same_session_state() {
    for mode in [TransactionMode::Transactional, TransactionMode::Autocommit] {
        let db = database();
        let client = client(db.url()).await;
        setup_role(&client).await;
        let migrations = set(vec![
            migration(1, "changes_everything", CHANGES_EVERYTHING, None, mode),
            migration(2, "gadgets", RECORDS_WHAT_IT_SEES, None, mode),
        ]);
        let before = session_view(&client).await;
        Migrator::new(&migrations, config())
            .expect("config")
            .up(&client, UpTo::All)
            .await
            .expect("up");
        let seen = client
            .query_one(
                "SELECT n.nspname::text, g.search_path, g.who, g.statement_timeout, \
                        g.lock_timeout, g.work_mem, g.prepared, g.channels, g.temp_tables \
                 FROM public.gadgets g JOIN pg_class c ON c.relname = 'gadgets' \
                 JOIN pg_namespace n ON n.oid = c.relnamespace",
                &[],
            )
            .await
            .unwrap_or_else(|e| panic!("{mode:?}: gadgets not in public: {e}"));
        assert_eq!(seen.get::<_, String>(0), "public", "{mode:?}");
        assert_eq!(seen.get::<_, String>(1), "\"$user\", public", "{mode:?}");
        assert_eq!(seen.get::<_, String>(2), "postgres", "{mode:?}");
        // The run's own settings (config(): 300ms lock timeout, 15 min statement timeout).
        assert_eq!(seen.get::<_, String>(3), "15min", "{mode:?}");
        assert_eq!(seen.get::<_, String>(4), "300ms", "{mode:?}");
        assert_eq!(seen.get::<_, String>(5), "4MB", "{mode:?}");
        assert_eq!(seen.get::<_, i64>(6), 0, "{mode:?}");
        assert_eq!(seen.get::<_, i64>(7), 0, "{mode:?}");
        assert_eq!(seen.get::<_, i64>(8), 0, "{mode:?}");
        assert_eq!(session_view(&client).await, before, "{mode:?}");
    }
}

#[tokio::test]
async fn a_pooled_client_goes_back_as_it_came_after_up_and_after_a_failed_up() {
    let db = database();
    setup_role(&client(db.url()).await).await;
    let (client, cached) = pooled_client(db.url()).await;
    let before = session_view(&client).await;
    assert_eq!(before[0], "public, pg_catalog");

    let applied = set(vec![tx(1, "changes_everything", CHANGES_EVERYTHING, &[])]);
    Migrator::new(&applied, config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");
    assert_eq!(session_view(&client).await, before);
    // tokio-postgres's statement (what a pool caches) still runs.
    client
        .query_one(&cached, &[])
        .await
        .expect("cached statement");
    client
        .batch_execute("EXECUTE callers_own")
        .await
        .expect("the caller's own PREPARE");

    // A run that fails in its second migration, after the first changed the session.
    let failing = set(vec![
        tx(1, "changes_everything", CHANGES_EVERYTHING, &[]),
        migration(
            2,
            "also_changes",
            &[
                "SET search_path TO pg_catalog",
                "SET ROLE session_test_owner",
            ],
            None,
            TransactionMode::Autocommit,
        ),
        tx(3, "fails", &["SELECT 1 / 0"], &[]),
    ]);
    let error = Migrator::new(&failing, config())
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect_err("division by zero");
    assert_eq!(
        error.error().sql_state(),
        Some(&tokio_postgres::error::SqlState::DIVISION_BY_ZERO)
    );
    assert_eq!(session_view(&client).await, before);
    client
        .query_one(&cached, &[])
        .await
        .expect("cached statement");
}

/// Runs `up` of one migration that records `setting`, on a session whose caller set it to
/// `callers`: what the migration saw, and the session's value after the run.
async fn seen_and_after(
    setting: &str,
    callers: &str,
    config: migrate_core::runtime::MigratorConfig,
) -> (String, String) {
    let db = database();
    let client = client(db.url()).await;
    client
        .query_one("SELECT set_config($1, $2, false)", &[&setting, &callers])
        .await
        .expect("caller's setting");
    let records = format!(
        "CREATE TABLE IF NOT EXISTS seen_setting AS SELECT current_setting('{setting}') AS value"
    );
    let migrations = set(vec![tx(1, "seen_setting", &[records.as_str()], &[])]);
    Migrator::new(&migrations, config)
        .expect("config")
        .up(&client, UpTo::All)
        .await
        .expect("up");
    let seen: String = client
        .query_one("SELECT value FROM seen_setting", &[])
        .await
        .expect("recorded")
        .get(0);
    let after: String = client
        .query_one("SELECT current_setting($1)", &[&setting])
        .await
        .expect("setting")
        .get(0);
    (seen, after)
}

#[tokio::test]
async fn index_builds_run_on_one_core_by_default_and_the_callers_setting_comes_back() {
    // (the run's setting, what the migration sees); the caller's own is 3.
    for (index_build_workers, expected) in [(Some(0), "0"), (Some(4), "4"), (None, "3")] {
        let mut config = config();
        config.index_build_workers = index_build_workers;
        let (seen, after) = seen_and_after("max_parallel_maintenance_workers", "3", config).await;
        assert_eq!(seen, expected, "{index_build_workers:?}");
        assert_eq!(after, "3", "the caller's setting is back");
    }
}

#[tokio::test]
async fn the_runs_writes_are_flushed_as_they_go_and_the_callers_setting_comes_back() {
    let (seen, after) = seen_and_after("backend_flush_after", "64kB", config()).await;
    assert_eq!(seen, "256kB", "what the migration ran with");
    assert_eq!(after, "64kB", "the caller's setting is back");
}
