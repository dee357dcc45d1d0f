//! `--mirror` (issue 9 point 4): several servers for one file, mixed only when proven the same.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use ferry::get::checksum::parse_checksum_arg;

use crate::support::*;

/// Three servers with the same strong ETag: all serve ranges, and the slow main URL (64 KiB/s
/// per connection, 16 s alone) loses its segments to the fast mirrors.
#[tokio::test]
async fn mirrors_with_the_same_strong_etag_share_the_work_and_take_from_the_slow_one() {
    let data = random_bytes(4 << 20, 41);
    let slow = Server::start(data.clone()).await;
    slow.rate.store(64 << 10, Ordering::SeqCst);
    let (a, b) = (
        Server::start(data.clone()).await,
        Server::start(data.clone()).await,
    );
    let dir = tempfile::tempdir().unwrap();
    let urls = vec![slow.url("/f"), a.url("/f"), b.url("/f")];
    let started = Instant::now();
    let path = download_from(&urls, &fast_options(dir.path(), "f"))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(sha256(&std::fs::read(path).unwrap()), sha256(&data));
    for (name, s) in [("main", &slow), ("mirror a", &a), ("mirror b", &b)] {
        assert!(ranged_gets(s) >= 1, "{name} served no range");
    }
    assert!(
        took < Duration::from_secs(8),
        "took {took:?}: the slow server kept its segments (alone it needs 16 s)"
    );
}

/// A mirror with other bytes under another ETag is never mixed in: it only serves when the
/// main URL fails for good, and then the whole file comes from it, from zero.
#[tokio::test]
async fn mirror_with_another_etag_is_failover_only() {
    let ours = random_bytes(1 << 20, 42);
    let theirs = random_bytes(1 << 20, 43);
    let main = Server::start(ours.clone()).await;
    let other = Server::start(theirs.clone()).await;
    other.set_data(theirs.clone(), "\"other\"");
    let dir = tempfile::tempdir().unwrap();
    let urls = vec![main.url("/f"), other.url("/f")];
    let path = download_from(&urls, &fast_options(dir.path(), "f"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), ours, "all from the main URL");
    assert_eq!(ranged_gets(&other), 0, "the unproven mirror served nothing");

    // Now the main URL answers every GET with 404: the mirror takes over, from zero.
    main.refusals
        .lock()
        .unwrap()
        .extend((0..1000).map(|_| (404, None)));
    let path2 = download_from(&urls, &fast_options(dir.path(), "g"))
        .await
        .unwrap();
    assert_eq!(
        std::fs::read(&path2).unwrap(),
        theirs,
        "all from the mirror, never mixed"
    );
}

/// A lying mirror (same length, same ETag, other bytes) with --checksum: the mismatch is traced
/// to it by comparing pieces with the main URL, its bytes are fetched again, the file is right.
#[tokio::test]
async fn lying_mirror_is_found_by_the_checksum_and_its_bytes_replaced() {
    let data = random_bytes(3 << 20, 44);
    let mut lies = data.clone();
    for i in (1000..lies.len()).step_by(100_000) {
        lies[i] ^= 0x5a;
    }
    let main = Server::start(data.clone()).await;
    let liar = Server::start(lies).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "f");
    opts.checksum = Some(parse_checksum_arg(&format!("sha256={}", sha256(&data))).unwrap());
    let urls = vec![main.url("/f"), liar.url("/f")];
    let path = download_from(&urls, &opts).await.unwrap();
    assert_eq!(sha256(&std::fs::read(path).unwrap()), sha256(&data));
    assert!(
        ranged_gets(&liar) >= 1,
        "the liar's bytes were used (else nothing was tested)"
    );
}

/// Without --checksum or any other proof, the same lying mirror under another ETag is never
/// mixed in, so the file is right at once.
#[tokio::test]
async fn without_proof_a_lying_mirror_is_not_mixed_in() {
    let data = random_bytes(2 << 20, 45);
    let mut lies = data.clone();
    lies[12345] ^= 1;
    let main = Server::start(data.clone()).await;
    let liar = Server::start(lies.clone()).await;
    liar.set_data(lies, "\"v2\"");
    let dir = tempfile::tempdir().unwrap();
    let urls = vec![main.url("/f"), liar.url("/f")];
    let path = download_from(&urls, &fast_options(dir.path(), "f"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(path).unwrap(), data);
    assert_eq!(ranged_gets(&liar), 0);
}
