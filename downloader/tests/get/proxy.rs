//! Issue 9 §2: proxies. `HTTP_PROXY` (forwarding, absolute-form requests), `HTTPS_PROXY`
//! (CONNECT tunnels), `NO_PROXY` and `--proxy URL`, through Debian's tinyproxy on loopback
//! (`scripts/test` installs it). What the proxy carried is read from tinyproxy's own log.

use std::path::PathBuf;
use std::process::Output;

use crate::support::*;
use crate::tools::TinyProxy;

/// Every variable reqwest reads for its system proxy; the tests set only what they mean to.
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

/// Nothing listens on port 1: a proxy there refuses every connection.
const DEAD_PROXY: &str = "http://127.0.0.1:1";

/// `ferry get -x 2` with quick retries: tinyproxy answers HTTP/1.1 without `Connection: close`
/// and then closes the connection, so a request can go out on a pooled connection just as it
/// closes ("connection closed before message completed") and is retried at once.
async fn get(url: &str, env: &[(&str, &str)], extra: &[&str]) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["get", "-q", "-x", "2", "--retry-wait", "20ms", "-d"])
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

fn tls_fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/tls")
}

async fn tls_server(data: Vec<u8>) -> std::sync::Arc<Server> {
    let fixtures = tls_fixtures();
    Server::start_tls(data, &fixtures.join("cert.pem"), &fixtures.join("key.pem")).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_env_goes_through_tinyproxy_and_no_proxy_goes_direct() {
    let Some(proxy) = TinyProxy::start() else {
        return;
    };
    let data = random_bytes(300_000, 80);
    let server = Server::start(data.clone()).await;
    let url = server.url("/f.bin");
    let (out, dir) = get(&url, &[("HTTP_PROXY", &proxy.url)], &[]).await;
    ok(&out);
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
    let carried = proxy.requests();
    assert!(!carried.is_empty(), "tinyproxy carried nothing");
    assert!(
        carried
            .iter()
            .all(|l| l.ends_with(&format!(" {url} HTTP/1.1"))),
        "absolute-form requests for {url}: {carried:?}"
    );
    // NO_PROXY names the origin: straight there, also with --proxy (curl's rule).
    let env = [
        ("HTTP_PROXY", proxy.url.as_str()),
        ("NO_PROXY", "127.0.0.1"),
    ];
    let (out, dir) = get(&url, &env, &[]).await;
    ok(&out);
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
    let (out, _dir) = get(&url, &[("NO_PROXY", "127.0.0.1")], &["--proxy", &proxy.url]).await;
    ok(&out);
    assert_eq!(proxy.requests(), carried, "NO_PROXY bypasses the proxy");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_proxy_env_tunnels_tls_through_tinyproxy_connect() {
    let Some(proxy) = TinyProxy::start() else {
        return;
    };
    let data = random_bytes(200_000, 81);
    let server = tls_server(data.clone()).await;
    let ca = tls_fixtures().join("ca.pem").display().to_string();
    let url = server.url("/t.bin");
    let authority = url
        .trim_start_matches("https://")
        .trim_end_matches("/t.bin");
    // HTTP_PROXY is for http:// URLs only: a dead one there must not matter.
    let env = [
        ("HTTPS_PROXY", proxy.url.as_str()),
        ("HTTP_PROXY", DEAD_PROXY),
    ];
    let (out, dir) = get(&url, &env, &["--ca-cert", &ca]).await;
    ok(&out);
    assert_eq!(std::fs::read(dir.path().join("t.bin")).unwrap(), data);
    let carried = proxy.requests();
    assert!(!carried.is_empty(), "tinyproxy carried nothing");
    let connect = format!("CONNECT {authority} HTTP/1.1");
    assert!(carried.iter().all(|l| *l == connect), "{carried:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_flag_overrides_the_environment() {
    let Some(proxy) = TinyProxy::start() else {
        return;
    };
    let data = random_bytes(150_000, 82);
    let server = tls_server(data.clone()).await;
    let ca = tls_fixtures().join("ca.pem").display().to_string();
    let url = server.url("/o.bin");
    let env = [("HTTPS_PROXY", DEAD_PROXY), ("ALL_PROXY", DEAD_PROXY)];
    // The environment alone is read: its dead proxy fails the download.
    let (out, _dir) = get(&url, &env, &["--ca-cert", &ca, "--max-tries", "1"]).await;
    assert_eq!(
        out.status.code(),
        Some(1),
        "the dead HTTPS_PROXY was not used"
    );
    assert!(proxy.requests().is_empty());
    // --proxy wins over it.
    let (out, dir) = get(&url, &env, &["--ca-cert", &ca, "--proxy", &proxy.url]).await;
    ok(&out);
    assert_eq!(std::fs::read(dir.path().join("o.bin")).unwrap(), data);
    assert!(
        proxy.requests().iter().all(|l| l.starts_with("CONNECT ")) && !proxy.requests().is_empty(),
        "--proxy was not used: {:?}",
        proxy.requests()
    );
}
