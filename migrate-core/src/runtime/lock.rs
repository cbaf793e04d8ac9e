//! The session advisory lock that serialises migration runs against one history table.
//!
//! Key: the first 8 bytes (big-endian, as `i64`) of SHA-256 over `migrate:` followed by the
//! quoted history table name as configured, e.g. `migrate:"public"."schema_migrations"`. It is
//! stable across releases and machines; two configurations naming the same table differently
//! (`schema_migrations` vs `public.schema_migrations`) get different keys, so configure one
//! spelling everywhere.
//!
//! A session-level lock (`pg_try_advisory_lock`) rather than a transaction-level one, because
//! autocommit migrations (CREATE INDEX CONCURRENTLY) span many transactions. The server drops
//! it when the session ends (<https://www.postgresql.org/docs/15/explicit-locking.html#ADVISORY-LOCKS>),
//! and the runtime also releases it explicitly (`pg_advisory_unlock`) on every path.

use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tokio_postgres::Client;

use super::error::{HOLDER_COLUMNS, LockHolder, RuntimeError};
use super::executor::Backoff;

/// Derives the advisory lock key from the quoted history table name; see the module docs.
pub fn lock_key(quoted_history_table: &str) -> i64 {
    let digest = Sha256::digest(format!("migrate:{quoted_history_table}").as_bytes());
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// A held session advisory lock. Call [`AdvisoryLock::release`]; a guard dropped without it
/// (panic, cancelled future) leaves the lock to the end of the session and says so.
#[must_use = "release the lock with AdvisoryLock::release"]
pub(crate) struct AdvisoryLock<'c> {
    client: &'c Client,
    key: i64,
    released: bool,
}

impl<'c> AdvisoryLock<'c> {
    /// Tries `pg_try_advisory_lock` with exponential backoff until `wait` has passed; then
    /// fails naming the holder.
    pub(crate) async fn acquire(
        client: &'c Client,
        key: i64,
        wait: Duration,
        backoff: Backoff,
    ) -> Result<AdvisoryLock<'c>, RuntimeError> {
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            let row = client
                .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
                .await
                .map_err(RuntimeError::database("taking the migration advisory lock"))?;
            if row.get::<_, bool>(0) {
                return Ok(AdvisoryLock {
                    client,
                    key,
                    released: false,
                });
            }
            let waited = started.elapsed();
            if waited >= wait {
                let holder = lock_holder(client, key).await?;
                return Err(RuntimeError::LockTimeout {
                    key,
                    waited,
                    holder,
                });
            }
            let delay = backoff.delay(attempt).min(wait - waited);
            tracing::info!(key, delay = %super::text::human(delay), "migration lock busy, waiting");
            tokio::time::sleep(delay).await;
            attempt = attempt.saturating_add(1);
        }
    }

    /// Releases the lock. An error here still leaves the lock to the end of the session.
    pub(crate) async fn release(mut self) -> Result<(), RuntimeError> {
        self.released = true;
        self.client
            .query_one("SELECT pg_advisory_unlock($1)", &[&self.key])
            .await
            .map_err(RuntimeError::database(
                "releasing the migration advisory lock",
            ))?;
        Ok(())
    }
}

impl Drop for AdvisoryLock<'_> {
    fn drop(&mut self) {
        if !self.released {
            // Drop cannot await a query; the server releases session locks when the
            // connection closes, which the caller's dedicated connection does on drop.
            tracing::warn!(
                key = self.key,
                "migration lock not released explicitly; it is held until the session ends"
            );
        }
    }
}

/// The session holding advisory lock `key`, if any. A bigint advisory key shows in
/// `pg_locks` as `classid` = high half, `objid` = low half, `objsubid` = 1
/// (<https://www.postgresql.org/docs/15/view-pg-locks.html>).
async fn lock_holder(client: &Client, key: i64) -> Result<Option<Box<LockHolder>>, RuntimeError> {
    let bits = key as u64;
    let high = (bits >> 32) as i64;
    let low = (bits & 0xffff_ffff) as i64;
    let row = client
        .query_opt(
            &format!(
                "SELECT {HOLDER_COLUMNS} \
                 FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
                 WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 \
                   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND l.classid::bigint = $1 AND l.objid::bigint = $2 \
                 LIMIT 1"
            ),
            &[&high, &low],
        )
        .await
        .map_err(RuntimeError::database(
            "finding the holder of the migration lock",
        ))?;
    Ok(row.map(|row| Box::new(LockHolder::from_row(&row))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_is_pinned() {
        // Changing this breaks mutual exclusion between releases during a rolling deploy.
        assert_eq!(
            lock_key("\"public\".\"schema_migrations\""),
            -2079006724375282287
        );
        assert_ne!(
            lock_key("\"public\".\"schema_migrations\""),
            lock_key("\"other\".\"schema_migrations\"")
        );
    }
}
