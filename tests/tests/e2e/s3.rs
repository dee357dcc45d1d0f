//! What only the S3 store has to show (the download suite itself runs on both stores, see
//! `files::s3::…`): ferryd asks S3 for the bytes a response sends and no more.

use std::sync::{Arc, Mutex};

use ferry_tests::{client, pattern, Backend, TestServer};
use ferryd::app::StoreConfig;
use ferryd::server::ServerOptions;
use ferryd::store::fs::FsOptions;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A TCP proxy in front of the S3 server that keeps every request head ferryd sends.
async fn recording_proxy(upstream: &str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let up = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut down_r, mut down_w) = down.into_split();
            let (mut up_r, mut up_w) = up.into_split();
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = down_r.read(&mut buf).await {
                    if n == 0 || up_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    keep.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
            });
        }
    });
    (url, seen)
}

/// The `Range` of every GET ferryd sent for `key` (`None` for a GET without one).
fn gets_of(seen: &[u8], key: &str) -> Vec<Option<String>> {
    let text = String::from_utf8_lossy(seen);
    text.split("\r\n\r\n")
        .filter(|head| {
            let line = head.lines().next().unwrap_or("");
            line.starts_with("GET ") && line.contains(key)
        })
        .map(|head| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("range").then(|| v.trim().to_owned())
            })
        })
        .collect()
}

// Issue 11 point 2: a ranged read asks S3 for that range only (RFC 9110 §14.2 on the way to
// S3 as on the way out), multipart ranges one GET each, a HEAD reads nothing.
#[tokio::test]
async fn ranged_downloads_ask_s3_for_those_bytes_only() {
    let Some(endpoint) = ferry_tests::s3::endpoint() else {
        return;
    };
    let (proxy, seen) = recording_proxy(endpoint).await;
    let config = move |c: &mut ferryd::app::Config, _| {
        if let StoreConfig::S3(o) = &mut c.store {
            o.endpoint = Some(proxy);
        }
    };
    let srv = TestServer::launch_on(
        Backend::S3,
        FsOptions::default(),
        ServerOptions::default(),
        config,
        |app, _| app,
    )
    .await;
    let data = pattern(1 << 20, 3);
    srv.put_file("big.bin", &data);
    let c = client();
    let get = |range: &'static str| c.get(srv.url("/big.bin")).header("range", range).send();
    let resp = get("bytes=1000-1999").await.unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap(), &data[1000..2000]);
    let resp = get("bytes=0-9,500000-500009").await.unwrap();
    assert_eq!(resp.status(), 206);
    let _ = resp.bytes().await.unwrap();
    let resp = c.head(srv.url("/big.bin")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut got = gets_of(&seen.lock().unwrap(), "big.bin");
    got.sort();
    assert_eq!(
        got,
        [
            Some("bytes=0-9".to_owned()),
            Some("bytes=1000-1999".to_owned()),
            Some("bytes=500000-500009".to_owned()),
        ]
    );
}
