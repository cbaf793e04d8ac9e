//! The whole expand/contract story on the example set (`migrations/`), with the library:
//!
//! 1. **expand** (0001 to 0003): `users.email_normalized` exists, nothing reads it yet;
//! 2. **flag on**: `users.email_normalized` in the flags table: the new release now writes
//!    both shapes, the modern half through [`DualWrite`] (this walk-through switches the
//!    expand's trigger off, so the application's dual write is all that keeps the new column
//!    right, and the modern side fails for every 7th user, injected by a trigger);
//! 3. **dual writes** from a concurrent writer task, throughout the backfill;
//! 4. **backfill** (0004) fills the rows written before the expand;
//! 5. **compare** (`-- migrate:compare` of 0004) finds the keys whose modern write failed,
//!    **reconcile** replays them, and the compare passes;
//! 6. **switch reads**: flag `users.read_normalized` on, the new release reads the new column;
//! 7. **contract** (0005 to 0007): `NOT NULL` without a scan, the old index dropped.
//!
//! ```sh
//! cargo run -p migrate-cli --example expand_contract                    # on a scratch cluster it starts
//! DATABASE_URL=postgres://... cargo run -p migrate-cli --example expand_contract   # on an empty database
//! ```
//!
//! `cargo test -p migrate-cli --example expand_contract` runs it as a test on a scratch
//! cluster and checks every step's outcome.

use std::sync::Arc;
use std::time::Duration;

use migrate_core::runtime::{
    CompareOptions, DualWrite, DualWriteConfig, Migrator, MigratorConfig, ModernWrite, UpTo,
    connect,
};
use tokio_postgres::NoTls;

static MIGRATIONS: migrate_core::Migrations = migrate_macros::migrations!("../migrations");

/// Users that exist before the expand.
const USERS: i64 = 20_000;
/// Dual writes the concurrent writer issues.
const WRITES: i64 = 1_500;
/// The flag guarding the modern write, and the backfill whose compare maps legacy to modern.
const DUAL_WRITE_FLAG: &str = "users.email_normalized";
const READ_FLAG: &str = "users.read_normalized";
const BACKFILL: u64 = 4;

/// The modern side fails for every 7th user, for the application's session only (the
/// backfill and reconcile are not the application).
const INJECT_FAULTS: &str = "\
CREATE FUNCTION example_modern_fault() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('application_name') = 'example-app' AND NEW.id % 7 = 0 THEN
        RAISE EXCEPTION 'modern side unavailable for user %', NEW.id;
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER example_modern_fault BEFORE UPDATE OF email_normalized ON users
    FOR EACH ROW EXECUTE FUNCTION example_modern_fault();";

/// What the walk saw, for the test.
#[derive(Debug, Default)]
struct Story {
    legacy_failures: i64,
    written: i64,
    queued: i64,
    differing_before_reconcile: i64,
    reconciled: i64,
    compare_passed: bool,
    applied_contract: Vec<u64>,
}

async fn run(url: &str) -> Result<Story, Box<dyn std::error::Error + Send + Sync>> {
    let config = MigratorConfig {
        application_name: "example-deploy".into(),
        ..MigratorConfig::default()
    };
    let migrator = Migrator::new(&MIGRATIONS, config.clone())?;
    let deploy = connect(url, &config).await?;
    let mut story = Story::default();

    // Before the change: the users the backfill will have to fill.
    migrator.up(&deploy, UpTo::Version(2)).await?;
    deploy
        .execute(
            "INSERT INTO users (email) SELECT 'User' || g || '@Example.com' FROM generate_series(1, $1::bigint) g",
            &[&USERS],
        )
        .await?;

    // 1. Expand.
    println!("{}", migrator.up(&deploy, UpTo::Version(3)).await?);
    deploy
        .batch_execute("ALTER TABLE users DISABLE TRIGGER users_normalize_email")
        .await?;
    deploy.batch_execute(INJECT_FAULTS).await?;

    // 2. Flag on: every instance's DualWrite sees it within its refresh.
    let flags = migrator.flags()?;
    flags.set(&deploy, DUAL_WRITE_FLAG, true).await?;
    let dual = Arc::new(DualWrite::new(
        DUAL_WRITE_FLAG,
        BACKFILL,
        DualWriteConfig {
            history_table: config.history_table.clone(),
            ..DualWriteConfig::default()
        },
    )?);
    dual.ensure_queue(&deploy).await?;

    // 3. The new release's writer: the legacy write, then its modern half.
    let writer = {
        let (url, dual) = (url.to_owned(), Arc::clone(&dual));
        tokio::spawn(async move { write_users(&url, &dual).await })
    };

    // 4. Backfill, while the writer runs.
    println!("{}", migrator.up(&deploy, UpTo::Version(BACKFILL)).await?);
    let (legacy_failures, written, queued) = writer.await??;
    story.legacy_failures = legacy_failures;
    story.written = written;
    story.queued = queued;
    println!(
        "writer: {written} modern writes, {queued} failed and queued, {legacy_failures} legacy writes failed"
    );
    deploy
        .batch_execute(
            "DROP TRIGGER example_modern_fault ON users; DROP FUNCTION example_modern_fault(); \
             ALTER TABLE users ENABLE TRIGGER users_normalize_email",
        )
        .await?;

    // 5. Compare, reconcile, compare.
    let first = migrator
        .compare(&deploy, BACKFILL, &CompareOptions::default())
        .await?;
    story.differing_before_reconcile = first.differing;
    println!(
        "compare: {} rows, {} differing (first: {:?})",
        first.rows_compared,
        first.differing,
        first
            .differing_keys
            .iter()
            .take(5)
            .map(|k| &k.key)
            .collect::<Vec<_>>()
    );
    for report in migrator.reconcile(&deploy, Some(BACKFILL)).await? {
        story.reconciled += report.changed;
        println!(
            "reconcile: {} queued, {} keys, {} rows changed",
            report.replayed, report.keys, report.changed
        );
    }
    let second = migrator
        .compare(&deploy, BACKFILL, &CompareOptions::default())
        .await?;
    story.compare_passed = second.passed();
    println!("compare again: {} differing", second.differing);
    if !second.passed() {
        return Err("the compare still differs: no contract".into());
    }

    // 6. Switch reads.
    flags.set(&deploy, READ_FLAG, true).await?;
    let found: i64 = deploy
        .query_one(
            "SELECT count(*) FROM users WHERE email_normalized = lower('User42@Example.com')",
            &[],
        )
        .await?
        .get(0);
    println!("reads switched: user42 found by email_normalized: {found}");

    // 7. Contract.
    let contract = migrator.up(&deploy, UpTo::All).await?;
    println!("{contract}");
    story.applied_contract = contract.versions();
    flags.set(&deploy, DUAL_WRITE_FLAG, false).await?;
    Ok(story)
}

/// `WRITES` email changes; returns (legacy writes that failed, modern written, queued).
async fn write_users(
    url: &str,
    dual: &DualWrite,
) -> Result<(i64, i64, i64), Box<dyn std::error::Error + Send + Sync>> {
    let (mut client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(connection);
    client
        .batch_execute("SET application_name = 'example-app'")
        .await?;
    let (mut legacy_failures, mut written, mut queued) = (0, 0, 0);
    for n in 0..WRITES {
        // Spread over the table, so the writes meet the backfill's batches.
        let id = (n * 7_919) % USERS + 1;
        let email = format!("Changed{n}.User{id}@Example.com");
        let transaction = client.transaction().await?;
        if let Err(error) = transaction
            .execute("UPDATE users SET email = $2 WHERE id = $1", &[&id, &email])
            .await
        {
            eprintln!("legacy write failed: {error}");
            legacy_failures += 1;
            continue;
        }
        match dual
            .modern(
                &transaction,
                &id.to_string(),
                "UPDATE users SET email_normalized = lower($2) WHERE id = $1",
                &[&id, &email],
            )
            .await
        {
            ModernWrite::Written { .. } => written += 1,
            ModernWrite::Queued { .. } => queued += 1,
            other => eprintln!("modern write: {other:?}"),
        }
        if let Err(error) = transaction.commit().await {
            eprintln!("legacy commit failed: {error}");
            legacy_failures += 1;
        }
        if n % 500 == 0 {
            // Give the backfill room, as a real request rate would.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    Ok((legacy_failures, written, queued))
}

#[cfg_attr(test, allow(dead_code))]
fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let runtime = tokio::runtime::Runtime::new()?;
    match std::env::var("DATABASE_URL") {
        Ok(url) => {
            runtime.block_on(run(&url))?;
        }
        Err(_) => {
            let cluster = migrate_scratch::ScratchCluster::start()?;
            let database = cluster.create_database()?;
            runtime.block_on(run(database.url()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_story_runs_on_a_scratch_cluster_and_loses_nothing() {
        let cluster = migrate_scratch::ScratchCluster::start().expect("scratch cluster");
        let database = cluster.create_database().expect("scratch database");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let story = runtime
            .block_on(run(database.url()))
            .expect("the story runs");
        assert_eq!(story.legacy_failures, 0, "{story:?}");
        // The injection happened, and every failed modern write was queued.
        assert!(story.queued > 0 && story.written > 0, "{story:?}");
        assert_eq!(story.written + story.queued, WRITES, "{story:?}");
        // Queued keys the backfill did not repair were found by the compare and fixed by
        // reconcile.
        assert!(story.differing_before_reconcile > 0, "{story:?}");
        assert_eq!(
            story.reconciled, story.differing_before_reconcile,
            "{story:?}"
        );
        assert!(story.compare_passed);
        assert_eq!(story.applied_contract, vec![5, 6, 7]);
    }
}
