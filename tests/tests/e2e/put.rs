//! `ferry put` (the library the binary runs) against ferryd's tus endpoint over real HTTP:
//! parallel parts joined by concatenation, per-chunk checksums, tokens, instant upload
//! measured on the wire, resume after a failed run, and where the file was published.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry::cli::SharedArgs;
use ferry::progress::{Mode, Ui};
use ferry::put::args::{PutArgs, PutPlan};
use ferry::put::fingerprint::Store;
use ferry::put::plan::ChecksumChoice;
use ferry::put::Uploader;
use ferry_tests::{client, pattern, poll, sha256_hex, Backend, TestServer};
use ferryd::tus::TusConfig;
use tokio::net::{TcpListener, TcpStream};

const TOKEN: &str = "put-e2e-token";

async fn ferryd() -> TestServer {
    let cfg = TusConfig {
        upload_token: Some(TOKEN.into()),
        ..TusConfig::default()
    };
    TestServer::start_tus(cfg).await.0
}

fn args(files: &[&Path], endpoint: &str, parallel: u16, chunk: u64) -> PutArgs {
    PutArgs {
        files: files.iter().map(|f| f.to_path_buf()).collect(),
        url: endpoint.to_string(),
        parallel,
        chunk_size: Some(chunk),
        metadata: Vec::new(),
        no_instant: false,
        restart: false,
        checksum: ChecksumChoice::Auto,
        recursive: false,
        max_concurrent_uploads: 1,
        shared: SharedArgs {
            token: Some(TOKEN.into()),
            max_tries: 3,
            retry_wait: Duration::from_millis(20),
            timeout: Duration::from_secs(10),
            ..SharedArgs::default()
        },
    }
}

/// Uploads `file` in-process with its resume store in `data_dir`; returns the location.
async fn put(args: PutArgs, data_dir: &Path) -> ferry::Result<String> {
    let mut plan = PutPlan::from_args(args)?;
    plan.options.store = Some(Store::open(data_dir).expect("store"));
    let file = plan.files[0].clone();
    let up = Uploader::connect(plan.tus, plan.options).await?;
    up.put(&file, &Ui::with_mode(Mode::Quiet, false)).await
}

fn write(dir: &Path, name: &str, data: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).expect("write");
    p
}

async fn download(url: &str) -> Vec<u8> {
    let resp = client().get(url).send().await.expect("GET");
    assert_eq!(resp.status(), 200, "{url}");
    resp.bytes().await.expect("body").to_vec()
}

#[tokio::test]
async fn parallel_put_into_ferryd_is_published_byte_identical() {
    let srv = ferryd().await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern((5 << 20) + 321, 51);
    let file = write(dir.path(), "parallel.bin", &data);
    let endpoint = srv.url("/files/");
    let location = put(
        args(&[&file], &endpoint, 4, 256 << 10),
        &dir.path().join("d"),
    )
    .await
    .unwrap();
    assert_eq!(
        location,
        srv.url("/parallel.bin"),
        "ferry prints the published URL"
    );
    assert_eq!(sha256_hex(&download(&location).await), sha256_hex(&data));
    assert_eq!(
        std::fs::read(srv.root.path().join("parallel.bin")).unwrap(),
        data
    );
    // ferry created the final upload before sending, so ferryd wrote the parts' bytes in
    // place: no part data is left in staging (a copying concatenation would leave 4 parts).
    let staged: Vec<_> = std::fs::read_dir(srv.state.path().join("uploads"))
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".bin"))
        .collect();
    assert!(staged.is_empty(), "part data left in staging: {staged:?}");
}

#[tokio::test]
async fn wrong_token_fails_without_retrying_forever() {
    let srv = ferryd().await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "t.bin", b"hello");
    let mut a = args(&[&file], &srv.url("/files/"), 1, 1 << 20);
    a.shared.token = Some("wrong".into());
    let err = put(a, &dir.path().join("d")).await.unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
}

/// Issue 9 §1: running the same `ferry put` again after it finished is safe: it succeeds
/// and names the same location, and ferryd keeps one copy.
#[tokio::test]
async fn rerun_of_a_finished_upload_names_the_same_location() {
    let srv = ferryd().await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(1 << 20, 54);
    let file = write(dir.path(), "again.bin", &data);
    let (endpoint, store) = (srv.url("/files/"), dir.path().join("d"));
    let run = || put(args(&[&file], &endpoint, 2, 256 << 10), &store);
    let first = run().await.unwrap();
    assert!(first.ends_with("/again.bin"), "{first}");
    // At once (ferryd may not have indexed the file yet), and once it has.
    let second = run().await.unwrap();
    let url = srv.url("/again.bin");
    let indexed = poll(|| async {
        let r = client().head(&url).send().await.ok()?;
        r.headers().contains_key("repr-digest").then_some(())
    })
    .await;
    assert!(indexed.is_some(), "ferryd never indexed the upload");
    let third = run().await.unwrap();
    assert_eq!((&second, &third), (&first, &first));
    assert_eq!(download(&first).await, data);
    let names: Vec<_> = std::fs::read_dir(srv.root.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("again"))
        .collect();
    assert_eq!(names, vec!["again.bin".to_string()], "one published copy");
}

#[tokio::test]
async fn failed_run_resumes_into_the_same_upload() {
    let srv = ferryd().await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(3 << 20, 52);
    let file = write(dir.path(), "resume.bin", &data);
    // A proxy that cuts the connection after ~1 MiB of request bytes makes the first run fail.
    let proxy = Proxy::start(srv.addr.to_string(), Some(1 << 20)).await;
    let mut a = args(
        &[&file],
        &format!("http://{}/files/", proxy.addr),
        2,
        128 << 10,
    );
    a.shared.max_tries = 1;
    assert!(put(a, &dir.path().join("d")).await.is_err());
    // The same endpoint string (the fingerprint includes it), through a proxy that no longer
    // cuts; count only this run's bytes.
    proxy.limit.store(u64::MAX, Ordering::SeqCst);
    proxy.sent.store(0, Ordering::SeqCst);
    let a = args(
        &[&file],
        &format!("http://{}/files/", proxy.addr),
        2,
        128 << 10,
    );
    let location = put(a, &dir.path().join("d")).await.unwrap();
    assert_eq!(download(&location).await, data);
    let sent = proxy.sent.load(Ordering::SeqCst);
    assert!(
        sent < data.len() as u64,
        "resume must not resend everything: {sent} bytes"
    );
}

// Issue 11 point 3: `ferry put -x 4` (partial uploads joined by concatenation) and instant
// upload behave the same on both stores.
ferry_tests::backends!(
    parallel_put_is_published_once_byte_identical,
    instant_upload_into_ferryd_sends_no_body,
);

/// ferryd on `backend` with the tus endpoint behind [`TOKEN`].
async fn ferryd_on(backend: Backend) -> TestServer {
    let cfg = TusConfig {
        upload_token: Some(TOKEN.into()),
        ..TusConfig::default()
    };
    TestServer::start_tus_on(backend, cfg).await.0
}

/// Waits (up to 30 s: on S3 the published object is read back and hashed in the background)
/// until ferryd's content index holds a file of `len` bytes (OPTIONS with
/// `Ferry-Instant-Length`, as ferry asks it).
async fn indexed(srv: &TestServer, len: usize) -> bool {
    ferry_tests::s3::instant_candidate(&srv.url("/files/"), Some(TOKEN), len as u64).await
}

/// Four partial uploads of a little more than a part of the S3 store each (a part cut and a
/// tail), joined by a final upload created before any byte: one byte-identical published
/// file, no second copy.
async fn parallel_put_is_published_once_byte_identical(backend: Backend) {
    let srv = ferryd_on(backend).await;
    let opts = client()
        .request(reqwest::Method::OPTIONS, srv.url("/files/"))
        .send()
        .await
        .unwrap();
    let exts = opts.headers()["tus-extension"].to_str().unwrap().to_owned();
    assert!(
        exts.contains("concatenation,concatenation-unfinished"),
        "ferry joins -x parts only with concatenation: {exts}"
    );
    let dir = tempfile::tempdir().unwrap();
    let data = pattern((33 << 20) + 321, 56);
    let file = write(dir.path(), "four.bin", &data);
    let endpoint = srv.url("/files/");
    let location = put(args(&[&file], &endpoint, 4, 4 << 20), &dir.path().join("d"))
        .await
        .unwrap();
    assert_eq!(location, srv.url("/four.bin"));
    assert!(download(&location).await == data, "published bytes differ");
    let again = client()
        .head(srv.url("/four%20(1).bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404, "published once");
}

async fn instant_upload_into_ferryd_sends_no_body(backend: Backend) {
    let srv = ferryd_on(backend).await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(2 << 20, 53);
    let first = write(dir.path(), "first.bin", &data);
    put(
        args(&[&first], &srv.url("/files/"), 1, 1 << 20),
        &dir.path().join("d"),
    )
    .await
    .unwrap();
    // ferryd indexes the published file in the background; once it has, ferry is told a
    // file of that size is held and hashes before uploading.
    assert!(
        indexed(&srv, data.len()).await,
        "ferryd never indexed the first upload"
    );
    let proxy = Proxy::start(srv.addr.to_string(), None).await;
    let second = write(dir.path(), "second.bin", &data);
    let a = args(
        &[&second],
        &format!("http://{}/files/", proxy.addr),
        4,
        256 << 10,
    );
    let location = put(a, &dir.path().join("d")).await.unwrap();
    assert!(location.ends_with("/second.bin"), "{location}");
    assert!(download(&srv.url("/second.bin")).await == data);
    let sent = proxy.sent.load(Ordering::SeqCst);
    assert!(
        sent < 8 << 10,
        "instant upload sent {sent} request bytes for a 2 MiB file"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferry_put_sigkilled_at_random_moments_resumes_into_one_published_copy() {
    // The client dies (kill -9) while parts stream into ferryd, between creating the parts
    // and the early final upload, or after the final upload completed but before the resume
    // entry was cleared; each rerun must resume, and the end is one byte-identical file.
    let srv = ferryd().await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(48 << 20, 55);
    let file = write(dir.path(), "loop.bin", &data);
    let proxy = Proxy::start(srv.addr.to_string(), None).await;
    let endpoint = format!("http://{}/files/", proxy.addr);
    let data_dir = dir.path().join("d");
    let command = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ferry_cli"));
        c.args(["put", "-q", "-x", "4", "--chunk-size", "256K"])
            .args(["--retry-wait", "20ms", "--token", TOKEN])
            .arg(&file)
            .arg(&endpoint)
            .env("FERRY_DATA_DIR", &data_dir)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c
    };
    let mut rng = fastrand::Rng::with_seed(55);
    let mut kills = 0;
    for _ in 0..8 {
        // Under 3 MiB more per run: 8 runs cannot finish the 48 MiB even with resends.
        let target = proxy.sent.load(Ordering::SeqCst) + rng.u64(0..3 << 20);
        let mut child = command().spawn().expect("spawn ferry_cli");
        let started = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(20) {
            if proxy.sent.load(Ordering::SeqCst) >= target {
                child.kill().unwrap(); // SIGKILL
                kills += 1;
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let _ = child.kill();
        child.wait().unwrap();
    }
    assert!(kills >= 5, "only {kills} runs were killed mid-way");
    let before = proxy.sent.load(Ordering::SeqCst);
    let out = command().output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let location = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(location.ends_with("/loop.bin"), "{location}");
    assert_eq!(
        std::fs::read(srv.root.path().join("loop.bin")).unwrap(),
        data
    );
    let published: Vec<_> = std::fs::read_dir(srv.root.path())
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("loop"))
        .collect();
    assert_eq!(published, ["loop.bin"], "one published copy");
    let last_run = proxy.sent.load(Ordering::SeqCst) - before;
    assert!(
        last_run < data.len() as u64,
        "the last run must resume, not start over: it sent {last_run} bytes"
    );
}

/// A `ferryd_tus` process (ferryd with the tus endpoint, this crate's helper binary) on a
/// root that outlives it; SIGKILLed when dropped.
struct Ferryd(std::process::Child, String);

impl Ferryd {
    fn start(root: &Path) -> Self {
        use std::io::BufRead as _;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferryd_tus"))
            .arg(root)
            .arg(TOKEN)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn ferryd_tus");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on http://")
            .expect("bound URL")
            .trim_end_matches('/');
        Self(child, addr.to_string())
    }
}

impl Drop for Ferryd {
    fn drop(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ferryd_sigkilled_and_restarted_mid_upload_then_the_same_run_finishes() {
    let root = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(24 << 20, 54);
    let file = write(dir.path(), "restart.bin", &data);
    let first = Ferryd::start(root.path());
    // The proxy keeps the endpoint's port fixed across the restart, as a real deployment would.
    let proxy = Proxy::start(first.1.clone(), None).await;
    let mut a = args(
        &[&file],
        &format!("http://{}/files/", proxy.addr),
        2,
        256 << 10,
    );
    a.shared.max_tries = 30;
    let data_dir = dir.path().join("d");
    let task = tokio::spawn(async move { put(a, &data_dir).await });
    for _ in 0..2000 {
        if proxy.sent.load(Ordering::SeqCst) > 4 << 20 || task.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(first); // SIGKILL mid-upload
    assert!(
        !task.is_finished(),
        "the upload finished before ferryd was killed"
    );
    let second = Ferryd::start(root.path());
    *proxy.upstream.lock().unwrap() = second.1.clone();
    let location = task.await.unwrap().unwrap();
    assert!(location.ends_with("/restart.bin"), "{location}");
    assert_eq!(
        std::fs::read(root.path().join("restart.bin")).unwrap(),
        data
    );
}

/// A TCP proxy counting client-to-server bytes, optionally closing every connection once the
/// total passes `limit`.
struct Proxy {
    addr: std::net::SocketAddr,
    sent: Arc<AtomicU64>,
    limit: Arc<AtomicU64>,
    /// Where new connections go (changed when the server restarts on another port).
    upstream: Arc<std::sync::Mutex<String>>,
}

impl Proxy {
    async fn start(upstream: String, limit: Option<u64>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let limit = Arc::new(AtomicU64::new(limit.unwrap_or(u64::MAX)));
        let upstream = Arc::new(std::sync::Mutex::new(upstream));
        let (s, l, u) = (Arc::clone(&sent), Arc::clone(&limit), Arc::clone(&upstream));
        tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                let upstream = u.lock().unwrap().clone();
                let (s, l) = (Arc::clone(&s), Arc::clone(&l));
                tokio::spawn(async move {
                    if let Ok(up) = TcpStream::connect(upstream).await {
                        pipe(down, up, s, l).await;
                    }
                });
            }
        });
        Self {
            addr,
            sent,
            limit,
            upstream,
        }
    }
}

async fn pipe(down: TcpStream, up: TcpStream, sent: Arc<AtomicU64>, limit: Arc<AtomicU64>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (mut dr, mut dw) = down.into_split();
    let (mut ur, mut uw) = up.into_split();
    let upstream = async move {
        let mut buf = vec![0u8; 16 << 10];
        loop {
            let n = match dr.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            if sent.fetch_add(n as u64, Ordering::SeqCst) + n as u64 > limit.load(Ordering::SeqCst)
            {
                return;
            }
            if uw.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut ur, &mut dw).await;
    };
    tokio::select! { _ = upstream => {}, _ = downstream => {} }
}

// Issue 8: with --public-url, ferryd's Location and Ferry-Published name another origin than
// the endpoint ferry was given; ferry sends its parts there, joins them by those absolute URLs
// (`Upload-Concat: final;<url> <url>`) and prints the published URL on that origin.
#[tokio::test]
async fn put_follows_the_absolute_urls_of_a_public_url() {
    let cfg = TusConfig {
        upload_token: Some(TOKEN.into()),
        ..TusConfig::default()
    };
    let (srv, _) = TestServer::start_tus_front(cfg, |addr| ferryd::forwarded::Frontend {
        public_url: Some(
            format!("http://localhost:{}/", addr.port())
                .parse()
                .unwrap(),
        ),
        behind_proxy: false,
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern((1 << 20) + 77, 61);
    let file = write(dir.path(), "public.bin", &data);
    let a = args(&[&file], &srv.url("/files/"), 4, 256 << 10);
    let location = put(a, &dir.path().join("d")).await.unwrap();
    let public = format!("http://localhost:{}/public.bin", srv.addr.port());
    assert_eq!(location, public, "ferry prints the public URL");
    assert_eq!(
        std::fs::read(srv.root.path().join("public.bin")).unwrap(),
        data
    );
}
