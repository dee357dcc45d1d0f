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
