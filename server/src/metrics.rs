//! Prometheus metrics (`--metrics-listen ADDR`), served on their own address so the public
//! port never exposes them. Names follow tusd's and the Prometheus conventions
//! (`_total` counters, base units). Built on `prometheus-client`, the official Rust client.
//!
//! Request metrics are updated by [`crate::observe`] when a response body ends; connection
//! counts by the accept loop; upload counts from [`crate::events`]; lock waits and internal
//! errors are process-wide counters bumped where they happen ([`LOCK_WAITS`],
//! [`INTERNAL_ERRORS`]); the content indexer's progress is read from the store at each scrape
//! ([`Metrics::watch_index`]), so the indexer keeps plain atomics and knows nothing of this.

use std::convert::Infallible;
use std::sync::{Arc, LazyLock, OnceLock};

use futures_util::future::BoxFuture;
use http::{header, HeaderValue, Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::body::{self, Body};
use crate::events::{Kind, Listener, UploadEvent};
use crate::store::Store;

/// Waits for an upload's lock held by another request (process-wide).
pub static LOCK_WAITS: LazyLock<Counter> = LazyLock::new(Counter::default);
/// Requests that failed with an internal (store or I/O) error (process-wide).
pub static INTERNAL_ERRORS: LazyLock<Counter> = LazyLock::new(Counter::default);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UploadLabels {
    event: &'static str,
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    sent: Counter,
    received: Counter,
    pub(crate) connections: Gauge,
    pub(crate) in_flight: Gauge,
    uploads: Family<UploadLabels, Counter>,
    index: Arc<IndexCollector>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("ferryd");
        let m = Self {
            registry: Registry::default(),
            requests: Family::default(),
            sent: Counter::default(),
            received: Counter::default(),
            connections: Gauge::default(),
            in_flight: Gauge::default(),
            uploads: Family::default(),
            index: Arc::default(),
        };
        r.register(
            "http_requests",
            "Requests answered, by method and status class",
            m.requests.clone(),
        );
        r.register(
            "http_sent_bytes",
            "Response body bytes sent",
            m.sent.clone(),
        );
        r.register(
            "http_received_bytes",
            "Request body bytes stored (upload bodies; ferryd reads no other request bodies)",
            m.received.clone(),
        );
        r.register(
            "connections_active",
            "Open client connections",
            m.connections.clone(),
        );
        r.register(
            "http_responses_in_flight",
            "Responses whose body has not ended yet",
            m.in_flight.clone(),
        );
        r.register(
            "uploads",
            "tus uploads by event: created, finished, terminated, expired",
            m.uploads.clone(),
        );
        r.register(
            "upload_lock_waits",
            "Requests that waited for another request's lock on an upload",
            LOCK_WAITS.clone(),
        );
        r.register(
            "internal_errors",
            "Requests that failed with a store or I/O error (500)",
            INTERNAL_ERRORS.clone(),
        );
        r.register_collector(Box::new(m.index.clone()));
        Self { registry: r, ..m }
    }

    /// Reports the content indexer of `store` from now on (nothing if it runs none).
    pub fn watch_index(&self, store: Arc<dyn Store>) {
        let _ = self.index.store.set(store);
    }

    /// Counts one finished response.
    pub(crate) fn request(&self, method: &str, status: u16, sent: u64, received: u64) {
        let labels = RequestLabels {
            method: method_label(method),
            status: status_class(status),
        };
        self.requests.get_or_create(&labels).inc();
        self.sent.inc_by(sent);
        self.received.inc_by(received);
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

impl Listener for Metrics {
    fn event<'a>(&'a self, e: &'a UploadEvent) -> BoxFuture<'a, ()> {
        let event = match e.kind {
            Kind::Created => "created",
            Kind::Finished => "finished",
            Kind::Terminated => "terminated",
            Kind::Expired => "expired",
        };
        self.uploads.get_or_create(&UploadLabels { event }).inc();
        Box::pin(async {})
    }
}

/// The content indexer's progress, read from the store at each scrape.
#[derive(Default)]
struct IndexCollector {
    store: OnceLock<Arc<dyn Store>>,
}

impl std::fmt::Debug for IndexCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IndexCollector")
    }
}

impl Collector for IndexCollector {
    fn encode(&self, mut e: DescriptorEncoder) -> std::fmt::Result {
        let Some(s) = self.store.get().and_then(|s| s.index_stats()) else {
            return Ok(());
        };
        let counters = [
            (
                "index_hashed_files",
                "Files the content indexer hashed since start",
                s.files_hashed,
            ),
            (
                "index_hashed_bytes",
                "Bytes the content indexer hashed since start",
                s.bytes_hashed,
            ),
            (
                "index_scans",
                "Full walks of the served tree (the first and each rescan)",
                s.scans,
            ),
            (
                "index_cache_saves",
                "Times the content index cache was written",
                s.cache_saves,
            ),
        ];
        for (name, help, v) in counters {
            let m = ConstCounter::new(v);
            m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)?;
        }
        let gauges = [
            (
                "index_files",
                "Served files with a digest in the content index",
                s.entries,
            ),
            (
                "index_pending_files",
                "Files waiting to be hashed",
                s.pending,
            ),
            (
                "index_ready",
                "1 once the first scan is over",
                u64::from(s.ready),
            ),
        ];
        for (name, help, v) in gauges {
            let m = ConstGauge::new(v);
            m.encode(e.encode_descriptor(name, help, None, m.metric_type())?)?;
        }
        Ok(())
    }
}

/// A fixed label per method, so a client cannot grow the label set.
fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "PUT" => "PUT",
        _ => "other",
    }
}

fn status_class(s: u16) -> &'static str {
    match s {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        _ => "5xx",
    }
}

/// Serves `GET /metrics` (any path, in fact) on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            continue;
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| scrape(m.clone(), req));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

async fn scrape(m: Arc<Metrics>, _req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let mut resp = Response::new(body::full(m.render()));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_has_the_counters_with_labels() {
        let m = Metrics::new();
        m.request("GET", 206, 10, 0);
        m.request("BREW", 418, 0, 0);
        let text = m.render();
        assert!(
            text.contains("ferryd_http_requests_total{method=\"GET\",status=\"2xx\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("method=\"other\",status=\"4xx\"} 1"),
            "{text}"
        );
        assert!(text.contains("ferryd_http_sent_bytes_total 10"), "{text}");
        assert!(text.contains("# EOF"), "{text}");
    }
}
