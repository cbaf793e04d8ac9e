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

/// `items.iter().map(job).collect()`, run on `threads` threads: each thread takes the next
/// item not yet taken and keeps its results, which are put in the items' order at the end
/// (no channel: nothing is consumed before the last job ends anyway).
pub fn map_in_order<T, R, F>(items: &[T], threads: usize, job: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    if threads <= 1 || items.len() <= 1 {
        return items.iter().map(job).collect();
    }
    let next = AtomicUsize::new(0);
    let (next, job) = (&next, &job);
    let per_thread: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let index = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(index) else {
                            return done;
                        };
                        done.push((index, job(item)));
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            // A job that panicked: re-raised here, as a panic of the caller.
            .map(|handle| {
                handle
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    });
    let mut slots: Vec<Option<R>> = std::iter::repeat_with(|| None).take(items.len()).collect();
    for (index, result) in per_thread.into_iter().flatten() {
        slots[index] = Some(result);
    }
    // Every index below `items.len()` was taken by exactly one thread.
    slots.into_iter().flatten().collect()
}

/// Runs `job` on every item on `threads` threads, and `consume` on the caller's thread with
/// each item's index and result, in the items' order, as soon as the results before it are
/// in: a result is consumed (and can be dropped) long before the last job ends. Each thread
/// takes the next item not yet taken (items differ in size, so a fixed split would leave a
/// core idle). `prepare` runs on the caller's thread while the first jobs run; what it
/// returns is handed to every `consume`.
pub fn for_each_in_order<T, R, S, F, P, C>(
    items: &[T],
    threads: usize,
    job: F,
    prepare: P,
    mut consume: C,
) where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
    P: FnOnce() -> S,
    C: FnMut(&mut S, usize, R),
{
    if threads <= 1 || items.len() <= 1 {
        let mut state = prepare();
        for (index, item) in items.iter().enumerate() {
            consume(&mut state, index, job(item));
        }
        return;
    }
    let next = AtomicUsize::new(0);
    let (next, job) = (&next, &job);
    // Bounded: when the caller's thread falls behind, the jobs wait instead of piling up
    // results (each holds a file's syntax trees). A larger bound was not faster on lemmy's
    // migrations and held 3-10 MB more.
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
        let mut state = prepare();
        // Results that arrived before one of an earlier item; a job that panicked ends the
        // loop (its sender is dropped) and the scope re-raises the panic.
        let mut waiting = BTreeMap::new();
        let mut expected = 0;
        for (index, result) in receiver {
            waiting.insert(index, result);
            while let Some(result) = waiting.remove(&expected) {
                consume(&mut state, expected, result);
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
            let prepare = || threads * 10;
            for_each_in_order(&items, threads, job, prepare, |state, index, result| {
                assert_eq!(*state, threads * 10, "prepare's state reaches consume");
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
