//! SIGKILL at random moments: the journal must only ever claim bytes that are right, and the
//! resumed download must finish with the right sha256.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use ferry::get::journal;
use ferry::get::output::Target;

use crate::support::*;

const DOWNLOADS: usize = 3;
const KILLS_PER_DOWNLOAD: usize = 4;

fn ferry(url: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["get", url, "-d"])
        .arg(dir)
        .args([
            "-o",
            "k.bin",
            "-x",
            "4",
            "-k",
            "64K",
            "-q",
            "--retry-wait",
            "50ms",
            "--timeout",
            "5s",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd
}

/// Every range the journal claims holds exactly the server's bytes; returns the bytes claimed.
fn check_journal(t: &Target, data: &[u8]) -> u64 {
    let Some(j) = journal::load(&t.journal).unwrap() else {
        return 0;
    };
    let j = j.expect("a journal is always whole: atomic replace");
    let part = fs::read(&t.part).unwrap();
    for [a, b] in &j.done {
        let (a, b) = (*a as usize, *b as usize);
        assert!(
            part[a..b] == data[a..b],
            "journal claims {a}..{b} but the part file differs there"
        );
    }
    j.done_set().covered()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_at_random_moments_never_corrupts() {
    let data = random_bytes(12 << 20, 30);
    let server = Server::start(data.clone()).await;
    server.rate.store(512 << 10, SeqCst); // 2 MiB/s over 4 connections: 6 s per download
    let url = server.url("/k.bin");
    let seed = fastrand::u64(..);
    eprintln!("kill loop seed {seed}");
    tokio::task::spawn_blocking(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        let (mut kills, mut resumed_with) = (0, 0);
        for _ in 0..DOWNLOADS {
            let dir = tempfile::tempdir().unwrap();
            let t = Target::for_path(dir.path().join("k.bin"));
            let (mut claimed, mut kills_here) = (0, 0);
            while kills_here < KILLS_PER_DOWNLOAD {
                let mut child = ferry(&url, dir.path()).spawn().unwrap();
                // Early kills (before the first journal tick) and late ones (after it).
                let late = rng.bool();
                let wait = if late {
                    rng.u64(1800..2400)
                } else {
                    rng.u64(200..900)
                };
                std::thread::sleep(Duration::from_millis(wait));
                if child.try_wait().unwrap().is_none() {
                    child.kill().unwrap(); // SIGKILL
                    kills_here += 1;
                }
                child.wait().unwrap();
                if t.path.exists() {
                    break; // this run finished before the kill
                }
                let now = check_journal(&t, &data);
                assert!(
                    now >= claimed,
                    "durable progress went back from {claimed} to {now}"
                );
                // The journal is updated every second: a run that lived ~2 s recorded work.
                assert!(
                    !late || now > claimed,
                    "{wait} ms run recorded nothing (seed {seed})"
                );
                claimed = now;
            }
            kills += kills_here;
            resumed_with += claimed;
            if t.path.exists() {
                assert_eq!(
                    sha256(&fs::read(&t.path).unwrap()),
                    sha256(&data),
                    "seed {seed}"
                );
                continue;
            }
            let out = ferry(&url, dir.path()).output().unwrap();
            assert!(
                out.status.success(),
                "final run failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                sha256(&fs::read(&t.path).unwrap()),
                sha256(&data),
                "seed {seed}"
            );
            assert!(!t.journal.exists() && !t.part.exists());
        }
        assert!(
            resumed_with > 0,
            "no run was killed after recording progress (seed {seed})"
        );
        assert!(
            kills >= 10,
            "only {kills} kills landed mid-download (seed {seed})"
        );
    })
    .await
    .unwrap();
}
