//! A small, configurable, misbehaving HTTP/1.1 file server for the `ferry get` tests, plus
//! helpers to run a download in-process.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry::get::{self, Options};
use ferry::progress::{Mode, Ui};
use http::{header, HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Empty, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub type Body = BoxBody<Bytes, std::io::Error>;

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Logged {
    pub method: Method,
    pub path: String,
    pub conn: usize,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub authorization: Option<String>,
    pub status: u16,
    pub at: Instant,
}

/// Server behaviour; every knob can change while the server runs.
#[derive(Default)]
pub struct Server {
    pub data: Mutex<Arc<Vec<u8>>>,
    pub etag: Mutex<String>,
    pub addr: Mutex<Option<SocketAddr>>,
    /// Answer 200 with the whole body to ranged requests.
    pub ignore_range: AtomicBool,
    /// Send `Accept-Ranges: none`.
    pub ranges_none: AtomicBool,
    /// Send a Content-Range (and body) shifted by one byte for this many responses.
    pub wrong_content_range: AtomicUsize,
    /// Drop the connection after this many body bytes, for `drops_left` responses.
    pub drop_after: AtomicU64,
    pub drops_left: AtomicUsize,
    /// Statuses (with Retry-After seconds) to answer GETs with before serving.
    pub refusals: Mutex<VecDeque<(u16, Option<u64>)>>,
    /// Per-connection rate in bytes/s for all connections (0 = unlimited).
    pub rate: AtomicU64,
    /// Connections whose number is a multiple of `slow_every` get `slow_rate` bytes/s.
    pub slow_every: AtomicUsize,
    pub slow_rate: AtomicU64,
    /// Chunked transfer with no Content-Length, no ranges.
    pub no_length: AtomicBool,
    pub head_refused: AtomicBool,
    pub content_disposition: Mutex<Option<String>>,
    /// An RFC 9530 `Repr-Digest` value to send.
    pub repr_digest: Mutex<Option<String>>,
    /// `Last-Modified` sent with every answer that has a length.
    pub last_modified: Mutex<Option<String>>,
    pub log: Mutex<Vec<Logged>>,
    /// A response covering file offset `hang_at` sends the bytes before it, then nothing
    /// (the connection stays open), for `hangs_left` responses.
    pub hang_at: AtomicU64,
    pub hangs_left: AtomicUsize,
    /// The first this many connections never answer (silent, kept open).
    pub silent_first: AtomicUsize,
    /// When each dropped response was cut.
    pub dropped_at: Arc<Mutex<Vec<Instant>>>,
    /// Every request must carry exactly this `Authorization` (else 401).
    pub authorization: Mutex<Option<String>>,
    /// `/go/x` redirects to this base + `/x` (another server) instead of `/x`.
    pub redirect_base: Mutex<Option<String>>,
    conns: AtomicUsize,
    scheme: Mutex<&'static str>,
}

impl Server {
    /// Starts a server for `data` on 127.0.0.1:0.
    pub async fn start(data: Vec<u8>) -> Arc<Server> {
        Self::start_with(data, None).await
    }

    /// The same server over TLS with the PEM certificate chain and key at `cert`, `key`
    /// (fixtures/tls); `url()` then gives https:// URLs.
    pub async fn start_tls(data: Vec<u8>, cert: &Path, key: &Path) -> Arc<Server> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        ferry::cli::install_crypto_provider();
        let chain: Vec<_> = CertificateDer::pem_file_iter(cert)
            .unwrap()
            .map(|c| c.unwrap())
            .collect();
        let key = PrivateKeyDer::from_pem_file(key).unwrap();
        let config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        Self::start_with(data, Some(acceptor)).await
    }

    async fn start_with(data: Vec<u8>, tls: Option<tokio_rustls::TlsAcceptor>) -> Arc<Server> {
        let server = Arc::new(Server::default());
        server.set_data(data, "\"v1\"");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        *server.addr.lock().unwrap() = Some(listener.local_addr().unwrap());
        *server.scheme.lock().unwrap() = if tls.is_some() { "https" } else { "http" };
        let s = Arc::clone(&server);
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let conn = s.conns.fetch_add(1, Ordering::SeqCst);
                let s = Arc::clone(&s);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = Arc::clone(&s);
                        async move {
                            if conn < s.silent_first.load(Ordering::SeqCst) {
                                std::future::pending::<()>().await;
                            }
                            Ok::<_, Infallible>(s.respond(req, conn))
                        }
                    });
                    let http = hyper::server::conn::http1::Builder::new();
                    let _ = match tls {
                        None => http.serve_connection(TokioIo::new(stream), svc).await,
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(tls) => http.serve_connection(TokioIo::new(tls), svc).await,
                            Err(_) => return,
                        },
                    };
                });
            }
        });
        server
    }

    /// TCP connections accepted so far (TLS handshakes tried, over TLS).
    pub fn connections(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        let scheme = *self.scheme.lock().unwrap();
        format!("{scheme}://{}{path}", self.addr.lock().unwrap().unwrap())
    }

    pub fn set_data(&self, data: Vec<u8>, etag: &str) {
        *self.data.lock().unwrap() = Arc::new(data);
        *self.etag.lock().unwrap() = etag.to_string();
    }

    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    fn respond(&self, req: Request<hyper::body::Incoming>, conn: usize) -> Response<Body> {
        let h = req.headers();
        let text = |n: header::HeaderName| h.get(n).and_then(|v| v.to_str().ok()).map(String::from);
        let (range, if_range) = (text(header::RANGE), text(header::IF_RANGE));
        let authorization = text(header::AUTHORIZATION);
        let path = req.uri().path().to_string();
        let required = self.authorization.lock().unwrap().clone();
        let resp = match path.strip_prefix("/go") {
            _ if required.is_some() && required != authorization => {
                let mut h = HeaderMap::new();
                h.insert(
                    header::WWW_AUTHENTICATE,
                    "Basic realm=\"t\"".parse().unwrap(),
                );
                empty(StatusCode::UNAUTHORIZED, h)
            }
            // A redirect, like a signed-URL service: /go/x -> /x.
            Some(rest) => {
                let base = self.redirect_base.lock().unwrap().clone();
                let to = format!("{}{rest}", base.unwrap_or_default());
                let mut h = HeaderMap::new();
                h.insert(header::LOCATION, to.parse().unwrap());
                empty(StatusCode::FOUND, h)
            }
            None => self.answer(req.method(), range.as_deref(), if_range.as_deref(), conn),
        };
        self.log.lock().unwrap().push(Logged {
            method: req.method().clone(),
            path,
            conn,
            range,
            if_range,
            authorization,
            status: resp.status().as_u16(),
            at: Instant::now(),
        });
        resp
    }

    fn answer(
        &self,
        method: &Method,
        range: Option<&str>,
        if_range: Option<&str>,
        conn: usize,
    ) -> Response<Body> {
        let data = Arc::clone(&self.data.lock().unwrap());
        let etag = self.etag.lock().unwrap().clone();
        let len = data.len() as u64;
        if method == Method::HEAD && self.head_refused.load(Ordering::SeqCst) {
            return empty(StatusCode::METHOD_NOT_ALLOWED, HeaderMap::new());
        }
        if method == Method::GET {
            if let Some((status, after)) = self.refusals.lock().unwrap().pop_front() {
                let mut h = HeaderMap::new();
                if let Some(a) = after {
                    h.insert(header::RETRY_AFTER, a.to_string().parse().unwrap());
                }
                return empty(StatusCode::from_u16(status).unwrap(), h);
            }
        }
        let mut h = HeaderMap::new();
        if let Some(cd) = self.content_disposition.lock().unwrap().clone() {
            h.insert(header::CONTENT_DISPOSITION, cd.parse().unwrap());
        }
        if let Some(d) = self.repr_digest.lock().unwrap().clone() {
            h.insert("repr-digest", d.parse().unwrap());
        }
        if self.no_length.load(Ordering::SeqCst) {
            return self.body(method, h, StatusCode::OK, data, 0..len, conn, false);
        }
        h.insert(header::ETAG, etag.parse().unwrap());
        if let Some(lm) = self.last_modified.lock().unwrap().clone() {
            h.insert(header::LAST_MODIFIED, lm.parse().unwrap());
        }
        let accept = if self.ranges_none.load(Ordering::SeqCst) {
            "none"
        } else {
            "bytes"
        };
        h.insert(header::ACCEPT_RANGES, accept.parse().unwrap());
        let ranged = range
            .filter(|_| !self.ignore_range.load(Ordering::SeqCst))
            .filter(|_| if_range.is_none_or(|v| v == etag))
            .and_then(|r| parse_range(r, len));
        let Some((start, end)) = ranged else {
            return self.body(method, h, StatusCode::OK, data, 0..len, conn, true);
        };
        let shift = u64::from(take_one(&self.wrong_content_range));
        let (s, e) = ((start + shift).min(len - 1), (end + shift).min(len));
        h.insert(
            header::CONTENT_RANGE,
            format!("bytes {}-{}/{len}", s, e - 1).parse().unwrap(),
        );
        self.body(
            method,
            h,
            StatusCode::PARTIAL_CONTENT,
            data,
            s..e,
            conn,
            true,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn body(
        &self,
        method: &Method,
        mut h: HeaderMap,
        status: StatusCode,
        data: Arc<Vec<u8>>,
        span: std::ops::Range<u64>,
        conn: usize,
        with_length: bool,
    ) -> Response<Body> {
        if with_length {
            h.insert(
                header::CONTENT_LENGTH,
                (span.end - span.start).to_string().parse().unwrap(),
            );
        }
        if method == Method::HEAD {
            return empty(status, h);
        }
        let slow_every = self.slow_every.load(Ordering::SeqCst);
        let rate = if slow_every > 0 && conn.is_multiple_of(slow_every) {
            self.slow_rate.load(Ordering::SeqCst)
        } else {
            self.rate.load(Ordering::SeqCst)
        };
        let drop_at = take_one(&self.drops_left).then(|| self.drop_after.load(Ordering::SeqCst));
        let dropped_at = Arc::clone(&self.dropped_at);
        let hang_at = self.hang_at.load(Ordering::SeqCst);
        let hang = (span.start..span.end).contains(&hang_at) && take_one(&self.hangs_left);
        let hang_at = hang.then_some(hang_at);
        let stream = futures_util::stream::unfold(span.start, move |pos| {
            let data = Arc::clone(&data);
            let dropped_at = Arc::clone(&dropped_at);
            async move {
                if pos >= span.end {
                    return None;
                }
                if drop_at.is_some_and(|d| pos - span.start >= d) {
                    // Let hyper flush what was sent, so the drop really happens mid-body.
                    tokio::time::sleep(Duration::from_millis(30)).await;
                    dropped_at.lock().unwrap().push(Instant::now());
                    return Some((Err(std::io::Error::other("dropped on purpose")), span.end));
                }
                if hang_at == Some(pos) {
                    std::future::pending::<()>().await;
                }
                let chunk = 16 * 1024;
                let next = (pos + chunk).min(span.end);
                let next = hang_at.filter(|h| *h > pos).map_or(next, |h| next.min(h));
                if rate > 0 {
                    tokio::time::sleep(Duration::from_secs_f64((next - pos) as f64 / rate as f64))
                        .await;
                }
                let bytes = Bytes::copy_from_slice(&data[pos as usize..next as usize]);
                Some((Ok(Frame::data(bytes)), next))
            }
        });
        let mut resp = Response::new(StreamBody::new(stream).boxed());
        *resp.status_mut() = status;
        *resp.headers_mut() = h;
        resp
    }
}

fn take_one(counter: &AtomicUsize) -> bool {
    counter
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
}

fn empty(status: StatusCode, h: HeaderMap) -> Response<Body> {
    let mut resp = Response::new(Empty::new().map_err(|never| match never {}).boxed());
    *resp.status_mut() = status;
    *resp.headers_mut() = h;
    resp
}

/// `bytes=a-b` only (all ferry sends); half-open result.
fn parse_range(v: &str, len: u64) -> Option<(u64, u64)> {
    let (a, b) = v.strip_prefix("bytes=")?.split_once('-')?;
    let (a, b): (u64, u64) = (a.parse().ok()?, b.parse().ok()?);
    (a <= b && a < len).then_some((a, (b + 1).min(len)))
}

pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..len).map(|_| rng.u8(..)).collect()
}

pub fn sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Options for fast tests: short timeouts and retry waits.
pub fn fast_options(dir: &Path, output: &str) -> Options {
    let mut o = Options {
        output: Some(output.into()),
        dir: Some(dir.to_path_buf()),
        connections: 4,
        min_split: 64 * 1024,
        ..Options::default()
    };
    o.worker.timeout = Duration::from_secs(5);
    o.worker.backoff = ferry::retry::Backoff::new(Duration::from_millis(20));
    o.journal_interval = Duration::from_millis(100);
    o
}

pub fn client() -> reqwest::Client {
    ferry::cli::install_crypto_provider();
    reqwest::Client::builder().http1_only().build().unwrap()
}

/// Runs a download in-process with a quiet display.
pub async fn download(url: &str, opts: &Options) -> ferry::Result<PathBuf> {
    let (_tx, rx) = watch::channel(false);
    get::download(&client(), url, opts, &Ui::with_mode(Mode::Quiet, false), rx).await
}

/// Runs a download of `urls[0]` with the mirrors `urls[1..]` in-process, quietly.
pub async fn download_from(urls: &[String], opts: &Options) -> ferry::Result<PathBuf> {
    let (_tx, rx) = watch::channel(false);
    let ui = Ui::with_mode(Mode::Quiet, false);
    get::download_mirrored(&client(), urls, opts, &ui, rx).await
}

/// How many GETs a server answered with 206 (ranges it served).
pub fn ranged_gets(server: &Server) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == Method::GET && r.status == 206)
        .count()
}
