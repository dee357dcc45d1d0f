//! Which server wrote which bytes of the part file (mirrors, issue 9 §4), so that a whole-file
//! checksum that fails can be traced to a server ([`super::liar`]). Pure.

use ferry_proto::ByteRange;

use super::sources::SourceId;

/// Bytes of the part file no server of this run wrote (they were on disk from an earlier run).
pub const EARLIER_RUN: SourceId = usize::MAX;

/// Sorted, disjoint spans, each with the server that wrote it last; touching spans of the
/// same server are merged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Provenance {
    spans: Vec<(ByteRange, SourceId)>,
}

impl Provenance {
    pub fn new() -> Self {
        Self::default()
    }

    /// `source` wrote `r` (replacing whatever wrote those bytes before).
    pub fn record(&mut self, r: ByteRange, source: SourceId) {
        let mut out = Vec::with_capacity(self.spans.len() + 2);
        let mut placed = false;
        for &(s, who) in &self.spans {
            if s.end <= r.start || s.start >= r.end {
                if !placed && s.start >= r.end {
                    push_merged(&mut out, r, source);
                    placed = true;
                }
                push_merged(&mut out, s, who);
                continue;
            }
            if let Some(head) = ByteRange::new(s.start, r.start) {
                push_merged(&mut out, head, who);
            }
            if !placed {
                push_merged(&mut out, r, source);
                placed = true;
            }
            if let Some(tail) = ByteRange::new(r.end, s.end) {
                push_merged(&mut out, tail, who);
            }
        }
        if !placed {
            push_merged(&mut out, r, source);
        }
        self.spans = out;
    }

    pub fn spans(&self) -> &[(ByteRange, SourceId)] {
        &self.spans
    }

    /// Every byte of `0..len`, with the gaps attributed to [`EARLIER_RUN`].
    pub fn cover(&self, len: u64) -> Vec<(ByteRange, SourceId)> {
        let mut out = Vec::new();
        let mut pos = 0;
        for &(r, who) in &self.spans {
            if r.start >= len {
                break;
            }
            out.extend(ByteRange::new(pos, r.start).map(|g| (g, EARLIER_RUN)));
            out.extend(ByteRange::new(r.start, r.end.min(len)).map(|s| (s, who)));
            pos = r.end;
        }
        out.extend(ByteRange::new(pos, len).map(|g| (g, EARLIER_RUN)));
        out
    }

    /// How many distinct writers `0..len` has (gaps count as one).
    pub fn writers(&self, len: u64) -> usize {
        let mut who: Vec<SourceId> = self.cover(len).into_iter().map(|(_, w)| w).collect();
        who.sort_unstable();
        who.dedup();
        who.len()
    }
}

fn push_merged(out: &mut Vec<(ByteRange, SourceId)>, r: ByteRange, who: SourceId) {
    match out.last_mut() {
        Some((last, w)) if *w == who && last.end == r.start => last.end = r.end,
        _ => out.push((r, who)),
    }
}

/// `r` cut into pieces of at most `max` bytes (the unit re-fetched and compared).
pub fn pieces(r: ByteRange, max: u64) -> Vec<ByteRange> {
    let max = max.max(1);
    let mut out = Vec::new();
    let mut start = r.start;
    while start < r.end {
        let end = start.saturating_add(max).min(r.end);
        out.extend(ByteRange::new(start, end));
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(a: u64, b: u64) -> ByteRange {
        ByteRange::new(a, b).unwrap()
    }

    #[test]
    fn later_writes_replace_earlier_ones_and_neighbours_merge() {
        let mut o = Provenance::new();
        o.record(r(0, 10), 0);
        o.record(r(10, 20), 0);
        o.record(r(30, 40), 1);
        assert_eq!(o.spans(), &[(r(0, 20), 0), (r(30, 40), 1)]);
        o.record(r(5, 35), 2);
        assert_eq!(o.spans(), &[(r(0, 5), 0), (r(5, 35), 2), (r(35, 40), 1)]);
        o.record(r(0, 40), 1);
        assert_eq!(o.spans(), &[(r(0, 40), 1)]);
    }

    #[test]
    fn cover_fills_gaps_with_the_earlier_run() {
        let mut o = Provenance::new();
        o.record(r(10, 20), 3);
        assert_eq!(
            o.cover(30),
            vec![
                (r(0, 10), EARLIER_RUN),
                (r(10, 20), 3),
                (r(20, 30), EARLIER_RUN)
            ]
        );
        assert_eq!(o.writers(30), 2);
        assert_eq!(o.writers(15), 2);
        assert_eq!(Provenance::new().writers(5), 1);
    }

    /// Property: after random writes, each byte's writer is the last one recorded over it.
    #[test]
    fn random_writes_match_a_byte_map() {
        let mut rng = fastrand::Rng::with_seed(11);
        for _ in 0..300 {
            let len = rng.u64(1..100);
            let mut bytes = vec![EARLIER_RUN; len as usize];
            let mut o = Provenance::new();
            for _ in 0..rng.usize(0..10) {
                let a = rng.u64(0..len);
                let b = rng.u64(a + 1..=len);
                let who = rng.usize(0..3);
                o.record(r(a, b), who);
                bytes[a as usize..b as usize]
                    .iter_mut()
                    .for_each(|x| *x = who);
            }
            let mut seen = vec![usize::MAX - 1; len as usize];
            for (s, who) in o.cover(len) {
                seen[s.start as usize..s.end as usize]
                    .iter_mut()
                    .for_each(|x| *x = who);
            }
            assert_eq!(seen, bytes);
            for w in o.spans().windows(2) {
                assert!(w[0].0.end <= w[1].0.start);
                assert!(w[0].0.end < w[1].0.start || w[0].1 != w[1].1, "not merged");
            }
        }
    }

    #[test]
    fn pieces_cut_evenly_with_a_short_last_one() {
        assert_eq!(pieces(r(0, 10), 4), vec![r(0, 4), r(4, 8), r(8, 10)]);
        assert_eq!(pieces(r(5, 6), 4), vec![r(5, 6)]);
    }
}
