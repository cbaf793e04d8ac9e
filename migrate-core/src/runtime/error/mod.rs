//! Errors of the runtime. Every variant carries the data a caller needs to act on it; none
//! carries a connection string, so no password can leak through `Display` or `Debug`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use tokio_postgres::error::SqlState;

mod gate;
mod stop;

pub(crate) use gate::REMAINING_ROWS_CAP;
pub use gate::{GateFailure, Replica};
pub use stop::{AbortReason, PauseReason};

/// Who holds the migration advisory lock, read from `pg_locks` joined with `pg_stat_activity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockHolder {
    /// The holder's backend process id (`pg_terminate_backend(pid)` ends the session).
    pub pid: i32,
    /// The holder's `application_name`; empty when it set none.
    pub application_name: String,
    /// `pg_stat_activity.backend_start`, as the server renders it.
    pub backend_start: Option<String>,
    /// `pg_stat_activity.xact_start`: set while the holder is inside a transaction.
    pub xact_start: Option<String>,
    /// `pg_stat_activity.state` (`active`, `idle`, `idle in transaction`, ...).
    pub state: Option<String>,
    /// `pg_stat_activity.query_start`: when its current (or, idle, its last) query started.
    pub query_start: Option<String>,
    /// How long ago that was, on the server's clock.
    pub query_age: Option<Duration>,
    /// That query, whitespace collapsed, cut at [`HOLDER_QUERY_CHARS`] characters
    /// (`<insufficient privilege>` for another role's session without `pg_read_all_stats`).
    pub query: Option<String>,
}

/// How much of a lock holder's query is shown.
pub const HOLDER_QUERY_CHARS: i32 = 120;

/// The `pg_stat_activity a` columns [`LockHolder::from_row`] reads, in its order.
pub(crate) const HOLDER_COLUMNS: &str = "a.pid, coalesce(a.application_name, ''), \
    a.backend_start::text, a.xact_start::text, a.state, a.query_start::text, \
    (extract(epoch FROM clock_timestamp() - a.query_start) * 1000)::bigint, \
    left(regexp_replace(a.query, '\\s+', ' ', 'g'), 120)";

impl LockHolder {
    /// From a row of [`HOLDER_COLUMNS`], which every holder query selects.
    pub(crate) fn from_row(row: &tokio_postgres::Row) -> LockHolder {
        let query: Option<String> = row.get(7);
        LockHolder {
            pid: row.get(0),
            application_name: row.get(1),
            backend_start: row.get(2),
            xact_start: row.get(3),
            state: row.get(4),
            query_start: row.get(5),
            query_age: row
                .get::<_, Option<i64>>(6)
                .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0))),
            query: query.filter(|q| !q.is_empty()),
        }
    }
}

impl fmt::Display for LockHolder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "pid {} (application_name {:?}, connected since {}",
            self.pid,
            self.application_name,
            self.backend_start.as_deref().unwrap_or("unknown")
        )?;
        if let Some(xact_start) = &self.xact_start {
            write!(f, ", in a transaction since {xact_start}")?;
        }
        if let Some(state) = &self.state {
            write!(f, ", {state}")?;
        }
        if let Some(start) = &self.query_start {
            let age = self.query_age.map_or_else(String::new, |age| {
                format!(", {} ago", super::text::human(age))
            });
            let last = if self.state.as_deref() == Some("active") {
                "query"
            } else {
                "last query"
            };
            write!(f, ", {last} started {start}{age}")?;
            if let Some(query) = &self.query {
                let more = if query.chars().count() >= HOLDER_QUERY_CHARS as usize {
                    "..."
                } else {
                    ""
                };
                write!(f, ": {query}{more}")?;
            }
        }
        f.write_str(")")
    }
}

/// Where a failing statement is: `0002_email.expand.sql:14:1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatementLocation {
    /// The migration's version.
    pub version: u64,
    /// The migration's file name, e.g. `0002_email.expand.sql`.
    pub file: String,
    /// Line of the statement's first character in the file, from 1.
    pub line: u32,
    /// Column of that character, from 1.
    pub column: u32,
}

/// Why a backfill's rows cannot be filled by running it again ([`RuntimeError::BackfillRowsStuck`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StuckCause {
    /// The UPDATE ran on the rows and they still match its WHERE: the SET does not make them
    /// leave it (e.g. `SET b = a WHERE b IS NULL` where `a` is NULL, or a trigger undoing it).
    SetKeepsMatching,
    /// Their key is NULL: batches walk the key in order and never reach them.
    NullKey,
}

fn stuck_rows_problem(
    cause: StuckCause,
    rows: i64,
    keys: &[String],
    key: &str,
    version: u64,
) -> String {
    let run_again = format!(
        "then run `migrate up` (or, for a backfill already applied, `migrate backfill rerun \
         {version}`)"
    );
    match cause {
        StuckCause::SetKeepsMatching => format!(
            "{rows} row(s) still match the WHERE right after this UPDATE set them ({key} = {}), \
             so no run of this backfill can finish: the SET does not make those rows leave the \
             WHERE (a SET from a column that is NULL in them, e.g. `SET b = a` with `a` NULL, \
             leaves `b IS NULL`; or a trigger undoes it). Running `up` again fails the same way: \
             make the SET give every matching row a value that leaves the WHERE (e.g. \
             `COALESCE(a, <default>)`), or exclude such rows in the WHERE (e.g. \
             `AND a IS NOT NULL`), or write a WHERE that excludes rows already done (`WHERE \
             <column set> IS DISTINCT FROM <new value>`); {run_again}: rows done stay done",
            key_list(keys)
        ),
        StuckCause::NullKey => format!(
            "{rows} row(s) still match the WHERE and have a NULL {key}: batches walk {key} in \
             order and never reach them, so no run of this backfill can finish. Running `up` \
             again fails the same way: give those rows a {key} (SELECT * FROM <table> WHERE \
             {key} IS NULL), or leave them out (`AND {key} IS NOT NULL`) and fill them by other \
             means, or batch by a NOT NULL key (`key=` a primary key); {run_again}"
        ),
    }
}

/// `3, 7, 12`, or `3, 7, 12, 15, 20, ...` when there may be more.
pub(crate) fn key_list(keys: &[String]) -> String {
    let mut list = keys.join(", ");
    if keys.len() >= 5 {
        list.push_str(", ...");
    }
    list
}

impl fmt::Display for StatementLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// Where a compare is declared: `0002_copy.backfill.sql:2 (migration 2)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareLocation {
    /// The backfill migration declaring the compare.
    pub version: u64,
    /// Its file name.
    pub file: String,
    /// The line of its `-- migrate:compare`, when the set recorded it.
    pub line: Option<u32>,
}

impl fmt::Display for CompareLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, " (migration {})", self.version)
    }
}

/// Which table of a compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareSide {
    /// `source=`, where the values come from.
    Source,
    /// `target=`, where they must be.
    Target,
}

impl fmt::Display for CompareSide {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CompareSide::Source => "source",
            CompareSide::Target => "target",
        })
    }
}

/// A compare's key column that does not name one row per key on one side: the compare
/// pairs rows by key, so a duplicate hides behind its twin and a NULL key is never read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// Which side.
    pub side: CompareSide,
    /// That side's table.
    pub table: String,
    /// Rows whose key is NULL.
    pub null_rows: i64,
    /// Keys held by more than one row.
    pub duplicated_keys: i64,
    /// The lowest duplicated keys (as text) and their row counts.
    pub duplicates: Vec<(String, i64)>,
}

impl fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}:", self.side, self.table)?;
        if self.null_rows > 0 {
            write!(f, " {} row(s) with a NULL key", self.null_rows)?;
            if self.duplicated_keys > 0 {
                f.write_str(",")?;
            }
        }
        if self.duplicated_keys > 0 {
            let listed: Vec<String> = self
                .duplicates
                .iter()
                .map(|(key, rows)| format!("{key} ({rows} rows)"))
                .collect();
            write!(
                f,
                " {} duplicated key(s) (on more than one row): {}",
                self.duplicated_keys,
                listed.join(", ")
            )?;
            if self.duplicated_keys > self.duplicates.len() as i64 {
                f.write_str(", ...")?;
            }
        }
        Ok(())
    }
}

/// Everything the runtime can fail with. `Display` is one complete message (a server
/// error's text, SQLSTATE and detail included) and `source()` is empty, so a reporter that
/// walks the chain prints it once; `Debug` is the same text, so `?` in `main` reads well.
/// Match on the variants for decisions, [`RuntimeError::is_transient`] to choose between
/// retrying and alerting, [`RuntimeError::sql_state`] and [`RuntimeError::db_error`] for the
/// server's error.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// A configured name (history table, schema) is not a plain identifier.
    #[error(
        "invalid {what} `{value}`: each dot-separated part must match [A-Za-z_][A-Za-z0-9_]{{0,62}}"
    )]
    InvalidIdentifier {
        /// What the name is for, e.g. `history table name`.
        what: &'static str,
        /// The name as configured.
        value: String,
    },

    /// A version does not fit the history table's `bigint`.
    #[error("migration version {version} is larger than the largest bigint (9223372036854775807)")]
    VersionOutOfRange {
        /// The version, from the migration's file name.
        version: u64,
    },

    /// The set `migrations!()` embedded does not decode (damaged, or not the macro's).
    #[error(transparent)]
    EmbeddedSet(#[from] crate::migration::packed::PackError),

    /// Opening the connection failed: the runtime never connects itself, this variant lets
    /// a caller send a [`connect`](super::connect()) failure through the same `?`.
    #[error(transparent)]
    Connect(#[from] ConnectError),

    /// Another migrator kept the advisory lock for longer than `lock_wait`.
    #[error(
        "another migration run holds the migration lock (advisory lock {key}); gave up after \
         {}; holder: {}",
        super::text::human(*waited),
        holder.as_ref().map_or_else(|| "unknown (it may just have released it)".to_owned(), ToString::to_string)
    )]
    LockTimeout {
        /// The advisory lock key, see [`lock_key`](super::lock_key).
        key: i64,
        /// How long this run tried to take the lock.
        waited: Duration,
        /// The session holding the lock when this run gave up; `None` when none was seen
        /// (it may have released the lock just then). Boxed to keep `RuntimeError` small.
        holder: Option<Box<LockHolder>>,
    },

    /// An applied migration's file changed since it was applied.
    #[error(
        "migration {version} ({file}) was changed after it was applied: the history records \
         checksum {expected}, the file now has {found}; restore the file, or write a new \
         migration for the change"
    )]
    ChecksumMismatch {
        /// The migration's version.
        version: u64,
        /// The migration's file name.
        file: String,
        /// The checksum recorded in the history table when the migration was applied.
        expected: String,
        /// The checksum of the migration as this binary knows it.
        found: String,
    },

    /// The database has applied versions this binary does not contain.
    #[error("{}", unknown_applied_message(.versions, .files_on_disk_lacking_in_binary))]
    UnknownApplied {
        /// The applied versions the set lacks.
        versions: Vec<u64>,
        /// `.sql` files of those versions in `Migrations::dir`, when it exists at run time.
        files_on_disk_lacking_in_binary: Vec<PathBuf>,
    },

    /// The configured history table does not exist, but another table of this database has
    /// its shape: the configured name is probably a typo.
    #[error(
        "history table {configured} does not exist, but {} {} a history table of ours: a typo \
         in the history table's name would start an empty history and apply every migration \
         again, so nothing was done; pass the right name (`--history-table`, \
         MigratorConfig::history_table), or, to keep a separate history on purpose, create it \
         first: CREATE TABLE {configured} (LIKE {} INCLUDING ALL)",
        found.join(", "),
        if found.len() == 1 { "is" } else { "are" },
        found[0]
    )]
    OtherHistoryTable {
        /// The configured table, quoted.
        configured: String,
        /// Tables with the history table's columns, `schema.table`, quoted where needed.
        found: Vec<String>,
    },

    /// The configured history table exists without our columns: another tool's history
    /// (golang-migrate's and dbmate's are also called `schema_migrations`) or another table.
    #[error(
        "history table {configured} is not ours: it has the columns ({}){}, not migrate's \
         (version, name, phase, checksum, ...), so nothing was done; configure another one \
         (`--history-table migrate_history`, MigratorConfig::history_table){}",
        columns.join(", "),
        tool.map_or_else(String::new, |tool| format!(" of {tool}'s history table")),
        tool.map_or_else(String::new, |tool| format!(
            ", then adopt {tool}'s history with `migrate import --from {tool}`"
        ))
    )]
    NotOurHistoryTable {
        /// The configured table, quoted.
        configured: String,
        /// Its columns, in order.
        columns: Vec<String>,
        /// The tool whose history table has these columns, when recognised.
        tool: Option<&'static str>,
    },

    /// Pending migrations are older than the newest applied one.
    #[error(
        "pending migrations {pending:?} are older than the newest applied migration \
         {newest_applied}; renumber them after {newest_applied}, or allow out-of-order runs \
         (`--allow-out-of-order` in the CLI, MigratorConfig::allow_out_of_order in the library)"
    )]
    OutOfOrder {
        /// The pending versions older than `newest_applied`, ascending.
        pending: Vec<u64>,
        /// The newest version in the history table.
        newest_applied: u64,
    },

    /// `down` would need to revert migrations that have no `-- migrate:down` part.
    #[error(
        "cannot revert migrations {versions:?}: they have no `-- migrate:down` part; nothing \
         was reverted"
    )]
    NoDownPart {
        /// The migrations to revert that have no down part, ascending.
        versions: Vec<u64>,
    },

    /// The database applied some of the versions a squash replaces but not all: the squash
    /// would create again what those created, and cannot stand for the rest.
    #[error(
        "migration {squash} squashes versions this database applied only in part (missing: \
         {missing:?}): apply them with the release that still has their files, then run this \
         one; nothing was done"
    )]
    PartlySquashed {
        /// The squash migration.
        squash: u64,
        /// Replaced versions with no history row.
        missing: Vec<u64>,
    },

    /// A statement of a migration failed.
    #[error("{location}: migration {} failed after {attempts} attempt(s): {}", location.version, db_error_text(.error))]
    Statement {
        /// The failing statement's file, line and column.
        location: StatementLocation,
        /// How many times the migration (transactional) or the statement (autocommit) ran:
        /// more than 1 when earlier attempts hit `lock_timeout` and were retried.
        attempts: u32,
        /// The server's (or driver's) error; [`RuntimeError::sql_state`] gives its SQLSTATE.
        error: tokio_postgres::Error,
    },

    /// A statement kept failing with `lock_timeout` (SQLSTATE 55P03) until the retries ran out.
    #[error(
        "{location}: migration {} could not take its locks within lock_timeout in {attempts} \
         attempts; the tables it touches are busy (long transactions?): {}{}",
        location.version, db_error_text(.error), blockers_text(.blockers)
    )]
    LockRetriesExhausted {
        /// The statement that could not take its locks.
        location: StatementLocation,
        /// Attempts made: the first one and every retry ([`MigratorConfig::lock_retries`]).
        ///
        /// [`MigratorConfig::lock_retries`]: super::MigratorConfig::lock_retries
        attempts: u32,
        /// The last attempt's `lock_timeout` error (SQLSTATE 55P03).
        error: tokio_postgres::Error,
        /// Other sessions holding locks on the tables the statement locks, oldest
        /// transaction first, read right after the last attempt (at most 3; empty when
        /// none was seen or the statement's tables are not known).
        blockers: Vec<LockHolder>,
    },

    /// `CREATE INDEX CONCURRENTLY` finished but left the index INVALID.
    #[error(
        "{location}: index {index} is INVALID after CREATE INDEX CONCURRENTLY; the next run \
         drops and rebuilds it"
    )]
    InvalidIndex {
        /// The `CREATE INDEX CONCURRENTLY` statement.
        location: StatementLocation,
        /// The index name, as the catalog stores it.
        index: String,
    },

    /// A backfill statement cannot be batched, or did not converge.
    #[error("{location}: backfill of migration {}: {problem}", location.version)]
    Backfill {
        /// The backfill statement.
        location: StatementLocation,
        /// What is wrong, and what to do about it.
        problem: String,
    },

    /// Rows no run of the backfill can fill as the statement is written: the UPDATE ran on
    /// them and they still match its WHERE, or their key is NULL. Running `up` again would
    /// fail the same way; the statement (or the rows) must change first.
    #[error(
        "{location}: backfill of migration {}: {}",
        location.version,
        stuck_rows_problem(*cause, *rows, keys, key_column, location.version)
    )]
    BackfillRowsStuck {
        /// The backfill statement.
        location: StatementLocation,
        /// Why batches cannot fill them.
        cause: StuckCause,
        /// How many were found: the rows of the batch that found them, or every row with a
        /// NULL key.
        rows: i64,
        /// The first few of their keys, in key order (empty for NULL keys).
        keys: Vec<String>,
        /// The directive's `key=` column.
        key_column: String,
    },

    /// A re-run ([`Migrator::rerun_backfill`](super::Migrator::rerun_backfill)) names a
    /// version that is not a backfill migration of the set.
    #[error("version {version} is not a backfill migration of this set")]
    NotABackfill {
        /// The version asked for.
        version: u64,
    },

    /// A re-run names a backfill that is not applied: `up` runs it, a re-run is for an
    /// applied one.
    #[error(
        "backfill {file} is not applied, so there is nothing to re-run: `migrate up --to \
         {version}` runs it (and resumes it, if a run stopped)"
    )]
    BackfillNotApplied {
        /// The backfill migration.
        version: u64,
        /// Its file name.
        file: String,
    },

    /// A stop signal aborted a backfill (a critical replica lag, a pause past its limit); its
    /// progress is stored: the next `up` resumes it.
    #[error(
        "{location}: backfill of migration {} aborted, its progress kept (the next up resumes it): {reason}",
        location.version
    )]
    BackfillAborted {
        /// The backfill statement.
        location: StatementLocation,
        /// Which signal, at what reading.
        reason: Box<AbortReason>,
    },

    /// A compare (`migrate verify --compare`) cannot run: no compare declared, or its
    /// definition does not fit the tables.
    #[error("compare declared at {at}: {problem}")]
    Compare {
        /// The compare's directive.
        at: CompareLocation,
        /// What is wrong, and what to do about it.
        problem: String,
    },

    /// A compare's key does not name one row per key on a side: the compare cannot judge
    /// the copy (a duplicate hides behind its twin, a NULL key is never read).
    #[error(
        "compare declared at {at}: key {key} must be unique and NOT NULL on both sides; {}. \
         Declare a key that is (a primary key, or NOT NULL with a unique index), or remove \
         the duplicate and NULL-key rows, then compare again",
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
    )]
    CompareKey {
        /// The compare's directive.
        at: CompareLocation,
        /// The key column.
        key: String,
        /// One entry per side with a problem.
        problems: Vec<KeyProblem>,
    },

    /// A compare (or a reconcile with its mapping) failed while it ran: `error` says how.
    #[error("compare declared at {at}: {error}")]
    CompareFailed {
        /// The compare's directive.
        at: CompareLocation,
        /// What failed.
        error: Box<RuntimeError>,
    },

    /// A contract gate refused a contract migration before any of its statements ran.
    #[error("contract migration {version} ({file}) refused, nothing of it ran: {failure}")]
    ContractGate {
        /// The contract migration's version.
        version: u64,
        /// The contract migration's file name.
        file: String,
        /// Boxed: the replica variants would make every `RuntimeError` large.
        failure: Box<GateFailure>,
    },

    /// The server did not answer within the client-side bound (statement_timeout or lock_timeout plus `network_timeout`); the
    /// connection may still have a request in flight and must not be reused.
    #[error(
        "no answer from PostgreSQL within {} while {what}: the server or the network stopped \
         responding (a hung host, a stalled connection pooler, a dropped network path); the \
         connection was abandoned, nothing more was sent. Check the server, then run again \
         (what completed is recorded in the history table); the bound is statement_timeout \
         or lock_timeout plus network_timeout (`--network-timeout` in the CLI)",
        super::text::human(*waited)
    )]
    NoAnswer {
        /// What the runtime was waiting for, e.g. `reading the history table`.
        what: &'static str,
        /// The client-side bound that passed.
        waited: Duration,
    },

    /// A setting of [`super::MigratorConfig`] is out of its range.
    #[error("invalid setting {setting} = {value}: {reason}")]
    InvalidSetting {
        /// The field of [`MigratorConfig`](super::MigratorConfig), e.g. `lock_timeout`.
        setting: &'static str,
        /// Its value, as `Debug` shows it.
        value: String,
        /// The accepted range, and why.
        reason: &'static str,
    },

    /// A query of the runtime itself (session settings, history table, lock) failed.
    #[error("{action}: {}", db_error_text(.error))]
    Database {
        /// What the runtime was doing, e.g. `taking the migration advisory lock`.
        action: &'static str,
        /// The server's (or driver's) error.
        error: tokio_postgres::Error,
    },

    /// A run (`up`, `down`, a dry run) that had completed part of its work stopped on
    /// `error`: a [`Failed`] passed through `?` into a `RuntimeError`. A run that had done
    /// nothing converts to its `error` alone, so this variant always has something in
    /// `completed`. [`RuntimeError::stopped_by`] is `error`, for matching on why it stopped;
    /// `is_transient`, `sql_state` and `db_error` answer for it.
    #[error("{error} ({}: {completed})", completed.label())]
    AfterPartialRun {
        /// Why the run stopped.
        error: Box<RuntimeError>,
        /// What it completed before (committed and recorded in the history table): an
        /// [`UpReport`](super::UpReport), a [`DownReport`](super::DownReport) or a
        /// [`Plan`](super::Plan).
        completed: Box<dyn PartialReport + Send + Sync>,
    },
}

impl<R: PartialReport + Send + Sync + 'static> From<Failed<R>> for RuntimeError {
    /// `failed.error` when nothing was completed, else [`RuntimeError::AfterPartialRun`]
    /// keeping the report.
    fn from(failed: Failed<R>) -> RuntimeError {
        if failed.report.nothing_done() {
            failed.error
        } else {
            RuntimeError::AfterPartialRun {
                error: Box::new(failed.error),
                completed: Box::new(failed.report),
            }
        }
    }
}

impl fmt::Debug for RuntimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Debug for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// SQLSTATEs after which the same run, started again a little later, can succeed.
fn transient_state(state: &SqlState) -> bool {
    [
        SqlState::T_R_SERIALIZATION_FAILURE,
        SqlState::T_R_DEADLOCK_DETECTED,
        SqlState::LOCK_NOT_AVAILABLE,
        SqlState::ADMIN_SHUTDOWN,
        SqlState::CRASH_SHUTDOWN,
        SqlState::CANNOT_CONNECT_NOW,
        SqlState::TOO_MANY_CONNECTIONS,
    ]
    .contains(state)
        || state.code().starts_with("08")
}

impl RuntimeError {
    /// Whether running again later can succeed without changing anything: lock waits that
    /// ran out (table locks, the migration lock), serialization failures and deadlocks, a
    /// server restarting or refusing connections, a lost connection or a server that
    /// stopped answering, a contract gate that only needs time (stabilisation, replica
    /// lag). False for what needs a person: drift, missing files, invalid settings, a
    /// statement the server rejects, a backfill or gate that needs data fixed.
    pub fn is_transient(&self) -> bool {
        match self.stopped_by() {
            RuntimeError::LockTimeout { .. }
            | RuntimeError::LockRetriesExhausted { .. }
            | RuntimeError::NoAnswer { .. }
            | RuntimeError::BackfillAborted { .. } => true,
            RuntimeError::ContractGate { failure, .. } => matches!(
                failure.as_ref(),
                GateFailure::Stabilising { .. }
                    | GateFailure::ReplicaLag { .. }
                    | GateFailure::RunningQueryBreaks { .. }
            ),
            RuntimeError::Statement { error, .. } | RuntimeError::Database { error, .. } => {
                error.is_closed() || error.code().is_some_and(transient_state)
            }
            RuntimeError::Connect(ConnectError::Connect { error, .. }) => {
                error.as_db_error().is_none() || error.code().is_some_and(transient_state)
            }
            RuntimeError::Connect(ConnectError::Timeout { .. }) => true,
            RuntimeError::CompareFailed { error, .. } => error.is_transient(),
            _ => false,
        }
    }

    /// The server's (or driver's) error behind this one, if any.
    pub fn db_error(&self) -> Option<&tokio_postgres::Error> {
        match self.stopped_by() {
            RuntimeError::Statement { error, .. }
            | RuntimeError::LockRetriesExhausted { error, .. }
            | RuntimeError::Database { error, .. }
            | RuntimeError::Connect(ConnectError::Connect { error, .. }) => Some(error),
            RuntimeError::CompareFailed { error, .. } => error.db_error(),
            _ => None,
        }
    }

    /// The SQLSTATE of the underlying server error, if any.
    pub fn sql_state(&self) -> Option<&SqlState> {
        match self.stopped_by() {
            RuntimeError::Statement { error, .. }
            | RuntimeError::LockRetriesExhausted { error, .. }
            | RuntimeError::Database { error, .. } => error.code(),
            RuntimeError::Connect(ConnectError::Connect { error, .. }) => error.code(),
            RuntimeError::CompareFailed { error, .. } => error.sql_state(),
            _ => None,
        }
    }

    /// The error that stopped the run: the inner `error` of
    /// [`RuntimeError::AfterPartialRun`], else this one. Match on it to decide.
    pub fn stopped_by(&self) -> &RuntimeError {
        match self {
            RuntimeError::AfterPartialRun { error, .. } => error.stopped_by(),
            error => error,
        }
    }

    /// What the run had completed before it stopped, when it had completed something
    /// ([`RuntimeError::AfterPartialRun`]).
    pub fn completed(&self) -> Option<&(dyn PartialReport + Send + Sync)> {
        match self {
            RuntimeError::AfterPartialRun { completed, .. } => Some(completed.as_ref()),
            _ => None,
        }
    }

    pub(crate) fn database(action: &'static str) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |error| RuntimeError::Database { action, error }
    }
}

/// tokio-postgres renders a server error as just "db error"; show the server's message,
/// its SQLSTATE and detail.
pub(crate) fn db_error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => {
            let mut text = format!("{} (SQLSTATE {})", db.message(), db.code().code());
            if let Some(detail) = db.detail() {
                text.push_str(&format!("; detail: {detail}"));
            }
            text
        }
        None => error.to_string(),
    }
}

/// Why a connection could not be opened: the driver's words, then every cause under them
/// (tokio-postgres's `Display` is only "error connecting to server"; the `io::Error` with
/// "Connection refused" or the resolver's message is its source), then what to do for the
/// failures a user meets first.
fn connect_failure_text(error: &tokio_postgres::Error) -> String {
    if error.as_db_error().is_some() {
        return db_error_text(error);
    }
    let mut text = error.to_string();
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        causes.push(cause_text);
        source = cause.source();
    }
    let said = |words: &str| causes.iter().any(|c| c.contains(words));
    if said("password missing") {
        text.push_str(
            " (the server asks for a password and none was given: put it in the connection \
             string, PGPASSWORD or DB_PASSWORD)",
        );
    } else if said("server does not support TLS") {
        text.push_str(
            " (sslmode require, verify-ca and verify-full insist on TLS; this server has TLS \
             off: enable ssl on it, or connect with sslmode=prefer or disable)",
        );
    }
    text
}

fn blockers_text(blockers: &[LockHolder]) -> String {
    if blockers.is_empty() {
        return String::new();
    }
    let list: Vec<String> = blockers.iter().map(ToString::to_string).collect();
    format!(
        "; sessions holding locks on its tables: {} (pg_terminate_backend(pid) ends one, if \
         it is safe to)",
        list.join(", ")
    )
}

fn unknown_applied_message(versions: &[u64], files: &[PathBuf]) -> String {
    let mut text = format!(
        "the database has applied migrations {versions:?} that this migration set does not \
         contain"
    );
    if files.is_empty() {
        text.push_str(
            "; they were applied by a newer release, or their files were deleted (to proceed \
             anyway: `--ignore-missing` in the CLI, MigratorConfig::ignore_missing in the \
             library)",
        );
    } else {
        let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
        text.push_str(&format!(
            "; the binary was built before these files were added: {}: rebuild it",
            names.join(", ")
        ));
    }
    text
}

/// Opening the dedicated connection failed. Never contains the connection string. Like
/// [`RuntimeError`], `Display` is the whole message and `Debug` the same text.
#[derive(thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The connection string is malformed; `reason` names the part, never its value.
    #[error("invalid connection string: {}", reason.trim_start_matches("invalid connection string: "))]
    InvalidUrl {
        /// What is wrong, naming the part.
        reason: String,
    },
    /// The `sslrootcert` file cannot be read, or holds no PEM certificate.
    #[error("reading the root certificate {path}: {reason}")]
    RootCertificate {
        /// The `sslrootcert` path.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// The TLS client configuration could not be built.
    #[error("setting up TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// The server could not be reached, refused the connection, or rejected the TLS
    /// handshake or the startup (authentication, unknown database, too many connections).
    ///
    /// `Display` says where (`target`) and why, the OS's or resolver's cause included
    /// (`Connection refused`, `failed to lookup address information`), since `source()` is
    /// empty like every variant's.
    #[error("connecting to PostgreSQL at {target}: {}", connect_failure_text(.error))]
    Connect {
        /// Where it tried: `host:port` of each host (`[::1]:5432`), or the Unix socket's
        /// path (`/run/postgresql/.s.PGSQL.5432`); never the user or the password.
        target: String,
        /// The driver's error; a server's rejection has its SQLSTATE.
        error: tokio_postgres::Error,
    },
    /// The connection goes through a pooler in transaction or statement mode (PgBouncer,
    /// Odyssey, RDS Proxy, ...): consecutive statements of this one client ran on different
    /// server sessions, or two clients shared one. A session advisory lock, session settings
    /// and prepared statements do not survive that, so nothing is run.
    #[error(
        "the connection goes through a connection pooler in transaction or statement mode \
         ({evidence}): a session advisory lock does not protect anything there (each \
         transaction may run on another server connection) and prepared statements of \
         concurrent runners collide, so nothing was run. Connect directly to PostgreSQL, or \
         through the pooler's session mode (PgBouncer: a database entry or port with \
         pool_mode = session)"
    )]
    TransactionPooler {
        /// What the probe saw, e.g. "two connections shared server process 4242".
        evidence: String,
    },
    /// The connection, TLS handshake and startup did not finish within the connect timeout.
    #[error(
        "connecting to PostgreSQL at {target}: no complete answer within {}s (connect_timeout; \
         the TCP connection, the TLS handshake and the startup exchange together): is it a \
         PostgreSQL server, and is it responding?",
        limit.as_secs_f64()
    )]
    Timeout {
        /// Where it tried, as in [`ConnectError::Connect`].
        target: String,
        /// The bound that passed: `connect_timeout` times the number of hosts.
        limit: Duration,
    },
}

/// What `up` or `down` had completed when it failed.
pub trait PartialReport: fmt::Display + fmt::Debug {
    /// Nothing was completed: the failure's message then leaves the report out.
    fn nothing_done(&self) -> bool;
    /// How the failure's message introduces the report.
    fn label(&self) -> &'static str {
        "completed before the failure"
    }
}

/// `up` or `down` failed; `report` lists what was completed before the failure (those
/// migrations are committed and recorded in the history table).
///
/// Its `Display` is the whole message, the error's and what was completed, and `source()`
/// is empty: a reporter walking the chain prints it once. `Debug` is the same text, so
/// `fn main() -> Result<(), Box<dyn Error>>` with `?` prints it readably.
#[derive(thiserror::Error)]
#[error("{error}{}", partial_suffix(.report))]
pub struct Failed<R: PartialReport> {
    /// What was completed before the failure.
    pub report: R,
    /// Why the run stopped.
    pub error: RuntimeError,
}

impl<R: PartialReport> fmt::Debug for Failed<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<R: PartialReport> Failed<R> {
    /// Why the run stopped; [`RuntimeError::is_transient`] tells a retry from an alert.
    pub fn error(&self) -> &RuntimeError {
        &self.error
    }

    /// The error alone, dropping the report.
    pub fn into_error(self) -> RuntimeError {
        self.error
    }
}

fn partial_suffix(report: &impl PartialReport) -> String {
    if report.nothing_done() {
        String::new()
    } else {
        format!(" ({}: {report})", report.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_problem_names_the_compare_the_side_the_keys_and_the_counts() {
        let error = RuntimeError::CompareKey {
            at: CompareLocation {
                version: 2,
                file: "0002_copy.backfill.sql".into(),
                line: Some(2),
            },
            key: "k".into(),
            problems: vec![KeyProblem {
                side: CompareSide::Target,
                table: "modern".into(),
                null_rows: 2,
                duplicated_keys: 11,
                duplicates: vec![("5".into(), 2), ("7".into(), 3)],
            }],
        };
        let message = error.to_string();
        assert!(
            message.starts_with(
                "compare declared at 0002_copy.backfill.sql:2 (migration 2): key k must be \
                 unique and NOT NULL on both sides; target modern: 2 row(s) with a NULL key, \
                 11 duplicated key(s) (on more than one row): 5 (2 rows), 7 (3 rows), ...."
            ),
            "{message}"
        );
    }
}
