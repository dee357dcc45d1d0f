//! `--limit-rate` (issue 9 point 5) against ferryd over loopback: about ten seconds of `ferry
//! get` (two downloads at once, four connections each, all under one cap) and of `ferry put`
//! (four parallel parts), each checked to stay within 5 % of the cap over the whole transfer.
//!
//! The cap is an upper bound, so that side is strict (≤ cap × 1.05, the bucket's quarter-second
//! burst included). The lower side only catches a limiter that throttles far too hard: on a
//! loaded 2-core machine a run can lose time to other processes, and that is not the
//! limiter's fault.

use std::time::{Duration, Instant};

use clap::Parser as _;
use ferry::cli::{run, Cli, SharedArgs, EXIT_OK};
use ferry::progress::{Mode, Ui};
use ferry::put::args::{PutArgs, PutPlan};
use ferry::put::fingerprint::Store;
use ferry::put::plan::ChecksumChoice;
use ferry::put::Uploader;
use ferry_tests::{pattern, TestServer};
use ferryd::tus::TusConfig;

const CAP: u64 = 3 << 20;
/// Ten and a bit seconds at the cap, in total.
const TOTAL: usize = 32 << 20;

fn check_rate(bytes: usize, elapsed: Duration, what: &str) {
    let rate = bytes as f64 / elapsed.as_secs_f64();
    let cap = CAP as f64;
    eprintln!(
        "{what}: {bytes} bytes in {elapsed:.2?} = {rate:.0} B/s, {:.3} x the cap {CAP}",
        rate / cap
    );
    assert!(
        rate <= cap * 1.05,
        "{what}: {rate:.0} B/s is more than 5% above --limit-rate {CAP}"
    );
    assert!(
        rate >= cap * 0.8,
        "{what}: {rate:.0} B/s is far below --limit-rate {CAP}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_limit_rate_caps_two_downloads_of_four_connections_together() {
    let srv = TestServer::start().await;
    let (a, b) = (pattern(TOTAL / 2, 71), pattern(TOTAL / 2, 72));
    srv.put_file("a.bin", &a);
    srv.put_file("b.bin", &b);
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (ua, ub) = (srv.url("/a.bin"), srv.url("/b.bin"));
    let args = [
        "ferry",
        "get",
        "-q",
        "-j",
        "2",
        "-x",
        "4",
        "--limit-rate",
        "3M",
        "-d",
        d,
        &ua,
        &ub,
    ];
    let cli = Cli::try_parse_from(args).expect("valid command line");
    let started = Instant::now();
    assert_eq!(run(cli).await, EXIT_OK);
    check_rate(TOTAL, started.elapsed(), "ferry get -j 2 -x 4");
    assert!(std::fs::read(dir.path().join("a.bin")).unwrap() == a);
    assert!(std::fs::read(dir.path().join("b.bin")).unwrap() == b);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_limit_rate_caps_four_parallel_parts_together() {
    let (srv, _) = TestServer::start_tus(TusConfig::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(TOTAL, 73);
    let file = dir.path().join("capped.bin");
    std::fs::write(&file, &data).unwrap();
    let args = PutArgs {
        files: vec![file.clone()],
        url: srv.url("/files/"),
        parallel: 4,
        chunk_size: Some(4 << 20),
        metadata: Vec::new(),
        // No hashing of the whole file before the transfer: the window is the transfer.
        no_instant: true,
        restart: false,
        checksum: ChecksumChoice::Auto,
        recursive: false,
        max_concurrent_uploads: 1,
        shared: SharedArgs {
            limit_rate: Some(CAP),
            timeout: Duration::from_secs(30),
            ..SharedArgs::default()
        },
    };
    let mut plan = PutPlan::from_args(args).unwrap();
    plan.options.store = Some(Store::open(&dir.path().join("state")).expect("store"));
    let started = Instant::now();
    let up = Uploader::connect(plan.tus, plan.options).await.unwrap();
    let location = up
        .put(&file, &Ui::with_mode(Mode::Quiet, false))
        .await
        .unwrap();
    check_rate(TOTAL, started.elapsed(), "ferry put -x 4");
    assert_eq!(location, srv.url("/capped.bin"));
    assert!(std::fs::read(srv.root.path().join("capped.bin")).unwrap() == data);
}
