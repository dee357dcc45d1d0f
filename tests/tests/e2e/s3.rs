//! What only the S3 store has to show (the download suite itself runs on both stores, see
//! `files::s3::…`): ferryd asks S3 for the bytes a response sends and no more.

use std::sync::{Arc, Mutex};

use ferry_tests::{client, pattern, Backend, TestServer};
use ferryd::app::StoreConfig;
use ferryd::server::ServerOptions;
use ferryd::store::fs::FsOptions;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A TCP proxy in front of the S3 server that keeps every request head ferryd sends.
pub(crate) async fn recording_proxy(upstream: &str) -> (String, Arc<Mutex<Vec<u8>>>) {
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let keep = seen.clone();
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let up = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut down_r, mut down_w) = down.into_split();
            let (mut up_r, mut up_w) = up.into_split();
            let keep = keep.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 16 * 1024];
                while let Ok(n) = down_r.read(&mut buf).await {
                    if n == 0 || up_w.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    keep.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
            });
        }
    });
    (url, seen)
}

/// The `Range` of every GET ferryd sent for `key` (`None` for a GET without one), not
/// counting its own state under `.ferry/` (the object's digest, `Repr-Digest`).
pub(crate) fn gets_of(seen: &[u8], key: &str) -> Vec<Option<String>> {
    let text = String::from_utf8_lossy(seen);
    text.split("\r\n\r\n")
        .filter(|head| {
            let line = head.lines().next().unwrap_or("");
            line.starts_with("GET ") && line.contains(key) && !line.contains("/.ferry/")
        })
        .map(|head| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("range").then(|| v.trim().to_owned())
            })
        })
        .collect()
}

// Issue 11 point 2: a ranged read asks S3 for that range only (RFC 9110 §14.2 on the way to
// S3 as on the way out), multipart ranges one GET each, a HEAD reads nothing, the whole
// object one GET without a Range.
#[tokio::test]
async fn ranged_downloads_ask_s3_for_those_bytes_only() {
    let Some(endpoint) = ferry_tests::s3::endpoint() else {
        return;
    };
    let (proxy, seen) = recording_proxy(endpoint).await;
    let config = move |c: &mut ferryd::app::Config, _| {
        if let StoreConfig::S3(o) = &mut c.store {
            o.endpoint = Some(proxy);
        }
    };
    let srv = TestServer::configured_on(Backend::S3, config).await;
    let data = pattern(1 << 20, 3);
    srv.put_file("big.bin", &data);
    let c = client();
    let get = |range: &'static str| c.get(srv.url("/big.bin")).header("range", range).send();
    let resp = get("bytes=1000-1999").await.unwrap();
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap(), &data[1000..2000]);
    let resp = get("bytes=0-9,500000-500009").await.unwrap();
    assert_eq!(resp.status(), 206);
    let _ = resp.bytes().await.unwrap();
    let resp = c.head(srv.url("/big.bin")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    // The whole object is asked for without a Range (moto copies a ranged body once more).
    let resp = get("bytes=0-").await.unwrap();
    assert_eq!(resp.status(), 206);
    assert!(resp.bytes().await.unwrap()[..] == data[..]);
    let mut got = gets_of(&seen.lock().unwrap(), "big.bin");
    got.sort();
    assert_eq!(
        got,
        [
            None,
            Some("bytes=0-9".to_owned()),
            Some("bytes=1000-1999".to_owned()),
            Some("bytes=500000-500009".to_owned()),
        ]
    );
}

/// A proxy in front of the S3 server that drops `If-None-Match` and `If-Match` from every
/// request: a stand-in for an S3-compatible server that ignores conditional writes.
async fn unconditional_proxy(upstream: &str) -> String {
    let upstream = upstream.trim_start_matches("http://").to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((down, _)) = listener.accept().await {
            let up = tokio::net::TcpStream::connect(&upstream).await.unwrap();
            let (mut down_r, mut down_w) = down.into_split();
            let (mut up_r, mut up_w) = up.into_split();
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = vec![0u8; 16 * 1024];
                loop {
                    // One request: its head, without the conditions, then its body.
                    let end = loop {
                        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            break at + 4;
                        }
                        match down_r.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
                    buf.drain(..end);
                    let mut body_len = 0usize;
                    let kept: Vec<&str> = head
                        .split("\r\n")
                        .filter(|l| {
                            let name = l.split(':').next().unwrap_or("").to_ascii_lowercase();
                            if name == "content-length" {
                                body_len = l[15..].trim().parse().unwrap_or(0);
                            }
                            name != "if-none-match" && name != "if-match"
                        })
                        .collect();
                    if up_w.write_all(kept.join("\r\n").as_bytes()).await.is_err() {
                        return;
                    }
                    while buf.len() < body_len {
                        match down_r.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let body: Vec<u8> = buf.drain(..body_len).collect();
                    if up_w.write_all(&body).await.is_err() {
                        return;
                    }
                }
            });
            tokio::spawn(async move {
                let _ = tokio::io::copy(&mut up_r, &mut down_w).await;
            });
        }
    });
    url
}

// Issue 11 points 4 and 6(e): the probe tells a server that honours conditional writes (moto)
// from one that ignores them (the same server behind a proxy that drops the conditions).
#[tokio::test]
async fn the_probe_tells_whether_the_server_honours_conditional_writes() {
    use ferryd::store::s3::{ConditionalWrites, S3Store};
    let Some(endpoint) = ferry_tests::s3::endpoint() else {
        return;
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let opts = ferry_tests::s3::fresh_options(false);
    let store = S3Store::new(&opts).unwrap();
    assert_eq!(
        store.probe_conditional_writes().await.unwrap(),
        ConditionalWrites::Honoured
    );
    let mut ignoring = opts.clone();
    ignoring.endpoint = Some(unconditional_proxy(endpoint).await);
    let store = S3Store::new(&ignoring).unwrap();
    assert_eq!(
        store.probe_conditional_writes().await.unwrap(),
        ConditionalWrites::Ignored
    );
    // The probe cleans up after itself: nothing is left in the state prefix.
    let state = object_store::path::Path::from(format!("{}/.ferry", opts.prefix));
    let left = opts
        .client()
        .unwrap()
        .list_with_delimiter(Some(&state))
        .await
        .unwrap();
    assert!(left.objects.is_empty(), "{:?}", left.objects);
}

// Issue 11 point 3: a tus upload into S3 through ferryd (`--single-instance`): parts of 8 MiB
// and a tail, the offset HEAD reports is the committed one, the finished upload appears under
// its name complete and is downloadable with Range, an existing name is never replaced.
#[tokio::test]
async fn a_tus_upload_into_s3_is_published_complete_and_never_replaces() {
    if !ferry_tests::s3::available() {
        return;
    }
    let srv = s3_tus_server().await;
    srv.put_file("up/data.bin", b"already here");
    let c = client();
    let opts = c
        .request(reqwest::Method::OPTIONS, srv.url("/files/"))
        .send()
        .await
        .unwrap();
    let exts = opts.headers()["tus-extension"].to_str().unwrap().to_owned();
    // Without --max-upload-size: what 10,000 parts of 8 MiB hold.
    assert_eq!(opts.headers()["tus-max-size"], "83886080000");
    assert!(
        exts.contains("termination") && exts.contains("concatenation,concatenation-unfinished"),
        "{exts}"
    );
    let data = pattern(20 << 20, 11);
    let created = c
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len().to_string())
        .header("upload-metadata", "filename ZGF0YS5iaW4=,dir dXA=")
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let loc = created.headers()["location"].to_str().unwrap().to_owned();
    let mut at = 0usize;
    for chunk in [9 << 20, 3 << 20, (20 << 20) - (12 << 20)] {
        let r = c
            .patch(&loc)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", at.to_string())
            .header("content-type", "application/offset+octet-stream")
            .body(data[at..at + chunk].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "{:?}", r.text().await);
        at += chunk;
        let head = c
            .head(&loc)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        assert_eq!(
            head.headers()["upload-offset"].to_str().unwrap(),
            at.to_string()
        );
    }
    let head = c
        .head(&loc)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    let published = head.headers()["ferry-published"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(published.ends_with("/up/data%20%281%29.bin"), "{published}");
    let got = c
        .get(&published)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(got[..] == data[..], "published bytes differ");
    let part = c
        .get(&published)
        .header("range", "bytes=9437180-9437199")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(&part.bytes().await.unwrap()[..], &data[9437180..9437200]);
    let kept = c.get(srv.url("/up/data.bin")).send().await.unwrap();
    assert_eq!(&kept.bytes().await.unwrap()[..], b"already here");
}

// Issue 11 points 4 and 6(e): at start ferryd asks the server whether it honours conditional
// writes. One that ignores them (moto behind a proxy that drops `If-None-Match`/`If-Match`)
// gets no uploads without `--single-instance`: 403 with the reason, never a 404 or a silent
// accept. With `--single-instance` (only this ferryd writes) the same server takes them.
#[tokio::test]
async fn a_server_that_ignores_conditional_writes_takes_uploads_only_with_single_instance() {
    let Some(endpoint) = ferry_tests::s3::endpoint() else {
        return;
    };
    let proxy = unconditional_proxy(endpoint).await;
    for single in [false, true] {
        let proxy = proxy.clone();
        let config = move |c: &mut ferryd::app::Config, _| {
            if let StoreConfig::S3(o) = &mut c.store {
                o.endpoint = Some(proxy);
                o.single_instance = single;
            }
            c.tus = Some(ferryd::tus::TusConfig::default());
        };
        let srv = TestServer::configured_on(Backend::S3, config).await;
        let r = client()
            .post(srv.url("/files/"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", "5")
            .send()
            .await
            .unwrap();
        if single {
            assert_eq!(r.status(), 201, "--single-instance takes uploads");
        } else {
            assert_eq!(r.status(), 403);
            let text = r.text().await.unwrap();
            assert!(
                text.contains("ignores conditional writes") && text.contains("--single-instance"),
                "{text}"
            );
        }
    }
}

/// ferryd on a fresh S3 prefix with `--single-instance` and public tus uploads.
/// Creates an upload named `name` with all of `data` in the creation request.
async fn upload_whole(srv: &TestServer, name: &str, data: &[u8]) -> reqwest::Response {
    client()
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len().to_string())
        .header(
            "upload-metadata",
            ferry_proto::tus::encode_metadata([("filename", Some(name.as_bytes()))]),
        )
        .header("content-type", "application/offset+octet-stream")
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
}

async fn s3_tus_server() -> TestServer {
    s3_tus_server_with(ferryd::tus::TusConfig::default())
        .await
        .0
}

/// [`s3_tus_server`] with `cfg` for its tus endpoint, and that endpoint.
async fn s3_tus_server_with(cfg: ferryd::tus::TusConfig) -> (TestServer, Arc<ferryd::tus::Tus>) {
    s3_tus_server_at(cfg, None).await
}

/// [`s3_tus_server_with`] talking to S3 at `endpoint` (a proxy in front of the test's S3
/// server), if given.
pub(crate) async fn s3_tus_server_at(
    cfg: ferryd::tus::TusConfig,
    endpoint: Option<String>,
) -> (TestServer, Arc<ferryd::tus::Tus>) {
    let config = move |c: &mut ferryd::app::Config, _| {
        if let StoreConfig::S3(o) = &mut c.store {
            o.single_instance = true;
            if endpoint.is_some() {
                o.endpoint = endpoint;
            }
        }
        c.tus = Some(cfg);
    };
    let slot = Arc::new(Mutex::new(None));
    let keep = slot.clone();
    let srv = TestServer::launch_on(
        Backend::S3,
        FsOptions::default(),
        ServerOptions::default(),
        config,
        move |app, _| {
            *keep.lock().unwrap() = app.tus.clone();
            app
        },
    )
    .await;
    let tus = slot.lock().unwrap().take().expect("tus configured");
    (srv, tus)
}

/// The names left in the S3 store's upload staging of `srv`.
async fn staging_names(srv: &TestServer) -> Vec<String> {
    const STAGING: &str = ".ferry/uploads/";
    let opts = srv.s3.as_ref().unwrap();
    ferry_tests::s3::names_under(opts, STAGING.trim_end_matches('/'))
        .await
        .into_iter()
        .map(|n| n.strip_prefix(STAGING).unwrap_or(&n).to_owned())
        .collect()
}

// Issue 11 point 3 on S3: a chunk whose checksum does not match is dropped (460, the offset
// stays), the matching one is taken; termination aborts the multipart upload and removes its
// tail, leaving only the tombstone records.
#[tokio::test]
async fn on_s3_a_refused_checksum_keeps_the_offset_and_termination_leaves_only_records() {
    if !ferry_tests::s3::available() {
        return;
    }
    let srv = s3_tus_server().await;
    let c = client();
    let create = |len: usize| {
        c.post(srv.url("/files/"))
            .header("tus-resumable", "1.0.0")
            .header("upload-length", len.to_string())
            .header("upload-metadata", "filename aC50eHQ=")
            .send()
    };
    let patch = |loc: &str, at: usize, body: Vec<u8>, sum: Option<&'static str>| {
        let mut r = c
            .patch(loc)
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", at.to_string())
            .header("content-type", "application/offset+octet-stream");
        if let Some(sum) = sum {
            r = r.header("upload-checksum", sum);
        }
        r.body(body).send()
    };
    let offset = |loc: String| async {
        let h = c
            .head(loc)
            .header("tus-resumable", "1.0.0")
            .send()
            .await
            .unwrap();
        h.headers()
            .get("upload-offset")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_else(|| h.status().to_string())
    };
    let r = create(5).await.unwrap();
    let small = r.headers()["location"].to_str().unwrap().to_owned();
    let wrong = patch(
        &small,
        0,
        b"hello".to_vec(),
        Some("sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA="),
    );
    assert_eq!(wrong.await.unwrap().status().as_u16(), 460);
    assert_eq!(
        offset(small.clone()).await,
        "0",
        "the refused chunk did not count"
    );
    let right = patch(
        &small,
        0,
        b"hello".to_vec(),
        Some("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00="),
    );
    assert_eq!(right.await.unwrap().status(), 204);
    let got = c.get(srv.url("/h.txt")).send().await.unwrap();
    assert_eq!(&got.bytes().await.unwrap()[..], b"hello");

    let r = create(10 << 20).await.unwrap();
    let big = r.headers()["location"].to_str().unwrap().to_owned();
    let r = patch(&big, 0, pattern(9 << 20, 5), None).await.unwrap();
    assert_eq!(r.status(), 204);
    let id = big.rsplit('/').next().unwrap().to_owned();
    let tail = format!("{id}.tail.{}.", 8 << 20);
    assert!(
        staging_names(&srv)
            .await
            .iter()
            .any(|n| n.starts_with(&tail)),
        "a part cut, the rest kept as the tail: {:?}",
        staging_names(&srv).await
    );
    let del = c
        .delete(&big)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(del.status(), 204);
    assert_eq!(offset(big.clone()).await, "410 Gone");
    let small_id = small.rsplit('/').next().unwrap();
    let mut want = vec![format!("{id}.info"), format!("{small_id}.info")];
    want.sort();
    assert_eq!(
        staging_names(&srv).await,
        want,
        "no tail, no data object left"
    );
}

// Issue 11 point 3 on S3: an expired upload answers 410 and the reaper aborts its multipart
// upload and removes its tail (one pass), then forgets the tombstone (a later pass).
#[tokio::test]
async fn on_s3_the_reaper_frees_an_expired_upload() {
    if !ferry_tests::s3::available() {
        return;
    }
    // Long enough that a loaded machine (load 15+) still sends the PATCH before the upload
    // expires and still sees the tombstone before the next expiry forgets it.
    let cfg = ferryd::tus::TusConfig {
        expiry: std::time::Duration::from_millis(3000),
        ..ferryd::tus::TusConfig::default()
    };
    let (srv, tus) = s3_tus_server_with(cfg).await;
    let c = client();
    let r = c
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", (10 << 20).to_string())
        .send()
        .await
        .unwrap();
    let loc = r.headers()["location"].to_str().unwrap().to_owned();
    let r = c
        .patch(&loc)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", "0")
        .header("content-type", "application/offset+octet-stream")
        .body(pattern(9 << 20, 3))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let id = loc.rsplit('/').next().unwrap().to_owned();
    assert_eq!(staging_names(&srv).await.len(), 3, "record, part and tail");
    // Real time: expiry is wall-clock based.
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    let head = c
        .head(&loc)
        .header("tus-resumable", "1.0.0")
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 410);
    // Reaped by this pass or by the background reaper (which may hold the upload now).
    tus.reap_once().await.unwrap();
    let only = |want: Vec<String>| {
        let srv = &srv;
        move || {
            let want = want.clone();
            async move { (staging_names(srv).await == want).then_some(()) }
        }
    };
    assert!(
        ferry_tests::poll(only(vec![format!("{id}.info")]))
            .await
            .is_some(),
        "only the tombstone: {:?}",
        staging_names(&srv).await
    );
    tokio::time::sleep(std::time::Duration::from_millis(3100)).await;
    tus.reap_once().await.unwrap();
    assert!(
        ferry_tests::poll(only(Vec::new())).await.is_some(),
        "the tombstone is forgotten: {:?}",
        staging_names(&srv).await
    );
}

// Issue 11 points 3 and 4: the content index lives in the bucket. Content published through
// one ferryd is an instant upload through another serving the same prefix: the creation
// with its sha256 is complete at once (no PATCH), and both serve the copy.
#[tokio::test]
async fn an_instant_upload_through_a_second_instance_uses_the_index_in_the_bucket() {
    if !ferry_tests::s3::available() {
        return;
    }
    let a = s3_tus_server().await;
    let shared = a.s3.clone().expect("s3");
    let config = move |c: &mut ferryd::app::Config, _| {
        c.store = StoreConfig::S3(ferryd::store::s3::S3Options {
            single_instance: true,
            ..shared
        });
        c.tus = Some(ferryd::tus::TusConfig::default());
    };
    let b = TestServer::configured_on(Backend::S3, config).await;
    let c = client();
    let data = pattern(3 << 20, 61);
    let first = upload_whole(&a, "one.bin", &data).await;
    assert_eq!(first.status(), 201);
    assert_eq!(
        first.headers()["upload-offset"].to_str().unwrap(),
        data.len().to_string()
    );
    let len = data.len() as u64;
    assert!(
        ferry_tests::s3::instant_candidate(&b.url("/files/"), None, len).await,
        "the second instance never saw the first one's upload in the index"
    );
    let second = ferry_tests::create_instant(&b.url("/files/"), None, "two.bin", &data).await;
    assert_eq!(second.status(), 201);
    assert_eq!(
        second.headers()["upload-offset"].to_str().unwrap(),
        data.len().to_string(),
        "complete at creation"
    );
    // The copy carries the digest of the version it was copied from at once (issue 12: the
    // copy is not read back to be hashed).
    let want = {
        use base64::Engine as _;
        let sha = <sha2::Sha256 as sha2::Digest>::digest(&data);
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(sha)
        )
    };
    for srv in [&a, &b] {
        let got = c.get(srv.url("/two.bin")).send().await.unwrap();
        assert_eq!(got.status(), 200);
        let digest = got
            .headers()
            .get("repr-digest")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            digest.as_deref(),
            Some(want.as_str()),
            "Repr-Digest of the copy"
        );
        assert!(
            got.bytes().await.unwrap()[..] == data[..],
            "copied bytes differ"
        );
    }
}

/// The `Repr-Digest` a HEAD of `url` answers with, if any.
async fn repr_digest(url: &str) -> Option<String> {
    let r = client().head(url).send().await.ok()?;
    r.headers()
        .get("repr-digest")
        .map(|v| v.to_str().unwrap().to_owned())
}

// Issues 11 and 12: a file published into S3 is served with the `Repr-Digest` of its content
// once ferryd has hashed it (in the background, for the content index in the bucket), on
// whole and ranged responses, and by another instance on the prefix; an object replaced by
// other means is never served with the old digest (it is tied to the hashed version's ETag).
#[tokio::test]
async fn s3_downloads_carry_the_repr_digest_of_the_hashed_version() {
    use base64::Engine as _;
    if !ferry_tests::s3::available() {
        return;
    }
    let a = s3_tus_server().await;
    let data = pattern(3 << 20, 62);
    let r = upload_whole(&a, "dig.bin", &data).await;
    assert_eq!(r.status(), 201);
    let want = format!(
        "sha-256=:{}:",
        base64::engine::general_purpose::STANDARD
            .encode(<sha2::Sha256 as sha2::Digest>::digest(&data))
    );
    // Hashed in the background after publishing (a read of the object back from S3).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let mut got = repr_digest(&a.url("/dig.bin")).await;
    while got.is_none() && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        got = repr_digest(&a.url("/dig.bin")).await;
    }
    assert_eq!(got.as_deref(), Some(want.as_str()), "HEAD");
    let ranged = client()
        .get(a.url("/dig.bin"))
        .header("range", "bytes=10-4105")
        .send()
        .await
        .unwrap();
    assert_eq!(ranged.status(), 206);
    assert_eq!(ranged.headers()["repr-digest"].to_str().unwrap(), want);
    let opts = a.s3.clone().expect("s3");
    let b = TestServer::launch_on(
        Backend::S3,
        FsOptions::default(),
        ServerOptions::default(),
        {
            let opts = opts.clone();
            move |c: &mut ferryd::app::Config, _| c.store = StoreConfig::S3(opts)
        },
        |app, _| app,
    )
    .await;
    assert_eq!(
        repr_digest(&b.url("/dig.bin")).await,
        Some(want),
        "another instance"
    );
    // Replaced behind ferryd's back: the digest of the old version is not sent.
    ferry_tests::s3::put(&opts, "dig.bin", b"something else");
    let r = client().get(a.url("/dig.bin")).send().await.unwrap();
    assert!(
        r.headers().get("repr-digest").is_none(),
        "{:?}",
        r.headers()
    );
    assert_eq!(&r.bytes().await.unwrap()[..], b"something else");
}

// Issue 11 point 7(ii): an upload hashed as it arrived is indexed at its publish without
// reading the published object back. PATCHes alternate between two instances (each one
// takes the upload over; the hash state goes along in the record), one chunk is refused by
// its checksum on the way (the state goes back with the record); once the last PATCH is
// answered, both instances send the right `Repr-Digest` and an instant upload of the content
// works, and ferryd never sent S3 a GET of the published object.
#[tokio::test]
async fn an_upload_over_patches_to_two_instances_is_indexed_without_a_read_back() {
    use ferry_proto::tus::encode_metadata;
    let Some(endpoint) = ferry_tests::s3::endpoint() else {
        return;
    };
    let (proxy, seen) = recording_proxy(endpoint).await;
    let opts = ferryd::store::s3::S3Options {
        endpoint: Some(proxy),
        ..ferry_tests::s3::fresh_options(false)
    };
    let instance = || {
        let opts = opts.clone();
        TestServer::configured_on(Backend::S3, move |c: &mut ferryd::app::Config, _| {
            c.store = StoreConfig::S3(opts);
            c.tus = Some(ferryd::tus::TusConfig::default());
        })
    };
    let (a, b) = (instance().await, instance().await);
    let c = client();
    let data = pattern((17 << 20) + 4321, 63);
    let created = c
        .post(a.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .header("upload-length", data.len().to_string())
        .header(
            "upload-metadata",
            encode_metadata([("filename", Some(&b"hashed.bin"[..]))]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.headers()["location"].to_str().unwrap();
    let id = id.rsplit('/').next().unwrap().to_owned();
    let patch = |srv: &TestServer, at: usize, body: Vec<u8>, sum: Option<&'static str>| {
        let mut r = c
            .patch(srv.url(&format!("/files/{id}")))
            .header("tus-resumable", "1.0.0")
            .header("upload-offset", at.to_string())
            .header("content-type", "application/offset+octet-stream");
        if let Some(sum) = sum {
            r = r.header("upload-checksum", sum);
        }
        r.body(body).send()
    };
    let cuts = [0, (9 << 20) + 5, (13 << 20) + 1, data.len()];
    let wrong = Some("sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    for (i, w) in cuts.windows(2).enumerate() {
        let srv = if i % 2 == 0 { &a } else { &b };
        if i == 1 {
            // A chunk that leaves a part for S3 before its checksum is found wrong.
            let r = patch(srv, w[0], data[w[0]..].to_vec(), wrong)
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 460);
        }
        let r = patch(srv, w[0], data[w[0]..w[1]].to_vec(), None)
            .await
            .unwrap();
        assert_eq!(r.status(), 204, "PATCH {i}");
    }
    let want = {
        use base64::Engine as _;
        let sha = <sha2::Sha256 as sha2::Digest>::digest(&data);
        format!(
            "sha-256=:{}:",
            base64::engine::general_purpose::STANDARD.encode(sha)
        )
    };
    // At once: the index entry is written by the publish, not by a read-back later.
    for srv in [&a, &b] {
        assert_eq!(
            repr_digest(&srv.url("/hashed.bin")).await.as_deref(),
            Some(want.as_str())
        );
    }
    let instant = ferry_tests::create_instant(&b.url("/files/"), None, "again.bin", &data).await;
    assert_eq!(instant.status(), 201);
    assert_eq!(
        instant.headers()["upload-offset"].to_str().unwrap(),
        data.len().to_string(),
        "complete at creation"
    );
    assert_eq!(
        gets_of(&seen.lock().unwrap(), "/hashed.bin"),
        Vec::<Option<String>>::new(),
        "the published object was read back"
    );
    for name in ["/hashed.bin", "/again.bin"] {
        let got = c.get(a.url(name)).send().await.unwrap().bytes().await;
        assert!(got.unwrap()[..] == data[..], "{name}: bytes differ");
    }
}
