//! Work on every core: one job per item (a file), results in the items' order whatever the
//! threads did, so what is reported never depends on scheduling.
//!
//! Scoped standard threads, not a thread pool crate: the proc macro runs this on every build
//! of a user's crate, and a dependency there costs each user its compile time.

use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

/// The threads used for `jobs` jobs: one per core, at most one per job.
pub fn threads_for(jobs: usize) -> usize {
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .min(jobs)
        .max(1)
}

/// `items.iter().map(job).collect()`, run on `threads` threads; see [`for_each_in_order`].
pub fn map_in_order<T, R, F>(items: &[T], threads: usize, job: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let mut results = Vec::with_capacity(items.len());
    for_each_in_order(items, threads, job, |_, result| results.push(result));
    results
}

/// Runs `job` on every item on `threads` threads, and `consume` on the caller's thread with
/// each item's index and result, in the items' order, as soon as the results before it are
/// in: a result is consumed (and can be dropped) long before the last job ends. Each thread
/// takes the next item not yet taken (items differ in size, so a fixed split would leave a
/// core idle).
pub fn for_each_in_order<T, R, F, C>(items: &[T], threads: usize, job: F, mut consume: C)
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
    C: FnMut(usize, R),
{
    if threads <= 1 || items.len() <= 1 {
        for (index, item) in items.iter().enumerate() {
            consume(index, job(item));
        }
        return;
    }
    let next = AtomicUsize::new(0);
    let (next, job) = (&next, &job);
    // Bounded: when the caller's thread falls behind, the jobs wait instead of piling up
    // results (each holds a file's syntax trees).
    let (sender, receiver) = mpsc::sync_channel(threads);
    std::thread::scope(|scope| {
        for _ in 0..threads {
            let sender = sender.clone();
            scope.spawn(move || {
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(index) else {
                        return;
                    };
                    if sender.send((index, job(item))).is_err() {
                        return;
                    }
                }
            });
        }
        drop(sender);
        // Results that arrived before one of an earlier item; a job that panicked ends the
        // loop (its sender is dropped) and the scope re-raises the panic.
        let mut waiting = BTreeMap::new();
        let mut expected = 0;
        for (index, result) in receiver {
            waiting.insert(index, result);
            while let Some(result) = waiting.remove(&expected) {
                consume(expected, result);
                expected += 1;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_keep_the_items_order_on_any_number_of_threads() {
        let items: Vec<u64> = (0..500).collect();
        // Jobs of very different lengths, so threads finish out of order.
        let job = |n: &u64| (0..(n % 7) * 10_000).fold(*n, |a, b| a.wrapping_mul(31) ^ b);
        let expected: Vec<u64> = items.iter().map(job).collect();
        for threads in [1, 2, 3, 8] {
            assert_eq!(
                map_in_order(&items, threads, job),
                expected,
                "{threads} threads"
            );
        }
    }

    #[test]
    fn results_are_consumed_in_order() {
        let items: Vec<u64> = (0..200).collect();
        let job = |n: &u64| (0..(n % 5) * 20_000).fold(*n, |a, b| a.wrapping_add(b));
        for threads in [1, 2, 4] {
            let mut seen = Vec::new();
            for_each_in_order(&items, threads, job, |index, result| {
                assert_eq!(result, job(&items[index]));
                seen.push(index);
            });
            assert_eq!(seen, (0..200).collect::<Vec<usize>>(), "{threads} threads");
        }
    }

    #[test]
    fn no_items_and_one_item() {
        assert!(map_in_order(&[] as &[u8], 4, |x| *x).is_empty());
        assert_eq!(map_in_order(&[5u8], 4, |x| *x + 1), [6]);
    }
}
