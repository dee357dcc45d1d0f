//! What an operator sees of each request: the access log line, the metrics, and the response
//! rate limit, attached in one place ([`Observe::tap`] then [`Tap::finish`] in the router).
//!
//! "After the response ends" means after its body: [`Tap::finish`] wraps the response body in
//! [`Counted`], which counts the bytes handed to the connection and reports once, when the
//! body ends or is dropped (client gone). With everything off, [`Observe::tap`] is one branch
//! and the response is not touched.

use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use http::{header, HeaderMap, Request, Response, Version};
use http_body::{Frame, SizeHint};

use crate::access_log::{self, AccessLog, Entry};
use crate::body::Body;
use crate::forwarded::ConnInfo;
use crate::metrics::Metrics;
use crate::ratelimit::{self, IpSlot, PerIp, RateLimit};

/// The operator features of one server; all off by default.
#[derive(Clone, Default)]
pub struct Observe {
    pub access_log: Option<AccessLog>,
    pub metrics: Option<Arc<Metrics>>,
    /// `--limit-rate`: response bodies are released at this rate.
    pub limit_rate: Option<RateLimit>,
    /// `--max-connections-per-ip`.
    pub per_ip: Option<Arc<PerIp>>,
}

/// Held by the accept loop for as long as a connection is open.
pub struct ConnGuard {
    metrics: Option<Arc<Metrics>>,
    _slot: Option<IpSlot>,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Some(m) = &self.metrics {
            m.connections.dec();
        }
    }
}

impl Observe {
    fn is_off(&self) -> bool {
        self.access_log.is_none() && self.metrics.is_none() && self.limit_rate.is_none()
    }

    /// A connection was accepted: `conn` is what its requests will know of it; returned with a
    /// guard to hold until it closes.
    pub fn accept(&self, conn: ConnInfo) -> (ConnInfo, ConnGuard) {
        if let Some(m) = &self.metrics {
            m.connections.inc();
        }
        let mut conn = conn;
        let slot = match &self.per_ip {
            Some(per) => {
                let slot = per.acquire(conn.peer.ip());
                if slot.is_none() {
                    conn.refused = Some(per.max());
                }
                slot
            }
            None => None,
        };
        let guard = ConnGuard {
            metrics: self.metrics.clone(),
            _slot: slot,
        };
        (conn, guard)
    }

    /// Notes what the log needs from the request before the handlers consume it.
    /// `tus_base` is the tus endpoint's path prefix, to name the upload a request is about.
    /// `remote` is the client's address (the effective one, see [`crate::forwarded`]).
    pub fn tap<B>(
        &self,
        req: &Request<B>,
        remote: impl FnOnce() -> IpAddr,
        tus_base: Option<&str>,
    ) -> Option<Tap> {
        if self.is_off() {
            return None;
        }
        if let Some(m) = &self.metrics {
            m.in_flight.inc();
        }
        let h = req.headers();
        let path = req.uri().path();
        let tus_rest = tus_base
            .and_then(|b| path.strip_prefix(b))
            .map(|r| r.trim_end_matches('/').to_string());
        Some(Tap {
            obs: self.clone(),
            start: Instant::now(),
            remote: remote().to_string(),
            method: req.method().as_str().to_string(),
            target: access_log::redact_target(
                req.uri().path_and_query().map_or(path, |pq| pq.as_str()),
            ),
            version: version_str(req.version()),
            referer: text(h, header::REFERER),
            user_agent: text(h, header::USER_AGENT),
            range: text(h, header::RANGE),
            offset_before: tus_rest.as_ref().and_then(|_| offset(h)),
            tus_rest,
        })
    }
}

/// A request being observed; [`Tap::finish`] attaches it to the response.
pub struct Tap {
    obs: Observe,
    start: Instant,
    remote: String,
    method: String,
    target: String,
    version: &'static str,
    referer: Option<String>,
    user_agent: Option<String>,
    range: Option<String>,
    /// The path below the tus base (`""` for creation, else the upload id).
    tus_rest: Option<String>,
    offset_before: Option<u64>,
}

impl Tap {
    /// Wraps the response body so the request is reported when the body ends.
    pub fn finish(self, resp: Response<Body>) -> Response<Body> {
        let (parts, body) = resp.into_parts();
        let h = &parts.headers;
        let (upload_id, received) = match &self.tus_rest {
            Some(rest) => {
                let id = if rest.is_empty() {
                    text(h, header::LOCATION)
                        .and_then(|l| l.rsplit('/').next().map(str::to_string))
                        .filter(|s| !s.is_empty())
                } else {
                    Some(rest.clone())
                };
                let after = offset(h).unwrap_or(0);
                let before = self.offset_before.unwrap_or(0);
                (id, after.saturating_sub(before))
            }
            None => (None, 0),
        };
        let body = match self.obs.limit_rate {
            Some(limit) => ratelimit::throttle(body, limit),
            None => body,
        };
        let report = Report {
            tap: self,
            status: parts.status.as_u16(),
            upload_id,
            received,
        };
        let body = Counted {
            inner: body,
            sent: 0,
            report: Some(Box::new(report)),
        };
        Response::from_parts(parts, crate::body::boxed(body))
    }
}

struct Report {
    tap: Tap,
    status: u16,
    upload_id: Option<String>,
    received: u64,
}

impl Report {
    fn emit(self, sent: u64, completed: bool) {
        let t = self.tap;
        if let Some(m) = &t.obs.metrics {
            m.in_flight.dec();
            m.request(&t.method, self.status, sent, self.received);
        }
        if let Some(log) = &t.obs.access_log {
            log.record(Entry {
                time: SystemTime::now(),
                remote: t.remote,
                method: t.method,
                target: t.target,
                version: t.version,
                status: self.status,
                sent,
                received: self.received,
                duration: t.start.elapsed(),
                referer: t.referer,
                user_agent: t.user_agent,
                range: t.range,
                upload_id: self.upload_id,
                completed,
            });
        }
    }
}

/// A response body that counts what it yields and reports once when it ends or is dropped.
struct Counted {
    inner: Body,
    sent: u64,
    report: Option<Box<Report>>,
}

impl Counted {
    fn done(&mut self, completed: bool) {
        if let Some(r) = self.report.take() {
            r.emit(self.sent, completed);
        }
    }
}

impl http_body::Body for Counted {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.sent = this.sent.saturating_add(d.len() as u64);
                }
                if this.inner.is_end_stream() {
                    this.done(true);
                }
            }
            Poll::Ready(None) => this.done(true),
            Poll::Ready(Some(Err(_))) => this.done(false),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        let completed = http_body::Body::is_end_stream(&self.inner);
        self.done(completed);
    }
}

fn text(h: &HeaderMap, name: header::HeaderName) -> Option<String> {
    h.get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn offset(h: &HeaderMap) -> Option<u64> {
    h.get(ferry_proto::tus::UPLOAD_OFFSET)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

fn version_str(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}
