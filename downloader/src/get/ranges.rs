//! A set of disjoint half-open byte ranges, kept sorted and merged. Used for the bytes that
//! are on disk (journal) and, by complement, for the bytes still to fetch.

use ferry_proto::ByteRange;

/// Sorted, disjoint, non-adjacent ranges (adjacent ranges are merged on insert).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    ranges: Vec<ByteRange>,
}

impl RangeSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a set from arbitrary (possibly overlapping, unsorted) ranges.
    pub fn from_ranges(ranges: impl IntoIterator<Item = ByteRange>) -> Self {
        let mut set = Self::new();
        for r in ranges {
            set.insert(r);
        }
        set
    }

    /// Adds `r`, merging it with every range it overlaps or touches.
    pub fn insert(&mut self, r: ByteRange) {
        let mut merged = r;
        // First range whose end reaches r.start (touching counts).
        let first = self.ranges.partition_point(|x| x.end < r.start);
        let mut last = first;
        while last < self.ranges.len() && self.ranges[last].start <= r.end {
            merged.start = merged.start.min(self.ranges[last].start);
            merged.end = merged.end.max(self.ranges[last].end);
            last += 1;
        }
        self.ranges.splice(first..last, [merged]);
    }

    pub fn ranges(&self) -> &[ByteRange] {
        &self.ranges
    }

    /// Total bytes covered.
    pub fn covered(&self) -> u64 {
        self.ranges.iter().map(ByteRange::len).sum()
    }

    /// True when `0..len` is entirely covered.
    pub fn covers(&self, len: u64) -> bool {
        len == 0 || self.ranges.first() == ByteRange::new(0, len).as_ref()
    }

    /// The gaps of `0..len` not in the set, in order. Ranges past `len` are ignored.
    pub fn missing(&self, len: u64) -> Vec<ByteRange> {
        let mut out = Vec::new();
        let mut pos = 0;
        for r in &self.ranges {
            if r.start >= len {
                break;
            }
            out.extend(ByteRange::new(pos, r.start));
            pos = r.end;
        }
        out.extend(ByteRange::new(pos, len));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange::new(start, end).unwrap()
    }

    #[test]
    fn insert_merges_overlapping_and_touching() {
        let mut s = RangeSet::new();
        s.insert(r(10, 20));
        s.insert(r(30, 40));
        assert_eq!(s.ranges(), &[r(10, 20), r(30, 40)]);
        s.insert(r(20, 30)); // touches both
        assert_eq!(s.ranges(), &[r(10, 40)]);
        s.insert(r(0, 5));
        s.insert(r(3, 12));
        assert_eq!(s.ranges(), &[r(0, 40)]);
        assert_eq!(s.covered(), 40);
        assert!(s.covers(40));
        assert!(!s.covers(41));
    }

    #[test]
    fn missing_is_the_complement() {
        let s = RangeSet::from_ranges([r(5, 10), r(20, 30)]);
        assert_eq!(s.missing(40), vec![r(0, 5), r(10, 20), r(30, 40)]);
        assert_eq!(s.missing(25), vec![r(0, 5), r(10, 20)]);
        assert_eq!(RangeSet::new().missing(7), vec![r(0, 7)]);
        assert!(RangeSet::new().missing(0).is_empty());
    }

    /// Property: after random inserts, the set equals a bitmap of the same inserts, stays
    /// sorted and non-adjacent, and `missing` is its exact complement.
    #[test]
    fn random_inserts_match_a_bitmap() {
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..500 {
            let len = rng.u64(1..200);
            let mut bits = vec![false; len as usize];
            let mut set = RangeSet::new();
            for _ in 0..rng.usize(0..12) {
                let a = rng.u64(0..len);
                let b = rng.u64(a + 1..=len);
                set.insert(r(a, b));
                bits[a as usize..b as usize]
                    .iter_mut()
                    .for_each(|x| *x = true);
            }
            for w in set.ranges().windows(2) {
                assert!(w[0].end < w[1].start, "{:?}", set);
            }
            let mut from_set = vec![false; len as usize];
            for x in set.ranges() {
                from_set[x.start as usize..x.end as usize]
                    .iter_mut()
                    .for_each(|b| *b = true);
            }
            assert_eq!(from_set, bits);
            let gaps: u64 = set.missing(len).iter().map(ByteRange::len).sum();
            assert_eq!(gaps + set.covered(), len);
            assert_eq!(set.covers(len), bits.iter().all(|b| *b));
        }
    }
}
