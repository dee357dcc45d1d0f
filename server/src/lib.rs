//! ferryd: a range-correct file server with tus 1.0 resumable uploads.
//!
//! Module map:
//! - [`app`]: `Config` and the one builder of the [`app::App`] that `main` and the tests share.
//! - [`server`]: accept loop, HTTP/1.1 + HTTP/2 (h2c and ALPN over TLS), limits, graceful shutdown.
//! - [`router`]: dispatches a request to the file handler or the tus endpoint.
//! - [`tus`]: tus 1.0.0 resumable uploads with every extension, published into the store.
//! - [`auth`]: bearer tokens (constant-time), shared by files and tus.
//! - [`cors`]: CORS for browser clients, shared by files and tus.
//! - [`files`]: GET/HEAD of stored files and directories.
//! - [`host`]: the HTTP/1.1 `Host` rule (RFC 9112 §3.2).
//! - [`http`]: small HTTP helpers shared by every layer (HTTP dates).
//! - [`range`]: `Range` resolution against a length (pure).
//! - [`conditional`]: `If-*` precondition evaluation (pure).
//! - [`multipart`]: streamed `multipart/byteranges` bodies.
//! - [`listing`]: HTML and JSON directory listings, streamed.
//! - [`ui`]: the browser page's assets, embedded, under a reserved prefix.
//! - [`path`]: request-path validation into [`path::RelPath`].
//! - [`index`]: SHA-256 of every served file, kept by a background thread (Repr-Digest,
//!   instant upload).
//! - [`store`]: the storage trait and its local-filesystem backend.
//! - [`error`]: the error type and the one place errors become responses.
//! - [`forwarded`]: the effective scheme, host and remote address of a request (proxies,
//!   `--public-url`).
//! - [`body`]: the response body type.
//! - [`observe`]: per-request access log, metrics and rate limit, attached in the router.
//! - [`metrics`]: Prometheus metrics on their own address (`--metrics-listen`).
//! - [`events`]: upload lifecycle events for metrics and hooks.
//! - [`ratelimit`]: response rate limit and connections per address.
//! - [`tls_reload`]: TLS certificates reloaded on SIGHUP or when the files change.
//! - [`hooks`]: tusd-style HTTP hooks (pre-create; post-events from a durable queue).
//! - [`access_log`]: the access log writer (combined or JSON, reopened for logrotate).
//! - [`worker`]: which worker thread runs, and state kept once per worker.

pub mod access_log;
pub mod app;
pub mod auth;
pub mod body;
pub mod conditional;
pub mod cors;
pub mod error;
pub mod events;
pub mod files;
pub mod forwarded;
pub mod hooks;
pub mod host;
pub mod http;
pub mod index;
pub mod listing;
pub mod metrics;
pub mod multipart;
pub mod observe;
pub mod path;
pub mod range;
pub mod ratelimit;
pub mod router;
pub mod server;
pub mod store;
pub mod tls_reload;
pub mod tus;
pub mod ui;
pub mod worker;
