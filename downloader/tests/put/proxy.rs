//! Issue 9 §2 for `ferry put`: every tus request goes through the proxy `HTTP_PROXY` names
//! (Debian's tinyproxy on loopback; what it carried is read from its log). `get`'s
//! `proxy::*` tests cover CONNECT, `NO_PROXY` and `--proxy`, which come from the same client
//! builder.

use std::sync::atomic::Ordering;

use crate::support::{succeeded, Scratch};
use crate::tools::TinyProxy;
use crate::tus_server::{Config, TusServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_proxy_env_carries_every_tus_request_through_tinyproxy() {
    let Some(proxy) = TinyProxy::start() else {
        return;
    };
    let server = TusServer::start(Config::default()).await;
    let endpoint = server.endpoint();
    let s = Scratch::new((1 << 20) + 4321, 90);
    let mut cmd = s.command(&endpoint, &["-q", "--chunk-size", "256K"]);
    let others = [
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ];
    for var in others.into_iter().chain(["NO_PROXY", "no_proxy"]) {
        cmd.env_remove(var);
    }
    cmd.env("HTTP_PROXY", &proxy.url);
    let out = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    let location = succeeded(&out);
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    let carried = proxy.requests();
    assert_eq!(
        carried
            .iter()
            .filter(|l| **l == format!("POST {endpoint} HTTP/1.1"))
            .count(),
        1,
        "the creation went through the proxy: {carried:?}"
    );
    let patches = carried.iter().filter(|l| l.starts_with("PATCH ")).count();
    assert_eq!(patches, 5, "{carried:?}");
    assert_eq!(server.patches.load(Ordering::SeqCst), patches);
    assert!(
        carried.iter().all(|l| l.contains(&endpoint)),
        "absolute-form requests under {endpoint}: {carried:?}"
    );
}
