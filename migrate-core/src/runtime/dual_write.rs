//! Dual writes that never cost the legacy write.
//!
//! Between an expand and its contract the application writes the legacy shape, which must
//! succeed, and the modern shape, which must not get in its way. [`DualWrite::modern`] runs
//! the modern statement inside the caller's transaction, after its legacy write:
//!
//! 1. `SAVEPOINT`, then `lock_timeout` and `statement_timeout` set locally to the modern
//!    write's own bounds (one round trip, which also reads the caller's values);
//! 2. the flag, from a cache refreshed at most every [`DualWriteConfig::flag_refresh`]; off:
//!    nothing is written;
//! 3. the modern statement; on success the caller's timeouts are put back and the savepoint
//!    released; on any error `ROLLBACK TO SAVEPOINT` undoes the modern write alone (and the
//!    timeouts with it), the failure is logged (`tracing` warning) and the key is queued in
//!    `<history>_reconcile` in the same transaction, so it commits exactly when the legacy
//!    write does. `migrate reconcile` re-derives those keys from the legacy side.
//!
//! "Never blocked", bounded: the modern statement waits at most `lock_timeout` for any lock
//! (rows included) and runs at most `statement_timeout`, so the legacy transaction is delayed
//! by at most about `statement_timeout` plus three round trips. The default `lock_timeout`
//! (50 ms) is far below PostgreSQL's `deadlock_timeout` (1 s): a modern write caught in a lock
//! cycle gives up before any deadlock check runs, so the deadlock detector never has to pick
//! a victim among the legacy transactions because of it. What cannot be bounded here: the
//! locks the modern write took are held until the caller commits (as its legacy locks are),
//! and a *deferred* constraint on the modern side would fail the caller's `COMMIT`: keep
//! the modern side's constraints immediate.
//!
//! Without a transaction ([`DualWrite::modern_autocommit`]) the legacy write has committed
//! already; the modern write then runs in a transaction of its own and the queue row is
//! written after it fails, so a process killed in between loses the queue row (the compare
//! still finds the key).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, SimpleQueryMessage, Transaction};

use super::error::RuntimeError;
use super::state::flags::{FlagStore, validate_flag_name};
use super::state::history::TableName;
use super::state::reconcile_queue::ReconcileQueue;

const SAVEPOINT: &str = "migrate_dual_write";
const QUEUE_SAVEPOINT: &str = "migrate_dual_write_queue";

/// Settings of a [`DualWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualWriteConfig {
    /// The history table the migrator uses: the flags and reconcile tables are named after it.
    pub history_table: String,
    /// How long a flag read from the database is trusted: a flip reaches every instance
    /// within this time.
    pub flag_refresh: Duration,
    /// Longest wait of the modern write for a lock (keep it under `deadlock_timeout`, 1 s by
    /// default).
    pub lock_timeout: Duration,
    /// Longest run of the modern write.
    pub statement_timeout: Duration,
}

impl Default for DualWriteConfig {
    fn default() -> Self {
        DualWriteConfig {
            history_table: "public.schema_migrations".to_owned(),
            flag_refresh: Duration::from_secs(1),
            lock_timeout: Duration::from_millis(50),
            statement_timeout: Duration::from_millis(200),
        }
    }
}

/// What happened to a modern write. Never an error: the legacy write is the caller's.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ModernWrite {
    /// Written; the statement's row count.
    Written {
        /// Rows the modern statement changed.
        rows: u64,
    },
    /// The flag is off: nothing written.
    FlagOff,
    /// The modern write failed and was undone; the key is queued for `migrate reconcile`.
    Queued {
        /// Why it failed.
        error: String,
    },
    /// The modern write failed (or the flag could not be read) and the key could not be
    /// queued either: only a compare will find it. Logged at error level.
    NotQueued {
        /// Why it failed.
        error: String,
    },
}

/// The last flag value read, and when.
#[derive(Debug, Clone, Copy)]
struct CachedFlag {
    enabled: bool,
    read_at: Instant,
}

/// The modern half of a dual write for one flag; share one per flag across tasks (it is
/// `Send + Sync`; the flag cache is shared).
#[derive(Debug)]
pub struct DualWrite {
    flag: String,
    version: i64,
    config: DualWriteConfig,
    read_flag: String,
    flags_table: String,
    queue: ReconcileQueue,
    cached: Mutex<Option<CachedFlag>>,
}

impl DualWrite {
    /// The dual write guarded by flag `flag`, whose failures `migrate reconcile` replays with
    /// the `-- migrate:compare` mapping of backfill migration `version`. No I/O.
    pub fn new(
        flag: &str,
        version: u64,
        config: DualWriteConfig,
    ) -> Result<DualWrite, RuntimeError> {
        validate_flag_name(flag).map_err(|_| RuntimeError::InvalidIdentifier {
            what: "dual-write flag name ([a-z0-9_.-], at most 128 bytes)",
            value: flag.to_owned(),
        })?;
        let version =
            i64::try_from(version).map_err(|_| RuntimeError::VersionOutOfRange { version })?;
        let history = TableName::parse(&config.history_table)?;
        let flags = FlagStore::for_history_table(&history)?;
        Ok(DualWrite {
            flag: flag.to_owned(),
            version,
            read_flag: format!(
                "SELECT enabled FROM {} WHERE name = $1",
                flags.table().quoted()
            ),
            flags_table: flags.table().quoted(),
            queue: ReconcileQueue::for_history(&history)?,
            cached: Mutex::new(None),
            config,
        })
    }

    /// The flag's name.
    pub fn flag(&self) -> &str {
        &self.flag
    }

    /// Creates the reconcile queue if missing: call once at start-up (`migrate reconcile`
    /// creates it too). Without it, failed modern writes cannot be queued.
    pub async fn ensure_queue(&self, client: &Client) -> Result<(), RuntimeError> {
        self.queue.ensure(client).await
    }

    /// Runs the modern write `statement` for `key` inside `transaction`, after the caller's
    /// legacy write, as the module docs describe. Whatever happens, `transaction` is left
    /// usable for the caller's commit.
    pub async fn modern(
        &self,
        transaction: &Transaction<'_>,
        key: &str,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> ModernWrite {
        let failure = match self.try_modern(transaction, statement, params).await {
            Ok(outcome) => return outcome,
            Err(error) => error,
        };
        tracing::warn!(flag = %self.flag, key, error = %failure, "modern write failed and undone; queueing its key for reconcile");
        match self.push_in_savepoint(transaction, key, &failure).await {
            Ok(()) => ModernWrite::Queued { error: failure },
            Err(queue_error) => self.not_queued(key, failure, queue_error),
        }
    }

    /// [`DualWrite::modern`] for a caller without a transaction: the legacy write already
    /// committed; the modern write runs in a transaction of its own, and a failure is queued
    /// right after.
    pub async fn modern_autocommit(
        &self,
        client: &mut Client,
        key: &str,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> ModernWrite {
        let result = match client.transaction().await {
            Ok(transaction) => {
                let outcome = self.try_modern(&transaction, statement, params).await;
                match transaction.commit().await {
                    Ok(()) => outcome,
                    Err(error) => Err(error.to_string()),
                }
            }
            Err(error) => Err(error.to_string()),
        };
        let failure = match result {
            Ok(outcome) => return outcome,
            Err(error) => error,
        };
        tracing::warn!(flag = %self.flag, key, error = %failure, "modern write failed and undone; queueing its key for reconcile");
        match self
            .queue
            .push(client, self.version, key, &self.flag, &failure)
            .await
        {
            Ok(()) => ModernWrite::Queued { error: failure },
            Err(queue_error) => self.not_queued(key, failure, queue_error.to_string()),
        }
    }

    fn not_queued(&self, key: &str, failure: String, queue_error: String) -> ModernWrite {
        tracing::error!(
            flag = %self.flag, key, error = %failure, queue_error = %queue_error,
            "modern write failed and its key could not be queued: run `migrate verify --compare` to find it"
        );
        ModernWrite::NotQueued { error: failure }
    }

    /// Steps 1 to 3 of the module docs; `Err` after the savepoint was rolled back.
    async fn try_modern(
        &self,
        transaction: &Transaction<'_>,
        statement: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<ModernWrite, String> {
        self.bounded(transaction, SAVEPOINT, || async {
            if !self.enabled(transaction).await? {
                return Ok(ModernWrite::FlagOff);
            }
            let rows = transaction.execute(statement, params).await?;
            Ok(ModernWrite::Written { rows })
        })
        .await
    }

    /// Queues `key` the same way, in a savepoint of its own with the same bounds, so a
    /// failing insert (no queue table, a lock held on it) cannot abort the caller's
    /// transaction either.
    async fn push_in_savepoint(
        &self,
        transaction: &Transaction<'_>,
        key: &str,
        failure: &str,
    ) -> Result<(), String> {
        self.bounded(transaction, QUEUE_SAVEPOINT, || {
            self.queue
                .push(transaction, self.version, key, &self.flag, failure)
        })
        .await
    }

    /// Runs `operation` in savepoint `savepoint` under this write's timeouts: on success
    /// the caller's timeouts are put back and the savepoint released; on error the savepoint
    /// is rolled back (which restores the timeouts too) and the error returned as text.
    async fn bounded<T, F, Fut>(
        &self,
        transaction: &Transaction<'_>,
        savepoint: &str,
        operation: F,
    ) -> Result<T, String>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let millis = |d: Duration| d.as_millis().max(1);
        // Our own values, from Durations and constants: nothing from outside is spliced.
        let start = format!(
            "SAVEPOINT {savepoint}; \
             SELECT current_setting('lock_timeout'), current_setting('statement_timeout'), \
                    set_config('lock_timeout', '{}ms', true), \
                    set_config('statement_timeout', '{}ms', true)",
            millis(self.config.lock_timeout),
            millis(self.config.statement_timeout)
        );
        let before = transaction
            .simple_query(&start)
            .await
            .map_err(|error| describe(&error))?;
        let result = operation().await;
        let (value, caller) = match (result, caller_timeouts(&before)) {
            (Ok(value), Some(caller)) => (value, caller),
            (Ok(_), None) => {
                return Err(roll_back(transaction, savepoint, "no timeouts read".into()).await);
            }
            (Err(error), _) => {
                return Err(roll_back(transaction, savepoint, describe(&error)).await);
            }
        };
        let restore = format!(
            "SELECT set_config('lock_timeout', {}, true), \
                    set_config('statement_timeout', {}, true); \
             RELEASE SAVEPOINT {savepoint}",
            quote_literal(&caller.0),
            quote_literal(&caller.1)
        );
        match transaction.batch_execute(&restore).await {
            Ok(()) => Ok(value),
            Err(error) => Err(roll_back(transaction, savepoint, describe(&error)).await),
        }
    }

    /// The flag, from the cache when fresh, else read in the caller's transaction (inside
    /// the savepoint: a missing flags table only rolls the savepoint back).
    async fn enabled(&self, transaction: &Transaction<'_>) -> Result<bool, tokio_postgres::Error> {
        let cached = *self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flag) = cached
            && flag.read_at.elapsed() < self.config.flag_refresh
        {
            return Ok(flag.enabled);
        }
        // A flag never set is off, and so is every flag before the flags table exists
        // (looked up first: a query on a missing table would abort the savepoint).
        let exists: bool = transaction
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&self.flags_table])
            .await?
            .get(0);
        let enabled = exists
            && transaction
                .query_opt(&self.read_flag, &[&self.flag])
                .await?
                .is_some_and(|row| row.get::<_, bool>(0));
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedFlag {
            enabled,
            read_at: Instant::now(),
        });
        Ok(enabled)
    }
}

/// Undoes everything since `savepoint` (the write and the timeouts); returns `error`.
async fn roll_back(transaction: &Transaction<'_>, savepoint: &str, error: String) -> String {
    let undo = format!("ROLLBACK TO SAVEPOINT {savepoint}; RELEASE SAVEPOINT {savepoint}");
    match transaction.batch_execute(&undo).await {
        Ok(()) => error,
        Err(undo_error) => {
            format!("{error}; then rolling back to the savepoint failed: {undo_error}")
        }
    }
}

/// The caller's `lock_timeout` and `statement_timeout`, from the answer to `set_bounds`.
fn caller_timeouts(messages: &[SimpleQueryMessage]) -> Option<(String, String)> {
    messages.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => Some((row.get(0)?.to_owned(), row.get(1)?.to_owned())),
        _ => None,
    })
}

/// `'text'` with embedded quotes doubled (`standard_conforming_strings` is on since
/// PostgreSQL 9.1, so backslashes are plain characters).
fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// The server's message and SQLSTATE when there is one.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => error.to_string(),
    }
}
