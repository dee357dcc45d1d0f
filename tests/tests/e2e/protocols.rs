//! HTTP/2: cleartext with prior knowledge (h2c) and over TLS chosen by ALPN.

use std::path::PathBuf;

use ferry_tests::{pattern, TestServer};
use ferryd::server::{tls_config, ServerOptions};
use ferryd::store::fs::FsOptions;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/tls")
        .join(name)
}

#[tokio::test]
async fn h2c_prior_knowledge_serves_ranges() {
    let srv = TestServer::start().await;
    let data = pattern(300_000, 5);
    srv.put_file("x.bin", &data);
    let c = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = c
        .get(srv.url("/x.bin"))
        .header("range", "bytes=100-199")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap(), &data[100..200]);
    let resp = c.get(srv.url("/x.bin")).send().await.unwrap();
    assert_eq!(resp.bytes().await.unwrap(), data);
}

#[tokio::test]
async fn tls_negotiates_h2_and_http11_by_alpn() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let tls = tls_config(&fixture("cert.pem"), &fixture("key.pem")).expect("tls config");
    let srv = TestServer::start_with(
        FsOptions::default(),
        ServerOptions {
            tls: Some(tls),
            ..Default::default()
        },
        |a| a,
    )
    .await;
    srv.put_file("x.bin", b"over tls");
    let ca = reqwest::Certificate::from_pem(&std::fs::read(fixture("ca.pem")).unwrap()).unwrap();
    let url = format!("https://localhost:{}/x.bin", srv.addr.port());
    let h2 = reqwest::Client::builder()
        .tls_certs_only([ca.clone()])
        .resolve("localhost", srv.addr)
        .build()
        .unwrap();
    let resp = h2.get(&url).send().await.unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN picked h2");
    assert_eq!(resp.bytes().await.unwrap(), &b"over tls"[..]);
    let h1 = reqwest::Client::builder()
        .tls_certs_only([ca])
        .http1_only()
        .resolve("localhost", srv.addr)
        .build()
        .unwrap();
    let resp = h1
        .get(&url)
        .header("range", "bytes=5-")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    assert_eq!(resp.status(), 206);
    assert_eq!(resp.bytes().await.unwrap(), &b"tls"[..]);
}
