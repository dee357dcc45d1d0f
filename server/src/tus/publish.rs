//! Publishing a finished upload into the served tree, and instant upload.
//!
//! Target: the `filename` metadata, sanitized to one path component (a leading `.` becomes
//! `_` so the file is not hidden), inside the directory named by the `dir` metadata (ferry
//! extension; relative to the root, validated like a request path, never hidden). Without a
//! name the upload id is used. A taken name is never replaced: the store picks `name (1).ext`
//! and the chosen path is returned in `Ferry-Published` and by `GET {base}/{id}`.
//!
//! Instant upload (ferry extension): the metadata key `sha256` carries the lowercase hex
//! SHA-256 of the whole file, base64-encoded like every metadata value. When the content
//! index (every served file, see [`crate::index`]) holds a file with that digest and the
//! announced `Upload-Length` (and the file is still the one that was hashed), the upload is complete at creation: offset =
//! length, published like any other as a link to (or copy of) the existing content.

use ferry_proto::tus::{META_FILENAME, META_SHA256};

use super::headers::{meta_value, META_DIR};
use super::Tus;
use crate::error::Result;
use crate::events::Kind;
use crate::path::RelPath;
use crate::store::upload::{Concat, UploadInfo, UploadState};
use crate::store::StoreError;

/// Where a finished upload goes: directory and file name (pure; 400 for a bad directory).
/// The rules are in [`super::names`].
pub fn target(metadata: Option<&str>, id: &str) -> Result<(RelPath, String)> {
    let dir = match meta_value(metadata, META_DIR) {
        Some(d) => super::names::publish_dir(&d)?,
        None => RelPath::root(),
    };
    let name = meta_value(metadata, META_FILENAME)
        .and_then(|n| super::names::publish_name(&n))
        .unwrap_or_else(|| id.to_string());
    Ok((dir, name))
}

/// Publishes `info` if it is a finished plain or final upload not yet published (also the
/// recovery path after a crash between the last checkpoint and the publish).
pub async fn complete(tus: &Tus, info: &mut UploadInfo) -> Result<()> {
    if info.concat == Concat::Partial || info.state != UploadState::Active || !info.is_complete() {
        return Ok(());
    }
    let (dir, name) = target(info.metadata.as_deref(), &info.id)?;
    let store = tus.uploads()?;
    info.expires_ms = Some(super::expiration::deadline(tus.cfg.expiry)); // when the record goes
    let path = match store.publish(info, &dir, &name).await {
        // The directory became unusable while the bytes arrived (a file took its name, or a
        // symlink now leads out): the data is complete, so publish at the root instead of
        // failing forever. `Ferry-Published` tells the client where it went.
        Err(StoreError::Forbidden) if !dir.is_root() => {
            tracing::warn!(id = %info.id, dir = %dir.as_str(), "target directory unusable, publishing at the root");
            store.publish(info, &RelPath::root(), &name).await?
        }
        r => r?,
    };
    tracing::info!(id = %info.id, path = %path.as_str(), "upload published");
    tus.release(info);
    tus.events
        .emit(Kind::Finished, info, Some(path.as_str()))
        .await;
    Ok(())
}

/// Completes a just-created upload from existing content, if the metadata names a digest the
/// index holds with the same length. Returns whether it did.
pub async fn try_instant(tus: &Tus, info: &mut UploadInfo) -> Result<bool> {
    let (Some(len), Some(sha)) = (
        info.length,
        meta_value(info.metadata.as_deref(), META_SHA256),
    ) else {
        return Ok(false);
    };
    if info.concat != Concat::None {
        return Ok(false);
    }
    let Some(store) = tus.content_index() else {
        return Ok(false);
    };
    let Some(src) = store.index_find(sha.trim(), len).await? else {
        return Ok(false);
    };
    let (dir, name) = target(info.metadata.as_deref(), &info.id)?;
    let before = info.clone();
    info.offset = len;
    info.expires_ms = Some(super::expiration::deadline(tus.cfg.expiry)); // when the record goes
    let path = match store.publish_copy(info, &src, &dir, &name).await {
        // The content was replaced or removed between the index's check and the copy (an
        // object store copies from the checked version only): upload it as usual.
        Err(StoreError::NotFound) => {
            // As before, at the revision the store moved the record to (an object store
            // records the copy's multipart upload while it copies).
            let revision = info.revision.take();
            *info = before;
            info.revision = revision;
            return Ok(false);
        }
        r => r?,
    };
    tracing::info!(id = %info.id, from = %src.path.as_str(), path = %path.as_str(), "instant upload");
    tus.release(info);
    tus.events
        .emit(Kind::Finished, info, Some(path.as_str()))
        .await;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_proto::tus::encode_metadata;

    #[test]
    fn target_sanitizes_names_and_validates_dirs() {
        let m = encode_metadata([
            ("filename", Some(&b"../../etc/passwd"[..])),
            ("dir", Some(&b"a/b"[..])),
        ]);
        let (dir, name) = target(Some(&m), "id").unwrap();
        assert_eq!((dir.as_str(), name.as_str()), ("a/b", "passwd"));
        let m = encode_metadata([("filename", Some(&b".bashrc"[..]))]);
        assert_eq!(target(Some(&m), "id").unwrap().1, "_bashrc");
        assert_eq!(
            target(None, "abc").unwrap(),
            (RelPath::root(), "abc".to_string())
        );
        for bad in ["../x", ".ferry", "a/.git", "a\\b"] {
            let m = encode_metadata([("dir", Some(bad.as_bytes()))]);
            assert_eq!(
                target(Some(&m), "id").unwrap_err().status(),
                http::StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
