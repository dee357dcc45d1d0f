//! ferry additions: no-clobber publish, instant upload, tokens and CORS.

use ferry_proto::tus::encode_metadata;
use ferry_tests::{client, pattern, poll, sha256_hex, TestServer};
use ferryd::tus::TusConfig;
use reqwest::Method;

use super::*;

#[tokio::test]
async fn an_existing_name_is_never_clobbered() {
    let (srv, _) = server().await;
    srv.put_file("docs/a.txt", b"original");
    let m = encode_metadata([
        ("filename", Some(&b"a.txt"[..])),
        ("dir", Some(&b"docs"[..])),
    ]);
    let loc = create(&srv, 3, &m).await;
    let r = patch(&srv, &loc, 0, b"new").await;
    assert_eq!(r.status(), 204);
    assert_eq!(published(&srv, &r), "/docs/a%20%281%29.txt");
    assert_eq!(
        std::fs::read(srv.root.path().join("docs/a.txt")).unwrap(),
        b"original"
    );
    assert_eq!(
        std::fs::read(srv.root.path().join("docs/a (1).txt")).unwrap(),
        b"new"
    );
    assert_eq!(
        published(&srv, &head(&srv, &loc).await),
        "/docs/a%20%281%29.txt"
    );
    // An empty PATCH at the end of a finished upload is a no-op success (a client retrying).
    let r = patch(&srv, &loc, 3, b"").await;
    assert_eq!(
        (r.status().as_u16(), h(&r, "upload-offset")),
        (204, "3".into())
    );
}

#[tokio::test]
async fn an_unusable_target_directory_publishes_at_the_root_instead_of_failing() {
    let (srv, _) = server().await;
    srv.put_file("taken", b"a file, not a directory");
    let m = encode_metadata([
        ("filename", Some(&b"f.txt"[..])),
        ("dir", Some(&b"taken"[..])),
    ]);
    let loc = create(&srv, 2, &m).await;
    let r = patch(&srv, &loc, 0, b"ok").await;
    assert_eq!(r.status(), 204);
    assert_eq!(published(&srv, &r), "/f.txt");
    assert_eq!(std::fs::read(srv.root.path().join("f.txt")).unwrap(), b"ok");
}

#[tokio::test]
async fn auth_401_without_token_reads_public_cors_preflight() {
    let (srv, _) = TestServer::start_tus(TusConfig {
        cors_origins: vec!["https://app.example".into()],
        ..cfg()
    })
    .await;
    let r = client()
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(h(&r, "www-authenticate").starts_with("Bearer"));
    let r = client()
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", "1")
        .bearer_auth("s3cret-tokem")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "one character off");
    let loc = create(&srv, 1, &meta("pub.txt")).await;
    let r = client()
        .head(srv.url(&loc))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "reads are public");
    let r = client()
        .request(Method::OPTIONS, srv.url("/files/"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "PATCH")
        .send()
        .await
        .unwrap();
    assert_eq!(h(&r, "access-control-allow-origin"), "https://app.example");
    assert!(h(&r, "access-control-expose-headers").contains("Upload-Offset"));
    assert!(h(&r, "access-control-allow-headers").contains("Upload-Metadata"));
    let r = client()
        .request(Method::OPTIONS, srv.url("/files/"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(h(&r, "access-control-allow-origin"), "");
}

#[tokio::test]
async fn read_token_protects_heads_and_downloads() {
    let (srv, _) = TestServer::start_tus(TusConfig {
        read_token: Some("r".into()),
        ..cfg()
    })
    .await;
    let loc = create(&srv, 1, &meta("r.txt")).await;
    let r = client()
        .head(srv.url(&loc))
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .head(srv.url(&loc))
        .header("tus-resumable", "1.0.0")
        .bearer_auth("r")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = patch(&srv, &loc, 0, b"x").await;
    assert_eq!(r.status(), 204);
    let file = client().get(srv.url("/r.txt")).send().await.unwrap();
    assert_eq!(
        file.status(),
        401,
        "published files need the read token too"
    );
    let file = client()
        .get(srv.url("/r.txt"))
        .bearer_auth("r")
        .send()
        .await
        .unwrap();
    assert_eq!(file.bytes().await.unwrap(), &b"x"[..]);
}

#[tokio::test]
async fn instant_upload_completes_at_creation_for_known_content() {
    let (srv, _) = server().await;
    let data = pattern(70_000, 11);
    let loc = create(&srv, data.len() as u64, &meta("first.bin")).await;
    assert_eq!(patch(&srv, &loc, 0, &data).await.status(), 204);
    let sha = sha256_hex(&data);
    let m = encode_metadata([
        ("filename", Some(&b"second.bin"[..])),
        ("sha256", Some(sha.as_bytes())),
    ]);
    // Indexing runs in the background after publish: poll creation (bounded).
    let r = poll(|| async {
        let r = tus(&srv, Method::POST, "/files/")
            .header("upload-length", "70000")
            .header("upload-metadata", &m)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        (h(&r, "upload-offset") == "70000").then_some(r)
    })
    .await
    .expect("instant upload within 2 s");
    assert_eq!(published(&srv, &r), "/second.bin");
    assert_eq!(
        std::fs::read(srv.root.path().join("second.bin")).unwrap(),
        data
    );
    // Same digest, other length: an ordinary upload.
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-length", "5")
        .header("upload-metadata", &m)
        .send()
        .await
        .unwrap();
    assert_eq!(h(&r, "upload-offset"), "0");
    // A file changed in place is no longer trusted.
    std::fs::write(srv.root.path().join("first.bin"), b"changed").unwrap();
    std::fs::write(srv.root.path().join("second.bin"), b"changed").unwrap();
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-length", "70000")
        .header("upload-metadata", &m)
        .send()
        .await
        .unwrap();
    assert_eq!(h(&r, "upload-offset"), "0");
}

#[tokio::test]
async fn instant_length_probe_answers_uploaders_only_and_tracks_the_index() {
    let (srv, _) = server().await;
    let probe = |len: &str, token: Option<&str>| {
        let mut req = client()
            .request(Method::OPTIONS, srv.url("/files/"))
            .header("ferry-instant-length", len);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    // Nothing held yet.
    let r = probe("70001", Some(TOKEN)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "ferry-instant-candidate"), "?0");
    let data = pattern(70_001, 12);
    let loc = create(&srv, data.len() as u64, &meta("held.bin")).await;
    assert_eq!(patch(&srv, &loc, 0, &data).await.status(), 204);
    // Indexing runs in the background after publish: poll (bounded).
    let held = poll(|| async {
        let r = probe("70001", Some(TOKEN)).await.unwrap();
        (h(&r, "ferry-instant-candidate") == "?1").then_some(())
    })
    .await;
    assert!(held.is_some(), "a file of that length is held");
    let other = probe("70002", Some(TOKEN)).await.unwrap();
    assert_eq!(h(&other, "ferry-instant-candidate"), "?0", "other length");
    // Whether a size exists is told only to those who may upload; OPTIONS itself stays open.
    for token in [None, Some("wrong")] {
        let r = probe("70001", token).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.headers().get("ferry-instant-candidate").is_none());
    }
    let r = probe("not-a-number", Some(TOKEN)).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("ferry-instant-candidate").is_none());
    // The file changed in place: the index no longer vouches for it.
    std::fs::write(srv.root.path().join("held.bin"), b"changed").unwrap();
    let r = probe("70001", Some(TOKEN)).await.unwrap();
    assert_eq!(h(&r, "ferry-instant-candidate"), "?0");
}
