//! A served file changing under ferryd (issue 13, point 2): a rewrite in place gets a new
//! strong ETag before any byte of the new content is served under the old one; a file
//! replaced while a response streams keeps streaming the old version; a file truncated while
//! it streams ends the response early, with no byte that was not in the file. The open-file
//! cache sits in the middle of all three, so each runs with it warm. A file deleted after it
//! was served is closed without waiting for another request.

use std::collections::HashMap;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::time::{Duration, Instant};

use ferry_tests::{client, pattern, TestServer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A GET on a connection with a small receive buffer, so that the server can only be a little
/// ahead of what the test has read. Returns the stream after the response head.
async fn slow_get(srv: &TestServer, path: &str) -> (tokio::net::TcpStream, Vec<u8>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_recv_buffer_size(64 * 1024).unwrap();
    let mut s = sock.connect(srv.addr).await.unwrap();
    let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let mut b = [0u8; 1024];
        let n = s.read(&mut b).await.unwrap();
        assert!(n > 0, "closed before the head");
        buf.extend_from_slice(&b[..n]);
    }
    let at = buf.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let body = buf.split_off(at);
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&buf)
    );
    (s, body)
}

/// Reads until `body` holds `n` bytes, the server closes or resets, or 20 s pass.
async fn read_to(s: &mut tokio::net::TcpStream, body: &mut Vec<u8>, n: usize) {
    let mut b = vec![0u8; 64 * 1024];
    while body.len() < n {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut b)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(got)) => body.extend_from_slice(&b[..got]),
            Err(_) => panic!("stalled at {} of {n} bytes", body.len()),
        }
    }
}

#[tokio::test]
async fn rewrite_in_place_gets_a_new_etag_before_its_bytes_are_served() {
    // The open-file cache keeps the descriptor: a rewrite in place (same size, same inode, no
    // pause) is visible to its `pread` at once, so the cache must have dropped the entry by
    // the next request, or the new bytes go out under the old strong ETag. (With the event
    // queue not read at each lookup, this failed at round 1: new body, old ETag.)
    let srv = TestServer::start().await;
    const LEN: usize = 64 * 1024;
    let path = srv.put_file("f.bin", &pattern(LEN, 0));
    let writer = std::fs::File::options().write(true).open(&path).unwrap();
    let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
    let c = client();
    for round in 0..200u64 {
        let data = pattern(LEN, round + 1);
        writer.write_all_at(&data, 0).unwrap();
        let whole = round % 10 == 0;
        let mut req = c.get(srv.url("/f.bin"));
        if !whole {
            req = req.header("range", "bytes=4096-8191");
        }
        let resp = req.send().await.unwrap();
        let etag = resp.headers()["etag"].to_str().unwrap().to_string();
        let body = resp.bytes().await.unwrap().to_vec();
        let want = if whole { &data[..] } else { &data[4096..8192] };
        assert!(body == want, "round {round}: not the content just written");
        // One strong ETag, one content (RFC 9110 §8.8.1): compare what both bodies cover.
        let full = seen.entry(etag.clone()).or_insert_with(|| data.clone());
        assert!(
            *full == data,
            "round {round}: new bytes served under the old ETag {etag}"
        );
    }
}

#[tokio::test]
async fn a_file_replaced_while_it_streams_keeps_streaming_the_old_version() {
    let srv = TestServer::start().await;
    const LEN: usize = 32 << 20;
    let old = pattern(LEN, 1);
    let path = srv.put_file("f.bin", &old);
    // Warm the open-file cache, so the response streams from the cached descriptor.
    let r = client().get(srv.url("/f.bin")).header("range", "bytes=0-0");
    assert_eq!(r.send().await.unwrap().status(), 206);
    let (mut s, mut body) = slow_get(&srv, "/f.bin").await;
    read_to(&mut s, &mut body, 1 << 20).await;
    let new = pattern(LEN, 2);
    let tmp = srv.put_file("new.tmp", &new);
    std::fs::rename(&tmp, &path).unwrap();
    read_to(&mut s, &mut body, LEN).await;
    assert_eq!(body.len(), LEN, "the old version streamed to its end");
    assert!(body == old, "every byte from the old version");
    let resp = client().get(srv.url("/f.bin")).send().await.unwrap();
    assert!(
        resp.bytes().await.unwrap() == new,
        "the next GET has the new one"
    );
}

#[tokio::test]
async fn a_file_truncated_while_it_streams_ends_the_response_with_only_its_bytes() {
    let srv = TestServer::start().await;
    const LEN: usize = 32 << 20;
    let old = pattern(LEN, 3);
    let path = srv.put_file("f.bin", &old);
    let r = client().get(srv.url("/f.bin")).header("range", "bytes=0-0");
    assert_eq!(r.send().await.unwrap().status(), 206);
    let (mut s, mut body) = slow_get(&srv, "/f.bin").await;
    read_to(&mut s, &mut body, 1 << 20).await;
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    read_to(&mut s, &mut body, LEN).await;
    // What was read before the truncation may have been sent; nothing else, and the response
    // ends short of its Content-Length, so no client takes it for the whole file.
    assert!(
        body.len() < LEN,
        "a truncated file cannot fill its announced length"
    );
    assert!(
        body == old[..body.len()],
        "only bytes that were in the file"
    );
    // The server lives on and serves the shorter file under a new ETag.
    let resp = client().get(srv.url("/f.bin")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap() == old[..1 << 20]);
}

/// How many descriptors this process (ferryd runs in it) holds on the file that was at `path`.
fn descriptors_on(path: &Path) -> usize {
    let deleted = format!("{} (deleted)", path.display());
    (std::fs::read_dir("/proc/self/fd").unwrap().flatten())
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter(|to| to == path || to.as_os_str() == deleted.as_str())
        .count()
}

// The review of #13: an open-file cache applied a deletion only at its next lookup, so a
// worker that served a file and then no more requests kept it open, its space not freed.
#[tokio::test]
async fn a_deleted_file_is_closed_without_another_request() {
    let srv = TestServer::start().await;
    let path = srv.put_file("gone.bin", &pattern(1 << 20, 4));
    let path = path.canonicalize().unwrap();
    let r = client()
        .get(srv.url("/gone.bin"))
        .header("range", "bytes=0-4095");
    let resp = r.send().await.unwrap();
    assert_eq!(resp.status(), 206);
    assert!(resp.bytes().await.unwrap() == pattern(1 << 20, 4)[..4096]);
    assert!(descriptors_on(&path) >= 1, "kept open by the cache");
    std::fs::remove_file(&path).unwrap();
    // A sweep a second closes it; the bound is for a loaded machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    while descriptors_on(&path) > 0 {
        assert!(
            Instant::now() < deadline,
            "still open 30 s after it was deleted"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
