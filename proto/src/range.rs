//! Byte ranges.
//!
//! Internally every range is half-open, `start..end` with `end` exclusive, so lengths are
//! `end - start` and adjacent ranges share a boundary. The inclusive wire form of RFC 9110
//! (`first-pos "-" last-pos`) is produced and parsed only in this module.

use std::fmt;

/// A non-empty half-open byte range `start..end` (`end` exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    /// `start..end`; `None` when the range would be empty or inverted.
    pub fn new(start: u64, end: u64) -> Option<Self> {
        (start < end).then_some(Self { start, end })
    }

    /// Number of bytes in the range (never zero).
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Always false: a `ByteRange` is never empty. Present for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Inclusive last position, the `last-pos` of the wire form.
    pub fn last(&self) -> u64 {
        self.end - 1
    }

    /// The request header value asking for exactly this range: `bytes=start-last`.
    pub fn to_range_header(&self) -> String {
        format!("bytes={}-{}", self.start, self.last())
    }

    /// The `Content-Range` value of a 206 for this range of a representation of
    /// `complete` bytes (RFC 9110 §14.4).
    pub fn content_range(&self, complete: u64) -> String {
        self.content_range_text(complete).as_str().to_owned()
    }

    /// [`ByteRange::content_range`] on the stack, for a server to copy into its header value
    /// at once: no `String`, no growth, no character at a time (this runs for every 206).
    pub fn content_range_text(&self, complete: u64) -> ContentRangeText {
        let mut t = ContentRangeText {
            buf: [0; CONTENT_RANGE_MAX],
            len: 0,
        };
        t.push(b"bytes ");
        t.push(&Digits::of(self.start));
        t.push(b"-");
        t.push(&Digits::of(self.last()));
        t.push(b"/");
        t.push(&Digits::of(complete));
        t
    }
}

impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// "bytes " and three numbers of at most 20 digits with their two separators.
const CONTENT_RANGE_MAX: usize = 6 + 3 * 20 + 2;

/// A `Content-Range` value built without allocating (see [`ByteRange::content_range_text`]).
pub struct ContentRangeText {
    buf: [u8; CONTENT_RANGE_MAX],
    len: usize,
}

impl ContentRangeText {
    fn push(&mut self, bytes: &[u8]) {
        let end = self.len + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.len..end) {
            dst.copy_from_slice(bytes);
            self.len = end;
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or_default()
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII digits and the separators above are ever pushed.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

/// The decimal digits of a `u64`, most significant first.
struct Digits {
    buf: [u8; 20],
    start: usize,
}

/// "00" to "99": two digits per division.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

impl Digits {
    fn of(mut n: u64) -> Self {
        let mut d = Digits {
            buf: [0; 20],
            start: 20,
        };
        // u64::MAX has 20 digits: `start` never goes below 0.
        while n >= 100 {
            let pair = (n % 100) as usize * 2;
            n /= 100;
            d.put(PAIRS.get(pair..pair + 2).unwrap_or(b"00"));
        }
        let pair = n as usize * 2;
        match n {
            0..=9 => d.put(PAIRS.get(pair + 1..pair + 2).unwrap_or(b"0")),
            _ => d.put(PAIRS.get(pair..pair + 2).unwrap_or(b"00")),
        }
        d
    }

    /// Puts `digits` in front of those already there.
    fn put(&mut self, digits: &[u8]) {
        if let Some(start) = self.start.checked_sub(digits.len()) {
            if let Some(dst) = self.buf.get_mut(start..self.start) {
                dst.copy_from_slice(digits);
                self.start = start;
            }
        }
    }
}

impl std::ops::Deref for Digits {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.buf.get(self.start..).unwrap_or_default()
    }
}

/// The `Content-Range` of a 416: `bytes */complete` (RFC 9110 §15.5.17).
pub fn unsatisfied_content_range(complete: u64) -> String {
    format!("bytes */{complete}")
}

/// A parsed `Content-Range` response header of the satisfied form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContentRange {
    pub range: ByteRange,
    /// `None` when the server sent `*` for the complete length.
    pub complete: Option<u64>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("malformed Content-Range {0:?}: expected \"bytes FIRST-LAST/LENGTH\"")]
pub struct ContentRangeError(pub String);

impl ContentRange {
    /// Parses `bytes 0-99/1000` or `bytes 0-99/*` (RFC 9110 §14.4). The unit is
    /// case-insensitive; a range whose last position is before its first, or past the complete
    /// length, is an error.
    pub fn parse(value: &str) -> Result<Self, ContentRangeError> {
        let err = || ContentRangeError(value.to_string());
        let v = value.trim();
        let (unit, rest) = v.split_once(' ').ok_or_else(err)?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return Err(err());
        }
        let (span, complete) = rest.trim_start().split_once('/').ok_or_else(err)?;
        let (first, last) = span.split_once('-').ok_or_else(err)?;
        let first = parse_pos(first).ok_or_else(err)?;
        let last = parse_pos(last).ok_or_else(err)?;
        let complete = match complete {
            "*" => None,
            n => Some(parse_pos(n).ok_or_else(err)?),
        };
        let end = last.checked_add(1).ok_or_else(err)?;
        let range = ByteRange::new(first, end).ok_or_else(err)?;
        if complete.is_some_and(|c| end > c) {
            return Err(err());
        }
        Ok(Self { range, complete })
    }
}

/// A decimal position: ASCII digits only (no sign, no spaces), fits in u64.
fn parse_pos(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_forms_are_inclusive() {
        let r = ByteRange::new(0, 100).unwrap();
        assert_eq!(r.len(), 100);
        assert_eq!(r.to_range_header(), "bytes=0-99");
        assert_eq!(r.content_range(1000), "bytes 0-99/1000");
        assert_eq!(unsatisfied_content_range(7), "bytes */7");
    }

    #[test]
    fn empty_or_inverted_range_is_none() {
        assert_eq!(ByteRange::new(5, 5), None);
        assert_eq!(ByteRange::new(6, 5), None);
    }

    #[test]
    fn content_range_digits_match_format_at_the_edges() {
        for (start, end, complete) in [
            (0, 1, 1),
            (9, 10, 10),
            (10, 100, 1000),
            (0, u64::MAX, u64::MAX),
            (u64::MAX - 1, u64::MAX, u64::MAX),
        ] {
            let r = ByteRange::new(start, end).unwrap();
            assert_eq!(
                r.content_range(complete),
                format!("bytes {}-{}/{}", start, end - 1, complete)
            );
        }
    }

    #[test]
    fn content_range_digits_match_format_for_every_length() {
        let mut values: Vec<u64> = (0..1000).collect();
        let mut n = 1u64;
        for _ in 0..20 {
            values.extend([n - 1, n, n + 1, n.saturating_mul(7), u64::MAX]);
            n = n.saturating_mul(10);
        }
        let max = u64::MAX;
        for v in values {
            let one = ByteRange::new(0, 1).unwrap();
            assert_eq!(one.content_range(v), format!("bytes 0-0/{v}"));
            if let Some(r) = ByteRange::new(v, max) {
                let want = format!("bytes {v}-{}/{max}", max - 1);
                assert_eq!(r.content_range_text(max).as_str(), want);
            }
        }
    }

    #[test]
    fn content_range_round_trips() {
        let r = ByteRange::new(10, 20).unwrap();
        let parsed = ContentRange::parse(&r.content_range(50)).unwrap();
        assert_eq!(
            parsed,
            ContentRange {
                range: r,
                complete: Some(50)
            }
        );
    }

    #[test]
    fn content_range_unknown_length_and_case() {
        let p = ContentRange::parse("BYTES 0-0/*").unwrap();
        assert_eq!(p.range, ByteRange::new(0, 1).unwrap());
        assert_eq!(p.complete, None);
    }

    #[test]
    fn content_range_rejects_nonsense() {
        for bad in [
            "",
            "bytes",
            "bytes 5-4/10",
            "bytes 0-10/10", // last-pos must be < complete length
            "bytes -1-4/10",
            "bytes +1-4/10",
            "bytes 0-4",
            "items 0-4/10",
            "bytes */10",
            "bytes 0-18446744073709551615/*",
        ] {
            assert!(
                ContentRange::parse(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn content_range_beyond_4gib() {
        let p = ContentRange::parse("bytes 5000000000-5000000999/6000000000").unwrap();
        assert_eq!(p.range.len(), 1000);
    }
}
