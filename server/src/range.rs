//! Resolution of a `Range` request header against a representation length (RFC 9110 §14.1-14.2).
//! Pure: no I/O.
//!
//! We parse by hand because `http-range-header` rejects valid RFC 9110 forms (listed in
//! `range/oracle_tests.rs`, which uses the crate as a differential oracle on the inputs both
//! accept).
//! Choices pinned by the tests:
//! - invalid syntax of any element (`bytes=abc`, `bytes=5-2`, `bytes=-`, `bytes=`, a number
//!   that does not fit in u64) makes us ignore the whole header (200): RFC 9110 §14.2 allows a
//!   server to ignore `Range`, and nginx does the same;
//! - a zero-length representation satisfies no range, so any valid header is a 416;
//! - the amplification defence (CVE-2011-3192, as Apache and nginx): ranges whose lengths add up
//!   to more than the representation, or more than [`MAX_RANGES`] ranges left after coalescing,
//!   are answered with the whole representation (200).

use ferry_proto::ByteRange;

/// What to send for a GET carrying `Range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Ignore the header and send the whole representation with 200: unknown unit, invalid
    /// syntax, or a request that fails the amplification defence (CVE-2011-3192).
    Full,
    /// One range (after coalescing): 206 with `Content-Range`.
    Single(ByteRange),
    /// Two to [`MAX_RANGES`] disjoint, non-adjacent ranges: 206 `multipart/byteranges`.
    Multi(Vec<ByteRange>),
    /// Valid syntax but no range overlaps the representation: 416 with `bytes */len`.
    Unsatisfiable,
}

/// More ranges than this after coalescing is treated as abuse and answered with 200.
pub const MAX_RANGES: usize = 16;

/// Resolves `header` (the raw field value) against a representation of `len` bytes.
pub fn resolve(header: &str, len: u64) -> RangeOutcome {
    let Some(set) = range_set(header) else {
        return RangeOutcome::Full;
    };
    if !set.bytes().any(|b| b == b',') {
        // The common request names one range: resolved without building lists. One range
        // clamped to the representation never exceeds it, so the amplification check has
        // nothing to do.
        return match parse_spec(set.trim_matches(is_ows)).map(|s| s.clamp(len)) {
            None => RangeOutcome::Full,
            Some(None) => RangeOutcome::Unsatisfiable,
            Some(Some(r)) => RangeOutcome::Single(r),
        };
    }
    resolve_list(set, len)
}

/// [`resolve`] for a `range-set` that may list several ranges.
fn resolve_list(set: &str, len: u64) -> RangeOutcome {
    let Some(specs) = parse_set(set) else {
        return RangeOutcome::Full;
    };
    let mut ranges: Vec<ByteRange> = specs.iter().filter_map(|s| s.clamp(len)).collect();
    if ranges.is_empty() {
        return RangeOutcome::Unsatisfiable;
    }
    // Summed in u128: even u64::MAX-byte ranges cannot overflow it, so the comparison is exact.
    let requested: u128 = ranges.iter().map(|r| u128::from(r.len())).sum();
    if requested > u128::from(len) {
        return RangeOutcome::Full;
    }
    coalesce(&mut ranges);
    match ranges.len() {
        1 => RangeOutcome::Single(ranges[0]),
        n if n <= MAX_RANGES => RangeOutcome::Multi(ranges),
        _ => RangeOutcome::Full,
    }
}

/// One syntactically valid `range-spec` of the `bytes` unit (RFC 9110 §14.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    /// `first-pos "-" [ last-pos ]`, both inclusive; `last >= first` is checked when parsing.
    Int { first: u64, last: Option<u64> },
    /// `"-" suffix-length`: the last `n` bytes.
    Suffix(u64),
}

impl Spec {
    /// The half-open range this spec selects in `len` bytes, or `None` if unsatisfiable
    /// (RFC 9110 §14.1.2: first-pos ≥ length, or a zero suffix-length).
    fn clamp(self, len: u64) -> Option<ByteRange> {
        match self {
            Spec::Int { first, last } => {
                // last-pos past the end is clamped to the last byte.
                let end = last.map_or(len, |l| l.saturating_add(1).min(len));
                ByteRange::new(first, end)
            }
            // A suffix longer than the representation selects all of it.
            Spec::Suffix(n) => ByteRange::new(len.saturating_sub(n), len),
        }
    }
}

/// Parses `ranges-specifier = range-unit "=" range-set`. `None` for an unknown unit or any
/// syntax error (both mean "ignore the header").
#[cfg(test)]
fn parse(header: &str) -> Option<Vec<Spec>> {
    parse_set(range_set(header)?)
}

/// The `range-set` of a `ranges-specifier` in the `bytes` unit; `None` for another unit or
/// no `=`.
fn range_set(header: &str) -> Option<&str> {
    let (unit, set) = header.trim_matches(is_ows).split_once('=')?;
    unit.eq_ignore_ascii_case("bytes").then_some(set)
}

fn parse_set(set: &str) -> Option<Vec<Spec>> {
    // range-set = 1#range-spec: the #rule lets list elements be empty and surrounded by OWS
    // (RFC 9110 §5.6.1); at least one element must be present.
    let specs = set
        .split(',')
        .map(|e| e.trim_matches(is_ows))
        .filter(|e| !e.is_empty())
        .map(parse_spec)
        .collect::<Option<Vec<_>>>()?;
    (!specs.is_empty()).then_some(specs)
}

fn parse_spec(spec: &str) -> Option<Spec> {
    // A byte scan: these strings are a few bytes long, shorter than memchr's set-up.
    let dash = spec.bytes().position(|b| b == b'-')?;
    let (first, last) = (&spec[..dash], &spec[dash + 1..]);
    if first.is_empty() {
        return Some(Spec::Suffix(parse_digits(last)?));
    }
    let first = parse_digits(first)?;
    let last = match last {
        "" => None,
        l => Some(parse_digits(l).filter(|&l| l >= first)?),
    };
    Some(Spec::Int { first, last })
}

/// `1*DIGIT` that fits in u64 (no sign, no whitespace).
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        let digit = b.wrapping_sub(b'0');
        if digit > 9 {
            return None;
        }
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

fn is_ows(c: char) -> bool {
    c == ' ' || c == '\t'
}

/// Sorts by start and merges overlapping or adjacent ranges (RFC 9110 §14.2 lets a server
/// coalesce; nginx and Apache do).
fn coalesce(ranges: &mut Vec<ByteRange>) {
    ranges.sort_unstable();
    let mut merged: Vec<ByteRange> = Vec::with_capacity(ranges.len());
    for r in ranges.drain(..) {
        match merged.last_mut() {
            Some(prev) if r.start <= prev.end => prev.end = prev.end.max(r.end),
            _ => merged.push(r),
        }
    }
    *ranges = merged;
}

#[cfg(test)]
mod oracle_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use RangeOutcome::{Full, Multi, Single, Unsatisfiable};

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange::new(start, end).unwrap()
    }

    // RFC 9110 §14.1.2: int-range.
    #[test]
    fn first_last_selects_inclusive_span() {
        assert_eq!(resolve("bytes=0-499", 10_000), Single(r(0, 500)));
        assert_eq!(resolve("bytes=500-999", 10_000), Single(r(500, 1000)));
        assert_eq!(resolve("bytes=5-5", 10), Single(r(5, 6)));
    }

    // RFC 9110 §14.1.2: "bytes=0-" is the whole representation, still a 206.
    #[test]
    fn zero_open_ended_is_single_whole_range() {
        assert_eq!(resolve("bytes=0-", 10), Single(r(0, 10)));
    }

    // RFC 9110 §14.1.2: an omitted last-pos means "to the end".
    #[test]
    fn open_ended_runs_to_end() {
        assert_eq!(resolve("bytes=9500-", 10_000), Single(r(9500, 10_000)));
        assert_eq!(resolve("bytes=9-", 10), Single(r(9, 10)));
    }

    // RFC 9110 §14.1.2: a last-pos at or past the end is replaced by length - 1.
    #[test]
    fn last_pos_past_end_is_clamped() {
        assert_eq!(resolve("bytes=5-100", 10), Single(r(5, 10)));
        assert_eq!(resolve("bytes=0-9", 10), Single(r(0, 10)));
        assert_eq!(resolve("bytes=0-10", 10), Single(r(0, 10)));
    }

    // RFC 9110 §14.1.2: suffix-range selects the last N bytes.
    #[test]
    fn suffix_selects_last_bytes() {
        assert_eq!(resolve("bytes=-500", 10_000), Single(r(9500, 10_000)));
        assert_eq!(resolve("bytes=-1", 10), Single(r(9, 10)));
    }

    // RFC 9110 §14.1.2: "If the selected representation is shorter than the specified
    // suffix-length, the entire representation is used" (a 206, as nginx does).
    #[test]
    fn suffix_longer_than_file_returns_whole_file() {
        assert_eq!(resolve("bytes=-11", 10), Single(r(0, 10)));
        assert_eq!(resolve("bytes=-10", 10), Single(r(0, 10)));
        assert_eq!(resolve("bytes=-18446744073709551615", 10), Single(r(0, 10)));
    }

    // RFC 9110 §14.1.2: a suffix-length of zero is unsatisfiable.
    #[test]
    fn zero_suffix_is_unsatisfiable() {
        assert_eq!(resolve("bytes=-0", 10), Unsatisfiable);
    }

    // RFC 9110 §14.1.1 / §15.5.17: first-pos ≥ length is unsatisfiable.
    #[test]
    fn first_pos_at_or_past_end_is_unsatisfiable() {
        assert_eq!(resolve("bytes=10-", 10), Unsatisfiable);
        assert_eq!(resolve("bytes=10-20", 10), Unsatisfiable);
        assert_eq!(resolve("bytes=1000-2000", 10), Unsatisfiable);
        assert_eq!(resolve("bytes=10-,-0,20-30", 10), Unsatisfiable);
    }

    // RFC 9110 §14.1.1: unsatisfiable elements of a set are dropped if others remain.
    #[test]
    fn unsatisfiable_elements_are_dropped() {
        assert_eq!(resolve("bytes=20-30,0-1", 10), Single(r(0, 2)));
        assert_eq!(resolve("bytes=-0,2-3,50-", 10), Single(r(2, 4)));
    }

    // Pinned choice: a zero-length representation satisfies no range (416), whatever the spec.
    #[test]
    fn empty_representation_makes_every_range_unsatisfiable() {
        for h in [
            "bytes=0-",
            "bytes=0-0",
            "bytes=-1",
            "bytes=-100",
            "bytes=0-5,-3",
        ] {
            assert_eq!(resolve(h, 0), Unsatisfiable, "{h}");
        }
        // An invalid header is still ignored rather than a 416.
        assert_eq!(resolve("bytes=abc", 0), Full);
    }

    // RFC 9110 §14.1: range units are case-insensitive.
    #[test]
    fn unit_name_is_case_insensitive() {
        for h in ["Bytes=0-1", "BYTES=0-1", "bYtEs=0-1"] {
            assert_eq!(resolve(h, 10), Single(r(0, 2)), "{h}");
        }
    }

    // RFC 9110 §14.2: a server MUST ignore a Range with a unit it does not understand.
    #[test]
    fn unknown_unit_is_ignored() {
        assert_eq!(resolve("items=0-1", 10), Full);
        assert_eq!(resolve("byte=0-1", 10), Full);
        assert_eq!(resolve("bytesx=0-1", 10), Full);
        assert_eq!(resolve("0-1", 10), Full);
        assert_eq!(resolve("", 10), Full);
    }

    // RFC 9110 §5.6.1: the #rule allows OWS around elements and empty elements.
    #[test]
    fn list_whitespace_and_empty_elements_are_accepted() {
        let two = Multi(vec![r(0, 2), r(5, 7)]);
        assert_eq!(resolve("bytes=0-1,,5-6", 10), two);
        assert_eq!(resolve("bytes= 0-1 , 5-6", 10), two);
        assert_eq!(resolve("bytes=0-1,\t5-6 ,", 10), two);
        assert_eq!(resolve("bytes=,0-1,5-6", 10), two);
        assert_eq!(resolve("  bytes=0-1,5-6  ", 10), two);
    }

    // Pinned choice (RFC 9110 §14.2 allows ignoring Range): invalid syntax → 200, whole file.
    #[test]
    fn invalid_syntax_is_ignored() {
        for h in [
            "bytes=abc",
            "bytes=5-2",
            "bytes=-",
            "bytes=",
            "bytes=,",
            "bytes= , ",
            "bytes=1",
            "bytes=1-2-3",
            "bytes=--1",
            "bytes=+1-2",
            "bytes=1-+2",
            "bytes=0x10-20",
            "bytes=1 -2",
            "bytes=1- 2",
            "bytes=1.5-2",
            "bytes = 0-1",
            "bytes=0-1;5-6",
            "bytes=0-1,abc",
            "bytes=0-1,5-2",
            "bytes=０-1", // full-width digit: not ASCII DIGIT
        ] {
            assert_eq!(resolve(h, 100), Full, "{h:?}");
        }
    }

    // Pinned choice: a number that does not fit in u64 is invalid syntax → 200.
    #[test]
    fn numbers_too_big_for_u64_are_ignored() {
        for h in [
            "bytes=18446744073709551616-",
            "bytes=0-18446744073709551616",
            "bytes=-18446744073709551616",
            "bytes=99999999999999999999999999-",
        ] {
            assert_eq!(resolve(h, 100), Full, "{h}");
        }
    }

    #[test]
    fn u64_extremes_do_not_overflow() {
        let max = u64::MAX;
        assert_eq!(
            resolve("bytes=0-18446744073709551615", 10),
            Single(r(0, 10))
        );
        assert_eq!(resolve("bytes=18446744073709551615-", 10), Unsatisfiable);
        assert_eq!(
            resolve("bytes=18446744073709551614-", max),
            Single(r(max - 1, max))
        );
        assert_eq!(
            resolve("bytes=0-18446744073709551615", max),
            Single(r(0, max))
        );
        assert_eq!(
            resolve("bytes=-18446744073709551615", max),
            Single(r(0, max))
        );
        assert_eq!(resolve("bytes=-1", max), Single(r(max - 1, max)));
        // Two whole-file ranges: the sum exceeds u64 and is still caught by the amplification check.
        assert_eq!(resolve("bytes=0-,0-", max), Full);
    }

    // Files larger than 4 GiB need 64-bit offsets end to end.
    #[test]
    fn offsets_beyond_4gib() {
        let len = 6_000_000_000;
        assert_eq!(
            resolve("bytes=5000000000-5000000999", len),
            Single(r(5_000_000_000, 5_000_001_000))
        );
        assert_eq!(resolve("bytes=-1000", len), Single(r(len - 1000, len)));
        assert_eq!(resolve("bytes=4294967296-", len), Single(r(1 << 32, len)));
        assert_eq!(resolve("bytes=6000000000-", len), Unsatisfiable);
        assert_eq!(
            resolve("bytes=0-0,4294967295-4294967296", len),
            Multi(vec![r(0, 1), r(4_294_967_295, 4_294_967_297)])
        );
    }

    // RFC 9110 §14.2: a server MAY coalesce overlapping or adjacent ranges; we do.
    #[test]
    fn overlapping_and_adjacent_ranges_are_coalesced() {
        assert_eq!(resolve("bytes=0-4,5-9", 20), Single(r(0, 10)));
        assert_eq!(resolve("bytes=0-5,3-8", 20), Single(r(0, 9)));
        assert_eq!(resolve("bytes=5-9,0-4", 20), Single(r(0, 10)));
        assert_eq!(
            resolve("bytes=0-1,10-11,2-3", 20),
            Multi(vec![r(0, 4), r(10, 12)])
        );
    }

    // RFC 9110 §14.6: parts are sent in ascending order after coalescing (as nginx does).
    #[test]
    fn multiple_ranges_are_sorted() {
        assert_eq!(
            resolve("bytes=8-9,0-1,4-5", 10),
            Multi(vec![r(0, 2), r(4, 6), r(8, 10)])
        );
        assert_eq!(resolve("bytes=-2,0-1", 10), Multi(vec![r(0, 2), r(8, 10)]));
    }

    // CVE-2011-3192: ranges adding up to more than the file are ignored (200), even if they
    // would coalesce into one.
    #[test]
    fn ranges_summing_past_length_are_ignored() {
        assert_eq!(resolve("bytes=0-,0-", 10), Full);
        assert_eq!(resolve("bytes=0-5,1-5", 10), Full); // 6 + 5 > 10
        assert_eq!(resolve("bytes=0-4,0-4", 10), Single(r(0, 5))); // 5 + 5 == 10
        let many = format!("bytes={}", vec!["0-"; 1000].join(","));
        assert_eq!(resolve(&many, 1 << 40), Full);
    }

    // CVE-2011-3192: more than MAX_RANGES ranges after coalescing are ignored (200).
    #[test]
    fn more_than_max_ranges_after_coalescing_are_ignored() {
        let spec = |n: u64| {
            (0..n)
                .map(|i| format!("{}-{}", 2 * i, 2 * i))
                .collect::<Vec<_>>()
        };
        let sixteen = format!("bytes={}", spec(16).join(","));
        assert!(matches!(resolve(&sixteen, 100), Multi(v) if v.len() == MAX_RANGES));
        let seventeen = format!("bytes={}", spec(17).join(","));
        assert_eq!(resolve(&seventeen, 100), Full);
        // Many adjacent ranges coalesce into one and are fine.
        let adjacent: Vec<_> = (0..100).map(|i| format!("{i}-{i}")).collect();
        assert_eq!(
            resolve(&format!("bytes={}", adjacent.join(",")), 100),
            Single(r(0, 100))
        );
    }

    /// A small deterministic generator (xorshift64*), so the property test needs no crate and
    /// fails reproducibly.
    pub(super) struct Rng(pub(super) u64);

    impl Rng {
        pub(super) fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        pub(super) fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    fn random_spec(rng: &mut Rng, len: u64) -> String {
        let pos = |rng: &mut Rng| rng.below(len + 5);
        match rng.below(4) {
            0 => format!("-{}", pos(rng)),
            1 => format!("{}-", pos(rng)),
            _ => {
                let a = pos(rng);
                format!("{a}-{}", a + rng.below(8))
            }
        }
    }

    /// Distinct single bytes at even positions, shuffled: they never merge, so the MAX_RANGES
    /// limit is reached without tripping the amplification check.
    fn sparse_specs(rng: &mut Rng, len: u64) -> Vec<String> {
        let mut specs: Vec<String> = (0..len / 2 + 2)
            .filter(|_| rng.below(4) != 0)
            .map(|k| format!("{0}-{0}", 2 * k))
            .collect();
        for i in (1..specs.len()).rev() {
            specs.swap(i, rng.below(i as u64 + 1) as usize);
        }
        if specs.is_empty() {
            specs.push("0-0".into());
        }
        specs
    }

    /// Bytes selected by the header according to §14.1.2, computed naively byte by byte.
    fn model(specs: &[Spec], len: u64) -> (Vec<bool>, u64) {
        let mut covered = vec![false; len as usize];
        let mut requested = 0;
        for s in specs {
            let (lo, hi) = match *s {
                Spec::Int { first, last } => (first, last.map_or(len, |l| (l + 1).min(len))),
                Spec::Suffix(n) => (len.saturating_sub(n), if n == 0 { 0 } else { len }),
            };
            for b in lo..hi {
                covered[b as usize] = true;
            }
            requested += hi.saturating_sub(lo);
        }
        (covered, requested)
    }

    // Property: for every length and many generated headers, the outcome agrees with a naive
    // byte-by-byte model, and any ranges are in bounds, non-empty, sorted, disjoint and
    // non-adjacent.
    #[test]
    fn resolution_matches_naive_model() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Full (amplification), Full (too many ranges), Single, Multi, Unsatisfiable
        let mut seen = [0usize; 5];
        for len in 0..40u64 {
            for i in 0..600 {
                let specs = if i % 3 == 0 {
                    sparse_specs(&mut rng, len)
                } else {
                    let n = 1 + rng.below(20);
                    (0..n).map(|_| random_spec(&mut rng, len)).collect()
                };
                let header = format!("bytes={}", specs.join(","));
                let parsed = parse(&header).expect("generated headers are valid");
                let (covered, requested) = model(&parsed, len);
                let outcome = resolve(&header, len);
                seen[match &outcome {
                    Full if requested > len => 0,
                    Full => 1,
                    Single(_) => 2,
                    Multi(_) => 3,
                    Unsatisfiable => 4,
                }] += 1;
                let ranges = match &outcome {
                    Single(one) => vec![*one],
                    Multi(v) => {
                        assert!((2..=MAX_RANGES).contains(&v.len()), "{header} {len}");
                        v.clone()
                    }
                    Unsatisfiable => {
                        assert!(!covered.contains(&true), "{header} {len}");
                        continue;
                    }
                    Full => {
                        assert!(covered.contains(&true), "{header} {len}");
                        let runs = count_runs(&covered);
                        assert!(requested > len || runs > MAX_RANGES, "{header} {len}");
                        continue;
                    }
                };
                assert!(requested <= len, "{header} {len}");
                for w in ranges.windows(2) {
                    assert!(w[0].end < w[1].start, "not sorted/disjoint: {header} {len}");
                }
                let mut got = vec![false; len as usize];
                for rg in &ranges {
                    assert!(rg.start < rg.end && rg.end <= len, "{header} {len}");
                    for b in rg.start..rg.end {
                        got[b as usize] = true;
                    }
                }
                assert_eq!(got, covered, "{header} {len}");
            }
        }
        // The generator must exercise every outcome, or the property proves little.
        assert!(seen.iter().all(|&n| n > 50), "outcome counts {seen:?}");
    }

    // The one-range fast path of `resolve` answers exactly as the general list path does.
    #[test]
    fn single_range_fast_path_agrees_with_list_resolution() {
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        let fixed = [
            "",
            " ",
            "-",
            "5-2",
            "abc",
            "-0",
            "0-",
            " 3-4 ",
            "\t-2",
            "1-1x",
            "99999999999999999999-",
        ];
        for len in 0..20u64 {
            let generated = (0..200).map(|_| random_spec(&mut rng, len));
            for spec in fixed.iter().map(|s| s.to_string()).chain(generated) {
                let header = format!("bytes={spec}");
                assert_eq!(
                    resolve(&header, len),
                    resolve_list(&spec, len),
                    "{header:?} {len}"
                );
            }
        }
    }

    fn count_runs(covered: &[bool]) -> usize {
        let starts = covered.windows(2).filter(|w| !w[0] && w[1]).count();
        starts + usize::from(covered.first() == Some(&true))
    }
}
