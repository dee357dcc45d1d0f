//! A small in-memory tus 1.0 server for the `ferry put` tests: core, creation, checksum
//! (sha256/crc32), concatenation, termination and ferry's instant upload, with knobs to
//! misbehave (injected 409/460/503, slow PATCHes) and to stop and restart on the same port
//! while keeping its uploads, as a restarted ferryd keeps them on disk.
//!
//! A PATCH without `Upload-Checksum` keeps whatever part of its body arrived, as tusd and
//! ferryd do; with a checksum the chunk is verified whole and discarded on mismatch (460).

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use ferry::put::client::FERRY_PUBLISHED;
use ferry_proto::tus::{
    decode_metadata, MetadataPair, FERRY_INSTANT_CANDIDATE, FERRY_INSTANT_LENGTH,
    TUS_CHECKSUM_ALGORITHM, TUS_EXTENSION, TUS_MAX_SIZE, TUS_RESUMABLE, TUS_VERSION,
    UPLOAD_CHECKSUM, UPLOAD_CONCAT, UPLOAD_LENGTH, UPLOAD_METADATA, UPLOAD_OFFSET,
};
use http::header::{AUTHORIZATION, LOCATION};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;
use tokio::sync::watch;

#[derive(Debug, Clone, Default)]
pub struct Config {
    pub concatenation: bool,
    pub checksum: bool,
    pub instant: bool,
    pub token: Option<String>,
    /// The exact `Authorization` every request but OPTIONS must carry (e.g. Basic).
    pub authorization: Option<String>,
    /// Advertised as `Tus-Max-Size`.
    pub max_size: Option<u64>,
    /// Answer OPTIONS with this status instead (405: a proxy that refuses OPTIONS).
    pub options_status: Option<u16>,
    /// concatenation-unfinished, as ferryd does it: a final upload may name unfinished parts;
    /// it is joined on a HEAD once they are complete, and the parts are then retired (410).
    pub unfinished: bool,
    /// Refuse PATCH bodies larger than this with 413, as nginx does in front of a server
    /// (`client_max_body_size`, 1 MiB by default): the body is read and dropped first, so
    /// the client sees the answer.
    pub max_body: Option<u64>,
}

impl Config {
    /// Everything ferryd offers: concatenation (also unfinished), checksum, instant upload.
    pub fn full() -> Self {
        Self {
            concatenation: true,
            checksum: true,
            instant: true,
            unfinished: true,
            ..Self::default()
        }
    }
}

#[derive(Debug, Clone)]
struct Upload {
    length: u64,
    data: Vec<u8>,
    metadata: Option<String>,
    /// A final upload still waiting for these parts (concatenation-unfinished).
    waiting_for: Option<Vec<String>>,
}

#[derive(Default)]
pub struct TusServer {
    pub cfg: Config,
    uploads: Mutex<HashMap<String, Upload>>,
    /// Parts whose bytes went into a final upload: 410 from then on.
    retired: Mutex<std::collections::HashSet<String>>,
    /// sha256 hex → content of every completed upload (the instant-upload index).
    known: Mutex<HashMap<String, Vec<u8>>>,
    /// PATCHes refused with 413 because of `max_body`.
    pub refused: AtomicUsize,
    /// The largest `Content-Length` of a PATCH that was not refused.
    pub largest_patch: AtomicU64,
    /// PATCH body bytes received, over all uploads.
    pub patch_bytes: AtomicU64,
    pub patches: AtomicUsize,
    pub creations: AtomicUsize,
    /// OPTIONS requests that asked `Ferry-Instant-Length` (and got an answer).
    pub probes: AtomicUsize,
    /// Statuses to answer the next PATCHes with, before reading their bodies.
    pub faults: Mutex<VecDeque<u16>>,
    /// PATCH number (0-based) from which every PATCH gets 503, until changed.
    pub fail_from: AtomicUsize,
    /// Delay before answering each PATCH (to give a kill loop something to interrupt).
    pub patch_delay_ms: AtomicU64,
    /// Every 409 carries the upload's `Upload-Offset` (ferryd's answer); off: a bare 409
    /// (tusd's).
    pub conflict_offset: std::sync::atomic::AtomicBool,
    /// The next PATCHes that are stored and then answered 409 anyway (as if an earlier copy
    /// of the request had landed first), so the offset the 409 names is ahead of the client.
    pub stored_conflicts: AtomicUsize,
    pub heads: AtomicUsize,
    addr: Mutex<Option<SocketAddr>>,
    stop: Mutex<Option<watch::Sender<bool>>>,
    next_id: AtomicU64,
}

impl TusServer {
    pub async fn start(cfg: Config) -> Arc<Self> {
        let server = Arc::new(TusServer {
            cfg,
            fail_from: AtomicUsize::new(usize::MAX),
            ..Default::default()
        });
        server.listen("127.0.0.1:0".parse().unwrap()).await;
        server
    }

    /// Stops accepting and closes every connection; uploads stay in memory.
    pub fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(true);
        }
    }

    /// Listens again on the same port.
    pub async fn restart(self: &Arc<Self>) {
        let addr = self.addr.lock().unwrap().expect("started");
        self.listen(addr).await;
    }

    async fn listen(self: &Arc<Self>, addr: SocketAddr) {
        let listener = TcpListener::bind(addr).await.expect("bind");
        *self.addr.lock().unwrap() = Some(listener.local_addr().unwrap());
        let (tx, rx) = watch::channel(false);
        *self.stop.lock().unwrap() = Some(tx);
        let s = Arc::clone(self);
        tokio::spawn(async move {
            let mut stop = rx.clone();
            loop {
                let stream = tokio::select! {
                    _ = stop.changed() => return,
                    accepted = listener.accept() => match accepted { Ok((st, _)) => st, Err(_) => return },
                };
                let (s, mut stop) = (Arc::clone(&s), rx.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = Arc::clone(&s);
                        async move { Ok::<_, Infallible>(s.handle(req).await) }
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc);
                    tokio::select! { _ = conn => {}, _ = stop.changed() => {} }
                });
            }
        });
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}/files/", self.addr.lock().unwrap().unwrap())
    }

    /// The content of the completed upload a printed location points at.
    pub fn content(&self, location: &str) -> Option<Vec<u8>> {
        let id = location.trim().rsplit('/').next()?;
        let uploads = self.uploads.lock().unwrap();
        uploads
            .get(id)
            .filter(|u| u.data.len() as u64 == u.length)
            .map(|u| u.data.clone())
    }

    /// The decoded `Upload-Metadata` of the upload a location points at.
    pub fn metadata(&self, location: &str) -> Vec<MetadataPair> {
        let id = location.trim().rsplit('/').next().unwrap_or_default();
        let uploads = self.uploads.lock().unwrap();
        let m = uploads
            .get(id)
            .and_then(|u| u.metadata.clone())
            .unwrap_or_default();
        decode_metadata(&m).expect("valid metadata")
    }

    /// The decoded `Upload-Metadata` of every complete upload, with its bytes.
    pub fn complete_uploads(&self) -> Vec<(Vec<MetadataPair>, Vec<u8>)> {
        let uploads = self.uploads.lock().unwrap();
        uploads
            .values()
            .filter(|u| u.data.len() as u64 == u.length && u.waiting_for.is_none())
            .map(|u| {
                let m = u.metadata.clone().unwrap_or_default();
                (decode_metadata(&m).expect("valid metadata"), u.data.clone())
            })
            .collect()
    }

    /// Makes `data` known to the instant-upload index, as if uploaded before.
    pub fn seed(&self, data: &[u8]) {
        self.known
            .lock()
            .unwrap()
            .insert(hex::encode(Sha256::digest(data)), data.to_vec());
    }

    pub fn upload_count(&self) -> usize {
        self.uploads.lock().unwrap().len()
    }

    /// Forgets every upload, as a server whose uploads expired.
    pub fn forget_all(&self) {
        self.uploads.lock().unwrap().clear();
    }

    async fn handle(&self, req: Request<Incoming>) -> Response<Empty<Bytes>> {
        let seen = text(req.headers(), &AUTHORIZATION);
        let authorized = self
            .cfg
            .token
            .as_ref()
            .is_none_or(|t| seen == Some(format!("Bearer {t}")))
            && (self.cfg.authorization.as_ref()).is_none_or(|a| seen.as_ref() == Some(a));
        let mut resp = match (req.method().clone(), authorized) {
            (Method::OPTIONS, ok) => self.options(req.headers(), ok),
            (_, false) => status(401),
            (Method::POST, _) => self.create(req.headers()),
            (Method::HEAD, _) => {
                self.heads.fetch_add(1, Ordering::SeqCst);
                self.head(&id_of(&req))
            }
            (Method::PATCH, _) => self.patch(req).await,
            (Method::DELETE, _) => {
                let gone = self.uploads.lock().unwrap().remove(&id_of(&req)).is_none();
                status(if gone { 404 } else { 204 })
            }
            _ => status(405),
        };
        resp.headers_mut()
            .insert(TUS_RESUMABLE, TUS_VERSION.parse().unwrap());
        resp
    }

    fn options(&self, h: &HeaderMap, authorized: bool) -> Response<Empty<Bytes>> {
        if let Some(code) = self.cfg.options_status {
            return status(code);
        }
        let mut ext = vec!["creation", "termination"];
        let cfg = &self.cfg;
        ext.extend(cfg.checksum.then_some("checksum"));
        ext.extend(cfg.concatenation.then_some("concatenation"));
        ext.extend(cfg.unfinished.then_some("concatenation-unfinished"));
        let mut r = status(204);
        r.headers_mut()
            .insert(TUS_EXTENSION, ext.join(",").parse().unwrap());
        if let Some(max) = cfg.max_size {
            r.headers_mut().insert(TUS_MAX_SIZE, max.into());
        }
        if cfg.checksum {
            r.headers_mut()
                .insert(TUS_CHECKSUM_ALGORITHM, "crc32,sha256".parse().unwrap());
        }
        // ferryd's instant-upload probe: is any known content of this length held?
        let asked = text(h, &FERRY_INSTANT_LENGTH).and_then(|v| v.parse::<usize>().ok());
        if let (Some(len), true, true) = (asked, cfg.instant, authorized) {
            self.probes.fetch_add(1, Ordering::SeqCst);
            let held = self.known.lock().unwrap().values().any(|d| d.len() == len);
            let answer = if held { "?1" } else { "?0" };
            r.headers_mut()
                .insert(FERRY_INSTANT_CANDIDATE, answer.parse().unwrap());
        }
        r
    }

    fn create(&self, h: &HeaderMap) -> Response<Empty<Bytes>> {
        self.creations.fetch_add(1, Ordering::SeqCst);
        let metadata = text(h, &UPLOAD_METADATA);
        let id = format!("u{}", self.next_id.fetch_add(1, Ordering::SeqCst));
        let upload = match text(h, &UPLOAD_CONCAT) {
            Some(c) if c.starts_with("final;") => {
                let ids = part_ids(&c["final;".len()..]);
                match self.concatenate(&ids) {
                    Some(data) => Upload {
                        length: data.len() as u64,
                        data,
                        metadata,
                        waiting_for: None,
                    },
                    None if self.cfg.unfinished => {
                        let uploads = self.uploads.lock().unwrap();
                        let lengths: Option<u64> =
                            ids.iter().map(|i| uploads.get(i).map(|u| u.length)).sum();
                        let Some(length) = lengths else {
                            return status(400);
                        };
                        Upload {
                            length,
                            data: Vec::new(),
                            metadata,
                            waiting_for: Some(ids),
                        }
                    }
                    None => return status(400),
                }
            }
            _ => {
                let Some(length) = text(h, &UPLOAD_LENGTH).and_then(|v| v.parse().ok()) else {
                    return status(400);
                };
                let data = self
                    .instant(metadata.as_deref(), length)
                    .unwrap_or_default();
                Upload {
                    length,
                    data,
                    metadata,
                    waiting_for: None,
                }
            }
        };
        let mut r = status(201);
        r.headers_mut()
            .insert(LOCATION, format!("/files/{id}").parse().unwrap());
        if self.cfg.instant {
            r.headers_mut()
                .insert(UPLOAD_OFFSET, upload.data.len().into());
        }
        self.complete(&id, &upload, r.headers_mut());
        self.uploads.lock().unwrap().insert(id, upload);
        r
    }

    fn concatenate(&self, ids: &[String]) -> Option<Vec<u8>> {
        let uploads = self.uploads.lock().unwrap();
        let mut data = Vec::new();
        for id in ids {
            let part = uploads.get(id)?;
            if part.data.len() as u64 != part.length {
                return None;
            }
            data.extend_from_slice(&part.data);
        }
        Some(data)
    }

    /// The content for an instant upload: metadata `sha256` (hex, base64-encoded) of a known
    /// file of the same length.
    fn instant(&self, metadata: Option<&str>, length: u64) -> Option<Vec<u8>> {
        if !self.cfg.instant {
            return None;
        }
        let pairs = decode_metadata(metadata?).ok()?;
        let sha = pairs.into_iter().find(|(k, _)| k == "sha256")?.1?;
        let known = self.known.lock().unwrap();
        known
            .get(std::str::from_utf8(&sha).ok()?)
            .filter(|d| d.len() as u64 == length)
            .cloned()
    }

    /// On a completed upload: index its content and say where it is published.
    fn complete(&self, id: &str, u: &Upload, h: &mut HeaderMap) {
        if u.data.len() as u64 == u.length {
            self.seed(&u.data);
            h.insert(FERRY_PUBLISHED, format!("/done/{id}").parse().unwrap());
        }
    }

    fn head(&self, id: &str) -> Response<Empty<Bytes>> {
        if self.retired.lock().unwrap().contains(id) {
            return status(410);
        }
        self.join_waiting(id);
        let uploads = self.uploads.lock().unwrap();
        let Some(u) = uploads.get(id) else {
            return status(404);
        };
        let mut r = status(200);
        let h = r.headers_mut();
        h.insert(UPLOAD_OFFSET, u.data.len().into());
        h.insert(UPLOAD_LENGTH, u.length.into());
        h.insert(http::header::CACHE_CONTROL, "no-store".parse().unwrap());
        if let Some(m) = &u.metadata {
            h.insert(UPLOAD_METADATA, m.parse().unwrap());
        }
        self.complete(id, u, h);
        r
    }

    /// A waiting final upload whose parts are all complete: join them and retire the parts.
    fn join_waiting(&self, id: &str) {
        let ids = {
            let uploads = self.uploads.lock().unwrap();
            match uploads.get(id).and_then(|u| u.waiting_for.clone()) {
                Some(ids) => ids,
                None => return,
            }
        };
        let Some(data) = self.concatenate(&ids) else {
            return;
        };
        let mut uploads = self.uploads.lock().unwrap();
        if let Some(u) = uploads.get_mut(id) {
            u.data = data;
            u.waiting_for = None;
        }
        for part in &ids {
            uploads.remove(part);
            self.retired.lock().unwrap().insert(part.clone());
        }
    }

    async fn patch(&self, req: Request<Incoming>) -> Response<Empty<Bytes>> {
        let n = self.patches.fetch_add(1, Ordering::SeqCst);
        if n >= self.fail_from.load(Ordering::SeqCst) {
            return status(503);
        }
        let id = id_of(&req);
        if let Some(code) = self.faults.lock().unwrap().pop_front() {
            if code == 409 {
                return self.conflict(&id);
            }
            return status(code);
        }
        if self.too_large(req.headers()) {
            // nginx's lingering close: the body is read and dropped, the client sees 413.
            let mut body = req.into_body();
            while let Some(Ok(_)) = body.frame().await {}
            return status(413);
        }
        if self.retired.lock().unwrap().contains(&id) {
            return status(410);
        }
        let offset: Option<u64> = text(req.headers(), &UPLOAD_OFFSET).and_then(|v| v.parse().ok());
        let checksum = text(req.headers(), &UPLOAD_CHECKSUM);
        {
            let uploads = self.uploads.lock().unwrap();
            let Some(u) = uploads.get(&id) else {
                return status(404);
            };
            if offset != Some(u.data.len() as u64) {
                drop(uploads);
                return self.conflict(&id);
            }
        }
        let mut body = req.into_body();
        let mut held = Vec::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            self.patch_bytes
                .fetch_add(data.len() as u64, Ordering::SeqCst);
            if checksum.is_some() {
                held.extend_from_slice(&data);
            } else if !self.append(&id, &data) {
                return status(413);
            }
        }
        if let Some(c) = checksum {
            if !checksum_matches(&c, &held) {
                return status(460);
            }
            if !self.append(&id, &held) {
                return status(413);
            }
        }
        tokio::time::sleep(Duration::from_millis(
            self.patch_delay_ms.load(Ordering::SeqCst),
        ))
        .await;
        let taken = self
            .stored_conflicts
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        if taken.is_ok() {
            return self.conflict(&id);
        }
        let uploads = self.uploads.lock().unwrap();
        let Some(u) = uploads.get(&id) else {
            return status(404);
        };
        let mut r = status(204);
        r.headers_mut().insert(UPLOAD_OFFSET, u.data.len().into());
        self.complete(&id, u, r.headers_mut());
        r
    }

    /// 409, with the upload's offset when `conflict_offset` is on.
    fn conflict(&self, id: &str) -> Response<Empty<Bytes>> {
        let mut r = status(409);
        let held = self.uploads.lock().unwrap().get(id).map(|u| u.data.len());
        if let Some(n) = held.filter(|_| self.conflict_offset.load(Ordering::SeqCst)) {
            r.headers_mut().insert(UPLOAD_OFFSET, n.into());
        }
        r
    }

    /// Whether a PATCH body is over `max_body` (counted as refused); records the size of
    /// the others.
    fn too_large(&self, h: &HeaderMap) -> bool {
        let len: u64 = text(h, &http::header::CONTENT_LENGTH)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if self.cfg.max_body.is_some_and(|max| len > max) {
            self.refused.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        self.largest_patch.fetch_max(len, Ordering::SeqCst);
        false
    }

    fn append(&self, id: &str, data: &[u8]) -> bool {
        let mut uploads = self.uploads.lock().unwrap();
        let Some(u) = uploads.get_mut(id) else {
            return false;
        };
        if u.data.len() as u64 + data.len() as u64 > u.length {
            return false;
        }
        u.data.extend_from_slice(data);
        true
    }
}

fn checksum_matches(header: &str, data: &[u8]) -> bool {
    let Some((algo, b64)) = header.split_once(' ') else {
        return false;
    };
    let expected: Vec<u8> = match algo {
        "sha256" => Sha256::digest(data).to_vec(),
        "crc32" => crc32fast::hash(data).to_be_bytes().to_vec(),
        _ => return false,
    };
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .is_ok_and(|d| d == expected)
}

fn id_of<B>(req: &Request<B>) -> String {
    req.uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn text(h: &HeaderMap, name: &http::HeaderName) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(String::from)
}

fn status(code: u16) -> Response<Empty<Bytes>> {
    let mut r = Response::new(Empty::new());
    *r.status_mut() = StatusCode::from_u16(code).unwrap();
    r
}

/// Upload ids from the URLs of `Upload-Concat: final;URL URL`.
fn part_ids(urls: &str) -> Vec<String> {
    urls.split(' ')
        .filter(|u| !u.is_empty())
        .filter_map(|u| u.rsplit('/').next().map(str::to_string))
        .collect()
}
