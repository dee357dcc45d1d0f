//! Uploads against the in-test tus server: single stream, parallel parts, instant upload,
//! checksum and offset faults, resume, vanished uploads, restart, tokens.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use crate::support::{succeeded, wait_for, Scratch};
use crate::tus_server::{Config, TusServer};

#[tokio::test]
async fn single_stream_upload_is_byte_identical_and_prints_the_published_location() {
    let server = TusServer::start(Config {
        checksum: true,
        ..Config::default()
    })
    .await;
    let s = Scratch::new((1 << 20) + 12345, 1);
    let location = s
        .put(&server.endpoint(), &["--chunk-size", "256K"])
        .await
        .unwrap();
    assert!(
        location.contains("/done/"),
        "expected Ferry-Published, got {location}"
    );
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    assert_eq!(
        server.patches.load(Ordering::SeqCst),
        5,
        "one PATCH per chunk"
    );
    assert_eq!(
        server.patch_bytes.load(Ordering::SeqCst),
        s.data.len() as u64
    );
    assert_eq!(
        s.unfinished_entries(),
        0,
        "a finished upload leaves no unfinished entry"
    );
    // The same command again: the same location, nothing sent (issue 9 points 1 and 6).
    let again = s
        .put(&server.endpoint(), &["--chunk-size", "256K"])
        .await
        .unwrap();
    assert_eq!(again, location);
    assert_eq!(
        server.patches.load(Ordering::SeqCst),
        5,
        "no PATCH on a re-run"
    );
    assert_eq!(
        server.creations.load(Ordering::SeqCst),
        1,
        "no creation on a re-run"
    );
}

#[tokio::test]
async fn parallel_upload_concatenates_parts_byte_identically() {
    // With concatenation-unfinished the final upload is created before the parts are sent
    // (and retires them once joined); without it, after.
    for unfinished in [true, false] {
        let server = TusServer::start(Config {
            unfinished,
            ..Config::full()
        })
        .await;
        let s = Scratch::new((3 << 20) + 7, 2);
        let location = s
            .put(&server.endpoint(), &["-x", "4", "--chunk-size", "128K"])
            .await
            .unwrap();
        assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
        assert_eq!(
            server.patch_bytes.load(Ordering::SeqCst),
            s.data.len() as u64,
            "no byte sent twice"
        );
        // The server holds no file of this size: no hash, no whole-file creation to ask
        // with, just 4 partial uploads + the final concatenation.
        assert_eq!(server.probes.load(Ordering::SeqCst), 1);
        assert_eq!(server.creations.load(Ordering::SeqCst), 5);
        let kept = if unfinished { 1 } else { 5 };
        assert_eq!(server.upload_count(), kept, "unfinished: {unfinished}");
        assert_eq!(
            s.unfinished_entries(),
            0,
            "a finished upload leaves no unfinished entry"
        );
    }
}

#[tokio::test]
async fn same_size_other_content_hashes_asks_and_then_uploads() {
    let server = TusServer::start(Config::full()).await;
    let s = Scratch::new(300_000, 17);
    let mut other = s.data.clone();
    other[0] ^= 1;
    server.seed(&other); // a file of the same length: worth hashing, but not ours
    let location = s
        .put(&server.endpoint(), &["-x", "4", "--chunk-size", "64K"])
        .await
        .unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    assert_eq!(server.patch_bytes.load(Ordering::SeqCst), 300_000);
    // instant try (whole-file creation with the sha256, deleted again) + 4 parts + final
    assert_eq!(server.creations.load(Ordering::SeqCst), 6);
    assert_eq!(
        server.upload_count(),
        1,
        "the final (parts retired, the try deleted)"
    );
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&s.data));
    let sent = server.metadata(&location);
    assert!(
        sent.iter()
            .any(|(k, v)| k == "sha256" && v.as_deref() == Some(sha.as_bytes())),
        "{sent:?}"
    );
}

#[tokio::test]
async fn no_hash_when_the_server_cannot_do_instant_upload() {
    // A tus server without the ferry probe (tusd, @tus/server): hashing cannot pay off.
    let server = TusServer::start(Config {
        instant: false,
        ..Config::full()
    })
    .await;
    let s = Scratch::new(200_000, 18);
    let flags = ["-x", "2", "--chunk-size", "64K"];
    let location = s.put(&server.endpoint(), &flags).await.unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    let sent = server.metadata(&location);
    assert!(!sent.iter().any(|(k, _)| k == "sha256"), "{sent:?}");
    assert_eq!(
        server.creations.load(Ordering::SeqCst),
        3,
        "2 parts + final"
    );
}

#[tokio::test]
async fn small_file_with_many_parts_uses_one_part_per_chunk_at_most() {
    let server = TusServer::start(Config::full()).await;
    let s = Scratch::new(300, 3);
    let location = s
        .put(
            &server.endpoint(),
            &["-x", "8", "--chunk-size", "128", "--no-instant"],
        )
        .await
        .unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    assert_eq!(
        server.creations.load(Ordering::SeqCst),
        3,
        "2 parts of >= 128 bytes + final"
    );
}

#[tokio::test]
async fn empty_file_uploads() {
    let server = TusServer::start(Config::full()).await;
    let s = Scratch::new(0, 4);
    let location = s.put(&server.endpoint(), &["-x", "4"]).await.unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&[][..]));
    assert_eq!(server.patches.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn instant_upload_sends_no_patch_body() {
    for flags in [
        &["--chunk-size", "64K"][..],
        &["-x", "4", "--chunk-size", "64K"],
    ] {
        let server = TusServer::start(Config::full()).await;
        let s = Scratch::new(1 << 20, 5);
        server.seed(&s.data);
        let location = s.put(&server.endpoint(), flags).await.unwrap();
        assert_eq!(
            server.content(&location).as_deref(),
            Some(&s.data[..]),
            "{flags:?}"
        );
        assert_eq!(server.patches.load(Ordering::SeqCst), 0, "{flags:?}");
        assert_eq!(server.patch_bytes.load(Ordering::SeqCst), 0, "{flags:?}");
        assert_eq!(server.creations.load(Ordering::SeqCst), 1, "{flags:?}");
    }
}

#[tokio::test]
async fn instant_upload_is_skipped_with_no_instant() {
    let server = TusServer::start(Config::full()).await;
    let s = Scratch::new(100_000, 6);
    server.seed(&s.data);
    let location = s.put(&server.endpoint(), &["--no-instant"]).await.unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    assert_eq!(
        server.patch_bytes.load(Ordering::SeqCst),
        s.data.len() as u64
    );
}

#[tokio::test]
async fn checksum_mismatch_resends_and_conflict_resyncs() {
    // 460: tus checksum extension; 409: tus core PATCH offset mismatch; 503: transient.
    let server = TusServer::start(Config::full()).await;
    server.faults.lock().unwrap().extend([460, 409, 503, 460]);
    let s = Scratch::new(600_000, 7);
    let location = s
        .put(&server.endpoint(), &["--chunk-size", "100K"])
        .await
        .unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    assert_eq!(server.patches.load(Ordering::SeqCst), 6 + 4);
}

#[tokio::test]
async fn persistent_failures_give_up_after_max_tries() {
    let server = TusServer::start(Config::full()).await;
    server.fail_from.store(0, Ordering::SeqCst);
    let s = Scratch::new(10_000, 8);
    let err = s
        .put(&server.endpoint(), &["--max-tries", "3"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("503"), "{err}");
    assert_eq!(server.patches.load(Ordering::SeqCst), 3);
    assert_eq!(s.entries(), 1, "the resume entry stays for the next run");
}

#[tokio::test]
async fn rerun_resumes_at_the_server_offset_without_resending() {
    let server = TusServer::start(Config::full()).await;
    server.fail_from.store(3, Ordering::SeqCst);
    let s = Scratch::new(1 << 20, 9);
    let flags = ["-x", "2", "--chunk-size", "64K", "--max-tries", "1"];
    assert!(s.put(&server.endpoint(), &flags).await.is_err());
    let sent_before = server.patch_bytes.load(Ordering::SeqCst);
    assert!(sent_before > 0 && sent_before < s.data.len() as u64);
    server.fail_from.store(usize::MAX, Ordering::SeqCst);
    let location = s.put(&server.endpoint(), &flags).await.unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    assert_eq!(
        server.patch_bytes.load(Ordering::SeqCst),
        s.data.len() as u64,
        "resume resends nothing"
    );
    assert_eq!(
        server.creations.load(Ordering::SeqCst),
        2 + 1,
        "2 parts + final, none again"
    );
}

#[tokio::test]
async fn vanished_upload_starts_over() {
    let server = TusServer::start(Config::full()).await;
    server.fail_from.store(2, Ordering::SeqCst);
    let s = Scratch::new(500_000, 10);
    let flags = ["--chunk-size", "64K", "--max-tries", "1", "--no-instant"];
    assert!(s.put(&server.endpoint(), &flags).await.is_err());
    server.forget_all(); // tus core: HEAD of an unknown upload is 404
    server.fail_from.store(usize::MAX, Ordering::SeqCst);
    let location = s.put(&server.endpoint(), &flags).await.unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    assert_eq!(server.creations.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn server_restart_mid_upload_resumes_in_the_same_run() {
    let server = TusServer::start(Config::full()).await;
    server.patch_delay_ms.store(10, Ordering::SeqCst);
    let s = Arc::new(Scratch::new(2 << 20, 11));
    let endpoint = server.endpoint();
    let task = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            s.put(
                &endpoint,
                &["-x", "2", "--chunk-size", "64K", "--max-tries", "20"],
            )
            .await
        })
    };
    wait_for(|| server.patch_bytes.load(Ordering::SeqCst) > 256 << 10).await;
    server.stop();
    tokio::time::sleep(Duration::from_millis(300)).await; // down long enough for requests to fail
    let during = server.patch_bytes.load(Ordering::SeqCst);
    assert!(
        during < s.data.len() as u64,
        "the upload finished before the restart"
    );
    server.restart().await;
    let location = task.await.unwrap().unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
}

#[tokio::test]
async fn token_is_sent_as_bearer_and_a_refusal_is_final() {
    let server = TusServer::start(Config {
        token: Some("s3cret".into()),
        ..Config::full()
    })
    .await;
    let s = Scratch::new(1000, 12);
    let err = s
        .put(&server.endpoint(), &["--token", "wrong"])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let location = s
        .put(&server.endpoint(), &["--token", "s3cret"])
        .await
        .unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binary_prints_the_location_and_uses_exit_codes() {
    let server = TusServer::start(Config::full()).await;
    let s = Scratch::new(70_000, 13);
    let out = s.command(&server.endpoint(), &["-q"]).output().unwrap();
    let location = succeeded(&out);
    assert_eq!(
        server.content(location.trim()).as_deref(),
        Some(&s.data[..])
    );
    let usage = s.command("not-a-url", &[]).output().unwrap();
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("expected http"));
    server.fail_from.store(0, Ordering::SeqCst);
    let t = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(t.path(), b"other content").unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["put", "-q", "--max-tries", "1"])
        .arg(t.path())
        .arg(server.endpoint());
    let failed = cmd.env("FERRY_DATA_DIR", s.data_dir()).output().unwrap();
    assert_eq!(failed.status.code(), Some(1));
}

#[tokio::test]
async fn file_changed_during_upload_stops_before_sending_its_new_bytes() {
    let server = TusServer::start(Config::full()).await;
    server.patch_delay_ms.store(20, Ordering::SeqCst);
    let s = Arc::new(Scratch::new(1 << 20, 14));
    let endpoint = server.endpoint();
    let task = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            s.put(&endpoint, &["--chunk-size", "64K", "--no-instant"])
                .await
        })
    };
    wait_for(|| server.patch_bytes.load(Ordering::SeqCst) > 0).await;
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&s.file)
        .unwrap();
    std::io::Write::write_all(&mut f, b"appended").unwrap();
    let err = task.await.unwrap().unwrap_err();
    assert!(
        err.to_string().contains("changed during the upload"),
        "{err}"
    );
    let sent = server.patch_bytes.load(Ordering::SeqCst);
    assert!(
        sent < s.data.len() as u64,
        "kept sending after the change: {sent}"
    );
}

#[tokio::test]
async fn metadata_carries_filename_user_pairs_and_sha256() {
    let server = TusServer::start(Config::full()).await;
    let s = Scratch::new(5000, 15);
    let flags = [
        "-x",
        "2",
        "--chunk-size",
        "1K",
        "--metadata",
        "filename=renamed.bin",
        "--metadata",
        "owner=me",
    ];
    let mut same_size = s.data.clone();
    same_size[4999] ^= 1;
    server.seed(&same_size); // so that ferry hashes and sends sha256
    let location = s.put(&server.endpoint(), &flags).await.unwrap();
    let meta = server.metadata(&location);
    let value = |k: &str| {
        meta.iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.clone())
    };
    assert_eq!(value("filename").as_deref(), Some(&b"renamed.bin"[..]));
    assert_eq!(value("owner").as_deref(), Some(&b"me"[..]));
    let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&s.data));
    assert_eq!(value("sha256"), Some(sha.into_bytes()));
    assert_eq!(meta.len(), 3, "{meta:?}");
}

#[tokio::test]
async fn file_above_tus_max_size_is_refused_before_creating_anything() {
    let server = TusServer::start(Config {
        max_size: Some(1000),
        ..Config::full()
    })
    .await;
    let s = Scratch::new(1001, 16);
    let err = s
        .put(&server.endpoint(), &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("at most 1000 (Tus-Max-Size)"), "{err}");
    assert_eq!(server.creations.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn refused_options_falls_back_to_core_with_creation() {
    // tus core: OPTIONS support is optional; tus-js-client and tuspy never send it.
    let server = TusServer::start(Config {
        options_status: Some(405),
        ..Config::full()
    })
    .await;
    let s = Scratch::new(300_000, 17);
    let location = s
        .put(&server.endpoint(), &["-x", "4", "--chunk-size", "64K"])
        .await
        .unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    assert_eq!(
        server.creations.load(Ordering::SeqCst),
        1,
        "no concatenation without OPTIONS"
    );
    let s = Scratch::new(10, 18);
    let refused = TusServer::start(Config {
        options_status: Some(403),
        ..Config::full()
    })
    .await;
    assert!(s
        .put(&refused.endpoint(), &[])
        .await
        .unwrap_err()
        .to_string()
        .contains("403"));
}

/// Regression: a run that starts while the server is down (OPTIONS, then the resume HEAD)
/// failed at once instead of retrying like PATCH does (seen as a flaky node restart test).
#[tokio::test]
async fn run_started_while_the_server_restarts_retries_options_and_head() {
    let server = TusServer::start(Config::full()).await;
    server.fail_from.store(2, Ordering::SeqCst);
    let s = Arc::new(Scratch::new(500_000, 19));
    let flags = ["--chunk-size", "64K", "--max-tries", "1"];
    assert!(s.put(&server.endpoint(), &flags).await.is_err());
    assert_eq!(s.entries(), 1);
    server.fail_from.store(usize::MAX, Ordering::SeqCst);
    server.stop();
    let endpoint = server.endpoint();
    let task = {
        let s = Arc::clone(&s);
        tokio::spawn(async move {
            s.put(&endpoint, &["--chunk-size", "64K", "--max-tries", "20"])
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await; // several refused connections
    server.restart().await;
    let location = task.await.unwrap().unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    assert_eq!(
        server.creations.load(Ordering::SeqCst),
        1,
        "resumed, not recreated"
    );
}

#[tokio::test]
async fn second_put_of_the_same_file_is_refused_while_the_first_runs() {
    let server = TusServer::start(Config::full()).await;
    server.patch_delay_ms.store(20, Ordering::SeqCst);
    let s = Arc::new(Scratch::new(1 << 20, 20));
    let endpoint = server.endpoint();
    let first = {
        let (s, endpoint) = (Arc::clone(&s), endpoint.clone());
        tokio::spawn(async move { s.put(&endpoint, &["--chunk-size", "64K"]).await })
    };
    wait_for(|| server.patches.load(Ordering::SeqCst) > 0).await;
    let err = s
        .put(&endpoint, &["--chunk-size", "64K"])
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("another ferry put is uploading this file"),
        "{err}"
    );
    let location = first.await.unwrap().unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    server.patch_delay_ms.store(0, Ordering::SeqCst);
    s.put(&endpoint, &[])
        .await
        .expect("the lock is released when the first run ends");
}

/// Issue 9 §1: a finished upload the server has since lost (expired, deleted) is not
/// reported as done: the HEAD before skipping finds it gone, and the file is sent again.
#[tokio::test]
async fn rerun_after_the_server_lost_a_finished_upload_sends_it_again() {
    let server = TusServer::start(Config::full()).await;
    let s = Scratch::new(300_000, 14);
    let first = s.put(&server.endpoint(), &["--no-instant"]).await.unwrap();
    let (patches, creations) = (
        server.patches.load(Ordering::SeqCst),
        server.creations.load(Ordering::SeqCst),
    );
    let again = s.put(&server.endpoint(), &["--no-instant"]).await.unwrap();
    assert_eq!(again, first);
    assert_eq!(server.patches.load(Ordering::SeqCst), patches, "no PATCH");
    assert_eq!(
        server.creations.load(Ordering::SeqCst),
        creations,
        "no POST"
    );
    server.forget_all();
    let third = s.put(&server.endpoint(), &["--no-instant"]).await.unwrap();
    assert_eq!(server.content(&third).as_deref(), Some(&s.data[..]));
    assert!(server.patches.load(Ordering::SeqCst) > patches);
}
