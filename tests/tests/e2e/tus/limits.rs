//! Bounded state per server (issue 8 point 3): `--max-open-uploads` and
//! `--max-staged-bytes`, answered 503 + `Retry-After` (full for now) or 413 (can never fit),
//! with the counts rebuilt from the records after a restart.

use ferry_tests::TestServer;
use ferryd::store::fs::FsOptions;
use reqwest::Method;

use super::*;

fn limited(open: u64, staged: Option<u64>) -> TusConfig {
    TusConfig {
        max_open_uploads: open,
        max_staged_bytes: staged,
        ..cfg()
    }
}

async fn post(srv: &TestServer, len: u64) -> Response {
    tus(srv, Method::POST, "/files/")
        .header("upload-length", len.to_string())
        .header("upload-metadata", meta("f.bin"))
        .send()
        .await
        .unwrap()
}

/// Asserts a 503 with `Retry-After` whose reason names `flag`.
async fn assert_busy(r: Response, flag: &str) {
    assert_eq!(r.status(), 503);
    let retry: u64 = h(&r, "retry-after").parse().expect("Retry-After seconds");
    assert!(retry > 0);
    let text = r.text().await.unwrap();
    assert!(text.contains(flag), "{text}");
}

#[tokio::test]
async fn the_fourth_open_upload_is_503_until_one_finishes_or_is_terminated() {
    let (srv, _) = TestServer::start_tus(limited(3, None)).await;
    let a = create(&srv, 3, &meta("a.bin")).await;
    let b = create(&srv, 3, &meta("b.bin")).await;
    create(&srv, 3, &meta("c.bin")).await;
    assert_busy(post(&srv, 3).await, "--max-open-uploads").await;
    // Publishing one frees its room.
    assert_eq!(patch(&srv, &a, 0, b"abc").await.status(), 204);
    let d = create(&srv, 3, &meta("d.bin")).await;
    assert_busy(post(&srv, 3).await, "--max-open-uploads").await;
    // So does terminating one; a final upload counts as an open upload too.
    let del = tus(&srv, Method::DELETE, &b).send().await.unwrap();
    assert_eq!(del.status(), 204);
    create(&srv, 3, &meta("e.bin")).await;
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{d}"))
        .send()
        .await
        .unwrap();
    assert_busy(r, "--max-open-uploads").await;
}

#[tokio::test]
async fn a_length_past_the_staged_limit_is_413_and_a_full_staging_is_503() {
    let (srv, _) = TestServer::start_tus(limited(100, Some(10))).await;
    let r = post(&srv, 11).await;
    assert_eq!(r.status(), 413);
    assert!(r.text().await.unwrap().contains("--max-staged-bytes"));
    let a = create(&srv, 6, &meta("a.bin")).await;
    assert_busy(post(&srv, 5).await, "--max-staged-bytes").await;
    create(&srv, 4, &meta("b.bin")).await; // exactly at the limit
    assert_busy(post(&srv, 1).await, "--max-staged-bytes").await;
    assert_eq!(patch(&srv, &a, 0, b"abcdef").await.status(), 204);
    create(&srv, 6, &meta("c.bin")).await;
    // A deferred length counts once declared: 1 byte more than the room is 503.
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-defer-length", "1")
        .header("upload-metadata", meta("d.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let d = location(&srv, &r);
    let r = tus(&srv, Method::PATCH, &d)
        .header("content-type", OCTETS)
        .header("upload-offset", "0")
        .header("upload-length", "1")
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_busy(r, "--max-staged-bytes").await;
}

#[tokio::test]
async fn the_limits_hold_after_a_restart() {
    let (mut srv, tus1) = TestServer::start_tus(limited(2, Some(10))).await;
    create(&srv, 4, &meta("a.bin")).await;
    create(&srv, 4, &meta("b.bin")).await;
    drop(tus1);
    let state = std::mem::replace(&mut srv.state, tempfile::tempdir().unwrap());
    srv.stop().await;
    let fs = FsOptions {
        state_dir: Some(state.path().to_path_buf()),
        ..FsOptions::default()
    };
    let (srv, tus2) = TestServer::start_tus_with(fs, limited(3, Some(10))).await;
    // Two open uploads of 4 bytes each are in the records: 3 more bytes do not fit.
    assert_busy(post(&srv, 3).await, "--max-staged-bytes").await;
    create(&srv, 2, &meta("c.bin")).await;
    assert_busy(post(&srv, 0).await, "--max-open-uploads").await;
    assert_eq!(tus2.counts(), (3, 10));
}

#[tokio::test]
async fn an_upload_held_past_the_lock_timeout_is_503_with_a_short_retry_after() {
    // Regression: a request that found its upload held past `--upload-lock-timeout` (by a
    // PATCH that does not let go, or a publish in progress) got the server-wide limits'
    // `Retry-After: 60`, so `ferry put` waited a minute for what is over in seconds.
    let (srv, _) = TestServer::start_tus(TusConfig {
        lock_timeout: Duration::ZERO,
        ..cfg()
    })
    .await;
    let loc = create(&srv, 1000, &meta("held.bin")).await;
    let head_text = format!(
        "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: {OCTETS}\r\nUpload-Offset: 0\r\nContent-Length: 1000\r\n\r\n"
    );
    let mut holder = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    holder.write_all(head_text.as_bytes()).await.unwrap();
    holder.write_all(&[7u8; 100]).await.unwrap();
    // Until the holder's PATCH has the lock, a PATCH at a wrong offset is a harmless 409.
    let mut got = None;
    for _ in 0..250 {
        let r = patch(&srv, &loc, 999, b"x").await;
        if r.status() != 409 {
            got = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let r = got.expect("the holder's PATCH never took the upload");
    assert_eq!(r.status(), 503);
    assert_eq!(h(&r, "retry-after"), "1");
    let text = r.text().await.unwrap();
    assert!(text.contains("busy"), "{text}");
    drop(holder);
}
