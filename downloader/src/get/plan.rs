//! Segment planning with work stealing. Pure: no I/O, no clocks.
//!
//! The missing bytes are split into at most `connections` segments no smaller than
//! `min_split` (`-k`). Workers take pending segments; a worker with nothing left takes the
//! second half of the largest remaining segment from another worker, so a slow connection
//! never holds the download at 99% (aria2 only re-splits when a connection starts). The
//! victim learns its shorter end from [`Plan::claim`] and stops there.

use ferry_proto::ByteRange;

/// Index of a worker (one HTTP connection).
pub type WorkerId = usize;

/// A worker never steals a piece smaller than this; a segment is split only when both halves
/// are at least this large. Far below `-k` on purpose: at the end of a download a small steal
/// is what frees the download from a slow connection.
pub const MIN_STEAL: u64 = 32 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Active {
    worker: WorkerId,
    start: u64,
    /// Next byte the worker will receive (everything before it is claimed).
    pos: u64,
    end: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pending: Vec<ByteRange>,
    active: Vec<Active>,
    min_steal: u64,
}

/// Initial split: each missing range is cut into equal pieces of at least
/// `max(min_split, total / connections)` bytes, at most `connections` per range. Ranges smaller than that stay whole.
pub fn initial_split(missing: &[ByteRange], connections: usize, min_split: u64) -> Vec<ByteRange> {
    let total: u64 = missing.iter().map(ByteRange::len).sum();
    let parts = connections.max(1) as u64;
    let target = (total / parts).max(min_split).max(1);
    let mut out = Vec::new();
    for r in missing {
        let pieces = (r.len() / target).clamp(1, parts);
        let base = r.len() / pieces;
        let extra = r.len() % pieces; // the first `extra` pieces get one more byte
        let mut start = r.start;
        for i in 0..pieces {
            let len = base + u64::from(i < extra);
            out.extend(ByteRange::new(start, start + len));
            start += len;
        }
    }
    out
}

impl Plan {
    /// A plan for `missing`, split for `connections` workers.
    pub fn new(missing: &[ByteRange], connections: usize, min_split: u64) -> Self {
        Self::with_min_steal(missing, connections, min_split, MIN_STEAL)
    }

    pub fn with_min_steal(
        missing: &[ByteRange],
        connections: usize,
        min_split: u64,
        min_steal: u64,
    ) -> Self {
        let mut pending = initial_split(missing, connections, min_split);
        pending.reverse(); // pop() hands out the lowest offsets first
        Self {
            pending,
            active: Vec::new(),
            min_steal: min_steal.max(1),
        }
    }

    /// The next range for `worker`: a pending segment, else the second half of the largest
    /// remaining segment of another worker. `None` when there is nothing worth taking.
    /// A worker must [`release`](Self::release) its previous range before asking again.
    pub fn next(&mut self, worker: WorkerId) -> Option<ByteRange> {
        debug_assert!(self.active.iter().all(|a| a.worker != worker));
        let range = match self.pending.pop() {
            Some(r) => r,
            None => self.steal()?,
        };
        self.active.push(Active {
            worker,
            start: range.start,
            pos: range.start,
            end: range.end,
        });
        Some(range)
    }

    fn steal(&mut self) -> Option<ByteRange> {
        let victim = self.active.iter_mut().max_by_key(|a| a.end - a.pos)?;
        let remaining = victim.end - victim.pos;
        if remaining < 2 * self.min_steal {
            return None;
        }
        let mid = victim.pos + remaining / 2;
        let stolen = ByteRange::new(mid, victim.end)?;
        victim.end = mid;
        Some(stolen)
    }

    /// `worker` received `len` bytes at `offset` (its current position). Returns how many of
    /// them it may write: fewer when its segment was shortened by a steal, zero when the
    /// segment is complete (the worker should then stop reading this response).
    pub fn claim(&mut self, worker: WorkerId, offset: u64, len: u64) -> u64 {
        let Some(a) = self.active.iter_mut().find(|a| a.worker == worker) else {
            return 0;
        };
        if offset != a.pos {
            return 0;
        }
        let allowed = len.min(a.end - a.pos);
        a.pos += allowed;
        allowed
    }

    /// The current end of `worker`'s segment, if it holds one.
    pub fn end_of(&self, worker: WorkerId) -> Option<u64> {
        self.active
            .iter()
            .find(|a| a.worker == worker)
            .map(|a| a.end)
    }

    /// `worker` stops working on its segment; bytes from `written` (every byte before it is
    /// written) to the segment end go back to the pending queue.
    pub fn release(&mut self, worker: WorkerId, written: u64) {
        if let Some(i) = self.active.iter().position(|a| a.worker == worker) {
            let a = self.active.swap_remove(i);
            if let Some(rest) = ByteRange::new(written.clamp(a.start, a.pos), a.end) {
                self.pending.push(rest);
                // Keep lowest offsets at the back (served first).
                self.pending.sort_by_key(|r| std::cmp::Reverse(r.start));
            }
        }
    }

    /// The file turned out to end at `len` (a body of unknown length ended): nothing at or
    /// past it is pending or expected any more.
    pub fn end_at(&mut self, len: u64) {
        self.pending = self
            .pending
            .iter()
            .filter_map(|r| ByteRange::new(r.start, r.end.min(len)))
            .collect();
        for a in &mut self.active {
            a.end = a.end.min(len).max(a.pos);
        }
    }

    /// Bytes neither claimed nor being received.
    pub fn remaining(&self) -> u64 {
        let pending: u64 = self.pending.iter().map(ByteRange::len).sum();
        pending + self.active.iter().map(|a| a.end - a.pos).sum::<u64>()
    }

    /// Nothing pending and no worker holding a segment.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty() && self.active.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::get::ranges::RangeSet;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange::new(start, end).unwrap()
    }

    #[test]
    fn initial_split_is_even_and_respects_min_split() {
        assert_eq!(
            initial_split(&[r(0, 100)], 4, 1),
            vec![r(0, 25), r(25, 50), r(50, 75), r(75, 100)]
        );
        // 100 bytes, min 40: only two pieces of 50.
        assert_eq!(
            initial_split(&[r(0, 100)], 8, 40),
            vec![r(0, 50), r(50, 100)]
        );
        // Smaller than min_split: one piece.
        assert_eq!(initial_split(&[r(0, 10)], 8, 40), vec![r(0, 10)]);
        // Uneven lengths: first pieces one byte longer.
        assert_eq!(
            initial_split(&[r(0, 10)], 3, 1),
            vec![r(0, 4), r(4, 7), r(7, 10)]
        );
    }

    #[test]
    fn initial_split_of_resume_gaps_keeps_small_gaps_whole() {
        let gaps = [r(0, 10), r(100, 1100)];
        let split = initial_split(&gaps, 4, 100);
        assert_eq!(split[0], r(0, 10));
        assert_eq!(split.len(), 4);
        assert_eq!(RangeSet::from_ranges(split).covered(), 1010);
    }

    /// Property: for random inputs, pieces are disjoint, cover the input exactly, number at
    /// most `connections` plus the small gaps, and are never below min_split unless the
    /// range they come from is.
    #[test]
    fn initial_split_properties() {
        let mut rng = fastrand::Rng::with_seed(3);
        for _ in 0..2000 {
            let mut missing = Vec::new();
            let mut pos = 0;
            for _ in 0..rng.usize(1..5) {
                let start = pos + rng.u64(0..1000);
                let end = start + rng.u64(1..100_000);
                missing.push(r(start, end));
                pos = end;
            }
            let conns = rng.usize(1..65);
            let min_split = rng.u64(1..50_000);
            let split = initial_split(&missing, conns, min_split);
            let small = missing.iter().filter(|m| m.len() < min_split).count();
            assert!(
                split.len() <= conns + small + missing.len(),
                "{missing:?} {conns} {min_split}"
            );
            assert_eq!(
                RangeSet::from_ranges(split.clone()),
                RangeSet::from_ranges(missing.clone())
            );
            let total: u64 = split.iter().map(ByteRange::len).sum();
            assert_eq!(
                total,
                missing.iter().map(ByteRange::len).sum::<u64>(),
                "overlap"
            );
            for p in &split {
                let from = missing
                    .iter()
                    .find(|m| m.start <= p.start && p.end <= m.end)
                    .unwrap();
                assert!(p.len() >= min_split.min(from.len()), "{p:?} from {from:?}");
            }
        }
    }

    #[test]
    fn finished_worker_steals_second_half_of_largest() {
        let mut plan = Plan::with_min_steal(&[r(0, 400)], 2, 1, 10);
        assert_eq!(plan.next(0), Some(r(0, 200)));
        assert_eq!(plan.next(1), Some(r(200, 400)));
        assert_eq!(plan.claim(0, 0, 200), 200);
        assert_eq!(plan.claim(1, 200, 20), 20);
        plan.release(0, 200);
        // Worker 1 has 220..400 left: 180 bytes, the thief takes 310..400.
        assert_eq!(plan.next(0), Some(r(310, 400)));
        assert_eq!(plan.end_of(1), Some(310));
        // The victim may write only up to its new end.
        assert_eq!(plan.claim(1, 220, 100), 90);
        assert_eq!(plan.claim(1, 310, 5), 0);
    }

    #[test]
    fn end_at_drops_everything_past_the_end() {
        let mut plan = Plan::with_min_steal(&[r(0, u64::MAX)], 1, 1, 10);
        assert_eq!(plan.next(0), Some(r(0, u64::MAX)));
        assert_eq!(plan.claim(0, 0, 500), 500);
        plan.end_at(500);
        plan.release(0, 500);
        assert!(plan.is_done());
        assert_eq!(plan.remaining(), 0);
    }

    #[test]
    fn no_steal_below_min_steal() {
        let mut plan = Plan::with_min_steal(&[r(0, 100)], 1, 1, 60);
        assert_eq!(plan.next(0), Some(r(0, 100)));
        assert_eq!(plan.next(1), None, "100 bytes cannot give two halves of 60");
    }

    #[test]
    fn release_requeues_unwritten_bytes() {
        let mut plan = Plan::with_min_steal(&[r(0, 100)], 1, 1, 1000);
        assert_eq!(plan.next(0), Some(r(0, 100)));
        assert_eq!(plan.claim(0, 0, 30), 30);
        plan.release(0, 30);
        assert_eq!(plan.remaining(), 70);
        assert_eq!(plan.next(1), Some(r(30, 100)));
        plan.release(1, 100); // nothing claimed: all of it goes back
        assert_eq!(plan.remaining(), 70);
        assert_eq!(plan.next(1), Some(r(30, 100)));
        assert_eq!(plan.claim(1, 30, 70), 70);
        plan.release(1, 100);
        assert!(plan.is_done());
    }

    #[test]
    fn claim_at_wrong_offset_or_by_idle_worker_is_refused() {
        let mut plan = Plan::with_min_steal(&[r(0, 100)], 1, 1, 10);
        assert_eq!(plan.claim(0, 0, 10), 0);
        plan.next(0);
        assert_eq!(plan.claim(0, 5, 10), 0);
        assert_eq!(plan.claim(0, 0, 10), 10);
    }

    /// Property: random workers receiving random chunk sizes, failing at random and stealing,
    /// always end with every byte claimed exactly once.
    #[test]
    fn random_schedules_claim_every_byte_exactly_once() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..300 {
            let len = rng.u64(1..50_000);
            let workers = rng.usize(1..9);
            let mut plan =
                Plan::with_min_steal(&[r(0, len)], workers, rng.u64(1..5000), rng.u64(1..2000));
            let mut owned: Vec<Option<u64>> = vec![None; workers]; // current position
            let mut hits = vec![0u8; len as usize];
            let mut idle_rounds = 0;
            while !plan.is_done() {
                let w = rng.usize(0..workers);
                match owned[w] {
                    None => owned[w] = plan.next(w).map(|x| x.start),
                    Some(pos) if rng.u8(0..20) == 0 => {
                        plan.release(w, pos);
                        owned[w] = None;
                    }
                    Some(pos) => {
                        let got = plan.claim(w, pos, rng.u64(1..3000));
                        hits[pos as usize..(pos + got) as usize]
                            .iter_mut()
                            .for_each(|h| *h += 1);
                        if got == 0 {
                            plan.release(w, pos);
                            owned[w] = None;
                        } else {
                            owned[w] = Some(pos + got);
                        }
                    }
                }
                idle_rounds += 1;
                assert!(idle_rounds < 1_000_000, "plan never finishes");
            }
            assert!(
                hits.iter().all(|h| *h == 1),
                "len {len}: some byte claimed 0 or 2 times"
            );
        }
    }
}
