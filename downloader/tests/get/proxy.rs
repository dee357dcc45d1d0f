//! Issue 9 §2: proxies. `HTTP_PROXY` (forwarding, absolute-form requests), `HTTPS_PROXY`
//! (CONNECT tunnels), `NO_PROXY` and `--proxy URL`, through a real proxy on loopback: a small
//! forward/CONNECT proxy written here (no third-party proxy to install, so the tests never
//! skip), which logs each connection's first request line.

use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::support::*;

const PROXY_VARS: [&str; 8] = [
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
    "NO_PROXY",
    "no_proxy",
];

/// A forward and CONNECT proxy on 127.0.0.1:0.
struct Proxy {
    url: String,
    /// First request line of every connection, e.g. `CONNECT 127.0.0.1:4321 HTTP/1.1`.
    seen: Arc<Mutex<Vec<String>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(serve(client, Arc::clone(&log)));
            }
        });
        Self { url, seen }
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

async fn serve(mut client: TcpStream, log: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 64 << 10 || client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let first = text.lines().next().unwrap_or_default().to_string();
    log.lock().unwrap().push(first.clone());
    let mut parts = first.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    if method == "CONNECT" {
        let Ok(mut up) = TcpStream::connect(target).await else {
            return;
        };
        let ok = b"HTTP/1.1 200 Connection established\r\n\r\n";
        if client.write_all(ok).await.is_ok() {
            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        }
        return;
    }
    // Absolute form: send the head on to the origin in origin form; later requests on the
    // same connection stay in absolute form, which the origin server accepts too.
    let Some(rest) = target.strip_prefix("http://") else {
        return;
    };
    let (authority, path) = rest
        .split_once('/')
        .map_or((rest, "/".to_string()), |(a, p)| (a, format!("/{p}")));
    let Ok(mut up) = TcpStream::connect(authority).await else {
        return;
    };
    let forwarded = text.replacen(target, &path, 1);
    if up.write_all(forwarded.as_bytes()).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
    }
}

async fn get(url: &str, env: &[(&str, &str)], extra: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["get", "-q", "-x", "2", "-d"])
        .arg(dir.path())
        .args(extra)
        .arg(url);
    for var in PROXY_VARS {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    (out, dir)
}

fn ok(out: &Output) {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_forwards_and_no_proxy_goes_direct() {
    let data = random_bytes(300_000, 80);
    let server = Server::start(data.clone()).await;
    let proxy = Proxy::start().await;
    let url = server.url("/f.bin");
    let (out, dir) = get(&url, &[("HTTP_PROXY", &proxy.url)], &[]).await;
    ok(&out);
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
    let seen = proxy.seen();
    assert!(!seen.is_empty(), "the proxy saw nothing");
    assert!(
        seen.iter().all(|l| l.contains(&url)),
        "absolute-form requests for {url}: {seen:?}"
    );
    // NO_PROXY names the origin: straight there, also with --proxy (curl's rule).
    let before = proxy.seen().len();
    let env = [
        ("HTTP_PROXY", proxy.url.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    let (out, _dir) = get(&url, &env, &[]).await;
    ok(&out);
    let (out, _dir) = get(&url, &[("NO_PROXY", "127.0.0.1")], &["--proxy", &proxy.url]).await;
    ok(&out);
    assert_eq!(proxy.seen().len(), before, "NO_PROXY bypasses the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_tunnels_with_connect_and_proxy_flag_overrides_the_environment() {
    let fixtures = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tls");
    let data = random_bytes(200_000, 81);
    let server = Server::start_tls(
        data.clone(),
        &fixtures.join("cert.pem"),
        &fixtures.join("key.pem"),
    )
    .await;
    let proxy = Proxy::start().await;
    let ca = fixtures.join("ca.pem").display().to_string();
    let url = server.url("/t.bin");
    let authority = url
        .trim_start_matches("https://")
        .trim_end_matches("/t.bin");
    let (out, dir) = get(&url, &[("HTTPS_PROXY", &proxy.url)], &["--ca-cert", &ca]).await;
    ok(&out);
    assert_eq!(std::fs::read(dir.path().join("t.bin")).unwrap(), data);
    let seen = proxy.seen();
    assert!(!seen.is_empty(), "the proxy saw nothing");
    assert!(
        seen.iter()
            .all(|l| l == &format!("CONNECT {authority} HTTP/1.1")),
        "{seen:?}"
    );
    // --proxy wins over an environment proxy that does not exist.
    let before = seen.len();
    let env = [("HTTPS_PROXY", "http://127.0.0.1:1")];
    let (out, _dir) = get(&url, &env, &["--ca-cert", &ca, "--proxy", &proxy.url]).await;
    ok(&out);
    assert!(proxy.seen().len() > before, "--proxy was not used");
}
