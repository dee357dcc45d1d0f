//! Probe: what is at the URL? `HEAD`, falling back to `GET` with `Range: bytes=0-0` when HEAD
//! is refused (signed URLs often allow only GET). Learns the length, whether ranges may work,
//! the strong validator for `If-Range`, a digest, and a safe file name.

use std::time::Duration;

use ferry_proto::disposition::{parse_filename, sanitize_file_name};
use ferry_proto::headers::{CONTENT_DIGEST, REPR_DIGEST};
use ferry_proto::{ByteRange, ContentRange};
use http::header::{
    ACCEPT_RANGES, CONTENT_DISPOSITION, CONTENT_LENGTH, CONTENT_RANGE, ETAG, LAST_MODIFIED, RANGE,
};
use http::{HeaderMap, StatusCode};
use reqwest::{Client, Response};

use super::checksum::{parse_digest_header, Expected};
use crate::auth::Auth;
use crate::error::{Error, Result};

/// What identifies one version of the remote file (RFC 9110 §8.8). `etag` holds only a strong
/// ETag: a weak one may not be used in `If-Range` (RFC 9110 §13.1.5), but it still reveals a
/// change, so `any_etag` keeps whatever the server sent.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Validator {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub any_etag: Option<String>,
}

impl Validator {
    pub fn from_headers(h: &HeaderMap) -> Self {
        let text = |name| {
            h.get(name)
                .and_then(|v: &http::HeaderValue| v.to_str().ok())
                .map(str::to_string)
        };
        let any_etag = text(ETAG);
        Self {
            etag: any_etag.clone().filter(|t| t.starts_with('"')),
            last_modified: text(LAST_MODIFIED),
            any_etag,
        }
    }

    /// The `If-Range` value: the strong ETag, else Last-Modified. We send Last-Modified without
    /// checking it against `Date` as RFC 9110 §13.1.5 suggests; a server that finds the date
    /// too weak answers 200, and ferry then continues on one connection from byte 0.
    pub fn if_range(&self) -> Option<&str> {
        self.etag.as_deref().or(self.last_modified.as_deref())
    }

    /// Whether a response's validators contradict ours (a header absent from the response is
    /// no contradiction). ETags are compared weakly (RFC 9110 §8.8.3.2): `W/"a"` and `"a"`
    /// agree, `"a"` and `"b"` do not.
    pub fn contradicts(&self, h: &HeaderMap) -> bool {
        let seen = Self::from_headers(h);
        let opaque =
            |t: &Option<String>| t.as_deref().map(|t| t.trim_start_matches("W/").to_string());
        let differs = |ours: Option<String>, theirs: Option<String>| matches!((ours, theirs), (Some(a), Some(b)) if a != b);
        differs(opaque(&self.any_etag), opaque(&seen.any_etag))
            || differs(self.last_modified.clone(), seen.last_modified)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Probe {
    /// `None` when the server sent no length: one connection, no resume.
    pub length: Option<u64>,
    /// False when the server said `Accept-Ranges: none` or answered the probe's range with 200.
    pub ranges: bool,
    pub validator: Validator,
    pub file_name: Option<String>,
    pub digest: Option<Expected>,
}

/// Probes `url`; the client follows redirects, so each request starts at the user's URL.
pub async fn probe(client: &Client, url: &str, timeout: Duration) -> Result<Probe> {
    probe_as(client, url, timeout, &Auth::default()).await
}

/// [`probe`] with the run's credentials.
pub async fn probe_as(client: &Client, url: &str, timeout: Duration, auth: &Auth) -> Result<Probe> {
    let head = tokio::time::timeout(timeout, auth.apply(client.head(url), url).send()).await;
    if let Ok(Ok(resp)) = head {
        if resp.status().is_success() {
            return Ok(from_head(url, &resp));
        }
        tracing::debug!(status = %resp.status(), "HEAD refused, probing with a ranged GET");
    }
    let first = ByteRange::new(0, 1)
        .map(|r| r.to_range_header())
        .unwrap_or_default();
    let get = auth.apply(client.get(url), url).header(RANGE, first);
    let resp = tokio::time::timeout(timeout, get.send())
        .await
        .map_err(|_| stalled(url, timeout))?
        .map_err(|source| Error::Network {
            url: url.to_string(),
            source,
        })?;
    from_get(url, &resp)
}

fn stalled(url: &str, after: Duration) -> Error {
    Error::Stalled {
        url: url.to_string(),
        after,
    }
}

fn from_head(url: &str, resp: &Response) -> Probe {
    let h = resp.headers();
    let ranges = !h
        .get(ACCEPT_RANGES)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"none"));
    let digest = header_digest(h, true);
    Probe {
        length: header_u64(h, &CONTENT_LENGTH),
        ranges,
        validator: Validator::from_headers(h),
        file_name: file_name(header_str(h, &CONTENT_DISPOSITION), url),
        digest,
    }
}

fn from_get(url: &str, resp: &Response) -> Result<Probe> {
    let h = resp.headers();
    let (length, ranges) = match resp.status() {
        StatusCode::PARTIAL_CONTENT => {
            let cr = header_str(h, &CONTENT_RANGE).unwrap_or_default();
            let parsed = ContentRange::parse(cr).map_err(|e| Error::Protocol {
                url: url.to_string(),
                msg: e.to_string(),
            })?;
            (parsed.complete, parsed.complete.is_some())
        }
        s if s.is_success() => (header_u64(h, &CONTENT_LENGTH), false),
        s => return Err(status_error(url, resp, s)),
    };
    Ok(Probe {
        length,
        ranges,
        validator: Validator::from_headers(h),
        file_name: file_name(header_str(h, &CONTENT_DISPOSITION), url),
        digest: header_digest(h, resp.status() == StatusCode::OK),
    })
}

/// A non-success status as an error, with `Retry-After` when the server sent one.
pub fn status_error(url: &str, resp: &Response, status: StatusCode) -> Error {
    let retry_after = header_str(resp.headers(), &http::header::RETRY_AFTER)
        .and_then(|v| crate::retry::parse_retry_after(v, std::time::SystemTime::now()));
    Error::Status {
        url: url.to_string(),
        status: status.as_u16(),
        retry_after,
    }
}

/// `Repr-Digest` always describes the whole file; `Content-Digest` only when the message
/// carries (or, for HEAD, would carry) the whole file.
fn header_digest(h: &HeaderMap, whole: bool) -> Option<Expected> {
    let repr = header_str(h, &REPR_DIGEST).and_then(|v| parse_digest_header(v, "Repr-Digest"));
    repr.or_else(|| {
        whole
            .then(|| {
                header_str(h, &CONTENT_DIGEST)
                    .and_then(|v| parse_digest_header(v, "Content-Digest"))
            })
            .flatten()
    })
}

pub fn header_str<'a>(h: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

pub fn header_u64(h: &HeaderMap, name: &http::HeaderName) -> Option<u64> {
    header_str(h, name).and_then(|v| v.trim().parse().ok())
}

/// The local file name: `filename*`, then `filename` (RFC 6266), then the last segment of
/// the URL path, percent-decoded; always through `sanitize_file_name`.
pub fn file_name(disposition: Option<&str>, url: &str) -> Option<String> {
    let from_header = disposition
        .and_then(parse_filename)
        .and_then(|n| sanitize_file_name(&n));
    from_header.or_else(|| {
        let parsed = reqwest::Url::parse(url).ok()?;
        let segment = parsed
            .path_segments()?
            .rfind(|s| !s.is_empty())?
            .to_string();
        let decoded = percent_encoding::percent_decode_str(&segment).decode_utf8_lossy();
        sanitize_file_name(&decoded)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn file_name_prefers_extended_parameter_then_plain_then_url() {
        let cd = "attachment; filename=\"plain.txt\"; filename*=UTF-8''%E2%82%AC%20rates.txt";
        assert_eq!(
            file_name(Some(cd), "http://h/x/y.bin").as_deref(),
            Some("€ rates.txt")
        );
        assert_eq!(
            file_name(Some("attachment; filename=\"a.txt\""), "http://h/y").as_deref(),
            Some("a.txt")
        );
        assert_eq!(
            file_name(None, "http://h/dir/some%20file.iso?sig=1").as_deref(),
            Some("some file.iso")
        );
        assert_eq!(file_name(None, "http://h/dir/").as_deref(), Some("dir"));
        assert_eq!(file_name(None, "http://h/"), None);
    }

    #[test]
    fn file_name_is_sanitized() {
        assert_eq!(
            file_name(
                Some("attachment; filename=\"../../etc/passwd\""),
                "http://h/"
            )
            .as_deref(),
            Some("passwd")
        );
        assert_eq!(
            file_name(None, "http://h/a%2F..%2F..%2Fevil").as_deref(),
            Some("evil")
        );
        assert_eq!(file_name(None, "http://h/%2E%2E"), None);
        assert_eq!(
            file_name(None, "http://h/bad%0Aname").as_deref(),
            Some("badname")
        );
    }

    #[test]
    fn only_strong_etags_are_validators() {
        let mut h = HeaderMap::new();
        h.insert(ETAG, HeaderValue::from_static("W/\"weak\""));
        h.insert(
            LAST_MODIFIED,
            HeaderValue::from_static("Sun, 06 Nov 1994 08:49:37 GMT"),
        );
        let v = Validator::from_headers(&h);
        assert_eq!(v.etag, None);
        assert_eq!(v.if_range(), Some("Sun, 06 Nov 1994 08:49:37 GMT"));
        h.insert(ETAG, HeaderValue::from_static("\"strong\""));
        assert_eq!(Validator::from_headers(&h).if_range(), Some("\"strong\""));
    }

    #[test]
    fn contradiction_needs_both_sides() {
        let ours = Validator::from_headers(
            &[(ETAG, HeaderValue::from_static("\"a\""))]
                .into_iter()
                .collect(),
        );
        let mut h = HeaderMap::new();
        assert!(!ours.contradicts(&h));
        h.insert(ETAG, HeaderValue::from_static("\"a\""));
        assert!(!ours.contradicts(&h));
        h.insert(ETAG, HeaderValue::from_static("W/\"a\""));
        assert!(!ours.contradicts(&h), "weak comparison: same opaque tag");
        h.insert(ETAG, HeaderValue::from_static("\"b\""));
        assert!(ours.contradicts(&h));
        h.insert(ETAG, HeaderValue::from_static("W/\"b\""));
        assert!(ours.contradicts(&h), "a weak ETag still reveals a change");
    }
}
