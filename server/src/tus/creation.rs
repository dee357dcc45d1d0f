//! POST {base} (creation, creation-with-upload, creation-defer-length, and instant upload).
//!
//! Steps: metadata (400), concatenation role (a final upload: no Upload-Length, 400; no body,
//! 403), length or deferral (400/413), target check (400), first chunk's media type (415), create, instant upload if the content is already held, optional first chunk
//! (creation-with-upload), respond 201 with `Location`. A refused first chunk (460, 413)
//! still answers 201 with `Location` and the durable `Upload-Offset`: the upload exists, and
//! the client must be able to resume it.

use std::sync::Arc;

use ferry_proto::tus::{OFFSET_OCTET_STREAM, UPLOAD_CONCAT, UPLOAD_LENGTH};
use http::{header, Request, Response, StatusCode};
use http_body::Body as _;
use hyper::body::Incoming;

use super::concat::{self, ConcatRequest};
use super::core::progress_headers;
use super::headers::{is_offset_stream, length_or_defer, metadata};
use super::patch::{self, ChecksumSpec};
use super::{expiration, publish, Tus};
use crate::body::{self, Body};
use crate::error::{Error, Result};
use crate::events::Kind;
use crate::files::set;
use crate::store::upload::{Concat, UploadId, UploadInfo};

pub async fn post(tus: &Arc<Tus>, req: Request<Incoming>) -> Result<Response<Body>> {
    let (parts, body) = req.into_parts();
    let h = &parts.headers;
    let metadata = metadata(h)?;
    let role = match h.get(UPLOAD_CONCAT) {
        Some(_) if tus.concatenation().is_none() => {
            return Err(Error::bad_request("concatenation is not supported"))
        }
        Some(v) => concat::parse(v.to_str().unwrap_or(""), &tus.cfg.base)?,
        None => ConcatRequest::None,
    };
    let has_body = !body.is_end_stream();
    if let ConcatRequest::Final(ids) = role {
        final_preconditions(h, has_body)?;
        tus.reserve(None).await?;
        let info = concat::create_final(tus, ids, metadata)
            .await
            .inspect_err(|_| tus.unreserve(None))?;
        tus.events.emit(Kind::Created, &info, None).await;
        return Ok(created(tus, &info));
    }
    let length = length_or_defer(h)?;
    if let Some(l) = length {
        patch::too_large(tus, l)?;
    }
    publish::target(metadata.as_deref(), "")?;
    let first_chunk = first_chunk(h, length, has_body)?;
    let concat = match role {
        ConcatRequest::Partial => Concat::Partial,
        _ => Concat::None,
    };
    let id = UploadId::random()?;
    let mut info = UploadInfo::new(&id, length, metadata, concat);
    info.expires_ms = Some(expiration::deadline(tus.cfg.expiry));
    // The limits first: a creation they refuse never reaches the pre-create hook.
    tus.reserve(length).await?;
    if let Some(hooks) = tus.hooks.get() {
        hooks
            .pre_create(&mut info)
            .await
            .inspect_err(|_| tus.unreserve(length))?;
    }
    let guard = tus.lock(&id).await.inspect_err(|_| tus.unreserve(length))?;
    tus.uploads()?
        .create(&mut info)
        .await
        .inspect_err(|_| tus.unreserve(length))?;
    tus.events.emit(Kind::Created, &info, None).await;
    if publish::try_instant(tus, &mut info).await? {
        return Ok(created(tus, &info));
    }
    publish::complete(tus, &mut info).await?; // an empty file is finished at once
    if let Some(sum) = first_chunk.filter(|_| !info.is_complete()) {
        info = match patch::receive(tus, info.clone(), body, sum, guard).await {
            Ok(done) => done,
            // The upload exists now: a client error in its first chunk (a checksum mismatch, a
            // body past the length) must not hide its Location. Answer 201 with the durable
            // offset (the refused chunk did not count) so the client resumes with PATCH.
            Err(e) if e.status().is_client_error() => {
                tracing::debug!(error = %e, "first chunk of a creation-with-upload refused");
                tus.uploads()?.load(&id).await?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(created(tus, &info))
}

/// concatenation: the final upload's length is the sum of its parts, so the spec's "MUST NOT
/// include Upload-Length" is enforced (400; tusd ignores the header), and it takes no bytes of
/// its own (403 for a body, as tusd and as a PATCH of a final upload).
fn final_preconditions(h: &http::HeaderMap, has_body: bool) -> Result<()> {
    if h.contains_key(UPLOAD_LENGTH) {
        return Err(Error::bad_request(
            "expected no Upload-Length on a final upload (its length is the sum of its parts)",
        ));
    }
    if has_body && is_offset_stream(h) {
        return Err(Error::client(
            StatusCode::FORBIDDEN,
            "a final upload takes no bytes of its own",
        ));
    }
    Ok(())
}

/// creation-with-upload: whether the POST carries a first chunk, and its checksum. Checked
/// before the upload exists, so a refusal (400, 413, 415) leaves nothing behind. A non-empty
/// body of another media type is refused with 415 (tusd creates the upload and drops the
/// body); an empty one is no chunk, whatever `Content-Type` a client library adds.
fn first_chunk(
    h: &http::HeaderMap,
    length: Option<u64>,
    has_body: bool,
) -> Result<Option<ChecksumSpec>> {
    if !is_offset_stream(h) {
        return match has_body {
            true => Err(Error::client(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("expected Content-Type {OFFSET_OCTET_STREAM} for a body in the creation request"),
            )),
            false => Ok(None),
        };
    }
    let body_len = h
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let (Some(n), Some(l)) = (body_len, length) {
        if n > l {
            return Err(Error::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("expected at most Upload-Length {l} bytes, got Content-Length {n}"),
            ));
        }
    }
    Ok(Some(ChecksumSpec::from_headers(h)?))
}

/// 201 with `Location` (a path here; [`super::Tus::handle`] makes it absolute) and progress.
fn created(tus: &Tus, info: &UploadInfo) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::CREATED;
    let h = resp.headers_mut();
    set(h, header::LOCATION, tus.location(&info.id));
    progress_headers(info, h);
    resp
}
