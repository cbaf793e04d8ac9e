//! Batched backfills against a real PostgreSQL: keyed batches, resume, locked rows, verify.

mod common;

use std::path::Path;
use std::time::Duration;

use common::*;
use migrate_core::Migrations;
use migrate_core::runtime::{Migrator, PaceState, PauseReason, UpTo};

/// Writes a two-file set (table, backfill) and loads it exactly as the CLI would.
fn write_set(dir: &Path, batch: u32) -> migrate_core::Migrations {
    std::fs::write(
        dir.join("0001_items.sql"),
        "CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v integer NOT NULL, v2 integer);\n\
         -- migrate:down\nDROP TABLE IF EXISTS items;\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("0002_items_v2.backfill.sql"),
        format!(
            "-- migrate:backfill table=items key=id batch={batch}\n\
             UPDATE items SET v2 = v * 2 WHERE v2 IS NULL;\n-- migrate:down\n"
        ),
    )
    .unwrap();
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    checked.migrations(&dir.to_string_lossy())
}

/// The progress row a backfill of version 2 killed after its batches up to `last_key` leaves
/// behind, with the table the runtime would have created.
fn killed_backfill_progress(last_key: &str, rows_done: i64) -> String {
    format!(
        "CREATE TABLE schema_migrations_backfill (version bigint NOT NULL, statement integer NOT NULL, last_key text,\n\
           rows_done bigint NOT NULL DEFAULT 0, started_at timestamptz NOT NULL DEFAULT now(),\n\
           updated_at timestamptz NOT NULL DEFAULT now(), finished_at timestamptz, verified_at timestamptz,\n\
           PRIMARY KEY (version, statement));\n\
         INSERT INTO schema_migrations_backfill (version, statement, last_key, rows_done) VALUES (2, 0, '{last_key}', {rows_done});"
    )
}

async fn progress(client: &tokio_postgres::Client) -> (Option<String>, i64, bool) {
    let row = client
        .query_one(
            "SELECT last_key, rows_done, verified_at IS NOT NULL FROM schema_migrations_backfill WHERE version = 2",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

#[tokio::test]
async fn backfill_runs_in_keyed_batches_and_is_verified() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), 1000);
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    client
        .batch_execute("INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 2500) g")
        .await
        .unwrap();

    let report = migrator.up(&client, UpTo::All).await.unwrap();
    assert_eq!(report.versions(), vec![2]);
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM items WHERE v2 IS DISTINCT FROM v * 2"
        )
        .await,
        0
    );
    assert_eq!(progress(&client).await, (Some("2500".into()), 2500, true));

    // down forgets the progress, so the next up backfills again (rows added meanwhile too).
    migrator.down(&client, 1).await.unwrap();
    client
        .batch_execute("UPDATE items SET v2 = NULL WHERE id <= 10")
        .await
        .unwrap();
    migrator.up(&client, UpTo::All).await.unwrap();
    // Batches cover key ranges of 1,000: the cursor is where the last full range ended.
    assert_eq!(progress(&client).await, (Some("2000".into()), 10, true));
}

#[tokio::test]
async fn a_killed_backfill_resumes_from_its_last_key() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), 1000);
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    // The state a backfill killed after its first batches leaves behind.
    client
        .batch_execute(
            &format!(
                "INSERT INTO items (id, v, v2) SELECT g, g, CASE WHEN g <= 1500 THEN g * 2 END FROM generate_series(1, 2500) g;\n{}",
                killed_backfill_progress("1500", 1500)
            ),
        )
        .await
        .unwrap();
    migrator.up(&client, UpTo::All).await.unwrap();
    // Only the 1,000 remaining rows were updated by this run.
    assert_eq!(progress(&client).await, (Some("2500".into()), 2500, true));
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM items WHERE v2 IS DISTINCT FROM v * 2"
        )
        .await,
        0
    );
}

/// The pass skips the row the application holds locked; the count after it lists that row,
/// and the sweep waits for its lock and fills only it: one batch, not every key again.
/// A batch first updates its whole key range in one statement that waits 5 ms at most for a
/// row lock; the range with the locked row falls back to the batch that skips it.
#[tokio::test]
async fn a_row_locked_by_the_application_is_done_by_the_sweep() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), 100);
    let client = client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(1)).await.unwrap();
    // Each row records the lock wait of the transaction that filled it: 5 ms for a whole
    // range's statement, the session's own for the batch that skips locked rows.
    client
        .batch_execute(
            "ALTER TABLE items ADD COLUMN filled_with_wait text;\n\
             CREATE FUNCTION record_wait() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN NEW.filled_with_wait := current_setting('lock_timeout'); RETURN NEW; END $$;\n\
             CREATE TRIGGER record_wait BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION record_wait();\n\
             INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 500) g",
        )
        .await
        .unwrap();

    // The application holds a row lock on id 42 in an open transaction.
    let blocker = plain_client(db.url()).await;
    blocker
        .batch_execute("BEGIN; SELECT * FROM items WHERE id = 42 FOR UPDATE")
        .await
        .unwrap();

    let observer = plain_client(db.url()).await;
    let batches = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let up = tokio::spawn({
        let url = db.url().to_owned();
        let recorded = std::sync::Arc::clone(&batches);
        async move {
            let client = common::client(&url).await;
            let migrations = migrations;
            // Enough retries that the sweep is still waiting when the observer looks, however
            // slow the machine: each attempt waits lock_timeout for the row lock.
            let patient = migrate_core::runtime::MigratorConfig {
                lock_retries: 100,
                ..config()
            };
            let migrator = Migrator::new(&migrations, patient)
                .unwrap()
                .with_progress(Box::new(move |event| {
                    if let migrate_core::runtime::ProgressEvent::BackfillBatch {
                        rows_done, ..
                    } = *event
                    {
                        recorded.lock().unwrap().push(rows_done);
                    }
                }));
            migrator
                .up(&client, UpTo::All)
                .await
                .map(|r| r.versions())
                .map_err(|e| e.to_string())
        }
    });
    // The keyed pass skips the locked row; the sweep then waits for it. Release the lock once
    // the migration session is seen waiting on it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let waiting = scalar_i64(
            &observer,
            // The sweep's statement, which locks rows before updating them; a whole range's
            // statement waits for the lock too, but 5 ms at most.
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'migrate-test' \
             AND wait_event_type = 'Lock' AND query LIKE '%FOR UPDATE)%'",
        )
        .await;
        if waiting > 0 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the sweep never waited for the locked row"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        scalar_i64(&observer, "SELECT count(*) FROM items WHERE v2 IS NULL").await,
        1,
        "only the locked row is left"
    );
    blocker.batch_execute("COMMIT").await.unwrap();

    assert_eq!(up.await.unwrap(), Ok(vec![2]));
    assert_eq!(
        scalar_i64(
            &observer,
            "SELECT count(*) FROM items WHERE v2 IS DISTINCT FROM v * 2"
        )
        .await,
        0
    );
    // Five batches of 100 keys, the first missing the locked row, then the sweep's one.
    assert_eq!(*batches.lock().unwrap(), [99, 199, 299, 399, 499, 500]);
    // The first range met the lock and fell back; the others were one statement each.
    let waits: Vec<(String, String, i64)> = observer
        .query(
            "SELECT CASE WHEN id = 42 THEN 'locked' WHEN id <= 100 THEN 'first range' \
             ELSE 'other ranges' END, filled_with_wait, count(*) FROM items GROUP BY 1, 2 ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| (row.get(0), row.get(1), row.get(2)))
        .collect();
    // The migration session's own lock wait, as `up` set it.
    let session_wait = waits[0].1.clone();
    assert_ne!(session_wait, "5ms");
    assert_eq!(
        waits,
        [
            ("first range".to_owned(), session_wait.clone(), 99),
            ("locked".to_owned(), session_wait, 1),
            ("other ranges".to_owned(), "5ms".to_owned(), 400),
        ]
    );
}

#[tokio::test]
async fn progress_events_follow_the_run() {
    use migrate_core::runtime::ProgressEvent;
    use std::sync::{Arc, Mutex};

    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), 1000);
    let client = client(db.url()).await;
    up_to(&client, &migrations, 1).await;
    client
        .batch_execute("INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 2500) g")
        .await
        .unwrap();

    let events = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&events);
    let migrator = Migrator::new(&migrations, config())
        .unwrap()
        .with_progress(Box::new(move |event| {
            let line = match *event {
                ProgressEvent::Starting {
                    migration,
                    index,
                    total,
                    reverting,
                } => {
                    format!(
                        "start {} {index}/{total} reverting={reverting}",
                        migration.version
                    )
                }
                ProgressEvent::BackfillBatch { rows_done, .. } => format!("batch {rows_done}"),
                ProgressEvent::BackfillPace { status, .. } => {
                    format!("pace {} {}", status.rows_done, status.state)
                }
                ProgressEvent::Finished { migration, .. } => format!("done {}", migration.version),
                _ => "other".to_owned(),
            };
            recorded.lock().unwrap().push(line);
        }));
    migrator.up(&client, UpTo::All).await.unwrap();
    migrator.down(&client, 1).await.unwrap();
    assert_eq!(
        *events.lock().unwrap(),
        [
            "start 2 0/1 reverting=false",
            "batch 1000",
            "pace 1000 fixed (batch=/delay=)",
            "batch 2000",
            "pace 2000 fixed (batch=/delay=)",
            "batch 2500",
            "pace 2500 fixed (batch=/delay=)",
            // No sweep: the count after the pass finds no row still matching.
            "done 2",
            "start 2 0/1 reverting=true",
            "done 2",
        ]
    );
}

/// A backfill set over any table: `0001` creates it, `0002` is the backfill. Built by hand
/// (not through the loader) where a test needs a statement the linter refuses.
fn backfill_set(table_sql: &str, spec: (&str, &str, u32, u32), update: &str) -> Migrations {
    use std::borrow::Cow;
    let create = tx(1, "table", &[table_sql], &["DROP TABLE IF EXISTS items"]);
    let mut backfill = migration(
        2,
        "fill",
        &[update],
        Some(&[]),
        migrate_core::TransactionMode::Transactional,
    );
    backfill.phase = migrate_core::Phase::Backfill;
    backfill.file_name = Cow::Owned("0002_fill.backfill.sql".into());
    backfill.backfill = Some(migrate_core::migration::BackfillSpec {
        schema: None,
        table: Cow::Owned(spec.0.into()),
        key: Cow::Owned(spec.1.into()),
        pace: migrate_core::BackfillPace::Fixed {
            batch_size: spec.2,
            delay_ms: spec.3,
        },
    });
    set(vec![create, backfill])
}

/// A fresh database with 0001 of `migrations` (a [`backfill_set`]) applied and `rows` run:
/// where each backfill test starts.
async fn before_the_backfill(
    migrations: &Migrations,
    rows: &str,
) -> (migrate_scratch::ScratchDatabase, tokio_postgres::Client) {
    let db = database();
    let client = client(db.url()).await;
    up_to(&client, migrations, 1).await;
    client.batch_execute(rows).await.unwrap();
    (db, client)
}

#[tokio::test]
async fn a_set_that_does_not_falsify_the_where_stops_at_once_saying_why() {
    let migrations = backfill_set(
        "CREATE TABLE items (id bigint PRIMARY KEY, a integer)",
        ("items", "id", 100, 0),
        "UPDATE items SET a = 2 WHERE id > 5",
    );
    let (_db, client) = before_the_backfill(
        &migrations,
        "INSERT INTO items (id) SELECT g FROM generate_series(1, 50) g",
    )
    .await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    let failed = migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("never done");
    let message = failed.to_string();
    assert!(
        message.contains("still match the WHERE right after this UPDATE set them"),
        "{message}"
    );
    assert!(message.contains("0002_fill.backfill.sql:"), "{message}");
    assert_eq!(history_versions(&client).await, vec![1]);
}

/// A writer inserting rows in the old shape faster than `batch=10 delay=100` fills them:
/// the keyed pass ends at the largest key it saw at its start, each sweep likewise, and the
/// backfill stops after its sweeps with a message naming the cause, instead of chasing the
/// writer forever.
#[tokio::test]
async fn a_writer_faster_than_the_backfill_cannot_keep_it_running_forever() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let migrations = backfill_set(
        "CREATE TABLE items (id bigserial PRIMARY KEY, v integer NOT NULL, v2 integer)",
        ("items", "id", 10, 100),
        "UPDATE items SET v2 = v WHERE v2 IS NULL",
    );
    let (db, client) = before_the_backfill(
        &migrations,
        "INSERT INTO items (v) SELECT g FROM generate_series(1, 50) g",
    )
    .await;
    let migrator = Migrator::new(&migrations, config()).unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (url, stop) = (db.url().to_owned(), Arc::clone(&stop));
        async move {
            let writer = plain_client(&url).await;
            let mut written = 0u64;
            // Load pacing, not synchronisation: 500 rows/s, five times the backfill's pace.
            let mut pace = tokio::time::interval(Duration::from_millis(10));
            while !stop.load(Ordering::Relaxed) {
                pace.tick().await;
                writer
                    .batch_execute("INSERT INTO items (v) SELECT g FROM generate_series(1, 5) g")
                    .await
                    .unwrap();
                written += 5;
            }
            written
        }
    });
    // The bound is a guard against the old behaviour (a pass chasing the writer forever),
    // not synchronisation: the run ends on its own.
    let outcome =
        tokio::time::timeout(Duration::from_secs(120), migrator.up(&client, UpTo::All)).await;
    stop.store(true, Ordering::Relaxed);
    let written = writer.await.unwrap();
    let failed = outcome
        .expect("the backfill ended on its own")
        .expect_err("the writer never stopped writing the old shape");
    let message = failed.to_string();
    assert!(
        message.contains("rows matching the WHERE are written faster than the backfill fills them"),
        "{message}"
    );
    assert!(message.contains("dual writes"), "{message}");
    assert!(written > 50, "the writer wrote {written} rows");
    assert_eq!(history_versions(&client).await, vec![1]);
}

#[tokio::test]
async fn a_uuid_key_is_batched_like_any_ordered_key() {
    let migrations = backfill_set(
        "CREATE TABLE items (id uuid PRIMARY KEY, v integer NOT NULL, v2 integer)",
        ("items", "id", 7, 0),
        "UPDATE items SET v2 = v WHERE v2 IS NULL",
    );
    let (_db, client) = before_the_backfill(
        &migrations,
        "INSERT INTO items (id, v) SELECT gen_random_uuid(), g FROM generate_series(1, 50) g",
    )
    .await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    let report = migrator.up(&client, UpTo::All).await.expect("uuid key");
    assert_eq!(report.versions(), vec![2]);
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM items WHERE v2 IS DISTINCT FROM v"
        )
        .await,
        0
    );
    let last_key: String = client
        .query_one(
            "SELECT last_key FROM schema_migrations_backfill WHERE version = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let largest: String = client
        .query_one("SELECT max(id::text) FROM items", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(last_key, largest);
}

#[tokio::test]
async fn status_shows_a_half_run_backfill_as_in_progress() {
    use migrate_core::runtime::MigrationState;
    let migrations = backfill_set(
        "CREATE TABLE items (id bigint PRIMARY KEY, v integer NOT NULL, v2 integer)",
        ("items", "id", 10, 0),
        "UPDATE items SET v2 = v WHERE v2 IS NULL",
    );
    // One row the backfill cannot fill (v2 is then set to NULL again by a trigger), so it
    // stops after its keyed pass with progress stored and no history row.
    let (_db, client) = before_the_backfill(
        &migrations,
        "INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 30) g;
         CREATE FUNCTION keep_null() RETURNS trigger LANGUAGE plpgsql AS
           $$BEGIN IF NEW.id = 30 THEN NEW.v2 := NULL; END IF; RETURN NEW; END$$;
         CREATE TRIGGER keep_null BEFORE UPDATE ON items FOR EACH ROW EXECUTE FUNCTION keep_null();",
    )
    .await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator
        .up(&client, UpTo::All)
        .await
        .expect_err("row 30 never fills");
    let status = migrator.status(&client).await.unwrap();
    let entry = &status.entries[1];
    assert_eq!(entry.state, MigrationState::BackfillInProgress, "{status}");
    assert!(
        entry.detail.as_deref().unwrap().contains("row(s) done"),
        "{status}"
    );
}

/// A purge: a backfill file's DELETE runs in the same keyed batches as an UPDATE, removes
/// exactly the rows its WHERE matches, and resumes from its last key after a kill.
#[tokio::test]
async fn a_delete_backfill_purges_exactly_the_matching_rows_in_batches_and_resumes() {
    use migrate_core::runtime::ProgressEvent;
    use std::sync::{Arc, Mutex};

    let db = database();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("0001_sessions.sql"),
        "CREATE TABLE IF NOT EXISTS sessions (id bigint PRIMARY KEY, expired boolean NOT NULL);\n\
         -- migrate:down\nDROP TABLE IF EXISTS sessions;\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("0002_purge_sessions.backfill.sql"),
        "-- migrate:backfill table=sessions key=id batch=100\n\
         DELETE FROM sessions WHERE expired;\n-- migrate:down\n",
    )
    .unwrap();
    let checked = migrate_core::check_dir(dir.path(), "migrations").unwrap();
    assert!(checked.diagnostics.is_empty(), "{:?}", checked.diagnostics);
    let migrations = checked.migrations(&dir.path().to_string_lossy());
    let client = client(db.url()).await;
    up_to(&client, &migrations, 1).await;
    // Every third row is expired: 1,000 of 3,000. The state a purge killed after its batches
    // up to key 1500 leaves behind: those expired rows gone, the cursor at 1500.
    client
        .batch_execute(
            &format!(
                "INSERT INTO sessions (id, expired) SELECT g, g % 3 = 0 FROM generate_series(1, 3000) g;\n\
                 DELETE FROM sessions WHERE expired AND id <= 1500;\n{}",
                killed_backfill_progress("1500", 500)
            ),
        )
        .await
        .unwrap();

    let batches = Arc::new(Mutex::new(Vec::new()));
    let recorded = Arc::clone(&batches);
    let migrator = Migrator::new(&migrations, config())
        .unwrap()
        .with_progress(Box::new(move |event| {
            if let ProgressEvent::BackfillBatch { rows_done, .. } = *event {
                recorded.lock().unwrap().push(rows_done);
            }
        }));
    migrator.up(&client, UpTo::All).await.unwrap();

    // The keyed pass resumed after 1500: fifteen batches of 100 keys, each purging the
    // expired rows among them, counted on top of the 500 done before the kill; then the
    // count finds none left, so no sweep runs.
    let pass: Vec<i64> = (1..=15)
        .map(|k| 500 + (1501..=1500 + 100 * k).filter(|g| g % 3 == 0).count() as i64)
        .collect();
    assert_eq!(*batches.lock().unwrap(), pass);
    assert_eq!(progress(&client).await, (Some("3000".into()), 1000, true));
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM sessions WHERE expired").await,
        0
    );
    // Every live row is still there, untouched.
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM sessions WHERE NOT expired AND id % 3 <> 0"
        )
        .await,
        2000
    );
}

/// A column just added has no statistics: PostgreSQL guesses `IS NULL` matches 0.5% of the
/// rows. Without a constant key range it then sorted a sequential scan of the whole table for
/// every batch; with the range end read first, each batch stays on the key's index.
#[tokio::test]
async fn a_batch_on_a_column_without_statistics_reads_the_key_index_only() {
    use std::borrow::Cow;
    use tokio_postgres::types::ToSql;
    let db = database();
    let client = client(db.url()).await;
    client
        .batch_execute(
            "CREATE TABLE users (id bigint PRIMARY KEY, created_at timestamptz NOT NULL);\n\
             INSERT INTO users SELECT g, now() FROM generate_series(1, 100000) g;\n\
             ANALYZE users;\n\
             ALTER TABLE users ADD COLUMN verified_at timestamptz;",
        )
        .await
        .unwrap();
    let spec = migrate_core::migration::BackfillSpec {
        schema: None,
        table: Cow::Borrowed("users"),
        key: Cow::Borrowed("id"),
        pace: migrate_core::BackfillPace::Adaptive { target_ms: None },
    };
    let batches = migrate_core::batch_plan::plan(
        "UPDATE users SET verified_at = created_at WHERE verified_at IS NULL",
        &spec,
        "bigint",
    )
    .unwrap();
    let (after, size) = (Some("50000"), 1000_i64);
    let end: String = client
        .query_one(&batches.range_end_sql, &[&after, &size, &None::<&str>])
        .await
        .unwrap()
        .get(0);
    assert_eq!(end, "51000");
    let end = Some(end.as_str());
    let plans = [
        (
            &batches.range_sql,
            vec![&after as &(dyn ToSql + Sync), &end],
        ),
        (&batches.batch_sql, vec![&after, &size, &end]),
        (&batches.sweep_sql, vec![&after, &size, &end]),
    ];
    for (sql, params) in plans {
        let plan: String = client
            .query(&format!("EXPLAIN {sql}"), &params)
            .await
            .unwrap()
            .iter()
            .map(|row| row.get::<_, String>(0) + "\n")
            .collect();
        assert!(!plan.contains("Seq Scan"), "{plan}");
        assert!(plan.contains("Index Scan using users_pkey"), "{plan}");
    }
}

/// The backfill statement's state as `migrate backfill` reads it, and `status`'s detail.
async fn stopped_backfill(
    migrator: &Migrator<'_>,
    client: &tokio_postgres::Client,
) -> (Option<migrate_core::runtime::BackfillRun>, String) {
    let state = migrator.backfills(client).await.unwrap().remove(0);
    let status = migrator.status(client).await.unwrap();
    let detail = status.entries[1].detail.clone().unwrap_or_default();
    (state.run, detail)
}

/// `SET b = a WHERE b IS NULL` where `a` is NULL in some rows: the UPDATE leaves those rows
/// in its WHERE. The run stops naming the first of them and the cause, and neither the error
/// nor `status` promises that the next `up` helps.
#[tokio::test]
async fn rows_the_set_leaves_in_the_where_are_named_and_no_resume_is_promised() {
    use migrate_core::runtime::{BackfillRun, RuntimeError, StuckCause};
    let migrations = backfill_set(
        "CREATE TABLE items (id bigint PRIMARY KEY, a integer, b integer)",
        ("items", "id", 30, 0),
        "UPDATE items SET b = a WHERE b IS NULL",
    );
    let (_db, client) = before_the_backfill(
        &migrations,
        "INSERT INTO items (id, a) SELECT g, CASE WHEN g % 10 <> 0 THEN g END \
         FROM generate_series(1, 100) g",
    )
    .await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    for attempt in 0..2 {
        let failed = migrator.up(&client, UpTo::All).await.expect_err("stuck");
        match failed.error() {
            RuntimeError::BackfillRowsStuck {
                cause,
                keys,
                rows,
                key_column,
                location,
            } => {
                assert_eq!(*cause, StuckCause::SetKeepsMatching, "attempt {attempt}");
                // The first batch (keys 1..30) holds three of them, named lowest first.
                assert_eq!(keys, &["10", "20", "30"], "attempt {attempt}");
                assert_eq!(*rows, 3);
                assert_eq!(key_column, "id");
                assert_eq!(location.file, "0002_fill.backfill.sql");
            }
            other => panic!("attempt {attempt}: {other}"),
        }
        let message = failed.to_string();
        assert!(message.contains("id = 10, 20, 30"), "{message}");
        assert!(message.contains("fails the same way"), "{message}");
        let (run, detail) = stopped_backfill(&migrator, &client).await;
        assert!(
            matches!(&run, Some(BackfillRun::Failed { error }) if error.contains("id = 10, 20, 30")),
            "{run:?}"
        );
        assert!(detail.contains("the last run failed"), "{detail}");
        assert!(!detail.contains("resumes"), "{detail}");
    }
    assert_eq!(history_versions(&client).await, vec![1]);

    // Fixed as the error says: the statement now leaves the WHERE for every row.
    let fixed = backfill_set(
        "CREATE TABLE items (id bigint PRIMARY KEY, a integer, b integer)",
        ("items", "id", 30, 0),
        "UPDATE items SET b = COALESCE(a, 0) WHERE b IS NULL",
    );
    Migrator::new(&fixed, config())
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(&client, "SELECT count(*) FROM items WHERE b IS NULL").await,
        0
    );
}

/// Rows whose key is NULL are never reached by batches walking the key: the run fills every
/// other row, then stops naming the NULL key as the cause (not "verification failed", not
/// "something keeps writing rows"), whether the table is smaller or larger than a batch.
#[tokio::test]
async fn rows_with_a_null_key_are_named_as_the_cause() {
    use migrate_core::runtime::{BackfillRun, RuntimeError, StuckCause};
    for batch in [10, 1000] {
        let migrations = backfill_set(
            "CREATE TABLE items (k integer UNIQUE, v integer NOT NULL, v2 integer)",
            ("items", "k", batch, 0),
            "UPDATE items SET v2 = v WHERE v2 IS NULL",
        );
        let (_db, client) = before_the_backfill(
            &migrations,
            "INSERT INTO items (k, v) SELECT g, g FROM generate_series(1, 95) g;
             INSERT INTO items (k, v) VALUES (NULL, 1), (NULL, 2), (NULL, 3);",
        )
        .await;
        let migrator = Migrator::new(&migrations, config()).unwrap();
        let failed = migrator.up(&client, UpTo::All).await.expect_err("stuck");
        match failed.error() {
            RuntimeError::BackfillRowsStuck {
                cause, rows, keys, ..
            } => {
                assert_eq!(*cause, StuckCause::NullKey, "batch={batch}");
                assert_eq!(*rows, 3, "batch={batch}");
                assert!(keys.is_empty());
            }
            other => panic!("batch={batch}: {other}"),
        }
        assert!(
            failed.to_string().contains("have a NULL k"),
            "batch={batch}: {failed}"
        );
        assert_eq!(
            scalar_i64(
                &client,
                "SELECT count(*) FROM items WHERE k IS NOT NULL AND v2 IS NULL"
            )
            .await,
            0,
            "batch={batch}"
        );
        let (run, detail) = stopped_backfill(&migrator, &client).await;
        assert!(
            matches!(&run, Some(BackfillRun::Failed { error }) if error.contains("NULL k")),
            "{run:?}"
        );
        assert!(!detail.contains("resumes"), "{detail}");
    }
}

/// The table's heap pages now.
async fn heap_pages(client: &tokio_postgres::Client) -> i64 {
    scalar_i64(
        client,
        "SELECT pg_relation_size('items') / current_setting('block_size')::bigint",
    )
    .await
}

/// What the backfill of version 2 stored as having held it.
async fn stored_report(client: &tokio_postgres::Client) -> String {
    client
        .query_one(
            "SELECT coalesce(report, '') FROM schema_migrations_backfill WHERE version = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

/// 20,000 rows, analyzed (an estimate of the table's rows is what the vacuums go by), with
/// `table_options` set on the table.
async fn items_20k(
    client: &tokio_postgres::Client,
    migrations: &Migrations,
    table_options: Option<&str>,
) {
    up_to(client, migrations, 1).await;
    client
        .batch_execute(
            "INSERT INTO items (id, v) SELECT g, g FROM generate_series(1, 20000) g; \
             ANALYZE items",
        )
        .await
        .unwrap();
    if let Some(options) = table_options {
        client
            .batch_execute(&format!("ALTER TABLE items SET ({options})"))
            .await
            .unwrap();
    }
}

/// A migrator of `migrations` under `config` with a monitor connection: what watches the
/// backfill's vacuum.
async fn monitored<'m>(
    migrations: &'m Migrations,
    url: &str,
    config: migrate_core::runtime::MigratorConfig,
) -> Migrator<'m> {
    Migrator::new(migrations, config)
        .unwrap()
        .with_monitor(plain_client(url).await)
}

/// Waits until the backfill's vacuum of `items` runs.
async fn until_the_vacuum_runs(operator: &tokio_postgres::Client) {
    wait_until(
        operator,
        "the backfill's vacuum runs",
        "SELECT EXISTS (SELECT FROM pg_stat_progress_vacuum WHERE relid = 'items'::regclass)",
    )
    .await;
}

/// [`items_20k`], then the backfill in batches of 1,000 under `config`, with a monitor
/// connection (what watches the vacuum). Returns the table's pages before and after.
async fn backfill_20k(
    client: &tokio_postgres::Client,
    url: &str,
    migrations: &Migrations,
    table_options: Option<&str>,
    config: migrate_core::runtime::MigratorConfig,
) -> (i64, i64) {
    items_20k(client, migrations, table_options).await;
    let before = heap_pages(client).await;
    monitored(migrations, url, config)
        .await
        .up(client, UpTo::All)
        .await
        .unwrap();
    assert_eq!(
        scalar_i64(client, "SELECT count(*) FROM items WHERE v2 IS NULL").await,
        0
    );
    (before, heap_pages(client).await)
}

#[tokio::test]
async fn the_backfill_vacuums_its_table_as_it_goes_so_the_table_does_not_double() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), 1000);
    let client = client(db.url()).await;
    // Autovacuum's threshold for 20,000 rows is 4,050 dead rows: a vacuum every 2,025 rows
    // changed, whose freed space takes the next batches' new row versions. Without it every
    // new version goes to a new page at the table's end.
    let (before, after) = backfill_20k(&client, db.url(), &migrations, None, config()).await;
    assert!(
        after * 2 < before * 3,
        "the table grew from {before} to {after} pages"
    );
    let report = stored_report(&client).await;
    assert!(report.contains("vacuuming the table"), "{report}");
}

#[tokio::test]
async fn a_table_whose_autovacuum_is_off_or_a_run_told_not_to_is_left_unvacuumed() {
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), 1000);
    // The operator's own vacuums: autovacuum off for the table. Nothing else vacuums it
    // either, so every new row version is on a page of its own.
    let db = database();
    let operators = client(db.url()).await;
    let (before, after) = backfill_20k(
        &operators,
        db.url(),
        &migrations,
        Some("autovacuum_enabled = off"),
        config(),
    )
    .await;
    assert!(
        after * 10 >= before * 19,
        "the table grew from {before} to {after} pages"
    );
    let report = stored_report(&operators).await;
    assert!(!report.contains("vacuuming"), "{report}");

    // `--backfill-vacuum off`.
    let db = database();
    let told_not_to = client(db.url()).await;
    let mut config = config();
    config.backfill.vacuum = false;
    backfill_20k(&told_not_to, db.url(), &migrations, None, config).await;
    let report = stored_report(&told_not_to).await;
    assert!(!report.contains("vacuuming"), "{report}");
}

/// The table options that make the backfill's one vacuum (after 15,000 rows, half the
/// threshold) crawl: 100 ms of rest for every page it reads, so it would hold the table for
/// about a minute; and no autovacuum of the table before then.
const CRAWLING_VACUUM: &str = "autovacuum_vacuum_threshold = 30000, \
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_insert_threshold = 1000000, \
    autovacuum_vacuum_cost_delay = 100, autovacuum_vacuum_cost_limit = 1";

#[tokio::test]
async fn an_operators_pause_stops_the_backfills_vacuum_too() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), 1000);
    let client = client(db.url()).await;
    items_20k(&client, &migrations, Some(CRAWLING_VACUUM)).await;
    let migrator = monitored(&migrations, db.url(), config()).await;
    let operator = plain_client(db.url()).await;
    let pending = "SELECT count(*) FROM items WHERE v2 IS DISTINCT FROM v * 2";
    let operate = async {
        until_the_vacuum_runs(&operator).await;
        migrator.pause_backfills(&operator, true).await.unwrap();
        // The vacuum would crawl on for most of a minute; the pause stops it too (the wait
        // gives up after 30 s).
        wait_until(
            &operator,
            "the backfill's vacuum stopped for the pause",
            "SELECT NOT EXISTS (SELECT FROM pg_stat_progress_vacuum \
             WHERE relid = 'items'::regclass)",
        )
        .await;
        let paused = PaceState::Paused(PauseReason::Operator).to_string();
        wait_until(
            &operator,
            "the backfill reports the pause",
            &format!(
                "SELECT coalesce(state = '{paused}', false) FROM schema_migrations_backfill \
                 WHERE version = 2"
            ),
        )
        .await;
        // Paused, not finished: the rows after the vacuum's are still to do.
        let left = scalar_i64(&operator, pending).await;
        migrator.pause_backfills(&operator, false).await.unwrap();
        left
    };
    let (applied, left) = tokio::join!(migrator.up(&client, UpTo::All), operate);
    applied.unwrap();
    assert!(left > 0, "the backfill had finished before the pause");
    assert_eq!(scalar_i64(&client, pending).await, 0);
}

#[tokio::test]
async fn the_backfills_own_vacuum_is_no_old_transaction_to_stop_for() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), 1000);
    let client = client(db.url()).await;
    // A vacuum of a few seconds (10 cost units per 100 ms of rest), its transaction older
    // than the backfill lets any transaction be.
    let slow_vacuum = CRAWLING_VACUUM.replace("cost_limit = 1", "cost_limit = 10");
    let mut config = config();
    config.backfill.max_transaction_age = Some(Duration::from_secs(1));
    backfill_20k(&client, db.url(), &migrations, Some(&slow_vacuum), config).await;
    // It ran to its end: the stop signals it is watched by leave it out of the oldest
    // transaction, as they leave out the session reading them.
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'items'"
        )
        .await,
        1
    );
}

#[tokio::test]
async fn the_backfills_vacuum_yields_to_a_session_waiting_for_the_tables_lock() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = write_set(dir.path(), 1000);
    let client = client(db.url()).await;
    items_20k(&client, &migrations, Some(CRAWLING_VACUUM)).await;
    let migrator = monitored(&migrations, db.url(), config()).await;
    let operator = plain_client(db.url()).await;
    let analyze = async {
        // Once the backfill's vacuum holds the table ...
        until_the_vacuum_runs(&operator).await;
        // ... an operator's ANALYZE, which needs the lock the vacuum holds, gets it within
        // its lock_timeout: the vacuum yields.
        operator
            .batch_execute("SET lock_timeout = '5s'; ANALYZE items")
            .await
    };
    let (applied, analyzed) = tokio::join!(migrator.up(&client, UpTo::All), analyze);
    analyzed.expect("the ANALYZE waited behind the vacuum");
    applied.unwrap();
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM items WHERE v2 IS DISTINCT FROM v * 2"
        )
        .await,
        0
    );
}
