//! Limits an operator sets on what one client may take: the response body rate (nginx's
//! `limit_rate` and `limit_rate_after`) and the number of connections from one address.
//!
//! Like nginx, the rate holds per response: a client that opens two connections gets twice
//! the rate (`--max-connections-per-ip` bounds that). The first `after` bytes go at full speed;
//! from then on, at any moment `t` since the limit began, the bytes released never exceed
//! `rate * t`: the body goes out in pieces of an eighth of a second's worth (at least 1 KiB),
//! each released when its last byte is due, so the cap holds over any stretch, without bursts.

use std::collections::HashMap;
use std::future::Future as _;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::{Frame, SizeHint};
use tokio::time::{Instant, Sleep};

use crate::body::{self, Body};

/// `--limit-rate` and `--limit-rate-after`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Bytes per second, > 0.
    pub rate: u64,
    /// Bytes sent at full speed before the limit applies.
    pub after: u64,
}

/// Parses a size the way nginx does: a number with an optional `k` (KiB) or `m` (MiB) or
/// `g` (GiB) suffix, case-insensitive.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.eq_ignore_ascii_case(&'k') => (&s[..i], 1u64 << 10),
        Some((i, c)) if c.eq_ignore_ascii_case(&'m') => (&s[..i], 1 << 20),
        Some((i, c)) if c.eq_ignore_ascii_case(&'g') => (&s[..i], 1 << 30),
        _ => (s, 1),
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("expected a size like 512k or 10m, got {s:?}"))
}

/// Wraps a response body so it is released at no more than `limit.rate`.
pub fn throttle(inner: Body, limit: RateLimit) -> Body {
    crate::body::boxed(Throttled {
        inner,
        rate: limit.rate.max(1),
        after: limit.after,
        sent: 0,
        since: None,
        pending: None,
        sleep: None,
    })
}

struct Throttled {
    inner: Body,
    rate: u64,
    after: u64,
    sent: u64,
    /// When the limit began (the first byte past `after`).
    since: Option<Instant>,
    /// Data taken from `inner` but not released yet.
    pending: Option<Bytes>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Throttled {
    /// How much of `len` bytes may go now; `Err(wait)` if nothing may go for `wait`.
    fn allowance(&mut self, len: usize) -> Result<usize, Duration> {
        if self.sent < self.after {
            let free = self.after - self.sent;
            return Ok(len.min(usize::try_from(free).unwrap_or(usize::MAX)));
        }
        let since = *self.since.get_or_insert_with(Instant::now);
        let piece = usize::try_from((self.rate / 8).max(1024)).unwrap_or(usize::MAX);
        let n = len.min(piece);
        // A piece goes when its last byte is due, so at any moment t the limited bytes
        // released are at most rate * t.
        let limited = (self.sent - self.after).saturating_add(n as u64);
        let due = Duration::from_secs_f64(limited as f64 / self.rate as f64);
        let elapsed = since.elapsed();
        if due > elapsed {
            return Err(due - elapsed);
        }
        Ok(n)
    }
}

impl http_body::Body for Throttled {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        loop {
            if let Some(s) = this.sleep.as_mut() {
                ready!(s.as_mut().poll(cx));
                this.sleep = None;
            }
            let mut data = match this.pending.take() {
                Some(d) => d,
                None => match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
                    Some(Ok(f)) => match f.into_data() {
                        Ok(d) => d,
                        Err(f) => return Poll::Ready(Some(Ok(f))), // trailers
                    },
                    other => return Poll::Ready(other),
                },
            };
            match this.allowance(data.len()) {
                Ok(n) => {
                    let now = data.split_to(n);
                    if !data.is_empty() {
                        this.pending = Some(data);
                    }
                    this.sent = this.sent.saturating_add(now.len() as u64);
                    return Poll::Ready(Some(Ok(Frame::data(now))));
                }
                Err(wait) => {
                    this.pending = Some(data);
                    this.sleep = Some(Box::pin(tokio::time::sleep(wait)));
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.pending.is_none() && self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let extra = self.pending.as_ref().map_or(0, |d| d.len() as u64);
        let h = self.inner.size_hint();
        let mut out = SizeHint::new();
        out.set_lower(h.lower().saturating_add(extra));
        if let Some(u) = h.upper() {
            out.set_upper(u.saturating_add(extra));
        }
        out
    }
}

/// `--max-connections-per-ip`: open connections counted per client address.
pub struct PerIp {
    max: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
}

/// One counted connection; dropping it frees the slot.
pub struct IpSlot {
    per: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub fn new(max: u32) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        })
    }

    pub fn max(&self) -> u32 {
        self.max
    }

    /// Counts a connection from `ip`, or `None` if that address is at the limit.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(IpSlot {
            per: self.clone(),
            ip,
        })
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self.per.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// The answer on a connection beyond `--max-connections-per-ip`: 429 with `Retry-After`, and
/// the connection closes after it.
pub fn too_many_connections(max: u32) -> Response<Body> {
    let mut resp = Response::new(body::full(format!(
        "too many connections from your address: at most {max} at once\n"
    )));
    *resp.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = resp.headers_mut();
    h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt as _;

    #[test]
    fn sizes_parse_like_nginx() {
        assert_eq!(parse_size("100"), Ok(100));
        assert_eq!(parse_size("512k"), Ok(512 * 1024));
        assert_eq!(parse_size("2M"), Ok(2 << 20));
        assert_eq!(parse_size("1g"), Ok(1 << 30));
        assert!(parse_size("k").is_err());
        assert!(parse_size("-1").is_err());
        assert!(parse_size("99999999999999999999g").is_err());
    }

    #[test]
    fn per_ip_slots_are_counted_and_freed() {
        let per = PerIp::new(2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let a = per.acquire(ip).unwrap();
        let _b = per.acquire(ip).unwrap();
        assert!(per.acquire(ip).is_none());
        assert!(per.acquire(other).is_some());
        drop(a);
        assert!(per.acquire(ip).is_some());
    }

    // Real time, short: tokio's test-util (paused clock) is not a dependency here.
    #[tokio::test]
    async fn body_is_released_at_the_rate_after_the_free_bytes() {
        let data = Bytes::from(vec![7u8; 100_000]);
        let limit = RateLimit {
            rate: 100_000,
            after: 20_000,
        };
        let start = Instant::now();
        let mut b = throttle(body::full(data), limit);
        let mut got = 0u64;
        while let Some(f) = b.frame().await {
            let n = f.unwrap().into_data().unwrap().len() as u64;
            got += n;
            // Never ahead of after + rate * t.
            let allowed = 20_000 + (start.elapsed().as_secs_f64() * 100_000.0) as u64 + 1;
            assert!(got <= allowed, "{got} > {allowed} at {:?}", start.elapsed());
        }
        assert_eq!(got, 100_000);
        // 80 kB at 100 kB/s: 0.8 s.
        let took = start.elapsed().as_secs_f64();
        assert!((0.8..3.0).contains(&took), "{took}");
    }
}
