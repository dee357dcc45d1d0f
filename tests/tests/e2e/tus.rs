//! ferryd tus 1.0.0 endpoint over real HTTP: every status code of the protocol and its
//! extensions, publish into the served tree, instant upload, auth and CORS. Third-party
//! clients (tuspy, tus-js-client) and the kill/restart test are in `interop`.

mod bounded;
mod core;
mod crash;
mod extensions;
mod ferry;
mod framing;
pub(crate) mod interop;
mod limits;
mod names;
mod owner;
mod staging;
mod tusd;

use std::time::Duration;

use ferry_proto::tus::encode_metadata;
use ferry_tests::{client, TestServer};
use ferryd::tus::TusConfig;
use reqwest::{Method, RequestBuilder, Response};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub(super) const TOKEN: &str = "s3cret-token";
pub(super) const OCTETS: &str = "application/offset+octet-stream";

pub(super) fn cfg() -> TusConfig {
    TusConfig {
        upload_token: Some(TOKEN.into()),
        max_size: Some(1 << 30),
        ..TusConfig::default()
    }
}

pub(super) async fn server() -> (TestServer, std::sync::Arc<ferryd::tus::Tus>) {
    TestServer::start_tus(cfg()).await
}

/// A tus request with the version and the token.
pub(super) fn tus(srv: &TestServer, method: Method, path: &str) -> RequestBuilder {
    client()
        .request(method, srv.url(path))
        .header("tus-resumable", "1.0.0")
        .bearer_auth(TOKEN)
}

pub(super) fn h(resp: &Response, name: &str) -> String {
    resp.headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default()
}

pub(super) fn meta(name: &str) -> String {
    encode_metadata([("filename", Some(name.as_bytes()))])
}

/// POST with a length and metadata; returns the upload path.
pub(super) async fn create(srv: &TestServer, len: u64, metadata: &str) -> String {
    let resp = tus(srv, Method::POST, "/files/")
        .header("upload-length", len.to_string())
        .header("upload-metadata", metadata)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201, "{:?}", resp.text().await);
    let loc = location(srv, &resp);
    assert!(loc.starts_with("/files/"), "{loc}");
    loc
}

/// The path of an absolute URL ferryd handed out (`Location`, `Ferry-Published`), after
/// checking that it is absolute and names the address the request went to.
pub(super) fn path_of(srv: &TestServer, url: &str) -> String {
    let origin = srv.url("");
    match url.strip_prefix(&origin) {
        Some(path) if path.starts_with('/') => path.to_string(),
        _ => panic!("expected an absolute URL on {origin}, got {url:?}"),
    }
}

/// The path of the absolute `Location` of a creation answer.
pub(super) fn location(srv: &TestServer, resp: &Response) -> String {
    path_of(srv, &h(resp, "location"))
}

/// The path of the absolute `Ferry-Published` of an answer.
pub(super) fn published(srv: &TestServer, resp: &Response) -> String {
    path_of(srv, &h(resp, "ferry-published"))
}

/// POST of a partial upload (concatenation) of `len` bytes; returns the upload path.
pub(super) async fn create_partial(srv: &TestServer, len: u64) -> String {
    let r = tus(srv, Method::POST, "/files/")
        .header("upload-length", len.to_string())
        .header("upload-concat", "partial")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    location(srv, &r)
}

pub(super) async fn patch(srv: &TestServer, loc: &str, offset: u64, data: &[u8]) -> Response {
    tus(srv, Method::PATCH, loc)
        .header("content-type", OCTETS)
        .header("upload-offset", offset.to_string())
        .body(data.to_vec())
        .send()
        .await
        .unwrap()
}

pub(super) async fn head(srv: &TestServer, loc: &str) -> Response {
    tus(srv, Method::HEAD, loc).send().await.unwrap()
}

/// Sends a raw HTTP/1.1 request and returns the whole reply as text.
pub(super) async fn raw(srv: &TestServer, head_text: &str, body: &[u8]) -> String {
    let mut s = tokio::net::TcpStream::connect(srv.addr).await.unwrap();
    s.write_all(head_text.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out))
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out).into_owned()
}
