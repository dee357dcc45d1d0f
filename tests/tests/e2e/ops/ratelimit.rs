//! `--limit-rate`, `--limit-rate-after` and `--max-connections-per-ip`.

use std::time::{Duration, Instant};

use ferry_tests::{pattern, raw, tool};
use ferryd::ratelimit::{PerIp, RateLimit};
use ferryd::server::ServerOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::server;

/// curl downloads ~3 s worth at 1 MiB/s after 256 KiB free: the measured rate of the limited
/// part is within 5% above the cap (never more) and not far below it (a loaded machine may
/// be slow, so 20% under is tolerated).
#[tokio::test]
async fn curl_download_holds_the_rate_cap() {
    let Some(curl) = tool("curl") else { return };
    const RATE: u64 = 1 << 20;
    const AFTER: u64 = 256 << 10;
    let srv = server(ServerOptions::default(), |app| {
        app.observe.limit_rate = Some(RateLimit {
            rate: RATE,
            after: AFTER,
        });
    })
    .await;
    let len = AFTER + 3 * RATE;
    srv.put_file("r.bin", &pattern(len as usize, 5));
    let url = srv.url("/r.bin");
    let start = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new(curl)
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{size_download} %{time_total}",
                &url,
            ])
            .output()
    })
    .await
    .unwrap()
    .unwrap();
    let wall = start.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split(' ');
    let size: u64 = it.next().unwrap().parse().unwrap();
    let secs: f64 = it.next().unwrap().parse().unwrap();
    assert_eq!(size, len, "{text}");
    // The free part takes (almost) no time, so the limited part's rate is bounded by:
    let rate = (len - AFTER) as f64 / secs;
    eprintln!("limited rate {rate:.0} B/s over {secs:.2} s (wall {wall:.2} s), cap {RATE}");
    assert!(rate <= RATE as f64 * 1.05, "cap exceeded: {rate:.0} B/s");
    assert!(
        rate >= RATE as f64 * 0.80,
        "far below the cap: {rate:.0} B/s"
    );
}

#[tokio::test]
async fn connections_beyond_the_per_ip_limit_get_429_with_retry_after() {
    let srv = server(ServerOptions::default(), |app| {
        app.observe.per_ip = Some(PerIp::new(1));
    })
    .await;
    srv.put_file("a.txt", b"hello");
    // The first connection is served and kept open (keep-alive).
    let mut first = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    first
        .write_all(b"GET /a.txt HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = first.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // A second one from the same address is refused, and told when to come back.
    let req = b"GET /a.txt HTTP/1.1\r\nhost: x\r\n\r\n";
    let r = raw(srv.addr, req, Duration::from_secs(5)).await;
    assert_eq!(r.status, 429, "{}", r.head);
    let head = r.head.to_ascii_lowercase();
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    // Once the first closes, the address may connect again.
    drop(first);
    let ok = ferry_tests::poll(|| async {
        let r = raw(srv.addr, req, Duration::from_secs(5)).await;
        (r.status == 200).then_some(())
    })
    .await;
    assert!(
        ok.is_some(),
        "slot not freed after the first connection closed"
    );
}
