//! `migrate verify --compare`: proves that a target holds what its source says it should,
//! for the copies a recount cannot judge: a transformed value
//! can be wrong, a trigger can have skipped rows, a dual write can have failed on one side.
//!
//! First the catalog (`compare_tables`): both tables and every column exist, and the
//! key is unique and NOT NULL on both sides (a duplicate would hide behind its twin in the
//! keyed diff, a NULL key is in no chunk), else the compare fails naming them.
//!
//! Then the key range is walked in chunks, ordered in the source key's collation on both
//! sides. Each chunk is one `REPEATABLE READ READ ONLY`
//! transaction (both sides read at one snapshot, and nothing in a `map=` expression can
//! write):
//!
//! 1. its upper bound: the `n`th source key after the previous chunk's (`OFFSET n - 1`), none
//!    for the last chunk, which then also covers every target key above the source's last;
//! 2. per side, `count(*)` and `sum(hashtextextended(ROW(key, values)::text, 0))` over the
//!    row texts `row_equality` defines (reconcile's definition too), computed in
//!    the server: only four numbers leave it;
//! 3. only when they differ, a keyed diff of the chunk (a `FULL JOIN` on the key, comparing
//!    the same row texts exactly), sending the lowest differing keys and their count.
//!
//! Why this checksum: the row's text form (`ROW(..)::text`) tells NULL (`()`) from an empty
//! string (`("")`) and includes the key, so a value moved to another key changes it too;
//! `hashtextextended` is the server's 64-bit hash of hash partitioning, cheaper than
//! `md5()` plus a cast, and both sides are hashed by the same server in the same query, so
//! its stability across versions does not matter. The sum is order-independent and
//! `sum(bigint)` is `numeric` in PostgreSQL, so it cannot overflow; unlike XOR, two identical
//! rows do not cancel. Two different chunks escape only when the count and the 64-bit sums
//! both coincide (about 2^-64 for one changed row). The diff itself compares the texts, so a
//! reported key is always a real difference.
//!
//! The chunk size adapts so each chunk's queries take about [`CompareOptions::chunk_target`]
//! (halving or doubling at most 4x per step). Progress is stored after every chunk in
//! `<history>_compare` ([`crate::runtime::state::compare_progress`]): a killed compare resumes after
//! the last chunk it stored. `delay` pauses between chunks, like a backfill's.
//!
//! The contract gate of a contract with `-- migrate:requires-compare` (`gate` below) wants a
//! pass recorded after the backfill was applied, and an empty reconcile queue for it.

use std::time::{Duration, Instant, SystemTime};

use tokio_postgres::Client;

use crate::migration::{BackfillPace, CompareSpec, Migration, Migrations};
use crate::runtime::Migrator;
use crate::runtime::compare::row_equality::{self, RowEquality, aliases};
use crate::runtime::compare::tables::CompareTables;
use crate::runtime::deadline;
use crate::runtime::error::GateFailure;
use crate::runtime::error::{CompareLocation, RuntimeError};
use crate::runtime::state::compare_progress::{CompareProgress, CompareProgressTable};
use crate::runtime::state::history::History;
use crate::runtime::state::history::sql_version;
use crate::runtime::state::reconcile_queue::ReconcileQueue;
use crate::source::parse_compare;

/// How a compare walks the key range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareOptions {
    /// The time each chunk's queries should take; the chunk size adapts to it.
    pub chunk_target: Duration,
    /// Source rows in the first chunk.
    pub initial_chunk: i64,
    /// Never fewer source rows per chunk than this ...
    pub min_chunk: i64,
    /// ... nor more.
    pub max_chunk: i64,
    /// Pause between chunks; `None`: the backfill's `delay=` when it has a fixed pace.
    pub delay: Option<Duration>,
    /// Differing keys kept and reported (the count covers all of them).
    pub max_keys: usize,
    /// Start from the first key even when an unfinished run could be resumed.
    pub restart: bool,
}

impl Default for CompareOptions {
    fn default() -> Self {
        CompareOptions {
            chunk_target: Duration::from_millis(250),
            initial_chunk: 1_000,
            min_chunk: 100,
            max_chunk: 1_000_000,
            delay: None,
            max_keys: 100,
            restart: false,
        }
    }
}

/// How one key differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Difference {
    /// The source has the key, the target does not.
    Missing,
    /// The target has the key, the source does not.
    Extra,
    /// Both have it, with different values.
    Differs,
}

impl Difference {
    /// `missing`, `extra`, `differs`: as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            Difference::Missing => "missing",
            Difference::Extra => "extra",
            Difference::Differs => "differs",
        }
    }

    fn parse(text: &str) -> Difference {
        match text {
            "missing" => Difference::Missing,
            "extra" => Difference::Extra,
            _ => Difference::Differs,
        }
    }
}

/// A key whose rows differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DifferingKey {
    /// The key, as text.
    pub key: String,
    /// How it differs.
    pub difference: Difference,
}

/// The outcome of a compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompareReport {
    /// The backfill migration declaring the compare.
    pub version: u64,
    /// Its file name.
    pub file: String,
    /// The source table.
    pub source: String,
    /// The target table.
    pub target: String,
    /// Source rows compared, by interrupted runs included.
    pub rows_compared: i64,
    /// Source rows compared by this run.
    pub rows_this_run: i64,
    /// Chunks compared, by interrupted runs included.
    pub chunks: i64,
    /// Keys that differ.
    pub differing: i64,
    /// The first [`CompareOptions::max_keys`] of them, in key order.
    pub differing_keys: Vec<DifferingKey>,
    /// The key an interrupted run had reached, when this run resumed after it.
    pub resumed_from: Option<String>,
    /// When it passed (no difference), as stored.
    pub passed_at: Option<SystemTime>,
}

impl CompareReport {
    /// No key differs.
    pub fn passed(&self) -> bool {
        self.differing == 0
    }
}

/// The SQL of one compare, built once from its spec and what the catalog says of its tables.
struct CompareSql {
    spec: CompareSpec,
    tables: CompareTables,
}

impl CompareSql {
    /// `table.key`, in the source key's collation on both sides: chunk bounds, order and
    /// join then agree whatever collation the target's key column has.
    fn key_of(&self, table: &str) -> String {
        let key = format!("{table}.{}", self.spec.quoted_key());
        match &self.tables.key_collation {
            Some(collation) => format!("{key} COLLATE {collation}"),
            None => key,
        }
    }

    /// `$1 < key <= $2`; a NULL end is open. The parameters are text, cast to the key's type
    /// (the statements are planned with their values, so the key's index serves the range).
    fn range(&self, table: &str) -> String {
        let (key, key_type) = (self.key_of(table), &self.tables.key_type);
        format!(
            "($1::text IS NULL OR {key} > $1::text::{key_type}) \
             AND ($2::text IS NULL OR {key} <= $2::text::{key_type})"
        )
    }

    /// The key `$2` rows after `$1` (the `$2 + 1`th), as text: a chunk's upper bound.
    fn upper_bound(&self) -> String {
        let source = self.spec.source.quoted();
        let (key, key_type) = (self.key_of(&source), &self.tables.key_type);
        format!(
            "SELECT {source}.{}::text AS migrate_bound FROM {source} \
             WHERE ($1::text IS NULL OR {key} > $1::text::{key_type}) \
             ORDER BY {key} OFFSET $2 LIMIT 1",
            self.spec.quoted_key()
        )
    }

    /// The chunk's rows of one table (two-table compare) as a derived table `alias(k,
    /// prefix1..n)`: the source's mapped values or the target's columns.
    fn side(&self, table: &str, list: &str, alias: &str, prefix: &str) -> String {
        format!(
            "(SELECT {}, {list} FROM {table} WHERE {}) AS {alias}(k, {})",
            self.key_of(table),
            self.range(table),
            aliases(prefix, self.tables.equality.len()).join(", ")
        )
    }

    fn source_row(&self, alias: &str, prefix: &str) -> String {
        let values = aliases(&format!("{alias}.{prefix}"), self.tables.equality.len());
        self.tables
            .equality
            .source_row(&format!("{alias}.k"), &values)
    }

    fn target_row(&self, alias: &str, prefix: &str) -> String {
        let columns = aliases(&format!("{alias}.{prefix}"), self.tables.equality.len());
        self.tables
            .equality
            .target_row(&format!("{alias}.k"), &columns)
    }

    /// One table: both sides of the chunk's rows in one scan, `migrate_row(k, v1..n, c1..n)`.
    fn same_table_rows(&self) -> String {
        let source = self.spec.source.quoted();
        let count = self.tables.equality.len();
        let mut names = aliases("v", count);
        names.extend(aliases("c", count));
        format!(
            "(SELECT {}, {}, {} FROM {source} WHERE {}) AS migrate_row(k, {})",
            self.key_of(&source),
            self.spec.source_values(),
            self.spec.quoted_columns(),
            self.range(&source),
            names.join(", ")
        )
    }

    /// Count and checksum of each side: source count, source sum, target count, target sum.
    /// The rows hashed are those [`RowEquality`] defines.
    fn checksums(&self) -> String {
        let hash = |row: String| format!("coalesce(sum(hashtextextended({row}, 0)), 0)::text");
        if self.spec.same_table() {
            return format!(
                "SELECT count(*), {}, count(*), {} FROM {}",
                hash(self.source_row("migrate_row", "v")),
                hash(self.target_row("migrate_row", "c")),
                self.same_table_rows()
            );
        }
        let (source, target) = (self.spec.source.quoted(), self.spec.target.quoted());
        format!(
            "SELECT s.n, s.h, t.n, t.h FROM \
             (SELECT count(*) AS n, {} AS h FROM {}) AS s, \
             (SELECT count(*) AS n, {} AS h FROM {}) AS t",
            hash(self.source_row("migrate_source", "v")),
            self.side(&source, &self.spec.source_values(), "migrate_source", "v"),
            hash(self.target_row("migrate_target", "c")),
            self.side(&target, &self.spec.quoted_columns(), "migrate_target", "c"),
        )
    }

    /// The chunk's differing keys in key order (`$3` rows at most), their kind, and the count
    /// of all of them. Rows differ as [`RowEquality`] defines it.
    fn diff(&self) -> String {
        if self.spec.same_table() {
            return format!(
                "SELECT migrate_row.k::text AS migrate_key, 'differs', count(*) OVER () FROM {} \
                 WHERE {} ORDER BY migrate_row.k LIMIT $3",
                self.same_table_rows(),
                RowEquality::differ(
                    &self.source_row("migrate_row", "v"),
                    &self.target_row("migrate_row", "c")
                )
            );
        }
        let (source, target) = (self.spec.source.quoted(), self.spec.target.quoted());
        format!(
            "SELECT coalesce(s.k, t.k)::text AS migrate_key, \
                    CASE WHEN t.k IS NULL THEN 'missing' WHEN s.k IS NULL THEN 'extra' ELSE 'differs' END, \
                    count(*) OVER () \
             FROM (SELECT migrate_source.k, {} AS v FROM {}) AS s \
             FULL JOIN (SELECT migrate_target.k, {} AS v FROM {}) AS t ON s.k = t.k \
             WHERE s.k IS NULL OR t.k IS NULL OR {} \
             ORDER BY coalesce(s.k, t.k) LIMIT $3",
            self.source_row("migrate_source", "v"),
            self.side(&source, &self.spec.source_values(), "migrate_source", "v"),
            self.target_row("migrate_target", "c"),
            self.side(&target, &self.spec.quoted_columns(), "migrate_target", "c"),
            RowEquality::differ("s.v", "t.v"),
        )
    }
}

/// What one chunk found.
struct Chunk {
    upper: Option<String>,
    source_rows: i64,
    differing: i64,
    keys: Vec<(String, String)>,
    elapsed: Duration,
}

/// The backfill's `delay=` (its fixed pace), else none: a compare or a reconcile pauses as
/// the backfill was told to.
pub(crate) fn backfill_delay(migration: &Migration) -> Duration {
    match migration.backfill.as_ref().map(|b| &b.pace) {
        Some(BackfillPace::Fixed { delay_ms, .. }) => Duration::from_millis((*delay_ms).into()),
        _ => Duration::ZERO,
    }
}

/// Where `migration` declares its compare, for messages.
pub(crate) fn compare_location(migration: &Migration) -> CompareLocation {
    CompareLocation {
        version: migration.version,
        file: migration.file_name.to_string(),
        line: migration.compare_line,
    }
}

/// The declared compare of `migration`, parsed.
pub(crate) fn compare_spec(migration: &Migration) -> Result<Option<CompareSpec>, RuntimeError> {
    let Some(text) = migration.compare.as_deref() else {
        return Ok(None);
    };
    parse_compare(text)
        .map(Some)
        .map_err(|problem| RuntimeError::Compare {
            at: compare_location(migration),
            problem,
        })
}

/// `error`, with the compare's location when it does not name it already.
pub(crate) fn located(at: &CompareLocation, error: RuntimeError) -> RuntimeError {
    match error {
        RuntimeError::Compare { .. }
        | RuntimeError::CompareKey { .. }
        | RuntimeError::CompareFailed { .. } => error,
        error => RuntimeError::CompareFailed {
            at: at.clone(),
            error: Box::new(error),
        },
    }
}

impl<'m> Migrator<'m> {
    /// The migration `version` of the set and the compare it declares; refuses a version
    /// that is not in the set or declares none. What compares, reconciles and dual writes
    /// of `version` need: its mapping.
    pub(crate) fn declared_compare(
        &self,
        version: u64,
    ) -> Result<(&'m Migration, CompareSpec), RuntimeError> {
        let migration = self.migrations.get(version);
        let spec = match migration {
            Some(migration) => compare_spec(migration)?,
            None => None,
        };
        match (migration, spec) {
            (Some(migration), Some(spec)) => Ok((migration, spec)),
            (migration, _) => Err(RuntimeError::Compare {
                at: match migration {
                    Some(migration) => compare_location(migration),
                    None => CompareLocation {
                        version,
                        file: "(no such migration in the set)".into(),
                        line: None,
                    },
                },
                problem: "the migration declares no `-- migrate:compare` (its mapping is what \
                          a compare checks and a reconcile replays)"
                    .into(),
            }),
        }
    }
    /// Compares the source and target declared by `-- migrate:compare` in backfill migration
    /// `version`, resuming an interrupted run of the same definition unless
    /// [`CompareOptions::restart`]. Records the result; a compare that finds a difference
    /// clears an earlier pass. Only reads the application's tables.
    pub async fn compare(
        &self,
        client: &Client,
        version: u64,
        options: &CompareOptions,
    ) -> Result<CompareReport, RuntimeError> {
        let (migration, spec) = self.declared_compare(version)?;
        self.check_history_table(client).await?;
        let at = compare_location(migration);
        let before = self
            .configure_session(client)
            .await
            .map_err(|error| located(&at, error))?;
        let result = self
            .compare_configured(client, migration, &at, spec, options)
            .await;
        if !matches!(result, Err(RuntimeError::NoAnswer { .. })) {
            self.restore_session(client, &before).await;
        }
        result.map_err(|error| located(&at, error))
    }

    async fn compare_configured(
        &self,
        client: &Client,
        migration: &Migration,
        at: &CompareLocation,
        spec: CompareSpec,
        options: &CompareOptions,
    ) -> Result<CompareReport, RuntimeError> {
        let own = Some(self.config.limits().own);
        let table = CompareProgressTable::for_history(self.history_table())?;
        let version = sql_version(migration.version);
        let definition = migration.compare.as_deref().unwrap_or_default();
        deadline::within(
            own,
            "creating the compare progress table",
            table.ensure(client),
        )
        .await??;
        let tables = self.compare_tables(client, at, &spec).await?;
        if let Err(key_problem) = self.check_compare_key(client, at, &spec).await {
            // The data is not what an earlier pass saw: forget it, so no gate trusts it.
            deadline::within(
                own,
                "recording a compare's start",
                table.start(client, version, definition),
            )
            .await??;
            return Err(key_problem);
        }
        let stored = deadline::within(own, "reading compare progress", table.read(client, version))
            .await??;
        let resumable = stored
            .filter(|s| !options.restart && s.definition == definition && s.finished_at.is_none());
        let mut progress = match resumable {
            Some(stored) => {
                let mut progress = stored.progress;
                // Kept in key order: the first `max_keys` are the lowest.
                progress.differing_keys.truncate(options.max_keys);
                progress
            }
            None => {
                deadline::within(
                    own,
                    "recording a compare's start",
                    table.start(client, version, definition),
                )
                .await??;
                CompareProgress::default()
            }
        };
        let resumed_from = progress.last_key.clone();
        let sql = CompareSql { spec, tables };
        let delay = options.delay.unwrap_or_else(|| backfill_delay(migration));
        let mut chunk_size = options
            .initial_chunk
            .clamp(options.min_chunk, options.max_chunk);
        let mut rows_this_run = 0;
        loop {
            let chunk = self
                .compare_chunk(
                    client,
                    at,
                    &sql,
                    progress.last_key.as_deref(),
                    chunk_size,
                    options,
                )
                .await?;
            rows_this_run += chunk.source_rows;
            progress.rows_compared += chunk.source_rows;
            progress.chunks += 1;
            progress.differing += chunk.differing;
            let room = options
                .max_keys
                .saturating_sub(progress.differing_keys.len());
            progress
                .differing_keys
                .extend(chunk.keys.into_iter().take(room));
            let last = chunk.upper.is_none();
            progress.last_key = chunk.upper;
            deadline::within(
                own,
                "recording compare progress",
                table.save(client, version, &progress),
            )
            .await??;
            tracing::debug!(
                compare = %migration.file_name,
                rows = progress.rows_compared,
                chunk_size,
                elapsed_ms = chunk.elapsed.as_millis() as u64,
                "compare chunk"
            );
            if last {
                break;
            }
            chunk_size = next_chunk_size(chunk_size, chunk.elapsed, options);
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
        }
        let passed = progress.differing == 0;
        let passed_at = deadline::within(
            own,
            "recording a compare's result",
            table.finish(client, version, passed),
        )
        .await??;
        Ok(CompareReport {
            version: migration.version,
            file: migration.file_name.to_string(),
            source: sql.spec.source.to_string(),
            target: sql.spec.target.to_string(),
            rows_compared: progress.rows_compared,
            rows_this_run,
            chunks: progress.chunks,
            differing: progress.differing,
            differing_keys: progress
                .differing_keys
                .into_iter()
                .map(|(key, kind)| DifferingKey {
                    key,
                    difference: Difference::parse(&kind),
                })
                .collect(),
            resumed_from,
            passed_at,
        })
    }

    /// One chunk in its own `REPEATABLE READ READ ONLY` transaction.
    async fn compare_chunk(
        &self,
        client: &Client,
        at: &CompareLocation,
        sql: &CompareSql,
        lower: Option<&str>,
        size: i64,
        options: &CompareOptions,
    ) -> Result<Chunk, RuntimeError> {
        let limit = self.config.limits().statement;
        deadline::within(
            Some(self.config.limits().own),
            "starting a compare chunk",
            client.batch_execute(&format!(
                "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; {}",
                row_equality::SESSION
            )),
        )
        .await?
        .map_err(RuntimeError::database("starting a compare chunk"))?;
        let result: Result<Chunk, RuntimeError> = async {
            let started = Instant::now();
            let offset = size - 1;
            let upper: Option<String> = client
                .query_opt(&sql.upper_bound(), &[&lower, &offset])
                .await
                .map_err(RuntimeError::database("finding a compare chunk's end"))?
                .map(|row| row.get(0));
            let row = deadline::within(
                limit,
                "checksumming a compare chunk",
                client.query_one(&sql.checksums(), &[&lower, &upper]),
            )
            .await?
            .map_err(RuntimeError::database("checksumming a compare chunk"))?;
            let (source_rows, source_sum, target_rows, target_sum): (i64, String, i64, String) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            let elapsed = started.elapsed();
            let mut chunk = Chunk {
                upper: upper.clone(),
                source_rows,
                differing: 0,
                keys: Vec::new(),
                elapsed,
            };
            if source_rows != target_rows || source_sum != target_sum {
                // At least one row: it carries the count (`--max-keys 0` still counts).
                let max_keys = i64::try_from(options.max_keys.max(1)).unwrap_or(i64::MAX);
                let rows = deadline::within(
                    limit,
                    "listing the differing keys of a compare chunk",
                    client.query(&sql.diff(), &[&lower, &upper, &max_keys]),
                )
                .await?
                .map_err(RuntimeError::database(
                    "listing the differing keys of a compare chunk",
                ))?;
                chunk.differing = rows.first().map_or(0, |row| row.get(2));
                chunk.keys = rows.iter().map(|row| (row.get(0), row.get(1))).collect();
                if chunk.differing == 0 {
                    // The checksums and the diff hash and compare the same row texts, so
                    // this is a bug, never a pass.
                    return Err(RuntimeError::Compare {
                        at: at.clone(),
                        problem: format!(
                            "the checksums of the keys after {} up to {} differ but no key \
                             differs: the compare cannot judge this chunk",
                            lower.unwrap_or("the first"),
                            upper.as_deref().unwrap_or("the last")
                        ),
                    });
                }
            }
            Ok(chunk)
        }
        .await;
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        let ended = deadline::within(
            Some(self.config.limits().own),
            "ending a compare chunk",
            client.batch_execute(end),
        )
        .await;
        let chunk = result?;
        ended?.map_err(RuntimeError::database("ending a compare chunk"))?;
        Ok(chunk)
    }
}

/// Gate 6 (`-- migrate:requires-compare`): each backfill between the contract's expand and
/// it that declares a compare has a stored pass of that same definition, recorded after the
/// backfill's history row (a backfill reverted and applied again needs a new compare).
pub(crate) async fn gate(
    client: &Client,
    history: &History,
    migrations: &Migrations,
    contract: &Migration,
) -> Result<Option<GateFailure>, RuntimeError> {
    let Some(expand) = contract.requires else {
        return Ok(Some(GateFailure::NoCompareDeclared));
    };
    let table = CompareProgressTable::for_history(history.table())?;
    let applied = if history.exists(client).await? {
        history.read(client).await?
    } else {
        Vec::new()
    };
    let queue = ReconcileQueue::for_history(history.table())?;
    let queued = queue.lengths(client).await?;
    let mut declared = false;
    for backfill in migrations
        .iter()
        .filter(|m| m.version > expand && m.version < contract.version)
    {
        if compare_spec(backfill)?.is_none() {
            continue;
        }
        declared = true;
        let version = sql_version(backfill.version);
        let stored = table.read(client, version).await?;
        let applied_at = applied
            .iter()
            .find(|row| row.version == backfill.version)
            .map(|row| row.executed_at);
        let definition = backfill.compare.as_deref().unwrap_or_default();
        let passed_at = stored.as_ref().and_then(|s| s.passed_at);
        let reason = match stored {
            None => Some("it never ran".to_owned()),
            Some(s) if s.definition != definition => {
                Some("it last ran with another definition".to_owned())
            }
            Some(s) if s.finished_at.is_none() => Some(format!(
                "it is unfinished ({} rows compared)",
                s.progress.rows_compared
            )),
            Some(s) if s.passed_at.is_none() => Some(format!(
                "it found {} differing key(s)",
                s.progress.differing
            )),
            Some(s) => match (s.passed_at, applied_at) {
                (Some(passed), Some(applied)) if passed >= applied => None,
                _ => Some("it passed before the backfill was last applied".to_owned()),
            },
        };
        // Modern writes that failed since: the pass no longer describes the data.
        let waiting = queued
            .iter()
            .find(|(v, _)| *v == backfill.version)
            .map_or(0, |(_, n)| *n);
        let reason = reason.or_else(|| {
            (waiting > 0)
                .then(|| format!("{waiting} failed dual write(s) wait in the reconcile queue"))
        });
        // Keys reconcile could not replay since the pass: their rows may be wrong.
        let reason = match reason {
            Some(reason) => Some(reason),
            None => {
                let (count, keys) = queue
                    .unreplayable(client, Some(version), passed_at, 1)
                    .await?;
                keys.first().map(|key| {
                    format!(
                        "{count} failed dual write(s) since it passed could not be replayed by \
                         `migrate reconcile` (key {}: {}): fix those rows, then compare again \
                         (a pass after them covers them)",
                        key.key, key.failure
                    )
                })
            }
        };
        if let Some(reason) = reason {
            return Ok(Some(GateFailure::CompareNotPassed {
                version: backfill.version,
                file: backfill.file_name.to_string(),
                reason,
            }));
        }
    }
    Ok((!declared).then_some(GateFailure::NoCompareDeclared))
}

/// The next chunk's size: scaled toward `chunk_target`, at most 4x up or down per step.
fn next_chunk_size(size: i64, elapsed: Duration, options: &CompareOptions) -> i64 {
    let target = options.chunk_target.as_secs_f64();
    let took = elapsed.as_secs_f64().max(0.001);
    let factor = (target / took).clamp(0.25, 4.0);
    ((size as f64 * factor) as i64).clamp(options.min_chunk, options.max_chunk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_grow_and_shrink_toward_the_target_within_bounds() {
        let options = CompareOptions::default();
        let ms = Duration::from_millis;
        assert_eq!(next_chunk_size(1000, ms(10), &options), 4000);
        assert_eq!(next_chunk_size(1000, ms(500), &options), 500);
        assert_eq!(next_chunk_size(1000, ms(250), &options), 1000);
        assert_eq!(next_chunk_size(200, ms(10_000), &options), 100);
        assert_eq!(next_chunk_size(900_000, ms(1), &options), 1_000_000);
    }
}
