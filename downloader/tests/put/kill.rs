//! SIGKILL the real `ferry put` binary at random moments, then let a run finish: the server
//! must hold a byte-identical file.

use std::process::Stdio;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::support::{succeeded, Scratch};
use crate::tus_server::{Config, TusServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_loop_then_resume_is_byte_identical() {
    let server = TusServer::start(Config::full()).await;
    server.patch_delay_ms.store(30, Ordering::SeqCst);
    let s = Scratch::new(6 << 20, 21);
    let flags = ["-q", "-x", "3", "--chunk-size", "64K"];
    let mut rng = fastrand::Rng::with_seed(21);
    let mut kills = 0;
    for round in 0..12 {
        let mut child = s
            .command(&server.endpoint(), &flags)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        // Even rounds: a random moment from start (hashing, creation, saving the entry).
        // Odd rounds: a random moment after a random number of further PATCHes.
        let (at, patches) = if round % 2 == 0 {
            (Duration::from_millis(rng.u64(0..150)), 0)
        } else {
            (
                Duration::from_millis(rng.u64(0..20)),
                server.patches.load(Ordering::SeqCst) + rng.usize(1..8),
            )
        };
        let mut reached = None;
        while child.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(10) {
            if reached.is_none() && server.patches.load(Ordering::SeqCst) >= patches {
                reached = Some(Instant::now());
            }
            if reached.is_some_and(|r| r.elapsed() >= at) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 10, "only {kills} runs were killed mid-way");
    server.patch_delay_ms.store(0, Ordering::SeqCst);
    let before = server.patch_bytes.load(Ordering::SeqCst);
    let out = s.command(&server.endpoint(), &flags).output().unwrap();
    let location = succeeded(&out);
    assert_eq!(
        server.content(location.trim()).as_deref(),
        Some(&s.data[..])
    );
    assert_eq!(s.unfinished_entries(), 0);
    let last_run = server.patch_bytes.load(Ordering::SeqCst) - before;
    eprintln!("{kills} kills; {before} bytes sent before the last run, {last_run} by it");
    assert!(
        last_run < s.data.len() as u64,
        "the last run must resume, not start over"
    );
}
