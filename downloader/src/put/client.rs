//! The tus requests `ferry put` makes (tus 1.0.0, tus.io `protocols/resumable-upload`): OPTIONS
//! discovery, POST creation (plain, partial, final), HEAD for the offset, PATCH of one chunk,
//! DELETE. Every request carries `Tus-Resumable`; the client adds `Authorization: Bearer` with a token
//! ([`crate::http::client`]).
//! Non-success statuses become [`Error::Status`] so callers branch on the code (404/410 gone,
//! 409 offset mismatch, 460 checksum mismatch).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ferry_proto::tus::{
    FERRY_INSTANT_CANDIDATE, FERRY_INSTANT_LENGTH, OFFSET_OCTET_STREAM, TUS_CHECKSUM_ALGORITHM,
    TUS_EXTENSION, TUS_MAX_SIZE, TUS_RESUMABLE, TUS_VERSION, UPLOAD_CHECKSUM, UPLOAD_CONCAT,
    UPLOAD_LENGTH, UPLOAD_METADATA, UPLOAD_OFFSET,
};
use futures_util::StreamExt;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use http::{HeaderMap, Method};
use reqwest::{Client, RequestBuilder, Response, Url};

use super::plan::{parse_list, Capabilities};
use crate::auth::Auth;
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::ratelimit::RateLimit;
use crate::retry::parse_retry_after;

/// Bytes handed to the connection at a time while a PATCH body streams (progress granularity).
const BODY_SLICE: usize = 64 * 1024;

/// A tus endpoint's client: the HTTP client (with the credentials), the per-request timeout.
#[derive(Clone)]
pub struct Tus {
    pub http: Client,
    /// Limit for requests without a body; a PATCH may take as long as its body keeps moving
    /// and fails after this long without a byte taken and without an answer.
    pub timeout: Duration,
    /// Credentials, sent only to the origins they were given for (an upload URL on another
    /// host than the endpoint gets none).
    pub auth: Auth,
    /// `--limit-rate`: one bucket shared by every PATCH of the run.
    pub limit: Option<Arc<RateLimit>>,
}

/// Counts the bytes of a PATCH body as they are handed to the connection: into `sent` (so a
/// failed request can be taken back) and into connection `id` of `progress`.
pub struct Meter {
    pub progress: Arc<Progress>,
    pub id: usize,
    pub sent: Arc<AtomicU64>,
}

/// What a creation request returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// Absolute upload URL (`Location` resolved against the endpoint).
    pub url: String,
    /// `Upload-Offset` when the server sent one (ferryd does; an instant upload is complete).
    pub offset: Option<u64>,
    /// Where the finished file can be downloaded, when the server says (`Ferry-Published`).
    pub published: Option<String>,
}

/// The answer to HEAD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    pub offset: u64,
    pub length: Option<u64>,
    pub published: Option<String>,
}

/// What a creation request asks for.
#[derive(Debug, Clone, Default)]
pub struct Creation {
    /// `None` for a final concatenation, whose length the server derives.
    pub length: Option<u64>,
    pub metadata: Option<String>,
    /// `partial` or `final;URL URL`.
    pub concat: Option<String>,
}

impl Tus {
    fn request(&self, method: Method, url: &str) -> RequestBuilder {
        let req = self.http.request(method, url);
        self.auth.apply(req, url).header(TUS_RESUMABLE, TUS_VERSION)
    }

    async fn send(&self, url: &str, req: RequestBuilder, timeout: Duration) -> Result<Response> {
        let resp = tokio::time::timeout(timeout, req.send())
            .await
            .map_err(|_| stalled(url, timeout))?
            .map_err(|source| Error::Network {
                url: url.to_string(),
                source,
            })?;
        success(url, resp)
    }

    /// OPTIONS: extensions, checksum algorithms, maximum size (tus core, OPTIONS).
    pub async fn options(&self, endpoint: &str) -> Result<Capabilities> {
        let resp = self
            .send(
                endpoint,
                self.request(Method::OPTIONS, endpoint),
                self.timeout,
            )
            .await?;
        let h = resp.headers();
        Ok(Capabilities {
            extensions: header(h, &TUS_EXTENSION)
                .map(parse_list)
                .unwrap_or_default(),
            checksum_algorithms: header(h, &TUS_CHECKSUM_ALGORITHM)
                .map(parse_list)
                .unwrap_or_default(),
            max_size: header(h, &TUS_MAX_SIZE).and_then(|v| v.trim().parse().ok()),
        })
    }

    /// ferry extension: whether instant upload could apply to a file of `len` bytes (OPTIONS
    /// with `Ferry-Instant-Length`). `None` when the server does not say (not ferryd, or the
    /// token does not allow uploads).
    pub async fn instant_candidate(&self, endpoint: &str, len: u64) -> Result<Option<bool>> {
        let req = self
            .request(Method::OPTIONS, endpoint)
            .header(FERRY_INSTANT_LENGTH, len);
        let resp = self.send(endpoint, req, self.timeout).await?;
        Ok(
            match header(resp.headers(), &FERRY_INSTANT_CANDIDATE).map(str::trim) {
                Some("?1") => Some(true),
                Some("?0") => Some(false),
                _ => None,
            },
        )
    }

    /// POST to the endpoint (tus creation and concatenation extensions); expects 201 + Location.
    pub async fn create(&self, endpoint: &str, c: &Creation) -> Result<Created> {
        let mut req = self
            .request(Method::POST, endpoint)
            .header(CONTENT_LENGTH, 0);
        if let Some(len) = c.length {
            req = req.header(UPLOAD_LENGTH, len);
        }
        if let Some(m) = c.metadata.as_deref().filter(|m| !m.is_empty()) {
            req = req.header(UPLOAD_METADATA, m);
        }
        if let Some(concat) = &c.concat {
            req = req.header(UPLOAD_CONCAT, concat);
        }
        let resp = self.send(endpoint, req, self.timeout).await?;
        let protocol = |msg: String| Error::Protocol {
            url: endpoint.to_string(),
            msg,
        };
        if resp.status().as_u16() != 201 {
            return Err(protocol(format!(
                "expected 201 Created, got {}",
                resp.status()
            )));
        }
        let h = resp.headers();
        let location = header(h, &LOCATION)
            .ok_or_else(|| protocol("expected a Location header on 201".into()))?;
        let url = resolve(endpoint, location)
            .ok_or_else(|| protocol(format!("invalid Location {location:?}")))?;
        Ok(Created {
            url,
            offset: header_u64(h, &UPLOAD_OFFSET),
            published: published(endpoint, h),
        })
    }

    /// HEAD: the offset the server holds (tus core, HEAD).
    pub async fn head(&self, url: &str) -> Result<Head> {
        let (offset, length, published) = self.head_fields(url).await?;
        let offset = offset.ok_or_else(|| Error::Protocol {
            url: url.to_string(),
            msg: "expected Upload-Offset on HEAD".into(),
        })?;
        Ok(Head {
            offset,
            length,
            published,
        })
    }

    /// HEAD of a final upload (tus concatenation): where it was published once it is
    /// complete (`Upload-Offset` = `size`), `None` while its parts are still being joined (a
    /// final upload may have no offset until then).
    pub async fn final_done(&self, url: &str, size: u64) -> Result<Option<String>> {
        let (offset, _, published) = self.head_fields(url).await?;
        Ok((offset == Some(size)).then(|| published.unwrap_or_else(|| url.to_string())))
    }

    /// Whether `url` (a published file or an upload) still holds all `size` bytes: its
    /// `Upload-Offset`, else its `Content-Length`, equals `size`.
    pub async fn holds(&self, url: &str, size: u64) -> Result<bool> {
        let resp = self
            .send(url, self.request(Method::HEAD, url), self.timeout)
            .await?;
        let h = resp.headers();
        let have = header_u64(h, &UPLOAD_OFFSET).or_else(|| header_u64(h, &CONTENT_LENGTH));
        Ok(have == Some(size))
    }

    async fn head_fields(&self, url: &str) -> Result<(Option<u64>, Option<u64>, Option<String>)> {
        let resp = self
            .send(url, self.request(Method::HEAD, url), self.timeout)
            .await?;
        let h = resp.headers();
        Ok((
            header_u64(h, &UPLOAD_OFFSET),
            header_u64(h, &UPLOAD_LENGTH),
            published(url, h),
        ))
    }

    /// PATCH `data` at `offset`; returns the new offset and any published location. Bytes
    /// handed to the connection are counted in `sent` and reported to `progress`.
    pub async fn patch(
        &self,
        url: &str,
        offset: u64,
        data: Bytes,
        checksum: Option<String>,
        meter: Meter,
    ) -> Result<(u64, Option<String>)> {
        let Meter { progress, id, sent } = meter;
        let watched = Arc::clone(&sent);
        let len = data.len();
        let limit = self.limit.clone();
        let slice = limit.as_ref().map_or(BODY_SLICE, |l| l.quantum() as usize);
        let slices: Vec<Bytes> = (0..len)
            .step_by(slice)
            .map(|s| data.slice(s..len.min(s + slice)))
            .collect();
        // Each slice is granted by the shared bucket before the connection gets it.
        let stream = futures_util::stream::iter(slices).then(move |b| {
            let (limit, sent, progress) = (limit.clone(), Arc::clone(&sent), Arc::clone(&progress));
            async move {
                if let Some(limit) = limit {
                    limit.take(b.len() as u64).await;
                }
                sent.fetch_add(b.len() as u64, Ordering::Relaxed);
                progress.add(id, b.len() as u64);
                progress.tick();
                Ok::<_, std::io::Error>(b)
            }
        });
        let mut req = self
            .request(Method::PATCH, url)
            .header(CONTENT_TYPE, OFFSET_OCTET_STREAM)
            .header(UPLOAD_OFFSET, offset)
            .header(CONTENT_LENGTH, len)
            .body(reqwest::Body::wrap_stream(stream));
        if let Some(c) = checksum {
            req = req.header(UPLOAD_CHECKSUM, c);
        }
        let resp = until_idle(req.send(), &watched, self.timeout)
            .await
            .ok_or_else(|| stalled(url, self.timeout))?
            .map_err(|source| Error::Network {
                url: url.to_string(),
                source,
            })?;
        if let Some(offset) = conflict_offset(&resp) {
            return Err(Error::Conflict {
                url: url.to_string(),
                offset,
            });
        }
        let resp = success(url, resp)?;
        let h = resp.headers();
        let new = header_u64(h, &UPLOAD_OFFSET).ok_or_else(|| Error::Protocol {
            url: url.to_string(),
            msg: "expected Upload-Offset on PATCH".into(),
        })?;
        Ok((new, published(url, h)))
    }

    /// DELETE (tus termination extension). Used only to tidy up; callers ignore failures.
    pub async fn delete(&self, url: &str) -> Result<()> {
        self.send(
            url,
            self.request(Method::DELETE, url).header(CONTENT_LENGTH, 0),
            self.timeout,
        )
        .await
        .map(drop)
    }
}

/// `resp` when its status is a success, else [`Error::Status`] with any `Retry-After`.
fn success(url: &str, resp: Response) -> Result<Response> {
    if resp.status().is_success() {
        return Ok(resp);
    }
    let retry_after =
        header(resp.headers(), &RETRY_AFTER).and_then(|v| parse_retry_after(v, SystemTime::now()));
    Err(Error::Status {
        url: url.to_string(),
        status: resp.status().as_u16(),
        retry_after,
    })
}

/// The server's offset from a 409 that says it (ferryd's `Upload-Offset`); `None` for any
/// other answer and for a bare 409 (tusd's), which the caller resolves with a HEAD.
fn conflict_offset(resp: &Response) -> Option<u64> {
    (resp.status() == http::StatusCode::CONFLICT)
        .then(|| header_u64(resp.headers(), &UPLOAD_OFFSET))
        .flatten()
}

fn stalled(url: &str, after: Duration) -> Error {
    Error::Stalled {
        url: url.to_string(),
        after,
    }
}

/// Runs `request` (a PATCH) until it answers, or until `idle` passes without a byte of its
/// body being taken by the connection and without an answer (`None`). A stall timeout, not a
/// deadline: a large chunk on a slow but working link is never cut short, and a silent
/// connection is given up after `idle` (checked every quarter of it), whatever the chunk size.
async fn until_idle<F: std::future::Future>(
    request: F,
    sent: &AtomicU64,
    idle: Duration,
) -> Option<F::Output> {
    let tick = (idle / 4).max(Duration::from_millis(1));
    tokio::pin!(request);
    let (mut seen, mut since) = (sent.load(Ordering::Relaxed), tokio::time::Instant::now());
    loop {
        match tokio::time::timeout(tick, &mut request).await {
            Ok(out) => return Some(out),
            Err(_) => {
                let now = sent.load(Ordering::Relaxed);
                if now != seen {
                    (seen, since) = (now, tokio::time::Instant::now());
                } else if since.elapsed() >= idle {
                    return None;
                }
            }
        }
    }
}

/// `Location` (absolute or relative, RFC 9110 §10.2.2) resolved against the request URL.
pub fn resolve(base: &str, location: &str) -> Option<String> {
    let base = Url::parse(base).ok()?;
    let url = base.join(location.trim()).ok()?;
    matches!(url.scheme(), "http" | "https").then(|| url.to_string())
}

pub use ferry_proto::tus::FERRY_PUBLISHED;

/// Where a completed upload can be downloaded, when the server says (`Ferry-Published`).
fn published(base: &str, h: &HeaderMap) -> Option<String> {
    header(h, &FERRY_PUBLISHED).and_then(|l| resolve(base, l))
}

fn header<'a>(h: &'a HeaderMap, name: &http::HeaderName) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn header_u64(h: &HeaderMap, name: &http::HeaderName) -> Option<u64> {
    header(h, name).and_then(|v| v.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_patch_that_keeps_sending_is_never_cut_short_and_a_silent_one_is() {
        // Real time, short: tokio's test-util (paused clock) is not a dependency here.
        let idle = Duration::from_millis(200);
        let sent = Arc::new(AtomicU64::new(0));
        let s = Arc::clone(&sent);
        // A body trickling out for 4x the idle time, then the answer: no stall.
        let trickle = async move {
            for _ in 0..40 {
                tokio::time::sleep(Duration::from_millis(20)).await;
                s.fetch_add(1, Ordering::Relaxed);
            }
            7
        };
        let start = tokio::time::Instant::now();
        assert_eq!(until_idle(trickle, &sent, idle).await, Some(7));
        assert!(start.elapsed() >= Duration::from_millis(800));
        // Nothing moves: given up after the idle time, plus at most a quarter of it (and
        // some scheduling slack).
        let start = tokio::time::Instant::now();
        let silent = std::future::pending::<()>();
        assert_eq!(until_idle(silent, &sent, idle).await, None);
        let waited = start.elapsed();
        assert!(
            waited >= idle && waited <= Duration::from_millis(600),
            "{waited:?}"
        );
    }

    #[test]
    fn locations_resolve_against_the_endpoint() {
        let e = "http://127.0.0.1:8080/files/";
        assert_eq!(
            resolve(e, "/files/abc").as_deref(),
            Some("http://127.0.0.1:8080/files/abc")
        );
        assert_eq!(
            resolve(e, "abc").as_deref(),
            Some("http://127.0.0.1:8080/files/abc")
        );
        assert_eq!(
            resolve(e, "https://cdn.example/u/1").as_deref(),
            Some("https://cdn.example/u/1")
        );
        assert_eq!(resolve(e, "ftp://x/y"), None);
        assert_eq!(resolve("not a url", "/x"), None);
    }
}
