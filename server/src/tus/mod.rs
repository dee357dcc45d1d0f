//! tus 1.0.0 resumable uploads (tus.io `protocols/resumable-upload`) into the same store that
//! ferryd serves. A finished upload is published into the served tree at once.
//!
//! Module map (one concern each):
//! - [`core`]: HEAD, OPTIONS, DELETE (termination) and `GET {base}/{id}`.
//! - [`patch`]: PATCH and the body streaming shared with creation-with-upload.
//! - [`creation`]: POST (creation, creation-with-upload, creation-defer-length).
//! - [`concat`]: concatenation and concatenation-unfinished.
//! - [`checksum`]: checksum and checksum-trailer (sha1, md5, sha256, crc32).
//! - [`expiration`]: `Upload-Expires` and the background reaper.
//! - [`publish`]: moving a finished upload into the served tree; instant upload.
//! - [`names`]: hygiene of the `dir` and `filename` a finished upload is published as.
//! - [`limits`]: `--max-open-uploads` and `--max-staged-bytes`, counted from the records.
//! - [`headers`]: typed parsing of tus request headers (pure).
//!
//! Bearer tokens and CORS are the crate's shared [`crate::auth`] and [`crate::cors`] modules.
//!
//! Where the spec allows two answers, ferryd gives tusd's (absolute URLs, OPTIONS 200); where
//! it differs from tusd, on purpose, it follows the spec: 415 (not 400) for a PATCH with the
//! wrong Content-Type, `Tus-Version` on every 412, 400 for a final upload with `Upload-Length`.
//! The full list is the README's tus matrix. Choices where the spec is silent:
//! a refused first chunk of creation-with-upload still answers 201 with `Location` (the upload
//! exists); a chunked body running past `Upload-Length` keeps its valid prefix and answers 413;
//! an interrupted PATCH answers 204 with the offset it kept; DELETE of a finished upload leaves
//! the published file in place.

pub mod checksum;
pub mod concat;
pub mod core;
pub mod creation;
pub mod expiration;
pub mod headers;
pub mod limits;
pub mod names;
pub mod patch;
pub mod publish;

use std::sync::Arc;
use std::time::Duration;

use ferry_proto::headers::X_HTTP_METHOD_OVERRIDE;
use ferry_proto::tus::{
    FERRY_PUBLISHED, TUS_RESUMABLE, TUS_VERSION, TUS_VERSION_HEADER, UPLOAD_CONCAT,
};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::auth;
use crate::body::Body;
use crate::cors;
use crate::error::{error_response, Error, Result};
use crate::forwarded::Frontend;
use crate::store::lock::{Guard, Locker};
use crate::store::upload::{Concatenation, ContentIndex, UploadId, UploadStore};
use crate::store::Store;

/// Settings of the tus endpoint.
#[derive(Debug, Clone)]
pub struct TusConfig {
    /// Path prefix of the endpoint, with leading and trailing `/` (default `/files/`).
    pub base: String,
    /// Bearer token required for POST, PATCH and DELETE; `None` means public uploads.
    pub upload_token: Option<String>,
    /// Bearer token required for HEAD and GET; `None` means public reads.
    pub read_token: Option<String>,
    /// Largest upload accepted (`Tus-Max-Size`).
    pub max_size: Option<u64>,
    /// How long an unfinished upload lives after its last write.
    pub expiry: Duration,
    /// Origins allowed by CORS (`*` for any).
    pub cors_origins: Vec<String>,
    /// Most unfinished uploads at once (`--max-open-uploads`), see [`limits`].
    pub max_open_uploads: u64,
    /// Most declared bytes of unfinished uploads at once (`--max-staged-bytes`).
    pub max_staged_bytes: Option<u64>,
    /// How long a request waits for an upload's lock while another request holds it
    /// (tusd's `AcquireLockTimeout`); then it answers 503 with `Retry-After`.
    pub lock_timeout: Duration,
}

impl Default for TusConfig {
    fn default() -> Self {
        Self {
            base: "/files/".into(),
            upload_token: None,
            read_token: None,
            max_size: None,
            expiry: Duration::from_secs(24 * 3600),
            cors_origins: Vec::new(),
            max_open_uploads: 10_000,
            max_staged_bytes: None,
            lock_timeout: Duration::from_secs(20),
        }
    }
}

/// The tus endpoint: configuration, the store, and the per-upload locks.
pub struct Tus {
    store: Arc<dyn Store>,
    cfg: TusConfig,
    /// One writer per upload, from the store ([`UploadStore::locker`]).
    locks: Box<dyn Locker>,
    counts: limits::Counts,
    /// Upload lifecycle events for metrics and hooks.
    pub events: crate::events::Events,
    /// `--hook-url`: asked before a creation (pre-create).
    pub hooks: std::sync::OnceLock<Arc<crate::hooks::Hooks>>,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the store has no upload capability")]
    NoUploads,
    #[error("tus base path must start with '/', got {0:?}")]
    BadBase(String),
}

impl Tus {
    pub fn new(store: Arc<dyn Store>, mut cfg: TusConfig) -> Result<Self, SetupError> {
        let locks = store.uploads().ok_or(SetupError::NoUploads)?.locker();
        if !cfg.base.starts_with('/') {
            return Err(SetupError::BadBase(cfg.base));
        }
        if !cfg.base.ends_with('/') {
            cfg.base.push('/');
        }
        Ok(Self {
            store,
            cfg,
            locks,
            counts: limits::Counts::default(),
            events: Default::default(),
            hooks: Default::default(),
        })
    }

    pub fn config(&self) -> &TusConfig {
        &self.cfg
    }

    /// Whether a request path belongs to the endpoint (`/files`, `/files/`, `/files/{id}`).
    pub fn owns(&self, path: &str) -> bool {
        path.starts_with(&self.cfg.base) || path == self.cfg.base.trim_end_matches('/')
    }

    pub(crate) fn uploads(&self) -> Result<&dyn UploadStore> {
        self.store.uploads().ok_or_else(|| {
            Error::Internal(std::io::Error::other("store lost its upload capability"))
        })
    }

    /// Takes the lock of upload `id` (interrupting a streaming PATCH that holds it), or
    /// answers 503 when the holder does not let go within `lock_timeout`. That is this
    /// upload's holder (a publish in progress, a PATCH that does not let go), over in
    /// seconds, so the answer carries the short `Retry-After` of [`Error::Pending`], not the
    /// server-wide limits' minute.
    pub(crate) async fn lock(&self, id: &UploadId) -> Result<Guard> {
        self.locks
            .acquire(id, self.cfg.lock_timeout)
            .await
            .map_err(|e| Error::Pending(e.to_string()))
    }

    /// The store's concatenation, if it offers it.
    pub(crate) fn concatenation(&self) -> Option<&dyn Concatenation> {
        self.store.uploads().and_then(|u| u.concatenation())
    }

    /// The store's concatenation, for a handler that only runs when it is there.
    pub(crate) fn concatenation_or_500(&self) -> Result<&dyn Concatenation> {
        self.concatenation()
            .ok_or_else(|| Error::Internal(std::io::Error::other("store lost its concatenation")))
    }

    /// The store's content index (instant upload), if it keeps one.
    pub(crate) fn content_index(&self) -> Option<&dyn ContentIndex> {
        self.store.uploads().and_then(|u| u.content_index())
    }

    /// The URL path of an upload.
    pub(crate) fn location(&self, id: &str) -> String {
        format!("{}{id}", self.cfg.base)
    }

    /// Answers one request under the base path. Errors become responses here (through
    /// [`error_response`]), then every response gets the tus and CORS headers, and the
    /// upload URLs it names become absolute.
    pub async fn handle(
        self: &Arc<Self>,
        req: Request<Incoming>,
        front: &Frontend,
    ) -> Response<Body> {
        let base_url = front.base_url(&req);
        let origin = req.headers().get(header::ORIGIN).cloned();
        let method = effective_method(&req);
        let preflight = method == Method::OPTIONS
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        let mut resp = match self.route(&method, req).await {
            Ok(r) => r,
            Err(e) => error_response(&e),
        };
        let status = resp.status();
        let h = resp.headers_mut();
        h.insert(TUS_RESUMABLE, HeaderValue::from_static(TUS_VERSION));
        match status {
            StatusCode::PRECONDITION_FAILED => {
                h.insert(TUS_VERSION_HEADER, HeaderValue::from_static(TUS_VERSION));
            }
            StatusCode::METHOD_NOT_ALLOWED => {
                h.insert(header::ALLOW, HeaderValue::from_static(cors::ALLOW_METHODS));
            }
            _ => {}
        }
        cors::apply(&self.cfg.cors_origins, origin.as_ref(), preflight, h);
        absolute_urls(h, &base_url);
        resp
    }

    async fn route(
        self: &Arc<Self>,
        method: &Method,
        req: Request<Incoming>,
    ) -> Result<Response<Body>> {
        let rest = req
            .uri()
            .path()
            .strip_prefix(&self.cfg.base)
            .unwrap_or("")
            .trim_end_matches('/');
        if method == Method::OPTIONS {
            return Ok(core::options(self, req.headers()).await);
        }
        auth::check(&self.cfg, method, req.headers())?;
        if method != Method::GET {
            headers::check_version(req.headers())?;
        }
        if rest.is_empty() {
            return match *method {
                Method::POST => creation::post(self, req).await,
                _ => Err(Error::MethodNotAllowed),
            };
        }
        let id = UploadId::parse(rest).ok_or(Error::NotFound)?;
        match *method {
            Method::HEAD => {
                let uploader = crate::auth::is_uploader(&self.cfg, req.headers());
                core::head(self, &id, uploader).await
            }
            Method::PATCH => patch::patch(self, id, req).await,
            Method::DELETE => core::delete(self, &id).await,
            Method::GET => core::get(self, &id, req.headers()).await,
            _ => Err(Error::MethodNotAllowed),
        }
    }
}

/// Handlers name uploads and published files by path; every URL an answer hands out is made
/// absolute here, from `--public-url` or the request (tusd sends absolute URLs, and some
/// clients resolve a path against the wrong base): `Location`, `Ferry-Published` and the
/// parts of `Upload-Concat: final;…`.
fn absolute_urls(h: &mut http::HeaderMap, base_url: &str) {
    let abs = |v: &str| match v.starts_with('/') {
        true => format!("{base_url}{v}"),
        false => v.to_string(),
    };
    fn get(h: &http::HeaderMap, name: &http::HeaderName) -> Option<String> {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
    for name in [header::LOCATION, FERRY_PUBLISHED] {
        if let Some(v) = get(h, &name) {
            crate::files::set(h, name, abs(&v));
        }
    }
    if let Some(list) =
        get(h, &UPLOAD_CONCAT).and_then(|v| Some(v.strip_prefix("final;")?.to_string()))
    {
        let urls: Vec<String> = list.split(' ').map(abs).collect();
        crate::files::set(h, UPLOAD_CONCAT, format!("final;{}", urls.join(" ")));
    }
}

/// The method a request asks for: `X-HTTP-Method-Override` (tus core) wins over the request
/// line, for clients behind proxies that only pass GET and POST.
fn effective_method<B>(req: &Request<B>) -> Method {
    req.headers()
        .get(X_HTTP_METHOD_OVERRIDE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Method::from_bytes(v.trim().to_ascii_uppercase().as_bytes()).ok())
        .unwrap_or_else(|| req.method().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_override_wins_over_the_request_line() {
        let req = Request::post("/files/x")
            .header("x-http-method-override", "patch")
            .body(())
            .unwrap();
        assert_eq!(effective_method(&req), Method::PATCH);
        let req = Request::post("/files/x").body(()).unwrap();
        assert_eq!(effective_method(&req), Method::POST);
    }
}
