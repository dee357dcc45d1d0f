//! A ferryd killed (SIGKILL) during a slow PATCH keeps what it received up to about a second
//! before: checkpoints come on time as well as every 64 MiB (issue 8, point 4).

use std::time::{Duration, Instant};

use ferry_proto::tus::encode_metadata;
use ferry_tests::{client, pattern};
use tokio::io::AsyncWriteExt as _;

use super::interop::{Proc, TOKEN};

/// Bytes per write and time between writes: 160 KiB/s, far from any size-based checkpoint.
const PIECE: usize = 16 << 10;
const PAUSE: Duration = Duration::from_millis(100);

/// The upload's offset as a (restarted) server reports it.
async fn offset(srv: &Proc, loc: &str) -> u64 {
    let head = client()
        .head(srv.url(loc))
        .header("tus-resumable", "1.0.0")
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    head.headers()["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

/// Streams `data[from..]` slowly in one PATCH for `run`, and returns, for every write, when
/// it was sent and the offset after it. The connection stays open (the body unfinished).
async fn stream_slowly(
    srv: &Proc,
    loc: &str,
    data: &[u8],
    from: usize,
    run: Duration,
) -> (tokio::net::TcpStream, Vec<(Instant, u64)>) {
    let addr = srv.url("").trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/offset+octet-stream\r\nUpload-Offset: {from}\r\n\
         Content-Length: {}\r\n\r\n",
        data.len() - from
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    let (started, mut sent, mut at) = (Instant::now(), Vec::new(), from);
    while started.elapsed() < run {
        sock.write_all(&data[at..at + PIECE]).await.unwrap();
        at += PIECE;
        sent.push((Instant::now(), at as u64));
        tokio::time::sleep(PAUSE).await;
    }
    (sock, sent)
}

#[tokio::test]
async fn sigkill_during_a_slow_patch_keeps_all_but_about_the_last_second() {
    // Regression (issue 8, point 4): checkpoints came every 64 MiB or at the end of a PATCH,
    // so a server killed during a slow PATCH came back at the offset it had before it, and a
    // crash loop kept the upload at offset 0 for ever.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = tempfile::tempdir().unwrap();
    let data = pattern(4 << 20, 31);
    let mut srv = Proc::start(root.path());
    let created = client()
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .bearer_auth(TOKEN)
        .header("upload-length", data.len().to_string())
        .header(
            "upload-metadata",
            encode_metadata([("filename", Some(&b"slow.bin"[..]))]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let loc = created.headers()["location"].to_str().unwrap().to_string();
    let loc = format!("/files/{}", loc.rsplit('/').next().unwrap());
    let mut durable = 0;
    for round in 0..3 {
        let (sock, sent) = stream_slowly(
            &srv,
            &loc,
            &data,
            durable as usize,
            Duration::from_millis(3500),
        )
        .await;
        let killed_at = Instant::now();
        drop(srv); // SIGKILL, mid-body
        drop(sock);
        srv = Proc::start(root.path());
        let now = offset(&srv, &loc).await;
        // About a second, plus room for a loaded machine's fsync: what was sent two seconds
        // before the kill is on disk.
        let floor = sent
            .iter()
            .take_while(|(t, _)| *t + Duration::from_secs(2) <= killed_at)
            .last()
            .map_or(0, |(_, n)| *n);
        let received = sent.last().unwrap().1;
        assert!(
            now >= floor && now <= received,
            "round {round}: offset {now} after the kill, expected {floor}..={received}"
        );
        assert!(now > durable, "round {round}: no progress past {durable}");
        durable = now;
    }
}
