//! The never-a-wrong-byte checks on a response before its body is written (RFC 9110 §14.4,
//! §13.1.5): status, validator, and a `Content-Range` exactly the range asked for.

use ferry_proto::{ByteRange, ContentRange};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE};
use http::StatusCode;
use reqwest::Response;

use super::{protocol, Fault};
use crate::get::probe::{header_str, header_u64, status_error};
use crate::get::sources::Source;
use crate::get::{Restart, Round};

/// Decides whether the body of `resp` may be written as `range`.
pub(super) fn check_response(
    round: &Round,
    src: &Source,
    resp: &Response,
    range: ByteRange,
) -> Result<(), Fault> {
    let h = resp.headers();
    let status = resp.status();
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        return Err(Fault::Restart(Restart::Changed(
            "the server says the range is past the end".into(),
        )));
    }
    if !status.is_success() {
        return Err(status_error(&src.url, resp, status).into());
    }
    if src.validator.contradicts(h) {
        return Err(Fault::Restart(Restart::Changed(
            "its validator (ETag or Last-Modified) changed".into(),
        )));
    }
    match (round.ranged, status) {
        (true, StatusCode::PARTIAL_CONTENT) => {
            check_content_range(round, &src.url, header_str(h, &CONTENT_RANGE), range)
        }
        (true, StatusCode::OK) => match (header_u64(h, &CONTENT_LENGTH), round.length) {
            (Some(seen), Some(len)) if seen != len => Err(changed_length(len, seen)),
            _ => Err(Fault::Restart(Restart::IgnoresRange)),
        },
        (false, StatusCode::OK) => match (header_u64(h, &CONTENT_LENGTH), round.length) {
            (Some(seen), Some(len)) if seen != len => Err(changed_length(len, seen)),
            _ => Ok(()),
        },
        (_, s) => Err(protocol(
            &src.url,
            format!("expected status 206 or 200, got {s}"),
        )),
    }
}

fn check_content_range(
    round: &Round,
    url: &str,
    value: Option<&str>,
    asked: ByteRange,
) -> Result<(), Fault> {
    let length = round.length.unwrap_or_default();
    let expected = asked.content_range(length);
    let value = value.ok_or_else(|| {
        protocol(
            url,
            format!("206 without Content-Range, expected {expected:?}"),
        )
    })?;
    let parsed = ContentRange::parse(value).map_err(|e| protocol(url, e.to_string()))?;
    if let Some(seen) = parsed.complete.filter(|c| *c != length) {
        return Err(changed_length(length, seen));
    }
    if parsed.range != asked || parsed.complete.is_none() {
        return Err(protocol(
            url,
            format!("expected Content-Range {expected:?}, got {value:?}; not writing it"),
        ));
    }
    Ok(())
}

fn changed_length(expected: u64, seen: u64) -> Fault {
    Fault::Restart(Restart::Changed(format!(
        "its length changed from {expected} to {seen} bytes"
    )))
}
