//! Which of the server's worker threads is running ([`server::run_workers`] names each one), and
//! state kept once per worker ([`PerWorker`]).
//!
//! State that every request writes (reference counts of a cached open file and of its header
//! values, the lock of the open-file cache) costs little when one core touches it, and a
//! cache-line transfer per write when two cores do: with two workers serving small ranged GETs
//! that was about 15 such writes per request on lines both cores wrote (#13). Kept per worker,
//! each copy stays in its core's cache.
//!
//! [`server::run_workers`]: crate::server::run_workers

use std::cell::Cell;
use std::sync::{Arc, OnceLock, Weak};

thread_local! {
    static WORKER: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Marks the calling thread as worker `i` (for the rest of its life).
pub fn enter(i: usize) {
    WORKER.with(|w| w.set(Some(i)));
}

/// The calling thread's worker number; `None` on any other thread (the main runtime, the
/// blocking pool, tests' runtimes).
pub fn current() -> Option<usize> {
    WORKER.with(Cell::get)
}

/// Copies per worker beyond this share one (worker `i` uses copy `i % SLOTS`).
const SLOTS: usize = 32;

/// One `T` per worker thread, made on first use, plus one for all other threads.
pub struct PerWorker<T> {
    /// `[0]`: threads that are not workers; `[1 + i % SLOTS]`: worker `i`. An `Arc` only so
    /// that [`Copies`] can reach them; a lookup costs what it cost in a `Box`.
    slots: Arc<[OnceLock<T>]>,
}

impl<T> Default for PerWorker<T> {
    fn default() -> Self {
        Self {
            slots: (0..=SLOTS).map(|_| OnceLock::new()).collect(),
        }
    }
}

impl<T> PerWorker<T> {
    /// The calling thread's copy, made by `make` if it has none yet.
    pub fn get_or_init(&self, make: impl FnOnce() -> T) -> &T {
        let slot = current().map_or(0, |i| 1 + i % SLOTS);
        // `slots` has SLOTS + 1 entries and `slot` is at most SLOTS.
        self.slots[slot].get_or_init(make)
    }

    /// Every copy, for a thread that tends them in the background (see [`Copies`]).
    pub fn copies(&self) -> Copies<T> {
        Copies(Arc::downgrade(&self.slots))
    }
}

/// The copies of a [`PerWorker`], without keeping them alive: they go when it goes.
pub struct Copies<T>(Weak<[OnceLock<T>]>);

impl<T> Copies<T> {
    /// Calls `f` on every copy made so far; false, without calling it, once the [`PerWorker`]
    /// is gone.
    pub fn each(&self, f: impl FnMut(&T)) -> bool {
        let Some(slots) = self.0.upgrade() else {
            return false;
        };
        slots.iter().filter_map(OnceLock::get).for_each(f);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_worker_gets_its_own_copy_and_other_threads_share_one() {
        let per = std::sync::Arc::new(PerWorker::<std::thread::ThreadId>::default());
        let mine = |worker: Option<usize>| {
            let per = per.clone();
            std::thread::spawn(move || {
                if let Some(i) = worker {
                    enter(i);
                }
                let id = *per.get_or_init(|| std::thread::current().id());
                (id == std::thread::current().id(), id)
            })
            .join()
            .unwrap()
        };
        let (made0, w0) = mine(Some(0));
        let (made1, w1) = mine(Some(1));
        assert!(made0 && made1 && w0 != w1, "a copy per worker");
        assert_eq!(mine(Some(0)), (false, w0), "worker 0 again: its copy");
        let (made, other) = mine(None);
        assert!(made);
        assert_eq!(mine(None), (false, other), "non-workers share one");
        assert_eq!(
            mine(Some(SLOTS)),
            (false, w0),
            "past SLOTS, copies are shared"
        );
    }

    #[test]
    fn copies_are_the_copies_made_and_go_with_the_per_worker() {
        let per = PerWorker::<usize>::default();
        let copies = per.copies();
        let mut seen = Vec::new();
        assert!(copies.each(|v| seen.push(*v)));
        assert!(seen.is_empty(), "none made yet");
        per.get_or_init(|| 100);
        std::thread::scope(|s| {
            for i in [0, 3] {
                let per = &per;
                s.spawn(move || {
                    enter(i);
                    per.get_or_init(|| i);
                });
            }
        });
        assert!(copies.each(|v| seen.push(*v)));
        assert_eq!(
            seen,
            [100, 0, 3],
            "the other threads' copy, then each worker's"
        );
        drop(per);
        assert!(!copies.each(|_| panic!("called after the PerWorker went")));
    }
}
