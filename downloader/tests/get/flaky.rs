//! Issue 15, a flaky network: a connection that delivered bytes reconnects at once, and a
//! silent connection at the tail does not hold the download until `--timeout`.
//!
//! Real HTTP on loopback, so real time (tokio's paused clock would fire the stall timeouts
//! while the runtime waits on sockets); the bounds are a factor of ten or more away from what
//! the old behaviour takes, so a loaded machine cannot make them flake.

use std::fs;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use crate::support::*;

/// Regression for issue 15 §1: after a cut that followed progress, ferry waited a jittered
/// backoff (here it would be 10–20 s) before reconnecting, as if the server had failed.
#[tokio::test]
async fn a_cut_after_progress_is_followed_by_the_next_request_at_once() {
    let data = random_bytes(2 << 20, 40);
    let server = Server::start(data.clone()).await;
    server.drop_after.store(100_000, SeqCst);
    server.drops_left.store(6, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "cut");
    opts.worker.backoff = ferry::retry::Backoff::new(Duration::from_secs(20));
    let started = Instant::now();
    let path = tokio::time::timeout(
        Duration::from_secs(60),
        download(&server.url("/cut"), &opts),
    )
    .await
    .expect("no 20 s backoff after a cut")
    .unwrap();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
    let drops = server.dropped_at.lock().unwrap().clone();
    assert_eq!(drops.len(), 6, "the server cut six responses");
    let gets: Vec<Instant> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::GET)
        .map(|r| r.at)
        .collect();
    for cut in drops {
        let next = gets.iter().filter(|at| **at >= cut).min();
        let gap = next.map(|at| at.duration_since(cut));
        assert!(
            gap.is_some_and(|g| g < Duration::from_secs(2)),
            "a request followed the cut after {gap:?}"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
}

/// Regression for issue 15 §3: the last segment sat on a connection that went silent until
/// `--timeout` (30 s here) fired, because straggler replacement needs other busy connections
/// to compare with and at the tail there are none. Now an idle connection races it.
#[tokio::test]
async fn a_connection_silent_near_the_end_does_not_hold_the_download() {
    let len = 4 << 20;
    let data = random_bytes(len, 41);
    let server = Server::start(data.clone()).await;
    server.rate.store(4 << 20, SeqCst);
    server.hang_at.store(len as u64 - 100_000, SeqCst);
    server.hangs_left.store(1, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "tail");
    opts.worker.timeout = Duration::from_secs(30);
    let started = Instant::now();
    let path = tokio::time::timeout(
        Duration::from_secs(60),
        download(&server.url("/tail"), &opts),
    )
    .await
    .expect("finished before twice the stall timeout")
    .unwrap();
    let took = started.elapsed();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
    assert_eq!(server.hangs_left.load(SeqCst), 0, "a response did hang");
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} (timeout 30 s)"
    );
}

/// One connection in three never sends a byte (a silent proxy connection); with a 30 s
/// timeout the download still finishes in seconds, every byte right.
#[tokio::test]
async fn connections_silent_from_the_start_are_raced_not_waited_for() {
    let data = random_bytes(2 << 20, 42);
    let server = Server::start(data.clone()).await;
    server.rate.store(4 << 20, SeqCst);
    server.slow_every.store(3, SeqCst);
    server.slow_rate.store(1, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "silent");
    opts.worker.timeout = Duration::from_secs(30);
    let started = Instant::now();
    let path = tokio::time::timeout(
        Duration::from_secs(60),
        download(&server.url("/silent"), &opts),
    )
    .await
    .expect("finished before twice the stall timeout")
    .unwrap();
    let took = started.elapsed();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} (timeout 30 s)"
    );
}

/// The probe's own connection is silent (as the first connection through the bench's proxy
/// can be): a second probe after a second, not the whole `--timeout`, gets the download going.
#[tokio::test]
async fn a_silent_probe_connection_costs_a_second_not_the_timeout() {
    let data = random_bytes(512 * 1024, 43);
    let server = Server::start(data.clone()).await;
    server.silent_first.store(1, SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "probe");
    opts.worker.timeout = Duration::from_secs(30);
    let started = Instant::now();
    let path = tokio::time::timeout(
        Duration::from_secs(60),
        download(&server.url("/probe"), &opts),
    )
    .await
    .expect("finished before twice the timeout")
    .unwrap();
    let took = started.elapsed();
    assert_eq!(sha256(&fs::read(path).unwrap()), sha256(&data));
    assert!(
        took < Duration::from_secs(5),
        "took {took:?} (timeout 30 s)"
    );
}
