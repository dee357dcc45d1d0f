//! `--hook-url`/`--hooks` against a real HTTP receiver in the test: pre-create rejects and
//! renames, post-events arrive in order after the receiver failed and recovered, a receiver
//! that is down does not hold an upload back, and queued events survive a restart. Events that
//! fire in background tasks name their request, hooks see the client `--behind-proxy` names,
//! and a receiver failing one upload's events does not hold back another's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_tests::{client, pattern, TestServer};
use ferryd::hooks::{HookConfig, Hooks};
use ferryd::server::ServerOptions;
use serde_json::Value;

use super::{server, upload, TOKEN};

/// Records every POST body; answers 503 to the first `fail` post-events, and to every
/// post-event of an upload named `stuck` while `stuck` is set; pre-create refuses a
/// `filename` of `forbidden` (403) and renames `rename-me` to `renamed.bin`.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Value>>,
    fail: AtomicU32,
    stuck: AtomicBool,
}

async fn receiver(fail: u32) -> (SocketAddr, Arc<Receiver>) {
    let r = Arc::new(Receiver::default());
    r.fail.store(fail, Ordering::SeqCst);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let rr = r.clone();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = l.accept().await.unwrap();
            let rr = rr.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| answer(rr.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, r)
}

async fn answer(
    r: Arc<Receiver>,
    req: http::Request<hyper::body::Incoming>,
) -> Result<http::Response<http_body_util::Full<Bytes>>, std::convert::Infallible> {
    use http_body_util::BodyExt as _;
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let v: Value = serde_json::from_slice(&body).unwrap();
    let reply = |status: u16, text: &str| {
        let mut resp =
            http::Response::new(http_body_util::Full::new(Bytes::from(text.to_string())));
        *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
        Ok(resp)
    };
    if v["event"] == "pre-create" {
        r.got.lock().unwrap().push(v.clone());
        return match v["upload"]["metadata"]["filename"].as_str() {
            Some("forbidden") => reply(403, "no forbidden files here"),
            Some("rename-me") => reply(200, r#"{"metadata":{"filename":"renamed.bin"}}"#),
            _ => reply(200, ""),
        };
    }
    let stuck = v["upload"]["metadata"]["filename"] == "stuck";
    if stuck && r.stuck.load(Ordering::SeqCst) {
        return reply(500, "cannot take this one now");
    }
    if r.fail.load(Ordering::SeqCst) > 0 {
        r.fail.fetch_sub(1, Ordering::SeqCst);
        return reply(503, "down for a moment");
    }
    r.got.lock().unwrap().push(v);
    reply(204, "")
}

async fn with_hooks(
    url: String,
    events: &[&str],
    dir: &std::path::Path,
) -> (TestServer, Arc<Hooks>) {
    with_hooks_proxied(url, events, dir, false).await
}

async fn with_hooks_proxied(
    url: String,
    events: &[&str],
    dir: &std::path::Path,
    behind_proxy: bool,
) -> (TestServer, Arc<Hooks>) {
    let cfg = HookConfig {
        url,
        events: events.iter().map(|s| s.to_string()).collect(),
    };
    let hooks = Hooks::new(cfg, dir).unwrap();
    let h = hooks.clone();
    let srv = server(ServerOptions::default(), move |app| {
        app.frontend.behind_proxy = behind_proxy;
        let tus = app.tus.as_ref().unwrap();
        tokio::spawn(h.queue().clone().run());
        tus.events.subscribe(h.clone());
        let _ = tus.hooks.set(h);
    })
    .await;
    (srv, hooks)
}

fn post(srv: &TestServer, name: &str) -> reqwest::RequestBuilder {
    let meta = ferry_proto::tus::encode_metadata([("filename", Some(name.as_bytes()))]);
    client()
        .post(srv.url("/files/"))
        .header("tus-resumable", "1.0.0")
        .bearer_auth(TOKEN)
        .header("upload-length", "10")
        .header("upload-metadata", meta)
}

#[tokio::test]
async fn pre_create_refuses_and_renames_and_post_events_survive_a_failing_receiver() {
    let (addr, rx) = receiver(2).await;
    let qdir = tempfile::tempdir().unwrap();
    let events = ["pre-create", "post-create", "post-finish"];
    let (srv, hooks) = with_hooks(format!("http://{addr}/hook"), &events, qdir.path()).await;

    let r = post(&srv, "forbidden").send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("no forbidden files here"));

    let data = pattern(4000, 9);
    let loc = upload(&srv, "rename-me", &data).await;
    let id = loc.rsplit('/').next().unwrap().to_string();
    assert_eq!(
        std::fs::read(srv.root.path().join("renamed.bin")).unwrap(),
        data
    );

    // The receiver answered 503 twice: retried with backoff (1 s, 2 s), then delivered.
    let deadline = Instant::now() + Duration::from_secs(20);
    while hooks.queue().delivered() < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let got = rx.got.lock().unwrap().clone();
    let names: Vec<&str> = got.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["pre-create", "pre-create", "post-create", "post-finish"],
        "{got:#?}"
    );
    let (created, finished) = (&got[2], &got[3]);
    assert_eq!(created["upload"]["id"], id.as_str());
    assert_eq!(created["upload"]["metadata"]["filename"], "renamed.bin");
    assert_eq!(finished["upload"]["id"], id.as_str());
    assert_eq!(finished["upload"]["offset"], 4000);
    assert_eq!(finished["upload"]["length"], 4000);
    assert_eq!(finished["upload"]["published"], "renamed.bin");
    let pre = &got[1];
    assert_eq!(pre["request"]["remote_addr"], "127.0.0.1");
    assert_eq!(pre["request"]["headers"]["authorization"], "REDACTED");
    assert_eq!(pre["upload"]["metadata"]["filename"], "rename-me");
    assert!(
        !serde_json::to_string(&got).unwrap().contains(TOKEN),
        "token leaked to the hook"
    );
    let left = std::fs::read_dir(qdir.path()).unwrap().count();
    assert_eq!(left, 0, "delivered events stay queued");
}

#[tokio::test]
async fn a_hook_server_that_is_down_holds_no_upload_back_and_the_queue_survives_a_restart() {
    // Nothing listens on this port.
    let dead = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead_url = format!("http://{}/hook", dead.local_addr().unwrap());
    drop(dead);
    let qdir = tempfile::tempdir().unwrap();
    let (srv, hooks) = with_hooks(dead_url, &["post-finish"], qdir.path()).await;
    let started = Instant::now();
    let loc = upload(&srv, "a.bin", &pattern(1000, 1)).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "upload waited for the hook"
    );
    let queued = std::fs::read_dir(qdir.path()).unwrap().count();
    assert_eq!(queued, 1, "the event is not queued durably");
    srv.stop().await;
    drop(hooks);

    // "Restart": a new queue on the same directory, with the receiver up now.
    let (addr, rx) = receiver(0).await;
    let client = ferry_tests::client();
    let q =
        ferryd::hooks::queue::Queue::open(qdir.path(), format!("http://{addr}/"), client).unwrap();
    tokio::spawn(q.clone().run());
    let delivered = ferry_tests::poll(|| async { (q.delivered() == 1).then_some(()) }).await;
    assert!(
        delivered.is_some(),
        "queued event not delivered after the restart"
    );
    let got = rx.got.lock().unwrap().clone();
    assert_eq!(got[0]["event"], "post-finish");
    assert_eq!(got[0]["upload"]["id"], loc.rsplit('/').next().unwrap());
}

/// The events received so far whose `upload.metadata.filename` is `name`, by event name.
fn events_of(rx: &Receiver, name: &str) -> Vec<Value> {
    let got = rx.got.lock().unwrap();
    got.iter()
        .filter(|v| v["upload"]["metadata"]["filename"] == name)
        .cloned()
        .collect()
}

/// Waits (up to `secs`) until `rx` has `n` events for `name`.
async fn wait_for(rx: &Receiver, name: &str, n: usize, secs: u64) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let got = events_of(rx, name);
        if got.len() >= n || Instant::now() > deadline {
            return got;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits (up to 10 s) until the queue has delivered `n` events (the receiver records an event
/// before it answers, the queue counts it after the answer).
async fn delivered(hooks: &Hooks, n: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    while hooks.queue().delivered() < n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    hooks.queue().delivered()
}

fn tus(c: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    c.header("tus-resumable", "1.0.0").bearer_auth(TOKEN)
}

/// Regression (issue 14 point 3): a PATCH's finish runs in a task of its own, and a final
/// upload waiting for its parts is concatenated in a task the last part's PATCH spawns; both
/// post-finish events had `request: null`. They name the request that caused them now.
#[tokio::test]
async fn post_finish_from_background_tasks_names_the_request_that_caused_it() {
    let (addr, rx) = receiver(0).await;
    let qdir = tempfile::tempdir().unwrap();
    let (srv, hooks) =
        with_hooks(format!("http://{addr}/hook"), &["post-finish"], qdir.path()).await;
    upload(&srv, "plain.bin", &pattern(3000, 5)).await;

    let c = client();
    let mut parts = Vec::new();
    for _ in 0..2 {
        let r = tus(c.post(srv.url("/files/")))
            .header("upload-length", "5")
            .header("upload-concat", "partial")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        parts.push(r.headers()["location"].to_str().unwrap().to_string());
    }
    let patch = |loc: &str, marker: &str| {
        tus(c.patch(loc))
            .header("content-type", "application/offset+octet-stream")
            .header("upload-offset", "0")
            .header("x-request-marker", marker)
            .body(b"12345".to_vec())
    };
    assert_eq!(
        patch(&parts[0], "first").send().await.unwrap().status(),
        204
    );
    let meta = ferry_proto::tus::encode_metadata([("filename", Some(&b"joined.bin"[..]))]);
    let r = tus(c.post(srv.url("/files/")))
        .header("upload-concat", format!("final;{} {}", parts[0], parts[1]))
        .header("upload-metadata", meta)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status(),
        201,
        "the final upload waits for its second part"
    );
    assert_eq!(
        patch(&parts[1], "last-part").send().await.unwrap().status(),
        204
    );

    let plain = wait_for(&rx, "plain.bin", 1, 10).await;
    let joined = wait_for(&rx, "joined.bin", 1, 10).await;
    assert_eq!(delivered(&hooks, 2).await, 2, "{plain:#?} {joined:#?}");
    let req = &plain[0]["request"];
    assert_eq!(req["remote_addr"], "127.0.0.1", "{:#?}", plain[0]);
    assert_eq!(
        req["headers"]["upload-offset"], "0",
        "the PATCH's own headers"
    );
    assert_eq!(req["headers"]["authorization"], "REDACTED");
    let req = &joined[0]["request"];
    assert_eq!(joined[0]["upload"]["published"], "joined.bin");
    assert_eq!(req["remote_addr"], "127.0.0.1", "{:#?}", joined[0]);
    assert_eq!(req["headers"]["x-request-marker"], "last-part");
    assert_eq!(req["headers"]["authorization"], "REDACTED");
    assert!(!serde_json::to_string(&*rx.got.lock().unwrap())
        .unwrap()
        .contains(TOKEN));
}

/// Regression (issue 14 point 3): hooks saw the TCP peer, not the client `--behind-proxy`
/// names (the access log already used the latter).
#[tokio::test]
async fn behind_a_proxy_hooks_see_the_client_address_the_access_log_uses() {
    let (addr, rx) = receiver(0).await;
    let qdir = tempfile::tempdir().unwrap();
    let events = ["pre-create", "post-create", "post-finish"];
    let url = format!("http://{addr}/hook");
    let (srv, hooks) = with_hooks_proxied(url, &events, qdir.path(), true).await;
    let meta = ferry_proto::tus::encode_metadata([("filename", Some(&b"proxied.bin"[..]))]);
    let r = tus(client().post(srv.url("/files/")))
        .header("upload-length", "0")
        .header("upload-metadata", meta)
        .header("x-forwarded-for", "203.0.113.9, 10.0.0.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let got = wait_for(&rx, "proxied.bin", 3, 10).await;
    let names: Vec<&str> = got.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["pre-create", "post-create", "post-finish"],
        "{got:#?}"
    );
    for v in &got {
        assert_eq!(v["request"]["remote_addr"], "203.0.113.9", "{v:#?}");
    }
    assert_eq!(delivered(&hooks, 2).await, 2);
}

/// Regression (issue 14 point 3, "in order per upload"): one event the receiver keeps refusing
/// held back every later event of every upload. Now it holds back only its own upload's.
#[tokio::test]
async fn a_failing_event_holds_back_only_its_own_upload() {
    let (addr, rx) = receiver(0).await;
    rx.stuck.store(true, Ordering::SeqCst);
    let qdir = tempfile::tempdir().unwrap();
    let events = ["post-create", "post-finish"];
    let (srv, hooks) = with_hooks(format!("http://{addr}/hook"), &events, qdir.path()).await;
    upload(&srv, "stuck", &pattern(100, 1)).await;
    upload(&srv, "free.bin", &pattern(100, 2)).await;

    let free = wait_for(&rx, "free.bin", 2, 10).await;
    let names: Vec<&str> = free.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["post-create", "post-finish"],
        "held back by another upload"
    );
    assert!(events_of(&rx, "stuck").is_empty());
    assert_eq!(delivered(&hooks, 2).await, 2);
    let queued = std::fs::read_dir(qdir.path()).unwrap().count();
    assert_eq!(queued, 2, "the refused upload's events stay queued");

    // The receiver recovers: the held upload's events follow, still in order.
    rx.stuck.store(false, Ordering::SeqCst);
    let stuck = wait_for(&rx, "stuck", 2, 30).await;
    let names: Vec<&str> = stuck.iter().map(|v| v["event"].as_str().unwrap()).collect();
    assert_eq!(names, ["post-create", "post-finish"]);
    assert_eq!(delivered(&hooks, 4).await, 4);
}
