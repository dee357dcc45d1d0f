//! Bodies and checksums that are malformed, as opposed to cut short (issue 8 point 7): a PATCH
//! whose chunked framing is broken is a 400 and keeps nothing of that body, while a client that
//! goes away mid-body still keeps what arrived; an `Upload-Checksum` digest of the wrong length
//! is a 400, never a 460 that makes clients resend the chunk forever.

use std::time::Duration;

use ferry_tests::{poll, RawResponse};
use reqwest::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

fn patch_head(loc: &str, extra: &str) -> String {
    format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {OCTETS}\r\nUpload-Offset: 0\r\nTransfer-Encoding: chunked\r\n{extra}\r\n"
    )
}

/// Sends `head`, then `valid` and, a moment later (so the server has received, written and
/// possibly checkpointed it), `broken`; returns the answer.
async fn send_in_two(srv: &TestServer, head: &str, valid: &[u8], broken: &[u8]) -> RawResponse {
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(valid).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await; // past a once-a-second checkpoint
    s.write_all(broken).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    RawResponse::parse(&out)
}

// Issue 8: a malformed chunked body used to count as a disconnect: 204 was never sent, but
// everything before the broken framing was checkpointed as if the client had sent it.
#[tokio::test]
async fn malformed_chunked_patch_is_400_and_keeps_nothing_of_that_body() {
    let (srv, _) = server().await;
    let chunk = vec![b'a'; 300 << 10]; // more than one positional write
    let mut valid = format!("{:x}\r\n", chunk.len()).into_bytes();
    valid.extend_from_slice(&chunk);
    valid.extend_from_slice(b"\r\n");
    for broken in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],             // chunk size not hex
        b"5\r\nhelloXX0\r\n\r\n",                     // no CRLF after the chunk data
        b"fffffffffffffffffff\r\nhello\r\n0\r\n\r\n", // chunk size overflows
    ] {
        let loc = create(&srv, 1 << 20, &meta("broken.bin")).await;
        let reply = send_in_two(&srv, &patch_head(&loc, ""), &valid, broken).await;
        assert_eq!(reply.status, 400, "{}", reply.head);
        assert!(
            String::from_utf8_lossy(&reply.body).contains("malformed"),
            "the answer says why: {:?}",
            String::from_utf8_lossy(&reply.body)
        );
        let hd = head(&srv, &loc).await;
        assert_eq!(
            h(&hd, "upload-offset"),
            "0",
            "nothing of the broken body counts"
        );
        // The upload goes on from 0.
        assert_eq!(patch(&srv, &loc, 0, b"fresh").await.status(), 204);
        assert_eq!(h(&head(&srv, &loc).await, "upload-offset"), "5");
    }
}

// The other side of the line: a body that is cut short (the client went away) is not
// malformed; what arrived is kept, as before.
#[tokio::test]
async fn chunked_patch_cut_short_keeps_what_arrived() {
    let (srv, _) = server().await;
    let loc = create(&srv, 100, &meta("cut.bin")).await;
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(patch_head(&loc, "").as_bytes()).await.unwrap();
    s.write_all(b"5\r\nhello\r\n3\r\nwo").await.unwrap();
    s.flush().await.unwrap();
    s.shutdown().await.unwrap(); // half-close mid-chunk
    let mut sink = Vec::new();
    let _ = s.read_to_end(&mut sink).await;
    let offset = poll(|| async {
        let o = h(&head(&srv, &loc).await, "upload-offset");
        (o == "7").then_some(o)
    })
    .await;
    assert_eq!(offset.as_deref(), Some("7"), "hello + wo kept");
}

// Issue 8: a digest whose length does not fit its algorithm can never match; it was a 460
// (clients resend on 460, forever). Now 400 with the reason, as a header and as a trailer.
#[tokio::test]
async fn upload_checksum_of_the_wrong_length_is_400_not_460() {
    let (srv, _) = server().await;
    let loc = create(&srv, 5, &meta("len.txt")).await;
    for sum in [
        "md5 AAAA",
        "sha1 XUFAKrxLKna5cZ2REBfFkg==",
        "crc32 qvTGHdzF6KLavt4PO0gs2a6pQ00=",
    ] {
        let r = tus(&srv, Method::PATCH, &loc)
            .header("content-type", OCTETS)
            .header("upload-offset", "0")
            .header("upload-checksum", sum)
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{sum}");
        assert!(r.text().await.unwrap().contains("-byte"), "{sum}");
    }
    let reply = raw(
        &srv,
        &patch_head(&loc, "Trailer: Upload-Checksum\r\nConnection: close\r\n"),
        b"5\r\nhello\r\n0\r\nUpload-Checksum: sha256 NhCmhg==\r\n\r\n",
    )
    .await;
    assert!(reply.starts_with("HTTP/1.1 400"), "{reply}");
    assert_eq!(h(&head(&srv, &loc).await, "upload-offset"), "0");
    // A digest of the right length that does not match stays a 460.
    let r = tus(&srv, Method::PATCH, &loc)
        .header("content-type", OCTETS)
        .header("upload-offset", "0")
        .header("upload-checksum", "md5 AAAAAAAAAAAAAAAAAAAAAA==")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 460);
}
