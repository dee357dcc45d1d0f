//! tus core HEAD and OPTIONS, termination (DELETE) and `GET {base}/{id}`.

use std::sync::Arc;

use ferry_proto::disposition::Disposition;
use ferry_proto::tus::*;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use super::headers::{meta_value, FERRY_PUBLISHED};
use super::{checksum, concat, expiration, publish, Tus};
use crate::body::{self, Body};
use crate::error::{Error, Result};
use crate::files::{self, set};
use crate::path::RelPath;
use crate::store::upload::{unix_now_ms, Concat, UploadId, UploadInfo, UploadState, UploadStore};
use crate::store::{Object, StoreError};

/// The tus extensions this endpoint offers, derived from which capabilities the store has:
/// creation (all three), expiration, checksum (both) and termination come with every upload
/// store; concatenation with [`Concatenation`](crate::store::upload::Concatenation).
pub fn extensions(store: &dyn UploadStore) -> Vec<&'static str> {
    let mut v = vec![
        "creation",
        "creation-with-upload",
        "creation-defer-length",
        "expiration",
        "checksum",
        "checksum-trailer",
        "termination",
    ];
    if store.concatenation().is_some() {
        v.extend(["concatenation", "concatenation-unfinished"]);
    }
    v
}

/// OPTIONS (tus core): version, extensions, maximum size and checksum algorithms.
/// With `Ferry-Instant-Length: N` from a client allowed to upload, also whether instant
/// upload could apply to a file of N bytes (`Ferry-Instant-Candidate`), so that the client
/// hashes the file only when that can save the upload.
pub async fn options(tus: &Tus, req: &HeaderMap) -> Response<Body> {
    let candidate = match instant_candidate(tus, req).await {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "content index lookup failed");
            None
        }
    };
    // 200, not 204 (tusd's choice: some browsers take only 200 as a successful preflight).
    let mut resp = Response::new(body::empty());
    let h = resp.headers_mut();
    h.insert(TUS_VERSION_HEADER, HeaderValue::from_static(TUS_VERSION));
    let exts = tus.store.uploads().map(extensions).unwrap_or_default();
    set(h, TUS_EXTENSION, exts.join(","));
    if let Some(max) = tus.cfg.max_size {
        set(h, TUS_MAX_SIZE, max.to_string());
    }
    h.insert(
        TUS_CHECKSUM_ALGORITHM,
        HeaderValue::from_static(checksum::ALGORITHMS),
    );
    if let Some(c) = candidate {
        h.insert(
            FERRY_INSTANT_CANDIDATE,
            HeaderValue::from_static(if c { "?1" } else { "?0" }),
        );
    }
    resp
}

/// The answer to `Ferry-Instant-Length`; `None` when not asked, not parseable, not allowed
/// (it tells whether a file of that size exists, so only to those who may upload) or when
/// the store keeps no content index.
async fn instant_candidate(
    tus: &Tus,
    req: &HeaderMap,
) -> std::result::Result<Option<bool>, StoreError> {
    let Some(len) = req
        .get(FERRY_INSTANT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
    else {
        return Ok(None);
    };
    let Some(index) = tus.content_index() else {
        return Ok(None);
    };
    if crate::auth::check(&tus.cfg, &Method::POST, req).is_err() {
        return Ok(None);
    }
    index.index_has_length(len).await.map(Some)
}

/// Loads an upload that may still be used: 404 if unknown, 410 once terminated or expired.
pub async fn load_live(tus: &Tus, id: &UploadId) -> Result<UploadInfo> {
    let info = match tus.uploads()?.load(id).await {
        Err(StoreError::NotFound) => {
            return Err(Error::client(
                StatusCode::NOT_FOUND,
                format!("no upload {id}"),
            ))
        }
        r => r?,
    };
    let gone = matches!(info.state, UploadState::Terminated | UploadState::Expired)
        || expiration::group_expired(tus, &info, unix_now_ms()).await;
    if gone {
        return Err(Error::client(
            StatusCode::GONE,
            format!("upload {id} was terminated or has expired"),
        ));
    }
    Ok(info)
}

/// Headers describing an upload's progress, shared by HEAD, PATCH and POST answers.
pub fn progress_headers(info: &UploadInfo, h: &mut HeaderMap) {
    let unfinished_final = matches!(info.concat, Concat::Final { .. }) && !info.is_complete();
    // concatenation: no Upload-Offset for a final upload until it is concatenated.
    if !unfinished_final {
        set(h, UPLOAD_OFFSET, info.offset.to_string());
    }
    if let Some(v) = expiration::header_value(info) {
        set(h, UPLOAD_EXPIRES, v);
    }
    if let UploadState::Published { path } = &info.state {
        let url: String = path
            .split('/')
            .map(|s| format!("/{}", encode_segment(s)))
            .collect();
        set(h, FERRY_PUBLISHED, url);
    }
}

/// Percent-encodes one path segment, leaving RFC 3986 unreserved characters as they are.
fn encode_segment(s: &str) -> String {
    const SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SET).to_string()
}

/// HEAD {base}/{id}: reports the durable offset. An uploader (upload token, or public
/// uploads) takes the upload over: a streaming PATCH is interrupted first, and a finished
/// upload is concatenated and published. Anyone else never interrupts the owner: while a
/// PATCH streams they get the last checkpoint as it is. The offset of a complete upload is
/// reported only once it is published (503 with `Retry-After` until then).
pub async fn head(tus: &Arc<Tus>, id: &UploadId, uploader: bool) -> Result<Response<Body>> {
    let guard = match uploader {
        true => Some(tus.lock(id).await?),
        false => tus.locks.try_acquire(id),
    };
    let mut info = load_live(tus, id).await?;
    if guard.is_some() {
        if let Err(e) = finish(tus, &mut info).await {
            // On a store shared by several instances, another one may have taken the upload
            // over while this HEAD finished it (a PATCH there, or its background finisher of
            // a final upload): then the record moved past what this HEAD recorded, the other
            // one finishes it, and the HEAD reports the record as it is now.
            let now = load_live(tus, id).await?;
            if now.revision == info.revision {
                return Err(e);
            }
            info = now;
        }
    }
    // A complete upload reports its offset once it is published (downloadable), never
    // before: until then (another instance publishes it, or this HEAD may not take it) the
    // client asks again, as tus clients do after a 503.
    if being_published(&info) {
        return Err(Error::Pending(format!(
            "upload {id} is complete and being published; ask again"
        )));
    }
    let mut resp = Response::new(body::empty());
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    progress_headers(&info, h);
    match info.length {
        Some(l) => set(h, UPLOAD_LENGTH, l.to_string()),
        None if matches!(info.concat, Concat::Final { .. }) => {}
        None => {
            h.insert(UPLOAD_DEFER_LENGTH, HeaderValue::from_static("1"));
        }
    }
    if let Some(m) = &info.metadata {
        set(h, UPLOAD_METADATA, m.clone());
    }
    match &info.concat {
        Concat::None => {}
        Concat::Partial => {
            h.insert(UPLOAD_CONCAT, HeaderValue::from_static("partial"));
        }
        Concat::Final { parts } => {
            let urls: Vec<String> = parts.iter().map(|p| tus.location(p)).collect();
            set(h, UPLOAD_CONCAT, format!("final;{}", urls.join(" ")));
        }
    }
    Ok(resp)
}

/// Whether `info` holds all its bytes but is not published yet (a partial upload is never
/// published: it is complete with its bytes).
fn being_published(info: &UploadInfo) -> bool {
    info.state == UploadState::Active && info.concat != Concat::Partial && info.is_complete()
}

/// Concatenates a final upload whose parts are complete, and publishes a finished upload.
async fn finish(tus: &Arc<Tus>, info: &mut UploadInfo) -> Result<()> {
    concat::try_finish(tus, info).await?;
    publish::complete(tus, info).await
}

/// DELETE {base}/{id} (termination): frees the staging data; later requests get 410. A
/// published file stays where it is: it belongs to the served tree now.
pub async fn delete(tus: &Arc<Tus>, id: &UploadId) -> Result<Response<Body>> {
    let _guard = tus.lock(id).await?;
    let mut info = load_live(tus, id).await?;
    info.expires_ms = Some(expiration::deadline(tus.cfg.expiry));
    tus.uploads()?
        .discard(&mut info, UploadState::Terminated)
        .await?;
    tus.release(&info);
    tus.events
        .emit(crate::events::Kind::Terminated, &info, None)
        .await;
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    Ok(resp)
}

/// GET {base}/{id}: the published file, with Range and conditional requests, named by the
/// upload's `filename` metadata.
pub async fn get(tus: &Arc<Tus>, id: &UploadId, headers: &HeaderMap) -> Result<Response<Body>> {
    let info = load_live(tus, id).await?;
    let UploadState::Published { path } = &info.state else {
        return Err(Error::client(
            StatusCode::NOT_FOUND,
            format!("upload {id} is not complete"),
        ));
    };
    let rel = RelPath::from_segments(path.split('/'))?;
    let Object::File(file) = tus.store.open(&rel).await? else {
        return Err(Error::NotFound);
    };
    let name = meta_value(info.metadata.as_deref(), META_FILENAME)
        .and_then(|n| ferry_proto::disposition::sanitize_file_name(&n))
        .or_else(|| rel.file_name().map(str::to_string))
        .unwrap_or_else(|| id.to_string());
    files::serve_file(file, &name, Disposition::Inline, &Method::GET, headers).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fs::{FsOptions, FsStore};

    #[test]
    fn extensions_follow_capabilities() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("www");
        std::fs::create_dir(&root).unwrap();
        let fs = FsStore::new(&root, FsOptions::default()).unwrap();
        assert!(fs.concatenation().is_some());
        let all = extensions(&fs).join(",");
        assert_eq!(
            all,
            "creation,creation-with-upload,creation-defer-length,expiration,checksum,\
             checksum-trailer,termination,concatenation,concatenation-unfinished"
        );
        let core = extensions(&WithoutCapabilities(fs)).join(",");
        assert_eq!(
            core,
            "creation,creation-with-upload,creation-defer-length,expiration,checksum,\
             checksum-trailer,termination"
        );
    }

    /// A store with the core of `FsStore` and none of its optional capabilities.
    struct WithoutCapabilities(FsStore);

    impl UploadStore for WithoutCapabilities {
        fn create<'a>(
            &'a self,
            i: &'a mut UploadInfo,
        ) -> crate::store::BoxFuture<'a, Result<(), StoreError>> {
            self.0.create(i)
        }
        fn load<'a>(
            &'a self,
            id: &'a UploadId,
        ) -> crate::store::BoxFuture<'a, Result<UploadInfo, StoreError>> {
            self.0.load(id)
        }
        fn save<'a>(
            &'a self,
            i: &'a mut UploadInfo,
        ) -> crate::store::BoxFuture<'a, Result<(), StoreError>> {
            self.0.save(i)
        }
        fn append<'a>(
            &'a self,
            i: &'a UploadInfo,
        ) -> crate::store::BoxFuture<'a, Result<Box<dyn crate::store::upload::Appender>, StoreError>>
        {
            self.0.append(i)
        }
        fn publish<'a>(
            &'a self,
            i: &'a mut UploadInfo,
            d: &'a RelPath,
            n: &'a str,
        ) -> crate::store::BoxFuture<'a, Result<RelPath, StoreError>> {
            self.0.publish(i, d, n)
        }
        fn discard<'a>(
            &'a self,
            i: &'a mut UploadInfo,
            s: UploadState,
        ) -> crate::store::BoxFuture<'a, Result<(), StoreError>> {
            self.0.discard(i, s)
        }
        fn purge<'a>(
            &'a self,
            id: &'a UploadId,
        ) -> crate::store::BoxFuture<'a, Result<(), StoreError>> {
            self.0.purge(id)
        }
        fn list_uploads(&self) -> crate::store::BoxFuture<'_, Result<Vec<UploadInfo>, StoreError>> {
            self.0.list_uploads()
        }
    }
}
