//! `--metrics-listen`: Prometheus text on its own address; the counters move with traffic.

use std::sync::Arc;

use ferry_tests::{client, pattern};
use ferryd::metrics::{self, Metrics};
use ferryd::server::ServerOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{server, upload, TOKEN};

/// The value of the sample whose line starts with `series` (name and labels), 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

async fn scrape(addr: std::net::SocketAddr) -> String {
    let r = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    r.text().await.unwrap()
}

#[tokio::test]
async fn scrape_shows_requests_bytes_connections_and_upload_events() {
    let m = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maddr = listener.local_addr().unwrap();
    tokio::spawn(metrics::serve(listener, m.clone()));
    let mm = m.clone();
    let srv = server(ServerOptions::default(), move |app| {
        app.tus.as_ref().unwrap().events.subscribe(mm.clone());
        app.observe.metrics = Some(mm);
    })
    .await;
    assert_ne!(maddr, srv.addr, "metrics are not on the public port");
    srv.put_file("big.bin", &pattern(32 << 20, 3));
    let before = scrape(maddr).await;

    let r = client()
        .get(srv.url("/big.bin"))
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().len(), 100);
    assert_eq!(
        client()
            .get(srv.url("/nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let loc = upload(&srv, "m.bin", &pattern(3000, 4)).await;
    let loc2 = {
        let r = client()
            .post(srv.url("/files/"))
            .header("tus-resumable", "1.0.0")
            .bearer_auth(TOKEN)
            .header("upload-length", "10")
            .send()
            .await
            .unwrap();
        r.headers()["location"].to_str().unwrap().to_string()
    };
    let r = client()
        .delete(&loc2) // absolute (issue 8)
        .header("tus-resumable", "1.0.0")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    // A download held open: one connection and one response in flight.
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(b"GET /big.bin HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let _ = s.read(&mut buf).await.unwrap();
    let during = scrape(maddr).await;
    drop(s);
    let _ = loc;

    let d = |series: &str| sample(&during, series) - sample(&before, series);
    assert_eq!(
        d("ferryd_http_requests_total{method=\"GET\",status=\"2xx\"}"),
        1.0,
        "{during}"
    );
    assert_eq!(
        d("ferryd_http_requests_total{method=\"GET\",status=\"4xx\"}"),
        1.0
    );
    assert_eq!(
        d("ferryd_http_requests_total{method=\"PATCH\",status=\"2xx\"}"),
        1.0
    );
    assert_eq!(
        d("ferryd_http_requests_total{method=\"POST\",status=\"2xx\"}"),
        2.0
    );
    assert!(d("ferryd_http_sent_bytes_total") >= 100.0);
    assert_eq!(d("ferryd_http_received_bytes_total"), 3000.0);
    assert_eq!(d("ferryd_uploads_total{event=\"created\"}"), 2.0);
    assert_eq!(d("ferryd_uploads_total{event=\"finished\"}"), 1.0);
    assert_eq!(d("ferryd_uploads_total{event=\"terminated\"}"), 1.0);
    assert_eq!(sample(&during, "ferryd_http_responses_in_flight"), 1.0);
    assert!(
        sample(&during, "ferryd_connections_active") >= 1.0,
        "{during}"
    );
    // Once the client is gone, nothing stays in flight.
    let idle = ferry_tests::poll(|| async {
        let t = scrape(maddr).await;
        (sample(&t, "ferryd_http_responses_in_flight") == 0.0).then_some(t)
    })
    .await;
    assert!(idle.is_some(), "a dropped download stayed in flight");
}

/// Scrapes until `done` holds for the text (every 20 ms, at most `secs`); the last text.
async fn scrape_until(
    addr: std::net::SocketAddr,
    secs: u64,
    mut done: impl FnMut(&str) -> bool,
) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let t = scrape(addr).await;
        if done(&t) || std::time::Instant::now() > deadline {
            return t;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Issue 14 point 2: the content indexer's progress (files indexed and pending, bytes hashed,
/// scans, cache saves) is in the metrics and moves as it works.
#[tokio::test]
async fn scrape_shows_the_content_indexer_progress() {
    use ferryd::index::IndexOptions;
    use ferryd::store::fs::FsOptions;
    let m = Arc::new(Metrics::new());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let maddr = listener.local_addr().unwrap();
    tokio::spawn(metrics::serve(listener, m.clone()));
    let fs = FsOptions {
        // Slow enough that the files wait their turn; rescans often enough to count.
        index: Some(IndexOptions {
            rate: Some(2 << 20),
            rescan: std::time::Duration::from_secs(1),
        }),
        ..FsOptions::default()
    };
    let mm = m.clone();
    let srv = ferry_tests::TestServer::start_with(fs, ServerOptions::default(), move |app| {
        mm.watch_index(app.store.clone());
        app
    })
    .await;
    let ready = scrape_until(maddr, 20, |t| sample(t, "ferryd_index_ready") == 1.0).await;
    assert_eq!(sample(&ready, "ferryd_index_ready"), 1.0, "{ready}");
    let before = scrape(maddr).await;
    assert_eq!(sample(&before, "ferryd_index_files"), 0.0, "{before}");

    for i in 0..4 {
        srv.put_file(&format!("f{i}.bin"), &pattern(1 << 20, i));
    }
    let busy = scrape_until(maddr, 10, |t| sample(t, "ferryd_index_pending_files") > 0.0).await;
    assert!(
        sample(&busy, "ferryd_index_pending_files") > 0.0,
        "no file was ever pending: {busy}"
    );
    let base = |series: &str| sample(&before, series);
    let after = scrape_until(maddr, 30, |t| {
        sample(t, "ferryd_index_files") == 4.0
            && sample(t, "ferryd_index_pending_files") == 0.0
            && sample(t, "ferryd_index_scans_total") > base("ferryd_index_scans_total")
            && sample(t, "ferryd_index_cache_saves_total") > base("ferryd_index_cache_saves_total")
    })
    .await;
    let d = |series: &str| sample(&after, series) - base(series);
    assert_eq!(sample(&after, "ferryd_index_files"), 4.0, "{after}");
    assert_eq!(sample(&after, "ferryd_index_pending_files"), 0.0, "{after}");
    assert_eq!(d("ferryd_index_hashed_files_total"), 4.0, "{after}");
    // At least: a hash cut short by a change counts what it read.
    assert!(
        d("ferryd_index_hashed_bytes_total") >= 4.0 * 1048576.0,
        "{after}"
    );
    assert!(d("ferryd_index_scans_total") >= 1.0, "{after}");
    assert!(d("ferryd_index_cache_saves_total") >= 1.0, "{after}");
}
