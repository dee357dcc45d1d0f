//! The browser UI's assets and the listing as HTTP sees them: reserved versioned prefix,
//! immutable caching, strong ETags, Range and conditional requests through the file code,
//! CSP and nosniff, streamed listings of 100,000 entries. The browser itself is in `browser`.

use ferry_tests::{client, TestServer};
use ferryd::store::fs::FsOptions;
use reqwest::header::HeaderMap;

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

/// The page's asset prefix, read from the listing the way a browser finds it.
async fn prefix(srv: &TestServer) -> String {
    let (_, _, body) = get(srv, "/", &[]).await;
    prefix_of(&String::from_utf8(body).unwrap())
}

fn assert_secured(h: &HeaderMap) {
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.starts_with("default-src 'self'"), "{csp}");
    assert!(
        !csp.contains("unsafe-inline") && !csp.contains("'unsafe-eval'"),
        "{csp}"
    );
    assert_eq!(h["x-content-type-options"], "nosniff");
}

#[tokio::test]
async fn assets_are_immutable_with_strong_etags_and_ranges() {
    let srv = TestServer::start().await;
    let p = prefix(&srv).await;
    let (status, h, css) = get(&srv, &format!("{p}ferry.css"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "text/css; charset=utf-8");
    assert!(h["cache-control"].to_str().unwrap().contains("immutable"));
    assert_secured(&h);
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with('"'), "strong: {etag}");
    let (status, _, _) = get(&srv, &format!("{p}ferry.css"), &[("if-none-match", &etag)]).await;
    assert_eq!(status, 304);
    let (status, h, part) = get(&srv, &format!("{p}ferry.css"), &[("range", "bytes=2-9")]).await;
    assert_eq!(status, 206);
    assert_eq!(part, css[2..10]);
    assert_eq!(
        h["content-range"],
        format!("bytes 2-9/{}", css.len()).as_str()
    );
    let (status, h, _) = get(&srv, &format!("{p}vendor/tus.min.js"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "text/javascript; charset=utf-8");
}

#[tokio::test]
async fn prefix_is_reserved_even_with_hidden_files_allowed() {
    let fs = FsOptions {
        allow_hidden: true,
        ..FsOptions::default()
    };
    let srv = TestServer::start_with(fs, Default::default(), |a| a).await;
    srv.put_file(".ferry-ui/x/ferry.css", b"from ROOT");
    srv.put_file(".ferry-ui/evil.html", b"<script>");
    srv.put_file(".other", b"shown");
    let p = prefix(&srv).await;
    let (_, _, css) = get(&srv, &format!("{p}ferry.css"), &[]).await;
    assert_ne!(css, b"from ROOT");
    for path in [
        "/.ferry-ui/x/ferry.css",
        "/.ferry-ui/evil.html",
        "/.ferry-ui/",
    ] {
        assert_eq!(get(&srv, path, &[]).await.0, 404, "{path}");
    }
    let (_, _, body) = get(&srv, "/", &[]).await;
    let html = String::from_utf8(body).unwrap();
    assert!(
        !html.contains("href=\".ferry-ui/\""),
        "shadowed, not listed"
    );
    assert!(html.contains("href=\".other\""));
    // An old page's version is not answered with new code.
    let old = "/.ferry-ui/000000000000/ferry.css";
    assert_eq!(get(&srv, old, &[]).await.0, 404);
}

#[tokio::test]
async fn listing_is_secured_and_hostile_names_are_text() {
    let srv = TestServer::start().await;
    let names = [
        "<script>alert(1)<script>.txt", // no `/` in a file name
        "<img src=x onerror=alert(2)>.txt",
        "q\"uote's & amp.txt",
        "rtl\u{202e}txt.exe",
        "new\nline.txt",
    ];
    for n in names {
        srv.put_file(n, b"x");
    }
    let (status, h, body) = get(&srv, "/", &[]).await;
    assert_eq!(status, 200);
    assert_secured(&h);
    let html = String::from_utf8(body).unwrap();
    assert!(!html.contains("<script>alert"), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;script&gt;.txt</a>"));
    assert!(!html.contains("<img"));
    assert!(html.contains("q&quot;uote&#39;s &amp; amp.txt</a>"));
    assert!(html.contains("href=\"new%0Aline.txt\""));
    assert!(!html.contains("?download"));
    // Scripts are only ever loaded from the reserved prefix (no inline script).
    assert_eq!(html.matches("<script").count(), 1, "{html}");
    assert!(!html.contains("data-tus"), "no upload panel without tus");
    let (status, h, _) = get(&srv, "/?json", &[]).await;
    assert_eq!(status, 200);
    assert_eq!(h["content-type"], "application/json");
}

#[tokio::test]
async fn listing_of_100_000_entries_streams() {
    // No content index: it would watch and hash the 100,000 files this test creates, which
    // has nothing to do with streaming the listing and took minutes on a loaded machine.
    let fs = ferryd::store::fs::FsOptions {
        index: None,
        ..Default::default()
    };
    let srv = TestServer::start_with(fs, Default::default(), |app| app).await;
    let dir = srv.root.path().join("big");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..100_000 {
        std::fs::File::create(dir.join(format!("f{i:06}"))).unwrap();
    }
    let resp = client().get(srv.url("/big/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("content-length").is_none(),
        "streamed, not built whole"
    );
    let html = resp.text().await.unwrap();
    assert_eq!(html.matches("<tr><td><a href=\"f").count(), 100_000);
    assert!(html.ends_with("</html>\n"));
    let (_, _, body) = get(&srv, "/big/?json", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 100_000);
    assert_eq!(v[99_999]["name"], "f099999");
}

#[tokio::test]
async fn listing_puts_folders_first_and_head_has_no_body() {
    let srv = TestServer::start().await;
    srv.put_file("a.txt", b"1");
    srv.put_file("z/b.txt", b"2");
    let (_, _, body) = get(&srv, "/?json", &[]).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(
        (v[0]["name"].as_str(), v[1]["name"].as_str()),
        (Some("z"), Some("a.txt"))
    );
    let resp = client().head(srv.url("/")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.bytes().await.unwrap().is_empty());
}

#[tokio::test]
async fn read_token_browsers_get_a_login_page_and_may_use_the_cookie() {
    let (srv, _) = ferry_tests::TestServer::start_tus(ferryd::tus::TusConfig {
        read_token: Some("r-tok".into()),
        ..Default::default()
    })
    .await;
    srv.put_file("a.txt", b"secret bytes");
    let html = [("accept", "text/html,application/xhtml+xml")];
    let (status, h, body) = get(&srv, "/", &html).await;
    assert_eq!(status, 401);
    assert_secured(&h);
    assert!(h["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    let page = String::from_utf8(body).unwrap();
    assert!(
        page.contains("login.js") && !page.contains("a.txt"),
        "{page}"
    );
    // The page's assets are public code; the files are not.
    let p = prefix_of(&page);
    assert_eq!(get(&srv, &format!("{p}login.js"), &[]).await.0, 200);
    let (status, _, body) = get(&srv, "/a.txt", &[]).await;
    assert_eq!(status, 401);
    assert!(
        !String::from_utf8(body).unwrap().contains("login"),
        "not a page for scripts"
    );
    let (status, _, body) = get(&srv, "/a.txt", &[("cookie", "x=1; ferry-read-token=r-tok")]).await;
    assert_eq!((status, body.as_slice()), (200, &b"secret bytes"[..]));
    let wrong = [("cookie", "ferry-read-token=nope"), ("accept", "text/html")];
    assert_eq!(get(&srv, "/", &wrong).await.0, 401);
    let (status, _, _) = get(&srv, "/?json", &[("cookie", "ferry-read-token=r-tok")]).await;
    assert_eq!(status, 200);
}

fn prefix_of(html: &str) -> String {
    let at = html.find("/.ferry-ui/").expect("assets linked");
    let end = at + html[at + 11..].find('/').unwrap() + 12;
    html[at..end].to_string()
}

#[tokio::test]
async fn cors_covers_files_and_assets_not_only_tus() {
    let (srv, _) = ferry_tests::TestServer::start_tus(ferryd::tus::TusConfig {
        cors_origins: vec!["https://app.example".into()],
        ..Default::default()
    })
    .await;
    srv.put_file("a.bin", b"0123456789");
    let origin = ("origin", "https://app.example");
    let (status, h, body) = get(&srv, "/a.bin", &[origin, ("range", "bytes=2-4")]).await;
    assert_eq!((status, body.as_slice()), (206, &b"234"[..]));
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let exposed = h["access-control-expose-headers"].to_str().unwrap();
    assert!(exposed.contains("Content-Range"), "{exposed}");
    let p = prefix(&srv).await;
    let (_, h, _) = get(&srv, &format!("{p}ferry.css"), &[origin]).await;
    assert_eq!(h["access-control-allow-origin"], "https://app.example");
    let pre = client()
        .request(reqwest::Method::OPTIONS, srv.url("/a.bin"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "range")
        .send()
        .await
        .unwrap();
    let allow = pre.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap();
    assert!(allow.contains("Range"), "{allow}");
    let (_, h, _) = get(&srv, "/a.bin", &[("origin", "https://evil.example")]).await;
    assert!(h.get("access-control-allow-origin").is_none());
}
