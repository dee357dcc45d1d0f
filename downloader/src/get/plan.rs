//! Segment planning with work stealing. Pure: no I/O, no clocks.
//!
//! The missing bytes are split into at most `connections` segments no smaller than
//! `min_split` (`-k`). Workers take pending segments; a worker with nothing left takes the
//! second half of the largest remaining segment from another worker, so a slow connection
//! never holds the download at 99% (aria2 only re-splits when a connection starts). The
//! victim learns its shorter end from [`Plan::claim`] and stops there.
//!
//! End-game (issue 15 §3): when nothing is pending and a segment's holder has gone silent
//! (the caller decides what silent means, from its clocks), an idle worker *races* it for the
//! rest of that segment instead of stealing half. Both ask for the same bytes; whoever claims
//! a byte first wins the whole rest, the other is beaten (its end becomes its position, and
//! [`Plan::take_beaten`] names it so the caller can stop its request). Claims stay exclusive,
//! so no byte is ever written twice.
//!
//! Stealing looks at time, not bytes (issue 9 §4, mirrors): the victim is the segment that
//! would take longest to finish at its holder's speed, and the thief takes the share it would
//! finish at the same moment as the holder (a connection to a 32 MiB/s mirror takes 16/17 of
//! what a 2 MiB/s one has left). Speeds come from the caller through [`Peers`]; unknown
//! speeds mean halves, as before.

use ferry_proto::ByteRange;

/// Index of a worker (one HTTP connection).
pub type WorkerId = usize;

/// A worker never steals a piece smaller than this; a segment is split only when both halves
/// are at least this large. Far below `-k` on purpose: at the end of a download a small steal
/// is what frees the download from a slow connection.
pub const MIN_STEAL: u64 = 32 * 1024;

/// What the caller knows about the workers, from its clocks and meters.
pub trait Peers {
    /// Received nothing for long enough to be raced (end-game).
    fn stalled(&self, worker: WorkerId) -> bool;
    /// Expected bytes per second of `worker`'s connection; 0 when unknown. Asked for the
    /// thief too: the speed of the connection it is about to open.
    fn speed(&self, _worker: WorkerId) -> u64 {
        0
    }
}

/// A bare "is it stalled" test, every speed unknown.
impl<F: Fn(WorkerId) -> bool> Peers for F {
    fn stalled(&self, worker: WorkerId) -> bool {
        self(worker)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Active {
    worker: WorkerId,
    start: u64,
    /// Next byte the worker will receive (everything before it is claimed).
    pos: u64,
    end: u64,
    /// The worker racing this one for `pos..end` (end-game), until one of them claims a byte.
    rival: Option<WorkerId>,
}

#[derive(Debug, Clone, Default)]
pub struct Plan {
    pending: Vec<ByteRange>,
    active: Vec<Active>,
    min_steal: u64,
    /// Workers that lost a race since the last [`Plan::take_beaten`].
    beaten: Vec<WorkerId>,
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
            beaten: Vec::new(),
        }
    }

    /// The next range for `worker`: a pending segment, else the rest of a segment whose
    /// holder is `stalled` (raced, see the module doc), else the second half of the largest
    /// remaining segment of another worker. `None` when there is nothing worth taking now.
    /// A worker must [`release`](Self::release) its previous range before asking again.
    pub fn next(&mut self, worker: WorkerId, peers: &dyn Peers) -> Option<ByteRange> {
        debug_assert!(self.active.iter().all(|a| a.worker != worker));
        let (range, rival) = match self.pending.pop() {
            Some(r) => (r, None),
            None => match self.race(worker, &|w| peers.stalled(w)) {
                Some((r, holder)) => (r, Some(holder)),
                None => (self.steal(worker, peers)?, None),
            },
        };
        self.active.push(Active {
            worker,
            start: range.start,
            pos: range.start,
            end: range.end,
            rival,
        });
        Some(range)
    }

    /// Pairs `worker` with the stalled holder that has the most left. A holder already raced
    /// qualifies when its rival is stalled too: that rival is beaten and replaced.
    fn race(
        &mut self,
        worker: WorkerId,
        stalled: &dyn Fn(WorkerId) -> bool,
    ) -> Option<(ByteRange, WorkerId)> {
        let holder = self
            .active
            .iter_mut()
            .filter(|a| a.pos < a.end && stalled(a.worker) && a.rival.is_none_or(stalled))
            .max_by_key(|a| a.end - a.pos)?;
        let replaced = holder.rival.replace(worker);
        let (range, holder) = (ByteRange::new(holder.pos, holder.end)?, holder.worker);
        if let Some(old) = replaced {
            if let Some(o) = self.active.iter_mut().find(|a| a.worker == old) {
                o.rival = None;
                o.end = o.pos;
            }
            self.beaten.push(old);
        }
        Some((range, holder))
    }

    /// Splits the segment that would take longest to finish; the thief gets the tail that
    /// it would finish when the holder finishes the head (halves when speeds are unknown).
    fn steal(&mut self, thief: WorkerId, peers: &dyn Peers) -> Option<ByteRange> {
        let known: Vec<u64> = self
            .active
            .iter()
            .map(|a| peers.speed(a.worker))
            .filter(|s| *s > 0)
            .collect();
        // A holder of unknown speed counts as the slowest known one (a fresh connection has
        // no speed yet, and a silent one none either).
        let fallback = known.iter().copied().min().unwrap_or(1);
        let speed_of = |w| match peers.speed(w) {
            0 => fallback,
            s => s,
        };
        let victim = self
            .active
            .iter_mut()
            .filter(|a| a.rival.is_none())
            .max_by_key(|a| {
                u128::from(a.end - a.pos) * 1_000_000 / u128::from(speed_of(a.worker))
            })?;
        let remaining = victim.end - victim.pos;
        if remaining < 2 * self.min_steal {
            return None;
        }
        let (holder, taker) = match (peers.speed(victim.worker), peers.speed(thief)) {
            (h, t) if h > 0 && t > 0 => (u128::from(h), u128::from(t)),
            _ => (1, 1),
        };
        let keep = u64::try_from(u128::from(remaining) * holder / (holder + taker))
            .unwrap_or(remaining / 2)
            .clamp(self.min_steal, remaining - self.min_steal);
        let mid = victim.pos + keep;
        let stolen = ByteRange::new(mid, victim.end)?;
        victim.end = mid;
        Some(stolen)
    }

    /// `worker` received `len` bytes at `offset` (its current position). Returns how many of
    /// them it may write: fewer when its segment was shortened by a steal, zero when the
    /// segment is complete (the worker should then stop reading this response). The first
    /// claim of a racing worker beats its rival.
    pub fn claim(&mut self, worker: WorkerId, offset: u64, len: u64) -> u64 {
        let Some(a) = self.active.iter_mut().find(|a| a.worker == worker) else {
            return 0;
        };
        if offset != a.pos {
            return 0;
        }
        let allowed = len.min(a.end - a.pos);
        a.pos += allowed;
        let beaten = if allowed > 0 { a.rival.take() } else { None };
        if let Some(loser) = beaten {
            if let Some(l) = self.active.iter_mut().find(|a| a.worker == loser) {
                l.rival = None;
                l.end = l.pos;
            }
            self.beaten.push(loser);
        }
        allowed
    }

    /// Workers beaten in a race since the last call: their requests should stop.
    pub fn take_beaten(&mut self) -> Vec<WorkerId> {
        std::mem::take(&mut self.beaten)
    }

    /// The current end of `worker`'s segment, if it holds one.
    pub fn end_of(&self, worker: WorkerId) -> Option<u64> {
        self.active
            .iter()
            .find(|a| a.worker == worker)
            .map(|a| a.end)
    }

    /// `worker` stops working on its segment; bytes from `written` (every byte before it is
    /// written) to the segment end go back to the pending queue, except what a rival still
    /// races for (it keeps that, alone).
    pub fn release(&mut self, worker: WorkerId, written: u64) {
        let Some(i) = self.active.iter().position(|a| a.worker == worker) else {
            return;
        };
        let a = self.active.swap_remove(i);
        let mut end = a.end;
        if let Some(rival) = a.rival {
            if let Some(r) = self.active.iter_mut().find(|r| r.worker == rival) {
                r.rival = None;
                end = a.pos;
            }
        }
        if let Some(rest) = ByteRange::new(written.clamp(a.start, a.pos), end) {
            self.pending.push(rest);
            // Keep lowest offsets at the back (served first).
            self.pending.sort_by_key(|r| std::cmp::Reverse(r.start));
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

    /// Bytes neither claimed nor being received (a raced range counts once).
    pub fn remaining(&self) -> u64 {
        let pending: u64 = self.pending.iter().map(ByteRange::len).sum();
        let active = self
            .active
            .iter()
            .filter(|a| a.rival.is_none_or(|r| r > a.worker))
            .map(|a| a.end - a.pos);
        pending + active.sum::<u64>()
    }

    /// Nothing pending and no worker holding a segment.
    pub fn is_done(&self) -> bool {
        self.pending.is_empty() && self.active.is_empty()
    }
}

#[cfg(test)]
#[path = "plan_tests.rs"]
mod tests;
