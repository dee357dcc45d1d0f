//! How big the next PATCH is: the chunk size adapts to what the path delivers (issue 15).
//!
//! A PATCH with an `Upload-Checksum` is all or nothing: the server verifies the whole chunk
//! and discards a cut one (tus checksum extension, 460). On a link that cuts every few MiB a
//! fixed 8 MiB chunk would never get through, so:
//! - a cut (the connection failed while the body was on the wire) halves the size, and never
//!   leaves it above half of what the connection took before it failed;
//! - a 413 (a proxy in front of the server refusing the body: nginx's default
//!   `client_max_body_size` is 1 MiB) halves it too and lowers the ceiling for good, so the
//!   size never grows back into the limit;
//! - [`GROW_AFTER`] whole chunks in a row at the current size double it again, up to the
//!   ceiling (`--chunk-size` at first).
//!
//! The size never drops below [`MIN_CHUNK`] (or `--chunk-size` when that is smaller). Pure
//! logic: no I/O, no clock.

/// The smallest chunk a cut or a 413 shrinks to. Small enough to pass a link that cuts after
/// 1 MiB several times per connection, large enough that the per-request cost stays small.
pub const MIN_CHUNK: u64 = 256 << 10;

/// Whole chunks in a row at the current size before it doubles.
pub const GROW_AFTER: u32 = 4;

/// The chunk-size controller of one part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkSizer {
    min: u64,
    max: u64,
    size: u64,
    streak: u32,
}

impl ChunkSizer {
    /// Starts at `chunk` (`--chunk-size`), which is also the ceiling.
    pub fn new(chunk: u64) -> Self {
        let max = chunk.max(1);
        Self {
            min: MIN_CHUNK.min(max),
            max,
            size: max,
            streak: 0,
        }
    }

    /// Bytes the next PATCH may carry.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The server took a whole chunk of `len` bytes. Only chunks of the current size count
    /// towards growing (the short last chunk of a part says nothing about the path).
    pub fn taken(&mut self, len: u64) {
        if len < self.size {
            return;
        }
        self.streak += 1;
        if self.streak >= GROW_AFTER {
            self.size = self.size.saturating_mul(2).min(self.max);
            self.streak = 0;
        }
    }

    /// The connection failed after `delivered` bytes of a PATCH body were handed to it (an
    /// over-estimate of what arrived: socket buffers hold some). Returns whether the size
    /// changed.
    pub fn cut(&mut self, delivered: u64) -> bool {
        self.streak = 0;
        let old = self.size;
        self.size = (self.size / 2).min(delivered / 2).max(self.min);
        self.size != old
    }

    /// The path refused a body of `len` bytes with 413. Lowers the ceiling below `len` for
    /// good; `false` when the size cannot shrink any further (the refusal is then final).
    pub fn too_large(&mut self, len: u64) -> bool {
        self.streak = 0;
        if len <= self.min {
            return false;
        }
        self.max = (len / 2).max(self.min);
        self.size = self.size.min(self.max);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn starts_at_the_chunk_size() {
        assert_eq!(ChunkSizer::new(8 * MIB).size(), 8 * MIB);
        assert_eq!(
            ChunkSizer::new(0).size(),
            1,
            "a zero chunk size still makes progress"
        );
    }

    #[test]
    fn a_cut_halves_and_never_stays_above_half_of_what_was_delivered() {
        let mut s = ChunkSizer::new(8 * MIB);
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
        let mut s = ChunkSizer::new(8 * MIB);
        for _ in 0..20 {
            s.cut(0);
        }
        assert_eq!(s.size(), MIN_CHUNK);
        assert!(!s.cut(0), "at the floor nothing changes");
        let mut small = ChunkSizer::new(64 << 10);
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
            let mut s = ChunkSizer::new(1 << 30);
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
        let mut s = ChunkSizer::new(8 * MIB);
        s.cut(MIB);
        assert_eq!(s.size(), MIB / 2);
        let mut chunks = 0;
        while s.size() < 8 * MIB {
            s.taken(s.size());
            chunks += 1;
            assert!(chunks < 100);
        }
        assert_eq!(
            chunks,
            4 * GROW_AFTER,
            "doubles every GROW_AFTER whole chunks"
        );
        for _ in 0..20 {
            s.taken(s.size());
        }
        assert_eq!(s.size(), 8 * MIB);
    }

    #[test]
    fn short_chunks_and_cuts_reset_the_growth() {
        let mut s = ChunkSizer::new(8 * MIB);
        s.cut(2 * MIB);
        let size = s.size();
        for _ in 0..10 {
            s.taken(size - 1);
        }
        assert_eq!(s.size(), size, "short chunks do not count");
        for _ in 0..GROW_AFTER - 1 {
            s.taken(size);
        }
        s.cut(100 * MIB);
        for _ in 0..GROW_AFTER - 1 {
            s.taken(s.size());
        }
        assert_eq!(s.size(), size / 2, "the streak restarted after the cut");
    }

    #[test]
    fn a_413_lowers_the_ceiling_for_good() {
        // nginx's default client_max_body_size is 1 MiB: 8 -> 4 -> 2 -> 1 MiB passes.
        let mut s = ChunkSizer::new(8 * MIB);
        let mut refused = 0;
        while s.size() > MIB {
            assert!(s.too_large(s.size()));
            refused += 1;
        }
        assert_eq!((refused, s.size()), (3, MIB));
        for _ in 0..100 {
            s.taken(s.size());
        }
        assert_eq!(s.size(), MIB, "never grows back into the limit");
    }

    #[test]
    fn a_413_at_the_floor_is_final() {
        let mut s = ChunkSizer::new(MIN_CHUNK * 2);
        assert!(s.too_large(MIN_CHUNK * 2));
        assert_eq!(s.size(), MIN_CHUNK);
        assert!(!s.too_large(MIN_CHUNK));
        assert_eq!(s.size(), MIN_CHUNK);
    }

    #[test]
    fn a_413_for_an_old_larger_chunk_keeps_a_smaller_current_size() {
        let mut s = ChunkSizer::new(8 * MIB);
        s.cut(MIB);
        assert!(s.too_large(8 * MIB));
        assert_eq!(s.size(), MIB / 2);
        for _ in 0..100 {
            s.taken(s.size());
        }
        assert_eq!(s.size(), 4 * MIB);
    }
}
