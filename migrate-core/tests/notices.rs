//! The runtime's own DDL sends no NOTICE: drivers log every notice at info, and a
//! `CREATE TABLE IF NOT EXISTS` of an existing state table would log "relation ... already
//! exists, skipping" on every run. The migrations' own notices still arrive.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::*;
use futures_util::StreamExt;
use migrate_core::Migrations;
use migrate_core::runtime::{CompareOptions, Migrator, UpTo};
use tokio_postgres::{AsyncMessage, Client, NoTls};

/// A connection whose notices are kept, in arrival order.
async fn noticed_client(url: &str) -> (Client, Arc<Mutex<Vec<String>>>) {
    let (client, mut connection) = tokio_postgres::connect(url, NoTls).await.unwrap();
    let notices = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&notices);
    tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
        while let Some(Ok(message)) = messages.next().await {
            if let AsyncMessage::Notice(notice) = message {
                kept.lock().unwrap().push(notice.message().to_owned());
            }
        }
    });
    (client, notices)
}

/// A table, an autocommit expand (the partial-run table), a backfill with a compare (the
/// progress, compare and reconcile tables), and an expand whose own notice must arrive (the
/// same one the runtime no longer sends).
fn set(dir: &Path) -> Migrations {
    let files = [
        (
            "0001_users.expand.sql",
            "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY, email text NOT NULL, email_lower text);\n\
             -- migrate:down\nDROP TABLE IF EXISTS users;\n",
        ),
        (
            "0002_users_email_index.expand.sql",
            "-- migrate:no-transaction\n\
             CREATE INDEX CONCURRENTLY IF NOT EXISTS users_email_idx ON users (email);\n\
             -- migrate:down\nDROP INDEX CONCURRENTLY IF EXISTS users_email_idx;\n",
        ),
        (
            "0003_users_email_lower.backfill.sql",
            "-- migrate:backfill table=users key=id\n\
             -- migrate:compare source=users target=users key=id columns=email_lower map=lower(email)\n\
             UPDATE users SET email_lower = lower(email) WHERE email_lower IS NULL;\n",
        ),
        (
            "0004_users_again.expand.sql",
            "CREATE TABLE IF NOT EXISTS users (id bigint PRIMARY KEY);\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).unwrap();
    }
    let checked = migrate_core::check_dir(dir, "migrations").unwrap();
    let errors: Vec<_> = checked
        .diagnostics
        .iter()
        .filter(|d| d.severity == migrate_core::Severity::Error)
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    checked.migrations(&dir.to_string_lossy())
}

#[tokio::test]
async fn the_runtime_sends_no_notice_of_its_own_and_keeps_the_migrations() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let migrations = set(dir.path());
    let (client, notices) = noticed_client(db.url()).await;
    let migrator = Migrator::new(&migrations, config()).unwrap();
    migrator.up(&client, UpTo::Version(3)).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO users (id, email) SELECT g, 'U' || g FROM generate_series(1, 20) g",
        )
        .await
        .unwrap();
    let dual = migrator
        .dual_write("users.email_lower", 3, Default::default())
        .unwrap();
    // Every operation twice: the second finds the state tables there.
    for _ in 0..2 {
        migrator.status(&client).await.unwrap();
        migrator
            .rerun_backfill(&client, 3)
            .await
            .expect("re-run the backfill");
        migrator
            .compare(&client, 3, &CompareOptions::default())
            .await
            .unwrap();
        migrator.reconcile(&client, None).await.unwrap();
        migrator.reconcile_queue(&client).await.unwrap();
        dual.ensure_queue(&client).await.unwrap();
        migrator.pause_backfills(&client, false).await.unwrap();
    }
    assert_eq!(*notices.lock().unwrap(), Vec::<String>::new());

    migrator.up(&client, UpTo::All).await.unwrap();
    assert_eq!(
        *notices.lock().unwrap(),
        ["relation \"users\" already exists, skipping".to_owned()]
    );
}
