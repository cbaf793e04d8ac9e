//! The backfill controller's decisions, without I/O: how many rows the next batch takes, how
//! long to rest before it, and whether to run at all.
//!
//! - **Size.** Each batch should take about the target duration: a batch holds its rows'
//!   locks for as long as it runs, so the target bounds how long an application write can
//!   queue behind it. The size is the moving average of the measured rows/s times the
//!   target, within `[min, max]`; it starts at `min` and at most doubles per batch, so a
//!   cold cache or a wrong first measure cannot produce one huge batch (pt-online-schema-
//!   change's `--chunk-time` works the same way).
//! - **Back-off.** When the application suffers, the backfill rests between batches, for a
//!   multiple of its batch duration (so it takes a bounded share of the server's time, the
//!   resource it competes for): the multiple starts at 0.5, doubles while the pressure lasts
//!   (up to 4: a fifth of the time) and shrinks by 30% per clean cycle until it is gone.
//!   Lock pressure (sessions waiting on our row locks) also halves the size: a smaller
//!   batch holds fewer locks for less time. Load pressure (too many active sessions, the
//!   probe query slower than its baseline) does not: a smaller batch costs as much CPU per
//!   row, only more overhead. A batch much slower than usual at its size halves the next
//!   one without resting: it held its rows too long, but batch durations on a busy server
//!   are noisy, and the application's own signals say whether it suffers.
//! - **Pause.** While a pause reason holds (replica lag, the throttle query, the operator's
//!   pause), no batch runs at all.
//!
//! The reading of the signals lives in `backfill_signals`; this module only decides.

use std::fmt;
use std::time::Duration;

use crate::runtime::backfill::stops::PauseReason;

/// Weight of the newest batch in the moving average of rows/s.
const RATE_SMOOTHING: f64 = 0.3;
/// Longest rest between two batches while backing off.
pub(crate) const MAX_REST: Duration = Duration::from_secs(5);
/// The first rest, as a multiple of the batch's duration ...
const FIRST_REST_RATIO: f64 = 0.5;
/// ... the most (the backfill then runs a fifth of the time) ...
const MAX_REST_RATIO: f64 = 4.0;
/// ... what a clean cycle keeps of it ...
const REST_RECOVERY: f64 = 0.7;
/// ... and under which it is gone.
const MIN_REST_RATIO: f64 = 0.1;
/// The probe counts as slowed past this multiple of its baseline ...
const PROBE_SLOWDOWN: f64 = 2.0;
/// ... and by at least this much: sub-millisecond jitter is not the application suffering.
const PROBE_MIN_EXCESS: Duration = Duration::from_millis(2);
/// A batch at the same size as the one before counts as slowing past this multiple of the
/// average duration at that size.
const BATCH_SLOWDOWN: f64 = 2.0;
/// Other sessions running less than this on average is no application to protect: the
/// backfill may use the CPUs.
const CPU_OTHERS_FLOOR: f64 = 0.25;
/// The application's rate counts as dropped below this share of its rate in the rests ...
const THROUGHPUT_KEPT: f64 = 0.98;
/// The most that margin widens for scattered readings: a drop this large is a drop however
/// noisy the rests.
pub(crate) const MAX_RATE_NOISE: f64 = 0.2;
/// The share of the application's throughput a backfill may cost it on average: after a
/// throughput drop the rest is sized so that the loss measured while batches ran, spread
/// over batches and rests, stays under it.
const THROUGHPUT_LOSS_ALLOWED: f64 = 0.015;
/// Longest rest after a throughput drop, as a multiple of the batch duration (a duty of 5%).
const MAX_WINDOW_REST_RATIO: f64 = 19.0;
/// ... and its server time per transaction (or its statements' time per call) as risen past
/// this multiple ...
const SERVER_TIME_RISE: f64 = 1.5;
/// ... once it runs at least this many transactions per second: below, one transaction more
/// or less is noise.
const MIN_APPLICATION_TPS: f64 = 50.0;
/// The rest, as a multiple of the batch's duration, a backfill starts with when rest windows
/// will measure the application: half the time until the first window says what the batches
/// cost it, since a drop found only after a first window at full speed has already been paid.
const START_REST_RATIO: f64 = 1.0;
/// What the rests the server's CPU headroom sets are held by: [`Pressure::ServerCpu`]'s
/// signal.
const CPU_SIGNAL: &str = "server CPU";
/// What the rests before the first rest window found the application unharmed are held by.
pub(crate) const SLOW_START: &str = "slow start (until the application is measured)";
/// Clean cycles in a row before the controller adds a worker.
const CLEAN_CYCLES_PER_WORKER: u32 = 10;
/// Weight of the newest cycle in the moving average of the other sessions running: one
/// cycle's mean is a handful of 20 ms readings.
const OTHERS_SMOOTHING: f64 = 0.2;
/// The least duty the server's CPU headroom leaves a backfill (a rest of 19 batches).
const MIN_CPU_DUTY: f64 = 0.05;

/// The controller's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ControllerSettings {
    /// The duration each batch aims at ...
    pub target: Duration,
    /// ... and while an application is measured on the server (`None`: `target` throughout).
    pub busy_target: Option<Duration>,
    /// Smallest batch, and the first one.
    pub min_batch: u32,
    /// Largest batch.
    pub max_batch: u32,
    /// Most batches at once, over disjoint key ranges (each on its own connection).
    pub max_workers: u32,
    /// The share of the server's CPUs, in percent, that everything running there (our
    /// batches included) is kept under: past it, sessions queue for a CPU often enough to
    /// show in the application's p99.
    pub max_cpu_percent: u32,
}

impl ControllerSettings {
    /// The server's CPUs the controller keeps everything running under.
    fn cpu_budget(&self, cpus: u32) -> f64 {
        f64::from(cpus) * f64::from(self.max_cpu_percent.clamp(1, 100)) / 100.0
    }
}

/// A sign that the application suffers from the backfill.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Pressure {
    /// Sessions waited longer than the target on locks our batch held.
    BlockedSessions(u32),
    /// More active sessions than the limit.
    ActiveSessions {
        /// Active sessions seen during the batch (ours excluded).
        count: u32,
        /// The configured or derived limit.
        limit: u32,
    },
    /// The probe query ran slower than its baseline.
    ProbeSlow {
        /// Its latency during the cycle (75th percentile).
        latency: Duration,
        /// Its median latency before the backfill.
        baseline: Duration,
    },
    /// Our batch took much longer than the ones before it at the same size.
    BatchSlowing {
        /// This batch's duration.
        took: Duration,
        /// The average at this size, or the target before there is one.
        usual: Duration,
    },
    /// The server's CPUs are busy: client sessions running (active, no wait event) over the
    /// cycle, ours included, past the share of the server's CPUs the controller leaves room
    /// under.
    ServerCpu {
        /// Mean sessions on (or queued for) a CPU over the cycle, ours included.
        running: f64,
        /// The server's CPUs.
        cpus: u32,
    },
    /// The application's transactions per second (other sessions', from
    /// `pg_stat_database`) while batches ran fell below their rate in the backfill's rests.
    ThroughputDrop {
        /// Transactions per second in the rest windows.
        resting: f64,
        /// Transactions per second while batches ran.
        working: f64,
    },
    /// The application's statements (`pg_stat_statements`, when installed) took longer per
    /// call while batches ran than the same statements in the rests.
    StatementLatencyUp {
        /// Mean milliseconds per call at the rests' speed, for the calls made during batches.
        resting_ms: f64,
        /// Mean milliseconds per call while batches ran.
        working_ms: f64,
    },
    /// The server time per application transaction (`pg_stat_database.active_time`, 14+)
    /// while batches ran rose above its value in the rests.
    ServerTimeUp {
        /// Milliseconds per transaction in the rest windows.
        resting_ms: f64,
        /// Milliseconds per transaction while batches ran.
        working_ms: f64,
    },
}

impl Pressure {
    /// A short name of the signal, as the throttle report counts it.
    pub fn signal(&self) -> &'static str {
        match self {
            Pressure::BlockedSessions(_) => "lock waits",
            Pressure::ActiveSessions { .. } => "active sessions",
            Pressure::ProbeSlow { .. } => "probe latency",
            Pressure::BatchSlowing { .. } => "slow batch",
            Pressure::ServerCpu { .. } => CPU_SIGNAL,
            Pressure::ThroughputDrop { .. } => "application throughput",
            Pressure::StatementLatencyUp { .. } => "statement latency",
            Pressure::ServerTimeUp { .. } => "server time per transaction",
        }
    }

    /// Pressure from our row locks (not from the server's load): smaller batches help.
    fn is_lock_pressure(&self) -> bool {
        matches!(
            self,
            Pressure::BlockedSessions(_) | Pressure::BatchSlowing { .. }
        )
    }

    /// Pressure the application is seen to feel, which a rest relieves. A slow batch alone
    /// is not: on a busy server batch durations vary several-fold from one batch to the
    /// next, and resting on each slow one kept a quiet-machine benchmark at 3% of the bulk
    /// rate while the probe showed the application unharmed. A slow
    /// batch shrinks the next one (it held its rows too long); whether to rest is the
    /// probe's, the session count's and the lock waits' call.
    fn calls_for_rest(&self) -> bool {
        !matches!(self, Pressure::BatchSlowing { .. })
    }
}

impl fmt::Display for Pressure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: &Duration| format!("{:.1}ms", d.as_secs_f64() * 1000.0);
        match self {
            Pressure::BlockedSessions(n) => {
                write!(
                    f,
                    "{n} session(s) waited on our row locks longer than the target"
                )
            }
            Pressure::ActiveSessions { count, limit } => {
                write!(f, "{count} active sessions (limit {limit})")
            }
            Pressure::ProbeSlow { latency, baseline } => write!(
                f,
                "probe query took {} (baseline {})",
                ms(latency),
                ms(baseline)
            ),
            Pressure::BatchSlowing { took, usual } => write!(
                f,
                "batch took {} at a size that usually takes {}",
                ms(took),
                ms(usual)
            ),
            Pressure::ServerCpu { running, cpus } => write!(
                f,
                "{running:.1} sessions running on {cpus} server CPU(s), ours included"
            ),
            Pressure::ThroughputDrop { resting, working } => write!(
                f,
                "application throughput {working:.0} tx/s during batches, {resting:.0} tx/s in rests ({:+.1}%)",
                (working / resting - 1.0) * 100.0
            ),
            Pressure::StatementLatencyUp {
                resting_ms,
                working_ms,
            } => write!(
                f,
                "application statements took {working_ms:.3}ms per call during batches, \
                 {resting_ms:.3}ms in rests (pg_stat_statements)"
            ),
            Pressure::ServerTimeUp {
                resting_ms,
                working_ms,
            } => write!(
                f,
                "server time per transaction {working_ms:.2}ms during batches, {resting_ms:.2}ms in rests"
            ),
        }
    }
}

/// What the controller is doing, as `migrate backfill` and the progress bar show it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PaceState {
    /// Batches sized to the target, no rest.
    Running,
    /// `batch=`/`delay=`: fixed batches, no control.
    Fixed,
    /// Smaller batches and a rest between them.
    BackingOff(Pressure),
    /// No batch runs.
    Paused(PauseReason),
}

impl fmt::Display for PaceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PaceState::Running => f.write_str("running"),
            PaceState::Fixed => f.write_str("fixed (batch=/delay=)"),
            PaceState::BackingOff(pressure) => write!(f, "backing off: {pressure}"),
            PaceState::Paused(reason) => write!(f, "{reason}"),
        }
    }
}

/// What was seen while one batch ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct BatchObservation {
    /// The size asked for.
    pub size: u32,
    /// Keys it covered (its size, short of it only at the end of a pass).
    pub rows: i64,
    /// How long it took.
    pub took: Duration,
    /// Most sessions seen waiting on our batch's locks.
    pub blocked_sessions: u32,
    /// Most active sessions seen (ours excluded); `None` when not read.
    pub active_sessions: Option<u32>,
    /// Probe latency during the cycle (75th percentile); `None` when no probe ran.
    pub probe: Option<Duration>,
    /// Other client sessions on (or queued for) a CPU, mean over the cycle (rest and
    /// batch); `None` when not read.
    pub running: Option<f64>,
    /// The share of the server host's CPU time busy over the cycle, ours included (see
    /// [`crate::runtime::backfill::signals::Watched::host_busy`]); `None` when not read.
    pub host_busy: Option<f64>,
    /// Batches that ran at once (workers).
    pub workers: u32,
}

/// The thresholds measured before the backfill.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct Baselines {
    /// Most active sessions allowed.
    pub active_sessions: Option<u32>,
    /// The probe's median latency before the backfill.
    pub probe: Option<Duration>,
    /// The server's CPUs, when known.
    pub cpus: Option<u32>,
}

/// The application's rate and server time in the backfill's rest windows and while its
/// batches ran, from `pg_stat_database`, other sessions only.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ApplicationRates {
    /// Transactions per second in rests.
    pub resting_tps: f64,
    /// Transactions per second while batches ran.
    pub working_tps: f64,
    /// Server milliseconds per transaction in rests (`active_time`, 14+).
    pub resting_ms: Option<f64>,
    /// Server milliseconds per transaction while batches ran.
    pub working_ms: Option<f64>,
    /// The application's statements' execution time per call at the rests' speed
    /// (`pg_stat_statements`, when installed; mix-adjusted: the calls made while batches ran,
    /// each at its statement's mean in the rests).
    pub resting_statement_ms: Option<f64>,
    /// The same calls' execution time per call while batches ran.
    pub working_statement_ms: Option<f64>,
}

/// A change the controller made, for its `tracing` event.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Decision {
    /// Same size, same rest.
    Steady,
    /// The size follows the measured rows/s.
    Resize {
        /// Size before.
        from: u32,
        /// Size after.
        to: u32,
    },
    /// The application suffers: smaller batches, a longer rest.
    BackOff {
        /// Why.
        pressure: Pressure,
        /// Size after.
        size: u32,
        /// Rest after.
        rest: Duration,
    },
    /// The pressure is gone: the rest is shorter (zero: back to running).
    Recover {
        /// Rest after.
        rest: Duration,
    },
}

/// The controller of one backfill statement.
#[derive(Debug, Clone)]
pub(crate) struct Controller {
    settings: ControllerSettings,
    size: u32,
    /// The rest as a multiple of the last batch's duration; 0: none.
    rest_ratio: f64,
    /// The last batch's duration.
    last_took: Duration,
    /// Moving average of rows/s; `None` before the first batch that updated rows.
    rate: Option<f64>,
    /// Moving average of the batch duration at `size`, reset when the size changes much.
    usual: Option<Duration>,
    state: PaceState,
    /// Batches run at once, `1..=max_workers`.
    workers: u32,
    /// Clean cycles since the last pressure or worker added.
    clean_cycles: u32,
    /// The least rest multiple until the next rate window: a window's verdict covers
    /// seconds of cycles, so clean cycles alone do not undo it.
    window_floor: f64,
    /// Half speed until the first rest window has measured the application.
    slow_start: bool,
    /// The last rest window found an application (or none has run yet): batches aim at the
    /// busy target.
    busy: bool,
    /// The signal the rest between batches is for: the pressure that set the rest ratio, not
    /// merely the latest one (a slow batch does not rest, but it must not take over a rest
    /// that a throughput drop sized).
    rest_cause: &'static str,
    /// How far the application's measured throughput may fall below its rests' before it
    /// counts as a drop: the rests' own scatter (see [`Controller::set_rate_noise`]).
    rate_noise: f64,
    /// Moving average of the other sessions running (active, no wait event) per cycle.
    others_running: Option<f64>,
    /// Moving average of the host's CPUs kept busy by others than our batches, per cycle.
    others_host: Option<f64>,
    /// The least rest multiple the server's CPU headroom allows (see
    /// [`Controller::cpu_floor`]); 0: the CPUs have room for a batch at full speed.
    cpu_floor: f64,
}

impl Controller {
    pub(crate) fn new(settings: ControllerSettings) -> Controller {
        let min = settings.min_batch.max(1);
        Controller {
            settings: ControllerSettings {
                min_batch: min,
                max_batch: settings.max_batch.max(min),
                ..settings
            },
            size: min,
            rest_ratio: 0.0,
            last_took: Duration::ZERO,
            rate: None,
            usual: None,
            state: PaceState::Running,
            workers: 1,
            clean_cycles: 0,
            window_floor: 0.0,
            slow_start: false,
            busy: true,
            rest_cause: SLOW_START,
            rate_noise: 0.0,
            others_running: None,
            others_host: None,
            cpu_floor: 0.0,
        }
    }

    /// The relative scatter of the rests' throughput readings, up to [`MAX_RATE_NOISE`]: a
    /// server counts a session's transactions when it flushes them, about once a second, so
    /// a one-second reading of a few sessions can be off by a session's whole second. A
    /// throughput comparison then only counts a drop beyond that scatter.
    pub(crate) fn set_rate_noise(&mut self, noise: f64) {
        self.rate_noise = noise.clamp(0.0, MAX_RATE_NOISE);
    }

    /// Starts at half speed, held there until a rest window finds the application unharmed
    /// (or idle): for a controller whose rest windows measure the application.
    pub(crate) fn start_slowly(&mut self) {
        self.rest_ratio = START_REST_RATIO;
        self.window_floor = START_REST_RATIO;
        self.slow_start = true;
        self.rest_cause = SLOW_START;
    }

    /// The signal the rest between batches is for.
    pub(crate) fn rest_cause(&self) -> &'static str {
        self.rest_cause
    }

    /// The slow start's own rest goes at once: the window found nothing to protect, and
    /// easing it off batch by batch only delayed full speed (and the first extra worker).
    fn end_slow_start(&mut self) {
        self.window_floor = 0.0;
        if self.state == PaceState::Running && self.rest_ratio <= START_REST_RATIO {
            self.rest_ratio = 0.0;
        }
    }

    /// A rest window found no application to speak of: one transaction more or less is noise.
    pub(crate) fn idle(rates: &ApplicationRates) -> bool {
        rates.resting_tps < MIN_APPLICATION_TPS
    }

    /// Batches to run at once.
    pub(crate) fn workers(&self) -> u32 {
        self.workers
    }

    /// The rest multiple that keeps the server's CPUs under `max_cpu_percent` busy: the other
    /// sessions running (their moving average, from `running`, this cycle's mean) plus our
    /// batches for the share of the time they run. Doubling the rest on each busy cycle and
    /// easing it off on each clean one swung between full speed and long rests, and at full
    /// speed a batch takes a CPU the application's sessions then queue for, which is what
    /// the application's p99 shows.
    ///
    /// Where the server host's CPU time can be read (`host_busy`), the CPUs busy by others
    /// than our batches count too, when they are more: the server's own processes, and
    /// whatever shares the host with it (an application, a pooler, another server), which
    /// queue for the same CPUs but are no client session.
    fn update_cpu_floor(&mut self, seen: &BatchObservation, cpus: Option<u32>) {
        let Some(cpus) = cpus else {
            self.cpu_floor = 0.0;
            return;
        };
        let smooth = |average: Option<f64>, now: f64| match average {
            Some(average) => average + OTHERS_SMOOTHING * (now - average),
            None => now,
        };
        if let Some(running) = seen.running {
            self.others_running = Some(smooth(self.others_running, running));
        }
        if let Some(busy) = seen.host_busy {
            let ours = f64::from(seen.workers.max(1)) * self.duty();
            let others = (busy * f64::from(cpus) - ours).max(0.0);
            self.others_host = Some(smooth(self.others_host, others));
        }
        let others = match (self.others_running, self.others_host) {
            (None, None) => {
                self.cpu_floor = 0.0;
                return;
            }
            (sessions, host) => sessions.unwrap_or(0.0).max(host.unwrap_or(0.0)),
        };
        let room = (self.settings.cpu_budget(cpus) - others) / f64::from(self.workers);
        // What the rest under the CPU signal is made of, for `--trace` / RUST_LOG=debug.
        tracing::debug!(
            sessions_running = self.others_running,
            host_busy_by_others = self.others_host,
            ours = f64::from(seen.workers.max(1)) * self.duty(),
            room,
            "backfill CPU room"
        );
        self.cpu_floor = if others < CPU_OTHERS_FLOOR || room >= 1.0 {
            0.0
        } else {
            let floor = 1.0 / room.max(MIN_CPU_DUTY) - 1.0;
            if floor < MIN_REST_RATIO { 0.0 } else { floor }
        };
    }

    /// The least rest multiple the server's CPU headroom allows now.
    #[cfg(test)]
    fn cpu_floor(&self) -> f64 {
        self.cpu_floor
    }

    /// The share of the last cycle its batches took (1 without a rest).
    fn duty(&self) -> f64 {
        let took = self.last_took.as_secs_f64();
        if took <= 0.0 {
            return 1.0;
        }
        took / (took + self.rest().as_secs_f64())
    }

    /// The application's rates in the rest windows against those while batches ran: a drop
    /// of its throughput or a rise of its server time per transaction is pressure.
    pub(crate) fn observe_window(&mut self, rates: &ApplicationRates) -> Option<Decision> {
        let slow_start = std::mem::take(&mut self.slow_start);
        let idle = Self::idle(rates);
        self.busy = !idle;
        if idle {
            self.window_floor = 0.0;
            if slow_start {
                self.end_slow_start();
            }
            return None;
        }
        let pressure = if rates.working_tps
            < rates.resting_tps * (THROUGHPUT_KEPT - self.rate_noise)
        {
            Pressure::ThroughputDrop {
                resting: rates.resting_tps,
                working: rates.working_tps,
            }
        } else if let (Some(resting_ms), Some(working_ms)) =
            (rates.resting_statement_ms, rates.working_statement_ms)
            && working_ms > resting_ms * SERVER_TIME_RISE
        {
            // Before the server time per transaction: per statement and mix-adjusted, it
            // names what the application's own statements feel.
            Pressure::StatementLatencyUp {
                resting_ms,
                working_ms,
            }
        } else if let (Some(resting_ms), Some(working_ms)) = (rates.resting_ms, rates.working_ms)
            && working_ms > resting_ms * SERVER_TIME_RISE
        {
            Pressure::ServerTimeUp {
                resting_ms,
                working_ms,
            }
        } else {
            // Unharmed: the slow start ends; the floor a drop set shrinks as a clean cycle's
            // rest does.
            if slow_start {
                self.end_slow_start();
            } else {
                self.window_floor *= REST_RECOVERY;
            }
            if self.window_floor < MIN_REST_RATIO {
                self.window_floor = 0.0;
            }
            return None;
        };
        let duty = self.duty();
        let loss = 1.0 - rates.working_tps / rates.resting_tps;
        let signal = pressure.signal();
        let mut decision = self.back_off(pressure);
        if loss > 0.0 && self.workers == 1 {
            // The loss per second of batch work, from the duty that caused it; the duty that
            // keeps the average loss under the allowance, as a rest ratio. Doubling alone
            // took several 8 s windows to get there, each costing the application.
            let per_batch_second = loss / duty.max(0.05);
            let allowed_duty = (THROUGHPUT_LOSS_ALLOWED / per_batch_second).clamp(0.05, 1.0);
            let needed = 1.0 / allowed_duty - 1.0;
            if needed > self.rest_ratio {
                self.rest_cause = signal;
                self.rest_ratio = needed.min(MAX_WINDOW_REST_RATIO);
                if let Decision::BackOff { rest, .. } = &mut decision {
                    *rest = self.rest();
                }
            }
        }
        self.window_floor = self.rest_ratio;
        Some(decision)
    }

    /// Raises the rest to the CPU headroom's floor when it is shorter; whether it did.
    fn hold_cpu_floor(&mut self) -> bool {
        if self.cpu_floor <= self.rest_ratio {
            return false;
        }
        self.rest_ratio = self.cpu_floor;
        self.rest_cause = CPU_SIGNAL;
        true
    }

    /// Smaller batches (lock pressure), fewer workers, a longer rest.
    fn back_off(&mut self, pressure: Pressure) -> Decision {
        let min = self.settings.min_batch;
        if pressure.is_lock_pressure() {
            self.size = (self.size / 2).max(min);
            self.usual = None;
        }
        self.clean_cycles = 0;
        if pressure.calls_for_rest() {
            // Fewer batches at once first; resting once a single one is left.
            if self.workers > 1 {
                self.workers -= 1;
            } else {
                self.rest_cause = pressure.signal();
                self.rest_ratio = if self.rest_ratio == 0.0 {
                    FIRST_REST_RATIO
                } else {
                    // Never below a longer rest a throughput drop asked for.
                    (self.rest_ratio * 2.0).min(MAX_REST_RATIO.max(self.rest_ratio))
                };
            }
        }
        self.state = PaceState::BackingOff(pressure.clone());
        Decision::BackOff {
            pressure,
            size: self.size,
            rest: self.rest(),
        }
    }

    /// Rows for the next batch.
    pub(crate) fn batch_size(&self) -> u32 {
        self.size
    }

    /// The batch duration aimed at: the busy target while the rest windows find an
    /// application (and before the first one), since the application's transactions queue
    /// behind a batch's CPU and its commit's WAL flush, for as long as the batch runs.
    pub(crate) fn target(&self) -> Duration {
        match self.settings.busy_target {
            Some(busy) if self.busy => busy.min(self.settings.target),
            _ => self.settings.target,
        }
    }

    /// The pause after other work of the backfill's that took `took`, at the batches' duty.
    pub(crate) fn rest_after(&self, took: Duration) -> Duration {
        took.mul_f64(self.rest_ratio).min(MAX_REST)
    }

    /// The pause before the next batch.
    pub(crate) fn rest(&self) -> Duration {
        self.last_took.mul_f64(self.rest_ratio).min(MAX_REST)
    }

    /// The moving average of rows/s.
    pub(crate) fn rows_per_second(&self) -> Option<f64> {
        self.rate
    }

    pub(crate) fn state(&self) -> &PaceState {
        &self.state
    }

    /// A pause reason holds: no batch runs. Returns whether the state changed.
    pub(crate) fn pause(&mut self, reason: PauseReason) -> bool {
        let changed = self.state != PaceState::Paused(reason.clone());
        self.state = PaceState::Paused(reason);
        changed
    }

    /// No pause reason holds any more; returns the reason that had paused it, if one had.
    pub(crate) fn resume(&mut self) -> Option<PauseReason> {
        match std::mem::replace(&mut self.state, PaceState::Running) {
            PaceState::Paused(reason) => {
                // The batch durations measured before the pause say little about now.
                self.usual = None;
                Some(reason)
            }
            other => {
                self.state = other;
                None
            }
        }
    }

    /// The first sign of pressure in `seen`, against `baselines`.
    fn pressure(&self, seen: &BatchObservation, baselines: &Baselines) -> Option<Pressure> {
        let target = self.target();
        if seen.blocked_sessions > 0 {
            return Some(Pressure::BlockedSessions(seen.blocked_sessions));
        }
        if let (Some(count), Some(limit)) = (seen.active_sessions, baselines.active_sessions)
            && count > limit
        {
            return Some(Pressure::ActiveSessions { count, limit });
        }
        if let (Some(latency), Some(baseline)) = (seen.probe, baselines.probe)
            && latency.as_secs_f64() > baseline.as_secs_f64() * PROBE_SLOWDOWN
            && latency > baseline + PROBE_MIN_EXCESS
        {
            return Some(Pressure::ProbeSlow { latency, baseline });
        }
        if let (Some(others), Some(cpus)) = (seen.running, baselines.cpus) {
            let running = others + f64::from(seen.workers.max(1)) * self.duty();
            if others >= CPU_OTHERS_FLOOR && running > self.settings.cpu_budget(cpus) {
                return Some(Pressure::ServerCpu { running, cpus });
            }
        }
        if let Some(usual) = self.usual
            && seen.size == self.size
            && seen.took.as_secs_f64() > usual.as_secs_f64() * BATCH_SLOWDOWN
            && seen.took > target
        {
            return Some(Pressure::BatchSlowing {
                took: seen.took,
                usual,
            });
        }
        // No average at this size yet (right after a resize or a pause): a batch held past
        // twice the target still held its row locks too long, whatever the rate says.
        if self.usual.is_none() && seen.took.as_secs_f64() > target.as_secs_f64() * BATCH_SLOWDOWN {
            return Some(Pressure::BatchSlowing {
                took: seen.took,
                usual: target,
            });
        }
        None
    }

    /// A batch ran: updates the rows/s average and decides the next size and rest.
    pub(crate) fn observe(&mut self, seen: &BatchObservation, baselines: &Baselines) -> Decision {
        let pressure = self.pressure(seen, baselines);
        if seen.rows > 0 && !seen.took.is_zero() {
            let rate = seen.rows as f64 / seen.took.as_secs_f64();
            self.rate = Some(match self.rate {
                Some(average) => average + RATE_SMOOTHING * (rate - average),
                None => rate,
            });
        }
        if seen.size == self.size {
            self.usual = Some(match self.usual {
                Some(usual) => {
                    usual.mul_f64(1.0 - RATE_SMOOTHING) + seen.took.mul_f64(RATE_SMOOTHING)
                }
                None => seen.took,
            });
        }
        self.last_took = seen.took;
        self.update_cpu_floor(seen, baselines.cpus);
        let (min, max) = (self.settings.min_batch, self.settings.max_batch);
        if let Some(pressure) = pressure {
            let mut decision = self.back_off(pressure);
            if self.hold_cpu_floor()
                && let Decision::BackOff { rest, .. } = &mut decision
            {
                *rest = self.rest();
            }
            return decision;
        }
        self.clean_cycles += 1;
        // Another batch at once when the cycles are clean, nothing rests, and the server's
        // CPUs have room for one more running session besides the application's.
        if self.workers < self.settings.max_workers
            && self.rest_ratio == 0.0
            && self.clean_cycles >= CLEAN_CYCLES_PER_WORKER
            && let (Some(others), Some(cpus)) = (seen.running, baselines.cpus)
            && others + f64::from(self.workers + 1) <= self.settings.cpu_budget(cpus)
        {
            self.workers += 1;
            self.clean_cycles = 0;
        }
        let recovered = if self.rest_ratio == 0.0 {
            None
        } else {
            self.rest_ratio = (self.rest_ratio * REST_RECOVERY).max(self.window_floor);
            if self.rest_ratio < MIN_REST_RATIO {
                self.rest_ratio = 0.0;
                self.state = PaceState::Running;
            }
            Some(Decision::Recover { rest: self.rest() })
        };
        // Clean, but the CPUs have no room for the batches at this pace: the rest the
        // headroom asks for holds, under the CPU signal.
        let recovered = if self.hold_cpu_floor() {
            Some(Decision::Recover { rest: self.rest() })
        } else {
            recovered
        };
        // The size follows the measured rate, also while recovering (the rate is measured
        // under the load as it is now); a batch that was short of rows (the end of the table)
        // says nothing about the rate at a larger size.
        let from = self.size;
        if let Some(rate) = self.rate
            && seen.rows >= i64::from(seen.size)
        {
            let wanted = (rate * self.target().as_secs_f64()).round();
            let wanted = if wanted >= f64::from(max) {
                max
            } else {
                wanted as u32
            };
            self.size = wanted.min(from.saturating_mul(2)).clamp(min, max);
        } else if seen.took > self.target() {
            // Slow and short: no rate to follow, but the target is passed.
            self.size = (from / 2).max(min);
        }
        if self.size.abs_diff(from) > from / 10 {
            self.usual = None;
        }
        match recovered {
            Some(decision) => decision,
            None if self.size != from => Decision::Resize {
                from,
                to: self.size,
            },
            None => Decision::Steady,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ControllerSettings {
        ControllerSettings {
            target: Duration::from_millis(100),
            busy_target: None,
            min_batch: 100,
            max_batch: 50_000,
            max_workers: 1,
            max_cpu_percent: 75,
        }
    }

    /// A batch of `size` rows, all updated, at `rows_per_second`.
    fn batch(size: u32, rows_per_second: f64) -> BatchObservation {
        BatchObservation {
            size,
            rows: i64::from(size),
            took: Duration::from_secs_f64(f64::from(size) / rows_per_second),
            ..BatchObservation::default()
        }
    }

    #[test]
    fn starts_small_and_grows_at_most_twofold_per_batch_to_the_target() {
        let mut controller = Controller::new(settings());
        assert_eq!(controller.batch_size(), 100);
        let mut sizes = Vec::new();
        for _ in 0..12 {
            let seen = batch(controller.batch_size(), 100_000.0);
            controller.observe(&seen, &Baselines::default());
            sizes.push(controller.batch_size());
        }
        // 100,000 rows/s for 100 ms: 10,000 rows, reached by doubling.
        assert_eq!(
            &sizes[..8],
            [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000]
        );
        assert_eq!(controller.state(), &PaceState::Running);
        assert_eq!(controller.rest(), Duration::ZERO);
    }

    #[test]
    fn the_size_stays_within_its_bounds() {
        let mut fast = Controller::new(settings());
        for _ in 0..30 {
            let seen = batch(fast.batch_size(), 10_000_000.0);
            fast.observe(&seen, &Baselines::default());
        }
        assert_eq!(fast.batch_size(), 50_000);
        let mut slow = Controller::new(settings());
        for _ in 0..5 {
            let seen = batch(slow.batch_size(), 50.0);
            slow.observe(&seen, &Baselines::default());
        }
        assert_eq!(slow.batch_size(), 100);
    }

    #[test]
    fn shrinks_when_the_rate_drops() {
        let mut controller = Controller::new(settings());
        for _ in 0..12 {
            let seen = batch(controller.batch_size(), 100_000.0);
            controller.observe(&seen, &Baselines::default());
        }
        assert_eq!(controller.batch_size(), 10_000);
        // The same size now runs at a tenth of the rate (held locks, a busy server): the
        // size follows the average down, without waiting for it to settle.
        let seen = batch(10_000, 10_000.0);
        let decision = controller.observe(&seen, &Baselines::default());
        assert!(
            matches!(decision, Decision::BackOff { .. } | Decision::Resize { .. }),
            "{decision:?}"
        );
        assert!(
            controller.batch_size() < 10_000,
            "{}",
            controller.batch_size()
        );
        for _ in 0..20 {
            let seen = batch(controller.batch_size(), 10_000.0);
            controller.observe(&seen, &Baselines::default());
        }
        // 10,000 rows/s for 100 ms, as the average converges.
        assert!(
            controller.batch_size() <= 1_100,
            "{}",
            controller.batch_size()
        );
    }

    #[test]
    fn a_batch_held_long_right_after_a_pause_backs_off() {
        let mut controller = Controller::new(ControllerSettings {
            target: Duration::from_millis(10),
            ..settings()
        });
        for _ in 0..20 {
            let seen = batch(controller.batch_size(), 100_000.0);
            controller.observe(&seen, &Baselines::default());
        }
        assert_eq!(controller.batch_size(), 1000);
        controller.pause(PauseReason::Operator);
        controller.resume();
        // The first batch after the pause waits 300 ms for a lock: no average to compare
        // with, but it held its rows thirty times the target.
        let seen = BatchObservation {
            took: Duration::from_millis(300),
            ..batch(1000, 100_000.0)
        };
        let decision = controller.observe(&seen, &Baselines::default());
        assert!(
            matches!(
                decision,
                Decision::BackOff {
                    pressure: Pressure::BatchSlowing { .. },
                    size: 500,
                    ..
                }
            ),
            "{decision:?}"
        );
    }

    #[test]
    fn a_batch_much_slower_at_the_same_size_backs_off() {
        let mut controller = Controller::new(ControllerSettings {
            target: Duration::from_millis(10),
            ..settings()
        });
        for _ in 0..20 {
            let seen = batch(controller.batch_size(), 100_000.0);
            controller.observe(&seen, &Baselines::default());
        }
        let size = controller.batch_size();
        assert_eq!(size, 1000);
        let seen = BatchObservation {
            took: Duration::from_millis(50),
            ..batch(size, 100_000.0)
        };
        let decision = controller.observe(&seen, &Baselines::default());
        assert!(
            matches!(
                decision,
                Decision::BackOff {
                    pressure: Pressure::BatchSlowing { .. },
                    size: 500,
                    ..
                }
            ),
            "{decision:?}"
        );
        // A slow batch alone shrinks the next one but does not rest: the application's
        // signals decide that.
        assert_eq!(controller.rest(), Duration::ZERO);
    }

    #[test]
    fn backs_off_on_each_signal_then_recovers() {
        let baselines = Baselines {
            active_sessions: Some(10),
            probe: Some(Duration::from_millis(1)),
            cpus: None,
        };
        // (what was seen, whether it halves the size: only lock pressure does)
        let signals = [
            (
                BatchObservation {
                    blocked_sessions: 2,
                    ..batch(800, 100_000.0)
                },
                true,
            ),
            (
                BatchObservation {
                    active_sessions: Some(11),
                    ..batch(800, 100_000.0)
                },
                false,
            ),
            (
                BatchObservation {
                    probe: Some(Duration::from_millis(5)),
                    ..batch(800, 100_000.0)
                },
                false,
            ),
        ];
        for (seen, halves) in signals {
            let mut controller = Controller::new(settings());
            for _ in 0..3 {
                let clean = batch(controller.batch_size(), 100_000.0);
                assert!(!matches!(
                    controller.observe(&clean, &baselines),
                    Decision::BackOff { .. }
                ));
            }
            assert_eq!(controller.batch_size(), 800);
            let decision = controller.observe(&seen, &baselines);
            let Decision::BackOff { size, rest, .. } = decision else {
                panic!("{seen:?}: {decision:?}");
            };
            // The batch took 8 ms: the first rest is half of it.
            let expected = if halves { 400 } else { 800 };
            assert_eq!((size, rest), (expected, Duration::from_millis(4)));
            assert!(matches!(controller.state(), PaceState::BackingOff(_)));
            // The pressure lasts: the rest grows to four batch durations, no more.
            for _ in 0..10 {
                controller.observe(&seen, &baselines);
            }
            assert_eq!(controller.rest(), Duration::from_millis(32));
            assert_eq!(controller.batch_size(), if halves { 100 } else { 800 });
            // It is gone: the rest shrinks per clean batch until it is gone too.
            let mut rests = Vec::new();
            while !controller.rest().is_zero() {
                let clean = batch(controller.batch_size(), 100_000.0);
                assert!(matches!(
                    controller.observe(&clean, &baselines),
                    Decision::Recover { .. }
                ));
                rests.push(controller.rest());
                assert!(rests.len() < 20, "{rests:?}");
            }
            assert_eq!(controller.state(), &PaceState::Running);
        }
    }

    #[test]
    fn the_rest_never_passes_its_maximum() {
        let mut controller = Controller::new(settings());
        let slow = BatchObservation {
            blocked_sessions: 1,
            took: Duration::from_secs(4),
            ..batch(100, 100_000.0)
        };
        for _ in 0..5 {
            controller.observe(&slow, &Baselines::default());
        }
        assert_eq!(controller.rest(), MAX_REST);
    }

    #[test]
    fn probe_jitter_below_the_floor_is_not_pressure() {
        let baselines = Baselines {
            active_sessions: None,
            probe: Some(Duration::from_micros(100)),
            cpus: None,
        };
        let mut controller = Controller::new(settings());
        let seen = BatchObservation {
            probe: Some(Duration::from_micros(900)),
            ..batch(100, 100_000.0)
        };
        assert!(!matches!(
            controller.observe(&seen, &baselines),
            Decision::BackOff { .. }
        ));
    }

    #[test]
    fn pauses_and_resumes_saying_why() {
        let mut controller = Controller::new(settings());
        assert!(controller.pause(PauseReason::Operator));
        assert!(!controller.pause(PauseReason::Operator));
        assert_eq!(
            controller.state().to_string(),
            "paused by an operator (migrate backfill resume)"
        );
        let lag = PauseReason::ReplicaLag {
            replica: "\"standby\"".into(),
            lag: Duration::from_millis(6200),
            limit: Duration::from_secs(5),
        };
        assert!(controller.pause(lag.clone()));
        assert_eq!(
            controller.state().to_string(),
            "paused: replica \"standby\" lags 6.2s (limit 5.0s)"
        );
        assert_eq!(controller.resume(), Some(lag));
        assert_eq!(controller.state(), &PaceState::Running);
        assert_eq!(controller.resume(), None);
    }

    #[test]
    fn a_short_last_batch_does_not_shrink_the_size() {
        let mut controller = Controller::new(settings());
        for _ in 0..12 {
            let seen = batch(controller.batch_size(), 100_000.0);
            controller.observe(&seen, &Baselines::default());
        }
        let seen = BatchObservation {
            rows: 3,
            took: Duration::from_millis(1),
            ..batch(10_000, 100_000.0)
        };
        controller.observe(&seen, &Baselines::default());
        assert_eq!(controller.batch_size(), 10_000);
    }

    #[test]
    fn a_busy_server_cpu_backs_off_an_idle_one_does_not() {
        let baselines = Baselines {
            cpus: Some(2),
            ..Baselines::default()
        };
        // Four sessions of a tight loop keep 2.4 CPUs busy: no room for a batch.
        let mut busy = Controller::new(settings());
        let seen = BatchObservation {
            running: Some(2.4),
            workers: 1,
            ..batch(100, 100_000.0)
        };
        let decision = busy.observe(&seen, &baselines);
        assert!(
            matches!(
                decision,
                Decision::BackOff {
                    pressure: Pressure::ServerCpu { cpus: 2, .. },
                    ..
                }
            ),
            "{decision:?}"
        );
        assert!(!busy.rest().is_zero());
        // Nothing else runs: the backfill may take a whole CPU and grows.
        let mut idle = Controller::new(settings());
        for _ in 0..6 {
            let seen = BatchObservation {
                running: Some(0.0),
                workers: 1,
                ..batch(idle.batch_size(), 100_000.0)
            };
            assert!(!matches!(
                idle.observe(&seen, &baselines),
                Decision::BackOff { .. }
            ));
        }
        assert_eq!(idle.batch_size(), 6400);
    }

    #[test]
    fn the_cpus_headroom_holds_the_duty_however_many_clean_cycles_pass() {
        let baselines = Baselines {
            cpus: Some(2),
            ..Baselines::default()
        };
        let duty = |controller: &Controller| {
            let took = controller.last_took.as_secs_f64();
            took / (took + controller.rest().as_secs_f64())
        };
        // 1.2 other sessions running on 2 CPUs leave 0.3 of a CPU under the 75% share.
        let mut controller = Controller::new(settings());
        for _ in 0..50 {
            let seen = BatchObservation {
                running: Some(1.2),
                workers: 1,
                ..batch(controller.batch_size(), 100_000.0)
            };
            controller.observe(&seen, &baselines);
            assert!(duty(&controller) <= 0.3 + 1e-6, "{}", duty(&controller));
        }
        assert!(duty(&controller) > 0.29, "{}", duty(&controller));
        assert_eq!(controller.rest_cause(), "server CPU");
        assert_eq!(
            controller.batch_size(),
            10_000,
            "the size still follows the rate"
        );
        // The application quiets down: the floor follows its moving average away.
        for _ in 0..50 {
            let seen = BatchObservation {
                running: Some(0.1),
                workers: 1,
                ..batch(controller.batch_size(), 100_000.0)
            };
            controller.observe(&seen, &baselines);
        }
        assert_eq!(controller.cpu_floor(), 0.0);
        assert!(controller.rest().is_zero());
        // No room at all: the least duty, not none.
        let mut saturated = Controller::new(settings());
        for _ in 0..10 {
            let seen = BatchObservation {
                running: Some(3.0),
                workers: 1,
                ..batch(saturated.batch_size(), 100_000.0)
            };
            saturated.observe(&seen, &baselines);
        }
        assert!((saturated.cpu_floor() - (1.0 / MIN_CPU_DUTY - 1.0)).abs() < 1e-9);
    }

    #[test]
    fn a_larger_cpu_share_leaves_the_batches_a_larger_duty() {
        let baselines = Baselines {
            cpus: Some(2),
            ..Baselines::default()
        };
        // 1.2 other sessions running on 2 CPUs: 0.3 of a CPU left under 75%, 0.8 under 100%,
        // and under 60% none, so the least duty.
        for (percent, duty) in [(75, 0.3), (100, 0.8), (60, MIN_CPU_DUTY)] {
            let mut controller = Controller::new(ControllerSettings {
                max_cpu_percent: percent,
                ..settings()
            });
            for _ in 0..50 {
                let seen = BatchObservation {
                    running: Some(1.2),
                    workers: 1,
                    ..batch(controller.batch_size(), 100_000.0)
                };
                controller.observe(&seen, &baselines);
            }
            assert!(
                (controller.cpu_floor() - (1.0 / duty - 1.0)).abs() < 1e-6,
                "{percent}%: floor {} for a duty of {duty}",
                controller.cpu_floor()
            );
        }
    }

    #[test]
    fn the_hosts_busy_cpus_hold_the_duty_where_the_sessions_do_not_show_them() {
        let baselines = Baselines {
            cpus: Some(2),
            ..Baselines::default()
        };
        // One client session running, but the host's CPUs 80% busy: 1.6 CPUs, of which our
        // batches take their duty's share; the rest (an application on the same host, the
        // server's own processes) leaves little room under 1.5.
        let mut controller = Controller::new(settings());
        for _ in 0..60 {
            let seen = BatchObservation {
                running: Some(0.4),
                host_busy: Some(0.8),
                workers: 1,
                ..batch(controller.batch_size(), 100_000.0)
            };
            controller.observe(&seen, &baselines);
        }
        let took = controller.last_took.as_secs_f64();
        let duty = took / (took + controller.rest().as_secs_f64());
        assert!(duty < 0.5, "{duty}");
        assert_eq!(controller.rest_cause(), "server CPU");
        // The sessions alone would have left it at full speed.
        let mut sessions_only = Controller::new(settings());
        for _ in 0..60 {
            let seen = BatchObservation {
                running: Some(0.4),
                workers: 1,
                ..batch(sessions_only.batch_size(), 100_000.0)
            };
            sessions_only.observe(&seen, &baselines);
        }
        assert!(sessions_only.rest().is_zero());
    }

    #[test]
    fn a_throughput_drop_sizes_the_rest_to_keep_the_average_loss_under_the_allowance() {
        let mut controller = Controller::new(settings());
        controller.last_took = Duration::from_millis(100);
        // 10% less while batches ran back to back: a duty of 15% keeps the loss at 1.5%.
        assert!(
            controller
                .observe_window(&rates(8_000.0, 7_200.0))
                .is_some()
        );
        let duty = controller.duty();
        assert!((duty - 0.15).abs() < 0.001, "{duty}");
        // Another pressure never shortens it to the usual ceiling (a ratio of 4, a duty of 20%).
        controller.back_off(Pressure::BlockedSessions(1));
        let after = controller.duty();
        assert!(after <= duty + 1e-9, "{after}");
    }

    #[test]
    fn a_drop_within_the_rests_scatter_is_no_drop_and_one_beyond_it_is() {
        let mut controller = Controller::new(settings());
        controller.set_rate_noise(0.1);
        assert_eq!(controller.observe_window(&rates(8_000.0, 7_400.0)), None);
        assert!(matches!(
            controller.observe_window(&rates(8_000.0, 6_800.0)),
            Some(Decision::BackOff {
                pressure: Pressure::ThroughputDrop { .. },
                ..
            })
        ));
        // However scattered the rests, a drop of a quarter counts.
        controller.set_rate_noise(0.9);
        assert!(
            controller
                .observe_window(&rates(8_000.0, 6_000.0))
                .is_some()
        );
    }

    #[test]
    fn the_application_rate_falling_while_batches_run_backs_off() {
        let mut controller = Controller::new(settings());
        let unharmed = ApplicationRates {
            resting_tps: 20_000.0,
            working_tps: 19_700.0,
            resting_ms: Some(0.2),
            working_ms: Some(0.22),
            resting_statement_ms: Some(0.05),
            working_statement_ms: Some(0.06),
        };
        assert_eq!(controller.observe_window(&unharmed), None);
        let dropped = ApplicationRates {
            working_tps: 14_000.0,
            ..unharmed
        };
        assert!(matches!(
            controller.observe_window(&dropped),
            Some(Decision::BackOff {
                pressure: Pressure::ThroughputDrop { .. },
                ..
            })
        ));
        let slower = ApplicationRates {
            working_ms: Some(0.5),
            ..unharmed
        };
        assert!(matches!(
            controller.observe_window(&slower),
            Some(Decision::BackOff {
                pressure: Pressure::ServerTimeUp { .. },
                ..
            })
        ));
        // The application's statements slower per call (pg_stat_statements), its
        // transactions' server time not (yet) past the limit: named as such.
        let statements_slower = ApplicationRates {
            working_statement_ms: Some(0.2),
            ..unharmed
        };
        assert!(matches!(
            controller.observe_window(&statements_slower),
            Some(Decision::BackOff {
                pressure: Pressure::StatementLatencyUp { .. },
                ..
            })
        ));
        // A window's verdict holds for the cycles after it: clean ones do not undo it ...
        let floor = controller.rest_ratio;
        assert!(floor > 0.0);
        for _ in 0..30 {
            let seen = batch(controller.batch_size(), 100_000.0);
            controller.observe(&seen, &Baselines::default());
        }
        assert_eq!(controller.rest_ratio, floor);
        // ... an unharmed window lowers it.
        assert_eq!(controller.observe_window(&unharmed), None);
        for _ in 0..30 {
            let seen = batch(controller.batch_size(), 100_000.0);
            controller.observe(&seen, &Baselines::default());
        }
        assert!(controller.rest_ratio < floor, "{}", controller.rest_ratio);
        // No application to speak of: a few transactions more or less are noise.
        assert_eq!(controller.observe_window(&rates(10.0, 2.0)), None);
    }

    #[test]
    fn a_slow_start_holds_half_speed_until_a_window_measures_the_application() {
        let clean_batches = |controller: &mut Controller| {
            for _ in 0..20 {
                controller.observe(
                    &batch(controller.batch_size(), 100_000.0),
                    &Baselines::default(),
                );
            }
        };
        let mut controller = Controller::new(settings());
        controller.start_slowly();
        clean_batches(&mut controller);
        assert_eq!(
            controller.rest_ratio, START_REST_RATIO,
            "clean batches alone keep it"
        );
        // An application the first window finds unharmed ends it, at once.
        assert_eq!(controller.observe_window(&rates(8_000.0, 7_990.0)), None);
        assert_eq!(controller.rest(), Duration::ZERO);
        clean_batches(&mut controller);
        assert_eq!(controller.rest_ratio, 0.0);
        // One that lost throughput at half speed keeps a rest sized from that loss.
        let mut harmed = Controller::new(settings());
        harmed.start_slowly();
        harmed.last_took = Duration::from_millis(100);
        assert!(harmed.observe_window(&rates(8_000.0, 7_600.0)).is_some());
        clean_batches(&mut harmed);
        assert!(
            harmed.rest_ratio > START_REST_RATIO,
            "{}",
            harmed.rest_ratio
        );
        // An idle one ends it at once.
        let mut idle = Controller::new(settings());
        idle.start_slowly();
        assert_eq!(idle.observe_window(&rates(10.0, 9.0)), None);
        assert_eq!(idle.rest(), Duration::ZERO);
        clean_batches(&mut idle);
        assert_eq!(idle.rest_ratio, 0.0);
        assert_eq!(idle.rest(), Duration::ZERO);
    }

    fn rates(resting_tps: f64, working_tps: f64) -> ApplicationRates {
        ApplicationRates {
            resting_tps,
            working_tps,
            resting_ms: None,
            working_ms: None,
            resting_statement_ms: None,
            working_statement_ms: None,
        }
    }

    #[test]
    fn batches_aim_at_the_busy_target_while_an_application_is_measured() {
        let mut controller = Controller::new(ControllerSettings {
            busy_target: Some(Duration::from_millis(10)),
            ..settings()
        });
        assert_eq!(
            controller.target(),
            Duration::from_millis(10),
            "from the start"
        );
        controller.observe_window(&rates(10.0, 10.0));
        assert_eq!(controller.target(), Duration::from_millis(100), "idle");
        // The size follows: 100,000 rows/s for 100 ms, at most doubling per batch.
        for _ in 0..20 {
            controller.observe(
                &batch(controller.batch_size(), 100_000.0),
                &Baselines::default(),
            );
        }
        assert_eq!(controller.batch_size(), 10_000);
        controller.observe_window(&rates(5_000.0, 4_995.0));
        assert_eq!(controller.target(), Duration::from_millis(10), "busy again");
        controller.observe(&batch(10_000, 100_000.0), &Baselines::default());
        assert_eq!(controller.batch_size(), 1_000, "at once, not halving");
        // Without a busy target, one target throughout.
        let mut plain = Controller::new(settings());
        assert_eq!(plain.target(), Duration::from_millis(100));
        plain.observe_window(&rates(5_000.0, 4_995.0));
        assert_eq!(plain.target(), Duration::from_millis(100));
    }

    #[test]
    fn a_rest_is_reported_under_the_signal_that_set_it() {
        let mut controller = Controller::new(settings());
        controller.start_slowly();
        assert_eq!(controller.rest_cause(), SLOW_START);
        controller.last_took = Duration::from_millis(100);
        controller.observe_window(&rates(8_000.0, 7_000.0));
        assert_eq!(controller.rest_cause(), "application throughput");
        // A slow batch halves the next one without resting: the rest stays the drop's.
        let size = controller.batch_size();
        controller.observe(&batch(size, 100_000.0), &Baselines::default());
        let slow = BatchObservation {
            took: Duration::from_millis(900),
            ..batch(size, 100_000.0)
        };
        assert!(matches!(
            controller.observe(&slow, &Baselines::default()),
            Decision::BackOff {
                pressure: Pressure::BatchSlowing { .. },
                ..
            }
        ));
        assert!(controller.rest() > Duration::ZERO);
        assert_eq!(controller.rest_cause(), "application throughput");
    }

    #[test]
    fn workers_are_added_while_clean_with_room_and_dropped_first_under_pressure() {
        let mut controller = Controller::new(ControllerSettings {
            max_workers: 3,
            ..settings()
        });
        let baselines = Baselines {
            cpus: Some(8),
            ..Baselines::default()
        };
        let clean = |size| BatchObservation {
            running: Some(0.5),
            workers: 1,
            ..batch(size, 100_000.0)
        };
        for _ in 0..40 {
            let seen = clean(controller.batch_size());
            controller.observe(&seen, &baselines);
        }
        assert_eq!(controller.workers(), 3, "at most the ceiling");
        // Pressure takes a worker away before any rest.
        let seen = BatchObservation {
            probe: Some(Duration::from_millis(50)),
            ..clean(controller.batch_size())
        };
        let probe = Baselines {
            probe: Some(Duration::from_millis(1)),
            ..baselines
        };
        controller.observe(&seen, &probe);
        assert_eq!(
            (controller.workers(), controller.rest()),
            (2, Duration::ZERO)
        );
        // Without room on the server's CPUs, no worker is added.
        let mut cramped = Controller::new(ControllerSettings {
            max_workers: 3,
            ..settings()
        });
        let two = Baselines {
            cpus: Some(2),
            ..Baselines::default()
        };
        for _ in 0..40 {
            let seen = clean(cramped.batch_size());
            cramped.observe(&seen, &two);
        }
        assert_eq!(cramped.workers(), 1);
    }
}
