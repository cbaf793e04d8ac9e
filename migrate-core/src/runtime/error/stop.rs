//! Why a backfill waits or stops: the reasons its stop signals give
//! ([`crate::runtime::backfill`] reads them), carried by the progress reports and by
//! [`RuntimeError::BackfillAborted`](super::RuntimeError::BackfillAborted).

use std::fmt;
use std::time::Duration;

use crate::runtime::text::human;

/// Why no batch runs now; the backfill waits and checks again.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PauseReason {
    /// `migrate backfill pause` (the `migrate.backfill_paused` flag) is set.
    Operator,
    /// The configured throttle query returned true.
    ThrottleQuery,
    /// A replica has not replayed WAL written longer ago than the limit.
    ReplicaLag {
        /// The replica, as the contract gate names it.
        replica: String,
        /// How long ago the oldest WAL it has not replayed was written (a lower bound).
        lag: Duration,
        /// The configured limit.
        limit: Duration,
    },
    /// More WAL segments wait for the archiver (`archive_status/*.ready`) than the limit:
    /// archiving is behind or failing, and every batch adds WAL to keep.
    WalArchiveBacklog {
        /// Segments waiting.
        segments: u64,
        /// The configured limit.
        limit: u64,
    },
    /// An autovacuum works on the backfill's table.
    Autovacuum {
        /// The table.
        table: String,
        /// It runs to prevent transaction ID wraparound.
        wraparound: bool,
    },
    /// A transaction holding back the xmin horizon is older than the limit: no dead row a
    /// batch leaves can be vacuumed until it ends.
    OldTransaction {
        /// Its backend (`pg_stat_activity.pid`), 0 for a prepared transaction.
        pid: i32,
        /// Its age.
        age: Duration,
        /// The configured limit.
        limit: Duration,
    },
}

impl PauseReason {
    /// A short name of the signal, as the throttle report counts it.
    pub fn signal(&self) -> &'static str {
        match self {
            PauseReason::Operator => "operator pause",
            PauseReason::ThrottleQuery => "throttle query",
            PauseReason::ReplicaLag { .. } => "replica lag",
            PauseReason::WalArchiveBacklog { .. } => "WAL archive backlog",
            PauseReason::Autovacuum { .. } => "autovacuum",
            PauseReason::OldTransaction { .. } => "old transaction",
        }
    }
}

impl fmt::Display for PauseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PauseReason::Operator => f.write_str("paused by an operator (migrate backfill resume)"),
            PauseReason::ThrottleQuery => f.write_str("paused: the throttle query returned true"),
            PauseReason::ReplicaLag {
                replica,
                lag,
                limit,
            } => write!(
                f,
                "paused: replica {replica} lags {} (limit {})",
                human(*lag),
                human(*limit)
            ),
            PauseReason::WalArchiveBacklog { segments, limit } => write!(
                f,
                "paused: {segments} WAL segment(s) wait for the archiver (limit {limit})"
            ),
            PauseReason::Autovacuum { table, wraparound } => write!(
                f,
                "paused: autovacuum works on {table}{}",
                if *wraparound {
                    " (to prevent wraparound)"
                } else {
                    ""
                }
            ),
            PauseReason::OldTransaction { pid, age, limit } => {
                let who = if *pid == 0 {
                    "a prepared transaction".to_owned()
                } else {
                    format!("the transaction of backend {pid}")
                };
                write!(
                    f,
                    "paused: {who} is {} old (limit {}): dead rows cannot be vacuumed while it runs",
                    human(*age),
                    human(*limit)
                )
            }
        }
    }
}

/// Why a backfill stopped for good; its progress is kept, the next `up` resumes it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum AbortReason {
    /// A replica lags past the critical limit, on two readings a poll apart.
    CriticalReplicaLag {
        /// The replica, as the contract gate names it.
        replica: String,
        /// Its lag at the second reading.
        lag: Duration,
        /// The configured critical limit.
        limit: Duration,
    },
    /// The backfill stayed paused longer than `max_pause`, and still was when read again.
    PausedTooLong {
        /// What paused it at the last reading.
        reason: PauseReason,
        /// How long it has been paused.
        paused: Duration,
        /// The configured limit.
        limit: Duration,
    },
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AbortReason::CriticalReplicaLag {
                replica,
                lag,
                limit,
            } => write!(
                f,
                "replica {replica} lags {} (critical limit {})",
                human(*lag),
                human(*limit)
            ),
            AbortReason::PausedTooLong {
                reason,
                paused,
                limit,
            } => write!(
                f,
                "paused for {} (limit {}), still {reason}",
                human(*paused),
                human(*limit)
            ),
        }
    }
}
