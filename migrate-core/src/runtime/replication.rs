//! Reading `pg_stat_replication`: the contract gate's replica check and the backfill's
//! replica-lag stop signal measure lag the same way, by replay position (see
//! [`crate::runtime::gates`] for why `replay_lag` alone is no evidence).

use std::time::Duration;

use tokio_postgres::Client;

use super::error::{Replica, RuntimeError};

/// One row of `pg_stat_replication`, as the gate (and the backfill controller) reads it.
pub(crate) struct ReplicationRow {
    pub(crate) replica: Replica,
    pub(crate) state: Option<String>,
    /// `replay_lsn IS NOT NULL`.
    pub(crate) reports_replay: bool,
    /// `flush_lsn IS NOT NULL`.
    pub(crate) reports_flush: bool,
    /// `replay_lsn >= target`.
    pub(crate) caught_up: bool,
    pub(crate) bytes_behind: u64,
    pub(crate) replay_lag: Option<Duration>,
}

impl ReplicationRow {
    /// A `pg_basebackup` (state `backup`) or a WAL receiver that only flushes
    /// (`pg_receivewal`, e.g. an archiver) serves no queries: its lag does not matter.
    pub(crate) fn serves_no_queries(&self, state: &str) -> bool {
        state == "backup" || (!self.reports_replay && self.reports_flush)
    }
}

/// `pg_stat_replication` against the WAL position `target`.
pub(crate) async fn read_replication(
    client: &Client,
    target: &str,
) -> Result<Vec<ReplicationRow>, RuntimeError> {
    let rows = client
        .query(
            "SELECT pid, coalesce(application_name, ''), host(client_addr), state, \
                    replay_lsn IS NOT NULL, flush_lsn IS NOT NULL, \
                    coalesce(replay_lsn >= $1::text::pg_lsn, false), \
                    coalesce(greatest($1::text::pg_lsn - replay_lsn, 0), 0)::float8, \
                    extract(epoch FROM replay_lag)::float8 \
             FROM pg_stat_replication ORDER BY pid",
            &[&target],
        )
        .await
        .map_err(RuntimeError::database("reading pg_stat_replication"))?;
    Ok(rows
        .iter()
        .map(|row| ReplicationRow {
            replica: Replica {
                walsender_pid: row.get(0),
                application_name: row.get(1),
                client_addr: row.get(2),
            },
            state: row.get(3),
            reports_replay: row.get(4),
            reports_flush: row.get(5),
            caught_up: row.get(6),
            bytes_behind: row.get::<_, f64>(7) as u64,
            replay_lag: row
                .get::<_, Option<f64>>(8)
                .and_then(|secs| Duration::try_from_secs_f64(secs).ok()),
        })
        .collect())
}
