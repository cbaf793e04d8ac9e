//! What PostgreSQL really does for each statement, observed on a (scratch) database: the
//! locks the statement's backend was granted on each relation, the relations it rewrote
//! (their file changed), the tables it read in full (`seq_scan` grew), next to what
//! [`crate::lock_analysis`] predicted, with every disagreement named.
//! `migrate check` uses it, and a test compares it with the lock analysis on every kind
//! of statement.
//!
//! How each fact is read, deterministically:
//!
//! - **In a transaction** (every statement PostgreSQL accepts in a transaction block, which is
//!   all of a transactional part and most autocommit ones): the statements of a
//!   transactional part run in one `BEGIN ... COMMIT` as the runtime runs them; an autocommit
//!   statement runs alone in its own. After each statement, before the transaction ends, the
//!   same session reads `pg_locks` for its own pid (locks are held to the end of the
//!   transaction), `pg_class.relfilenode` (it sees its own changes) and
//!   `pg_stat_xact_user_tables.seq_scan` (the counts of the current transaction, not yet
//!   flushed to the shared statistics). A lock is the statement's when its (relation, mode)
//!   row is new; a mode the transaction already held from an earlier statement is listed
//!   apart ("already held"): PostgreSQL records each mode once per transaction.
//! - **While it waits** (statements that refuse a transaction block: `CREATE/DROP INDEX
//!   CONCURRENTLY`, `REINDEX CONCURRENTLY`, `VACUUM`, ...; their locks end with the
//!   statement): a second session first takes ROW EXCLUSIVE on every table of the database
//!   in an open transaction. Such a statement then always stops to wait for it: either for
//!   the lock itself (it needs SHARE or stronger) or, for the concurrent forms, for the
//!   observer's transaction to end (`WaitForLockers` between their phases, after their
//!   table lock is granted). The observer waits until the statement's backend shows an
//!   ungranted lock in `pg_locks`, records what it holds and what it asks for at that
//!   moment, then commits and lets it finish. A statement that needs only weaker locks and
//!   never waits (plain `VACUUM`) finishes first: its locks are then reported as not seen.
//!   The full scans come from `pg_stat_user_tables` read once the session's counts are sent
//!   (15+: `pg_stat_force_next_flush()`; 14: a sentinel the collector shows, see
//!   `flush_stats`).
//!
//! Only relations that existed before the statement count: a relation it creates is
//! invisible to other sessions until commit.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use tokio_postgres::Client;
use tokio_postgres::error::SqlState;

use crate::classify;
use crate::lock_analysis::{self, DeclaredSchema, LockAnalysis, LockMode, TableWork};
use crate::migration::{Section, Statement, TransactionMode};

/// How long the observer waits for a statement to start waiting or to finish.
const WAIT_BOUND: Duration = Duration::from_secs(120);
/// Pause between two looks at `pg_locks` while a statement runs.
const POLL: Duration = Duration::from_millis(5);
/// How long a session's statistics may take to reach 14's collector (sent every 500 ms).
const STATS_BOUND: Duration = Duration::from_secs(30);
/// Pause between two looks at 14's collector.
const STATS_POLL: Duration = Duration::from_millis(20);

/// Why an observation could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ObserveError {
    /// A query of the observation itself (not of a migration statement) failed.
    #[error("observing {what}: {source}")]
    Query {
        /// What was being read.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The statement neither finished nor waited within the bound.
    #[error("the statement at line {line} neither finished nor waited within {seconds} s")]
    NoProgress {
        /// Its line.
        line: u32,
        /// The bound.
        seconds: u64,
    },
    /// 14's statistics collector did not show this session's counts within the bound
    /// (it may drop messages under load).
    #[error("the statistics collector did not receive this session's counts within {seconds} s")]
    StatsNotSent {
        /// The bound.
        seconds: u64,
    },
}

fn query(what: &'static str) -> impl FnOnce(tokio_postgres::Error) -> ObserveError {
    move |source| ObserveError::Query { what, source }
}

/// The kind of a relation, from `pg_class.relkind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RelationKind {
    /// `r`
    Table,
    /// `p`
    PartitionedTable,
    /// `i`, `I`
    Index,
    /// `S`
    Sequence,
    /// `v`
    View,
    /// `m`
    MaterializedView,
    /// Anything else (foreign tables, composite types, ...).
    Other,
}

impl RelationKind {
    fn from_relkind(kind: &str) -> RelationKind {
        match kind {
            "r" => RelationKind::Table,
            "p" => RelationKind::PartitionedTable,
            "i" | "I" => RelationKind::Index,
            "S" => RelationKind::Sequence,
            "v" => RelationKind::View,
            "m" => RelationKind::MaterializedView,
            _ => RelationKind::Other,
        }
    }

    /// Tables and materialized views: what the application reads and writes.
    pub fn holds_rows(self) -> bool {
        matches!(
            self,
            RelationKind::Table | RelationKind::PartitionedTable | RelationKind::MaterializedView
        )
    }
}

/// A lock mode the statement's backend held (or asked for) on a relation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ObservedLock {
    /// `schema.name`, quoted where needed.
    pub relation: String,
    /// Its kind.
    pub kind: RelationKind,
    /// For an index, its table.
    pub table: Option<String>,
    /// The mode.
    pub mode: LockMode,
    /// False for the one lock a waiting statement asked for and did not have yet.
    pub granted: bool,
}

/// How the locks of a statement were seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LockObservation {
    /// Read by the statement's own session before its transaction ended.
    InTransaction,
    /// Read by a second session while the statement waited for it.
    WhileWaiting,
    /// The statement finished without waiting: its locks ended with it, unseen.
    NotSeen,
}

/// A disagreement between the prediction and the observation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Disagreement {
    /// The relation was locked, in another mode than predicted.
    Mode {
        /// The relation.
        relation: String,
        /// What `plan` said.
        predicted: LockMode,
        /// The strongest mode observed.
        observed: LockMode,
    },
    /// The predicted lock was not taken.
    NotTaken {
        /// The relation as predicted.
        relation: String,
        /// What `plan` said.
        predicted: LockMode,
    },
    /// A lock that blocks writes on a table `plan` did not name.
    Unpredicted {
        /// The relation.
        relation: String,
        /// The mode observed.
        observed: LockMode,
    },
    /// The whole-table work differs.
    Work {
        /// What `plan` said.
        predicted: TableWork,
        /// What was seen.
        observed: TableWork,
    },
}

impl std::fmt::Display for Disagreement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Disagreement::Mode {
                relation,
                predicted,
                observed,
            } => write!(
                f,
                "{relation}: plan says {predicted}, PostgreSQL took {observed}"
            ),
            Disagreement::NotTaken {
                relation,
                predicted,
            } => write!(
                f,
                "{relation}: plan says {predicted}, PostgreSQL took no lock"
            ),
            Disagreement::Unpredicted { relation, observed } => {
                write!(
                    f,
                    "{relation}: PostgreSQL took {observed}, plan says nothing"
                )
            }
            Disagreement::Work {
                predicted,
                observed,
            } => write!(
                f,
                "table work: plan says {}, PostgreSQL did {}",
                predicted.as_str(),
                observed.as_str()
            ),
        }
    }
}

/// What one statement did, beside what was predicted.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StatementEffects {
    /// The statement's line in its file.
    pub line: u32,
    /// Its column.
    pub column: u32,
    /// Its text.
    pub sql: String,
    /// How its locks were seen.
    pub observed_by: LockObservation,
    /// The modes it took on relations that existed before it (new (relation, mode) rows).
    pub locks: Vec<ObservedLock>,
    /// Modes the transaction already held from earlier statements, on relations the
    /// prediction names: the statement may need them again; PostgreSQL shows each once.
    pub already_held: Vec<ObservedLock>,
    /// Relations that got a new file (`relfilenode` changed, or the name now belongs to a
    /// new relation of the same kind, as after `REINDEX CONCURRENTLY`).
    pub rewritten: Vec<String>,
    /// Tables read in full (`seq_scan` grew), rewritten ones excluded.
    pub scanned: Vec<String>,
    /// The work observed: rewrite, else scan, else none.
    pub work: TableWork,
    /// What `lock_analysis` predicted.
    pub predicted: LockAnalysis,
    /// Where prediction and observation differ.
    pub disagreements: Vec<Disagreement>,
    /// Why facts were not compared (data- or planner-dependent), if so.
    pub not_compared: Option<String>,
}

/// What a section did: one entry per statement run, and the error that stopped it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SectionEffects {
    /// The statements run, in order (all of them unless one failed).
    pub statements: Vec<StatementEffects>,
    /// The failing statement's error; the section was rolled back (transactional) or
    /// stopped there (autocommit).
    pub error: Option<String>,
}

/// One user relation in the catalog.
#[derive(Debug, Clone)]
struct Relation {
    name: String,
    schema: String,
    relname: String,
    kind: RelationKind,
    file: u32,
    table: Option<String>,
}

type Catalog = BTreeMap<u32, Relation>;

const CATALOG_QUERY: &str = "SELECT c.oid, format('%I.%I', n.nspname, c.relname), n.nspname::text, \
     c.relname::text, c.relkind::text, c.relfilenode, \
     (SELECT format('%I.%I', tn.nspname, t.relname) FROM pg_index x \
        JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace tn ON tn.oid = t.relnamespace \
       WHERE x.indexrelid = c.oid) \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') \
       AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'";

async fn catalog(client: &Client) -> Result<Catalog, ObserveError> {
    let rows = client
        .query(CATALOG_QUERY, &[])
        .await
        .map_err(query("the catalog"))?;
    Ok(rows
        .iter()
        .map(|row| {
            let oid: u32 = row.get(0);
            let kind: String = row.get(4);
            (
                oid,
                Relation {
                    name: row.get(1),
                    schema: row.get(2),
                    relname: row.get(3),
                    kind: RelationKind::from_relkind(&kind),
                    file: row.get(5),
                    table: row.get(6),
                },
            )
        })
        .collect())
}

/// (relation oid, mode, granted) of `pid`'s relation locks in this database, and whether it
/// waits for any lock at all (relation or not), from one reading of `pg_locks`.
async fn locks_of(
    client: &Client,
    pid: i32,
) -> Result<(Vec<(u32, LockMode, bool)>, bool), ObserveError> {
    let rows = client
        .query(
            "SELECT relation, mode, granted, locktype = 'relation' \
               AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) \
             FROM pg_locks WHERE pid = $1",
            &[&pid],
        )
        .await
        .map_err(query("pg_locks"))?;
    let waiting = rows.iter().any(|row| !row.get::<_, bool>(2));
    let locks = rows
        .iter()
        .filter(|row| row.get::<_, Option<bool>>(3) == Some(true))
        .filter_map(|row| {
            let mode: String = row.get(1);
            let mode = lock_mode(&mode)?;
            Some((row.get(0), mode, row.get(2)))
        })
        .collect();
    Ok((locks, waiting))
}

/// `AccessExclusiveLock` (as `pg_locks.mode` spells it) to a [`LockMode`].
fn lock_mode(name: &str) -> Option<LockMode> {
    let spelled = name.strip_suffix("Lock")?;
    LockMode::ALL.into_iter().find(|mode| {
        mode.as_str()
            .split(' ')
            .map(|w| {
                let mut chars = w.chars();
                chars.next().map_or(String::new(), |c| {
                    c.to_string() + &chars.as_str().to_ascii_lowercase()
                })
            })
            .collect::<String>()
            == spelled
    })
}

async fn seq_scans(
    client: &Client,
    in_transaction: bool,
) -> Result<BTreeMap<u32, i64>, ObserveError> {
    let view = if in_transaction {
        "SELECT relid, seq_scan FROM pg_stat_xact_user_tables"
    } else {
        "SELECT relid, seq_scan FROM pg_stat_user_tables"
    };
    let rows = client.query(view, &[]).await.map_err(query("seq_scan"))?;
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// Every count of this session so far visible in `pg_stat_user_tables`, on every major.
///
/// 15+ keeps statistics in shared memory and flushes a backend's counts at most once a second
/// unless `pg_stat_force_next_flush()` asks for it at the next transaction end
/// (<https://www.postgresql.org/docs/15/monitoring-stats.html#MONITORING-STATS-FUNCS-TABLE>).
/// 14 sends them to the statistics collector at a transaction end at most every 500 ms
/// (PGSTAT_STAT_INTERVAL), and has no way to force it: there the session calls a sentinel
/// function (its call counted with `track_functions`), then ends transactions until the
/// collector shows that call. A backend sends its table counts before its function counts
/// (`pgstat_report_stat`), one message after the other to the one collector, so once the call
/// shows, every earlier count of the session does too
/// (<https://www.postgresql.org/docs/14/monitoring-stats.html#MONITORING-STATS-VIEWS>).
async fn flush_stats(client: &Client) -> Result<(), ObserveError> {
    let version: i32 = client
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .map_err(query("the server version"))?
        .get(0);
    if version >= 150_000 {
        return client
            .batch_execute("SELECT pg_stat_force_next_flush()")
            .await
            .map_err(query("flushing statistics"));
    }
    // A temporary function: the database being observed gets no object, and the catalog
    // query leaves pg_temp out. `track_functions` needs a superuser, as the scratch role is.
    client
        .batch_execute(
            "SET track_functions = 'pl'; \
             CREATE OR REPLACE FUNCTION pg_temp.migrate_stats_sentinel() RETURNS void \
             LANGUAGE plpgsql AS $$BEGIN END$$",
        )
        .await
        .map_err(query("the statistics sentinel"))?;
    let shown = "SELECT coalesce(pg_stat_get_function_calls(\
                 'pg_temp.migrate_stats_sentinel()'::regprocedure), 0)";
    let before: i64 = client
        .query_one(shown, &[])
        .await
        .map_err(query("the statistics sentinel"))?
        .get(0);
    client
        .batch_execute("SELECT pg_temp.migrate_stats_sentinel()")
        .await
        .map_err(query("the statistics sentinel"))?;
    let started = tokio::time::Instant::now();
    loop {
        // Each query ends a transaction, where the session sends its counts once 500 ms
        // passed since it last did.
        let calls: i64 = client
            .query_one(shown, &[])
            .await
            .map_err(query("the statistics sentinel"))?
            .get(0);
        if calls > before {
            return Ok(());
        }
        if started.elapsed() > STATS_BOUND {
            return Err(ObserveError::StatsNotSent {
                seconds: STATS_BOUND.as_secs(),
            });
        }
        tokio::time::sleep(STATS_POLL).await;
    }
}

async fn backend_pid(client: &Client) -> Result<i32, ObserveError> {
    let row = client
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .map_err(query("the backend pid"))?;
    Ok(row.get(0))
}

/// Runs `section` on `client`'s database and observes each statement; `observer` is a second
/// session on the same database (for statements that refuse a transaction block). The
/// section's changes stay, as after the runtime's run of it, unless a statement failed; no
/// history row is written.
pub async fn observe_section(
    client: &Client,
    observer: &Client,
    section: &Section,
) -> Result<SectionEffects, ObserveError> {
    observe_section_in(client, observer, section, &mut DeclaredSchema::new()).await
}

/// [`observe_section`] of one part of a set whose earlier statements declared `schema`: the
/// prediction each statement is compared with includes the locks on other tables its foreign
/// keys, views and triggers imply. Records what the section declares in `schema`.
pub async fn observe_section_in(
    client: &Client,
    observer: &Client,
    section: &Section,
    schema: &mut DeclaredSchema,
) -> Result<SectionEffects, ObserveError> {
    let pid = backend_pid(client).await?;
    let mut statements = Vec::new();
    let transactional = section.mode == TransactionMode::Transactional;
    if transactional {
        client
            .batch_execute("BEGIN")
            .await
            .map_err(query("BEGIN"))?;
    }
    for statement in section.statements.iter() {
        let predicted = schema.analyze_sql(&statement.sql);
        let result = if statement.non_transactional {
            observe_waiting(client, observer, pid, statement, predicted).await?
        } else {
            observe_in_transaction(client, pid, statement, !transactional, predicted).await?
        };
        match result {
            Ok(effects) => statements.push(effects),
            Err(error) => {
                if transactional {
                    let _ = client.batch_execute("ROLLBACK").await;
                }
                return Ok(SectionEffects {
                    statements,
                    error: Some(error),
                });
            }
        }
    }
    if transactional && let Err(error) = client.batch_execute("COMMIT").await {
        return Ok(SectionEffects {
            statements,
            error: Some(error_text(&error)),
        });
    }
    Ok(SectionEffects {
        statements,
        error: None,
    })
}

/// The server's message with its SQLSTATE, as the runtime's errors carry it: a caller can
/// tell a syntax error (42601) from the rest.
fn error_text(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db) => format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        ),
        None => error.to_string(),
    }
}

/// One statement inside the open transaction (`own_transaction`: in one of its own).
async fn observe_in_transaction(
    client: &Client,
    pid: i32,
    statement: &Statement,
    own_transaction: bool,
    predicted: LockAnalysis,
) -> Result<Result<StatementEffects, String>, ObserveError> {
    if own_transaction {
        client
            .batch_execute("BEGIN")
            .await
            .map_err(query("BEGIN"))?;
    }
    let before = catalog(client).await?;
    let (held, _) = locks_of(client, pid).await?;
    let scans_before = seq_scans(client, true).await?;
    if let Err(error) = client.batch_execute(&statement.sql).await {
        let text = error_text(&error);
        if own_transaction || error.code() == Some(&SqlState::ACTIVE_SQL_TRANSACTION) {
            let _ = client.batch_execute("ROLLBACK").await;
        }
        return Ok(Err(text));
    }
    let after = catalog(client).await?;
    let (now, _) = locks_of(client, pid).await?;
    let scans_after = seq_scans(client, true).await?;
    if own_transaction {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(query("COMMIT"))?;
    }
    let held: BTreeSet<(u32, LockMode)> = held.iter().map(|(o, m, _)| (*o, *m)).collect();
    let new: Vec<(u32, LockMode, bool)> = now
        .into_iter()
        .filter(|(oid, mode, _)| !held.contains(&(*oid, *mode)))
        .collect();
    let held: Vec<(u32, LockMode, bool)> = held.into_iter().map(|(o, m)| (o, m, true)).collect();
    Ok(Ok(effects(
        statement,
        LockObservation::InTransaction,
        &before,
        &after,
        &new,
        &held,
        &scans_before,
        &scans_after,
        predicted,
    )))
}

/// One statement that refuses a transaction block, seen by `observer` while it waits.
async fn observe_waiting(
    client: &Client,
    observer: &Client,
    pid: i32,
    statement: &Statement,
    predicted: LockAnalysis,
) -> Result<Result<StatementEffects, String>, ObserveError> {
    let before = catalog(client).await?;
    flush_stats(client).await?;
    let scans_before = seq_scans(client, false).await?;
    observer
        .batch_execute("BEGIN")
        .await
        .map_err(query("the observer's BEGIN"))?;
    let tables: Vec<&str> = before
        .values()
        .filter(|r| matches!(r.kind, RelationKind::Table | RelationKind::PartitionedTable))
        .map(|r| r.name.as_str())
        .collect();
    if !tables.is_empty() {
        // The names come from format('%I.%I'): quoted where needed.
        observer
            .batch_execute(&format!(
                "LOCK TABLE {} IN ROW EXCLUSIVE MODE",
                tables.join(", ")
            ))
            .await
            .map_err(query("the observer's locks"))?;
    }
    let run = client.batch_execute(&statement.sql);
    tokio::pin!(run);
    let started = tokio::time::Instant::now();
    let mut seen: Option<Vec<(u32, LockMode, bool)>> = None;
    let result = loop {
        tokio::select! {
            result = &mut run => break result,
            _ = tokio::time::sleep(POLL) => {
                let (locks, waiting) = locks_of(observer, pid).await?;
                if waiting {
                    seen = Some(locks);
                    observer
                        .batch_execute("COMMIT")
                        .await
                        .map_err(query("the observer's COMMIT"))?;
                    break (&mut run).await;
                }
                if started.elapsed() > WAIT_BOUND {
                    let _ = observer.batch_execute("COMMIT").await;
                    return Err(ObserveError::NoProgress {
                        line: statement.line,
                        seconds: WAIT_BOUND.as_secs(),
                    });
                }
            }
        }
    };
    if seen.is_none() {
        observer
            .batch_execute("COMMIT")
            .await
            .map_err(query("the observer's COMMIT"))?;
    }
    if let Err(error) = result {
        return Ok(Err(error_text(&error)));
    }
    let after = catalog(client).await?;
    flush_stats(client).await?;
    let scans_after = seq_scans(client, false).await?;
    let (how, locks) = match seen {
        Some(locks) => (LockObservation::WhileWaiting, locks),
        None => (LockObservation::NotSeen, Vec::new()),
    };
    Ok(Ok(effects(
        statement,
        how,
        &before,
        &after,
        &locks,
        &[],
        &scans_before,
        &scans_after,
        predicted,
    )))
}

#[allow(clippy::too_many_arguments)]
fn effects(
    statement: &Statement,
    how: LockObservation,
    before: &Catalog,
    after: &Catalog,
    new: &[(u32, LockMode, bool)],
    held: &[(u32, LockMode, bool)],
    scans_before: &BTreeMap<u32, i64>,
    scans_after: &BTreeMap<u32, i64>,
    predicted: LockAnalysis,
) -> StatementEffects {
    let observed = |list: &[(u32, LockMode, bool)]| -> Vec<ObservedLock> {
        let mut locks: Vec<ObservedLock> = list
            .iter()
            .filter_map(|(oid, mode, granted)| {
                let relation = before.get(oid)?;
                Some(ObservedLock {
                    relation: relation.name.clone(),
                    kind: relation.kind,
                    table: relation.table.clone(),
                    mode: *mode,
                    granted: *granted,
                })
            })
            .collect();
        locks.sort_by(|a, b| (&a.relation, a.mode).cmp(&(&b.relation, b.mode)));
        locks
    };
    let locks = observed(new);
    let held = observed(held);

    let mut rewritten = BTreeSet::new();
    let reindex = statement
        .sql
        .split_whitespace()
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("REINDEX"));
    for (oid, old) in before {
        let replaced = match after.get(oid) {
            Some(new) => new.file != old.file && old.file != 0,
            // Same name and kind, another relation: swapped in by REINDEX CONCURRENTLY. After
            // any other statement it is a new index built under the same name (`DROP COLUMN
            // id, ADD PRIMARY KEY (uuid)` replaces `t_pkey`): a scan, seen as one.
            None => {
                reindex
                    && after
                        .values()
                        .any(|r| r.name == old.name && r.kind == old.kind)
            }
        };
        if replaced {
            rewritten.insert(old.name.clone());
        }
    }
    let scanned: Vec<String> = scans_after
        .iter()
        .filter(|(oid, count)| **count > scans_before.get(oid).copied().unwrap_or(0))
        .filter_map(|(oid, _)| before.get(oid))
        .filter(|r| !rewritten.contains(&r.name))
        .map(|r| r.name.clone())
        .collect();
    let work = if !rewritten.is_empty() {
        TableWork::Rewrite
    } else if !scanned.is_empty() {
        TableWork::Scan
    } else {
        TableWork::None
    };
    let mut effects = StatementEffects {
        line: statement.line,
        column: statement.column,
        sql: statement.sql.to_string(),
        observed_by: how,
        already_held: Vec::new(),
        locks,
        rewritten: rewritten.into_iter().collect(),
        scanned,
        work,
        predicted,
        disagreements: Vec::new(),
        not_compared: None,
    };
    // What was held before matters only where the prediction names it.
    let named: Vec<Option<&Relation>> = effects
        .predicted
        .locks
        .iter()
        .map(|l| resolve(&l.table, before))
        .collect();
    effects.already_held = held
        .into_iter()
        .filter(|l| named.iter().flatten().any(|r| r.name == l.relation))
        .collect();
    compare(&mut effects, before);
    effects
}

/// The relation a statement's name refers to: `schema.name` exactly, or a bare name in
/// `public` first, else in any schema when only one has it. Names fold as SQL folds them.
fn resolve<'a>(written: &str, catalog: &'a Catalog) -> Option<&'a Relation> {
    let folded = classify::normalize_identifier(written);
    let (schema, name) = match folded.rsplit_once('.') {
        Some((schema, name)) => (Some(schema.to_owned()), name.to_owned()),
        None => (None, folded),
    };
    let matching: Vec<&Relation> = catalog
        .values()
        .filter(|r| r.relname == name && schema.as_ref().is_none_or(|s| *s == r.schema))
        .collect();
    matching
        .iter()
        .find(|r| r.schema == "public")
        .or_else(|| (matching.len() == 1).then(|| &matching[0]))
        .copied()
}

/// Why a statement may do less than predicted: what it does depends on what the catalog or
/// the data hold, which the prediction can only state as a note. When the server did less
/// there, the reason is reported instead of a disagreement.
fn may_do_less(sql: &str) -> Option<&'static str> {
    let upper = sql.to_ascii_uppercase();
    let words: Vec<&str> = upper
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')' || c == ',')
        .filter(|w| !w.is_empty())
        .collect();
    let has = |phrase: &[&str]| words.windows(phrase.len()).any(|w| w == phrase);
    if has(&["IF", "NOT", "EXISTS"]) || has(&["IF", "EXISTS"]) {
        Some("IF [NOT] EXISTS: nothing is done when the object already exists, or is gone")
    } else if has(&["SET", "NOT", "NULL"]) {
        Some("SET NOT NULL skips its scan when a validated CHECK (col IS NOT NULL) exists")
    } else if has(&["TYPE"]) && words.first() == Some(&"ALTER") {
        Some(
            "a binary-coercible type change (varchar(n) to text, a longer varchar) rewrites nothing",
        )
    } else if has(&["ATTACH", "PARTITION"]) {
        Some("the partition is not scanned when a CHECK constraint implies its bound")
    } else if has(&["ON", "ONLY"]) {
        Some("on a partitioned table, ON ONLY builds only the parent's index: no scan")
    } else if words.first() == Some(&"VACUUM") && !has(&["FULL"]) {
        Some("VACUUM reads the table without a counted sequential scan")
    } else {
        None
    }
}

/// The statement says `IF NOT EXISTS` or `IF EXISTS`.
fn if_exists(sql: &str) -> bool {
    may_do_less(sql).is_some_and(|reason| reason.starts_with("IF [NOT] EXISTS"))
}

/// A query's table scans are the planner's choice (a small table is read in full rather than
/// through an index), so the scans of data changes are not compared.
fn is_data_change(sql: &str) -> bool {
    let first = sql
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase();
    matches!(
        first.as_str(),
        "UPDATE" | "DELETE" | "INSERT" | "WITH" | "SELECT" | "MERGE"
    )
}

/// `CREATE [TEMP] TABLE ... AS` or `CREATE MATERIALIZED VIEW`: a query fills the new relation.
fn fills_from_query(sql: &str) -> bool {
    lock_analysis::writes_rows(sql)
        .is_some_and(|kind| kind == "CREATE TABLE ... AS" || kind == "CREATE MATERIALIZED VIEW")
}

/// Fills `effects.disagreements`: each predicted lock must be the strongest mode observed on
/// its relation (or already held by the transaction), each observed lock that blocks writes
/// on a table must be predicted, and the work must match. A predicted lock on an index
/// covers its table too (the prediction cannot name the table of an index from the
/// statement's text; its note does).
fn compare(effects: &mut StatementEffects, before: &Catalog) {
    let predicted = effects.predicted.clone();
    if !predicted.known {
        effects.not_compared = Some("plan does not know this statement".to_owned());
        return;
    }
    let mut disagreements = Vec::new();
    let mut strongest: BTreeMap<&str, LockMode> = BTreeMap::new();
    for lock in &effects.locks {
        let entry = strongest.entry(&lock.relation).or_insert(lock.mode);
        *entry = (*entry).max(lock.mode);
    }
    let mut named: BTreeSet<String> = BTreeSet::new();
    if effects.observed_by != LockObservation::NotSeen {
        for lock in &predicted.locks {
            // A relation this statement creates, or one the catalog lacks: nothing to compare.
            let Some(relation) = resolve(&lock.table, before) else {
                continue;
            };
            named.insert(relation.name.clone());
            if let Some(table) = relation
                .table
                .as_ref()
                .filter(|_| relation.kind == RelationKind::Index)
            {
                named.insert(table.clone());
            }
            let held = effects
                .already_held
                .iter()
                .any(|l| l.relation == relation.name && l.mode >= lock.mode);
            match strongest.get(relation.name.as_str()) {
                Some(observed) if *observed == lock.mode => {}
                Some(observed) if *observed < lock.mode && held => {}
                // A foreign key's ON DELETE action or a trigger's body: when no row changes,
                // the trigger may only read the table.
                Some(observed) if *observed < lock.mode && lock.when_rows_change => {}
                Some(observed) => disagreements.push(Disagreement::Mode {
                    relation: relation.name.clone(),
                    predicted: lock.mode,
                    observed: *observed,
                }),
                None if held => {}
                // A foreign key's ON DELETE action or a trigger's body: only when rows change
                // (and a trigger's body may only read the table when none do).
                None if lock.when_rows_change => {}
                // `CREATE TABLE IF NOT EXISTS` that finds the table does nothing, locks
                // included.
                None if if_exists(&effects.sql) => {
                    effects.not_compared = may_do_less(&effects.sql).map(str::to_owned);
                }
                None => disagreements.push(Disagreement::NotTaken {
                    relation: relation.name.clone(),
                    predicted: lock.mode,
                }),
            }
        }
        for lock in &effects.locks {
            if lock.kind.holds_rows()
                && lock.mode.blocks_writes()
                && !named.contains(&lock.relation)
                && !disagreements.iter().any(
                    |d| matches!(d, Disagreement::Unpredicted { relation, .. } if *relation == lock.relation),
                )
            {
                disagreements.push(Disagreement::Unpredicted {
                    relation: lock.relation.clone(),
                    observed: strongest[lock.relation.as_str()],
                });
            }
        }
    }
    let observed = effects.work;
    let expected = predicted.work;
    let truncate = effects
        .sql
        .split_whitespace()
        .next()
        .is_some_and(|w| w.eq_ignore_ascii_case("TRUNCATE"));
    if observed != expected {
        let dependent = may_do_less(&effects.sql).filter(|_| observed < expected);
        if let Some(reason) = dependent {
            effects.not_compared = Some(reason.to_owned());
        } else if truncate && observed == TableWork::Rewrite {
            // A new, empty file per table and index: instant whatever the size, not a copy.
            effects.not_compared =
                Some("TRUNCATE swaps in empty files: a new file, not a copy".to_owned());
        } else if fills_from_query(&effects.sql) && observed < expected {
            // CREATE TABLE AS / CREATE MATERIALIZED VIEW run their query: an index or an
            // empty source may spare the full reads.
            effects.not_compared =
                Some("the query's plan decides whether its sources are read in full".to_owned());
        } else if is_data_change(&effects.sql) && observed == TableWork::Scan {
            effects.not_compared =
                Some("a query's full scan is the planner's choice: not compared".to_owned());
        } else {
            disagreements.push(Disagreement::Work {
                predicted: expected,
                observed,
            });
        }
    }
    effects.disagreements = disagreements;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog_with(relations: &[(u32, &str, &str, Option<&str>)]) -> Catalog {
        relations
            .iter()
            .map(|(oid, name, kind, table)| {
                (
                    *oid,
                    Relation {
                        name: format!("public.{name}"),
                        schema: "public".into(),
                        relname: (*name).into(),
                        kind: RelationKind::from_relkind(kind),
                        file: *oid,
                        table: table.map(|t| format!("public.{t}")),
                    },
                )
            })
            .collect()
    }

    fn observed(sql: &str, locks: &[(u32, LockMode)], work: TableWork) -> StatementEffects {
        let catalog = catalog_with(&[
            (1, "users", "r", None),
            (2, "users_pkey", "i", Some("users")),
            (3, "orders", "r", None),
        ]);
        let statement = Statement {
            sql: sql.to_owned().into(),
            line: 1,
            column: 1,
            non_transactional: false,
        };
        let new: Vec<(u32, LockMode, bool)> = locks.iter().map(|(o, m)| (*o, *m, true)).collect();
        let mut scans_after = BTreeMap::new();
        let mut after = catalog.clone();
        match work {
            TableWork::Scan => {
                scans_after.insert(1, 1);
            }
            TableWork::Rewrite => {
                if let Some(users) = after.get_mut(&1) {
                    users.file = 100;
                }
            }
            TableWork::None => {}
        }
        effects(
            &statement,
            LockObservation::InTransaction,
            &catalog,
            &after,
            &new,
            &[],
            &BTreeMap::new(),
            &scans_after,
            crate::lock_analysis::analyze_sql(sql),
        )
    }

    #[test]
    fn every_kind_of_disagreement_is_named() {
        use LockMode::*;
        let agrees = observed(
            "ALTER TABLE users ADD COLUMN IF NOT EXISTS a int",
            &[(1, AccessExclusive)],
            TableWork::None,
        );
        assert!(
            agrees.disagreements.is_empty(),
            "{:?}",
            agrees.disagreements
        );

        let weaker = observed(
            "ALTER TABLE users ADD COLUMN IF NOT EXISTS a int",
            &[(1, ShareRowExclusive)],
            TableWork::None,
        );
        assert_eq!(
            weaker.disagreements,
            [Disagreement::Mode {
                relation: "public.users".into(),
                predicted: AccessExclusive,
                observed: ShareRowExclusive
            }]
        );
        let none = observed("ALTER TABLE users ADD COLUMN a int", &[], TableWork::None);
        assert!(matches!(
            none.disagreements[..],
            [Disagreement::NotTaken { .. }]
        ));
        let extra = observed(
            "ALTER TABLE users ADD COLUMN a int",
            &[(1, AccessExclusive), (3, Share)],
            TableWork::None,
        );
        assert_eq!(
            extra.disagreements,
            [Disagreement::Unpredicted {
                relation: "public.orders".into(),
                observed: Share
            }]
        );
        let rewrite = observed(
            "ALTER TABLE users ADD COLUMN a int",
            &[(1, AccessExclusive)],
            TableWork::Rewrite,
        );
        assert_eq!(
            rewrite.disagreements,
            [Disagreement::Work {
                predicted: TableWork::None,
                observed: TableWork::Rewrite
            }]
        );
        assert_eq!(rewrite.rewritten, ["public.users"]);
        // An index named by the statement covers its table.
        let drop = observed(
            "DROP INDEX users_pkey",
            &[(2, AccessExclusive), (1, AccessExclusive)],
            TableWork::None,
        );
        assert!(drop.disagreements.is_empty(), "{:?}", drop.disagreements);
        // Doing less than predicted where the catalog decides is a reason, not a disagreement.
        let skipped = observed(
            "ALTER TABLE users ALTER COLUMN a SET NOT NULL",
            &[(1, AccessExclusive)],
            TableWork::None,
        );
        assert!(skipped.disagreements.is_empty());
        assert!(skipped.not_compared.unwrap().contains("CHECK"));
    }

    #[test]
    fn lock_modes_are_read_as_pg_locks_spells_them() {
        for mode in LockMode::ALL {
            let spelled = format!(
                "{}Lock",
                mode.as_str()
                    .to_lowercase()
                    .split(' ')
                    .map(|w| {
                        let mut c = w.chars();
                        c.next().map_or(String::new(), |f| {
                            f.to_ascii_uppercase().to_string() + c.as_str()
                        })
                    })
                    .collect::<String>()
            );
            assert_eq!(lock_mode(&spelled), Some(mode), "{spelled}");
        }
        assert_eq!(
            lock_mode("ShareRowExclusiveLock"),
            Some(LockMode::ShareRowExclusive)
        );
        assert_eq!(lock_mode("SIReadLock"), None);
    }
}
