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
//!
//! The protocol is written once, over what it needs from the caller's transaction
//! (`CallerTransaction`); tokio-postgres's `Transaction` is one, and with the `sqlx` feature
//! sqlx's `Transaction<'_, Postgres>` is another (`DualWrite::modern_sqlx`).

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, SimpleQueryMessage, Transaction};

use crate::runtime::error::RuntimeError;
use crate::runtime::state::flags::{FlagStore, validate_flag_name};
use crate::runtime::state::history::TableName;
use crate::runtime::state::reconcile_queue::ReconcileQueue;

const SAVEPOINT: &str = "migrate_dual_write";
const QUEUE_SAVEPOINT: &str = "migrate_dual_write_queue";

/// Settings of a [`DualWrite`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DualWriteConfig {
    /// The history table the migrator uses: the flags and reconcile tables are named after
    /// it. [`Migrator::dual_write`](crate::runtime::Migrator::dual_write) sets it from the migrator;
    /// only [`DualWrite::new`] reads it from here.
    pub history_table: String,
    /// How long a flag read from the database is trusted: a flip reaches every instance
    /// within this time ([`DualWrite::expire_cached_flag`] makes this one read it at once).
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
        /// Why it failed: the server's message and SQLSTATE, or the driver's error.
        error: String,
        /// The server's SQLSTATE, when the server answered (e.g.
        /// [`SqlState::LOCK_NOT_AVAILABLE`] for a lock wait past `lock_timeout`).
        sql_state: Option<SqlState>,
    },
    /// The modern write failed (or the flag could not be read) and the key could not be
    /// queued either: only a compare will find it. Logged at error level.
    NotQueued {
        /// Why it failed.
        error: String,
        /// The server's SQLSTATE of the modern write's failure, when the server answered.
        sql_state: Option<SqlState>,
    },
}

/// Why a step of a dual write failed: the text for logs and the queue row, and the
/// SQLSTATE when the server answered.
#[derive(Debug, Clone)]
pub(crate) struct WriteFailure {
    pub(crate) text: String,
    pub(crate) sql_state: Option<SqlState>,
}

impl WriteFailure {
    pub(crate) fn other(text: impl Into<String>) -> WriteFailure {
        WriteFailure {
            text: text.into(),
            sql_state: None,
        }
    }
}

impl From<tokio_postgres::Error> for WriteFailure {
    fn from(error: tokio_postgres::Error) -> WriteFailure {
        WriteFailure {
            text: describe(&error),
            sql_state: error.code().cloned(),
        }
    }
}

/// What the dual-write protocol needs from the caller's transaction, one implementation per
/// driver: the savepoints, bounds, flag and queue logic of [`DualWrite`] is written once
/// over it.
///
/// The futures are `Send` in the signatures (not left to `async fn`), so that a dual write
/// can run on a spawned task (a web handler's): an `async fn` in a trait only promises that
/// for each concrete lifetime, which a spawned future cannot use.
pub(crate) trait CallerTransaction: Send {
    /// Runs `sql` (several statements, no parameters, simple protocol) and returns the
    /// first two columns of the first row it returned, as text.
    fn simple(
        &mut self,
        sql: &str,
    ) -> impl Future<Output = Result<Option<(String, String)>, WriteFailure>> + Send;
    /// Whether the relation `quoted` exists.
    fn relation_exists(
        &mut self,
        quoted: &str,
    ) -> impl Future<Output = Result<bool, WriteFailure>> + Send;
    /// Runs `select` (`SELECT enabled ... WHERE name = $1`) for `flag`.
    fn read_flag(
        &mut self,
        select: &str,
        flag: &str,
    ) -> impl Future<Output = Result<Option<bool>, WriteFailure>> + Send;
    /// Runs the caller's modern statement; its row count.
    fn modern_statement(&mut self) -> impl Future<Output = Result<u64, WriteFailure>> + Send;
    /// Runs `insert` (`$1` version, `$2` key, `$3` flag, `$4` error).
    fn queue(
        &mut self,
        insert: &str,
        version: i64,
        key: &str,
        flag: &str,
        error: &str,
    ) -> impl Future<Output = Result<(), WriteFailure>> + Send;
}

/// A tokio-postgres transaction with the caller's modern statement.
struct TokioTransaction<'t, 'c, 'a> {
    transaction: &'t Transaction<'c>,
    statement: &'a str,
    params: &'a [&'a (dyn ToSql + Sync)],
}

impl CallerTransaction for TokioTransaction<'_, '_, '_> {
    async fn simple(&mut self, sql: &str) -> Result<Option<(String, String)>, WriteFailure> {
        let messages = self.transaction.simple_query(sql).await?;
        Ok(messages.iter().find_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some((row.get(0)?.to_owned(), row.get(1)?.to_owned())),
            _ => None,
        }))
    }

    async fn relation_exists(&mut self, quoted: &str) -> Result<bool, WriteFailure> {
        Ok(self
            .transaction
            .query_one("SELECT to_regclass($1) IS NOT NULL", &[&quoted])
            .await?
            .get(0))
    }

    async fn read_flag(&mut self, select: &str, flag: &str) -> Result<Option<bool>, WriteFailure> {
        Ok(self
            .transaction
            .query_opt(select, &[&flag])
            .await?
            .map(|row| row.get::<_, bool>(0)))
    }

    async fn modern_statement(&mut self) -> Result<u64, WriteFailure> {
        Ok(self
            .transaction
            .execute(self.statement, self.params)
            .await?)
    }

    async fn queue(
        &mut self,
        insert: &str,
        version: i64,
        key: &str,
        flag: &str,
        error: &str,
    ) -> Result<(), WriteFailure> {
        self.transaction
            .execute(insert, &[&version, &key, &flag, &error])
            .await?;
        Ok(())
    }
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
    /// The flags table was found missing and the log said so (once: a typo in the history
    /// table name would otherwise read every flag as off, silently, forever).
    said_no_flags_table: AtomicBool,
}

impl DualWrite {
    /// The dual write guarded by flag `flag`, whose failures `migrate reconcile` replays with
    /// the `-- migrate:compare` mapping of backfill migration `version`, on the state tables
    /// of `config.history_table`. No I/O. With a [`Migrator`](crate::runtime::Migrator) at hand,
    /// [`Migrator::dual_write`](crate::runtime::Migrator::dual_write) takes the history table from it
    /// and checks `version`.
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
            said_no_flags_table: AtomicBool::new(false),
            config,
        })
    }

    /// The flag's name.
    pub fn flag(&self) -> &str {
        &self.flag
    }

    /// Forgets the cached flag value: the next modern write reads the flag from the
    /// database. Call it after flipping the flag from this process, which otherwise sees
    /// the flip only after [`DualWriteConfig::flag_refresh`]. No I/O.
    pub fn expire_cached_flag(&self) {
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = None;
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
        let mut caller = TokioTransaction {
            transaction,
            statement,
            params,
        };
        self.modern_in(&mut caller, key).await
    }

    /// [`DualWrite::modern`] over any driver's transaction.
    pub(crate) async fn modern_in(
        &self,
        transaction: &mut impl CallerTransaction,
        key: &str,
    ) -> ModernWrite {
        let failure = match self.try_modern(transaction).await {
            Ok(outcome) => return outcome,
            Err(error) => error,
        };
        tracing::warn!(flag = %self.flag, key, error = %failure.text, "modern write failed and undone; queueing its key for reconcile");
        match self.push_in_savepoint(transaction, key, &failure).await {
            Ok(()) => ModernWrite::Queued {
                error: failure.text,
                sql_state: failure.sql_state,
            },
            Err(queue_error) => self.not_queued(key, failure, queue_error.text),
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
                let mut caller = TokioTransaction {
                    transaction: &transaction,
                    statement,
                    params,
                };
                let outcome = self.try_modern(&mut caller).await;
                match transaction.commit().await {
                    Ok(()) => outcome,
                    Err(error) => Err(error.into()),
                }
            }
            Err(error) => Err(error.into()),
        };
        let failure = match result {
            Ok(outcome) => return outcome,
            Err(error) => error,
        };
        tracing::warn!(flag = %self.flag, key, error = %failure.text, "modern write failed and undone; queueing its key for reconcile");
        match self
            .queue
            .push(client, self.version, key, &self.flag, &failure.text)
            .await
        {
            Ok(()) => ModernWrite::Queued {
                error: failure.text,
                sql_state: failure.sql_state,
            },
            Err(queue_error) => self.not_queued(key, failure, queue_error.to_string()),
        }
    }

    fn not_queued(&self, key: &str, failure: WriteFailure, queue_error: String) -> ModernWrite {
        tracing::error!(
            flag = %self.flag, key, error = %failure.text, queue_error = %queue_error,
            "modern write failed and its key could not be queued: run `migrate verify --compare` to find it"
        );
        ModernWrite::NotQueued {
            error: failure.text,
            sql_state: failure.sql_state,
        }
    }

    /// Steps 1 to 3 of the module docs; `Err` after the savepoint was rolled back.
    async fn try_modern(
        &self,
        transaction: &mut impl CallerTransaction,
    ) -> Result<ModernWrite, WriteFailure> {
        let caller = self.begin_bounded(transaction, SAVEPOINT).await?;
        let result = async {
            if !self.enabled(transaction).await? {
                return Ok(ModernWrite::FlagOff);
            }
            let rows = transaction.modern_statement().await?;
            Ok(ModernWrite::Written { rows })
        }
        .await;
        self.end_bounded(transaction, SAVEPOINT, caller, result)
            .await
    }

    /// Queues `key` the same way, in a savepoint of its own with the same bounds, so a
    /// failing insert (no queue table, a lock held on it) cannot abort the caller's
    /// transaction either.
    async fn push_in_savepoint(
        &self,
        transaction: &mut impl CallerTransaction,
        key: &str,
        failure: &WriteFailure,
    ) -> Result<(), WriteFailure> {
        let caller = self.begin_bounded(transaction, QUEUE_SAVEPOINT).await?;
        let result = transaction
            .queue(
                self.queue.insert_sql(),
                self.version,
                key,
                &self.flag,
                &failure.text,
            )
            .await;
        self.end_bounded(transaction, QUEUE_SAVEPOINT, caller, result)
            .await
    }

    /// Opens `savepoint` and sets this write's timeouts locally, in one round trip; returns
    /// the caller's timeouts, to put back.
    async fn begin_bounded(
        &self,
        transaction: &mut impl CallerTransaction,
        savepoint: &str,
    ) -> Result<Option<(String, String)>, WriteFailure> {
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
        transaction.simple(&start).await
    }

    /// After the operation run since [`DualWrite::begin_bounded`]: on success the caller's
    /// timeouts are put back and the savepoint released; on error the savepoint is rolled
    /// back (which restores the timeouts too) and the error returned.
    async fn end_bounded<T>(
        &self,
        transaction: &mut impl CallerTransaction,
        savepoint: &str,
        caller: Option<(String, String)>,
        result: Result<T, WriteFailure>,
    ) -> Result<T, WriteFailure> {
        let (value, caller) = match (result, caller) {
            (Ok(value), Some(caller)) => (value, caller),
            (Ok(_), None) => {
                let failure = WriteFailure::other("no timeouts read");
                return Err(roll_back(transaction, savepoint, failure).await);
            }
            (Err(error), _) => return Err(roll_back(transaction, savepoint, error).await),
        };
        let restore = format!(
            "SELECT set_config('lock_timeout', {}, true), \
                    set_config('statement_timeout', {}, true); \
             RELEASE SAVEPOINT {savepoint}",
            quote_literal(&caller.0),
            quote_literal(&caller.1)
        );
        match transaction.simple(&restore).await {
            Ok(_) => Ok(value),
            Err(error) => Err(roll_back(transaction, savepoint, error).await),
        }
    }

    /// The flag, from the cache when fresh, else read in the caller's transaction (inside
    /// the savepoint: a missing flags table only rolls the savepoint back).
    async fn enabled(
        &self,
        transaction: &mut impl CallerTransaction,
    ) -> Result<bool, WriteFailure> {
        let cached = *self.cached.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(flag) = cached
            && flag.read_at.elapsed() < self.config.flag_refresh
        {
            return Ok(flag.enabled);
        }
        // A flag never set is off, and so is every flag before the flags table exists
        // (looked up first: a query on a missing table would abort the savepoint).
        let exists = transaction.relation_exists(&self.flags_table).await?;
        if !exists && !self.said_no_flags_table.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                flag = %self.flag,
                flags_table = %self.flags_table,
                "the flags table does not exist, so the flag reads as off and nothing modern \
                 is written: check that the dual write's history table is the migrator's \
                 (Migrator::dual_write takes it from the migrator); `flag set` creates the table"
            );
        }
        let enabled = exists
            && transaction
                .read_flag(&self.read_flag, &self.flag)
                .await?
                .unwrap_or(false);
        *self.cached.lock().unwrap_or_else(|p| p.into_inner()) = Some(CachedFlag {
            enabled,
            read_at: Instant::now(),
        });
        Ok(enabled)
    }
}

/// Undoes everything since `savepoint` (the write and the timeouts); returns `failure`.
async fn roll_back(
    transaction: &mut impl CallerTransaction,
    savepoint: &str,
    mut failure: WriteFailure,
) -> WriteFailure {
    let undo = format!("ROLLBACK TO SAVEPOINT {savepoint}; RELEASE SAVEPOINT {savepoint}");
    if let Err(undo_error) = transaction.simple(&undo).await {
        failure.text = format!(
            "{}; then rolling back to the savepoint failed: {}",
            failure.text, undo_error.text
        );
    }
    failure
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
