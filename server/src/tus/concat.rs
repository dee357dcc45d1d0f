//! The concatenation and concatenation-unfinished extensions: partial uploads are created
//! with `Upload-Concat: partial`, and a final upload with `Upload-Concat: final;<url> <url>`
//! joins them in order. A final upload created before its parts finish is concatenated as soon
//! as its last part completes (or a HEAD finds them all complete).
//!
//! Such an early final upload also saves the copy: its unfinished parts are placed into its
//! data (see [`crate::store::upload::UploadStore::place`]), so their bytes land where they
//! belong and concatenation only records the result. A placed part's bytes belong to the
//! final upload once it is published; the part is then terminated (the spec lets a server
//! delete partial uploads after concatenation). So is an unfinished part the store could not
//! place (a store without placement, such as S3, copies it at concatenation): it was sent
//! for this final upload. Parts complete before the final upload was created (the usual
//! order) are copied, and stay usable for other final uploads until they expire. A part
//! another final upload still waits for is never retired (the last one retires it), and a
//! part placed into one final upload that another also names gets its own copy of its bytes
//! before the first one is published.

use std::sync::Arc;

use http::StatusCode;

use super::{publish, Tus};
use crate::error::{Error, Result};
use crate::store::upload::{Concat, UploadId, UploadInfo, UploadState};

#[derive(Debug, PartialEq, Eq)]
pub enum ConcatRequest {
    None,
    Partial,
    Final(Vec<UploadId>),
}

/// Parses `Upload-Concat` (pure). Part URLs may be absolute or paths; they must name uploads
/// under `base`.
pub fn parse(value: &str, base: &str) -> Result<ConcatRequest> {
    let value = value.trim();
    if value == "partial" {
        return Ok(ConcatRequest::Partial);
    }
    let Some(list) = value.strip_prefix("final;") else {
        return Err(Error::bad_request(format!(
            "expected Upload-Concat partial or final;<urls>, got {value:?}"
        )));
    };
    let ids = list
        .split_whitespace()
        .map(|url| {
            id_from_url(url, base).ok_or_else(|| {
                Error::bad_request(format!("expected an upload URL under {base}, got {url:?}"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        return Err(Error::bad_request(
            "expected at least one partial upload in Upload-Concat final",
        ));
    }
    Ok(ConcatRequest::Final(ids))
}

/// The upload id in an absolute URL or a path. The base may follow a prefix (a `--public-url`
/// path or a proxy's), as tusd allows: the URLs ferryd hands out are valid here either way.
fn id_from_url(url: &str, base: &str) -> Option<UploadId> {
    let path = match url.split_once("://") {
        Some((_, rest)) => &rest[rest.find('/')?..],
        None => url,
    };
    let path = path.split(['?', '#']).next()?;
    let at = path.find(base)?;
    UploadId::parse(path[at + base.len()..].trim_end_matches('/'))
}

/// Loads the parts of a final upload; each must be a live partial upload.
async fn load_parts(tus: &Tus, ids: &[String]) -> Result<Vec<UploadInfo>> {
    let mut parts = Vec::with_capacity(ids.len());
    for raw in ids {
        let id = UploadId::parse(raw).ok_or(Error::NotFound)?;
        let part = super::core::load_live(tus, &id)
            .await
            .map_err(|e| match e.status() {
                StatusCode::NOT_FOUND | StatusCode::GONE => {
                    Error::bad_request(format!("partial upload {id} does not exist"))
                }
                _ => e,
            })?;
        if part.concat != Concat::Partial {
            return Err(Error::bad_request(format!(
                "upload {id} is not a partial upload"
            )));
        }
        parts.push(part);
    }
    Ok(parts)
}

/// The length of the concatenation of `parts`: `None` while one has a deferred length, 413
/// when the lengths add up past `u64` (clients choose them; they must not wrap).
fn total_length(parts: &[UploadInfo]) -> Result<Option<u64>> {
    let mut total = 0u64;
    for part in parts {
        let Some(len) = part.length else {
            return Ok(None);
        };
        total = total.checked_add(len).ok_or_else(|| {
            Error::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "expected parts adding up to at most {} bytes, got more",
                    u64::MAX
                ),
            )
        })?;
    }
    Ok(Some(total))
}

/// Creates a final upload and concatenates at once if every part is complete.
pub async fn create_final(
    tus: &Arc<Tus>,
    ids: Vec<UploadId>,
    metadata: Option<String>,
) -> Result<UploadInfo> {
    publish::target(metadata.as_deref(), "")?;
    if let Some(twice) = ids
        .iter()
        .enumerate()
        .find(|(i, id)| ids[..*i].contains(id))
    {
        return Err(Error::bad_request(format!(
            "expected distinct partial uploads, got {} twice",
            twice.1
        )));
    }
    let names: Vec<String> = ids.iter().map(|i| i.as_str().to_string()).collect();
    let parts = load_parts(tus, &names).await?;
    let length = total_length(&parts)?;
    if let Some(l) = length {
        super::patch::too_large(tus, l)?;
    }
    let id = UploadId::random()?;
    let _guard = tus.lock(&id).await?;
    let mut info = UploadInfo::new(&id, length, metadata, Concat::Final { parts: names });
    info.expires_ms = Some(super::expiration::deadline(tus.cfg.expiry));
    info.unfinished_parts = parts
        .iter()
        .filter(|p| !p.is_complete())
        .map(|p| p.id.clone())
        .collect();
    for part in &ids {
        // Before the record: a crash leaves only a stray marker.
        tus.concatenation_or_500()?.note_final(part, &id).await?;
    }
    tus.uploads()?.create(&mut info).await?;
    if length.is_some() {
        place_parts(tus, &info, &ids, &parts).await;
    }
    try_finish(tus, &mut info).await?;
    Ok(info)
}

/// Places every unfinished part of the new final upload `info` into its data; `parts` as
/// [`load_parts`] read them, in the order of `ids`. Best effort: a part that is busy (a PATCH
/// streaming) or cannot be placed is left where it is and copied at concatenation, as without
/// placement.
async fn place_parts(tus: &Tus, info: &UploadInfo, ids: &[UploadId], parts: &[UploadInfo]) {
    let Some(store) = tus.uploads().ok().and_then(|u| u.placement()) else {
        return; // without placement, concatenation copies every part
    };
    let mut at = 0u64;
    for (id, part) in ids.iter().zip(parts) {
        let Some(len) = part.length else { return };
        if !part.is_complete() && part.placement.is_none() {
            if let Some(_guard) = tus.locks.try_acquire(id) {
                // Reloaded under the lock: the offset may have moved since.
                if let Ok(mut part) = super::core::load_live(tus, id).await {
                    if let Err(e) = store.place(&mut part, info, at).await {
                        tracing::warn!(part = %id, error = %e, "could not place a part; it will be copied");
                    }
                }
            }
        }
        at += len;
    }
}

/// Concatenates and publishes a final upload whose parts are all complete (caller holds the
/// final upload's lock). A no-op for other uploads or while a part is still open.
pub async fn try_finish(tus: &Tus, info: &mut UploadInfo) -> Result<()> {
    let Concat::Final { parts: ids } = &info.concat else {
        return Ok(());
    };
    if info.is_complete() || info.state != UploadState::Active {
        return Ok(());
    }
    let mut parts = load_parts(tus, ids).await?;
    if !parts.iter().all(UploadInfo::is_complete) {
        return Ok(());
    }
    let total = total_length(&parts)?.unwrap_or(0);
    super::patch::too_large(tus, total)?;
    unplace_shared(tus, info, &mut parts).await?;
    // Its own deadline may have passed while the parts streamed (their group kept it);
    // complete, it is no longer kept for them. A new one is recorded with the concatenation,
    // as a PATCH records one, so that no reaper (another instance's: its lock is in-process)
    // expires it while it publishes, or after a crash cut the publish.
    info.expires_ms = Some(super::expiration::deadline(tus.cfg.expiry));
    tus.concatenation_or_500()?
        .concatenate(info, &parts)
        .await?;
    publish::complete(tus, info).await?;
    let store = tus.uploads()?;
    for mut part in parts {
        if part.placement.as_ref().is_some_and(|p| p.upload == info.id) {
            // As loaded: a placed part reads as terminated once its final upload's data went.
            match store.discard(&mut part, UploadState::Terminated).await {
                Ok(()) => tus.release(&part),
                Err(e) => {
                    tracing::warn!(part = %part.id, error = %e, "could not retire a placed part")
                }
            }
        } else if info.unfinished_parts.contains(&part.id) {
            retire(tus, &part.id, &info.id).await;
        }
    }
    Ok(())
}

/// Gives each part placed into `info` that another final upload still waits for its own
/// data back before `info` is concatenated and published: its bytes leave with the published
/// file, and the other final upload is concatenated from the part later. A part shared by
/// two early final uploads is placed into the first only; without this the second could
/// never be concatenated once the first was published.
async fn unplace_shared(tus: &Tus, info: &UploadInfo, parts: &mut [UploadInfo]) -> Result<()> {
    let Some(store) = tus.uploads()?.placement() else {
        return Ok(());
    };
    for part in parts.iter_mut() {
        let Some(id) = UploadId::parse(&part.id) else {
            continue;
        };
        let here = part.placement.as_ref().is_some_and(|p| p.upload == info.id);
        if here && waited_for_elsewhere(tus, &id, &info.id).await {
            store.unplace(part).await?;
        }
    }
    Ok(())
}

/// Terminates an unplaced part whose final upload `fin` was published (see
/// [`UploadInfo::unfinished_parts`]): its data is freed now rather than when it expires.
/// Reloaded first (another instance may have written its record since); a part that is
/// gone or no longer active is left as it is, and one whose record changes meanwhile
/// (a compare-and-swap lost) is left to expire. A part that another final upload still
/// waits for (it names the part and is not concatenated yet) is left too: that one needs
/// it, and retires it once it is published itself.
async fn retire(tus: &Tus, id: &str, fin: &str) {
    let (Some(id), Ok(store)) = (UploadId::parse(id), tus.uploads()) else {
        return;
    };
    let mut part = match store.load(&id).await {
        Ok(p) if p.state == UploadState::Active => p,
        _ => return,
    };
    if waited_for_elsewhere(tus, &id, fin).await {
        return;
    }
    match store.discard(&mut part, UploadState::Terminated).await {
        Ok(()) => tus.release(&part),
        Err(e) => tracing::warn!(part = %id, error = %e, "could not retire a part"),
    }
}

/// Whether a final upload other than `fin` names the part `id` and is not concatenated yet
/// (so it will read the part). Unsure (the markers cannot be listed): yes, and the part
/// stays until it expires.
async fn waited_for_elsewhere(tus: &Tus, id: &UploadId, fin: &str) -> bool {
    let (Some(concat), Ok(store)) = (tus.concatenation(), tus.uploads()) else {
        return false;
    };
    let Ok(finals) = concat.finals_of(id).await else {
        return true;
    };
    for other in finals.iter().filter(|f| f.as_str() != fin) {
        if let Ok(f) = store.load(other).await {
            if waits_for(&f, id.as_str()) {
                return true;
            }
        }
    }
    false
}

/// Whether `fin` is a final upload still to be concatenated that names the part `part`.
pub(super) fn waits_for(fin: &UploadInfo, part: &str) -> bool {
    let Concat::Final { parts } = &fin.concat else {
        return false;
    };
    fin.state == UploadState::Active && !fin.is_complete() && parts.iter().any(|p| p == part)
}

/// concatenation-unfinished: once the partial upload `part` is complete, concatenates every
/// final upload that names it and now has all its parts (runs in the background after the
/// partial's last PATCH; a HEAD of the final upload does the same on demand).
pub async fn finish_waiting_finals(tus: Arc<Tus>, part: String) {
    let Some(part_id) = UploadId::parse(&part) else {
        return;
    };
    let finals = match tus.concatenation() {
        Some(store) => store.finals_of(&part_id).await.map_err(Error::from),
        None => return,
    };
    let finals = match finals {
        Ok(f) => f,
        Err(e) => {
            tracing::warn!(%part, error = %e, "could not find the final uploads waiting for a part");
            return;
        }
    };
    for id in finals {
        let _guard = match tus.lock(&id).await {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(%part, fin = %id, error = %e, "could not finish a final upload waiting for a part");
                continue;
            }
        };
        // A final upload that is gone, finished, or not (yet) recorded has nothing to do.
        let Ok(mut info) = super::core::load_live(&tus, &id).await else {
            continue;
        };
        if let Err(e) = try_finish(&tus, &mut info).await {
            tracing::warn!(%part, fin = %id, error = %e, "could not finish a final upload waiting for a part");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "0123456789abcdef0123456789abcdef";
    const B: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn parses_partial_and_final_with_paths_or_urls() {
        assert_eq!(parse("partial", "/files/").unwrap(), ConcatRequest::Partial);
        let v = format!("final;/files/{A} http://h:1/files/{B}/");
        let ids = vec![UploadId::parse(A).unwrap(), UploadId::parse(B).unwrap()];
        assert_eq!(
            parse(&v, "/files/").unwrap(),
            ConcatRequest::Final(ids.clone())
        );
        // The absolute URLs ferryd hands out, also under a --public-url path prefix.
        let v =
            format!("final;https://up.example/ferry/files/{A} https://up.example/ferry/files/{B}");
        assert_eq!(parse(&v, "/files/").unwrap(), ConcatRequest::Final(ids));
    }

    #[test]
    fn refuses_foreign_or_empty_lists() {
        for bad in [
            "final;",
            "final;/other/x",
            "whole",
            &format!("final;/files/{A}/../x"),
        ] {
            assert_eq!(
                parse(bad, "/files/").unwrap_err().status(),
                StatusCode::BAD_REQUEST,
                "{bad}"
            );
        }
    }
}
