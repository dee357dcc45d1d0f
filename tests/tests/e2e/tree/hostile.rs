//! A hostile listing server (a small in-test server answering fixed pages): links that climb
//! out of the folder (`../x`, `%2e%2e/x`, `/etc/x`), encoded separators (`..%2fx`) and links
//! to other hosts must never make `ferry get -r` write outside its output directory, nor even
//! request those URLs (regression test for issue 9 point 6), in the HTML and the JSON listing
//! alike. A file that answers 404 fails alone: the rest is downloaded, the summary counts it,
//! and the exit code is 1.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{ferry, files_below, path_arg, stderr};

const HTML: &str = "text/html";
const JSON: &str = "application/json";
const TRAP: &[u8] = b"PWNED";

/// Paths a correct client never asks for; each answers TRAP.
const TRAPS: &[&str] = &[
    "/x",
    "/y",
    "/etc/x",
    "/pub/..%2fx",
    "/pub/%2E%2E%2Fy",
    "/json/..%2fx",
    "/evil",
];

fn page(hrefs: &[&str]) -> Vec<u8> {
    let links: String = hrefs
        .iter()
        .map(|h| format!("<a href=\"{h}\">{h}</a>\n"))
        .collect();
    format!("<html><body><pre>\n{links}</pre></body></html>\n").into_bytes()
}

fn routes(other_host: SocketAddr) -> HashMap<String, (&'static str, Vec<u8>)> {
    let evil = format!("http://{other_host}/evil");
    let mut r: HashMap<String, (&'static str, Vec<u8>)> = HashMap::new();
    let pub_page = page(&[
        "../",
        "../x",
        "%2e%2e/x",
        "/etc/x",
        "..%2fx",
        "%2E%2E%2Fy",
        &evil,
        "?C=N;O=D",
        "sub/",
        "ok.txt",
    ]);
    r.insert("/pub/".into(), (HTML, pub_page));
    let sub_page = page(&["../../x", ".%2e/.%2e/y", "/pub/sub/../../x", "inner.txt"]);
    r.insert("/pub/sub/".into(), (HTML, sub_page));
    let json = r#"[{"name":"up","type":"dir","size":0,"href":"../"},
        {"name":"x","type":"file","size":5,"href":"../x"},
        {"name":"x","type":"file","size":5,"href":"%2e%2e/x"},
        {"name":"x","type":"file","size":5,"href":"/etc/x"},
        {"name":"x","type":"file","size":5,"href":"..%2fx"},
        {"name":"ok.txt","type":"file","size":3,"href":"ok.txt"}]"#;
    r.insert("/json/".into(), (JSON, json.as_bytes().to_vec()));
    r.insert("/mixed/".into(), (HTML, page(&["ok.txt", "missing.bin"])));
    for ok in ["/pub/ok.txt", "/json/ok.txt", "/mixed/ok.txt"] {
        r.insert(ok.into(), ("text/plain", b"ok\n".to_vec()));
    }
    r.insert(
        "/pub/sub/inner.txt".into(),
        ("text/plain", b"inner\n".to_vec()),
    );
    for trap in TRAPS {
        r.insert(trap.to_string(), ("text/plain", TRAP.to_vec()));
    }
    r
}

/// The server: answers `routes` by the raw request path, 404 otherwise, and records every
/// request line's path.
struct Hostile {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Hostile {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes = Arc::new(routes(addr));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                tokio::spawn(answer(sock, Arc::clone(&routes), Arc::clone(&log)));
            }
        });
        Self { addr, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn requested(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

type Routes = HashMap<String, (&'static str, Vec<u8>)>;

async fn answer(mut sock: TcpStream, routes: Arc<Routes>, seen: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match sock.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut line = text.lines().next().unwrap_or("").split(' ');
    let (method, path) = (line.next().unwrap_or(""), line.next().unwrap_or(""));
    seen.lock().unwrap().push(path.to_string());
    let (status, ctype, body) = match routes.get(path) {
        Some((ctype, body)) => ("200 OK", *ctype, body.clone()),
        None => ("404 Not Found", "text/plain", b"not found\n".to_vec()),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if method != "HEAD" {
        resp.extend_from_slice(&body);
    }
    let _ = sock.write_all(&resp).await;
    let _ = sock.shutdown().await;
}

/// Runs `get -r` of `folder` into `sandbox/out`; checks that only `expected` files exist in
/// the whole sandbox, that no trap was requested, and that /etc/x was not created.
async fn get_r_stays_inside(folder: &str, expected: &[&str]) -> std::process::Output {
    let srv = Hostile::start().await;
    let sandbox = tempfile::tempdir().unwrap();
    let out = sandbox.path().join("out");
    let args = [
        "get",
        "-r",
        "-x",
        "1",
        "-d",
        path_arg(&out),
        &srv.url(folder),
    ];
    let run = ferry(&args, &sandbox.path().join("data")).await;
    let mut found = files_below(sandbox.path());
    found.retain(|f| !f.starts_with("data/"));
    assert_eq!(found, expected, "{}", stderr(&run));
    let asked = srv.requested();
    for trap in TRAPS {
        assert!(
            !asked.iter().any(|p| p == trap),
            "requested {trap}: {asked:?}"
        );
    }
    assert!(!std::path::Path::new("/etc/x").exists());
    run
}

#[tokio::test]
async fn hostile_html_listing_cannot_write_outside_the_output_dir() {
    let run = get_r_stays_inside("/pub/", &["out/pub/ok.txt", "out/pub/sub/inner.txt"]).await;
    // The encoded separators were refused, and said so: they count as failures.
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(
        err.contains("not followed") && err.contains("..%2fx"),
        "{err}"
    );
    assert!(
        err.contains("2 files,") && err.contains(", 2 failed"),
        "{err}"
    );
}

#[tokio::test]
async fn hostile_json_listing_cannot_write_outside_the_output_dir() {
    let run = get_r_stays_inside("/json/", &["out/json/ok.txt"]).await;
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("1 file,"), "{}", stderr(&run));
}

#[tokio::test]
async fn one_missing_file_fails_alone_with_the_summary_and_exit_1() {
    let run = get_r_stays_inside("/mixed/", &["out/mixed/ok.txt"]).await;
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    let err = stderr(&run);
    assert!(err.contains("missing.bin") && err.contains("404"), "{err}");
    assert!(
        err.contains("ferry get: 1 file,") && err.contains(", 1 failed"),
        "{err}"
    );
}
