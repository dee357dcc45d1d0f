//! Listings on S3 (issue 11 point 2): delimiter listings read a page at a time and streamed in
//! the listing order (folders first, then by name), the same in HTML and JSON however many
//! pages the directory takes, hidden names and the store's state left out.

use ferry_tests::{client, Backend, TestServer};
use ferryd::app::StoreConfig;

use crate::s3::{gets_of, recording_proxy};

/// ferryd on S3 under `prefix` (a fresh one for `None`), listing `page` keys per request
/// (`None`: the server's default), through `proxy`.
async fn server(proxy: &str, prefix: Option<String>, page: Option<usize>) -> TestServer {
    let proxy = proxy.to_owned();
    let config = move |c: &mut ferryd::app::Config, _| {
        if let StoreConfig::S3(o) = &mut c.store {
            o.endpoint = Some(proxy);
            o.list_page = page;
            if let Some(p) = prefix {
                o.prefix = p;
            }
        }
    };
    TestServer::configured_on(Backend::S3, config).await
}

/// `(name, type)` of each entry of the JSON listing of `path`.
async fn json_listing(srv: &TestServer, path: &str) -> Vec<(String, String)> {
    let resp = client().get(srv.url(path)).send().await.unwrap();
    assert_eq!(resp.status(), 200, "{path}");
    let v: serde_json::Value = serde_json::from_slice(&resp.bytes().await.unwrap()).unwrap();
    v.as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let s = |k: &str| e[k].as_str().unwrap().to_owned();
            (s("name"), s("type"))
        })
        .collect()
}

/// The listing requests (delimiter listings) ferryd sent through the proxy so far.
fn listings(seen: &std::sync::Mutex<Vec<u8>>) -> usize {
    gets_of(&seen.lock().unwrap(), "delimiter=").len()
}

// 1030 files and four folders whose names fall among them: more than one page of S3's 1000
// keys (moto honours max-keys like S3), and with a page of 7 keys more files than the first
// walk holds, so they are listed in a second walk after the folders.
#[tokio::test]
async fn listings_of_many_pages_are_whole_in_order_and_hide_the_state() {
    let Some(endpoint) = ferry_tests::s3::endpoint() else {
        return;
    };
    let (proxy, seen) = recording_proxy(endpoint).await;
    let srv = server(&proxy, None, None).await;
    let opts = srv.s3.clone().unwrap();
    let mut objects: Vec<(String, Vec<u8>)> = (0..1030)
        .map(|i| (format!("d/f{i:04}.txt"), vec![b'x'; i % 7]))
        .collect();
    for rel in [
        "d/a/x",
        "d/f0500/x",
        "d/g/y",
        "d/zz/z",
        "d/.hidden/x",
        "d/.dot",
        ".ferry/uploads/u.info",
    ] {
        objects.push((rel.to_owned(), b"y".to_vec()));
    }
    ferry_tests::s3::put_many(&opts, objects).await;
    let mut want: Vec<(String, String)> = ["a", "f0500", "g", "zz"]
        .iter()
        .map(|d| (d.to_string(), "dir".to_owned()))
        .collect();
    want.extend((0..1030).map(|i| (format!("f{i:04}.txt"), "file".to_owned())));

    let paged = server(&proxy, Some(opts.prefix.clone()), Some(7)).await;
    for (srv, walks) in [(&srv, 1), (&paged, 2)] {
        let before = listings(&seen);
        assert_eq!(json_listing(srv, "/d/?json").await, want);
        let requests = listings(&seen) - before;
        // One walk of 1036 keys (hidden ones too) takes 2 pages of 1000, or 148 of 7.
        let one_walk = if walks == 1 { 2 } else { 148 };
        if walks == 1 {
            assert_eq!(requests, one_walk, "pages of 1000 keys");
        } else {
            assert!(requests > one_walk, "{requests} requests: no second walk");
        }
        let html = client()
            .get(srv.url("/d/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            html.contains("data-count=\"1034\""),
            "{}",
            &html[html.len() - 200..]
        );
        let at = |href: &str| html.find(&format!("href=\"{href}\"")).unwrap_or(usize::MAX);
        assert!(at("zz/") < at("f0000.txt") && at("f0000.txt") < at("f1029.txt"));
        assert!(at("f1029.txt") < usize::MAX, "the last file is listed");
        assert!(at(".hidden/") == usize::MAX && at(".dot") == usize::MAX);
        let root = json_listing(srv, "/?json").await;
        assert_eq!(root, [("d".to_owned(), "dir".to_owned())], "no .ferry");
    }
    // A prefix with nothing under it is no directory.
    let missing = client().get(paged.url("/nowhere/")).send().await.unwrap();
    assert_eq!(missing.status(), 404);
}
