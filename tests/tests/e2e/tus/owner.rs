//! Who may do what to an upload (issue 8 points 5 and 7): only an uploader interrupts a
//! running PATCH; with `--read-token` the upload token still lets an uploader HEAD (resume);
//! every 401, on files and uploads alike, carries `WWW-Authenticate: Bearer`.

use std::time::Duration;

use ferry_tests::{client, pattern, TestServer};
use reqwest::Method;

use super::*;

type Pending = tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>;
type Chunks = tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>;

/// A PATCH of `data` whose body is sent in pieces; returns the pending response and the
/// sender of the pieces.
fn patch_in_two(srv: &TestServer, loc: &str, data: &[u8]) -> (Pending, Chunks) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let req = tus(srv, Method::PATCH, loc)
        .header("content-type", OCTETS)
        .header("upload-offset", "0")
        .header("content-length", data.len().to_string())
        .body(reqwest::Body::wrap_stream(body))
        .send();
    (tokio::spawn(req), tx)
}

#[tokio::test]
async fn an_unauthenticated_head_never_interrupts_the_owners_patch() {
    // Regression: without --read-token a HEAD from anyone took the upload's lock, which
    // interrupts a streaming PATCH: the owner's PATCH stopped at what it had received.
    let (srv, _) = server().await;
    let data = pattern(100_000, 7);
    let loc = create(&srv, data.len() as u64, &meta("own.bin")).await;
    let (pending, tx) = patch_in_two(&srv, &loc, &data);
    tx.send(Ok(data[..40_000].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await; // let the bytes reach the server
    let stranger = client()
        .head(srv.url(&loc))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(stranger.status(), 200);
    let seen: u64 = h(&stranger, "upload-offset").parse().unwrap();
    assert!(seen <= 40_000, "the last checkpoint, got {seen}");
    tx.send(Ok(data[40_000..].to_vec())).await.unwrap();
    drop(tx);
    let done = pending.await.unwrap().unwrap();
    assert_eq!(
        (done.status().as_u16(), h(&done, "upload-offset")),
        (204, "100000".to_string()),
        "the owner's PATCH ran to its end"
    );
}

#[tokio::test]
async fn the_upload_token_may_head_uploads_when_reads_need_a_token() {
    // Regression: with --read-token, ferry put and tus clients (which hold only the upload
    // token) got 401 on HEAD and could never resume.
    let (srv, _) = TestServer::start_tus(TusConfig {
        read_token: Some("r".into()),
        ..cfg()
    })
    .await;
    let loc = create(&srv, 4, &meta("resume.txt")).await;
    assert_eq!(patch(&srv, &loc, 0, b"ab").await.status(), 204);
    let hd = head(&srv, &loc).await; // the upload token only
    assert_eq!(
        (hd.status().as_u16(), h(&hd, "upload-offset")),
        (200, "2".into())
    );
    assert_eq!(patch(&srv, &loc, 2, b"cd").await.status(), 204);
    // Downloading still needs the read token.
    let get = tus(&srv, Method::GET, &loc).send().await.unwrap();
    assert_eq!(get.status(), 401);
    let file = client()
        .get(srv.url("/resume.txt"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status(), 401);
}

#[tokio::test]
async fn every_401_carries_www_authenticate_bearer() {
    // RFC 9110 §11.6.1: a 401 must carry a challenge. Files had none.
    let (srv, _) = TestServer::start_tus(TusConfig {
        read_token: Some("r".into()),
        ..cfg()
    })
    .await;
    srv.put_file("f.txt", b"x");
    let loc = create(&srv, 1, &meta("x")).await;
    let answers = [
        client().get(srv.url("/f.txt")).send().await.unwrap(),
        client().head(srv.url("/")).send().await.unwrap(),
        client()
            .get(srv.url("/f.txt"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap(),
        client()
            .head(srv.url(&loc))
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap(),
        client()
            .post(srv.url("/files/"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "1")
            .send()
            .await
            .unwrap(),
    ];
    for r in answers {
        assert_eq!(r.status(), 401, "{}", r.url());
        assert_eq!(
            h(&r, "www-authenticate"),
            "Bearer realm=\"ferry\"",
            "{}",
            r.url()
        );
    }
}
