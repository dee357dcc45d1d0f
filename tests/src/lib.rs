//! Support for the end-to-end tests: an in-process ferryd on 127.0.0.1:0, fixture files,
//! [`tools`] (finding third-party tools, tinyproxy on loopback; also included by the `ferry`
//! crate's test binaries), [`flaky`], a seeded flaky TCP proxy for the fault benchmarks and
//! tests, and [`autoindex`], nginx and python's `http.server` serving listings. Compiled once,
//! shared by every test module.

pub mod autoindex;
pub mod flaky;
pub mod s3;
pub mod tools;

pub use tools::{tool, TinyProxy};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferryd::app::{App, Config};
use ferryd::forwarded::Frontend;
use ferryd::server::{self, ServerOptions};
use ferryd::store::fs::FsOptions;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;

/// The store a test server runs on. Suites that both backends must pass are written once,
/// taking a `Backend`, and instantiated for each with [`backends!`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A temporary directory.
    Fs,
    /// A fresh prefix of a bucket on the S3 server of [`s3`].
    S3,
}

/// Makes `fs::NAME` and `s3::NAME` tests for each `async fn NAME(backend: Backend)`: one
/// suite, parameterised over the store. The S3 variant runs against the real S3 server of
/// [`s3`] (in CI it fails, never skips, when there is none).
#[macro_export]
macro_rules! backends {
    ($($name:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name($crate::Backend::Fs).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test]
                async fn $name() {
                    if $crate::s3::available() {
                        super::$name($crate::Backend::S3).await
                    }
                }
            )*
        }
    };
}

/// A ferryd serving a temporary directory (or a bucket prefix) on an ephemeral loopback port.
/// Dropping it shuts the server down.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The served directory (with the S3 backend, files are written here and to the bucket).
    pub root: tempfile::TempDir,
    /// The S3 store's options, when the server runs on S3.
    pub s3: Option<ferryd::store::s3::S3Options>,
    /// The store's state directory (upload staging, records, index), outside the root.
    pub state: tempfile::TempDir,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    /// Starts ferryd with default options on a fresh temporary root.
    pub async fn start() -> Self {
        Self::start_with(FsOptions::default(), ServerOptions::default(), |app| app).await
    }

    /// Starts ferryd with default options on `backend`.
    pub async fn start_on(backend: Backend) -> Self {
        Self::launch_on(
            backend,
            FsOptions::default(),
            ServerOptions::default(),
            |_, _| {},
            |app, _| app,
        )
        .await
    }

    /// Starts ferryd with the given store and server options; `configure` may adjust the app.
    pub async fn start_with(
        fs: FsOptions,
        opts: ServerOptions,
        configure: impl FnOnce(App) -> App,
    ) -> Self {
        Self::start_bound(fs, opts, |app, _| configure(app)).await
    }

    /// As [`TestServer::start_with`], and `configure` knows the bound address.
    pub async fn start_bound(
        fs: FsOptions,
        opts: ServerOptions,
        configure: impl FnOnce(App, SocketAddr) -> App,
    ) -> Self {
        Self::launch(fs, opts, |_, _| {}, configure).await
    }

    /// Starts ferryd from a [`Config`] made as `main` makes it, through the one builder
    /// ([`App::build`]): `config` adjusts the config (it knows the bound address), then
    /// `configure` the built app.
    pub async fn launch(
        fs: FsOptions,
        opts: ServerOptions,
        config: impl FnOnce(&mut Config, SocketAddr),
        configure: impl FnOnce(App, SocketAddr) -> App,
    ) -> Self {
        Self::launch_on(Backend::Fs, fs, opts, config, configure).await
    }

    /// [`TestServer::launch_on`] with default store and server options and the app as built:
    /// only `config` adjusts the config.
    pub async fn configured_on(
        backend: Backend,
        config: impl FnOnce(&mut Config, SocketAddr),
    ) -> Self {
        Self::launch_on(
            backend,
            FsOptions::default(),
            ServerOptions::default(),
            config,
            |app, _| app,
        )
        .await
    }

    /// [`TestServer::launch`] on `backend` (`fs.allow_hidden` applies to both).
    pub async fn launch_on(
        backend: Backend,
        fs: FsOptions,
        opts: ServerOptions,
        config: impl FnOnce(&mut Config, SocketAddr),
        configure: impl FnOnce(App, SocketAddr) -> App,
    ) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let root = tempfile::tempdir().expect("temp dir");
        let state = tempfile::tempdir().expect("temp dir");
        let fs = FsOptions {
            state_dir: Some(fs.state_dir.unwrap_or_else(|| state.path().to_path_buf())),
            ..fs
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let s3 = (backend == Backend::S3).then(|| s3::fresh_options(fs.allow_hidden));
        let mut cfg = Config::fs(root.path(), fs);
        if let Some(o) = &s3 {
            cfg.store = ferryd::app::StoreConfig::S3(o.clone());
        }
        config(&mut cfg, addr);
        let app = App::build(cfg).await.expect("app");
        let app = Arc::new(configure(app, addr));
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(server::run(listener, app, opts, async {
            let _ = rx.await;
        }));
        Self {
            addr,
            root,
            s3,
            state,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Starts ferryd with the tus endpoint (and its reaper) configured by `cfg`.
    pub async fn start_tus(cfg: ferryd::tus::TusConfig) -> (Self, Arc<ferryd::tus::Tus>) {
        Self::start_tus_with(FsOptions::default(), cfg).await
    }

    /// [`TestServer::start_tus`] on `backend` (S3 with `--single-instance`, the mode in
    /// which the S3 store takes uploads).
    pub async fn start_tus_on(
        backend: Backend,
        cfg: ferryd::tus::TusConfig,
    ) -> (Self, Arc<ferryd::tus::Tus>) {
        Self::start_tus_all(backend, FsOptions::default(), cfg, |_| Frontend::default()).await
    }

    /// [`TestServer::start_tus`] with store options (`--allow-hidden` and the like).
    pub async fn start_tus_with(
        fs: FsOptions,
        cfg: ferryd::tus::TusConfig,
    ) -> (Self, Arc<ferryd::tus::Tus>) {
        Self::start_tus_all(Backend::Fs, fs, cfg, |_| Frontend::default()).await
    }

    /// [`TestServer::start_tus`] with `--public-url`/`--behind-proxy` settings made from the
    /// bound address.
    pub async fn start_tus_front(
        cfg: ferryd::tus::TusConfig,
        frontend: impl FnOnce(SocketAddr) -> Frontend,
    ) -> (Self, Arc<ferryd::tus::Tus>) {
        Self::start_tus_all(Backend::Fs, FsOptions::default(), cfg, frontend).await
    }

    async fn start_tus_all(
        backend: Backend,
        fs: FsOptions,
        cfg: ferryd::tus::TusConfig,
        frontend: impl FnOnce(SocketAddr) -> Frontend,
    ) -> (Self, Arc<ferryd::tus::Tus>) {
        let slot = Arc::new(std::sync::Mutex::new(None));
        let keep = slot.clone();
        let config = move |c: &mut Config, addr| {
            c.read_token = cfg.read_token.clone(); // as ferryd's main does
            c.tus = Some(cfg);
            if let ferryd::app::StoreConfig::S3(o) = &mut c.store {
                o.single_instance = true;
            }
            c.frontend = frontend(addr);
        };
        let srv = Self::launch_on(
            backend,
            fs,
            ServerOptions::default(),
            config,
            move |app, _| {
                *keep.lock().expect("slot") = app.tus.clone();
                app
            },
        )
        .await;
        let tus = slot.lock().expect("slot").take().expect("configured");
        (srv, tus)
    }

    /// `http://127.0.0.1:PORT` followed by `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Writes a file under the root, creating parent directories; with the S3 backend the
    /// object is put into the bucket as well.
    pub fn put_file(&self, rel: &str, data: &[u8]) -> PathBuf {
        if let Some(o) = &self.s3 {
            s3::put(o, rel, data);
        }
        let p = self.root.path().join(rel);
        if let Some(dir) = p.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(&p, data).expect("write fixture");
        p
    }

    /// Asks the server to stop and waits for the graceful shutdown to finish.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Runs `probe` until it returns `Some`, every 20 ms and at most 100 times (2 s), for state
/// a server reaches in the background (indexing, concatenation). `None` if it never did.
pub async fn poll<T, F>(mut probe: impl FnMut() -> F) -> Option<T>
where
    F: std::future::Future<Output = Option<T>>,
{
    for _ in 0..100 {
        if let Some(v) = probe().await {
            return Some(v);
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    None
}

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A tus creation at the endpoint `files_url` of an upload as long as `data`, named `name`,
/// asking for instant upload as ferry does (its SHA-256 in the `sha256` metadata), with the
/// upload token if any. The answer, whatever it is.
pub async fn create_instant(
    files_url: &str,
    token: Option<&str>,
    name: &str,
    data: &[u8],
) -> reqwest::Response {
    let sha = sha256_hex(data);
    let meta = ferry_proto::tus::encode_metadata([
        ("filename", Some(name.as_bytes())),
        ("sha256", Some(sha.as_bytes())),
    ]);
    let mut req = client()
        .post(files_url)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len().to_string())
        .header("upload-metadata", meta);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("tus creation")
}

pub fn sha256_file(path: &Path) -> String {
    sha256_hex(&std::fs::read(path).expect("read file"))
}

/// A reqwest client that speaks HTTP/1.1 only and never decompresses.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .http1_only()
        .build()
        .expect("client")
}

/// A raw HTTP/1.1 exchange: sends `request` verbatim, reads until the server closes (or
/// `timeout` passes), and splits the answer. For cases where exact bytes matter or where a
/// client library would normalize the request (`..` segments, `%2f`).
pub async fn raw(addr: SocketAddr, request: &[u8], timeout: std::time::Duration) -> RawResponse {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request).await.expect("send");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(timeout, s.read_to_end(&mut buf)).await;
    RawResponse::parse(&buf)
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: Vec<u8>,
}

impl RawResponse {
    /// Splits a raw HTTP/1.1 answer into status, head and body.
    pub fn parse(buf: &[u8]) -> Self {
        let split = buf.windows(4).position(|w| w == b"\r\n\r\n");
        let (head, body) = match split {
            Some(i) => (&buf[..i], buf[i + 4..].to_vec()),
            None => (buf, Vec::new()),
        };
        let head = String::from_utf8_lossy(head).into_owned();
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        Self { status, head, body }
    }

    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim())
        })
    }
}
