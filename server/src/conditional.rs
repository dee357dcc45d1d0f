//! Conditional requests (RFC 9110 §13), evaluated in the §13.2.2 order. Pure: no I/O.
//!
//! Choices pinned by the tests:
//! - an entity-tag list that does not parse (`If-Match: abc`, an unterminated quote, `*` mixed
//!   with tags) matches nothing: `If-Match` then fails (412, the safe answer when the client's
//!   precondition cannot be verified), `If-None-Match` is then true (the request proceeds, as
//!   if the header were absent), and `If-Range` is not honored (full 200);
//! - a date header that is not exactly one valid HTTP-date is ignored (RFC 9110 §13.1.3-4);
//! - Last-Modified is compared at one-second resolution (the resolution of HTTP-date);
//! - an `If-Range` date is honored only if it equals Last-Modified to the second, as nginx
//!   does. RFC 9110 §13.1.5 also asks for the date to be a strong validator (§8.8.2.2); our
//!   strong ETag is the better validator and clients that want certainty send it.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{
    IF_MATCH, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, IF_UNMODIFIED_SINCE, RANGE,
};
use http::{HeaderMap, HeaderName, Method};

/// The current validators of the selected representation.
#[derive(Debug, Clone, Copy)]
pub struct Validators<'a> {
    /// Strong entity tag including quotes, e.g. `"1f-2a-3"`.
    pub etag: &'a str,
    pub last_modified: SystemTime,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Go on. `honor_range` is false when `If-Range` did not match (send the full 200).
    Proceed { honor_range: bool },
    /// 304 Not Modified (GET/HEAD with If-None-Match / If-Modified-Since not satisfied).
    NotModified,
    /// 412 Precondition Failed.
    Failed,
}

pub fn evaluate(method: &Method, headers: &HeaderMap, v: Validators<'_>) -> Precondition {
    if !headers.keys().any(is_conditional) {
        // Most requests carry no precondition: one pass over their few field names instead of
        // a lookup per conditional header. With none present every step below is skipped.
        return Precondition::Proceed { honor_range: true };
    }
    let safe = method == Method::GET || method == Method::HEAD;
    let modified = unix_secs(v.last_modified);
    // Step 1 (§13.1.1), else step 2 (§13.1.4): an If-Match makes If-Unmodified-Since ignored.
    if headers.contains_key(IF_MATCH) {
        if !list_matches(headers, &IF_MATCH, v.etag, Compare::Strong) {
            return Precondition::Failed;
        }
    } else if single_date(headers, &IF_UNMODIFIED_SINCE).is_some_and(|d| modified > d) {
        return Precondition::Failed;
    }
    // Step 3 (§13.1.2), else step 4 (§13.1.3, GET and HEAD only).
    let not_modified = if headers.contains_key(IF_NONE_MATCH) {
        list_matches(headers, &IF_NONE_MATCH, v.etag, Compare::Weak)
    } else {
        safe && single_date(headers, &IF_MODIFIED_SINCE).is_some_and(|d| modified <= d)
    };
    if not_modified {
        return if safe {
            Precondition::NotModified
        } else {
            Precondition::Failed
        };
    }
    // Step 5 (§13.1.5): If-Range only matters for a GET (or HEAD) that carries Range.
    let honor_range = !(safe && headers.contains_key(RANGE) && headers.contains_key(IF_RANGE))
        || if_range(headers, v);
    Precondition::Proceed { honor_range }
}

fn is_conditional(name: &HeaderName) -> bool {
    [
        IF_MATCH,
        IF_NONE_MATCH,
        IF_MODIFIED_SINCE,
        IF_UNMODIFIED_SINCE,
        IF_RANGE,
    ]
    .contains(name)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Compare {
    /// §8.8.3.2: both tags strong and their opaque-tags equal.
    Strong,
    /// §8.8.3.2: opaque-tags equal, weakness ignored.
    Weak,
}

/// A parsed `entity-tag` (§8.8.3), borrowing the opaque-tag with its quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ETag<'a> {
    weak: bool,
    opaque: &'a [u8],
}

impl ETag<'_> {
    fn matches(&self, other: &ETag<'_>, how: Compare) -> bool {
        let strong_ok = how == Compare::Weak || (!self.weak && !other.weak);
        strong_ok && self.opaque == other.opaque
    }
}

/// Evaluates `If-Match` / `If-None-Match`: all field lines form one list (§5.3). `*` matches
/// any current representation (one exists: we are serving it). A malformed list matches nothing.
fn list_matches(headers: &HeaderMap, name: &HeaderName, current: &str, how: Compare) -> bool {
    let values: Vec<&[u8]> = headers.get_all(name).iter().map(|v| v.as_bytes()).collect();
    if let [only] = values[..] {
        if only.trim_ascii() == b"*" {
            return true;
        }
    }
    let Some((current, b"")) = parse_etag(current.as_bytes()) else {
        return false;
    };
    let mut any = false;
    for v in values {
        match parse_etag_list(v) {
            Some(tags) => any |= tags.iter().any(|t| t.matches(&current, how)),
            None => return false,
        }
    }
    any
}

/// `#entity-tag`: comma-separated, OWS and empty elements allowed (§5.6.1). Commas inside the
/// quotes belong to the tag. `None` if anything else is found.
fn parse_etag_list(mut s: &[u8]) -> Option<Vec<ETag<'_>>> {
    let mut tags = Vec::new();
    loop {
        s = s.trim_ascii_start();
        match s.first() {
            None => return Some(tags),
            Some(b',') => s = &s[1..],
            Some(_) => {
                let (tag, rest) = parse_etag(s)?;
                tags.push(tag);
                let rest = rest.trim_ascii_start();
                if !(rest.is_empty() || rest.starts_with(b",")) {
                    return None;
                }
                s = rest;
            }
        }
    }
}

/// One `entity-tag = [ "W/" ] DQUOTE *etagc DQUOTE` at the start of `s` (the `W` is
/// case-sensitive, §8.8.3); returns it and the rest.
fn parse_etag(s: &[u8]) -> Option<(ETag<'_>, &[u8])> {
    let (weak, s) = match s.strip_prefix(b"W/") {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let body = s.strip_prefix(b"\"")?;
    let close = body.iter().position(|&b| b == b'"')?;
    // etagc = %x21 / %x23-7E / obs-text: no controls, no spaces.
    if !body[..close]
        .iter()
        .all(|&b| b == 0x21 || (b >= 0x23 && b != 0x7f))
    {
        return None;
    }
    let opaque = &s[..close + 2];
    Some((ETag { weak, opaque }, &s[close + 2..]))
}

/// §13.1.5: true if the Range may be honored. An entity tag must strongly match the current
/// one (so a weak tag never does); a date must equal Last-Modified to the second.
fn if_range(headers: &HeaderMap, v: Validators<'_>) -> bool {
    let mut values = headers.get_all(IF_RANGE).iter();
    let (Some(value), None) = (values.next(), values.next()) else {
        return false; // If-Range is a single value, not a list.
    };
    let value = value.as_bytes().trim_ascii();
    if value.starts_with(b"\"") || value.starts_with(b"W/") {
        let current = parse_etag(v.etag.as_bytes());
        return match (parse_etag(value), current) {
            (Some((tag, b"")), Some((cur, b""))) => tag.matches(&cur, Compare::Strong),
            _ => false,
        };
    }
    parse_date(value).is_some_and(|d| d == unix_secs(v.last_modified))
}

/// The value of a date header as whole seconds since the epoch; `None` (ignore the header)
/// unless it is exactly one valid HTTP-date (§13.1.3, §13.1.4).
fn single_date(headers: &HeaderMap, name: &HeaderName) -> Option<i64> {
    let mut values = headers.get_all(name).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => parse_date(value.as_bytes().trim_ascii()),
        _ => None,
    }
}

fn parse_date(value: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(value).ok()?;
    httpdate::parse_http_date(text).ok().map(unix_secs)
}

/// Seconds since the epoch, rounded down: the one-second resolution of HTTP-date (§5.6.7).
/// Times before 1970 (possible as a file mtime) are negative rather than a panic.
fn unix_secs(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => {
            let before = e.duration();
            let secs = before.as_secs() + u64::from(before.subsec_nanos() > 0);
            i64::try_from(secs).map_or(i64::MIN, |s| -s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use http::HeaderValue;
    use Precondition::{Failed, NotModified, Proceed};

    const ETAG: &str = "\"abc\"";
    /// Last-Modified as sent: the mtime below, truncated to the second.
    const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
    const BEFORE: &str = "Sun, 06 Nov 1994 08:49:36 GMT";
    const AFTER: &str = "Sun, 06 Nov 1994 08:49:38 GMT";

    fn validators(etag: &str) -> Validators<'_> {
        // A sub-second mtime, as filesystems report it.
        let last_modified = UNIX_EPOCH + Duration::from_millis(784_111_777_500);
        Validators {
            etag,
            last_modified,
        }
    }

    fn eval_with(method: Method, etag: &str, pairs: &[(HeaderName, &str)]) -> Precondition {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            let value = HeaderValue::from_bytes(value.as_bytes()).unwrap();
            headers.append(name.clone(), value);
        }
        evaluate(&method, &headers, validators(etag))
    }

    fn get(pairs: &[(HeaderName, &str)]) -> Precondition {
        eval_with(Method::GET, ETAG, pairs)
    }

    fn put(pairs: &[(HeaderName, &str)]) -> Precondition {
        eval_with(Method::PUT, ETAG, pairs)
    }

    const GO: Precondition = Proceed { honor_range: true };
    const GO_FULL: Precondition = Proceed { honor_range: false };

    #[test]
    fn no_conditional_headers_proceed() {
        assert_eq!(get(&[]), GO);
        assert_eq!(get(&[(RANGE, "bytes=0-1")]), GO);
        assert_eq!(put(&[]), GO);
    }

    // RFC 9110 §13.1.1: "*" is true when a current representation exists.
    #[test]
    fn if_match_star_matches_existing_representation() {
        assert_eq!(get(&[(IF_MATCH, "*")]), GO);
        assert_eq!(put(&[(IF_MATCH, " * ")]), GO);
    }

    // RFC 9110 §13.1.1: true if any listed tag strongly matches.
    #[test]
    fn if_match_with_current_tag_in_list_proceeds() {
        assert_eq!(get(&[(IF_MATCH, "\"abc\"")]), GO);
        assert_eq!(get(&[(IF_MATCH, "\"x\", \"abc\"")]), GO);
        assert_eq!(get(&[(IF_MATCH, "\"x\",,\t\"abc\" ,")]), GO);
    }

    // RFC 9110 §13.1.1 / §13.2.2 step 1: false → 412.
    #[test]
    fn if_match_without_current_tag_fails() {
        assert_eq!(get(&[(IF_MATCH, "\"x\"")]), Failed);
        assert_eq!(put(&[(IF_MATCH, "\"x\", \"y\"")]), Failed);
        assert_eq!(get(&[(IF_MATCH, "\"ABC\"")]), Failed); // opaque-tags are case-sensitive
    }

    // RFC 9110 §13.1.1: If-Match uses the strong comparison, so a weak tag never matches.
    #[test]
    fn if_match_weak_tag_fails() {
        assert_eq!(get(&[(IF_MATCH, "W/\"abc\"")]), Failed);
        assert_eq!(
            eval_with(Method::GET, "W/\"abc\"", &[(IF_MATCH, "\"abc\"")]),
            Failed
        );
    }

    // RFC 9110 §5.3: several field lines of a list field form one list.
    #[test]
    fn if_match_field_lines_are_one_list() {
        assert_eq!(get(&[(IF_MATCH, "\"x\""), (IF_MATCH, "\"abc\"")]), GO);
        assert_eq!(get(&[(IF_MATCH, "\"x\""), (IF_MATCH, "\"y\"")]), Failed);
    }

    // Pinned choice: a malformed If-Match list matches nothing → 412.
    #[test]
    fn malformed_if_match_fails() {
        for bad in [
            "abc",
            "\"abc",
            "\"abc\" x",
            "\"abc\"\"x\"",
            "w/\"abc\"", // the weak prefix is case-sensitive
            "\"a b\"",
            "*, \"abc\"",
            "\"abc\", *",
            "",
        ] {
            assert_eq!(get(&[(IF_MATCH, bad)]), Failed, "{bad:?}");
        }
        assert_eq!(get(&[(IF_MATCH, "*"), (IF_MATCH, "\"abc\"")]), Failed);
    }

    // RFC 9110 §8.8.3: commas may appear inside an opaque-tag; they are not separators.
    #[test]
    fn comma_inside_quotes_is_part_of_the_tag() {
        let etag = "\"a,b\"";
        assert_eq!(eval_with(Method::GET, etag, &[(IF_MATCH, "\"a,b\"")]), GO);
        assert_eq!(
            eval_with(Method::GET, etag, &[(IF_MATCH, "\"a\", \"b\"")]),
            Failed
        );
        let inm = [(IF_NONE_MATCH, "\"x\", \"a,b\"")];
        assert_eq!(eval_with(Method::GET, etag, &inm), NotModified);
    }

    // RFC 9110 §8.8.3: etagc includes obs-text (bytes ≥ 0x80).
    #[test]
    fn obs_text_in_entity_tag_is_accepted() {
        let (tag, rest) = parse_etag(b"\"\xe9t\xe9\" ,").unwrap();
        assert_eq!(
            (tag.weak, tag.opaque, rest),
            (false, &b"\"\xe9t\xe9\""[..], &b" ,"[..])
        );
        assert_eq!(parse_etag(b"\"a\x7fb\""), None);
        assert_eq!(parse_etag(b"\"a\tb\""), None);
    }

    // RFC 9110 §13.1.4: modified after the date → 412; compared at one-second resolution.
    #[test]
    fn if_unmodified_since_before_last_modified_fails() {
        assert_eq!(put(&[(IF_UNMODIFIED_SINCE, BEFORE)]), Failed);
        assert_eq!(get(&[(IF_UNMODIFIED_SINCE, BEFORE)]), Failed);
        // The mtime is 08:49:37.5; truncated to the second it equals LM.
        assert_eq!(put(&[(IF_UNMODIFIED_SINCE, LM)]), GO);
        assert_eq!(put(&[(IF_UNMODIFIED_SINCE, AFTER)]), GO);
    }

    // RFC 9110 §13.1.4: an invalid date (or a list of dates) is ignored.
    #[test]
    fn invalid_if_unmodified_since_is_ignored() {
        assert_eq!(put(&[(IF_UNMODIFIED_SINCE, "yesterday")]), GO);
        assert_eq!(put(&[(IF_UNMODIFIED_SINCE, "")]), GO);
        assert_eq!(
            put(&[(IF_UNMODIFIED_SINCE, BEFORE), (IF_UNMODIFIED_SINCE, BEFORE)]),
            GO
        );
        assert_eq!(
            put(&[(IF_UNMODIFIED_SINCE, &format!("{BEFORE}, {BEFORE}"))]),
            GO
        );
    }

    // RFC 9110 §13.1.4: If-Unmodified-Since is ignored when If-Match is present.
    #[test]
    fn if_unmodified_since_is_ignored_with_if_match() {
        assert_eq!(
            put(&[(IF_MATCH, "\"abc\""), (IF_UNMODIFIED_SINCE, BEFORE)]),
            GO
        );
    }

    // RFC 9110 §13.1.2: weak comparison; a match on GET/HEAD → 304.
    #[test]
    fn if_none_match_matching_get_or_head_is_not_modified() {
        for tag in ["\"abc\"", "W/\"abc\"", "\"x\", \"abc\"", "*"] {
            assert_eq!(get(&[(IF_NONE_MATCH, tag)]), NotModified, "{tag}");
            let head = eval_with(Method::HEAD, ETAG, &[(IF_NONE_MATCH, tag)]);
            assert_eq!(head, NotModified, "{tag}");
        }
    }

    // RFC 9110 §13.2.2 step 3: a match on any other method → 412 (e.g. PUT If-None-Match: *).
    #[test]
    fn if_none_match_matching_other_method_fails() {
        assert_eq!(put(&[(IF_NONE_MATCH, "*")]), Failed);
        assert_eq!(
            eval_with(Method::POST, ETAG, &[(IF_NONE_MATCH, "W/\"abc\"")]),
            Failed
        );
    }

    #[test]
    fn if_none_match_without_match_proceeds() {
        assert_eq!(get(&[(IF_NONE_MATCH, "\"x\"")]), GO);
        assert_eq!(
            get(&[(IF_NONE_MATCH, "\"x\""), (IF_NONE_MATCH, "W/\"y\"")]),
            GO
        );
        assert_eq!(put(&[(IF_NONE_MATCH, "\"x\"")]), GO);
    }

    // Pinned choice: a malformed If-None-Match matches nothing, so the request proceeds.
    #[test]
    fn malformed_if_none_match_is_ignored() {
        for bad in ["abc", "\"abc", "\"abc\" junk", "*, \"abc\""] {
            assert_eq!(get(&[(IF_NONE_MATCH, bad)]), GO, "{bad:?}");
        }
    }

    // RFC 9110 §13.1.3: not modified since the date (to the second) → 304.
    #[test]
    fn if_modified_since_not_modified_is_304() {
        assert_eq!(get(&[(IF_MODIFIED_SINCE, LM)]), NotModified);
        assert_eq!(get(&[(IF_MODIFIED_SINCE, AFTER)]), NotModified);
        assert_eq!(get(&[(IF_MODIFIED_SINCE, BEFORE)]), GO);
        let head = eval_with(Method::HEAD, ETAG, &[(IF_MODIFIED_SINCE, LM)]);
        assert_eq!(head, NotModified);
    }

    // RFC 9110 §13.1.3: ignored for methods other than GET/HEAD, and when invalid.
    #[test]
    fn if_modified_since_is_ignored_unless_get_head_and_valid() {
        assert_eq!(put(&[(IF_MODIFIED_SINCE, AFTER)]), GO);
        assert_eq!(get(&[(IF_MODIFIED_SINCE, "not a date")]), GO);
        assert_eq!(get(&[(IF_MODIFIED_SINCE, LM), (IF_MODIFIED_SINCE, LM)]), GO);
    }

    // RFC 9110 §13.1.3: If-Modified-Since is ignored when If-None-Match is present.
    #[test]
    fn if_modified_since_is_ignored_with_if_none_match() {
        assert_eq!(
            get(&[(IF_NONE_MATCH, "\"x\""), (IF_MODIFIED_SINCE, AFTER)]),
            GO
        );
    }

    // RFC 9110 §13.2.2: step 1 before step 3, so a failed If-Match wins over a 304.
    #[test]
    fn if_match_failure_beats_if_none_match() {
        assert_eq!(
            get(&[(IF_MATCH, "\"x\""), (IF_NONE_MATCH, "\"abc\"")]),
            Failed
        );
        assert_eq!(
            get(&[(IF_UNMODIFIED_SINCE, BEFORE), (IF_NONE_MATCH, "*")]),
            Failed
        );
        assert_eq!(
            get(&[(IF_MATCH, "\"abc\""), (IF_NONE_MATCH, "\"abc\"")]),
            NotModified
        );
    }

    // RFC 9110 §13.2.2: preconditions are evaluated before Range, so 304 wins over Range.
    #[test]
    fn not_modified_wins_over_range() {
        let h = [
            (RANGE, "bytes=0-1"),
            (IF_NONE_MATCH, ETAG),
            (IF_RANGE, ETAG),
        ];
        assert_eq!(get(&h), NotModified);
        assert_eq!(
            get(&[(RANGE, "bytes=0-1"), (IF_MODIFIED_SINCE, LM)]),
            NotModified
        );
    }

    // RFC 9110 §13.1.5: a strongly matching entity tag honors the Range.
    #[test]
    fn if_range_with_current_strong_etag_honors_range() {
        assert_eq!(get(&[(RANGE, "bytes=0-1"), (IF_RANGE, "\"abc\"")]), GO);
        assert_eq!(get(&[(RANGE, "bytes=0-1"), (IF_RANGE, " \"abc\" ")]), GO);
    }

    // RFC 9110 §13.1.5: any other tag, weak ones included, sends the full representation.
    #[test]
    fn if_range_with_other_or_weak_etag_sends_full() {
        for tag in ["\"x\"", "W/\"abc\"", "\"abc\", \"abc\"", "\"abc"] {
            assert_eq!(
                get(&[(RANGE, "bytes=0-1"), (IF_RANGE, tag)]),
                GO_FULL,
                "{tag}"
            );
        }
        let weak_current = [(RANGE, "bytes=0-1"), (IF_RANGE, "W/\"abc\"")];
        assert_eq!(eval_with(Method::GET, "W/\"abc\"", &weak_current), GO_FULL);
    }

    // RFC 9110 §13.1.5: a date honors the Range only if it is exactly the Last-Modified.
    #[test]
    fn if_range_date_must_equal_last_modified() {
        assert_eq!(get(&[(RANGE, "bytes=0-1"), (IF_RANGE, LM)]), GO);
        assert_eq!(get(&[(RANGE, "bytes=0-1"), (IF_RANGE, BEFORE)]), GO_FULL);
        assert_eq!(get(&[(RANGE, "bytes=0-1"), (IF_RANGE, AFTER)]), GO_FULL);
        // The obsolete date formats are still dates (RFC 9110 §5.6.7).
        let rfc850 = "Sunday, 06-Nov-94 08:49:37 GMT";
        assert_eq!(get(&[(RANGE, "bytes=0-1"), (IF_RANGE, rfc850)]), GO);
        let asctime = "Sun Nov  6 08:49:37 1994";
        assert_eq!(get(&[(RANGE, "bytes=0-1"), (IF_RANGE, asctime)]), GO);
    }

    // Pinned choice: an unparseable or repeated If-Range does not honor the Range.
    #[test]
    fn unparseable_if_range_sends_full() {
        for bad in ["garbage", "", "*", "abc"] {
            assert_eq!(
                get(&[(RANGE, "bytes=0-1"), (IF_RANGE, bad)]),
                GO_FULL,
                "{bad:?}"
            );
        }
        let twice = [(RANGE, "bytes=0-1"), (IF_RANGE, ETAG), (IF_RANGE, ETAG)];
        assert_eq!(get(&twice), GO_FULL);
    }

    // RFC 9110 §13.1.5: If-Range without Range is ignored; it only applies to GET (and HEAD).
    #[test]
    fn if_range_without_range_or_on_other_methods_is_ignored() {
        assert_eq!(get(&[(IF_RANGE, "\"x\"")]), GO);
        assert_eq!(put(&[(RANGE, "bytes=0-1"), (IF_RANGE, "\"x\"")]), GO);
        let head = eval_with(
            Method::HEAD,
            ETAG,
            &[(RANGE, "bytes=0-1"), (IF_RANGE, "\"x\"")],
        );
        assert_eq!(head, GO_FULL);
    }

    #[test]
    fn mtimes_truncate_to_whole_seconds_even_before_1970() {
        assert_eq!(unix_secs(UNIX_EPOCH), 0);
        assert_eq!(unix_secs(UNIX_EPOCH + Duration::from_millis(1999)), 1);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_millis(1500)), -2);
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(3)), -3);
        // A pre-epoch mtime is older than any HTTP date: 304, no panic.
        let old = Validators {
            etag: ETAG,
            last_modified: UNIX_EPOCH - Duration::from_secs(5),
        };
        let mut headers = HeaderMap::new();
        headers.insert(
            IF_MODIFIED_SINCE,
            HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
        );
        assert_eq!(evaluate(&Method::GET, &headers, old), NotModified);
    }
}
