//! The content index end to end: a file copied into ROOT gets a `Repr-Digest` that `ferry get`
//! verifies, a rewritten file is never served with its old digest, `ferry put` of a copied-in
//! file is instant, and tus `Upload-Checksum` agrees with the index.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use clap::Parser as _;
use ferry::cli::{run, Cli, EXIT_OK};
use ferry_tests::{client, pattern, poll, TestServer};
use ferryd::tus::TusConfig;
use sha2::{Digest, Sha256};

const TOKEN: &str = "index-e2e-token";

fn b64_sha256(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(data))
}

/// The field value ferryd must send for `data`.
fn repr(data: &[u8]) -> String {
    format!("sha-256=:{}:", b64_sha256(data))
}

/// As `cp -p` leaves it: content with an mtime in the past (no settling wait).
fn copy_in(srv: &TestServer, rel: &str, data: &[u8]) {
    let p = srv.put_file(rel, data);
    let f = std::fs::File::options().write(true).open(p).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

async fn head_digest(srv: &TestServer, path: &str) -> Option<String> {
    let r = client().head(srv.url(path)).send().await.ok()?;
    r.headers()
        .get("repr-digest")
        .map(|v| v.to_str().unwrap().to_string())
}

/// Waits (bounded) until ferryd sends a `Repr-Digest` for `path`.
async fn indexed(srv: &TestServer, path: &str) -> String {
    poll(|| head_digest(srv, path))
        .await
        .unwrap_or_else(|| panic!("{path} was never indexed"))
}

async fn ferry(args: &[&str]) -> u8 {
    let cli = Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
        .expect("valid command line");
    run(cli).await
}

#[tokio::test]
async fn a_file_copied_into_root_is_indexed_and_ferry_get_verifies_the_servers_digest() {
    let srv = TestServer::start().await;
    let data = pattern(3 << 20, 121);
    copy_in(&srv, "sub/copied.bin", &data);
    assert_eq!(indexed(&srv, "/sub/copied.bin").await, repr(&data));
    // 206 carries the digest of the whole representation too, and the JSON listing has it.
    let r = client()
        .get(srv.url("/sub/copied.bin"))
        .header("range", "bytes=10-4105")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["repr-digest"].to_str().unwrap(), repr(&data));
    let list = client()
        .get(srv.url("/sub/?json"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let list: serde_json::Value = serde_json::from_slice(&list).unwrap();
    assert_eq!(list[0]["sha256"], hex::encode(Sha256::digest(&data)));
    // ferry's probe takes the server's digest, and the download is checked against it.
    let url = srv.url("/sub/copied.bin");
    let probe = ferry::get::probe::probe(&client(), &url, Duration::from_secs(5))
        .await
        .unwrap();
    let digest = probe.digest.expect("ferry saw the server's Repr-Digest");
    assert_eq!(digest.source, "Repr-Digest");
    assert_eq!(digest.digest, Sha256::digest(&data).to_vec());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        ferry(&["get", "-q", "-x", "4", "-d", d, &url]).await,
        EXIT_OK
    );
    assert_eq!(std::fs::read(dir.path().join("copied.bin")).unwrap(), data);
}

#[tokio::test]
async fn a_file_rewritten_in_place_is_never_served_with_its_old_digest() {
    let srv = TestServer::start().await;
    let mut old = pattern(64 << 10, 1);
    copy_in(&srv, "r.bin", &old);
    assert_eq!(indexed(&srv, "/r.bin").await, repr(&old));
    // Same size, same inode, rewritten in place (a new mtime): from the first request on,
    // the answer is the new digest or none, never the old one.
    for round in 2..6u64 {
        let new = pattern(64 << 10, round);
        let p = srv.root.path().join("r.bin");
        std::fs::write(&p, &new).unwrap();
        let seen = poll(|| async {
            let got = head_digest(&srv, "/r.bin").await;
            assert_ne!(got.as_deref(), Some(repr(&old).as_str()), "stale digest");
            got
        })
        .await;
        assert_eq!(seen, Some(repr(&new)), "round {round}");
        // The body served with that digest is the new content.
        let body = client().get(srv.url("/r.bin")).send().await.unwrap();
        assert_eq!(body.headers()["repr-digest"].to_str().unwrap(), repr(&new));
        assert_eq!(body.bytes().await.unwrap(), new);
        old = new;
    }
}

async fn tus_server() -> TestServer {
    let cfg = TusConfig {
        upload_token: Some(TOKEN.into()),
        ..TusConfig::default()
    };
    TestServer::start_tus(cfg).await.0
}

#[tokio::test]
async fn ferry_put_of_a_file_already_in_root_is_instant() {
    let srv = tus_server().await;
    let data = pattern(2 << 20, 77);
    copy_in(&srv, "already/here.bin", &data); // copied in, never uploaded
    indexed(&srv, "/already/here.bin").await;
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("mine.bin");
    std::fs::write(&local, &data).unwrap();
    let code = ferry(&[
        "put",
        "-q",
        "--token",
        TOKEN,
        local.to_str().unwrap(),
        &srv.url("/files/"),
    ])
    .await;
    assert_eq!(code, EXIT_OK);
    assert_eq!(
        std::fs::read(srv.root.path().join("mine.bin")).unwrap(),
        data
    );
    let staged: u64 = std::fs::read_dir(srv.state.path().join("uploads"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .map(|e| e.metadata().unwrap().len())
        .sum();
    assert_eq!(
        staged, 0,
        "no byte was uploaded (no PATCH wrote staging data)"
    );
    // Published as a hard link of the copied-in file: same inode.
    use std::os::unix::fs::MetadataExt as _;
    let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
    assert_eq!(
        ino(&srv.root.path().join("mine.bin")),
        ino(&srv.root.path().join("already/here.bin"))
    );
}

#[tokio::test]
async fn tus_upload_checksum_and_the_index_agree_on_the_uploaded_bytes() {
    let srv = tus_server().await;
    let data = pattern(300_000, 9);
    let c = client();
    let r = c
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("upload-length", data.len().to_string())
        .header("upload-metadata", "filename c3VtLmJpbg==") // sum.bin
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let loc = r.headers()["location"].to_str().unwrap().to_string();
    let sum = format!("sha256 {}", b64_sha256(&data));
    let r = c
        .patch(&loc) // absolute (issue 8)
        .header("tus-resumable", "1.0.0")
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/offset+octet-stream")
        .header("upload-offset", "0")
        .header("upload-checksum", &sum)
        .body(data.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204, "the server verified Upload-Checksum");
    let published = r.headers()["ferry-published"].to_str().unwrap();
    let published = published.strip_prefix(&srv.url("")).expect("absolute");
    let digest = indexed(&srv, published).await;
    // The same bytes, the same base64 SHA-256 in both protocols.
    assert_eq!(digest, format!("sha-256=:{}:", &sum["sha256 ".len()..]));
}
