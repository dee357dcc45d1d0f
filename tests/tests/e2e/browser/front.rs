//! A misbehaving HTTP front for the browser tests: forwards every request to ferryd and logs
//! (method, whether it carried `Upload-Checksum`, status), but does one thing wrong on the
//! first PATCH: flips one byte of its body, or answers it 503 with `Retry-After: 2`. The page
//! is opened through the front, so every request the browser makes passes it.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, StreamBody};
use hyper::body::{Frame, Incoming};

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// The byte at this offset of the first PATCH body long enough to hold it is inverted.
    FlipByte(u64),
    /// The first PATCH is read and answered 503 with `Retry-After: 2`.
    Busy,
}

/// What the front saw: (method, `Upload-Checksum` present, status it answered).
pub type Seen = Vec<(Method, bool, u16)>;

pub struct Front {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Front {
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct State {
    target: SocketAddr,
    fault: Fault,
    done: AtomicBool,
    client: reqwest::Client,
    seen: Arc<Mutex<Seen>>,
}

type Body = BoxBody<Bytes, std::io::Error>;

impl Front {
    pub async fn start(target: SocketAddr, fault: Fault) -> Self {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Seen::new()));
        let st = Arc::new(State {
            target,
            fault,
            done: AtomicBool::new(false),
            client: ferry_tests::client(),
            seen: seen.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let st = st.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| forward(st.clone(), req));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self { addr, seen, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }

    pub fn seen(&self) -> Seen {
        self.seen.lock().unwrap().clone()
    }
}

fn hop_by_hop(name: &header::HeaderName) -> bool {
    [
        header::CONNECTION,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
}

fn plain(status: u16, retry_after: Option<&'static str>, text: &'static str) -> Response<Body> {
    let mut resp = Response::new(
        Full::new(Bytes::from_static(text.as_bytes()))
            .map_err(|e| match e {})
            .boxed(),
    );
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    if let Some(v) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, v.parse().unwrap());
    }
    resp
}

async fn forward(st: Arc<State>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().clone();
    let summed = req.headers().contains_key("upload-checksum");
    let length: u64 = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    let mut flip = None;
    if method == Method::PATCH {
        match st.fault {
            Fault::Busy if !st.done.swap(true, Ordering::SeqCst) => {
                let _ = req.into_body().collect().await;
                st.seen.lock().unwrap().push((method, summed, 503));
                return Ok(plain(503, Some("2"), "busy for a moment"));
            }
            Fault::FlipByte(at) if at < length && !st.done.swap(true, Ordering::SeqCst) => {
                flip = Some(at)
            }
            _ => {}
        }
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let mut out = st
        .client
        .request(method.clone(), format!("http://{}{path}", st.target));
    for (k, v) in req.headers() {
        if !hop_by_hop(k) {
            out = out.header(k, v);
        }
    }
    if length > 0 {
        let mut pos = 0u64;
        let body = req.into_body().into_data_stream().map(move |chunk| {
            chunk.map(|b| {
                let end = pos + b.len() as u64;
                let b = match flip {
                    Some(at) if (pos..end).contains(&at) => {
                        let mut v = b.to_vec();
                        v[usize::try_from(at - pos).unwrap()] ^= 0xff;
                        Bytes::from(v)
                    }
                    _ => b,
                };
                pos = end;
                b
            })
        });
        out = out.body(reqwest::Body::wrap_stream(body));
    }
    let Ok(resp) = out.send().await else {
        st.seen.lock().unwrap().push((method, summed, 502));
        return Ok(plain(502, None, "ferryd did not answer"));
    };
    st.seen
        .lock()
        .unwrap()
        .push((method, summed, resp.status().as_u16()));
    let mut back = Response::builder().status(resp.status());
    for (k, v) in resp.headers() {
        if !hop_by_hop(k) {
            back = back.header(k, v);
        }
    }
    let body = resp
        .bytes_stream()
        .map(|r| r.map(Frame::data).map_err(std::io::Error::other));
    Ok(back
        .body(http_body_util::BodyExt::boxed(StreamBody::new(body)))
        .unwrap())
}
