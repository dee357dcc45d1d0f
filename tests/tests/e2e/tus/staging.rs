//! The staging area (upload data, records, index) is unreachable through the served tree:
//! issue 8 point 2. Each test pins one way it was reachable before: a symlink inside ROOT
//! into it, `--allow-hidden` with a link to `.`, and the `dir` metadata writing through a
//! link (forged records, directories created outside ROOT).

use ferry_proto::tus::encode_metadata;
use ferry_tests::{client, TestServer};
use ferryd::store::fs::FsOptions;

use super::*;

async fn open_server() -> TestServer {
    let fs = FsOptions {
        allow_hidden: true,
        allow_symlinks_outside: true,
        ..FsOptions::default()
    };
    TestServer::start_tus_with(fs, cfg()).await.0
}

async fn status(srv: &TestServer, path: &str) -> u16 {
    client()
        .get(srv.url(path))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Creates an upload of `data` with `metadata` and sends it; returns its `Ferry-Published`.
async fn upload(srv: &TestServer, data: &[u8], metadata: &str) -> String {
    let loc = create(srv, data.len() as u64, metadata).await;
    let r = patch(srv, &loc, 0, data).await;
    assert_eq!(r.status(), 204);
    published(srv, &r)
}

#[tokio::test]
async fn a_symlink_into_the_state_dir_is_never_served_or_listed_even_with_every_flag() {
    let srv = open_server().await;
    let loc = create(&srv, 10, &meta("x")).await; // a live record in the state dir
    let id = loc.trim_start_matches("/files/");
    std::os::unix::fs::symlink(srv.state.path(), srv.root.path().join("s")).unwrap();
    let uploads = srv.state.path().join("uploads");
    std::os::unix::fs::symlink(&uploads, srv.root.path().join("u")).unwrap();
    let info = srv.state.path().join(format!("uploads/{id}.info"));
    std::os::unix::fs::symlink(&info, srv.root.path().join("i.json")).unwrap();
    assert!(info.is_file());
    for path in [
        format!("/s/uploads/{id}.info"),
        format!("/u/{id}.info"),
        format!("/u/{id}.bin"),
        "/i.json".to_string(),
        "/s/".into(),
        "/u/".into(),
        "/s/uploads/".into(),
    ] {
        assert_eq!(status(&srv, &path).await, 404, "{path}");
    }
    let listing = client().get(srv.url("/?json")).send().await.unwrap();
    let listing = listing.text().await.unwrap();
    for name in ["\"s\"", "\"u\"", "i.json"] {
        assert!(!listing.contains(name), "{name} listed: {listing}");
    }
}

#[tokio::test]
async fn allow_hidden_and_a_link_to_dot_never_reach_a_legacy_staging_dir() {
    // ROOT/.ferry as an older version left it (here: made after start, so not migrated).
    let srv = open_server().await;
    srv.put_file(".ferry/uploads/0123.info", b"{\"secret\":1}");
    std::os::unix::fs::symlink(".", srv.root.path().join("l")).unwrap();
    std::os::unix::fs::symlink(".ferry", srv.root.path().join("s")).unwrap();
    for path in [
        "/.ferry/uploads/0123.info",
        "/l/.ferry/uploads/0123.info",
        "/l/l/.ferry/uploads/",
        "/s/uploads/0123.info",
        "/s/",
    ] {
        assert_eq!(status(&srv, path).await, 404, "{path}");
    }
    let listing = client().get(srv.url("/l/?json")).send().await.unwrap();
    let listing = listing.text().await.unwrap();
    assert!(!listing.contains(".ferry"), "{listing}");
}

#[tokio::test]
async fn dir_metadata_through_a_link_never_writes_into_staging() {
    let srv = open_server().await;
    // Before: `dir` = a link into staging published the file there, as a forged record.
    std::os::unix::fs::symlink(
        srv.state.path().join("uploads"),
        srv.root.path().join("into-state"),
    )
    .unwrap();
    std::fs::create_dir_all(srv.state.path().join("uploads")).unwrap();
    srv.put_file(".ferry/uploads/keep", b"");
    std::os::unix::fs::symlink(".ferry/uploads", srv.root.path().join("into-legacy")).unwrap();
    let forged = "ffffffffffffffffffffffffffffffff.info";
    for dir in ["into-state", "into-legacy"] {
        let m = encode_metadata([
            ("filename", Some(forged.as_bytes())),
            ("dir", Some(dir.as_bytes())),
        ]);
        let published = upload(&srv, b"{\"version\":1}", &m).await;
        assert!(!published.starts_with(&format!("/{dir}")), "{published}");
    }
    assert!(!srv.state.path().join("uploads").join(forged).exists());
    assert!(!srv.root.path().join(".ferry/uploads").join(forged).exists());
    let forged_id = forged.trim_end_matches(".info");
    let r = head(&srv, &format!("/files/{forged_id}")).await;
    assert_eq!(r.status(), 404, "no forged upload record");
}

#[tokio::test]
async fn publishing_never_creates_directories_outside_root() {
    let srv = open_server().await;
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), srv.root.path().join("out")).unwrap();
    let m = encode_metadata([
        ("filename", Some(&b"f.txt"[..])),
        ("dir", Some(&b"out/new/deeper"[..])),
    ]);
    let published = upload(&srv, b"data", &m).await;
    assert_eq!(published, "/f.txt", "published at the root instead");
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
    // A link that stays inside ROOT is still a fine target.
    std::fs::create_dir(srv.root.path().join("real")).unwrap();
    std::os::unix::fs::symlink("real", srv.root.path().join("alias")).unwrap();
    let m = encode_metadata([
        ("filename", Some(&b"g.txt"[..])),
        ("dir", Some(&b"alias/sub"[..])),
    ]);
    assert_eq!(upload(&srv, b"g", &m).await, "/alias/sub/g.txt");
    assert_eq!(
        std::fs::read(srv.root.path().join("real/sub/g.txt")).unwrap(),
        b"g"
    );
}
