//! What the backfill controller reads from PostgreSQL (its decisions are in
//! `backfill_controller`).
//!
//! The stop signals (pause, abort) are read before a batch by `backfill_stops`; this
//! module watches, on a second connection (the monitor), while each batch runs and during the
//! rest after it, the signs that the application suffers: sessions waiting on a lock our
//! batch holds (`pg_blocking_pids`), the count of active sessions, and the latency of a probe
//! query, compared with its baseline measured before the backfill. The probe's 75th
//! percentile over a whole cycle (rest and batch) is what the application sees in its slower
//! quarter: a backfill that rests longer shows less of itself there, so the controller's rest
//! settles where the batches take at most about a quarter of the cycle's time at a slowed
//! probe.

use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::runtime::backfill::controller::Baselines;
use crate::runtime::config::BackfillControl;
use crate::runtime::deadline::{Limits, within};
use crate::runtime::error::RuntimeError;
use crate::runtime::executor::quote_identifier;

/// How often the monitor looks at the server while a batch or a rest runs ...
const WATCH_INTERVAL: Duration = Duration::from_millis(20);
/// ... and runs the probe query (a probe doing real work costs the server CPU).
const PROBE_EVERY: u32 = 5;
/// What the monitor reads every [`WATCH_INTERVAL`]: sessions waiting longer than `$3` ms on
/// a lock one of the backfill's backends `$1` holds, the active client sessions other than
/// ours (`$2`), those of them running (active with no wait event: on a CPU or queued for
/// one), and the database's transaction count and (14+) active time, which backends flush to
/// shared statistics about once a second (500 ms on 13-14); with `query_ids` (14+), the
/// `query_id` of the last statement of each of our sessions, so that `pg_stat_statements`'
/// rows of our own statements are left out of the application's.
fn observe_sql(active_time: bool, query_ids: bool, host_cpu: bool) -> String {
    format!(
        "SELECT count(*) FILTER (WHERE CASE WHEN wait_event_type = 'Lock' \
            AND clock_timestamp() - query_start > $3 * interval '1 millisecond' \
            THEN pg_blocking_pids(pid) && $1::int4[] ELSE false END), \
            count(*) FILTER (WHERE state = 'active' AND backend_type = 'client backend' \
            AND pid <> ALL($2)), \
            count(*) FILTER (WHERE state = 'active' AND wait_event IS NULL \
            AND backend_type = 'client backend' AND pid <> ALL($2)), \
            (SELECT (xact_commit + xact_rollback)::int8 FROM pg_stat_database \
              WHERE datname = current_database()), \
            {}, {}, {} \
         FROM pg_stat_activity",
        if active_time {
            "(SELECT active_time::float8 FROM pg_stat_database WHERE datname = current_database())"
        } else {
            "NULL::float8"
        },
        if query_ids {
            "array_agg(DISTINCT query_id) FILTER (WHERE pid = ANY($2) AND query_id IS NOT NULL)"
        } else {
            "NULL::int8[]"
        },
        if host_cpu { HOST_CPU_SQL } else { "NULL::text" }
    )
}

/// The first line of the server host's `/proc/stat`: the CPU time of all its CPUs, in clock
/// ticks, by kind. Needs `pg_read_server_files` (as the CPU count does). Only its start is
/// read: the file's interrupt lines run to tens of kilobytes on a large machine.
const HOST_CPU_SQL: &str = "split_part(pg_read_file('/proc/stat', 0, 256), E'\\n', 1)";

/// Busy and total clock ticks of all CPUs from the first line of `/proc/stat`
/// (`cpu user nice system idle iowait irq softirq steal ...`): idle and iowait are idle, the
/// rest (guest time is counted in user already) busy.
fn host_ticks(line: &str) -> Option<(u64, u64)> {
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let ticks: Vec<u64> = fields
        .take(8)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    let [user, nice, system, idle, iowait, irq, softirq, steal] = ticks[..] else {
        return None;
    };
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy, busy + idle + iowait))
}

/// The most-called statements read per snapshot of `pg_stat_statements`: the cost stays one
/// bounded query per window however many statements the server keeps (up to
/// `pg_stat_statements.max`, 5,000 by default).
const TOP_STATEMENTS: i64 = 200;
/// A statement's mean time in a rest counts once it was called this often there ...
const MIN_STATEMENT_CALLS: i64 = 5;
/// ... and the comparison once this many calls in all, in the rest and in the work.
const MIN_COMPARED_CALLS: i64 = 50;

/// The snapshot of `pg_stat_statements` (its function, without the query texts, which it
/// would read from a file): per `queryid` of this database's top-level statements, the calls
/// and the milliseconds spent executing, for the [`TOP_STATEMENTS`] most called; and the
/// `query_id` of this very query, which is ours. `schema`: the extension's schema, quoted.
fn statements_sql(schema: &str) -> String {
    format!(
        "SELECT top.queryid, sum(top.calls)::int8, sum(top.total_exec_time)::float8, \
            (SELECT query_id FROM pg_stat_activity WHERE pid = pg_backend_pid()) \
         FROM (SELECT queryid, calls, total_exec_time FROM {schema}.pg_stat_statements(false) \
               WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                 AND toplevel AND queryid IS NOT NULL \
               ORDER BY calls DESC LIMIT {TOP_STATEMENTS}) top \
         GROUP BY top.queryid"
    )
}

/// One reading of `pg_stat_statements`: per `queryid`, (calls, milliseconds executing).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct StatementSnapshot(HashMap<i64, (i64, f64)>);

impl StatementSnapshot {
    /// What each statement did from `earlier` to this snapshot; statements whose calls went
    /// down (a `pg_stat_statements_reset()` in between) or that one of the two readings did
    /// not list are left out.
    fn since(&self, earlier: &StatementSnapshot) -> HashMap<i64, (i64, f64)> {
        self.0
            .iter()
            .filter_map(|(queryid, &(calls, ms))| {
                let &(before_calls, before_ms) = earlier.0.get(queryid)?;
                (calls > before_calls)
                    .then(|| (*queryid, (calls - before_calls, (ms - before_ms).max(0.0))))
            })
            .collect()
    }
}

/// The application's statements' mean execution time per call while the batches ran and
/// in a rest, mix-adjusted: the statements that ran in both windows (ours left out), their
/// calls during the work at their mean in the rest against at their mean during the work,
/// so an application running other statements in the work than in the rest does not count
/// as slower. `(resting_ms, working_ms)` per call; `None` with too few calls to compare.
pub(crate) fn statement_latency(
    work: (&StatementSnapshot, &StatementSnapshot),
    rest: (&StatementSnapshot, &StatementSnapshot),
    own: &HashSet<i64>,
) -> Option<(f64, f64)> {
    let working = work.1.since(work.0);
    let resting = rest.1.since(rest.0);
    let (mut calls, mut working_ms, mut at_rest_ms, mut rest_calls) = (0i64, 0.0, 0.0, 0i64);
    for (queryid, &(work_calls, work_ms)) in &working {
        if own.contains(queryid) {
            continue;
        }
        let Some(&(calls_resting, ms_resting)) = resting.get(queryid) else {
            continue;
        };
        if calls_resting < MIN_STATEMENT_CALLS {
            continue;
        }
        calls += work_calls;
        working_ms += work_ms;
        at_rest_ms += work_calls as f64 * ms_resting / calls_resting as f64;
        rest_calls += calls_resting;
    }
    (calls >= MIN_COMPARED_CALLS && rest_calls >= MIN_COMPARED_CALLS)
        .then(|| (at_rest_ms / calls as f64, working_ms / calls as f64))
}
/// Probes before the backfill, for the baselines ...
const BASELINE_ROUNDS: u32 = 5;
/// ... this far apart: a tenth of a second, so a backfill of a small table starts at once.
const BASELINE_INTERVAL: Duration = Duration::from_millis(20);
/// Readings of the server kept for the rate windows (a minute at 20 ms).
const MAX_SAMPLES: usize = 3_000;

/// What the monitor saw while one batch ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Watched {
    pub blocked_sessions: u32,
    /// Active sessions (ours excluded), mean over the cycle rounded up: a pool's burst of a
    /// few milliseconds is not a load.
    pub active_sessions: Option<u32>,
    /// Probe latency at [`CYCLE_PROBE_QUANTILE`].
    pub probe: Option<Duration>,
    /// Other sessions running, mean over the cycle.
    pub running: Option<f64>,
    /// The share of the server host's CPU time that was busy over the cycle (everything on
    /// the host: our batches, the server's own processes, and whatever shares the host with
    /// it), from `/proc/stat`; `None` when it cannot be read.
    pub host_busy: Option<f64>,
}

/// One reading of the server's counters.
#[derive(Debug, Clone, Copy)]
struct Sample {
    at: Instant,
    /// `xact_commit + xact_rollback` of the database.
    xacts: i64,
    /// `active_time` of the database, ms (14+).
    active_ms: Option<f64>,
    /// Our own transactions so far (the migration's and workers' connections, the monitor's).
    own_xacts: u64,
    /// Time our batches spent on the server so far, ms.
    own_active_ms: f64,
}

/// The signal readers of one backfill statement.
pub(crate) struct Signals<'a> {
    monitor: Option<Monitor<'a>>,
    limits: Limits,
    /// What the monitor saw since the last [`Signals::take_watched`].
    watched: Watched,
    probes: Vec<Duration>,
    active_sum: u64,
    running_sum: u64,
    readings: u64,
    /// The host's CPU ticks at the first and the last reading since the last
    /// [`Signals::take_watched`].
    host_span: Option<((u64, u64), (u64, u64))>,
    samples: VecDeque<Sample>,
    own_xacts: u64,
    own_active_ms: f64,
    /// How long after a transaction its counts reach `pg_stat_database`.
    pub(crate) flush_lag: Duration,
    /// `query_id`s our sessions ran, left out of `pg_stat_statements`' comparison.
    own_queryids: HashSet<i64>,
    /// Why the statement latency signal is off, when it is.
    pub(crate) statements_off: Option<String>,
    /// The host's CPU time is read (`/proc/stat` through `pg_read_file`).
    pub(crate) host_cpu: bool,
    /// The reading of `pg_stat_statements` that found it readable, the first window's start.
    pub(crate) first_statements: Option<StatementSnapshot>,
}

/// The second connection and what it knows.
struct Monitor<'a> {
    client: &'a Client,
    /// [`observe_sql`], prepared once: sent every 20 ms, its parsing and planning were most
    /// of the monitor's cost on the server.
    observe: tokio_postgres::Statement,
    /// The backfill's backends (the migration's and the workers'), whose blocked sessions
    /// are counted.
    backfill_pids: Vec<i32>,
    /// Pids left out of the session counts: the backfill's and the monitor's.
    own_pids: Vec<i32>,
    probe: Option<&'a str>,
    /// [`statements_sql`], prepared; `None` when `pg_stat_statements` cannot be read here.
    statements: Option<tokio_postgres::Statement>,
}

/// One reading of `pg_stat_activity` and `pg_stat_database`.
struct Reading {
    blocked: u32,
    active: u32,
    running: u32,
    xacts: i64,
    active_ms: Option<f64>,
    /// `query_id`s of our sessions' last statements (14+).
    own_queryids: Vec<i64>,
    /// The host's busy and total CPU ticks (see [`host_ticks`]).
    host_ticks: Option<(u64, u64)>,
}

fn median(values: Vec<Duration>) -> Option<Duration> {
    quantile(values, 0.5)
}

/// The value `q` of the way up the sorted `values` (nearest rank).
fn quantile(mut values: Vec<Duration>, q: f64) -> Option<Duration> {
    values.sort();
    let index = ((values.len() as f64 * q) as usize).min(values.len().saturating_sub(1));
    values.get(index).copied()
}

/// The share of a cycle's probes that decides whether it was slow: past the median, so a
/// cycle whose batch slows the application for a third of its time counts even though its
/// rest (the other two thirds) looks clean.
const CYCLE_PROBE_QUANTILE: f64 = 0.75;

/// The server's CPUs, as the server's own `/proc/cpuinfo` lists them; needs a superuser or
/// `pg_read_server_files`. `None` when it cannot be read.
async fn server_cpus(client: &Client, limits: Limits) -> Option<u32> {
    let answer = within(
        Some(limits.own),
        "reading the server's CPU count",
        client.query_one(
            "SELECT count(*) FROM regexp_split_to_table(pg_read_file('/proc/cpuinfo'), '\n') l \
             WHERE l ~ '^processor\\s*:'",
            &[],
        ),
    )
    .await
    .ok()?
    .ok()?;
    u32::try_from(answer.get::<_, i64>(0))
        .ok()
        .filter(|&cpus| cpus > 0)
}

/// Prepares the reading of `pg_stat_statements` when it is installed in this database and
/// readable (its library in `shared_preload_libraries`), and reads it once (the first
/// snapshot); otherwise says why the statement latency signal is off.
async fn statements_reader(
    client: &Client,
    limits: Limits,
) -> Result<(tokio_postgres::Statement, Vec<tokio_postgres::Row>), String> {
    let schema = within(
        Some(limits.own),
        "looking for pg_stat_statements",
        client.query_opt(
            "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace \
             WHERE e.extname = 'pg_stat_statements'",
            &[],
        ),
    )
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| error.to_string())?
    .ok_or_else(|| "pg_stat_statements is not installed in this database".to_owned())?
    .get::<_, String>(0);
    let sql = statements_sql(&quote_identifier(&schema));
    let statement = within(
        Some(limits.own),
        "reading pg_stat_statements",
        client.prepare(&sql),
    )
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| format!("cannot read pg_stat_statements: {error}"))?;
    // Installed is not readable: without the library preloaded its function fails.
    let rows = within(
        Some(limits.own),
        "reading pg_stat_statements",
        client.query(&statement, &[]),
    )
    .await
    .map_err(|error| error.to_string())?
    .map_err(|error| format!("cannot read pg_stat_statements: {error}"))?;
    Ok((statement, rows))
}

/// A snapshot from [`statements_sql`]'s rows; the `query_id` of the reading itself is added
/// to `own`.
fn snapshot_of(rows: Vec<tokio_postgres::Row>, own: &mut HashSet<i64>) -> StatementSnapshot {
    let mut snapshot = HashMap::with_capacity(rows.len());
    for row in rows {
        if let Some(queryid) = row.get::<_, Option<i64>>(3) {
            own.insert(queryid);
        }
        snapshot.insert(row.get::<_, i64>(0), (row.get(1), row.get(2)));
    }
    StatementSnapshot(snapshot)
}

/// The `queryid` of the probe query, which the monitor runs in the rests as in the work:
/// `EXPLAIN (VERBOSE)` shows it ("Query Identifier: N") when query ids are computed. Sent
/// with the extended protocol, so a probe of several statements is refused rather than run.
async fn probe_queryid(client: &Client, probe: &str, limits: Limits) -> Option<i64> {
    let rows = within(
        Some(limits.own),
        "explaining the backfill probe query",
        client.query(&format!("EXPLAIN (VERBOSE) {probe}"), &[]),
    )
    .await
    .ok()?
    .ok()?;
    query_identifier(
        rows.iter()
            .filter_map(|row| row.try_get::<_, String>(0).ok()),
    )
}

/// The "Query Identifier: N" line of an `EXPLAIN (VERBOSE)` in text format.
fn query_identifier(lines: impl IntoIterator<Item = String>) -> Option<i64> {
    lines.into_iter().find_map(|line| {
        line.trim()
            .strip_prefix("Query Identifier:")?
            .trim()
            .parse()
            .ok()
    })
}

impl<'a> Signals<'a> {
    /// Prepares the readers and measures the baselines (a tenth of a second with a monitor).
    /// `backfill_pids`: the backends that run batches.
    pub(crate) async fn start(
        monitor: Option<&'a Client>,
        backfill_pids: Vec<i32>,
        control: &'a BackfillControl,
        limits: Limits,
    ) -> Result<(Signals<'a>, Baselines), RuntimeError> {
        let mut baselines = Baselines {
            active_sessions: control.max_active_sessions,
            probe: None,
            cpus: control.server_cpus,
        };
        let mut flush_lag = Duration::from_secs(1);
        let mut statements_off = Some("no monitor connection".to_owned());
        let mut first_statements = None;
        let mut host_cpu_read = false;
        let monitor = match monitor {
            None => None,
            Some(monitor_client) => {
                let row = within(
                    Some(limits.own),
                    "preparing the backfill monitor connection",
                    monitor_client.query_one(
                        "SELECT pg_backend_pid(), current_setting('server_version_num')::int4",
                        &[],
                    ),
                )
                .await?
                .map_err(RuntimeError::database(
                    "preparing the backfill monitor connection",
                ))?;
                let (monitor_pid, version): (i32, i32) = (row.get(0), row.get(1));
                // PostgreSQL 15 flushes backends' counts at most once a second
                // (PGSTAT_MIN_INTERVAL), 13-14 every 500 ms; `active_time` is 14+.
                if version < 150_000 {
                    flush_lag = Duration::from_millis(750);
                }
                statements_off = None;
                let statements = if version >= 140_000 {
                    match statements_reader(monitor_client, limits).await {
                        Ok((statement, rows)) => {
                            first_statements = Some(rows);
                            Some(statement)
                        }
                        Err(why) => {
                            statements_off = Some(why);
                            None
                        }
                    }
                } else {
                    statements_off =
                        Some("needs PostgreSQL 14+ (pg_stat_activity.query_id)".into());
                    None
                };
                let host_cpu = within(
                    Some(limits.own),
                    "reading the server host's CPU time",
                    monitor_client.query_one(&format!("SELECT {HOST_CPU_SQL}"), &[]),
                )
                .await
                .ok()
                .and_then(Result::ok)
                .and_then(|row| row.get::<_, Option<String>>(0))
                .as_deref()
                .and_then(host_ticks)
                .is_some();
                let observe = within(
                    Some(limits.own),
                    "preparing the backfill monitor connection",
                    monitor_client.prepare(&observe_sql(
                        version >= 140_000,
                        statements.is_some(),
                        host_cpu,
                    )),
                )
                .await?
                .map_err(RuntimeError::database(
                    "preparing the backfill monitor connection",
                ))?;
                if baselines.cpus.is_none() {
                    baselines.cpus = server_cpus(monitor_client, limits).await;
                    if baselines.cpus.is_none() {
                        tracing::warn!(
                            "cannot read the server's CPU count (pg_read_file needs \
                             pg_read_server_files): the backfill does not watch the server's \
                             CPUs; set --backfill-server-cpus"
                        );
                    }
                }
                host_cpu_read = host_cpu;
                let mut own_pids = backfill_pids.clone();
                own_pids.push(monitor_pid);
                Some(Monitor {
                    client: monitor_client,
                    observe,
                    backfill_pids,
                    own_pids,
                    probe: control.probe_query.as_deref(),
                    statements,
                })
            }
        };
        let mut own_xacts = 0;
        let mut own_queryids = HashSet::new();
        let first_statements = first_statements.map(|rows| snapshot_of(rows, &mut own_queryids));
        if let Some(monitor) = &monitor
            && monitor.statements.is_some()
            && let Some(probe) = monitor.probe
            && let Some(queryid) = probe_queryid(monitor.client, probe, limits).await
        {
            own_queryids.insert(queryid);
        }
        if let Some(monitor) = &monitor {
            let mut probes = Vec::new();
            let mut most_active = 0;
            for round in 0..BASELINE_ROUNDS {
                if round > 0 {
                    // Spacing the samples over the application's load, not synchronisation.
                    tokio::time::sleep(BASELINE_INTERVAL).await;
                }
                if let Some(took) = monitor.time_probe(limits).await? {
                    probes.push(took);
                    own_xacts += 1;
                }
                let reading = monitor.observe(limits, Duration::ZERO).await?;
                own_xacts += 1;
                own_queryids.extend(reading.own_queryids);
                most_active = most_active.max(reading.active);
            }
            baselines.probe = median(probes);
            // Twice the usual, and at least 8 more: a pool's normal jitter is not pressure.
            baselines.active_sessions = baselines.active_sessions.or(Some(
                most_active
                    .saturating_mul(2)
                    .max(most_active.saturating_add(8)),
            ));
        }
        Ok((
            Signals {
                monitor,
                limits,
                watched: Watched::default(),
                probes: Vec::new(),
                active_sum: 0,
                running_sum: 0,
                readings: 0,
                host_span: None,
                samples: VecDeque::new(),
                own_xacts,
                own_active_ms: 0.0,
                flush_lag,
                own_queryids,
                statements_off,
                first_statements,
                host_cpu: host_cpu_read,
            },
            baselines,
        ))
    }

    /// Whether the monitor still watches (it is dropped when it fails).
    pub(crate) fn watching(&self) -> bool {
        self.monitor.is_some()
    }

    /// A reading of `pg_stat_statements`; `None` when it is not read (not installed, not
    /// readable, or its reading failed once: the signal is advice, it is then off).
    pub(crate) async fn statements(&mut self) -> Option<StatementSnapshot> {
        let monitor = self.monitor.as_mut()?;
        let statement = monitor.statements.as_ref()?;
        let answer = within(
            Some(self.limits.own),
            "reading pg_stat_statements",
            monitor.client.query(statement, &[]),
        )
        .await;
        self.own_xacts += 1;
        let error = match answer {
            Ok(Ok(rows)) => return Some(snapshot_of(rows, &mut self.own_queryids)),
            Ok(Err(error)) => error.to_string(),
            Err(error) => error.to_string(),
        };
        tracing::warn!(
            %error,
            "reading pg_stat_statements failed; the backfill does not watch statement latency any more"
        );
        monitor.statements = None;
        None
    }

    /// `query_id`s of our own statements seen so far.
    pub(crate) fn own_queryids(&self) -> &HashSet<i64> {
        &self.own_queryids
    }

    /// Our connections ran `xacts` transactions that spent `active` on the server: they are
    /// not the application's.
    pub(crate) fn count_own(&mut self, xacts: u64, active: Duration) {
        self.own_xacts += xacts;
        self.own_active_ms += active.as_secs_f64() * 1000.0;
    }

    /// What was seen since the last call: the most blocked sessions, the mean active and
    /// running ones, the probe latency at [`CYCLE_PROBE_QUANTILE`].
    pub(crate) fn take_watched(&mut self) -> Watched {
        let mut watched = std::mem::take(&mut self.watched);
        watched.probe = quantile(std::mem::take(&mut self.probes), CYCLE_PROBE_QUANTILE);
        if self.readings > 0 {
            watched.active_sessions = Some(self.active_sum.div_ceil(self.readings) as u32);
            watched.running = Some(self.running_sum as f64 / self.readings as f64);
        }
        if let Some(((busy_from, total_from), last)) = self.host_span {
            let (busy_to, total_to) = last;
            if total_to > total_from {
                watched.host_busy =
                    Some(busy_to.saturating_sub(busy_from) as f64 / (total_to - total_from) as f64);
            }
            // The next cycle starts where this one's last reading ended.
            self.host_span = Some((last, last));
        }
        (self.active_sum, self.running_sum, self.readings) = (0, 0, 0);
        watched
    }

    /// The application's transactions per second and server milliseconds per transaction
    /// over the real time `from..to`: the counters read `flush_lag` later, our own
    /// transactions and batch time taken out. `None` without readings that far.
    pub(crate) fn application_rate(
        &self,
        from: Instant,
        to: Instant,
    ) -> Option<(f64, Option<f64>)> {
        let lag = self.flush_lag;
        let first_after = |when: Instant| self.samples.iter().find(|s| s.at >= when).copied();
        let last_before = |when: Instant| self.samples.iter().rev().find(|s| s.at <= when).copied();
        let (start, end) = (first_after(from + lag)?, last_before(to + lag)?);
        let span = end.at.checked_duration_since(start.at)?;
        // Readings must cover most of the window (the monitor reads only while it watches).
        if span < to.checked_duration_since(from)? / 2 {
            return None;
        }
        // Our own transactions as they ran, the counters as they were flushed.
        let own_start = last_before(start.at.checked_sub(lag)?).unwrap_or(start);
        let own_end = last_before(end.at.checked_sub(lag)?).unwrap_or(end);
        let own = own_end.own_xacts.saturating_sub(own_start.own_xacts) as f64;
        let xacts = ((end.xacts - start.xacts) as f64 - own).max(0.0);
        let server_ms = match (start.active_ms, end.active_ms) {
            (Some(a), Some(b)) if xacts >= 1.0 => {
                let own_ms = own_end.own_active_ms - own_start.own_active_ms;
                Some(((b - a) - own_ms).max(0.0) / xacts)
            }
            _ => None,
        };
        Some((xacts / span.as_secs_f64(), server_ms))
    }

    /// Runs `batch` (or a rest) while the monitor watches the server, adding what it sees
    /// to [`Signals::take_watched`]. Without a monitor only the batch runs.
    pub(crate) async fn watch<F: Future>(&mut self, batch: F, patience: Duration) -> F::Output {
        let Some(monitor) = &self.monitor else {
            return batch.await;
        };
        let limits = self.limits;
        let probes = &mut self.probes;
        let watched = &mut self.watched;
        let (active_sum, running_sum, readings) = (
            &mut self.active_sum,
            &mut self.running_sum,
            &mut self.readings,
        );
        let samples = &mut self.samples;
        let host_span = &mut self.host_span;
        let own_xacts = &mut self.own_xacts;
        let own_queryids = &mut self.own_queryids;
        let own_active_ms = self.own_active_ms;
        let mut failure = None;
        let watching = async {
            let mut round = 0u32;
            loop {
                if round.is_multiple_of(PROBE_EVERY) {
                    match monitor.time_probe(limits).await {
                        Ok(Some(took)) => {
                            probes.push(took);
                            *own_xacts += 1;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            failure = Some(error);
                            break;
                        }
                    }
                }
                round = round.wrapping_add(1);
                match monitor.observe(limits, patience).await {
                    Ok(reading) => {
                        *own_xacts += 1;
                        watched.blocked_sessions = watched.blocked_sessions.max(reading.blocked);
                        *active_sum += u64::from(reading.active);
                        *running_sum += u64::from(reading.running);
                        *readings += 1;
                        own_queryids.extend(reading.own_queryids);
                        if let Some(ticks) = reading.host_ticks {
                            *host_span = Some(match *host_span {
                                Some((first, _)) => (first, ticks),
                                None => (ticks, ticks),
                            });
                        }
                        samples.push_back(Sample {
                            at: Instant::now(),
                            xacts: reading.xacts,
                            active_ms: reading.active_ms,
                            own_xacts: *own_xacts,
                            own_active_ms,
                        });
                        if samples.len() > MAX_SAMPLES {
                            samples.pop_front();
                        }
                    }
                    Err(error) => {
                        failure = Some(error);
                        break;
                    }
                }
                // Sampling cadence, not synchronisation: the batch ends the watch.
                tokio::time::sleep(WATCH_INTERVAL).await;
            }
        };
        tokio::pin!(batch);
        let output = tokio::select! {
            output = &mut batch => output,
            // The watch ends early only when the monitor failed: the batch goes on alone.
            () = watching => (&mut batch).await,
        };
        if let Some(error) = failure {
            // The signals are advice: a monitor that fails does not fail the backfill, which
            // goes on under the other signals.
            tracing::warn!(%error, "the backfill monitor connection failed; it is not used any more");
            self.monitor = None;
        }
        output
    }
}

impl Monitor<'_> {
    /// The probe query's latency; `None` without a probe query.
    async fn time_probe(&self, limits: Limits) -> Result<Option<Duration>, RuntimeError> {
        let Some(probe) = self.probe else {
            return Ok(None);
        };
        let started = Instant::now();
        within(
            Some(limits.own),
            "running the backfill probe query",
            self.client.simple_query(probe),
        )
        .await?
        .map_err(RuntimeError::database("running the backfill probe query"))?;
        Ok(Some(started.elapsed()))
    }

    /// Sessions that have waited longer than `patience` on a lock the backfill holds, active
    /// and running sessions other than ours, the database's counters. A wait shorter than
    /// the target batch duration is the one the target allows: a write meeting a batch's
    /// row lock waits for the batch. `pg_blocking_pids` is only called for sessions waiting
    /// on a lock that long: the docs warn that frequent calls cost (it takes the lock
    /// manager's locks).
    async fn observe(&self, limits: Limits, patience: Duration) -> Result<Reading, RuntimeError> {
        let patience_ms = patience.as_secs_f64() * 1000.0;
        let row = within(
            Some(limits.own),
            "reading pg_stat_activity",
            self.client.query_one(
                &self.observe,
                &[&self.backfill_pids, &self.own_pids, &patience_ms],
            ),
        )
        .await?
        .map_err(RuntimeError::database("reading pg_stat_activity"))?;
        let count = |index: usize| u32::try_from(row.get::<_, i64>(index)).unwrap_or(u32::MAX);
        Ok(Reading {
            blocked: count(0),
            active: count(1),
            running: count(2),
            xacts: row.get::<_, Option<i64>>(3).unwrap_or(0),
            active_ms: row.get(4),
            own_queryids: row.get::<_, Option<Vec<i64>>>(5).unwrap_or_default(),
            host_ticks: row
                .get::<_, Option<String>>(6)
                .as_deref()
                .and_then(host_ticks),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_cpu_line_splits_into_busy_and_total_ticks() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        let line = "cpu  100 5 20 800 50 3 2 10 40 0";
        assert_eq!(host_ticks(line), Some((140, 990)));
        assert_eq!(host_ticks("cpu0 1 2 3 4 5 6 7 8"), None, "one CPU's line");
        assert_eq!(
            host_ticks("cpu 1 2 3"),
            None,
            "too few fields (an old kernel)"
        );
        assert_eq!(host_ticks("intr 1 2 3 4 5 6 7 8"), None);
    }

    #[test]
    fn median_of_probes() {
        let ms = Duration::from_millis;
        assert_eq!(median(vec![]), None);
        assert_eq!(median(vec![ms(3), ms(1), ms(9)]), Some(ms(3)));
        // Three clean probes of the rest and one slowed by the batch: the median hides the
        // batch, the cycle's quantile does not.
        let cycle = vec![ms(1), ms(1), ms(1), ms(6)];
        assert_eq!(median(cycle.clone()), Some(ms(1)));
        assert_eq!(quantile(cycle, CYCLE_PROBE_QUANTILE), Some(ms(6)));
        assert_eq!(quantile(vec![ms(2)], CYCLE_PROBE_QUANTILE), Some(ms(2)));
    }

    /// Readings every 20 ms for `seconds`: the application commits `app` tx/s, we `own`
    /// tx/s, and the counters show both `lag` late.
    fn signals_with(
        seconds: f64,
        app: f64,
        own: f64,
        lag: Duration,
    ) -> (Signals<'static>, Instant) {
        let start = Instant::now();
        let mut signals = Signals {
            monitor: None,
            limits: Limits::new(
                Duration::from_secs(1),
                Duration::from_secs(1),
                Duration::from_secs(1),
            ),
            watched: Watched::default(),
            probes: Vec::new(),
            active_sum: 0,
            running_sum: 0,
            readings: 0,
            host_span: None,
            samples: VecDeque::new(),
            own_xacts: 0,
            own_active_ms: 0.0,
            flush_lag: lag,
            own_queryids: HashSet::new(),
            statements_off: None,
            first_statements: None,
            host_cpu: false,
        };
        let mut t = 0.0;
        while t <= seconds {
            let flushed = (t - lag.as_secs_f64()).max(0.0);
            signals.samples.push_back(Sample {
                at: start + Duration::from_secs_f64(t),
                xacts: ((app + own) * flushed) as i64,
                active_ms: Some(0.2 * app * flushed),
                own_xacts: (own * t) as u64,
                own_active_ms: 0.0,
            });
            t += 0.02;
        }
        (signals, start)
    }

    #[test]
    fn the_application_rate_leaves_ours_out_and_reads_the_counters_a_lag_later() {
        let lag = Duration::from_secs(1);
        let (signals, start) = signals_with(6.0, 1000.0, 60.0, lag);
        let at = |s: f64| start + Duration::from_secs_f64(s);
        let (tps, server_ms) = signals.application_rate(at(1.0), at(4.0)).unwrap();
        assert!((tps - 1000.0).abs() < 30.0, "{tps}");
        let server_ms = server_ms.unwrap();
        assert!((server_ms - 0.2).abs() < 0.02, "{server_ms}");
        // No readings that late yet: nothing to say.
        assert_eq!(signals.application_rate(at(5.0), at(8.0)), None);
    }

    fn snapshot(rows: &[(i64, i64, f64)]) -> StatementSnapshot {
        StatementSnapshot(
            rows.iter()
                .map(|&(queryid, calls, ms)| (queryid, (calls, ms)))
                .collect(),
        )
    }

    #[test]
    fn statement_latency_compares_the_same_statements_leaving_ours_out() {
        let none = HashSet::new();
        // Statement 1: 0.1 ms per call in the rest, 0.3 ms during the work. Statement 2,
        // 1 ms per call, is called far more during the work: the mix changed, its speed did
        // not. Statement 9 (ours, the batch) runs only during the work.
        let began = snapshot(&[(1, 1_000, 100.0), (2, 100, 100.0), (9, 10, 500.0)]);
        let work_ended = snapshot(&[(1, 2_000, 400.0), (2, 1_100, 1_100.0), (9, 90, 4_500.0)]);
        let rest_ended = snapshot(&[(1, 2_100, 410.0), (2, 1_200, 1_200.0), (9, 90, 4_500.0)]);
        let (resting, working) =
            statement_latency((&began, &work_ended), (&work_ended, &rest_ended), &none).unwrap();
        // 1,000 calls of each during the work: at the rests' speed 0.1 + 1 ms, during it
        // 0.3 + 1 ms.
        assert!((resting - 0.55).abs() < 1e-9, "{resting}");
        assert!((working - 0.65).abs() < 1e-9, "{working}");
        // Our own statement, had it run in the rest too, is left out by its queryid.
        let ours = HashSet::from([1]);
        let (resting, working) =
            statement_latency((&began, &work_ended), (&work_ended, &rest_ended), &ours).unwrap();
        assert_eq!((resting, working), (1.0, 1.0));
        // Too few calls in the rest to say anything; a reset in between leaves a statement
        // out.
        let quiet_rest = snapshot(&[(1, 2_004, 400.4), (2, 1_102, 1_102.0)]);
        assert_eq!(
            statement_latency((&began, &work_ended), (&work_ended, &quiet_rest), &none),
            None
        );
        let reset = snapshot(&[(1, 50, 5.0), (2, 1_200, 1_200.0)]);
        let (resting, working) =
            statement_latency((&began, &work_ended), (&work_ended, &reset), &none).unwrap();
        assert_eq!((resting, working), (1.0, 1.0));
    }

    #[test]
    fn the_probe_queryid_is_read_from_its_explain() {
        // As PostgreSQL 15 prints it with query ids computed.
        let plan = [
            "Aggregate  (cost=4.29..4.30 rows=1 width=8)",
            "  Output: count(*)",
            "Query Identifier: -225799082207542138",
        ];
        assert_eq!(
            query_identifier(plan.map(String::from)),
            Some(-225_799_082_207_542_138)
        );
        // Query ids not computed (compute_query_id = off): no such line.
        assert_eq!(
            query_identifier(plan[..2].iter().map(|l| l.to_string())),
            None
        );
    }
}
