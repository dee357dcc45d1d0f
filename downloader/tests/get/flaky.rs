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
