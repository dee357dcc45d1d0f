//! PATCH {base}/{id} (tus core) and the body streaming it shares with creation-with-upload.
//!
//! Steps: content type (415), typed headers (400), lock (interrupting a streaming PATCH),
//! load (404/410), role (403 for a final upload), offset (409), length (413), stream, respond
//! 204 with the new `Upload-Offset`.
//!
//! Streaming runs in its own task so that a client disconnecting mid-body (hyper then drops
//! the request future) still gets what it sent written, synced and checkpointed. Bytes are
//! checkpointed every [`CHECKPOINT_EVERY`], every [`CHECKPOINT_INTERVAL`] while bytes arrive,
//! and at the end, unless a checksum must first be verified: then nothing of the chunk counts
//! until it matches.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use ferry_proto::tus::{UPLOAD_CHECKSUM, UPLOAD_LENGTH, UPLOAD_OFFSET};
use http::{header, HeaderMap, Response, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;

use super::checksum::{self, Digests, Expected};
use super::core::{load_live, progress_headers};
use super::headers::{is_offset_stream, u64_header};
use super::{concat, expiration, publish, Tus};
use crate::body::{self, Body};
use crate::error::{Error, Result};
use crate::store::lock::Guard;
use crate::store::upload::{Appender, Concat, UploadId, UploadInfo};

/// Bytes gathered before one positional write (two per upload in memory at most: one being
/// filled, one being written).
const WRITE_CHUNK: usize = 256 << 10;
/// Bytes between two durable checkpoints inside one long PATCH (taken in the background, so
/// receiving goes on while the disk flushes).
const CHECKPOINT_EVERY: u64 = 64 << 20;
/// Time between two durable checkpoints while bytes arrive, however slowly (`ferry get`
/// journals as often): a crash loses at most about this much of what was received, and a
/// crash loop cannot keep an upload at its offset. Taken in the background like the others.
const CHECKPOINT_INTERVAL: Duration = Duration::from_secs(1);

/// What a PATCH (or creation-with-upload) says about its body's checksum.
pub enum ChecksumSpec {
    None,
    Header(Expected),
    /// `Trailer: Upload-Checksum` (checksum-trailer): the digest arrives after the body.
    Trailer,
}

impl ChecksumSpec {
    pub fn from_headers(h: &HeaderMap) -> Result<Self> {
        if let Some(v) = h.get(UPLOAD_CHECKSUM) {
            let v = v
                .to_str()
                .map_err(|_| Error::bad_request("Upload-Checksum is not ASCII"))?;
            return Ok(ChecksumSpec::Header(checksum::parse(v)?));
        }
        let announced = h
            .get_all(header::TRAILER)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|n| n.trim().eq_ignore_ascii_case(UPLOAD_CHECKSUM.as_str()));
        Ok(if announced {
            ChecksumSpec::Trailer
        } else {
            ChecksumSpec::None
        })
    }
}

pub async fn patch(
    tus: &Arc<Tus>,
    id: UploadId,
    req: http::Request<Incoming>,
) -> Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    if !is_offset_stream(&parts.headers) {
        return Err(Error::client(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "expected Content-Type {}",
                ferry_proto::tus::OFFSET_OCTET_STREAM
            ),
        ));
    }
    let offset = u64_header(&parts.headers, &UPLOAD_OFFSET)?
        .ok_or_else(|| Error::bad_request("expected an Upload-Offset header, got none"))?;
    let declared = u64_header(&parts.headers, &UPLOAD_LENGTH)?;
    let sum = ChecksumSpec::from_headers(&parts.headers)?;
    let guard = tus.lock(&id).await?;
    let mut info = load_live(tus, &id).await?;
    if matches!(info.concat, Concat::Final { .. }) {
        return Err(Error::client(
            StatusCode::FORBIDDEN,
            "a final upload cannot be patched",
        ));
    }
    if offset != info.offset {
        return Err(Error::OffsetMismatch {
            expected: info.offset,
            got: offset,
        });
    }
    declare_length(tus, &mut info, declared)?;
    check_fits(tus, &info, content_length(&parts.headers))?;
    // A finished upload has nothing left to receive (its data may be published already).
    let info = if info.is_complete() {
        info
    } else {
        receive(tus, info, body, sum, guard).await?
    };
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    progress_headers(&info, resp.headers_mut());
    Ok(resp)
}

fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// creation-defer-length: the first `Upload-Length` on a PATCH fixes the length; it may not
/// change later.
fn declare_length(tus: &Tus, info: &mut UploadInfo, declared: Option<u64>) -> Result<()> {
    match (info.length, declared) {
        (_, None) => Ok(()),
        (Some(l), Some(d)) if l == d => Ok(()),
        (Some(l), Some(d)) => Err(Error::bad_request(format!(
            "expected Upload-Length {l} as declared, got {d}"
        ))),
        (None, Some(d)) if d < info.offset => Err(Error::bad_request(format!(
            "expected Upload-Length of at least the offset {}, got {d}",
            info.offset
        ))),
        (None, Some(d)) => {
            too_large(tus, d)?;
            tus.reserve_bytes(d)?; // a deferred length counts from now (limits.rs)
            info.length = Some(d);
            Ok(())
        }
    }
}

/// 413 when `len` exceeds `Tus-Max-Size`.
pub fn too_large(tus: &Tus, len: u64) -> Result<()> {
    match tus.cfg.max_size {
        Some(max) if len > max => Err(Error::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("expected at most Tus-Max-Size {max} bytes, got {len}"),
        )),
        _ => Ok(()),
    }
}

/// The most bytes an upload may hold: its length, else the server's limit.
fn limit(tus: &Tus, info: &UploadInfo) -> u64 {
    info.length.or(tus.cfg.max_size).unwrap_or(u64::MAX)
}

/// 413 before reading a byte when `Content-Length` already says the body is too long.
fn check_fits(tus: &Tus, info: &UploadInfo, body_len: Option<u64>) -> Result<()> {
    let room = limit(tus, info).saturating_sub(info.offset);
    match body_len {
        Some(n) if n > room => Err(Error::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("expected at most {room} more bytes (Upload-Length), got Content-Length {n}"),
        )),
        _ => Ok(()),
    }
}

/// Streams `body` into the upload in a task of its own, then publishes a finished upload.
pub async fn receive(
    tus: &Arc<Tus>,
    mut info: UploadInfo,
    body: Incoming,
    sum: ChecksumSpec,
    guard: Guard,
) -> Result<UploadInfo> {
    info.expires_ms = Some(expiration::deadline(tus.cfg.expiry));
    let tus = tus.clone();
    // The task keeps the request's hook context: the finish it may publish names this PATCH.
    let task = crate::hooks::spawn(async move {
        let mut guard = guard;
        let mut info = stream(&tus, info, body, sum, &mut guard).await?;
        publish::complete(&tus, &mut info).await?;
        if info.concat == Concat::Partial && info.is_complete() {
            crate::hooks::spawn(concat::finish_waiting_finals(tus.clone(), info.id.clone()));
        }
        Ok(info)
    });
    task.await
        .map_err(|e| Error::Internal(std::io::Error::other(e)))?
}

/// How reading the body ended.
#[derive(Debug, PartialEq, Eq)]
enum End {
    Complete,
    Interrupted,
    Disconnected,
    /// The body broke HTTP/1.1 framing: none of it counts (issue 8).
    Malformed,
    TooLong,
}

struct Sink {
    app: Box<dyn Appender>,
    buf: BytesMut,
    digests: Option<Digests>,
    trailer: Option<Expected>,
}

async fn stream(
    tus: &Tus,
    info: UploadInfo,
    mut body: Incoming,
    sum: ChecksumSpec,
    guard: &mut Guard,
) -> Result<UploadInfo> {
    let start = info.offset;
    let limit = limit(tus, &info);
    let (expected, digests) = match sum {
        ChecksumSpec::None => (None, None),
        ChecksumSpec::Header(e) => {
            let d = Digests::one(e.algorithm);
            (Some(e), Some(d))
        }
        ChecksumSpec::Trailer => (None, Some(Digests::all())),
    };
    let app = tus.uploads()?.append(&info).await?;
    let mut sink = Sink {
        app,
        buf: BytesMut::with_capacity(WRITE_CHUNK),
        digests,
        trailer: None,
    };
    let result = match read_body(&mut sink, &mut body, guard, &info, limit).await {
        Ok(end) => finish(&mut sink, info, start, expected, end).await,
        Err(e) => Err(e),
    };
    // Whatever happened, nothing may still be writing once the lock is released: a late write
    // could land after the next PATCH's bytes.
    if let Err(e) = sink.app.close().await {
        tracing::warn!(error = %e, "could not finish the writes of an upload");
    }
    result
}

impl Sink {
    /// Bytes received so far: written, or buffered for the next write.
    fn received(&self) -> u64 {
        self.app.position() + self.buf.len() as u64
    }

    /// Queues the buffered bytes for writing, then starts a background checkpoint of
    /// everything received; returns the offset it will record, `None` while the previous one
    /// still runs.
    async fn checkpoint_all_behind(&mut self, info: &UploadInfo) -> Result<Option<u64>> {
        if !self.buf.is_empty() {
            self.app.write(self.buf.split().freeze()).await?;
            self.buf.reserve(WRITE_CHUNK);
        }
        let started = self.app.checkpoint_behind(info).await?;
        Ok(started.then(|| self.app.position()))
    }
}

/// Reads the body into `sink` until it ends, the lock holder is interrupted, or the body goes
/// past `limit`; checkpoints in the background every [`CHECKPOINT_EVERY`] and, while bytes
/// arrive, every [`CHECKPOINT_INTERVAL`], unless a checksum must be verified first.
async fn read_body(
    sink: &mut Sink,
    body: &mut Incoming,
    guard: &mut Guard,
    info: &UploadInfo,
    limit: u64,
) -> Result<End> {
    let verify = sink.digests.is_some();
    let mut checkpointed = info.offset;
    let tick = tokio::time::sleep(CHECKPOINT_INTERVAL);
    tokio::pin!(tick);
    loop {
        let frame = tokio::select! {
            f = body.frame() => f,
            _ = &mut guard.interrupted => return Ok(End::Interrupted),
            _ = &mut tick, if !verify => {
                if sink.received() > checkpointed {
                    let started = sink.checkpoint_all_behind(info).await?;
                    checkpointed = started.unwrap_or(checkpointed); // else: the next tick
                }
                tick.as_mut().reset(tokio::time::Instant::now() + CHECKPOINT_INTERVAL);
                continue;
            }
        };
        let frame = match frame {
            None => return Ok(End::Complete),
            Some(Err(e)) if crate::body::is_malformed(&e) => return Ok(End::Malformed),
            Some(Err(_)) => return Ok(End::Disconnected),
            Some(Ok(f)) => f,
        };
        let data = match frame.into_data() {
            Ok(d) => d,
            Err(f) => {
                if let Some(v) = f.trailers_ref().and_then(|t| t.get(UPLOAD_CHECKSUM)) {
                    sink.trailer = Some(checksum::parse(v.to_str().unwrap_or(""))?);
                }
                continue;
            }
        };
        let room = limit.saturating_sub(sink.received());
        let take = data.len().min(usize::try_from(room).unwrap_or(usize::MAX));
        if let Some(d) = sink.digests.as_mut() {
            d.update(&data[..take]);
        }
        sink.buf.extend_from_slice(&data[..take]);
        if take < data.len() {
            return Ok(End::TooLong);
        }
        if sink.buf.len() >= WRITE_CHUNK {
            sink.app.write(sink.buf.split().freeze()).await?;
            sink.buf.reserve(WRITE_CHUNK); // one allocation per chunk, no regrowth copies
        }
        if !verify && sink.app.position() - checkpointed >= CHECKPOINT_EVERY {
            // Skipped while the previous one still runs; then the next tick takes it. A fast
            // upload checkpoints by size only: each one puts the tick off by a full interval.
            sink.app.checkpoint_behind(info).await?;
            checkpointed = sink.app.position();
            tick.as_mut()
                .reset(tokio::time::Instant::now() + CHECKPOINT_INTERVAL);
        }
    }
}

/// Writes what is buffered, verifies a checksum (discarding the chunk on mismatch), and
/// checkpoints. A body that went past the length keeps its valid prefix and answers 413.
async fn finish(
    sink: &mut Sink,
    mut info: UploadInfo,
    start: u64,
    expected: Option<Expected>,
    end: End,
) -> Result<UploadInfo> {
    if end == End::Malformed {
        // Checkpoints taken while it streamed are undone too: the record goes back to `start`.
        sink.app.rollback(start).await?;
        sink.app.checkpoint(&mut info).await?;
        return Err(Error::bad_request(format!(
            "the request body is malformed (HTTP/1.1 framing); none of it was kept, offset {start}"
        )));
    }
    if !sink.buf.is_empty() {
        sink.app.write(sink.buf.split().freeze()).await?;
    }
    if let Some(digests) = sink.digests.take() {
        let verdict = match (expected.or(sink.trailer.take()), &end) {
            (_, End::Disconnected | End::Interrupted) => Err(checksum::mismatch(
                "the body ended early, the chunk cannot be verified",
            )),
            (None, _) => Err(checksum::mismatch(
                "expected an Upload-Checksum trailer, got none",
            )),
            (Some(e), _) => digests.verify(&e),
        };
        if let Err(e) = verdict {
            sink.app.rollback(start).await?;
            return Err(e);
        }
    }
    sink.app.checkpoint(&mut info).await?;
    if end == End::TooLong {
        return Err(Error::client(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "body goes past Upload-Length {}; kept the first {} bytes",
                info.length.unwrap_or(0),
                info.offset
            ),
        ));
    }
    Ok(info)
}
