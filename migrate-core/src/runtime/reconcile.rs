//! `migrate reconcile`: replays the keys whose modern write failed
//! ([`super::dual_write`]), re-deriving the modern row from the legacy one with the mapping
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
//! Rows whose value is already right are not updated (no dead tuple, no trigger).

use tokio_postgres::Client;

use super::Migrator;
use super::compare::{backfill_delay, compare_spec};
use super::deadline;
use super::error::RuntimeError;
use super::sql_version;
use super::state::reconcile_queue::ReconcileQueue;
use crate::migration::{CompareSpec, Migration};

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
}

/// The statements re-deriving a batch of keys (`$1`: the keys, as `text[]`), in order.
fn rederive_sql(spec: &CompareSpec, key_type: &str) -> Vec<String> {
    let key = spec.quoted_key();
    let (source, target) = (spec.source.quoted(), spec.target.quoted());
    let (values, columns) = (spec.source_values(), spec.quoted_columns());
    let keys = format!("$1::text[]::{key_type}[]");
    if spec.same_table() {
        return vec![format!(
            "UPDATE {target} SET ({columns}) = ROW({values}) WHERE {key} = ANY({keys}) \
             AND ROW({columns})::text IS DISTINCT FROM ROW({values})::text"
        )];
    }
    let excluded: Vec<String> = spec
        .columns
        .iter()
        .map(|c| format!("excluded.\"{}\"", c.replace('"', "\"\"")))
        .collect();
    let excluded = excluded.join(", ");
    vec![
        format!(
            "INSERT INTO {target} AS migrate_target ({key}, {columns}) \
             SELECT {key}, {values} FROM {source} WHERE {key} = ANY({keys}) \
             ON CONFLICT ({key}) DO UPDATE SET ({columns}) = ROW({excluded}) \
             WHERE ROW({}) IS DISTINCT FROM ROW({excluded})",
            spec.columns
                .iter()
                .map(|c| format!("migrate_target.\"{}\"", c.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        format!(
            "DELETE FROM {target} AS migrate_target WHERE migrate_target.{key} = ANY({keys}) \
             AND NOT EXISTS (SELECT 1 FROM {source} AS migrate_source \
                             WHERE migrate_source.{key} = migrate_target.{key})"
        ),
    ]
}

impl Migrator<'_> {
    /// Keys waiting in the reconcile queue, per backfill version; empty when there is no
    /// queue. Read only.
    pub async fn reconcile_queue(&self, client: &Client) -> Result<Vec<(u64, i64)>, RuntimeError> {
        self.check_history_table(client).await?;
        let queue = ReconcileQueue::for_history(self.history_table())?;
        deadline::within(
            Some(self.config.limits().own),
            "reading the reconcile queue",
            queue.lengths(client),
        )
        .await?
    }

    /// Replays the reconcile queue of every backfill declaring a compare (or only
    /// `version`), until it is empty of what was queued when each batch started.
    pub async fn reconcile(
        &self,
        client: &Client,
        version: Option<u64>,
    ) -> Result<Vec<ReconcileReport>, RuntimeError> {
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
            reports.push(self.reconcile_one(client, &queue, migration, &spec).await?);
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
        let key_type = self.compare_key_type(client, migration, spec).await?;
        let statements = rederive_sql(spec, &key_type);
        let mut report = ReconcileReport {
            version: migration.version,
            replayed: 0,
            keys: 0,
            changed: 0,
        };
        let limit = self.config.limits().statements(statements.len() + 2);
        loop {
            let batch = deadline::within(
                limit,
                "replaying a reconcile batch",
                self.reconcile_batch(client, queue, migration, &statements),
            )
            .await??;
            let Some((replayed, keys, changed)) = batch else {
                break;
            };
            report.replayed += replayed;
            report.keys += keys;
            report.changed += changed;
            tracing::debug!(
                version = migration.version,
                replayed,
                changed,
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
    ) -> Result<Option<(i64, i64, i64)>, RuntimeError> {
        client
            .batch_execute("BEGIN")
            .await
            .map_err(RuntimeError::database("starting a reconcile batch"))?;
        let result: Result<Option<(i64, i64, i64)>, RuntimeError> = async {
            let taken = queue
                .take(client, sql_version(migration.version), BATCH)
                .await?;
            if taken.is_empty() {
                return Ok(None);
            }
            let mut keys: Vec<&str> = taken.iter().map(|q| q.key.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            let mut changed = 0;
            for statement in statements {
                changed += client
                    .execute(statement, &[&keys])
                    .await
                    .map_err(RuntimeError::database("re-deriving queued keys"))?;
            }
            let ids: Vec<i64> = taken.iter().map(|q| q.id).collect();
            queue.remove(client, &ids).await?;
            Ok(Some((
                i64::try_from(ids.len()).unwrap_or(i64::MAX),
                i64::try_from(keys.len()).unwrap_or(i64::MAX),
                i64::try_from(changed).unwrap_or(i64::MAX),
            )))
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
