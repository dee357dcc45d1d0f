//! tus as its clients expect it (issue 8 point 8): where the spec allows two answers, tusd's.
//! Absolute `Location` (from `--public-url`, else the request, proxy headers only with
//! `--behind-proxy`), 409 with the current offset, a final upload without `Upload-Length`, and
//! 415 for a first chunk of another media type. (OPTIONS → 200 is in `core`.)

use ferry_tests::TestServer;
use ferryd::forwarded::Frontend;
use reqwest::Method;

use super::*;

/// A raw creation request with `extra` headers; returns the `Location` it got.
async fn raw_location(srv: &TestServer, extra: &str) -> String {
    let reply = ferry_tests::raw(
        srv.addr,
        format!(
            "POST /files/ HTTP/1.1\r\n{extra}Tus-Resumable: 1.0.0\r\nAuthorization: Bearer {TOKEN}\r\n\
             Upload-Length: 3\r\nConnection: close\r\n\r\n"
        )
        .as_bytes(),
        std::time::Duration::from_secs(10),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.head);
    let loc = reply.header("location").expect("Location").to_string();
    let (base, id) = loc.rsplit_once("/files/").expect("an upload URL");
    assert_eq!(id.len(), 32, "{loc}");
    base.to_string()
}

// Issue 8: Location was a path. It is absolute, from the request's Host; X-Forwarded-* and
// Forwarded come from any client, so they count only with --behind-proxy.
#[tokio::test]
async fn location_is_absolute_and_proxy_headers_count_only_behind_a_proxy() {
    let (srv, _) = server().await;
    let forged = "Host: files.example\r\nX-Forwarded-Proto: https\r\n\
                  X-Forwarded-Host: evil.example\r\nForwarded: host=evil.example\r\n";
    for (extra, base) in [
        ("Host: files.example:8080\r\n", "http://files.example:8080"),
        ("Host: Files.Example:80\r\n", "http://files.example"),
        (forged, "http://files.example"),
    ] {
        assert_eq!(raw_location(&srv, extra).await, base, "{extra:?}");
    }
    let behind = Frontend {
        behind_proxy: true,
        ..Frontend::default()
    };
    let (srv, _) = TestServer::start_tus_front(cfg(), move |_| behind).await;
    for (extra, base) in [
        ("Host: inner\r\n", "http://inner"),
        (
            "Host: inner\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Host: up.example\r\n",
            "https://up.example",
        ),
        (
            "Host: inner\r\nForwarded: for=192.0.2.1;proto=https;host=fw.example:8443\r\n",
            "https://fw.example:8443",
        ),
        (
            "Host: inner\r\nX-Forwarded-Host: a/b@evil\r\n",
            "http://inner",
        ),
    ] {
        assert_eq!(raw_location(&srv, extra).await, base, "{extra:?}");
    }
}

// --public-url wins over everything, and the URLs it makes (with a path prefix) name parts of
// a final upload, `Upload-Concat` and `Ferry-Published`.
#[tokio::test]
async fn public_url_makes_every_url_ferryd_hands_out() {
    let public = Frontend {
        public_url: Some("https://up.example/ferry/".parse().unwrap()),
        behind_proxy: false,
    };
    let (srv, _) = TestServer::start_tus_front(cfg(), move |_| public).await;
    let origin = "https://up.example/ferry";
    let path = |url: &str| {
        url.strip_prefix(origin)
            .unwrap_or_else(|| panic!("expected a URL under {origin}, got {url}"))
            .to_string()
    };
    let mut parts = Vec::new();
    for data in [&b"abc"[..], b"de"] {
        let r = tus(&srv, Method::POST, "/files/")
            .header("upload-length", data.len().to_string())
            .header("upload-concat", "partial")
            .header("x-forwarded-host", "ignored.example")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let url = h(&r, "location");
        assert_eq!(patch(&srv, &path(&url), 0, data).await.status(), 204);
        parts.push(url);
    }
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{}", parts.join(" ")))
        .header("upload-metadata", meta("joined.txt"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "absolute part URLs under a prefix are understood"
    );
    let fin = h(&r, "location");
    let hd = head(&srv, &path(&fin)).await;
    assert_eq!(
        h(&hd, "upload-concat"),
        format!("final;{}", parts.join(" "))
    );
    assert_eq!(h(&hd, "ferry-published"), format!("{origin}/joined.txt"));
    assert_eq!(
        std::fs::read(srv.root.path().join("joined.txt")).unwrap(),
        b"abcde"
    );
}

// Issue 8: the 409 said "expected Upload-Offset 3" only in its body; tus clients read the header.
#[tokio::test]
async fn wrong_offset_409_carries_the_current_offset() {
    let (srv, _) = server().await;
    let loc = create(&srv, 10, &meta("o.bin")).await;
    assert_eq!(patch(&srv, &loc, 0, b"abc").await.status(), 204);
    let r = patch(&srv, &loc, 0, b"abc").await;
    assert_eq!(r.status(), 409);
    assert_eq!(h(&r, "upload-offset"), "3");
    assert_eq!(h(&r, "tus-resumable"), "1.0.0");
}

// concatenation: "The Client MUST NOT include the Upload-Length header in the final upload
// creation" is enforced (it was ignored); a final upload takes no bytes of its own (tusd: 403).
#[tokio::test]
async fn final_upload_with_upload_length_is_400_and_with_a_body_403() {
    let (srv, _) = server().await;
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-length", "3")
        .header("upload-concat", "partial")
        .send()
        .await
        .unwrap();
    let part = location(&srv, &r);
    assert_eq!(patch(&srv, &part, 0, b"abc").await.status(), 204);
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{part}"))
        .header("upload-length", "3")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("Upload-Length"));
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{part}"))
        .header("content-type", OCTETS)
        .body("abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{part}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
}

// Issue 8: a first chunk of another media type was silently dropped (201, offset 0). It is a
// 415 and creates nothing; an empty body with whatever Content-Type a library adds is fine.
#[tokio::test]
async fn creation_with_a_body_of_another_media_type_is_415() {
    let (srv, _) = server().await;
    let uploads = srv.state.path().join("uploads");
    let count = || std::fs::read_dir(&uploads).map_or(0, |d| d.count());
    for ct in ["text/plain", "application/octet-stream"] {
        let r = tus(&srv, Method::POST, "/files/")
            .header("upload-length", "5")
            .header("content-type", ct)
            .body("hello")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 415, "{ct}");
        assert!(r.headers().get("location").is_none());
    }
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-length", "5")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 415, "no Content-Type at all");
    assert_eq!(count(), 0, "nothing was created");
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-length", "5")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("content-length", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(h(&r, "upload-offset"), "0");
}
