//! `migrate reconcile`: replays the keys whose modern write failed
//! ([`crate::runtime::compare::dual_write`]), re-deriving the modern row from the legacy one with the mapping
//! of the backfill's `-- migrate:compare` (the one the compare checks), then empties the
//! queue of what it replayed.
//!
//! Each batch is one transaction: the oldest queued rows nobody else is replaying
//! (`FOR UPDATE SKIP LOCKED`), the re-derivation of their distinct keys, and the deletion of
//! exactly those queue rows. Re-deriving is a function of the legacy row as it is now, so a
//! replay is idempotent: a key replayed twice, or already right, ends the same. A key
//! queued while a batch runs stays for the next one.
//!
//! - one table (`source = target`): `UPDATE t SET (cols) = ROW(map) WHERE key = ANY(keys)`;
//! - two tables: an upsert of the source rows into the target (`ON CONFLICT (key)`, so the
//!   target's key needs a unique index), and a delete of target rows whose source row is gone.
//!
//! Rows whose value is already right are not updated (no dead tuple, no trigger); "right"
//! is the compare's own definition (`row_equality`), so what reconcile leaves
//! alone the compare passes.
//!
//! A key that cannot be replayed (its text is not a value of the key's type, or its
//! re-derived row breaks a constraint: SQLSTATE classes 22, 23 and trigger exceptions)
//! must not fail its batch forever: the batch is replayed again key by key, each in a
//! savepoint, and the failing keys are marked unreplayable in the queue with their error,
//! named in the report, and never taken again; the others are replayed.

use tokio_postgres::Client;

use super::run::{backfill_delay, compare_location, compare_spec, located};
use crate::migration::{CompareSpec, Migration};
use crate::runtime::Migrator;
use crate::runtime::compare::row_equality::{self, RowEquality, aliases};
use crate::runtime::compare::tables::CompareTables;
use crate::runtime::deadline;
use crate::runtime::error::RuntimeError;
use crate::runtime::state::history::sql_version;
use crate::runtime::state::reconcile_queue::{ReconcileQueue, UnreplayableKey};

/// Keys replayed per transaction.
const BATCH: i64 = 500;

/// What `reconcile` did for one backfill's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// The backfill migration whose mapping re-derived the keys.
    pub version: u64,
    /// Queue rows replayed and removed.
    pub replayed: i64,
    /// Distinct keys re-derived.
    pub keys: i64,
    /// Target rows the re-derivation changed (the others were right already).
    pub changed: i64,
    /// Keys this run could not replay, marked so in the queue and skipped.
    pub unreplayable: Vec<UnreplayableKey>,
}

/// Keys waiting in the reconcile queue of one backfill ([`Migrator::reconcile_queue`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReconcileBacklog {
    /// The backfill migration whose mapping replays them.
    pub version: u64,
    /// Queue rows waiting (a key queued twice counts twice), not counting those marked
    /// unreplayable.
    pub waiting: u64,
}

/// What one batch did.
struct Batch {
    replayed: i64,
    keys: i64,
    changed: i64,
    unreplayable: Vec<UnreplayableKey>,
}

/// An error that belongs to the keys replayed rather than to the replay: a value that is not
/// one of the key's type, or bad for the mapping (class 22, data exception), a constraint
/// the re-derived row breaks (23), an exception raised by a trigger (P0).
fn caused_by_keys(error: &tokio_postgres::Error) -> bool {
    error
        .code()
        .is_some_and(|code| matches!(&code.code()[..2], "22" | "23" | "P0"))
}

/// The server's message and SQLSTATE.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} (SQLSTATE {})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}

/// The statements re-deriving a batch of keys (`$1`: the keys, as `text[]`), in order. A
/// row is rewritten only when it differs as [`RowEquality`] defines it.
fn rederive_sql(spec: &CompareSpec, tables: &CompareTables) -> Vec<String> {
    let key = spec.quoted_key();
    let (source, target) = (spec.source.quoted(), spec.target.quoted());
    let (values, columns) = (spec.source_values(), spec.quoted_columns());
    let keys = format!("$1::text[]::{}[]", tables.key_type);
    let equality = &tables.equality;
    let qualified = |table: &str| -> Vec<String> {
        spec.columns
            .iter()
            .map(|c| format!("{table}.\"{}\"", c.replace('"', "\"\"")))
            .collect()
    };
    if spec.same_table() {
        // The source row's text, computed from the row being updated (a correlated
        // subquery over no table: the map's names are the target's columns).
        let source_row = format!(
            "(SELECT {} FROM (SELECT {target}.{key}, {values}) AS migrate_source(k, {}))",
            equality.source_row(
                "migrate_source.k",
                &aliases("migrate_source.v", equality.len())
            ),
            aliases("v", equality.len()).join(", ")
        );
        let target_row = equality.target_row(&format!("{target}.{key}"), &qualified(&target));
        return vec![format!(
            "UPDATE {target} SET ({columns}) = ROW({values}) WHERE {target}.{key} = ANY({keys}) \
             AND {}",
            RowEquality::differ(&source_row, &target_row)
        )];
    }
    let excluded = qualified("excluded");
    vec![
        format!(
            "INSERT INTO {target} AS migrate_target ({key}, {columns}) \
             SELECT {key}, {values} FROM {source} WHERE {key} = ANY({keys}) \
             ON CONFLICT ({key}) DO UPDATE SET ({columns}) = ROW({}) WHERE {}",
            excluded.join(", "),
            // The excluded row is the source row written into the target's types.
            RowEquality::differ(
                &equality.target_row(&format!("excluded.{key}"), &excluded),
                &equality.target_row(
                    &format!("migrate_target.{key}"),
                    &qualified("migrate_target")
                )
            )
        ),
        format!(
            "DELETE FROM {target} AS migrate_target WHERE migrate_target.{key} = ANY({keys}) \
             AND NOT EXISTS (SELECT 1 FROM {source} AS migrate_source \
                             WHERE migrate_source.{key} = migrate_target.{key})"
        ),
    ]
}

impl Migrator<'_> {
    /// Keys waiting in the reconcile queue, per backfill version, ascending; empty when
    /// there is no queue. Read only.
    pub async fn reconcile_queue(
        &self,
        client: &Client,
    ) -> Result<Vec<ReconcileBacklog>, RuntimeError> {
        self.check_history_table(client).await?;
        let queue = ReconcileQueue::for_history(self.history_table())?;
        let lengths = deadline::within(
            Some(self.config.limits().own),
            "reading the reconcile queue",
            queue.lengths(client),
        )
        .await??;
        Ok(lengths
            .into_iter()
            .map(|(version, waiting)| ReconcileBacklog {
                version,
                waiting: u64::try_from(waiting).unwrap_or(0),
            })
            .collect())
    }

    /// Keys `migrate reconcile` could not replay, kept in the queue: how many, and the first
    /// `limit` (oldest first). Read only.
    pub async fn unreplayable_keys(
        &self,
        client: &Client,
        limit: i64,
    ) -> Result<(i64, Vec<UnreplayableKey>), RuntimeError> {
        let queue = ReconcileQueue::for_history(self.history_table())?;
        deadline::within(
            Some(self.config.limits().own),
            "reading the reconcile queue",
            queue.unreplayable(client, None, None, limit),
        )
        .await?
    }

    /// Replays the reconcile queue of every backfill declaring a compare (or only
    /// `version`), until it is empty of what was queued when each batch started. A
    /// `version` that is not in the set, or declares no compare (so has no mapping to
    /// replay with), is refused ([`RuntimeError::Compare`]) before anything is read.
    pub async fn reconcile(
        &self,
        client: &Client,
        version: Option<u64>,
    ) -> Result<Vec<ReconcileReport>, RuntimeError> {
        if let Some(version) = version {
            self.declared_compare(version)?;
        }
        let queue = ReconcileQueue::for_history(self.history_table())?;
        self.check_history_table(client).await?;
        let own = Some(self.config.limits().own);
        deadline::within(own, "creating the reconcile queue", queue.ensure(client)).await??;
        let mut reports = Vec::new();
        for migration in self.migrations.iter() {
            if version.is_some_and(|v| v != migration.version) {
                continue;
            }
            let Some(spec) = compare_spec(migration)? else {
                continue;
            };
            let at = compare_location(migration);
            let report = self
                .reconcile_one(client, &queue, migration, &spec)
                .await
                .map_err(|error| located(&at, error))?;
            reports.push(report);
        }
        Ok(reports)
    }

    async fn reconcile_one(
        &self,
        client: &Client,
        queue: &ReconcileQueue,
        migration: &Migration,
        spec: &CompareSpec,
    ) -> Result<ReconcileReport, RuntimeError> {
        let tables = self
            .compare_tables(client, &compare_location(migration), spec)
            .await?;
        let statements = rederive_sql(spec, &tables);
        let mut report = ReconcileReport {
            version: migration.version,
            replayed: 0,
            keys: 0,
            changed: 0,
            unreplayable: Vec::new(),
        };
        // A batch replayed key by key runs its statements once per key.
        let per_batch = (statements.len() + 2) * (usize::try_from(BATCH).unwrap_or(500) + 1);
        let limit = self.config.limits().statements(per_batch);
        loop {
            let batch = deadline::within(
                limit,
                "replaying a reconcile batch",
                self.reconcile_batch(client, queue, migration, &statements),
            )
            .await??;
            let Some(batch) = batch else {
                break;
            };
            report.replayed += batch.replayed;
            report.keys += batch.keys;
            report.changed += batch.changed;
            for key in &batch.unreplayable {
                tracing::warn!(version = migration.version, key = %key.key, failure = %key.failure, "reconcile key cannot be replayed; marked in the queue and skipped");
            }
            report.unreplayable.extend(batch.unreplayable);
            tracing::debug!(
                version = migration.version,
                replayed = batch.replayed,
                changed = batch.changed,
                "reconcile batch"
            );
            let delay = backfill_delay(migration);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        Ok(report)
    }

    /// One batch in one transaction; `None` when the queue had nothing left.
    async fn reconcile_batch(
        &self,
        client: &Client,
        queue: &ReconcileQueue,
        migration: &Migration,
        statements: &[String],
    ) -> Result<Option<Batch>, RuntimeError> {
        client
            .batch_execute(&format!("BEGIN; {}", row_equality::SESSION))
            .await
            .map_err(RuntimeError::database("starting a reconcile batch"))?;
        let result: Result<Option<Batch>, RuntimeError> = async {
            let taken = queue
                .take(client, sql_version(migration.version), BATCH)
                .await?;
            if taken.is_empty() {
                return Ok(None);
            }
            let mut keys: Vec<&str> = taken.iter().map(|q| q.key.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            let (changed, failed) = match replay(client, statements, &keys).await? {
                Ok(changed) => (changed, Vec::new()),
                Err(_) => replay_one_by_one(client, statements, &keys).await?,
            };
            let (bad, good): (Vec<_>, Vec<_>) = taken
                .iter()
                .partition(|q| failed.iter().any(|(key, _)| *key == q.key));
            let failure_of = |key: &str| {
                failed
                    .iter()
                    .find(|(failed_key, _)| *failed_key == key)
                    .map_or_else(String::new, |(_, failure)| failure.clone())
            };
            let good_ids: Vec<i64> = good.iter().map(|q| q.id).collect();
            queue.remove(client, &good_ids).await?;
            let bad_ids: Vec<i64> = bad.iter().map(|q| q.id).collect();
            let failures: Vec<String> = bad.iter().map(|q| failure_of(&q.key)).collect();
            queue.mark_unreplayable(client, &bad_ids, &failures).await?;
            let count = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
            Ok(Some(Batch {
                replayed: count(good_ids.len()),
                keys: count(keys.len() - failed.len()),
                changed: i64::try_from(changed).unwrap_or(i64::MAX),
                unreplayable: failed
                    .into_iter()
                    .map(|(key, failure)| UnreplayableKey {
                        version: migration.version,
                        key: key.to_owned(),
                        failure,
                    })
                    .collect(),
            }))
        }
        .await;
        let end = if matches!(result, Ok(Some(_))) {
            "COMMIT"
        } else {
            "ROLLBACK"
        };
        let ended = client.batch_execute(end).await;
        let batch = result?;
        ended.map_err(RuntimeError::database("ending a reconcile batch"))?;
        Ok(batch)
    }
}

/// Runs `statements` for `keys` in a savepoint: the rows changed, or (savepoint rolled back)
/// the error when the keys caused it ([`caused_by_keys`]); any other error fails the batch.
async fn replay(
    client: &Client,
    statements: &[String],
    keys: &[&str],
) -> Result<Result<u64, tokio_postgres::Error>, RuntimeError> {
    const SAVEPOINT: &str = "migrate_reconcile_keys";
    client
        .batch_execute(&format!("SAVEPOINT {SAVEPOINT}"))
        .await
        .map_err(RuntimeError::database("re-deriving queued keys"))?;
    let mut changed = 0;
    for statement in statements {
        match client.execute(statement, &[&keys]).await {
            Ok(rows) => changed += rows,
            Err(error) if caused_by_keys(&error) => {
                client
                    .batch_execute(&format!("ROLLBACK TO SAVEPOINT {SAVEPOINT}"))
                    .await
                    .map_err(RuntimeError::database("re-deriving queued keys"))?;
                return Ok(Err(error));
            }
            Err(error) => return Err(RuntimeError::database("re-deriving queued keys")(error)),
        }
    }
    client
        .batch_execute(&format!("RELEASE SAVEPOINT {SAVEPOINT}"))
        .await
        .map_err(RuntimeError::database("re-deriving queued keys"))?;
    Ok(Ok(changed))
}

/// After a batch failed because of some key: each key alone, so the others are replayed and
/// the failing ones named. Returns the rows changed and the failing keys with their errors.
async fn replay_one_by_one<'k>(
    client: &Client,
    statements: &[String],
    keys: &[&'k str],
) -> Result<(u64, Vec<(&'k str, String)>), RuntimeError> {
    let mut changed = 0;
    let mut failed = Vec::new();
    for key in keys {
        match replay(client, statements, &[key]).await? {
            Ok(rows) => changed += rows,
            Err(error) => failed.push((*key, describe(&error))),
        }
    }
    Ok((changed, failed))
}
