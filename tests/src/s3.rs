//! A real S3-compatible server for the tests that run against the S3 store: moto's server
//! (PyPI `moto[server]`, pinned in `tests/interop/requirements.txt`), never a mock of the S3
//! client. `scripts/test` starts one on 127.0.0.1 and exports its URL as
//! `FERRY_TEST_S3_ENDPOINT`; without it the first S3 test starts `moto_server` itself, for
//! the life of the test binary. Every test server gets a prefix of its own in one bucket.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use ferryd::store::s3::S3Options;
use object_store::{ObjectStore, ObjectStoreExt as _};

/// The bucket every S3 test uses (each test server under its own prefix).
pub const BUCKET: &str = "ferry-tests";

static ENDPOINT: OnceLock<Option<String>> = OnceLock::new();

/// Whether an S3 server is there for the S3 variant of a suite. In CI (`CI=true` or
/// `FERRY_REQUIRE_TOOLS`) a missing moto is a failure, never a skip; elsewhere the test says
/// it skipped.
pub fn available() -> bool {
    endpoint().is_some()
}

/// The S3 endpoint (`http://127.0.0.1:PORT`) with the test bucket created, if there is one.
pub fn endpoint() -> Option<&'static str> {
    ENDPOINT
        .get_or_init(|| {
            let url = match std::env::var("FERRY_TEST_S3_ENDPOINT") {
                Ok(u) if !u.is_empty() => u,
                _ => start_moto()?,
            };
            create_bucket(&url);
            Some(url)
        })
        .as_deref()
}

/// Starts `moto_server` on 127.0.0.1 port 0 and reads the port it printed. It runs under a
/// shell that stops it when this process exits (its stdin, our pipe, closes).
fn start_moto() -> Option<String> {
    let moto = crate::tool("moto_server")?;
    let script = format!(
        "{} -H 127.0.0.1 -p 0 2>&1 & pid=$!; trap 'kill $pid' EXIT; cat >/dev/null",
        moto.display()
    );
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    let out = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(out).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("moto_server exited before listening")
            .expect("moto_server output");
        if let Some(at) = line.find("http://127.0.0.1:") {
            break line[at..].trim().to_string();
        }
    };
    // Keep the pipes open for the life of the process: the shell stops moto when they close.
    std::mem::forget(child);
    std::thread::spawn(move || for _ in lines {});
    Some(url)
}

/// Creates the test bucket (moto does not check signatures, so a plain PUT does; an
/// existing bucket answers 200 or 409, both fine).
fn create_bucket(endpoint: &str) {
    let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
    let mut s = std::net::TcpStream::connect(authority).expect("connect to the S3 server");
    let req = format!(
        "PUT /{BUCKET} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).expect("create bucket");
    let mut resp = String::new();
    let _ = s.read_to_string(&mut resp);
    assert!(
        resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.1 409"),
        "cannot create bucket {BUCKET}: {resp}"
    );
}

/// S3 options for a fresh, empty prefix of the test bucket.
pub fn fresh_options(allow_hidden: bool) -> S3Options {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    S3Options {
        bucket: BUCKET.into(),
        prefix: format!("t{}-{n}/www", std::process::id()),
        endpoint: endpoint().map(str::to_owned),
        region: Some("us-east-1".into()),
        virtual_hosted: false,
        allow_hidden,
        credentials: Some(("testing".into(), "testing".into())),
        single_instance: false,
        max_upload_size: None,
        list_page: None,
        no_index: false,
    }
}

/// Puts `data` at `rel` under the served prefix of `opts` (or at the bucket level when
/// `rel` starts with `/`). Blocking: the put runs on a runtime of its own, so it can be
/// called from a test's async body like a file write.
pub fn put(opts: &S3Options, rel: &str, data: &[u8]) {
    let key = match rel.strip_prefix('/') {
        Some(abs) => abs.to_owned(),
        None => format!("{}/{rel}", opts.prefix),
    };
    let (opts, data) = (opts.clone(), data.to_vec());
    std::thread::spawn(move || {
        let client: Arc<dyn ObjectStore> = opts.client().expect("s3 client");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let key = object_store::path::Path::parse(&key).expect("key");
        rt.block_on(client.put(&key, data.into()))
            .expect("put object");
    })
    .join()
    .expect("put thread");
}

/// The keys of the objects under the directory `dir` of the prefix of `opts` (`""` for all),
/// relative to the prefix, sorted.
pub async fn names_under(opts: &S3Options, dir: &str) -> Vec<String> {
    use futures_util::StreamExt as _;
    let client = opts.client().unwrap();
    let key = object_store::path::Path::from(format!("{}/{dir}", opts.prefix));
    let listed: Vec<_> = client.list(Some(&key)).collect().await;
    let mut names: Vec<String> = listed
        .into_iter()
        .map(|o| {
            let o = o.unwrap();
            o.location.as_ref()[opts.prefix.len() + 1..].to_owned()
        })
        .collect();
    names.sort();
    names
}

/// Moves the deadline of every upload record under the prefix of `opts` to the past, as if the
/// uploads' expiry (a day by default) had run out: the reaper compares each record's
/// deadline with the clock, and a test cannot wait a day. Only while no ferryd writes
/// under the prefix (the records are rewritten without a compare-and-swap).
pub async fn expire_upload_records(opts: &S3Options) {
    expire_records_where(opts, |_| true).await
}

/// [`expire_upload_records`] for the upload `id` only: while no ferryd writes that upload.
pub async fn expire_upload_record(opts: &S3Options, id: &str) {
    let name = format!("/{id}.info");
    expire_records_where(opts, |n| n.ends_with(&name)).await
}

/// The deadline (`expires_ms`) the record of upload `id` under the prefix of `opts` holds.
pub async fn upload_record_expires_ms(opts: &S3Options, id: &str) -> Option<u64> {
    let name = format!("/{id}.info");
    let client = opts.client().unwrap();
    for n in names_under(opts, ".ferry/uploads").await {
        if n.ends_with(&name) {
            let key = object_store::path::Path::from(format!("{}/{n}", opts.prefix));
            let raw = client.get(&key).await.unwrap().bytes().await.unwrap();
            let rec: serde_json::Value = serde_json::from_slice(&raw).unwrap();
            return rec["info"]["expires_ms"].as_u64();
        }
    }
    None
}

async fn expire_records_where(opts: &S3Options, wanted: impl Fn(&str) -> bool) {
    let client = opts.client().unwrap();
    for name in names_under(opts, ".ferry/uploads").await {
        if !name.ends_with(".info") || !wanted(&name) {
            continue;
        }
        let key = object_store::path::Path::from(format!("{}/{name}", opts.prefix));
        let raw = client.get(&key).await.unwrap().bytes().await.unwrap();
        let mut rec: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        rec["info"]["expires_ms"] = serde_json::json!(1);
        let raw = serde_json::to_vec(&rec).unwrap();
        client.put(&key, raw.into()).await.unwrap();
    }
}

/// The multipart uploads in progress under the prefix of `opts` (S3's
/// `ListMultipartUploads`, through ferryd's S3 store: object_store cannot list them).
pub async fn open_multipart_uploads(opts: &S3Options) -> Vec<ferryd::store::s3::OpenMultipart> {
    let store = ferryd::store::s3::S3Store::new(opts).unwrap();
    store
        .list_multipart(&format!("{}/", opts.prefix))
        .await
        .unwrap()
}

/// Whether an upload record under the prefix of `opts` holds a publish's claim (its
/// `publishing_until_ms`): an instance is publishing that upload now, or was when it died.
pub async fn publish_claimed(opts: &S3Options) -> bool {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = opts.client().unwrap();
    for name in names_under(opts, ".ferry/uploads").await {
        if !name.ends_with(".info") {
            continue;
        }
        let key = object_store::path::Path::from(format!("{}/{name}", opts.prefix));
        let Ok(got) = client.get(&key).await else {
            continue;
        };
        if let Ok(raw) = got.bytes().await {
            if String::from_utf8_lossy(&raw).contains("\"publishing_until_ms\"") {
                return true;
            }
        }
    }
    false
}

/// Puts every `(rel, data)` under the served prefix of `opts`, 16 at a time (a directory of
/// more entries than one listing page, without a thread per object).
pub async fn put_many(opts: &S3Options, objects: Vec<(String, Vec<u8>)>) {
    use futures_util::StreamExt as _;
    let client: Arc<dyn ObjectStore> = opts.client().expect("s3 client");
    let puts = objects.into_iter().map(|(rel, data)| {
        let client = client.clone();
        let key = object_store::path::Path::parse(format!("{}/{rel}", opts.prefix)).expect("key");
        async move { client.put(&key, data.into()).await.expect("put object") }
    });
    futures_util::stream::iter(puts)
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
}

/// Waits up to 30 s (ferryd on S3 reads a published upload back and hashes it in the
/// background) until the tus endpoint `files_url` answers `Ferry-Instant-Candidate: ?1` for
/// `len` bytes, asking as ferry does (OPTIONS with `Ferry-Instant-Length`, the upload token
/// if any). Whether it did.
pub async fn instant_candidate(files_url: &str, token: Option<&str>, len: u64) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let http = crate::client();
    while std::time::Instant::now() < deadline {
        let mut req = http
            .request(reqwest::Method::OPTIONS, files_url)
            .header("ferry-instant-length", len.to_string());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Ok(r) = req.send().await {
            if r.headers()
                .get("ferry-instant-candidate")
                .is_some_and(|v| v == "?1")
            {
                return true;
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// An S3 server that fails publishes: a proxy in front of the test's S3 server that answers
/// `400 InvalidRequest` (an error S3 clients do not retry) to the requests of a copy to a
/// served key (outside `.ferry/`, where a publish or an instant upload copies) containing the
/// text set by [`RefusingS3::refuse`] (`CreateMultipartUpload`: the copy does not start) or
/// [`RefusingS3::break_copies`] (`UploadPartCopy`, and the `AbortMultipartUpload` after it:
/// the copy fails half-way and its multipart upload stays open), holds those of keys
/// containing the text set by [`RefusingS3::hold`] (`CreateMultipartUpload` waits for
/// [`RefusingS3::release`]), answers `403 AccessDenied` to every request to a key containing
/// the text set by [`RefusingS3::deny`], and passes everything else on. A stand-in for an S3
/// that fails a publish (a policy, an outage), so a test can hold an upload between its
/// concatenation and its publish, or see what a failed copy leaves, and for credentials that
/// lack a permission.
pub struct RefusingS3 {
    /// `http://127.0.0.1:PORT`, for `S3Options::endpoint`.
    pub url: String,
    refused: Refused,
    held: Held,
    task: tokio::task::JoinHandle<()>,
}

/// What is held: the text of the keys whose copies wait before they start, woken when it
/// changes, and how many requests wait now.
#[derive(Default)]
struct Hold {
    text: std::sync::Mutex<Option<String>>,
    changed: tokio::sync::Notify,
    waiting: AtomicU64,
}

type Held = Arc<Hold>;

/// What is refused now: the text of the keys whose copies do not start, of those whose
/// copies break, and of those every request to is denied.
type Refused = Arc<std::sync::Mutex<(Option<String>, Option<String>, Option<String>)>>;

impl Drop for RefusingS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl RefusingS3 {
    /// In front of [`endpoint`] (which must be there).
    pub async fn start() -> Self {
        let upstream = endpoint().expect("an S3 server").to_owned();
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!("http://{}", l.local_addr().expect("addr"));
        let (refused, held) = (Refused::default(), Held::default());
        let (on, hold, client) = (refused.clone(), held.clone(), crate::client());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let (on, hold) = (on.clone(), hold.clone());
                let (client, upstream) = (client.clone(), upstream.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (on, hold) = (on.clone(), hold.clone());
                        relay(req, on, hold, client.clone(), upstream.clone())
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            url,
            refused,
            held,
            task,
        }
    }

    /// From now on, copies to keys that contain `text` wait before they start (their
    /// `CreateMultipartUpload` is not passed on) until [`RefusingS3::release`]: a publish
    /// held in progress.
    pub fn hold(&self, text: &str) {
        *self.held.text.lock().expect("held") = Some(text.to_owned());
    }

    /// The held copies go on.
    pub fn release(&self) {
        *self.held.text.lock().expect("held") = None;
        self.held.changed.notify_waiters();
    }

    /// Waits (up to 60 s) until a copy is held.
    pub async fn until_held(&self) {
        let until = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self.held.waiting.load(Ordering::SeqCst) == 0 {
            assert!(std::time::Instant::now() < until, "no copy was held");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    }

    /// From now on, copies to keys that contain `text` (every key: `""`) do not start.
    pub fn refuse(&self, text: &str) {
        self.refused.lock().expect("refused").0 = Some(text.to_owned());
    }

    /// From now on, copies to keys that contain `text` fail after their start, and so do
    /// their aborts.
    pub fn break_copies(&self, text: &str) {
        self.refused.lock().expect("refused").1 = Some(text.to_owned());
    }

    /// From now on, every request to a key that contains `text` (any key, `.ferry/` too) is
    /// answered `403 AccessDenied`, as S3 answers credentials without the permission.
    pub fn deny(&self, text: &str) {
        self.refused.lock().expect("refused").2 = Some(text.to_owned());
    }

    /// Refuses nothing from now on.
    pub fn allow(&self) {
        *self.refused.lock().expect("refused") = (None, None, None);
    }
}

async fn relay(
    req: http::Request<hyper::body::Incoming>,
    refused: Refused,
    held: Held,
    client: reqwest::Client,
    upstream: String,
) -> Result<http::Response<http_body_util::Full<bytes::Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt as _;
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let has = |param: &str| {
        req.uri()
            .query()
            .is_some_and(|q| q.split('&').any(|p| p.split('=').next() == Some(param)))
    };
    let served = !path.contains("/.ferry/");
    let (starts, breaks) = match *req.method() {
        http::Method::POST => (has("uploads"), false),
        http::Method::PUT => (false, req.headers().contains_key("x-amz-copy-source")),
        http::Method::DELETE => (false, has("uploadId")),
        _ => (false, false),
    };
    let (refuse, denied) = {
        let on = refused.lock().expect("refused");
        let hit = |text: &Option<String>| text.as_ref().is_some_and(|t| path.contains(t.as_str()));
        (
            served && ((starts && hit(&on.0)) || (breaks && hit(&on.1))),
            hit(&on.2),
        )
    };
    let holds = || {
        let text = held.text.lock().expect("held");
        text.as_ref().is_some_and(|t| path.contains(t.as_str()))
    };
    if served && starts && holds() {
        held.waiting.fetch_add(1, Ordering::SeqCst);
        loop {
            let changed = held.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            if !holds() {
                break;
            }
            changed.await;
        }
        held.waiting.fetch_sub(1, Ordering::SeqCst);
    }
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let answer = |status: u16, headers: http::HeaderMap, body: bytes::Bytes| {
        let mut resp = http::Response::new(http_body_util::Full::new(body));
        *resp.status_mut() =
            http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
        *resp.headers_mut() = headers;
        Ok(resp)
    };
    if denied {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                   <Message>Access Denied</Message></Error>";
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/xml"),
        );
        return answer(403, h, bytes::Bytes::from_static(xml.as_bytes()));
    }
    if refuse {
        let xml = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InvalidRequest</Code>\
                   <Message>refused by the test</Message></Error>";
        let mut h = http::HeaderMap::new();
        h.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/xml"),
        );
        return answer(400, h, bytes::Bytes::from_static(xml.as_bytes()));
    }
    let skip = |k: &http::HeaderName| {
        [
            http::header::HOST,
            http::header::CONNECTION,
            http::header::CONTENT_LENGTH,
            http::header::TRANSFER_ENCODING,
        ]
        .contains(k)
    };
    let mut out = client.request(parts.method, format!("{upstream}{path}"));
    for (k, v) in parts.headers.iter().filter(|(k, _)| !skip(k)) {
        out = out.header(k, v);
    }
    let Ok(got) = out.body(body).send().await else {
        return answer(502, http::HeaderMap::new(), bytes::Bytes::new());
    };
    let status = got.status().as_u16();
    let mut headers = http::HeaderMap::new();
    // Content-Length stays: a HEAD's names the object's size.
    for (k, v) in got.headers().iter() {
        if k == http::header::CONTENT_LENGTH || !skip(k) {
            headers.append(k, v.clone());
        }
    }
    let body = got.bytes().await.unwrap_or_default();
    answer(status, headers, body)
}
