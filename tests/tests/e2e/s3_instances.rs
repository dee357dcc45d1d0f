//! Several ferryd instances on one S3 bucket (issue 11 points 4 and 6): the lease in each
//! upload's record keeps one writer per upload, a takeover never corrupts an upload, and
//! uploads through a front that sends every request to a random instance end byte-identical.
//! Against moto, a real S3 server; nothing here mocks the S3 client.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ferry_tests::s3::names_under;
use ferry_tests::{client, pattern, Backend, TestServer};
use ferryd::app::StoreConfig;
use ferryd::server::ServerOptions;
use ferryd::store::fs::FsOptions;
use ferryd::store::s3::S3Options;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

/// ferryd in this process with public tus uploads on the prefix of `opts`, without
/// `--single-instance`: moto honours conditional writes, so uploads take the lease locker.
async fn instance(opts: &S3Options) -> TestServer {
    let opts = opts.clone();
    let config = move |c: &mut ferryd::app::Config, _| {
        c.store = StoreConfig::S3(opts);
        c.tus = Some(ferryd::tus::TusConfig::default());
    };
    TestServer::configured_on(Backend::S3, config).await
}

/// `data[from..]` as a request body that arrives in 256 KiB pieces, 25 ms apart (a PATCH
/// that is still streaming when the other client comes).
fn slow_body(data: Arc<Vec<u8>>, from: usize) -> reqwest::Body {
    const PIECE: usize = 256 << 10;
    let pieces = futures_util::stream::unfold(from, move |at| {
        let data = data.clone();
        async move {
            if at >= data.len() {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
            let end = (at + PIECE).min(data.len());
            let piece = bytes::Bytes::copy_from_slice(&data[at..end]);
            Some((Ok::<_, std::io::Error>(piece), end))
        }
    });
    reqwest::Body::wrap_stream(pieces)
}

/// One tus client: HEAD (which takes the upload over), then a PATCH of everything from the
/// offset, again after every failure, until the upload is published. Returns the offsets
/// it saw, in order; counts the PATCHes that did not end in 204.
async fn writer(url: String, data: Arc<Vec<u8>>, failed: Arc<AtomicUsize>, seed: u64) -> Vec<u64> {
    let c = client();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut seen = Vec::new();
    for _ in 0..150 {
        let head = c.head(&url).header("tus-resumable", "1.0.0").send().await;
        let head = match head {
            Ok(h) if h.status() == 200 => h,
            // 503 while the other instance publishes: ask again.
            _ => {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let offset: u64 = head.headers()["upload-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        seen.push(offset);
        if head.headers().contains_key("ferry-published") {
            return seen;
        }
        if offset == data.len() as u64 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let r = c
            .patch(&url)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", offset.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(slow_body(data.clone(), offset as usize))
            .send()
            .await;
        if !matches!(&r, Ok(r) if r.status() == 204) {
            failed.fetch_add(1, Ordering::SeqCst);
            // As a tus client does: wait a moment before resuming.
            tokio::time::sleep(Duration::from_millis(rng.u64(200..1500))).await;
        }
    }
    panic!("{url}: not published after 150 rounds (offsets {seen:?})");
}

// Issue 11 points 4 and 6(d): two instances receive PATCHes for the same upload at once. Each
// HEAD and PATCH takes the upload over (a new lease in its record); the writer taken over
// fails its next record write and stops, keeping what it recorded. The offsets either client
// sees never go back, and the published file is byte-identical, published once, with nothing
// left in staging, and the content index's digest of it is the digest of its bytes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_patching_one_upload_at_once_never_corrupt_it() {
    if !ferry_tests::s3::available() {
        return;
    }
    let opts = ferry_tests::s3::fresh_options(false);
    let a = instance(&opts).await;
    let b = instance(&opts).await;
    // Two full parts of 8 MiB and a tail.
    let data = Arc::new(pattern((20 << 20) + 4321, 61));
    let created = client()
        .post(a.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len().to_string())
        .header("upload-metadata", "filename ZC5iaW4=") // d.bin
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let loc = created.headers()["location"].to_str().unwrap().to_owned();
    let path = &loc[loc.find("/files/").unwrap()..];
    let failed = Arc::new(AtomicUsize::new(0));
    let (seen_a, seen_b) = tokio::join!(
        writer(a.url(path), data.clone(), failed.clone(), 1),
        writer(b.url(path), data.clone(), failed.clone(), 2),
    );
    eprintln!(
        "two writers: {} PATCHes interrupted; offsets a {seen_a:?}, b {seen_b:?}",
        failed.load(Ordering::SeqCst)
    );
    for seen in [&seen_a, &seen_b] {
        assert!(
            seen.windows(2).all(|w| w[0] <= w[1]),
            "an offset went back: {seen:?}"
        );
        assert_eq!(seen.last(), Some(&(data.len() as u64)));
    }
    assert!(
        failed.load(Ordering::SeqCst) >= 1,
        "the two PATCHes never met: a:{seen_a:?} b:{seen_b:?}"
    );
    let got = client()
        .get(b.url("/d.bin"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got[..] == data[..], "published bytes differ");
    // The digest the index gives it (hashed as the bytes arrived, the state going from
    // writer to writer in the record; or read back) is the one of the bytes published.
    let want = {
        use base64::Engine as _;
        let sha = <sha2::Sha256 as sha2::Digest>::digest(&data[..]);
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(sha)
        )
    };
    for srv in [&a, &b] {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let digest = loop {
            let r = client().head(srv.url("/d.bin")).send().await.unwrap();
            let d = r
                .headers()
                .get("repr-digest")
                .map(|v| v.to_str().unwrap().to_owned());
            if d.is_some() || std::time::Instant::now() > deadline {
                break d;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(digest.as_deref(), Some(want.as_str()), "Repr-Digest");
    }
    let published: Vec<String> = names_under(&opts, "")
        .await
        .into_iter()
        .filter(|n| !n.starts_with(".ferry/"))
        .collect();
    assert_eq!(published, ["d.bin"], "published once");
    let id = path.rsplit('/').next().unwrap();
    assert_eq!(
        names_under(&opts, ".ferry/uploads").await,
        [format!(".ferry/uploads/{id}.info")],
        "no tail, part or data object left"
    );
}

/// A `ferryd_tus` process (ferryd with public-token tus uploads) on the S3 prefix of `opts`;
/// SIGKILLed when dropped.
struct Instance(std::process::Child, String);

impl Instance {
    fn start(opts: &S3Options, token: &str) -> Self {
        use std::io::BufRead as _;
        let endpoint = ferry_tests::s3::endpoint().expect("S3 server");
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferryd_tus"))
            .arg(format!("s3://{}/{}", opts.bucket, opts.prefix))
            .arg(token)
            .env("FERRY_TEST_S3_ENDPOINT", endpoint)
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
            .unwrap_or_else(|| panic!("bound URL, got {line:?}"))
            .trim_end_matches('/');
        Self(child, addr.to_string())
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A front like a round-robin load balancer without sticky sessions, only less regular: each
/// connection goes to a random instance, and carries one request (the front asks the instance
/// for `Connection: close`, so the client opens a new connection for its next request).
/// Returns the front's address and how many requests went to each instance.
async fn random_front(upstreams: Vec<String>) -> (String, Arc<Vec<AtomicUsize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let counts: Arc<Vec<AtomicUsize>> =
        Arc::new(upstreams.iter().map(|_| AtomicUsize::new(0)).collect());
    let keep = counts.clone();
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(11);
        while let Ok((down, _)) = listener.accept().await {
            let pick = rng.usize(..upstreams.len());
            keep[pick].fetch_add(1, Ordering::SeqCst);
            tokio::spawn(one_request(down, upstreams[pick].clone()));
        }
    });
    (addr, counts)
}

/// Forwards the request on `down` to `upstream` with `Connection: close`, and the answer
/// back, then closes both.
async fn one_request(down: TcpStream, upstream: String) {
    let (down_r, down_w) = down.into_split();
    one_request_split(down_r, down_w, upstream).await;
}

fn write(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

// Issue 11 points 4 and 6(b): three ferryd processes on one bucket behind a front that sends
// each request to a random instance (no sticky sessions): `ferry put -x 4 -j 2` of several
// files, in 1 MiB PATCHes that each land on any instance (every one a takeover of the upload),
// four partial uploads per file concatenated into a final upload by whichever instance gets
// there first (the last part's background finisher or the client's HEAD), publishes every
// file once, byte-identical. (Parts complete before their final upload was created stay
// until they expire, reusable; the others are retired once it is published.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_a_random_front_take_ferry_put_byte_identical() {
    if !ferry_tests::s3::available() {
        return;
    }
    const TOKEN: &str = "three-instances-token";
    let opts = ferry_tests::s3::fresh_options(false);
    let instances: Vec<Instance> = (0..3).map(|_| Instance::start(&opts, TOKEN)).collect();
    let (front, counts) = random_front(instances.iter().map(|i| i.1.clone()).collect()).await;
    let dir = tempfile::tempdir().unwrap();
    let files = [
        ("one.bin", pattern((9 << 20) + 17, 71)),
        ("two.bin", pattern(3 << 20, 72)),
        ("three.bin", pattern(1000, 73)),
    ];
    let paths: Vec<_> = files.iter().map(|(n, d)| write(dir.path(), n, d)).collect();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry_cli"))
        .args(["put", "-q", "-x", "4", "-j", "2", "--chunk-size", "1M"])
        .args(["--retry-wait", "50ms", "--token", TOKEN])
        .args(&paths)
        .arg(format!("http://{front}/files/"))
        .env("FERRY_DATA_DIR", dir.path().join("d"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ferry put failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let counts_now: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    eprintln!("requests per instance: {counts_now:?}");
    for (i, c) in counts.iter().enumerate() {
        assert!(
            c.load(Ordering::SeqCst) >= 1,
            "instance {i} took no request"
        );
    }
    for (name, data) in &files {
        let got = client()
            .get(format!("http://{front}/{name}"))
            .send()
            .await
            .unwrap();
        assert_eq!(got.status(), 200, "{name}");
        assert!(got.bytes().await.unwrap()[..] == data[..], "{name} differs");
    }
    let mut want: Vec<String> = files.iter().map(|(n, _)| n.to_string()).collect();
    want.sort();
    let published: Vec<String> = names_under(&opts, "")
        .await
        .into_iter()
        .filter(|n| !n.starts_with(".ferry/"))
        .collect();
    assert_eq!(published, want, "each file published once");
}

// Issue 11 6(b) with a third-party client: tus-js-client (parallelUploads 3, 1 MiB chunks:
// three partial uploads and a final one, every PATCH through the random front to any
// instance) uploads into three ferryd processes on one bucket; the file is published once,
// byte-identical.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_behind_a_random_front_take_tus_js_client_parallel_uploads() {
    if !ferry_tests::s3::available() {
        return;
    }
    let Some(node) = ferry_tests::tool("node") else {
        return;
    };
    const TOKEN: &str = "three-instances-js-token";
    let opts = ferry_tests::s3::fresh_options(false);
    let instances: Vec<Instance> = (0..3).map(|_| Instance::start(&opts, TOKEN)).collect();
    let (front, counts) = random_front(instances.iter().map(|i| i.1.clone()).collect()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern((6 << 20) + 5, 74);
    let file = write(dir.path(), "js.bin", &data);
    use crate::tus::interop::{js, run_client, serde_like};
    let js_opts = serde_like::obj(&[
        ("endpoint", serde_like::s(&format!("http://{front}/files/"))),
        ("token", serde_like::s(TOKEN)),
        ("file", serde_like::s(file.to_str().unwrap())),
        ("parallel", "3".into()),
        ("chunkSize", (1u32 << 20).to_string()),
    ]);
    let url = run_client(js(&node, js_opts)).await;
    assert!(url.starts_with(&format!("http://{front}/")), "{url}");
    let counts_now: Vec<usize> = counts.iter().map(|c| c.load(Ordering::SeqCst)).collect();
    eprintln!("requests per instance: {counts_now:?}");
    assert!(
        counts_now.iter().filter(|c| **c > 0).count() >= 2,
        "requests reached at least two instances: {counts_now:?}"
    );
    let got = client()
        .get(format!("http://{front}/js.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.unwrap()[..] == data[..], "js.bin differs");
    let published: Vec<String> = names_under(&opts, "")
        .await
        .into_iter()
        .filter(|n| !n.starts_with(".ferry/"))
        .collect();
    assert_eq!(published, ["js.bin"], "published once");
}

/// Counts the `expired` events of the instances it listens to.
struct CountExpired(Arc<AtomicUsize>);

impl ferryd::events::Listener for CountExpired {
    fn event<'a>(
        &'a self,
        e: &'a ferryd::events::UploadEvent,
    ) -> futures_util::future::BoxFuture<'a, ()> {
        if e.kind == ferryd::events::Kind::Expired {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        Box::pin(async {})
    }
}

// Issue 11 point 4: the expiry reaper runs on every instance. Three instances reap one expired
// upload at once: the record's compare-and-swap lets exactly one discard it (one `expired`
// event, its part and tail freed), the others skip it, and none purges the fresh tombstone
// before its own deadline (a pass that listed the upload before another one discarded it
// re-checks the deadline); a later pass forgets the tombstone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reapers_on_every_instance_discard_an_expired_upload_once() {
    if !ferry_tests::s3::available() {
        return;
    }
    let opts = ferry_tests::s3::fresh_options(false);
    let expired = Arc::new(AtomicUsize::new(0));
    let mut instances = Vec::new();
    for _ in 0..3 {
        let (opts, expired) = (opts.clone(), expired.clone());
        let config = move |c: &mut ferryd::app::Config, _| {
            c.store = StoreConfig::S3(opts);
            c.tus = Some(ferryd::tus::TusConfig {
                expiry: Duration::from_millis(3000),
                ..ferryd::tus::TusConfig::default()
            });
        };
        let srv = TestServer::launch_on(
            Backend::S3,
            FsOptions::default(),
            ServerOptions::default(),
            config,
            move |app, _| {
                let tus = app.tus.as_ref().expect("tus");
                tus.events.subscribe(Arc::new(CountExpired(expired)));
                app
            },
        )
        .await;
        instances.push(srv);
    }
    let c = client();
    let r = c
        .post(instances[0].url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", (10 << 20).to_string())
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .patch(&loc)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(pattern(9 << 20, 5))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let id = loc.rsplit('/').next().unwrap().to_owned();
    let record = format!(".ferry/uploads/{id}.info");
    let staging = || names_under(&opts, ".ferry/uploads");
    assert_eq!(staging().await.len(), 3, "record, part and tail");
    // The background reapers (every 750 ms on each instance) free it once it is due.
    let freed = async {
        for _ in 0..200 {
            let names = staging().await;
            if !names
                .iter()
                .any(|n| n.contains(".tail.") || n.contains(".part."))
            {
                return names;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not reaped: {:?}", staging().await);
    };
    assert_eq!(
        freed.await,
        [record],
        "the tombstone stays until its own deadline"
    );
    assert_eq!(expired.load(Ordering::SeqCst), 1, "discarded exactly once");
    let head = c
        .head(&loc)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 410);
    let forgotten = async {
        for _ in 0..200 {
            if staging().await.is_empty() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("tombstone not forgotten: {:?}", staging().await);
    };
    forgotten.await;
    assert_eq!(expired.load(Ordering::SeqCst), 1, "discarded exactly once");
}

/// A front like [`random_front`] whose instances can be replaced while it runs, which counts
/// the request bytes it forwarded and remembers the instance of the latest connection.
struct Front {
    addr: String,
    upstreams: Arc<std::sync::Mutex<Vec<String>>>,
    last: Arc<AtomicUsize>,
    sent: Arc<std::sync::atomic::AtomicU64>,
}

impl Front {
    async fn start(upstreams: Vec<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = Self {
            addr: listener.local_addr().unwrap().to_string(),
            upstreams: Arc::new(std::sync::Mutex::new(upstreams)),
            last: Arc::new(AtomicUsize::new(0)),
            sent: Arc::new(std::sync::atomic::AtomicU64::new(0)),
        };
        let (ups, last, sent) = (
            front.upstreams.clone(),
            front.last.clone(),
            front.sent.clone(),
        );
        tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(13);
            while let Ok((down, _)) = listener.accept().await {
                let up = {
                    let ups = ups.lock().unwrap();
                    let pick = rng.usize(..ups.len());
                    last.store(pick, Ordering::SeqCst);
                    ups[pick].clone()
                };
                let sent = sent.clone();
                tokio::spawn(async move {
                    let (down_r, down_w) = down.into_split();
                    let counted = CountingRead(down_r, sent);
                    one_request_split(counted, down_w, up).await;
                });
            }
        });
        front
    }
}

/// A reader that adds what it reads to a counter.
struct CountingRead<R>(R, Arc<std::sync::atomic::AtomicU64>);

impl<R: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for CountingRead<R> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        let n = (buf.filled().len() - before) as u64;
        self.1.fetch_add(n, Ordering::SeqCst);
        r
    }
}

/// [`one_request`] on a split connection (its reading half may count what it reads).
async fn one_request_split<R: tokio::io::AsyncRead + Unpin>(
    mut down_r: R,
    mut down_w: tokio::net::tcp::OwnedWriteHalf,
    upstream: String,
) {
    let Ok(up) = TcpStream::connect(&upstream).await else {
        return;
    };
    let (mut up_r, mut up_w) = up.into_split();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    let end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        match down_r.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut lines: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("connection: close");
    let head = format!("{}\r\n\r\n", lines.join("\r\n"));
    if up_w.write_all(head.as_bytes()).await.is_err() || up_w.write_all(&buf[end..]).await.is_err()
    {
        return;
    }
    let to_up = async {
        let _ = tokio::io::copy(&mut down_r, &mut up_w).await;
        std::future::pending::<()>().await;
    };
    let to_down = async {
        let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
        let _ = down_w.shutdown().await;
    };
    tokio::select! {
        () = to_up => {}
        () = to_down => {}
    }
}

// Issue 11 point 6(c): kill -9 the instance that received the latest request (most often the
// one receiving a PATCH), at random moments, at least 10 times, and start a new one in its
// place, while `ferry put -x 4` sends a file through the random front: the client resumes
// through the other instances, the file is published once, byte-identical, and once the
// uploads expire nothing of them is left, no multipart upload in progress either. Twice,
// all three are killed (and replaced) while an upload record shows a publish's claim, so the
// publish is cut too (an instance killed while it publishes holds the upload for 15 s at
// most; whoever publishes next ends at the same name and aborts the multipart upload the
// killed one left at it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_killed_mid_patch_lose_nothing_and_publish_once() {
    if !ferry_tests::s3::available() {
        return;
    }
    const TOKEN: &str = "kill-loop-token";
    let opts = ferry_tests::s3::fresh_options(false);
    let mut instances: Vec<Instance> = (0..3).map(|_| Instance::start(&opts, TOKEN)).collect();
    let front = Front::start(instances.iter().map(|i| i.1.clone()).collect()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(48 << 20, 81);
    let file = write(dir.path(), "kill.bin", &data);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ferry_cli"))
        .args(["put", "-q", "-x", "4", "--chunk-size", "1M"])
        .args([
            "--retry-wait",
            "20ms",
            "--max-tries",
            "50",
            "--token",
            TOKEN,
        ])
        .arg(&file)
        .arg(format!("http://{}/files/", front.addr))
        .env("FERRY_DATA_DIR", dir.path().join("d"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kills at random points of the byte stream (not of the clock, so a fast or a loaded
    // machine gets as many): about fifteen, on average one per fifteenth of the first four
    // fifths.
    let mut rng = fastrand::Rng::with_seed(83);
    let mut kills = 0;
    let stop_at = data.len() as u64 * 4 / 5;
    let step = stop_at / 15;
    let mut next = step / 2 + rng.u64(0..step);
    while next < stop_at && child.try_wait().unwrap().is_none() {
        if front.sent.load(Ordering::SeqCst) < next {
            tokio::time::sleep(Duration::from_millis(2)).await;
            continue;
        }
        let victim = front.last.load(Ordering::SeqCst);
        let fresh = Instance::start(&opts, TOKEN);
        front.upstreams.lock().unwrap()[victim] = fresh.1.clone();
        instances[victim] = fresh; // the old one is SIGKILLed as it drops
        kills += 1;
        next += step / 2 + rng.u64(0..step);
    }
    // The publish: every instance, whichever publishes, twice.
    let mut publish_kills = 0;
    while publish_kills < 2 && child.try_wait().unwrap().is_none() {
        if !ferry_tests::s3::publish_claimed(&opts).await {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        for (i, slot) in instances.iter_mut().enumerate() {
            let fresh = Instance::start(&opts, TOKEN);
            front.upstreams.lock().unwrap()[i] = fresh.1.clone();
            *slot = fresh; // the old one is SIGKILLed as it drops
        }
        publish_kills += 1;
    }
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(300) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = child.kill();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "ferry put failed after {kills} kills: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "kill loop: {kills} instances killed, all three {publish_kills} times while publishing"
    );
    assert!(
        kills >= 10,
        "only {kills} kills before the upload was nearly done"
    );
    assert!(publish_kills >= 1, "no kill during the publish");
    let got = client()
        .get(format!("http://{}/kill.bin", front.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200);
    assert!(
        got.bytes().await.unwrap()[..] == data[..],
        "kill.bin differs"
    );
    let published: Vec<String> = names_under(&opts, "")
        .await
        .into_iter()
        .filter(|n| !n.starts_with(".ferry/"))
        .collect();
    assert_eq!(published, ["kill.bin"], "published once");

    // No orphaned multipart upload remains after expiry, nor anything else of the uploads:
    // with every instance gone, the uploads' deadlines run out and a new instance's reaper
    // frees them. The partial uploads not retired at publish (a part complete before its
    // final upload was created stays reusable until it expires, as tusd and the directory
    // store keep copied parts) go with their data and tails, then every tombstone; a
    // multipart upload a killed writer created but never recorded is aborted.
    let open = ferry_tests::s3::open_multipart_uploads(&opts).await;
    let open: Vec<&str> = open.iter().map(|o| o.key.as_str()).collect();
    eprintln!("kill loop: multipart uploads in progress after the put: {open:?}");
    drop(instances); // SIGKILLed
    ferry_tests::s3::expire_upload_records(&opts).await;
    let _reaper = reaper(&opts, Duration::from_millis(1500)).await;
    let left = || async {
        let mut left: Vec<String> = ferry_tests::s3::open_multipart_uploads(&opts)
            .await
            .into_iter()
            .map(|o| format!("multipart upload of {}", o.key))
            .collect();
        let staging = names_under(&opts, ".ferry/").await;
        left.extend(
            staging
                .into_iter()
                .filter(|n| !n.starts_with(".ferry/index/")),
        );
        left
    };
    let started = std::time::Instant::now();
    while !left().await.is_empty() && started.elapsed() < Duration::from_secs(120) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(left().await, Vec::<String>::new(), "left after expiry");
}

/// ferryd in this process on the prefix of `opts` with uploads that expire after `expiry`:
/// its reaper runs every quarter of it.
async fn reaper(opts: &S3Options, expiry: Duration) -> TestServer {
    let opts = opts.clone();
    let config = move |c: &mut ferryd::app::Config, _| {
        c.store = StoreConfig::S3(opts);
        c.tus = Some(ferryd::tus::TusConfig {
            expiry,
            ..ferryd::tus::TusConfig::default()
        });
    };
    TestServer::configured_on(Backend::S3, config).await
}
