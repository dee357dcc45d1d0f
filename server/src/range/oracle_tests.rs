//! `http-range-header` (a dev-dependency used only here) as a differential oracle for
//! [`resolve`].
//!
//! The crate is stricter than RFC 9110, so the property is one way: whenever the crate parses
//! a header and validates it against the length, ferryd selects exactly the same bytes.
//! Canonical headers (lowercase unit, no whitespace, no leading zeros, disjoint ranges) must
//! be accepted by both, which keeps the property from holding vacuously.
//!
//! Valid RFC 9110 forms the crate refuses, and why ferryd parses ranges itself (pinned by
//! `crate_refuses_valid_forms_that_ferryd_serves`):
//! - the unit in another case (`Bytes=`): range units are case-insensitive (§14.1);
//! - whitespace before a comma (`0-1 ,3-4`) and empty list elements (`0-1,,3-4`): the `#rule`
//!   allows both (§5.6.1);
//! - leading zeros (`007-9`): `first-pos = 1*DIGIT` (§14.1.2);
//! - a suffix longer than the representation (`-20` of 10 bytes): it selects the whole
//!   representation (§14.1.2);
//! - overlapping ranges (`0-5,3-8`): a server may coalesce them (§14.2), as nginx does;
//! - an unsatisfiable range beside satisfiable ones (`20-30,0-1` of 10 bytes): the satisfiable
//!   ones are served (§14.1.2);
//!
//! and it accepts `bytes=0-` of an empty representation as the range `0..=0`, where §14.1.2
//! makes every range of zero bytes unsatisfiable (416).

use ferry_proto::ByteRange;
use http_range_header::{parse_range_header, RangeUnsatisfiableError as Refused};

use super::tests::Rng;
use super::{coalesce, resolve, RangeOutcome, MAX_RANGES};

/// The crate's answer as ferryd would send it: the validated ranges, half-open and coalesced
/// (the crate never has overlaps; adjacent ranges it keeps apart, ferryd merges).
fn oracle(header: &str, len: u64) -> Result<RangeOutcome, Refused> {
    let ranges = parse_range_header(header)?.validate(len)?;
    let mut ranges: Vec<ByteRange> = ranges
        .into_iter()
        .map(|r| ByteRange::new(*r.start(), r.end() + 1).expect("validated ranges are non-empty"))
        .collect();
    coalesce(&mut ranges);
    Ok(match ranges.len() {
        1 => RangeOutcome::Single(ranges[0]),
        n if n <= MAX_RANGES => RangeOutcome::Multi(ranges),
        _ => RangeOutcome::Full,
    })
}

/// A header both must accept for `len` ≥ 1: up to six disjoint ranges in random order, each
/// written as `a-b`, and the one reaching the end possibly as `a-`, `-n` or `a-<past the end>`.
fn canonical(rng: &mut Rng, len: u64) -> String {
    let mut cuts: Vec<u64> = (0..2 * (1 + rng.below(6)))
        .map(|_| rng.below(len))
        .collect();
    cuts.sort_unstable();
    cuts.dedup();
    if cuts.len() % 2 == 1 {
        cuts.pop();
    }
    if cuts.is_empty() {
        cuts = vec![0, len - 1];
    }
    let mut specs: Vec<String> = cuts
        .chunks(2)
        .map(|c| {
            let (a, b) = (c[0], c[1]);
            match rng.below(4) {
                _ if b != len - 1 => format!("{a}-{b}"),
                0 => format!("{a}-"),
                1 => format!("-{}", len - a),
                2 => format!("{a}-{}", b + 1 + rng.below(100)),
                _ => format!("{a}-{b}"),
            }
        })
        .collect();
    for i in (1..specs.len()).rev() {
        specs.swap(i, rng.below(i as u64 + 1) as usize);
    }
    format!("bytes={}", specs.join(","))
}

/// Any header ferryd might see: the forms above plus case, whitespace, leading zeros, empty
/// elements, overlaps, positions past the end, reversed ranges and garbage.
fn noisy(rng: &mut Rng, len: u64) -> String {
    let unit = ["bytes=", "bytes=", "bytes=", "Bytes=", "bytes= ", "items="][rng.below(6) as usize];
    let pos = |rng: &mut Rng| rng.below(len + 4);
    let specs: Vec<String> = (0..1 + rng.below(5))
        .map(|_| match rng.below(10) {
            0 => format!("-{}", pos(rng)),
            1 => format!("{}-", pos(rng)),
            2 => format!("0{}-{}", pos(rng), len + 3),
            3 => String::new(),
            4 => format!(" {}-{} ", pos(rng), pos(rng)),
            5 => ["x", "-", "1-2-3", "+1-"][rng.below(4) as usize].to_string(),
            _ => {
                let a = pos(rng);
                format!("{a}-{}", a + rng.below(6))
            }
        })
        .collect();
    format!("{unit}{}", specs.join(","))
}

// Property: on every header the crate accepts (for a non-empty representation), ferryd serves
// the same bytes; canonical headers are accepted by both.
#[test]
fn resolution_agrees_with_http_range_header_where_it_accepts() {
    let mut rng = Rng(0x51_7cc1_b727_220a);
    let mut agreed = 0;
    for len in 1..64u64 {
        for _ in 0..200 {
            let header = canonical(&mut rng, len);
            let expected = oracle(&header, len)
                .unwrap_or_else(|e| panic!("the crate refused canonical {header:?} of {len}: {e}"));
            assert_eq!(resolve(&header, len), expected, "{header:?} of {len}");
        }
        for _ in 0..400 {
            let header = noisy(&mut rng, len);
            if let Ok(expected) = oracle(&header, len) {
                assert_eq!(resolve(&header, len), expected, "{header:?} of {len}");
                agreed += 1;
            }
        }
    }
    // Noisy headers the crate accepts must be common, or that half proves little.
    assert!(
        agreed > 1_000,
        "only {agreed} noisy headers accepted by both"
    );
}

// README "Download support matrix": the valid forms `http-range-header` refuses.
#[test]
fn crate_refuses_valid_forms_that_ferryd_serves() {
    let r = |s, e| ByteRange::new(s, e).unwrap();
    let cases: [(&str, u64, RangeOutcome); 7] = [
        ("Bytes=0-1", 10, RangeOutcome::Single(r(0, 2))),
        (
            "bytes=0-1 ,3-4",
            10,
            RangeOutcome::Multi(vec![r(0, 2), r(3, 5)]),
        ),
        (
            "bytes=0-1,,3-4",
            10,
            RangeOutcome::Multi(vec![r(0, 2), r(3, 5)]),
        ),
        ("bytes=007-9", 10, RangeOutcome::Single(r(7, 10))),
        ("bytes=-20", 10, RangeOutcome::Single(r(0, 10))),
        ("bytes=0-5,3-8", 20, RangeOutcome::Single(r(0, 9))),
        ("bytes=20-30,0-1", 10, RangeOutcome::Single(r(0, 2))),
    ];
    for (header, len, ferryd) in cases {
        assert!(oracle(header, len).is_err(), "the crate accepts {header:?}");
        assert_eq!(resolve(header, len), ferryd, "{header:?}");
    }
    // An empty representation satisfies no range (§14.1.2); the crate says `0..=0`.
    assert!(parse_range_header("bytes=0-").unwrap().validate(0).is_ok());
    assert_eq!(resolve("bytes=0-", 0), RangeOutcome::Unsatisfiable);
}
