//! Issue 9 §2: TLS like curl. A certificate that does not verify fails at once (no retries),
//! names the reason (unknown issuer, expired, name mismatch) and the way out (`--ca-cert`,
//! `--insecure`), with no log lines of the TLS library; the same for `ferry put`.

use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use crate::support::*;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/tls")
        .join(name)
}

async fn ferry(args: Vec<String>) -> (Output, Duration) {
    tokio::task::spawn_blocking(move || {
        let start = Instant::now();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(&args)
            .env_remove("FERRY_LOG")
            .env(
                "FERRY_DATA_DIR",
                std::env::temp_dir().join("ferry-tls-test-data"),
            )
            .output()
            .unwrap();
        (out, start.elapsed())
    })
    .await
    .unwrap()
}

async fn get(url: &str, dir: &std::path::Path, extra: &[&str]) -> (Output, Duration) {
    let mut args: Vec<String> = vec!["get".into(), "-d".into(), dir.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url.into());
    ferry(args).await
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Refused at once: exit 1 within a retry wait of 1 s (five tries took about 15 s), one
/// handshake (the probe's twin starts only after 1 s without an answer), the reason and the
/// way out named, and no log line of the TLS library.
fn assert_refused_at_once(out: &Output, took: Duration, connections: usize, reason: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?}: retried? {err}"
    );
    assert!(connections <= 2, "{connections} handshakes: retried? {err}");
    assert!(err.contains(reason), "expected {reason:?} in: {err}");
    assert!(
        err.contains("--ca-cert FILE") && err.contains("--insecure"),
        "{err}"
    );
    assert!(
        !err.contains("ERROR") && !err.contains("failed to verify"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_issuer_fails_at_once_and_ca_cert_makes_it_verify() {
    let data = random_bytes(100_000, 70);
    let server = Server::start_tls(data.clone(), &fixture("cert.pem"), &fixture("key.pem")).await;
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/f.bin");
    let (out, took) = get(&url, dir.path(), &["--retry-wait", "1s"]).await;
    assert_refused_at_once(&out, took, server.connections(), "unknown issuer");
    let ca = fixture("ca.pem").display().to_string();
    let (out, _) = get(&url, dir.path(), &["-q", "--ca-cert", &ca]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expired_and_wrong_name_are_named() {
    let ca = fixture("bad/ca.pem").display().to_string();
    for (cert, reason) in [
        ("bad/expired.pem", "expired"),
        ("bad/othername.pem", "name mismatch"),
    ] {
        let server =
            Server::start_tls(vec![7; 1000], &fixture(cert), &fixture("bad/key.pem")).await;
        let dir = tempfile::tempdir().unwrap();
        let (out, took) = get(&server.url("/f"), dir.path(), &["--ca-cert", &ca]).await;
        assert_refused_at_once(&out, took, server.connections(), reason);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_downloads_with_a_warning() {
    let data = random_bytes(50_000, 71);
    let server = Server::start_tls(
        data.clone(),
        &fixture("bad/expired.pem"),
        &fixture("bad/key.pem"),
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (out, _) = get(&server.url("/f.bin"), dir.path(), &["--insecure"]).await;
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("--insecure: TLS certificates are not verified"),
        "{err}"
    );
    // stderr is a pipe here: no terminal colour codes in what a script or a log file keeps.
    assert!(
        !err.contains('\x1b'),
        "ANSI escape codes on a non-terminal: {err:?}"
    );
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_fails_at_once_too() {
    let server = Server::start_tls(vec![1; 10], &fixture("cert.pem"), &fixture("key.pem")).await;
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), b"upload me").unwrap();
    let args = [
        "put",
        "--retry-wait",
        "1s",
        &file.path().display().to_string(),
        &server.url("/files/"),
    ]
    .map(String::from)
    .to_vec();
    let (out, took) = ferry(args).await;
    assert_refused_at_once(&out, took, server.connections(), "unknown issuer");
}

#[tokio::test]
async fn a_ca_cert_that_is_not_pem_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("not.pem");
    std::fs::write(&bad, b"hello").unwrap();
    let b = bad.display().to_string();
    let (out, _) = get("https://127.0.0.1:1/f", dir.path(), &["--ca-cert", &b]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("--ca-cert"), "{}", stderr(&out));
}
