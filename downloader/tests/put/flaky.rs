//! Issue 15: uploads on a bad path always make progress. The in-test tus server sits behind a
//! forwarder that cuts every connection after 1 MiB, or refuses bodies over 1 MiB with 413
//! as nginx does by default.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::cutter::Cutter;
use crate::support::Scratch;
use crate::tus_server::{Config, TusServer};

const MIB: usize = 1 << 20;

fn upstream(server: &TusServer) -> std::net::SocketAddr {
    let endpoint = server.endpoint();
    let host = endpoint
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap();
    host.parse().unwrap()
}

/// Issue 15 point 2: with the default checksum an 8 MiB chunk cut after 1 MiB was discarded by
/// the server every time, and `ferry put` gave up without progress. The chunks now shrink
/// until they fit.
#[tokio::test]
async fn default_checksum_upload_finishes_through_a_link_that_cuts_every_mib() {
    for flags in [&[][..], &["-x", "2"][..]] {
        let server = TusServer::start(Config::full()).await;
        let cutter = Cutter::start(upstream(&server), MIB as u64).await;
        let s = Scratch::new(6 * MIB + 12345, 15);
        let location = s
            .put(&cutter.endpoint(), flags)
            .await
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        assert_eq!(
            server.content(&location).as_deref(),
            Some(&s.data[..]),
            "{flags:?}"
        );
        assert!(cutter.cut_count() >= 5, "{flags:?}: the link must have cut");
    }
}

/// Issue 15 point 1: a part whose server offset moved since its last failure comes back at
/// once, not after `--retry-wait` (10 s here; before, each cut waited 5-10 s).
#[tokio::test]
async fn after_a_cut_with_progress_the_next_request_follows_within_milliseconds() {
    let server = TusServer::start(Config::full()).await;
    let cutter = Cutter::start(upstream(&server), MIB as u64).await;
    let s = Scratch::new(3 * MIB, 16);
    let start = Instant::now();
    let flags = ["--retry-wait", "10s", "--chunk-size", "256K"];
    let location = s.put(&cutter.endpoint(), &flags).await.unwrap();
    let took = start.elapsed();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    // 3 MiB at 3 chunks of 256 KiB per 1 MiB connection: the 4th chunk is cut each time.
    assert!(cutter.cut_count() >= 2, "cuts: {}", cutter.cut_count());
    let back = cutter.longest_return().unwrap();
    assert!(
        back < Duration::from_millis(500),
        "came back after {back:?}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

/// Issue 15 point 2: a proxy in front of the server (nginx, `client_max_body_size 1m`)
/// answers 413 to the default 8 MiB chunk; before, that ended the upload. Now the chunks
/// halve until they pass, and stay there.
#[tokio::test]
async fn a_proxy_refusing_bodies_over_1_mib_gets_smaller_chunks() {
    for flags in [&[][..], &["-x", "2"][..]] {
        let server = TusServer::start(Config {
            max_body: Some(MIB as u64),
            ..Config::full()
        })
        .await;
        let s = Scratch::new(5 * MIB + 7, 17);
        let location = s
            .put(&server.endpoint(), flags)
            .await
            .unwrap_or_else(|e| panic!("{flags:?}: {e}"));
        assert_eq!(
            server.content(&location).as_deref(),
            Some(&s.data[..]),
            "{flags:?}"
        );
        let refused = server.refused.load(Ordering::SeqCst);
        assert!((1..=8).contains(&refused), "{flags:?}: {refused} refusals");
        assert!(server.largest_patch.load(Ordering::SeqCst) <= MIB as u64);
    }
}

/// A 413 even for the smallest chunk is final, with the status in the error.
#[tokio::test]
async fn a_413_below_the_smallest_chunk_is_final() {
    let server = TusServer::start(Config {
        max_body: Some(1000),
        ..Config::full()
    })
    .await;
    let s = Scratch::new(MIB, 18);
    let e = s.put(&server.endpoint(), &[]).await.unwrap_err();
    assert!(e.to_string().contains("413"), "{e}");
    // 1 MiB -> 512 KiB -> 256 KiB (the floor), each refused.
    assert_eq!(server.refused.load(Ordering::SeqCst), 3);
}
