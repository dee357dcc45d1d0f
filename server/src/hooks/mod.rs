//! HTTP hooks, after tusd's: `--hook-url URL --hooks pre-create,post-create,post-finish,...`.
//!
//! - `pre-create` is asked before an upload exists, with the request's remote address and
//!   headers (tokens redacted) and the upload's length and metadata. A 2xx answer lets the
//!   creation go on; its JSON body may carry `{"metadata": {"filename": "...", "dir": "..."}}`
//!   to replace the metadata (and so the published name and directory). A 4xx answer rejects
//!   the creation: the client gets that status and the hook's body (first 200 characters,
//!   printable ASCII) as the reason. Any other answer, or a hook server that cannot be reached
//!   within 10 s, refuses the creation with 503 (fail closed: the hook may be an
//!   authorization).
//! - post-events (`post-create`, `post-finish`, `post-terminate`, `post-expire`) are written
//!   durably to a queue in the state directory before the request that caused them answers,
//!   and a background task delivers them in order per upload, at least once, retrying with
//!   backoff (1 s doubling to 60 s) until the hook answers 2xx; a failing event holds back
//!   only its own upload's later events. A hook server that is down delays only the
//!   deliveries, never an upload, and queued events survive a restart ([`queue`]).
//! - Every event names the request that caused it (client address as the access log has it,
//!   headers with credentials redacted), also when it fires in a task the request spawned;
//!   `post-expire` has none (the reaper).

pub mod queue;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::events::{Kind, Listener, UploadEvent};
use crate::store::upload::UploadInfo;

/// The request behind an event, as hooks see it: the client's address (as `--behind-proxy`
/// says to take it, the same the access log writes) and its headers with credentials
/// already redacted, so no token is kept for the life of a background task.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub remote: String,
    pub headers: serde_json::Map<String, Value>,
}

tokio::task_local! {
    /// Set by the router around a tus request, so events can name the request; carried into
    /// the tasks the request spawns ([`spawn`]).
    pub static REQUEST: RequestInfo;
}

/// What the router hands to [`scope`]: the request's client address and headers, taken only
/// when hooks are on (no cost for the rest).
pub fn request_info<B>(
    on: bool,
    frontend: &crate::forwarded::Frontend,
    conn: crate::forwarded::ConnInfo,
    req: &http::Request<B>,
) -> Option<RequestInfo> {
    on.then(|| RequestInfo {
        remote: frontend.remote(req).unwrap_or(conn.peer.ip()).to_string(),
        headers: redacted_headers(req.headers()),
    })
}

/// Runs `fut` with [`REQUEST`] set to `ctx` (when there is one).
pub async fn scope<F: std::future::Future>(ctx: Option<RequestInfo>, fut: F) -> F::Output {
    match ctx {
        Some(c) => REQUEST.scope(c, fut).await,
        None => fut.await,
    }
}

/// `tokio::spawn` that keeps the request of the spawning task: an event the task emits (a
/// finish completed after the client went, a final upload concatenated after its last part)
/// names the request that caused it, as one emitted in the request itself does.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let ctx = REQUEST.try_with(Clone::clone).ok();
    tokio::spawn(scope(ctx, fut))
}

#[derive(Debug, Clone)]
pub struct HookConfig {
    pub url: String,
    /// `pre-create`, `post-create`, `post-finish`, `post-terminate`, `post-expire`.
    pub events: HashSet<String>,
}

pub const EVENT_NAMES: &[&str] = &[
    "pre-create",
    "post-create",
    "post-finish",
    "post-terminate",
    "post-expire",
];

pub struct Hooks {
    cfg: HookConfig,
    client: reqwest::Client,
    queue: Arc<queue::Queue>,
}

impl Hooks {
    pub fn new(cfg: HookConfig, queue_dir: &std::path::Path) -> std::io::Result<Arc<Self>> {
        // reqwest is built without a default TLS provider: name ferryd's (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(std::io::Error::other)?;
        let queue = queue::Queue::open(queue_dir, cfg.url.clone(), client.clone())?;
        Ok(Arc::new(Self { cfg, client, queue }))
    }

    pub fn queue(&self) -> &Arc<queue::Queue> {
        &self.queue
    }

    fn wants(&self, name: &str) -> bool {
        self.cfg.events.contains(name)
    }

    /// Asks the `pre-create` hook; may change `info.metadata`, or refuse.
    pub async fn pre_create(&self, info: &mut UploadInfo) -> Result<()> {
        if !self.wants("pre-create") {
            return Ok(());
        }
        let body = payload("pre-create", info, None);
        let resp = self
            .client
            .post(&self.cfg.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body.to_string())
            .send()
            .await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(error = %e, "pre-create hook unreachable: refusing the upload");
                return Err(unavailable());
            }
        };
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        match status {
            200..=299 => change_metadata(info, &text),
            400..=499 => Err(Error::client(
                StatusCode::from_u16(status).unwrap_or(StatusCode::FORBIDDEN),
                reason(&text),
            )),
            _ => {
                tracing::warn!(status, "pre-create hook failed: refusing the upload");
                Err(unavailable())
            }
        }
    }
}

fn unavailable() -> Error {
    Error::client(
        StatusCode::SERVICE_UNAVAILABLE,
        "the upload hook is unavailable; try again later",
    )
}

/// The hook's message as a client may see it: printable ASCII, at most 200 characters.
fn reason(text: &str) -> String {
    let r: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(200)
        .collect();
    if r.trim().is_empty() {
        "refused by the upload hook".into()
    } else {
        r.trim().to_string()
    }
}

/// Applies `{"metadata": {...}}` from a 2xx pre-create answer (any other body: no change).
fn change_metadata(info: &mut UploadInfo, text: &str) -> Result<()> {
    let Ok(v) = serde_json::from_str::<Value>(text) else {
        return Ok(());
    };
    let Some(map) = v.get("metadata").and_then(Value::as_object) else {
        return Ok(());
    };
    let pairs: Vec<(String, Option<Vec<u8>>)> = map
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().map(|s| s.as_bytes().to_vec())))
        .collect();
    let encoded =
        ferry_proto::tus::encode_metadata(pairs.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
    crate::tus::publish::target(Some(&encoded), &info.id).map_err(|_| {
        Error::Internal(std::io::Error::other(
            "pre-create hook gave an invalid name",
        ))
    })?;
    info.metadata = Some(encoded).filter(|m| !m.is_empty());
    Ok(())
}

/// The JSON body of every hook call.
fn payload(event: &str, info: &UploadInfo, published: Option<&str>) -> Value {
    let req = REQUEST.try_with(Clone::clone).ok();
    let metadata: serde_json::Map<String, Value> = info
        .metadata
        .as_deref()
        .and_then(|m| ferry_proto::tus::decode_metadata(m).ok())
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| {
            let v = v.map_or(Value::Null, |b| {
                Value::String(String::from_utf8_lossy(&b).into_owned())
            });
            (k, v)
        })
        .collect();
    json!({
        "event": event,
        "upload": {
            "id": info.id,
            "length": info.length,
            "offset": info.offset,
            "metadata": metadata,
            "published": published,
        },
        "request": req.map(|r| json!({
            "remote_addr": r.remote,
            "headers": r.headers,
        })),
    })
}

/// Request headers for a hook, with credentials replaced by `REDACTED`.
fn redacted_headers(h: &HeaderMap) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    for (name, value) in h {
        let n = name.as_str();
        let v = if matches!(n, "authorization" | "cookie" | "proxy-authorization") {
            "REDACTED".to_string()
        } else {
            String::from_utf8_lossy(value.as_bytes()).into_owned()
        };
        out.insert(n.to_string(), Value::String(v));
    }
    out
}

impl Listener for Hooks {
    fn event<'a>(&'a self, e: &'a UploadEvent) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let name = match e.kind {
                Kind::Created => "post-create",
                Kind::Finished => "post-finish",
                Kind::Terminated => "post-terminate",
                Kind::Expired => "post-expire",
            };
            if !self.wants(name) {
                return;
            }
            let body = payload(name, &e.info, e.published.as_deref());
            if let Err(err) = self.queue.push(&e.info.id, &body).await {
                tracing::error!(error = %err, event = name, id = %e.info.id, "cannot queue hook event");
            }
        })
    }
}
