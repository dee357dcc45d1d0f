//! How big the next PATCH is: the chunk size adapts to what the path delivers (issue 15) and,
//! by default, to how fast it delivers.
//!
//! A PATCH with an `Upload-Checksum` is all or nothing: the server verifies the whole chunk
//! and discards a cut one (tus checksum extension, 460). On a link that cuts every few MiB a
//! fixed 8 MiB chunk would never get through, so:
//! - a cut (the connection failed while the body was on the wire) halves the size, and never
//!   leaves it above half of what the connection took before it failed; the size it shrank
//!   to is also how far it may grow (its reach) until successes say otherwise;
//! - a 413 (a proxy in front of the server refusing the body: nginx's default
//!   `client_max_body_size` is 1 MiB) halves it too and lowers the ceiling for good, so the
//!   size never grows back into the limit;
//! - [`GROW_AFTER`] whole chunks in a row at the reach double it again, up to the ceiling;
//! - within its reach the size is paced: each PATCH is about what the last one sent in
//!   [`PACE`] (at most [`STEP`] times the size before, never below the first size), the
//!   way the browser page paces its PATCHes (`checksum.js`). A fast path then sends fewer,
//!   larger PATCHes (each costs the server a few requests of its own: on S3 a record read
//!   and write, and a part that fills only once the body is in); a slow one keeps the first
//!   size. Paced sizes are whole multiples of the first size, so a server that stores an
//!   upload in parts of that size (ferryd on S3: 8 MiB) never has a tail to write and read
//!   back between two PATCHes.
//!
//! `ferry put` starts at 8 MiB with a ceiling of [`PACED_MAX`] (less with many connections,
//! see [`paced_ceiling`]); an explicit `--chunk-size` is both the first size and the
//! ceiling. The size never drops below [`MIN_CHUNK`] (or the first size when that is
//! smaller). Pure logic: no I/O, no clock (the caller says how long a PATCH took).

use std::time::Duration;

/// The smallest chunk a cut or a 413 shrinks to. Small enough to pass a link that cuts after
/// 1 MiB several times per connection, large enough that the per-request cost stays small.
pub const MIN_CHUNK: u64 = 256 << 10;

/// Whole chunks in a row at the reach before it doubles.
pub const GROW_AFTER: u32 = 4;

/// The first PATCH size when `--chunk-size` is not given (and the smallest paced one).
pub const DEFAULT_CHUNK: u64 = 8 << 20;

/// The largest paced PATCH (the browser page's too).
pub const PACED_MAX: u64 = 64 << 20;

/// Chunk bytes `ferry put` may hold at once over all its connections when it paces: each
/// connection holds the chunk on the wire and the next one, read and checksummed ahead.
pub const PACED_MEMORY: u64 = 256 << 20;

/// How long a paced PATCH should take.
pub const PACE: Duration = Duration::from_secs(1);

/// A paced PATCH is at most this many times the one before.
pub const STEP: u64 = 4;

/// The ceiling of paced PATCHes with `connections` uploading at once (`-x` parts, times
/// `-j` files with `-r`): [`PACED_MAX`], or less so that two chunks per connection stay
/// within [`PACED_MEMORY`], but never below [`DEFAULT_CHUNK`] (a whole multiple of it).
pub fn paced_ceiling(connections: usize) -> u64 {
    let per = PACED_MEMORY / 2 / u64::try_from(connections.max(1)).unwrap_or(u64::MAX);
    (per / DEFAULT_CHUNK * DEFAULT_CHUNK).clamp(DEFAULT_CHUNK, PACED_MAX)
}

/// What `len` bytes sent in `took` make per [`PACE`], rounded down to a whole multiple of
/// `unit`.
fn fit(len: u64, took: Duration, unit: u64) -> u64 {
    let per = u128::from(len) * PACE.as_nanos() / took.as_nanos().max(1);
    let unit = unit.max(1);
    u64::try_from(per).unwrap_or(u64::MAX) / unit * unit
}

/// The chunk-size controller of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSizer {
    min: u64,
    /// The first size: pacing never goes below it (only cuts and 413s do).
    base: u64,
    /// The ceiling: `--chunk-size`, or the paced one; lowered for good by a 413.
    max: u64,
    /// How far the size may go now: the ceiling, or since a cut the size it shrank to,
    /// doubled after every [`GROW_AFTER`] whole chunks at it.
    reach: u64,
    size: u64,
    streak: u32,
    /// Cuts and 413s so far (a chunk prepared before one is not sent if it is too large).
    shrinks: u32,
}

impl ChunkSizer {
    /// Starts at `first`, grows up to `max` (at least `first`; equal: a fixed size).
    pub fn new(first: u64, max: u64) -> Self {
        let first = first.max(1);
        let max = max.max(first);
        Self {
            min: MIN_CHUNK.min(first),
            base: first,
            max,
            reach: max,
            size: first,
            streak: 0,
            shrinks: 0,
        }
    }

    /// Bytes the next PATCH may carry.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Cuts and 413s so far: a chunk prepared when this was lower and now larger than
    /// [`ChunkSizer::size`] should be prepared again at the new size.
    pub fn shrinks(&self) -> u32 {
        self.shrinks
    }

    /// The server took a chunk of `len` bytes, `took` after the PATCH started; `whole`: the
    /// chunk was as large as it was asked to be (not the short end of a part), which alone
    /// counts: whole chunks at the reach towards growing it, and each paces the next ones.
    pub fn taken(&mut self, len: u64, whole: bool, took: Duration) {
        if !whole {
            return; // the short end of a part says little about the path
        }
        if len >= self.reach {
            self.streak += 1;
            if self.streak >= GROW_AFTER {
                self.reach = self.reach.saturating_mul(2).min(self.max);
                self.streak = 0;
            }
        }
        let lo = self.base.min(self.reach);
        let hi = self.reach.min(self.size.saturating_mul(STEP));
        self.size = fit(len, took, self.base).min(hi).max(lo);
    }

    /// The connection failed after `delivered` bytes of a PATCH body were handed to it (an
    /// over-estimate of what arrived: socket buffers hold some). Returns whether the size
    /// changed.
    pub fn cut(&mut self, delivered: u64) -> bool {
        self.streak = 0;
        self.shrinks += 1;
        let old = self.size;
        self.size = (self.size / 2).min(delivered / 2).max(self.min);
        self.reach = self.size;
        self.size != old
    }

    /// The path refused a body of `len` bytes with 413. Lowers the ceiling below `len` for
    /// good; `false` when the size cannot shrink any further (the refusal is then final).
    pub fn too_large(&mut self, len: u64) -> bool {
        self.streak = 0;
        self.shrinks += 1;
        if len <= self.min {
            return false;
        }
        self.max = (len / 2).max(self.min);
        self.reach = self.reach.min(self.max);
        self.size = self.size.min(self.max);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    const SEC: Duration = Duration::from_secs(1);

    /// A sizer with `--chunk-size chunk`: fixed.
    fn fixed(chunk: u64) -> ChunkSizer {
        ChunkSizer::new(chunk, chunk)
    }

    /// A whole chunk of the current size, taken in a second (pacing keeps the size).
    fn whole(s: &mut ChunkSizer) {
        s.taken(s.size(), true, SEC);
    }

    #[test]
    fn starts_at_the_chunk_size() {
        assert_eq!(fixed(8 * MIB).size(), 8 * MIB);
        assert_eq!(ChunkSizer::new(8 * MIB, PACED_MAX).size(), 8 * MIB);
        assert_eq!(fixed(0).size(), 1, "a zero chunk size still makes progress");
    }

    #[test]
    fn a_cut_halves_and_never_stays_above_half_of_what_was_delivered() {
        let mut s = fixed(8 * MIB);
        assert!(s.cut(7 * MIB));
        assert_eq!(s.size(), 7 * MIB / 2);
        assert!(s.cut(MIB));
        assert_eq!(s.size(), MIB / 2);
        // However much the connection took, the size still halves: the chunk was cut.
        assert!(s.cut(100 * MIB));
        assert_eq!(s.size(), MIB / 4);
    }

    #[test]
    fn a_cut_never_shrinks_below_the_minimum() {
        let mut s = fixed(8 * MIB);
        for _ in 0..20 {
            s.cut(0);
        }
        assert_eq!(s.size(), MIN_CHUNK);
        assert!(!s.cut(0), "at the floor nothing changes");
        let mut small = fixed(64 << 10);
        small.cut(0);
        assert_eq!(
            small.size(),
            64 << 10,
            "--chunk-size below the floor is kept"
        );
    }

    #[test]
    fn repeated_cuts_always_reach_a_size_that_fits_the_link() {
        // Issue 15: a link that cuts after 1 MiB must see chunks under 1 MiB after a few cuts,
        // whatever the connection claimed to have taken.
        for delivered in [0, MIB, 3 * MIB, 64 * MIB] {
            let mut s = fixed(1 << 30);
            let mut cuts = 0;
            while s.size() >= MIB {
                s.cut(delivered);
                cuts += 1;
            }
            assert!(cuts <= 11, "{delivered}: {cuts} cuts");
        }
    }

    #[test]
    fn successes_grow_back_to_the_chunk_size_and_no_further() {
        let mut s = fixed(8 * MIB);
        s.cut(MIB);
        assert_eq!(s.size(), MIB / 2);
        let mut chunks = 0;
        while s.size() < 8 * MIB {
            // However fast: a fixed size never outgrows its reach.
            s.taken(s.size(), true, Duration::from_millis(1));
            chunks += 1;
            assert!(chunks < 100);
        }
        assert_eq!(
            chunks,
            4 * GROW_AFTER,
            "doubles every GROW_AFTER whole chunks"
        );
        for _ in 0..20 {
            s.taken(s.size(), true, Duration::from_millis(1));
        }
        assert_eq!(s.size(), 8 * MIB);
    }

    #[test]
    fn short_chunks_and_cuts_reset_the_growth() {
        let mut s = fixed(8 * MIB);
        s.cut(2 * MIB);
        let size = s.size();
        for _ in 0..10 {
            s.taken(size - 1, false, SEC);
        }
        assert_eq!(s.size(), size, "short chunks do not count");
        for _ in 0..GROW_AFTER - 1 {
            whole(&mut s);
        }
        s.cut(100 * MIB);
        for _ in 0..GROW_AFTER - 1 {
            whole(&mut s);
        }
        assert_eq!(s.size(), size / 2, "the streak restarted after the cut");
    }

    #[test]
    fn a_413_lowers_the_ceiling_for_good() {
        // nginx's default client_max_body_size is 1 MiB: 8 -> 4 -> 2 -> 1 MiB passes.
        for mut s in [fixed(8 * MIB), ChunkSizer::new(8 * MIB, PACED_MAX)] {
            let mut refused = 0;
            while s.size() > MIB {
                assert!(s.too_large(s.size()));
                refused += 1;
            }
            assert_eq!((refused, s.size()), (3, MIB));
            for _ in 0..100 {
                s.taken(s.size(), true, Duration::from_millis(1));
            }
            assert_eq!(s.size(), MIB, "never grows back into the limit");
        }
    }

    #[test]
    fn a_413_at_the_floor_is_final() {
        let mut s = fixed(MIN_CHUNK * 2);
        assert!(s.too_large(MIN_CHUNK * 2));
        assert_eq!(s.size(), MIN_CHUNK);
        assert!(!s.too_large(MIN_CHUNK));
        assert_eq!(s.size(), MIN_CHUNK);
    }

    #[test]
    fn a_413_for_an_old_larger_chunk_keeps_a_smaller_current_size() {
        let mut s = fixed(8 * MIB);
        s.cut(MIB);
        assert!(s.too_large(8 * MIB));
        assert_eq!(s.size(), MIB / 2);
        for _ in 0..100 {
            whole(&mut s);
        }
        assert_eq!(s.size(), 4 * MIB);
    }

    #[test]
    fn a_fast_path_grows_to_about_a_second_of_transfer_at_most_4x_a_step() {
        // 80 MiB/s: 8 -> 32 (4x) -> 64 (the ceiling), and stays.
        let mut s = ChunkSizer::new(8 * MIB, PACED_MAX);
        let at_80 = |len: u64| Duration::from_nanos(len * 1_000_000_000 / (80 * MIB));
        let mut sizes = Vec::new();
        for _ in 0..5 {
            let len = s.size();
            s.taken(len, true, at_80(len));
            sizes.push(s.size() / MIB);
        }
        assert_eq!(sizes, [32, 64, 64, 64, 64]);
        // 20 MiB/s (four streams sharing it): about one second, in whole 8 MiB.
        s.taken(s.size(), true, Duration::from_millis(3200));
        assert_eq!(s.size(), 16 * MIB);
        s.taken(s.size(), true, Duration::from_millis(790));
        assert_eq!(s.size(), 16 * MIB);
    }

    #[test]
    fn a_slow_path_keeps_the_first_size() {
        let mut s = ChunkSizer::new(8 * MIB, PACED_MAX);
        for _ in 0..10 {
            s.taken(s.size(), true, Duration::from_secs(8)); // 1 MiB/s
        }
        assert_eq!(s.size(), 8 * MIB, "pacing never goes below the first size");
        s.taken(s.size(), true, Duration::ZERO);
        assert_eq!(
            s.size(),
            32 * MIB,
            "an instant answer is fast, not a division by zero"
        );
    }

    #[test]
    fn after_a_cut_pacing_stays_within_the_reach_until_it_grows_back() {
        // A link that cuts 40 MiB into a connection: the paced size fell from 64 MiB to 20,
        // and it does not jump back to 64 (4x) at the next fast chunk.
        let mut s = ChunkSizer::new(8 * MIB, PACED_MAX);
        for _ in 0..3 {
            s.taken(s.size(), true, Duration::from_millis(100));
        }
        assert_eq!(s.size(), PACED_MAX);
        let shrinks = s.shrinks();
        assert!(s.cut(40 * MIB));
        assert_eq!((s.size(), s.shrinks()), (20 * MIB, shrinks + 1));
        for _ in 0..GROW_AFTER - 1 {
            s.taken(s.size(), true, Duration::from_millis(100));
            assert_eq!(s.size(), 20 * MIB);
        }
        s.taken(s.size(), true, Duration::from_millis(100));
        assert_eq!(
            s.size(),
            40 * MIB,
            "GROW_AFTER whole chunks double the reach"
        );
        // Issue 15: a cut below the first size grows back by the streak rule alone.
        s.cut(MIB);
        assert_eq!(s.size(), MIB / 2);
        s.taken(s.size(), true, Duration::from_millis(1));
        assert_eq!(s.size(), MIB / 2);
    }

    #[test]
    fn the_paced_ceiling_keeps_two_chunks_per_connection_within_the_budget() {
        assert_eq!(paced_ceiling(0), PACED_MAX);
        assert_eq!(paced_ceiling(1), PACED_MAX);
        assert_eq!(paced_ceiling(2), PACED_MAX);
        assert_eq!(paced_ceiling(3), 40 * MIB, "a whole multiple of 8 MiB");
        assert_eq!(paced_ceiling(4), 32 * MIB);
        assert_eq!(paced_ceiling(8), 16 * MIB);
        assert_eq!(paced_ceiling(64 * 64), DEFAULT_CHUNK);
        for n in 1..=64 {
            let c = paced_ceiling(n);
            assert!(
                c == DEFAULT_CHUNK || 2 * c * n as u64 <= PACED_MEMORY,
                "{n}: {c}"
            );
        }
    }
}
