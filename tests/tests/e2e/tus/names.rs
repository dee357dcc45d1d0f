//! Names that cannot hurt (issue 8 point 6): a `dir` the file system cannot hold, or with
//! control or bidi characters or a device name, is refused at creation; such a `filename` is
//! cleaned; a request path with an over-long component is a plain 404.

use ferry_proto::tus::encode_metadata;
use ferry_tests::{client, raw as raw_http, TestServer};
use reqwest::Method;

use super::*;

async fn post(srv: &TestServer, metadata: &str) -> reqwest::Response {
    tus(srv, Method::POST, "/files/")
        .header("upload-length", "2")
        .header("upload-metadata", metadata)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_dir_the_file_system_cannot_hold_is_400_at_creation() {
    // Regression: a 256-byte component got 201, then every PATCH and HEAD was a 500 and the
    // bytes were stuck.
    let (srv, _) = server().await;
    let long = "a".repeat(256);
    let deep = vec!["d".repeat(250); 16].join("/");
    for dir in [
        long.as_str(),
        &format!("ok/{long}"),
        deep.as_str(),
        "evil\u{202E}fdp",
        "a\u{7}b",
        "docs/CON",
    ] {
        let m = encode_metadata([
            ("filename", Some(&b"f.txt"[..])),
            ("dir", Some(dir.as_bytes())),
        ]);
        let r = post(&srv, &m).await;
        assert_eq!(r.status(), 400, "{dir:?}");
        assert!(r.text().await.unwrap().contains("dir"));
    }
    // Also a final upload (concatenation) naming such a dir.
    let part = tus(&srv, Method::POST, "/files/")
        .header("upload-length", "1")
        .header("upload-concat", "partial")
        .send()
        .await
        .unwrap();
    let part = h(&part, "location");
    let m = encode_metadata([("dir", Some(long.as_bytes()))]);
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{part}"))
        .header("upload-metadata", m)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // The longest component that fits still works end to end.
    let fits = "n".repeat(255);
    let m = encode_metadata([
        ("filename", Some(&b"f.txt"[..])),
        ("dir", Some(fits.as_bytes())),
    ]);
    let loc = location(&srv, &post(&srv, &m).await);
    let r = patch(&srv, &loc, 0, b"ok").await;
    assert_eq!(published(&srv, &r), format!("/{fits}/f.txt"));
}

#[tokio::test]
async fn a_filename_loses_bidi_and_control_characters_and_device_names_are_defused() {
    let (srv, _) = server().await;
    for (name, published) in [
        ("invoice\u{202E}fdp.exe", "/invoicefdp.exe"),
        ("bell\u{7}.txt", "/bell.txt"),
        ("NUL.txt", "/_NUL.txt"),
    ] {
        let loc = create(&srv, 2, &meta(name)).await;
        let r = patch(&srv, &loc, 0, b"ok").await;
        assert_eq!(super::published(&srv, &r), published, "{name:?}");
    }
}

#[tokio::test]
async fn a_request_path_with_an_over_long_component_is_404() {
    // Regression: ENAMETOOLONG was a 500 with an error log line.
    let srv = TestServer::start().await;
    let long = "a".repeat(300);
    for path in [
        format!("/{long}"),
        format!("/{long}/x"),
        format!("/{long}/"),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = raw_http(srv.addr, req.as_bytes(), std::time::Duration::from_secs(5)).await;
        assert_eq!(r.status, 404, "{path}");
    }
    let r = client()
        .head(srv.url(&format!("/{long}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}
