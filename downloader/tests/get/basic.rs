//! The happy path and resume.

use std::fs;

use ferry::get::journal::{self, Journal};
use ferry::get::output::Target;

use crate::support::*;

#[tokio::test]
async fn ranges_over_several_connections_with_if_range() {
    let data = random_bytes(3 << 20, 1);
    let server = Server::start(data.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = download(&server.url("/f.bin"), &fast_options(dir.path(), "out.bin"))
        .await
        .unwrap();
    assert_eq!(sha256(&fs::read(&path).unwrap()), sha256(&data));
    let gets: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.method == http::Method::GET)
        .collect();
    assert!(
        gets.len() >= 4,
        "expected one request per connection at least, got {gets:?}"
    );
    for g in &gets {
        assert!(g.range.is_some(), "every GET is ranged: {g:?}");
        assert_eq!(
            g.if_range.as_deref(),
            Some("\"v1\""),
            "every GET carries If-Range: {g:?}"
        );
    }
    let conns: std::collections::HashSet<_> = gets.iter().map(|g| g.conn).collect();
    assert!(
        conns.len() >= 4,
        "one TCP connection per worker, saw {}",
        conns.len()
    );
    let t = Target::for_path(path);
    assert!(
        !t.part.exists() && !t.journal.exists(),
        "part file and journal are gone"
    );
}

#[tokio::test]
async fn name_comes_from_content_disposition_sanitized() {
    let server = Server::start(b"hello".to_vec()).await;
    *server.content_disposition.lock().unwrap() =
        Some("attachment; filename=\"../x.txt\"; filename*=UTF-8''%C3%A9t%C3%A9.txt".into());
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "unused");
    opts.output = None;
    let path = download(&server.url("/dl?id=3"), &opts).await.unwrap();
    assert_eq!(path, dir.path().join("été.txt"));
    assert_eq!(fs::read(path).unwrap(), b"hello");
}

#[tokio::test]
async fn head_refused_falls_back_to_ranged_get() {
    let data = random_bytes(300_000, 2);
    let server = Server::start(data.clone()).await;
    server
        .head_refused
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let path = download(&server.url("/f"), &fast_options(dir.path(), "f"))
        .await
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), data);
    let first_get = server
        .requests()
        .into_iter()
        .find(|r| r.method == http::Method::GET)
        .unwrap();
    assert_eq!(first_get.range.as_deref(), Some("bytes=0-0"));
}

#[tokio::test]
async fn empty_file_downloads() {
    let server = Server::start(Vec::new()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = download(&server.url("/e"), &fast_options(dir.path(), "e"))
        .await
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), b"");
}

/// Resume fetches only what the journal does not claim, even with a different -x.
#[tokio::test]
async fn resume_fetches_only_missing_ranges() {
    let data = random_bytes(1 << 20, 3);
    let server = Server::start(data.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let t = Target::for_path(dir.path().join("r.bin"));
    let mut part = vec![0u8; data.len()];
    part[..600_000].copy_from_slice(&data[..600_000]);
    fs::write(&t.part, &part).unwrap();
    let j = Journal {
        url: server.url("/r.bin"),
        length: data.len() as u64,
        etag: Some("\"v1\"".into()),
        last_modified: None,
        done: vec![[0, 600_000]],
    };
    fs::write(&t.journal, journal::encode(&j)).unwrap();
    let mut opts = fast_options(dir.path(), "r.bin");
    opts.connections = 3;
    download(&server.url("/r.bin"), &opts).await.unwrap();
    assert_eq!(sha256(&fs::read(&t.path).unwrap()), sha256(&data));
    for r in server
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::GET)
    {
        let first: u64 = r.range.as_deref().unwrap()["bytes=".len()..]
            .split('-')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            first >= 600_000,
            "fetched bytes the journal already had: {r:?}"
        );
    }
}

/// A preallocated part file without a journal is never taken as complete.
#[tokio::test]
async fn part_file_without_journal_is_not_trusted() {
    let data = random_bytes(200_000, 4);
    let server = Server::start(data.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let t = Target::for_path(dir.path().join("p"));
    fs::write(&t.part, vec![0xAA; data.len()]).unwrap();
    download(&server.url("/p"), &fast_options(dir.path(), "p"))
        .await
        .unwrap();
    assert_eq!(fs::read(&t.path).unwrap(), data);
}

#[tokio::test]
async fn existing_file_is_not_clobbered_without_overwrite() {
    let server = Server::start(b"new".to_vec()).await;
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("x"), b"old").unwrap();
    let err = download(&server.url("/x"), &fast_options(dir.path(), "x"))
        .await
        .unwrap_err();
    // Same length, no recorded origin, no Last-Modified: not provably the remote file.
    assert!(err.to_string().contains("--overwrite"), "{err}");
    assert!(err.to_string().contains("--update"), "{err}");
    assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"old");
    let mut opts = fast_options(dir.path(), "x");
    opts.overwrite = true;
    download(&server.url("/x"), &opts).await.unwrap();
    assert_eq!(fs::read(dir.path().join("x")).unwrap(), b"new");
}

#[tokio::test]
async fn checksum_mismatch_fails_and_keeps_the_final_name_free() {
    let server = Server::start(b"abc".to_vec()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut opts = fast_options(dir.path(), "c");
    opts.checksum = Some(
        ferry::get::checksum::parse_checksum_arg(&format!("sha256={}", sha256(b"abd"))).unwrap(),
    );
    let err = download(&server.url("/c"), &opts).await.unwrap_err();
    assert!(err.to_string().contains("mismatch"), "{err}");
    assert!(!dir.path().join("c").exists());
    opts.checksum = Some(
        ferry::get::checksum::parse_checksum_arg(&format!("sha256={}", sha256(b"abc"))).unwrap(),
    );
    download(&server.url("/c"), &opts).await.unwrap();
}

/// Redirects are followed, but every request starts at the user's URL (signed URLs expire).
#[tokio::test]
async fn every_request_starts_at_the_original_url() {
    let data = random_bytes(1 << 20, 5);
    let server = Server::start(data.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let path = download(&server.url("/go/f"), &fast_options(dir.path(), "f"))
        .await
        .unwrap();
    assert_eq!(fs::read(path).unwrap(), data);
    let log = server.requests();
    let to_original = log.iter().filter(|r| r.path == "/go/f").count();
    let to_target = log.iter().filter(|r| r.path == "/f").count();
    assert!(to_target >= 4, "{log:?}");
    assert_eq!(
        to_original, to_target,
        "each request went through the original URL first: {log:?}"
    );
}

/// Regression: a journal from a server that has since stopped offering ranges
/// (`Accept-Ranges: none`) must not make a plain GET's bytes land at the journal's offsets.
#[tokio::test]
async fn resume_against_a_server_without_ranges_refetches_from_zero() {
    let data = random_bytes(500_000, 6);
    let server = Server::start(data.clone()).await;
    server
        .ranges_none
        .store(true, std::sync::atomic::Ordering::SeqCst);
    server
        .ignore_range
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let t = Target::for_path(dir.path().join("n"));
    let mut part = vec![0u8; data.len()];
    part[..100_000].copy_from_slice(&data[..100_000]);
    fs::write(&t.part, &part).unwrap();
    let j = Journal {
        url: server.url("/n"),
        length: data.len() as u64,
        etag: Some("\"v1\"".into()),
        last_modified: None,
        done: vec![[0, 100_000]],
    };
    fs::write(&t.journal, journal::encode(&j)).unwrap();
    download(&server.url("/n"), &fast_options(dir.path(), "n"))
        .await
        .unwrap();
    assert_eq!(sha256(&fs::read(&t.path).unwrap()), sha256(&data));
}

#[tokio::test]
async fn damaged_journal_is_a_clear_error_and_restart_discards_it() {
    let data = random_bytes(300_000, 7);
    let server = Server::start(data.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let t = Target::for_path(dir.path().join("j"));
    fs::write(&t.part, vec![0u8; data.len()]).unwrap();
    let mut bytes = journal::encode(&Journal {
        url: server.url("/j"),
        length: data.len() as u64,
        etag: Some("\"v1\"".into()),
        last_modified: None,
        done: vec![[0, 300_000]],
    });
    let last = bytes.len() - 2;
    bytes[last] ^= 1; // the body no longer matches its CRC
    fs::write(&t.journal, &bytes).unwrap();
    let mut opts = fast_options(dir.path(), "j");
    let err = download(&server.url("/j"), &opts).await.unwrap_err();
    assert!(
        err.to_string().contains("checksum expected") && err.to_string().contains("--restart"),
        "{err}"
    );
    opts.restart = true;
    download(&server.url("/j"), &opts).await.unwrap();
    assert_eq!(
        fs::read(&t.path).unwrap(),
        data,
        "the zeros the journal claimed were not trusted"
    );
}
