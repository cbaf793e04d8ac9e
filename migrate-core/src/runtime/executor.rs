//! Runs one section of one migration: in a transaction, or statement by statement; recovers
//! INVALID indexes around `CREATE INDEX CONCURRENTLY`; retries `lock_timeout` failures.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tokio_postgres::Client;
use tokio_postgres::Statement as PreparedStatement;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::deadline::within;
use super::error::{HOLDER_COLUMNS, LockHolder, RuntimeError, StatementLocation};
use super::rows_guard::RowsGuard;
use super::state::partial::PartialRunTable;
use crate::migration::{Migration, Section, Statement, TransactionMode};
use crate::splitter::{self, TokenKind};

/// Exponential backoff with jitter: attempt `n` waits a random time in
/// `[base * 2^n / 2, base * 2^n]` ("equal jitter"), so retrying migrators spread out instead of
/// queueing together behind the same blocker.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    /// The longest wait of attempt 0; doubled per attempt.
    pub base: Duration,
    /// No single wait exceeds this.
    pub max: Duration,
}

impl Backoff {
    /// The pause before retry number `attempt`, counted from 0.
    pub(crate) fn delay(&self, attempt: u32) -> Duration {
        let full = self
            .base
            .saturating_mul(1u32 << attempt.min(16))
            .min(self.max);
        let half = full / 2;
        // RandomState is seeded randomly per instance: enough entropy for jitter, no RNG crate.
        let random = RandomState::new().build_hasher().finish();
        let fraction = (random >> 11) as f64 / (1u64 << 53) as f64;
        half + half.mul_f64(fraction)
    }
}

/// What the executor needs besides the client.
#[derive(Debug, Clone)]
pub(crate) struct ExecutionSettings {
    /// The migration lock's key: each transactional migration checks it holds the lock.
    pub(crate) lock_key: i64,
    /// Client-side bounds on each wait for the server.
    pub(crate) limits: super::deadline::Limits,
    /// Where up sections in autocommit mode record how far they got.
    pub(crate) partial: Option<PartialRunTable>,
    /// Retries after the first attempt for SQLSTATE 55P03.
    pub lock_retries: u32,
    /// Pauses between those retries.
    pub backoff: Backoff,
}

/// The history change that completes a section (inside its transaction when transactional).
/// The statements are prepared once per run.
#[derive(Debug, Clone, Copy)]
pub(crate) enum HistoryChange<'a> {
    /// After an up section.
    Insert {
        /// `$1..$4`; the server computes the duration from the transaction start.
        in_transaction: &'a PreparedStatement,
        /// `$1..$5`, `$5` the measured duration: for autocommit sections.
        with_duration: &'a PreparedStatement,
        version: i64,
        name: &'a str,
        phase: &'a str,
        checksum: &'a str,
    },
    /// After a down section.
    Delete {
        statement: &'a PreparedStatement,
        version: i64,
    },
}

impl HistoryChange<'_> {
    async fn execute_in_transaction(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        match *self {
            HistoryChange::Insert {
                in_transaction,
                version,
                name,
                phase,
                checksum,
                ..
            } => {
                client
                    .execute(in_transaction, &[&version, &name, &phase, &checksum])
                    .await?;
            }
            HistoryChange::Delete { statement, version } => {
                client.execute(statement, &[&version]).await?;
            }
        }
        Ok(())
    }

    pub(crate) async fn execute_after(
        &self,
        client: &Client,
        duration: Duration,
    ) -> Result<(), tokio_postgres::Error> {
        match *self {
            HistoryChange::Insert {
                with_duration,
                version,
                name,
                phase,
                checksum,
                ..
            } => {
                let duration_ms = i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
                let params: [&(dyn ToSql + Sync); 5] =
                    [&version, &name, &phase, &checksum, &duration_ms];
                client.execute(with_duration, &params).await?;
            }
            HistoryChange::Delete { statement, version } => {
                client.execute(statement, &[&version]).await?;
            }
        }
        Ok(())
    }
}

/// How a section run went.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SectionOutcome {
    /// From the first attempt's start to the end, pauses between retries included.
    pub duration: Duration,
    /// Attempts of the section (transactional) or the most-tried statement (autocommit).
    pub attempts: u32,
}

/// Runs `section` of `migration`, then `history` (transactional: in the same transaction).
/// `guard` (a contract's recount of rows its backfills left, see [`RowsGuard`]) runs after
/// `BEGIN`, before the first statement; in autocommit mode, right before the first statement.
/// The recorded `duration_ms` is the statements' run time; the outcome's duration covers
/// every attempt, pauses between retries included.
pub(crate) async fn run_section(
    client: &Client,
    migration: &Migration,
    section: &Section,
    settings: &ExecutionSettings,
    history: HistoryChange<'_>,
    guard: Option<&RowsGuard>,
) -> Result<SectionOutcome, RuntimeError> {
    let guard = guard.filter(|g| !g.is_empty());
    match section.mode {
        TransactionMode::Transactional => {
            run_transactional(client, migration, section, settings, history, guard).await
        }
        TransactionMode::Autocommit => {
            if let Some(guard) = guard {
                within(
                    settings.limits.statements(guard.len()),
                    "counting rows a backfill has not done, before the contract",
                    guard.check(client),
                )
                .await??;
            }
            let own = Some(settings.limits.own);
            // Up sections record how far they got: a failure leaves earlier statements
            // committed, which `status` then shows.
            let partial = match history {
                HistoryChange::Insert { version, .. } => {
                    settings.partial.as_ref().map(|table| (table, version))
                }
                HistoryChange::Delete { .. } => None,
            };
            if let Some((table, version)) = partial {
                within(
                    own,
                    "recording the start of a migration",
                    table.start(client, version),
                )
                .await??;
            }
            let result =
                run_autocommit(client, migration, section, settings, history, partial).await;
            match (&result, partial) {
                (Ok(_), Some((table, version))) => {
                    within(own, "clearing a partial run", table.finish(client, version)).await??
                }
                // A server that stopped answering would not record anything either.
                (Err(RuntimeError::NoAnswer { .. }), _) | (_, None) => {}
                (Err(error), Some((table, version))) => {
                    let text = error.to_string();
                    let record = table.failed(client, version, &text);
                    let _ = within(own, "recording a failed migration", record).await;
                }
            }
            result
        }
    }
}

pub(crate) fn location(migration: &Migration, statement: Option<&Statement>) -> StatementLocation {
    location_in(migration, None, statement)
}

/// Where `statement` of `section` is: in the section's own file when it has one (a two-file
/// layout's down file, whose lines the statements carry), else in the migration's file.
pub(crate) fn location_in(
    migration: &Migration,
    section: Option<&Section>,
    statement: Option<&Statement>,
) -> StatementLocation {
    let file = section
        .and_then(|section| section.file_name.as_deref())
        .unwrap_or(&migration.file_name);
    StatementLocation {
        version: migration.version,
        file: file.to_owned(),
        line: statement.map_or(1, |s| s.line),
        column: statement.map_or(1, |s| s.column),
    }
}

pub(crate) fn is_lock_timeout(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::LOCK_NOT_AVAILABLE)
}

pub(crate) fn statement_error(
    migration: &Migration,
    statement: Option<&Statement>,
    attempts: u32,
    error: tokio_postgres::Error,
) -> RuntimeError {
    statement_error_in(migration, None, statement, attempts, error)
}

/// [`statement_error`] of a statement of `section`, located in the section's own file.
pub(crate) fn statement_error_in(
    migration: &Migration,
    section: Option<&Section>,
    statement: Option<&Statement>,
    attempts: u32,
    error: tokio_postgres::Error,
) -> RuntimeError {
    let location = location_in(migration, section, statement);
    if is_lock_timeout(&error) {
        RuntimeError::LockRetriesExhausted {
            location,
            attempts,
            error,
            blockers: Vec::new(),
        }
    } else {
        RuntimeError::Statement {
            location,
            attempts,
            error,
        }
    }
}

/// Fills a lock-timeout error's blockers: the sessions holding locks on the tables the
/// failing statement locks (from the static lock analysis), read right after it gave up.
/// Best effort: any failure here leaves the list empty.
pub(crate) async fn name_blockers(
    client: &Client,
    error: RuntimeError,
    migration: &Migration,
    statements: &[&Statement],
) -> RuntimeError {
    let RuntimeError::LockRetriesExhausted {
        location,
        attempts,
        error,
        mut blockers,
    } = error
    else {
        return error;
    };
    blockers.extend(blocking_sessions(client, migration, statements).await);
    RuntimeError::LockRetriesExhausted {
        location,
        attempts,
        error,
        blockers,
    }
}

/// The tables `statements` of `migration` lock: of the tables the check found the migration
/// locks ([`crate::StatementAnalysis::locked_tables`]), those the statements name, or all of
/// them when they name none (a foreign key's parent is locked without being named). For a
/// set built by hand, read from the statements where the `lint` feature is on (none where it
/// is off).
fn locked_tables(migration: &Migration, statements: &[&Statement]) -> Vec<String> {
    let all: Vec<String> = match &migration.analysis {
        Some(analysis) => analysis
            .locked_tables
            .iter()
            .map(|t| t.to_string())
            .collect(),
        #[cfg(feature = "lint")]
        None => {
            return statements
                .iter()
                .flat_map(|statement| crate::lock_analysis::analyze_sql(&statement.sql).locks)
                .map(|lock| lock.table)
                .collect();
        }
        #[cfg(not(feature = "lint"))]
        None => Vec::new(),
    };
    let named: Vec<String> = all
        .iter()
        .filter(|table| {
            statements
                .iter()
                .any(|statement| crate::queries::names_relation(&statement.sql, table))
        })
        .cloned()
        .collect();
    if named.is_empty() { all } else { named }
}

/// The sessions holding locks on the tables `statements` lock (from the static lock
/// analysis), oldest transaction first (the likeliest culprit), at most 3; read after a
/// statement gave up on `lock_timeout`, when `pg_blocking_pids()` of this session no longer
/// names them because it waits no more. Best effort: a failed query names none.
async fn blocking_sessions(
    client: &Client,
    migration: &Migration,
    statements: &[&Statement],
) -> Vec<LockHolder> {
    let tables = locked_tables(migration, statements);
    if tables.is_empty() {
        return Vec::new();
    }
    let rows = client
        .query(
            &format!(
                "SELECT {HOLDER_COLUMNS} \
                 FROM pg_stat_activity a \
                 WHERE a.pid <> pg_backend_pid() AND a.pid IN ( \
                     SELECT l.pid FROM pg_locks l \
                     WHERE l.locktype = 'relation' AND l.granted \
                       AND l.relation IN (SELECT to_regclass(t) FROM unnest($1::text[]) t)) \
                 ORDER BY a.xact_start NULLS LAST LIMIT 3"
            ),
            &[&tables],
        )
        .await;
    rows.map(|rows| rows.iter().map(LockHolder::from_row).collect())
        .unwrap_or_default()
}

type Request<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<(), tokio_postgres::Error>> + Send + 'a>,
>;

/// How many requests of one transaction are in flight at once. Pipelining a whole file at
/// once kept a future and an encoded copy of every statement until the server answered the
/// last (issue 21, item 20: `up` of a 47 MB file of 500,381 INSERTs held 540 MB, 224 MB with
/// the window and no copy of the set); a window keeps the round trips shared while memory
/// stays bounded.
const PIPELINE_WINDOW: usize = 256;

fn statement_request<'a>(client: &'a Client, statement: &'a Statement) -> Request<'a> {
    Box::pin(client.batch_execute(&statement.sql))
}

/// Runs `requests` pipelined, at most [`PIPELINE_WINDOW`] in flight, in order, and returns
/// the first failure with its index. Requests after a failure are not sent: PostgreSQL would
/// refuse them anyway (25P02), and the caller rolls back.
async fn first_failure<'a>(
    requests: impl Iterator<Item = Request<'a>>,
) -> Option<(usize, tokio_postgres::Error)> {
    let mut results = futures_util::stream::iter(requests).buffered(PIPELINE_WINDOW);
    let mut index = 0;
    while let Some(result) = results.next().await {
        if let Err(error) = result {
            return Some((index, error));
        }
        index += 1;
    }
    None
}

/// BEGIN, statements, history row, COMMIT; the whole transaction is retried on 55P03.
///
/// The messages are sent as one pipeline (tokio-postgres pipelines requests polled
/// together; at most [`PIPELINE_WINDOW`] in flight), not one round trip per statement. This
/// is safe: once a
/// statement fails, PostgreSQL rejects every later statement of the transaction
/// (SQLSTATE 25P02) and turns the COMMIT into a ROLLBACK
/// (<https://www.postgresql.org/docs/15/sql-commit.html>), so nothing after a failure takes
/// effect; the first error in order is the failing statement.
///
/// With a guard, `BEGIN` and the guard go first, on their own: the statements are sent only
/// once the guard passed.
async fn run_transactional(
    client: &Client,
    migration: &Migration,
    section: &Section,
    settings: &ExecutionSettings,
    history: HistoryChange<'_>,
    guard: Option<&RowsGuard>,
) -> Result<SectionOutcome, RuntimeError> {
    let run_started = Instant::now();
    let begin = begin_holding_the_lock(settings.lock_key);
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let first: Request<'_> = if let Some(guard) = guard {
            within(
                Some(settings.limits.own),
                "starting a migration's transaction",
                client.batch_execute(&begin),
            )
            .await?
            .map_err(|e| statement_error_in(migration, Some(section), None, attempt, e))?;
            let checked = within(
                settings.limits.statements(guard.len()),
                "counting rows a backfill has not done, before the contract",
                guard.check(client),
            )
            .await
            .and_then(|checked| checked);
            if let Err(error) = checked {
                if !matches!(error, RuntimeError::NoAnswer { .. }) {
                    let _ = rollback(client, settings).await;
                }
                return Err(error);
            }
            // Index 0 stays "BEGIN" for the error mapping below.
            Box::pin(async { Ok(()) })
        } else {
            Box::pin(client.batch_execute(&begin))
        };
        let statements = section
            .statements
            .iter()
            .map(|statement| statement_request(client, statement));
        // Boxed: the closure's type would otherwise make the future `Send` only for one
        // lifetime, and callers spawn it.
        let requests: Box<dyn Iterator<Item = Request<'_>> + Send + '_> = Box::new(
            std::iter::once(first)
                .chain(statements)
                .chain(std::iter::once::<Request<'_>>(Box::pin(
                    history.execute_in_transaction(client),
                )))
                .chain(std::iter::once::<Request<'_>>(Box::pin(
                    client.batch_execute("COMMIT"),
                ))),
        );
        let failure = super::deadline::within(
            settings.limits.statements(section.statements.len()),
            "running a migration's statements",
            first_failure(requests),
        )
        .await?;
        let duration = run_started.elapsed();
        let Some((index, error)) = failure else {
            return Ok(SectionOutcome {
                duration,
                attempts: attempt,
            });
        };
        let statement = index.checked_sub(1).and_then(|i| section.statements.get(i));
        // Normally a no-op (the COMMIT already rolled back); it matters when the failure was
        // in COMMIT's own round trip. If the connection is gone, the server rolled back.
        let _ = rollback(client, settings).await;
        if is_lock_timeout(&error) && attempt <= settings.lock_retries {
            wait_before_retry(client, migration, statement, attempt, settings).await;
            continue;
        }
        let failing: Vec<&Statement> = match statement {
            Some(statement) => vec![statement],
            None => section.statements.iter().collect(),
        };
        let error = statement_error_in(migration, Some(section), statement, attempt, error);
        return Err(name_blockers(client, error, migration, &failing).await);
    }
}

/// `BEGIN`, then a check, inside the migration's own transaction, that this server session
/// holds the migration lock. Behind a transaction-mode pooler the probe at connect may miss
/// (see `pooler.rs`), and each transaction may run on a server session other than the one
/// that took the lock: then the transaction fails before any statement, with a message that
/// says why, instead of running unprotected. A bigint advisory key shows in `pg_locks` as
/// `classid` = high half, `objid` = low half, `objsubid` = 1
/// (<https://www.postgresql.org/docs/15/view-pg-locks.html>). The key is a number computed
/// here, never user input.
fn begin_holding_the_lock(key: i64) -> String {
    let bits = key as u64;
    let (high, low) = (bits >> 32, bits & 0xffff_ffff);
    format!(
        "BEGIN; DO $migrate_lock_guard$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_locks \
         WHERE locktype = 'advisory' AND pid = pg_backend_pid() AND granted AND objsubid = 1 \
         AND classid::bigint = {high} AND objid::bigint = {low}) THEN RAISE EXCEPTION \
         'this server session does not hold the migration lock: the connection goes through a \
         transaction-mode pooler, or the lock was lost; nothing of this migration ran' \
         USING ERRCODE = '55000'; END IF; END $migrate_lock_guard$"
    )
}

/// `ROLLBACK`, bounded: a server that stopped answering must not hang the error path.
async fn rollback(client: &Client, settings: &ExecutionSettings) -> Result<(), RuntimeError> {
    within(
        Some(settings.limits.own),
        "rolling back",
        client.batch_execute("ROLLBACK"),
    )
    .await?
    .map_err(RuntimeError::database("rolling back"))
}

/// After a `lock_timeout`: warns, naming the sessions in the way (see [`blocking_sessions`];
/// for a failure outside any statement, those of every statement of `section`), then pauses
/// so the application's queued queries proceed.
pub(crate) async fn wait_before_retry(
    client: &Client,
    migration: &Migration,
    statement: Option<&Statement>,
    attempt: u32,
    settings: &ExecutionSettings,
) {
    let delay = settings.backoff.delay(attempt - 1);
    let statements: Vec<&Statement> = match statement {
        Some(statement) => vec![statement],
        None => migration.up.statements.iter().collect(),
    };
    let blockers = within(
        Some(settings.limits.own),
        "naming the sessions holding the locks",
        blocking_sessions(client, migration, &statements),
    )
    .await
    .unwrap_or_default();
    let blocked_by = if blockers.is_empty() {
        "no session holding a lock on its tables seen (it may have finished)".to_owned()
    } else {
        let list: Vec<String> = blockers.iter().map(ToString::to_string).collect();
        format!("held by {}", list.join("; "))
    };
    tracing::warn!(
        version = migration.version,
        file = %migration.file_name,
        line = statement.map(|s| s.line),
        attempt,
        delay = %super::text::human(delay),
        blocked_by = %blocked_by,
        "lock_timeout (55P03): retrying after a pause so the application's queries proceed"
    );
    tokio::time::sleep(delay).await;
}

/// Each statement on its own (retried alone on 55P03), then the history row.
async fn run_autocommit(
    client: &Client,
    migration: &Migration,
    section: &Section,
    settings: &ExecutionSettings,
    history: HistoryChange<'_>,
    partial: Option<(&PartialRunTable, i64)>,
) -> Result<SectionOutcome, RuntimeError> {
    let started = Instant::now();
    let mut most_attempts = 1;
    for (done, statement) in section.statements.iter().enumerate() {
        if done > 0
            && let Some((table, version)) = partial
        {
            within(
                Some(settings.limits.own),
                "recording a migration's progress",
                table.statement_done(client, version, done),
            )
            .await??;
        }
        let index = ConcurrentIndex::find(&statement.sql);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            let result = super::deadline::within(
                settings.limits.statements(2),
                "running a migration statement",
                async {
                    if let Some(index) = &index {
                        index.drop_if_invalid(client).await?;
                    }
                    client.batch_execute(&statement.sql).await
                },
            )
            .await?;
            match result {
                Ok(()) => break,
                Err(error) if is_lock_timeout(&error) && attempt <= settings.lock_retries => {
                    wait_before_retry(client, migration, Some(statement), attempt, settings).await;
                }
                Err(error) => {
                    let error = statement_error_in(
                        migration,
                        Some(section),
                        Some(statement),
                        attempt,
                        error,
                    );
                    return Err(name_blockers(client, error, migration, &[statement]).await);
                }
            }
        }
        most_attempts = most_attempts.max(attempt);
        if let Some(index) = &index {
            let valid = within(
                Some(settings.limits.own),
                "checking the index is valid",
                index.is_valid(client),
            )
            .await?
            .map_err(|e| {
                statement_error_in(migration, Some(section), Some(statement), attempt, e)
            })?;
            if valid == Some(false) {
                return Err(RuntimeError::InvalidIndex {
                    location: location_in(migration, Some(section), Some(statement)),
                    index: index.name.clone(),
                });
            }
        }
    }
    let duration = started.elapsed();
    let mut attempt = 0u32;
    loop {
        attempt += 1;
        let recorded = within(
            Some(settings.limits.own),
            "recording the migration in the history",
            history.execute_after(client, duration),
        )
        .await?;
        match recorded {
            Ok(()) => break,
            Err(error) if is_lock_timeout(&error) && attempt <= settings.lock_retries => {
                wait_before_retry(client, migration, None, attempt, settings).await;
            }
            Err(error) => {
                return Err(statement_error_in(
                    migration,
                    Some(section),
                    None,
                    attempt,
                    error,
                ));
            }
        }
    }
    Ok(SectionOutcome {
        duration,
        attempts: most_attempts,
    })
}

/// A `CREATE [UNIQUE] INDEX CONCURRENTLY [IF NOT EXISTS] name ON [ONLY] table` statement.
///
/// A failed concurrent build leaves an INVALID index behind, and a re-run with IF NOT EXISTS
/// would keep it (<https://www.postgresql.org/docs/15/sql-createindex.html#SQL-CREATEINDEX-CONCURRENTLY>):
/// so an INVALID index of that name is dropped first. The index lives in its table's schema,
/// so it is looked up there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ConcurrentIndex {
    /// The index name as stored in the catalog (unquoted, case-folded when it was unquoted).
    pub name: String,
    /// The table as written, for `to_regclass` (which applies SQL quoting rules itself).
    pub table: String,
}

impl ConcurrentIndex {
    /// Keyword scan over the statement's tokens (comments skipped, quotes respected).
    pub(crate) fn find(sql: &str) -> Option<ConcurrentIndex> {
        let tokens = splitter::tokenize(sql).ok()?;
        let words: Vec<&splitter::Token> = tokens.iter().filter(|t| !t.is_comment()).collect();
        let mut at = 0;
        let expect = |at: &mut usize, keyword: &str| {
            let found = words.get(*at).is_some_and(|t| t.is_word(sql, keyword));
            *at += usize::from(found);
            found
        };
        if !expect(&mut at, "CREATE") {
            return None;
        }
        expect(&mut at, "UNIQUE");
        if !(expect(&mut at, "INDEX") && expect(&mut at, "CONCURRENTLY")) {
            return None;
        }
        if expect(&mut at, "IF") && !(expect(&mut at, "NOT") && expect(&mut at, "EXISTS")) {
            return None;
        }
        // Without a name, PostgreSQL picks one: nothing to recover by name.
        if expect(&mut at, "ON") {
            return None;
        }
        let name = identifier_value(sql, words.get(at)?)?;
        at += 1;
        if !expect(&mut at, "ON") {
            return None;
        }
        expect(&mut at, "ONLY");
        let first = words.get(at)?;
        identifier_value(sql, first)?;
        let mut table = first.text(sql).to_owned();
        let dot = words.get(at + 1);
        if let Some(dot) = dot.filter(|t| t.kind == TokenKind::Punct && t.text(sql) == ".") {
            let second = words.get(at + 2)?;
            identifier_value(sql, second)?;
            table.push_str(dot.text(sql));
            table.push_str(second.text(sql));
        }
        Some(ConcurrentIndex { name, table })
    }

    async fn drop_if_invalid(&self, client: &Client) -> Result<(), tokio_postgres::Error> {
        let rows = client
            .query(
                "SELECT n.nspname::text \
                 FROM pg_class c \
                 JOIN pg_index i ON i.indexrelid = c.oid \
                 JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relname = $1 AND NOT i.indisvalid \
                   AND c.relnamespace = \
                       (SELECT relnamespace FROM pg_class WHERE oid = to_regclass($2))",
                &[&self.name, &self.table],
            )
            .await?;
        for row in rows {
            let schema: String = row.get(0);
            let sql = format!(
                "DROP INDEX CONCURRENTLY IF EXISTS {}.{}",
                quote_identifier(&schema),
                quote_identifier(&self.name)
            );
            tracing::warn!(index = %self.name, %schema, "dropping INVALID index left by a failed build");
            client.batch_execute(&sql).await?;
        }
        Ok(())
    }

    /// `pg_index.indisvalid` of the index; `None` when it does not exist.
    async fn is_valid(&self, client: &Client) -> Result<Option<bool>, tokio_postgres::Error> {
        let row = client
            .query_opt(
                "SELECT i.indisvalid \
                 FROM pg_class c JOIN pg_index i ON i.indexrelid = c.oid \
                 WHERE c.relname = $1 AND c.relnamespace = \
                       (SELECT relnamespace FROM pg_class WHERE oid = to_regclass($2))",
                &[&self.name, &self.table],
            )
            .await?;
        Ok(row.map(|row| row.get(0)))
    }
}

/// The catalog spelling of an identifier token: unquoted words fold to lower case, quoted ones
/// lose their quotes and `""` escapes (<https://www.postgresql.org/docs/15/sql-syntax-lexical.html#SQL-SYNTAX-IDENTIFIERS>).
fn identifier_value(sql: &str, token: &splitter::Token) -> Option<String> {
    let text = token.text(sql);
    match token.kind {
        TokenKind::Word => Some(text.to_ascii_lowercase()),
        TokenKind::QuotedIdent => {
            let inner = text.strip_prefix('"')?.strip_suffix('"')?;
            Some(inner.replace("\"\"", "\""))
        }
        _ => None,
    }
}

pub(crate) fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// The closing event of a migration's span: its outcome and duration.
pub(crate) fn finish_span(
    result: Result<SectionOutcome, RuntimeError>,
    span: &tracing::Span,
) -> Result<SectionOutcome, RuntimeError> {
    let _entered = span.enter();
    match &result {
        Ok(outcome) => tracing::info!(
            outcome = "done",
            duration_ms = u64::try_from(outcome.duration.as_millis()).unwrap_or(u64::MAX),
            attempts = outcome.attempts,
            "migration finished"
        ),
        Err(error) => tracing::warn!(outcome = "failed", %error, "migration failed"),
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(sql: &str) -> Option<(String, String)> {
        ConcurrentIndex::find(sql).map(|i| (i.name, i.table))
    }

    #[test]
    fn concurrent_index_statements_are_recognised() {
        assert_eq!(
            find("CREATE INDEX CONCURRENTLY idx_a ON t (a)"),
            Some(("idx_a".into(), "t".into()))
        );
        assert_eq!(
            find("create unique index concurrently if not exists \"Idx\" on only app.\"T\" (a)"),
            Some(("Idx".into(), "app.\"T\"".into()))
        );
        assert_eq!(
            find("/* c */ CREATE -- x\n INDEX CONCURRENTLY IDX_B ON s.t USING btree (a)"),
            Some(("idx_b".into(), "s.t".into()))
        );
        assert_eq!(find("CREATE INDEX idx ON t (a)"), None);
        assert_eq!(find("CREATE INDEX CONCURRENTLY ON t (a)"), None);
        assert_eq!(find("SELECT 'CREATE INDEX CONCURRENTLY x ON t'"), None);
    }

    #[test]
    fn backoff_stays_within_its_bounds() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for attempt in 0..20 {
            let expected = Duration::from_millis(100)
                .saturating_mul(1 << attempt.min(16))
                .min(Duration::from_secs(1));
            let delay = backoff.delay(attempt);
            assert!(
                delay >= expected / 2 && delay <= expected,
                "{attempt}: {delay:?}"
            );
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }
}
