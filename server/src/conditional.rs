//! Conditional requests (RFC 9110 §13), evaluated in the §13.2.2 order. Pure: no I/O.

use std::time::SystemTime;

use http::{HeaderMap, Method};

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
    let _ = (method, headers, v);
    unimplemented!("being written")
}
