//! `--hook-url`/`--hooks` against a real HTTP receiver in the test: pre-create rejects and
//! renames, post-events arrive in order after the receiver failed and recovered, a receiver
//! that is down does not hold an upload back, and queued events survive a restart.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_tests::{client, pattern, TestServer};
use ferryd::hooks::{HookConfig, Hooks};
use ferryd::server::ServerOptions;
use serde_json::Value;

use super::{server, upload, TOKEN};

/// Records every POST body; answers 503 to the first `fail` post-events; pre-create refuses
/// a `filename` of `forbidden` (403) and renames `rename-me` to `renamed.bin`.
#[derive(Default)]
struct Receiver {
    got: Mutex<Vec<Value>>,
    fail: AtomicU32,
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
    let cfg = HookConfig {
        url,
        events: events.iter().map(|s| s.to_string()).collect(),
    };
    let hooks = Hooks::new(cfg, dir).unwrap();
    let h = hooks.clone();
    let srv = server(ServerOptions::default(), move |app| {
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
