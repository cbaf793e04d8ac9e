//! A run second by second (`--timeline`): what the application saw (transactions, p99,
//! slowest) beside what the server wrote (WAL) and when a checkpoint began, so a latency tail
//! can be told apart as the change's or the server's own.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::load::Transaction;
use crate::{fail, now_us, open};

/// One reading of the server's WAL position and its last checkpoint's redo position.
#[derive(Debug, Clone, Copy)]
pub struct WalSample {
    at_us: i64,
    wal_bytes: i64,
    redo_bytes: i64,
    /// How long a transaction that only takes an xid took to commit: the WAL flush every
    /// writing transaction of the application waits for.
    commit_us: i64,
    /// The machine's dirty and under-writeback page cache, MB (`/proc/meminfo`).
    dirty_mb: f64,
    /// Bytes the machine's disks have written (`/proc/diskstats`).
    disk_bytes: i64,
}

fn disk_bytes() -> i64 {
    let Ok(text) = std::fs::read_to_string("/proc/diskstats") else {
        return 0;
    };
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Whole disks only (vda, sda, nvme0n1), not their partitions.
            let name = fields.get(2)?;
            let whole = (name.starts_with("vd") || name.starts_with("sd"))
                && !name.ends_with(|c: char| c.is_ascii_digit())
                || name.starts_with("nvme") && !name.contains('p');
            if !whole {
                return None;
            }
            fields
                .get(9)?
                .parse::<i64>()
                .ok()
                .map(|sectors| sectors * 512)
        })
        .sum()
}

fn dirty_mb() -> f64 {
    let Ok(text) = std::fs::read_to_string("/proc/meminfo") else {
        return 0.0;
    };
    text.lines()
        .filter(|line| line.starts_with("Dirty:") || line.starts_with("Writeback:"))
        .filter_map(|line| line.split_whitespace().nth(1)?.parse::<f64>().ok())
        .sum::<f64>()
        / 1024.0
}

/// Samples the WAL and checkpoint positions, a commit's time and the disks every 20 ms until `stop` is set.
pub fn sample_wal(
    url: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<Vec<WalSample>, String>> {
    tokio::spawn(async move {
        let client = open(&url).await?;
        let mut samples = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let row = client
                .query_one(
                    "SELECT (pg_current_wal_lsn() - '0/0')::bigint, \
                     ((pg_control_checkpoint()).redo_lsn - '0/0')::bigint",
                    &[],
                )
                .await
                .map_err(fail("sampling the WAL"))?;
            let committing = now_us();
            client
                .batch_execute("SELECT pg_current_xact_id()")
                .await
                .map_err(fail("timing a commit"))?;
            let at_us = now_us();
            samples.push(WalSample {
                at_us,
                wal_bytes: row.get(0),
                redo_bytes: row.get(1),
                commit_us: at_us - committing,
                dirty_mb: dirty_mb(),
                disk_bytes: disk_bytes(),
            });
            // The sampling period, not synchronisation.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(samples)
    })
}

/// Readings of what the active sessions waited on: (when, µs since the epoch; each
/// session's wait event, `CPU` for none).
pub type WaitSamples = Vec<(i64, Vec<String>)>;

/// What the active sessions (the sampler's own aside) were waiting on, every 10 ms until
/// `stop` is set: a stall of the application shows as the event its sessions waited on.
pub fn sample_waits(
    url: String,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<WaitSamples, String>> {
    tokio::spawn(async move {
        let client = open(&url).await?;
        let mut samples = Vec::new();
        while !stop.load(Ordering::SeqCst) {
            let rows = client
                .query(
                    "SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU') ||                      CASE WHEN query LIKE '%backfill%' OR query LIKE '%email_verified_at%'                      THEN '(runner)' ELSE '' END                      FROM pg_stat_activity WHERE state = 'active' AND pid <> pg_backend_pid()                      AND backend_type = 'client backend'",
                    &[],
                )
                .await
                .map_err(fail("sampling the waits"))?;
            samples.push((now_us(), rows.iter().map(|r| r.get(0)).collect()));
            // The sampling period, not synchronisation.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok(samples)
    })
}

/// The part of `items` (in time order) whose time `at` gives is in `from..to`.
fn between<T>(items: &[T], at: impl Fn(&T) -> i64, (from, to): (i64, i64)) -> &[T] {
    let start = items.partition_point(|item| at(item) < from);
    let end = items.partition_point(|item| at(item) < to);
    &items[start..end.max(start)]
}

/// CSV, a line per second from `from_us` (offsets from `zero_us`): completed transactions,
/// p99 and slowest latency of those, WAL written, and the checkpoints whose redo point falls
/// in that second (they began then), with `fill` marking the seconds rows were filled. The
/// log, the samples and the waits are each in time order.
pub fn csv(
    log: &[Transaction],
    wal: &[WalSample],
    zero_us: i64,
    (from_us, to_us): (i64, i64),
    fill: (i64, i64),
    waits: &[(i64, Vec<String>)],
) -> String {
    let mut text = String::from(
        "second,in_fill,tps,p99_ms,max_ms,wal_mb,checkpoint_began,commit_max_ms,dirty_mb,disk_mb,waits\n",
    );
    let mut redo: Vec<i64> = wal.iter().map(|s| s.redo_bytes).collect();
    redo.dedup();
    // The last sample taken by `when`.
    let last_by = |when: i64| {
        let taken = wal.partition_point(|s| s.at_us <= when);
        taken.checked_sub(1).map(|index| &wal[index])
    };
    let mut at = from_us;
    while at < to_us {
        let next = at + 1_000_000;
        let mut latencies: Vec<i64> = between(log, |t| t.done_us, (at, next))
            .iter()
            .map(|t| t.latency_us)
            .collect();
        latencies.sort_unstable();
        let p99 = crate::report::percentile(&latencies, 0.99);
        let max = latencies.last().map_or(0.0, |&us| us as f64 / 1000.0);
        let (first, last) = (last_by(at), last_by(next));
        let megabytes = |bytes: fn(&WalSample) -> i64| match (first, last) {
            (Some(a), Some(b)) => (bytes(b) - bytes(a)) as f64 / 1e6,
            _ => 0.0,
        };
        // A checkpoint began in this second when its redo point lies in the WAL written then.
        let (start_lsn, end_lsn) = (
            first.map_or(i64::MAX, |s| s.wal_bytes),
            last.map_or(0, |s| s.wal_bytes),
        );
        let began = redo
            .iter()
            .filter(|&&r| r > start_lsn && r <= end_lsn)
            .count();
        let in_second = between(wal, |s| s.at_us, (at, next));
        let commit_max_ms =
            in_second.iter().map(|s| s.commit_us).max().unwrap_or(0) as f64 / 1000.0;
        let dirty = in_second.iter().map(|s| s.dirty_mb).fold(0.0, f64::max);
        let mut counts: std::collections::BTreeMap<&str, u32> = Default::default();
        for (_, events) in between(waits, |(t, _)| *t, (at, next)) {
            for event in events {
                *counts.entry(event.as_str()).or_default() += 1;
            }
        }
        let mut counts: Vec<_> = counts.into_iter().collect();
        counts.sort_by_key(|&(_, n)| std::cmp::Reverse(n));
        let waits_text = counts
            .iter()
            .take(4)
            .map(|(event, n)| format!("{event}={n}"))
            .collect::<Vec<_>>()
            .join(" ");
        let _ = writeln!(
            text,
            "{},{},{},{:.1},{:.1},{:.1},{},{:.1},{:.0},{:.1},{}",
            (at - zero_us) / 1_000_000,
            u8::from(at >= fill.0 && at < fill.1),
            latencies.len(),
            p99,
            max,
            megabytes(|s| s.wal_bytes),
            began,
            commit_max_ms,
            dirty,
            megabytes(|s| s.disk_bytes),
            waits_text
        );
        at = next;
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_counts_what_completed_in_it_and_the_wal_written_across_it() {
        let log: Vec<Transaction> = [(500_000, 2_000), (1_200_000, 4_000), (1_900_000, 9_000)]
            .into_iter()
            .map(|(done_us, latency_us)| Transaction {
                done_us,
                latency_us,
            })
            .collect();
        let sample = |at_us, wal_bytes, redo_bytes| WalSample {
            at_us,
            wal_bytes,
            redo_bytes,
            commit_us: 300,
            dirty_mb: 1.0,
            disk_bytes: wal_bytes * 2,
        };
        let wal = [
            sample(0, 0, 0),
            sample(1_000_000, 1_000_000, 0),
            sample(1_500_000, 2_000_000, 1_500_000),
            sample(2_000_000, 4_000_000, 1_500_000),
        ];
        let waits = vec![(1_100_000, vec!["CPU".to_owned(), "CPU".to_owned()])];
        let text = csv(
            &log,
            &wal,
            0,
            (0, 2_000_000),
            (1_000_000, 2_000_000),
            &waits,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[1], "0,0,1,2.0,2.0,1.0,0,0.3,1,2.0,");
        assert_eq!(lines[2], "1,1,2,9.0,9.0,3.0,1,0.3,1,6.0,CPU=2");
        assert_eq!(lines.len(), 3);
    }
}
