//! Misbehaving servers: dropped connections, ignored Range, wrong Content-Range, a file that
//! changes, 429/503 with Retry-After, a slow connection, no Content-Length.

use std::fs;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use ferry::get::output::Target;

use crate::support::*;

#[tokio::test]
async fn connections_dropped_mid_body_are_retried() {
    let data = random_bytes(2 << 20, 10);
    let server = Server::start(data.clone()).await;
    server.drop_after.store(100_000, SeqCst);
    server.drops_left.store(6, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let path = download(&server.url("/d"), &fast_options(dir.path(), "d"))
        .await
        .unwrap();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
    assert_eq!(
        server.drops_left.load(SeqCst),
        0,
        "the server did drop six responses"
    );
}

#[tokio::test]
async fn server_ignoring_range_is_downloaded_on_one_connection() {
    let data = random_bytes(1 << 20, 11);
    let server = Server::start(data.clone()).await;
    server.ignore_range.store(true, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let path = download(&server.url("/i"), &fast_options(dir.path(), "i"))
        .await
        .unwrap();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
    let last = server
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.method == http::Method::GET)
        .unwrap();
    assert_eq!(last.range, None, "the final fetch is a plain GET: {last:?}");
}

/// Bytes from a 206 whose Content-Range is not the range asked for are never written.
#[tokio::test]
async fn wrong_content_range_is_never_written() {
    let data = random_bytes(1 << 20, 12);
    let server = Server::start(data.clone()).await;
    server.wrong_content_range.store(3, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let path = download(&server.url("/w"), &fast_options(dir.path(), "w"))
        .await
        .unwrap();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
    assert_eq!(server.wrong_content_range.load(SeqCst), 0);
}

#[tokio::test]
async fn always_wrong_content_range_fails_without_a_final_file() {
    let server = Server::start(random_bytes(300_000, 13)).await;
    server.wrong_content_range.store(usize::MAX, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "w");
    opts.worker.max_tries = 2;
    let err = download(&server.url("/w"), &opts).await.unwrap_err();
    assert!(err.to_string().contains("expected Content-Range"), "{err}");
    assert!(!dir.path().join("w").exists());
}

/// Regression for the mixed-file bug measured in aria2 and `curl -C -`: the remote file
/// changes between runs with the same size and a new ETag.
#[tokio::test]
async fn file_changed_between_runs_starts_over() {
    let old = random_bytes(1 << 20, 14);
    let new = random_bytes(1 << 20, 15);
    let server = Server::start(old.clone()).await;
    server.drop_after.store(200_000, SeqCst);
    server.drops_left.store(usize::MAX, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "c");
    opts.worker.max_tries = 1;
    let err = download(&server.url("/c"), &opts).await.unwrap_err();
    let t = Target::for_path(dir.path().join("c"));
    assert!(!matches!(err, ferry::Error::Usage(_)), "{err}");
    assert!(t.journal.exists(), "the failed run keeps its journal");
    server.drops_left.store(0, SeqCst);
    server.set_data(new.clone(), "\"v2\"");
    opts.worker.max_tries = 3;
    let path = download(&server.url("/c"), &opts).await.unwrap();
    assert_eq!(
        sha256(&fs::read(path).unwrap()),
        sha256(&new),
        "no bytes of the old version"
    );
}

/// The file changes while the download runs: every response is cut part-way (and retried at
/// once, having made progress), the file is replaced after the first cuts, If-Range makes the
/// server answer 200 with the new ETag, and ferry starts over instead of mixing versions.
#[tokio::test]
async fn file_changed_during_download_starts_over() {
    let old = random_bytes(1 << 20, 16);
    let new = random_bytes(1 << 20, 17);
    let server = Server::start(old).await;
    server.rate.store(1 << 20, SeqCst);
    server.drop_after.store(64 * 1024, SeqCst);
    server.drops_left.store(usize::MAX, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "m");
    opts.worker.max_tries = 10;
    let url = server.url("/m");
    let task = tokio::spawn(async move { download(&url, &opts).await });
    while server.drops_left.load(SeqCst) > usize::MAX - 4 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.set_data(new.clone(), "\"v2\"");
    let path = task.await.unwrap().unwrap();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&new));
    let changed = server
        .requests()
        .iter()
        .any(|r| r.if_range.as_deref() == Some("\"v1\"") && r.status == 200);
    assert!(
        changed,
        "a retry carried the old validator and got the new file"
    );
}

#[tokio::test]
async fn retry_after_on_429_and_503_is_honoured() {
    let data = random_bytes(512 * 1024, 18);
    let server = Server::start(data.clone()).await;
    server.refusals.lock().unwrap().extend([
        (503, Some(1)),
        (429, Some(1)),
        (503, Some(1)),
        (429, Some(1)),
    ]);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let path = download(&server.url("/r"), &fast_options(dir.path(), "r"))
        .await
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), data);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited for Retry-After"
    );
    assert!(server.refusals.lock().unwrap().is_empty());
}

#[tokio::test]
async fn persistent_503_sheds_connections_then_fails_clearly() {
    let server = Server::start(random_bytes(512 * 1024, 19)).await;
    server
        .refusals
        .lock()
        .unwrap()
        .extend(std::iter::repeat_n((503, Some(0)), 1000));
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "s");
    opts.worker.max_tries = 3;
    let err = download(&server.url("/s"), &opts).await.unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    let gets = server
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::GET)
        .count();
    // 4 connections: 3 shed after one refusal each, the last tries 3 times.
    assert!(
        gets <= 4 + 3,
        "shed connections must not keep retrying, saw {gets} GETs"
    );
}

/// One connection in four is 40x slower; work stealing keeps it from holding the download.
#[tokio::test]
async fn a_slow_connection_does_not_hold_the_download() {
    let data = random_bytes(4 << 20, 20);
    let server = Server::start(data.clone()).await;
    server.rate.store(8 << 20, SeqCst);
    server.slow_every.store(4, SeqCst);
    server.slow_rate.store(200 << 10, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let path = download(&server.url("/t"), &fast_options(dir.path(), "t"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
    // Without stealing the slow connection's 1 MiB quarter alone takes 5 s.
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[tokio::test]
async fn no_content_length_downloads_on_one_connection() {
    let data = random_bytes(700_000, 21);
    let server = Server::start(data.clone()).await;
    server.no_length.store(true, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let path = download(&server.url("/n"), &fast_options(dir.path(), "n"))
        .await
        .unwrap();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
    let gets: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::GET)
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range, None);
}

#[tokio::test]
async fn not_found_is_a_clear_failure() {
    let server = Server::start(Vec::new()).await;
    server
        .refusals
        .lock()
        .unwrap()
        .extend([(404, None), (404, None)]);
    server.head_refused.store(true, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let err = download(&server.url("/missing"), &fast_options(dir.path(), "m"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("404"), "{err}");
}

/// A connection that stops sending is dropped after `--timeout` and its range requeued.
#[tokio::test]
async fn stalled_connections_are_dropped_and_requeued() {
    let data = random_bytes(1 << 20, 22);
    let server = Server::start(data.clone()).await;
    server.slow_every.store(3, SeqCst);
    server.slow_rate.store(1, SeqCst); // one byte a second: a stall
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "st");
    opts.worker.timeout = Duration::from_millis(300);
    opts.worker.max_tries = 10;
    let path = download(&server.url("/st"), &opts).await.unwrap();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
}
