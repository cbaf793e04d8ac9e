//! Behind a real PgBouncer (Debian package; skipped with a message where it is missing): a
//! transaction- or statement-mode pooler is refused before anything runs, a session-mode
//! pooler works like a direct connection.

mod common;

use common::*;
use migrate_core::runtime::{ConnectError, Migrator, UpTo, connect};
use migrate_scratch::{PoolMode, ScratchPooler};

fn pooler(mode: PoolMode, pool_size: u32) -> Option<ScratchPooler> {
    if !ScratchPooler::available() {
        eprintln!("skipped: pgbouncer is not installed (apt-get install pgbouncer)");
        return None;
    }
    Some(ScratchPooler::start(cluster(), mode, pool_size).expect("pgbouncer"))
}

#[tokio::test]
async fn transaction_and_statement_pooling_are_refused_before_anything_runs() {
    for (mode, pool_size) in [
        (PoolMode::Transaction, 1),
        (PoolMode::Transaction, 4),
        (PoolMode::Statement, 4),
    ] {
        let Some(pooler) = pooler(mode, pool_size) else {
            return;
        };
        let db = database();
        let error = connect(&pooler.url(db.name()), &config())
            .await
            .expect_err("a transaction pooler must be refused");
        match &error {
            ConnectError::TransactionPooler { evidence } => {
                let expected = match mode {
                    PoolMode::Statement => "transaction block was refused",
                    _ => "server process",
                };
                assert!(
                    evidence.contains(expected),
                    "{mode:?}/{pool_size}: {evidence}"
                );
            }
            other => panic!("{mode:?}/{pool_size}: expected TransactionPooler, got {other}"),
        }
        let message = error.to_string();
        assert!(message.contains("session mode"), "{message}");
        assert!(message.contains("nothing was run"), "{message}");
    }
}

#[tokio::test]
async fn session_pooling_applies_like_a_direct_connection() {
    let Some(pooler) = pooler(PoolMode::Session, 4) else {
        return;
    };
    let db = database();
    let client = connect(&pooler.url(db.name()), &config())
        .await
        .expect("session mode keeps one server connection per client");
    let migrations = set(vec![tx(
        1,
        "t",
        &["CREATE TABLE IF NOT EXISTS t (id int)"],
        &["DROP TABLE IF EXISTS t"],
    )]);
    let report = Migrator::new(&migrations, config())
        .unwrap()
        .up(&client, UpTo::All)
        .await
        .expect("up");
    assert_eq!(report.versions(), vec![1]);
}
