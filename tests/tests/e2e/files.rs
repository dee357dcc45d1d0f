//! ferryd GET/HEAD over real HTTP: the RFC 9110 cases of the foundation issue as a table.
//! Everything a download can observe runs against both stores (`files::fs::…` and
//! `files::s3::…`, see [`ferry_tests::backends`]); what only a directory has (symlinks,
//! sparse files, mtimes before 1970, inode-based ETags) is tested on the directory alone.

use std::time::Duration;

use ferry_tests::{client, pattern, raw, Backend, TestServer};
use ferryd::server::ServerOptions;
use ferryd::store::fs::FsOptions;
use reqwest::header::HeaderMap;

mod changes;

const LEN: usize = 1000;

async fn get(srv: &TestServer, path: &str, headers: &[(&str, &str)]) -> (u16, HeaderMap, Vec<u8>) {
    let mut req = client().get(srv.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    let h = resp.headers().clone();
    (status, h, resp.bytes().await.expect("body").to_vec())
}

async fn fixture(b: Backend) -> (TestServer, Vec<u8>) {
    let srv = TestServer::start_on(b).await;
    let data = pattern(LEN, 7);
    srv.put_file("f.bin", &data);
    (srv, data)
}

async fn whole_file_with_validators(b: Backend) {
    let (srv, data) = fixture(b).await;
    let (status, h, body) = get(&srv, "/f.bin", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["content-length"], "1000");
    assert_eq!(h["content-type"], "application/octet-stream");
    let etag = h["etag"].to_str().unwrap();
    assert!(
        etag.starts_with('"') && !etag.starts_with("W/"),
        "strong etag: {etag}"
    );
    assert!(h.contains_key("last-modified"));
    assert_eq!(body, data);
}

/// One row of the range table: Range header, status, Content-Range, served slice.
type RangeCase<'a> = (&'a str, u16, Option<&'a str>, Option<(usize, usize)>);

/// RFC 9110 §14.1.2 and §14.2.
async fn range_table(b: Backend) {
    let (srv, data) = fixture(b).await;
    let cases: &[RangeCase] = &[
        ("bytes=0-", 206, Some("bytes 0-999/1000"), Some((0, 1000))),
        ("bytes=0-99", 206, Some("bytes 0-99/1000"), Some((0, 100))),
        (
            "bytes=100-",
            206,
            Some("bytes 100-999/1000"),
            Some((100, 1000)),
        ),
        (
            "bytes=-100",
            206,
            Some("bytes 900-999/1000"),
            Some((900, 1000)),
        ),
        // last-pos past the end is clamped (§14.1.2).
        (
            "bytes=990-5000",
            206,
            Some("bytes 990-999/1000"),
            Some((990, 1000)),
        ),
        // A suffix longer than the representation selects all of it (§14.1.3).
        (
            "bytes=-5000",
            206,
            Some("bytes 0-999/1000"),
            Some((0, 1000)),
        ),
        (
            "bytes=999-999",
            206,
            Some("bytes 999-999/1000"),
            Some((999, 1000)),
        ),
        // first-pos at or past the end: 416 with the complete length (§15.5.17).
        ("bytes=1000-", 416, Some("bytes */1000"), None),
        ("bytes=1000-2000", 416, Some("bytes */1000"), None),
        ("bytes=-0", 416, Some("bytes */1000"), None),
        // The unit is case-insensitive (§14.1).
        ("Bytes=0-9", 206, Some("bytes 0-9/1000"), Some((0, 10))),
        ("BYTES=0-9", 206, Some("bytes 0-9/1000"), Some((0, 10))),
        // An unknown unit is ignored (§14.2): the whole file.
        ("items=0-9", 200, None, Some((0, 1000))),
        // Invalid syntax is ignored (our pinned choice, allowed by §14.2): the whole file.
        ("bytes=abc", 200, None, Some((0, 1000))),
        ("bytes=5-2", 200, None, Some((0, 1000))),
        ("bytes=", 200, None, Some((0, 1000))),
        // Adjacent and overlapping ranges are coalesced into one part.
        (
            "bytes=0-9,10-19",
            206,
            Some("bytes 0-19/1000"),
            Some((0, 20)),
        ),
        (
            "bytes=0-9, 5-14",
            206,
            Some("bytes 0-14/1000"),
            Some((0, 15)),
        ),
        // Ranges adding up to more than the file: ignored, 200 (CVE-2011-3192 defence).
        ("bytes=0-999,0-999", 200, None, Some((0, 1000))),
    ];
    for (range, status, content_range, slice) in cases {
        let (got, h, body) = get(&srv, "/f.bin", &[("range", range)]).await;
        assert_eq!(got, *status, "status for {range}");
        assert_eq!(
            h.get("content-range").map(|v| v.to_str().unwrap()),
            *content_range,
            "Content-Range for {range}"
        );
        if let Some((a, b)) = slice {
            assert_eq!(body, &data[*a..*b], "body for {range}");
            assert_eq!(
                h["content-length"],
                (b - a).to_string().as_str(),
                "length for {range}"
            );
        }
    }
}

/// Parses a multipart/byteranges body into (Content-Range, bytes) parts.
fn parts(body: &[u8], boundary: &str) -> Vec<(String, Vec<u8>)> {
    let delim = format!("\r\n--{boundary}");
    let text = body;
    let mut out = Vec::new();
    let mut pos = 0;
    let find = |from: usize, pat: &[u8]| {
        text[from..]
            .windows(pat.len())
            .position(|w| w == pat)
            .map(|i| i + from)
    };
    while let Some(start) = find(pos, delim.as_bytes()) {
        let after = start + delim.len();
        if text[after..].starts_with(b"--") {
            break;
        }
        let head_end = find(after, b"\r\n\r\n").expect("part head");
        let head = String::from_utf8_lossy(&text[after..head_end]).into_owned();
        let cr = head
            .lines()
            .find_map(|l| l.strip_prefix("Content-Range: "))
            .expect("part content-range")
            .to_string();
        let data_start = head_end + 4;
        let next = find(data_start, delim.as_bytes()).expect("next delimiter");
        out.push((cr, text[data_start..next].to_vec()));
        pos = next;
    }
    out
}

async fn several_ranges_are_multipart_with_exact_length(b: Backend) {
    let (srv, data) = fixture(b).await;
    let (status, h, body) = get(&srv, "/f.bin", &[("range", "bytes=900-909, 0-9 ,500-")]).await;
    assert_eq!(status, 206);
    let ctype = h["content-type"].to_str().unwrap();
    let boundary = ctype
        .strip_prefix("multipart/byteranges; boundary=")
        .expect(ctype);
    assert_eq!(h["content-length"], body.len().to_string().as_str());
    assert!(!h.contains_key("content-range"));
    let got = parts(&body, boundary);
    let want: Vec<(String, Vec<u8>)> = [(0, 10), (500, 1000)]
        .into_iter()
        .map(|(a, b)| (format!("bytes {a}-{}/1000", b - 1), data[a..b].to_vec()))
        .collect();
    // 900-909 lies inside 500- and is coalesced; parts come sorted.
    assert_eq!(got, want);
    assert!(body.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()));
}

async fn more_than_sixteen_ranges_are_ignored(b: Backend) {
    let (srv, _) = fixture(b).await;
    let sixteen: Vec<String> = (0..16)
        .map(|i| format!("{}-{}", i * 20, i * 20 + 1))
        .collect();
    let (status, _, _) = get(
        &srv,
        "/f.bin",
        &[("range", &format!("bytes={}", sixteen.join(",")))],
    )
    .await;
    assert_eq!(status, 206);
    let seventeen: Vec<String> = (0..17)
        .map(|i| format!("{}-{}", i * 20, i * 20 + 1))
        .collect();
    let (status, _, body) = get(
        &srv,
        "/f.bin",
        &[("range", &format!("bytes={}", seventeen.join(",")))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(body.len(), LEN);
}

async fn conditional_requests_follow_rfc9110_order(b: Backend) {
    let (srv, data) = fixture(b).await;
    let (_, h, _) = get(&srv, "/f.bin", &[]).await;
    let etag = h["etag"].to_str().unwrap().to_string();
    let lm = h["last-modified"].to_str().unwrap().to_string();
    let weak = format!("W/{etag}");
    let old = "Sat, 01 Jan 2000 00:00:00 GMT";
    let future = "Fri, 01 Jan 2100 00:00:00 GMT";
    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![("if-none-match", &etag)], 304),
        (vec![("if-none-match", &weak)], 304), // weak comparison (§13.1.2)
        (vec![("if-none-match", "\"other\"")], 200),
        (vec![("if-none-match", "*")], 304),
        // 304 wins over Range (§13.2.2 step 3 precedes range handling).
        (vec![("if-none-match", &etag), ("range", "bytes=0-9")], 304),
        (vec![("if-modified-since", &lm)], 304),
        (vec![("if-modified-since", old)], 200),
        // If-None-Match takes precedence over If-Modified-Since (§13.1.3).
        (
            vec![
                ("if-none-match", "\"other\""),
                ("if-modified-since", future),
            ],
            200,
        ),
        (vec![("if-match", "\"other\"")], 412),
        (vec![("if-match", &etag)], 200),
        (vec![("if-match", "*")], 200),
        (vec![("if-match", &weak)], 412), // strong comparison (§13.1.1)
        (vec![("if-unmodified-since", old)], 412),
        (vec![("if-unmodified-since", future)], 200),
        // If-Match failure beats a matching If-None-Match.
        (
            vec![("if-match", "\"other\""), ("if-none-match", &etag)],
            412,
        ),
        // If-Range (§13.1.5): current strong ETag or exact date → 206, anything else → 200.
        (vec![("if-range", &etag), ("range", "bytes=0-9")], 206),
        (vec![("if-range", &weak), ("range", "bytes=0-9")], 200),
        (vec![("if-range", "\"other\""), ("range", "bytes=0-9")], 200),
        (vec![("if-range", &lm), ("range", "bytes=0-9")], 206),
        (vec![("if-range", old), ("range", "bytes=0-9")], 200),
    ];
    for (headers, status) in cases {
        let (got, h, body) = get(&srv, "/f.bin", &headers).await;
        assert_eq!(got, status, "{headers:?}");
        match got {
            304 => {
                assert!(body.is_empty());
                assert_eq!(h["etag"], etag.as_str(), "304 carries the ETag");
            }
            206 => assert_eq!(body, &data[..10]),
            200 => assert_eq!(body, data),
            _ => {}
        }
    }
}

#[tokio::test]
async fn etag_changes_on_any_rewrite() {
    let (srv, _) = fixture(Backend::Fs).await;
    let etag = |h: &HeaderMap| h["etag"].to_str().unwrap().to_string();
    let (_, h0, _) = get(&srv, "/f.bin", &[]).await;
    let path = srv.root.path().join("f.bin");
    let t0 = std::fs::metadata(&path).unwrap().modified().unwrap();
    // Same size rewritten in place, a different sub-second mtime.
    std::fs::write(&path, pattern(LEN, 8)).unwrap();
    let f = std::fs::File::options().write(true).open(&path).unwrap();
    f.set_modified(t0 + Duration::from_millis(1)).unwrap();
    drop(f);
    let (_, h1, _) = get(&srv, "/f.bin", &[]).await;
    assert_ne!(etag(&h0), etag(&h1));
    // Replaced by rename with the very same size and mtime: the inode differs.
    let tmp = srv.put_file("tmp.bin", &pattern(LEN, 9));
    let f = std::fs::File::options().write(true).open(&tmp).unwrap();
    f.set_modified(t0 + Duration::from_millis(1)).unwrap();
    drop(f);
    std::fs::rename(&tmp, &path).unwrap();
    let (_, h2, _) = get(&srv, "/f.bin", &[]).await;
    assert_ne!(etag(&h1), etag(&h2));
}

async fn head_sends_the_headers_of_get_without_body(b: Backend) {
    let (srv, _) = fixture(b).await;
    for range in [
        None,
        Some("bytes=0-9"),
        Some("bytes=0-9,20-29"),
        Some("bytes=5000-"),
    ] {
        let mut req = String::from("GET /f.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n");
        if let Some(r) = range {
            req.push_str(&format!("Range: {r}\r\n"));
        }
        req.push_str("\r\n");
        let g = raw(srv.addr, req.as_bytes(), Duration::from_secs(5)).await;
        let h = raw(
            srv.addr,
            req.replacen("GET", "HEAD", 1).as_bytes(),
            Duration::from_secs(5),
        )
        .await;
        assert_eq!(g.status, h.status, "{range:?}");
        assert!(h.body.is_empty(), "HEAD has no body");
        for name in [
            "content-length",
            "content-type",
            "etag",
            "last-modified",
            "accept-ranges",
            "content-range",
            "content-disposition",
        ] {
            if name == "content-type" && range == Some("bytes=0-9,20-29") {
                continue; // the multipart boundary is random per response
            }
            assert_eq!(g.header(name), h.header(name), "{name} for {range:?}");
        }
    }
}

async fn content_disposition_inline_attachment_and_utf8_names(b: Backend) {
    let srv = TestServer::start_on(b).await;
    srv.put_file("报告 2024.txt", b"hello");
    let (status, h, body) = get(&srv, "/%E6%8A%A5%E5%91%8A%202024.txt", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(body, b"hello");
    assert_eq!(h["content-type"], "text/plain; charset=utf-8");
    let cd = h["content-disposition"].to_str().unwrap();
    assert_eq!(
        cd,
        "inline; filename=\"__ 2024.txt\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%202024.txt"
    );
    let (_, h, _) = get(&srv, "/%E6%8A%A5%E5%91%8A%202024.txt?download", &[]).await;
    let cd = h["content-disposition"].to_str().unwrap();
    assert!(cd.starts_with("attachment; "), "{cd}");
    assert_eq!(
        ferry_proto::disposition::parse_filename(cd).as_deref(),
        Some("报告 2024.txt")
    );
}

async fn directory_listing_html_json_and_redirect(b: Backend) {
    let srv = TestServer::start_on(b).await;
    srv.put_file("docs/报告 #1.pdf", b"x");
    srv.put_file("docs/sub/a.txt", b"y");
    srv.put_file("docs/.secret", b"z");
    let raw_resp = raw(
        srv.addr,
        b"GET /docs?json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(raw_resp.status, 301);
    assert_eq!(raw_resp.header("location"), Some("/docs/?json"));
    let (status, h, body) = get(&srv, "/docs/", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "text/html; charset=utf-8");
    let html = String::from_utf8(body).unwrap();
    assert!(
        html.contains("href=\"%E6%8A%A5%E5%91%8A%20%231.pdf\""),
        "{html}"
    );
    assert!(
        !html.contains("?download"),
        "one link per file (wget -r mirrors it once)"
    );
    assert!(html.contains("href=\"sub/\""));
    assert!(!html.contains("secret"), "dotfiles are hidden");
    for (path, accept) in [("/docs/", "application/json"), ("/docs/?json", "*/*")] {
        let (status, h, body) = get(&srv, path, &[("accept", accept)]).await;
        assert_eq!(status, 200);
        assert_eq!(h["content-type"], "application/json");
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let names: Vec<&str> = v
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["sub", "报告 #1.pdf"]);
    }
    // Every listed link resolves.
    let (status, _, body) = get(&srv, "/docs/%E6%8A%A5%E5%91%8A%20%231.pdf", &[]).await;
    assert_eq!((status, body.as_slice()), (200, &b"x"[..]));
}

#[tokio::test]
async fn paths_outside_root_or_malformed_are_refused() {
    let srv = TestServer::start().await;
    srv.put_file("ok.txt", b"ok");
    srv.put_file(".env", b"SECRET=1");
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), srv.root.path().join("leak"))
        .unwrap();
    std::os::unix::fs::symlink(
        srv.root.path().join("ok.txt"),
        srv.root.path().join("inside"),
    )
    .unwrap();
    // Relative symlinks: one climbing out of the root, one staying inside it.
    let up = "../".repeat(srv.root.path().components().count());
    let target = format!("{up}{}", outside.path().join("secret").display());
    std::os::unix::fs::symlink(&target, srv.root.path().join("rel-leak")).unwrap();
    std::os::unix::fs::symlink("ok.txt", srv.root.path().join("rel-inside")).unwrap();
    std::fs::create_dir_all(srv.root.path().join(".ferry")).unwrap();
    std::fs::write(srv.root.path().join(".ferry/state"), b"internal").unwrap();
    for (path, status) in [
        ("/../etc/passwd", 400),
        ("/%2e%2e/etc/passwd", 400),
        ("/a/..%2f..%2fetc", 400),
        ("/ok.txt%00", 400),
        ("/%ff", 400),
        ("/a%5cb", 400),
        ("/leak", 404),
        ("/rel-leak", 404),
        ("/rel-inside", 200),
        ("/.env", 404),
        ("/.ferry/state", 404),
        ("/inside", 200),
        ("/./ok.txt", 200),
        ("//ok.txt", 200),
    ] {
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let r = raw(srv.addr, req.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(r.status, status, "{path}: {}", r.head);
        assert!(!String::from_utf8_lossy(&r.body).contains("outside"));
    }
}

#[tokio::test]
async fn files_larger_than_4_gib_use_64_bit_offsets() {
    let srv = TestServer::start().await;
    let path = srv.root.path().join("big.bin");
    let len: u64 = 5 * 1024 * 1024 * 1024 + 3; // sparse: costs no disk
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(len).unwrap();
    let at = 4_500_000_000u64;
    std::os::unix::fs::FileExt::write_at(&f, b"marker", at).unwrap();
    drop(f);
    let resp = client().head(srv.url("/big.bin")).send().await.unwrap();
    assert_eq!(resp.headers()["content-length"], len.to_string().as_str());
    let range = format!("bytes={at}-{}", at + 5);
    let (status, h, body) = get(&srv, "/big.bin", &[("range", &range)]).await;
    assert_eq!(status, 206);
    assert_eq!(
        h["content-range"],
        format!("bytes {at}-{}/{len}", at + 5).as_str()
    );
    assert_eq!(body, b"marker");
    let (status, h, body) = get(&srv, "/big.bin", &[("range", "bytes=-3")]).await;
    assert_eq!((status, body.as_slice()), (206, &[0u8, 0, 0][..]));
    assert_eq!(
        h["content-range"],
        format!("bytes {}-{}/{len}", len - 3, len - 1).as_str()
    );
}

async fn methods_other_than_get_head_options_get_405(b: Backend) {
    let (srv, _) = fixture(b).await;
    let resp = client().delete(srv.url("/f.bin")).send().await.unwrap();
    assert_eq!(resp.status(), 405);
    assert!(resp.headers().contains_key("allow"));
}

#[tokio::test]
async fn file_dated_before_1970_is_served_not_a_panic() {
    // Regression: httpdate panicked on pre-epoch mtimes inside the request.
    let (srv, data) = fixture(Backend::Fs).await;
    let f = std::fs::File::options()
        .write(true)
        .open(srv.root.path().join("f.bin"))
        .unwrap();
    f.set_modified(std::time::UNIX_EPOCH - Duration::from_secs(315_360_000))
        .unwrap();
    drop(f);
    let (status, h, body) = get(&srv, "/f.bin", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["last-modified"], "Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(body, data);
    let (status, _, _) = get(&srv, "/", &[]).await;
    assert_eq!(status, 200, "the listing formats the date too");
}

/// Replacing a file's content changes its strong ETag, whatever the store (on S3 the ETag is
/// the object's, an MD5 of the content).
async fn etag_changes_when_the_content_is_replaced(b: Backend) {
    let (srv, _) = fixture(b).await;
    let (_, h0, _) = get(&srv, "/f.bin", &[]).await;
    let new = pattern(LEN, 8);
    srv.put_file("f.bin", &new);
    let (status, h1, body) = get(&srv, "/f.bin", &[]).await;
    assert_eq!((status, body), (200, new));
    assert_ne!(h0["etag"], h1["etag"]);
}

/// The backend's own state (the directory store's legacy `ROOT/.ferry`, the S3 store's
/// staging prefix `PREFIX/.ferry/`) is never served or listed, even with `--allow-hidden`.
async fn state_area_is_never_served_or_listed_even_with_allow_hidden(b: Backend) {
    let fs = FsOptions {
        allow_hidden: true,
        ..FsOptions::default()
    };
    let srv = TestServer::launch_on(b, fs, ServerOptions::default(), |_, _| {}, |app, _| app).await;
    srv.put_file(".ferry/uploads/x.info", b"internal");
    srv.put_file(".env", b"SECRET=1");
    let (status, _, _) = get(&srv, "/.ferry/uploads/x.info", &[]).await;
    assert_eq!(status, 404);
    let (status, _, _) = get(&srv, "/.ferry/", &[]).await;
    assert_eq!(status, 404);
    let (status, _, body) = get(&srv, "/.env", &[]).await;
    assert_eq!((status, body.as_slice()), (200, &b"SECRET=1"[..]));
    let (_, _, body) = get(&srv, "/?json", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let names: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, [".env"]);
}

ferry_tests::backends!(
    whole_file_with_validators,
    range_table,
    several_ranges_are_multipart_with_exact_length,
    more_than_sixteen_ranges_are_ignored,
    conditional_requests_follow_rfc9110_order,
    head_sends_the_headers_of_get_without_body,
    content_disposition_inline_attachment_and_utf8_names,
    directory_listing_html_json_and_redirect,
    methods_other_than_get_head_options_get_405,
    etag_changes_when_the_content_is_replaced,
    state_area_is_never_served_or_listed_even_with_allow_hidden,
);
