//! The content index of the S3 store (instant upload), kept in the bucket so every instance
//! sees it: one small JSON object per content, `PREFIX/.ferry/index/<len>/<sha256>`, naming
//! the published path and the ETag of the object version that was hashed. An entry is
//! trusted only while the object under that path still has that ETag (S3's ETag changes
//! whenever the object is replaced), and the copy an instant upload makes is made only from
//! that version (`x-amz-copy-source-if-match`), so another file put under the name between
//! the check and the copy is never what gets published (issue 12's swap race, on S3).
//!
//! Filled when an upload is published, in one of two ways:
//! - **Hashed as it arrived.** The appenders hash each part, in order, as it leaves for S3,
//!   and every record write carries the hash state of exactly the recorded parts
//!   ([`Record::hashed`](super::upload::Record), a few hundred bytes: any instance that takes
//!   the upload over goes on from it). The publish reads the tail (less than a part), finishes
//!   the digest ([`S3Store::upload_digest`]) and writes the entry for the ETag the completion
//!   of the published object answered: the object that was made from exactly those parts.
//!   No byte of it is read back. The digest is ferryd's own, over the bytes it committed:
//!   a record's parts never change once recorded (part objects are named by their writer's
//!   token; a rollback goes back to a record, state included), and a state that does not
//!   cover exactly the recorded parts is dropped, never trusted.
//! - **Read back** ([`S3Store::index_later`]): the published object is read and hashed in the
//!   background (at most [`HASHING_AT_ONCE`] at a time), its entry written when the hash is
//!   done, whenever the first way does not apply: a concatenated final upload (its bytes
//!   never pass through ferryd in order, and SHA-256 does not compose from the parts'
//!   hashes), an upload begun before records carried the state (or written by an older
//!   ferryd meanwhile), a publish that found its copy from an earlier attempt in place (no
//!   completion ETag to pair with). The GET that is hashed names the ETag of the bytes it
//!   returned, so an entry always pairs a digest with the version it was computed from, even
//!   if the object is replaced meanwhile.
//!
//! Only published uploads are indexed (not objects put into the bucket by other means), and
//! empty files are not (nothing to save).
//!
//! A stale entry (its object replaced or deleted) answers "no" to a lookup and is rewritten
//! the next time that content is published; `index_has_length` may say "yes" for it, which
//! only costs a client a hash.
//!
//! The same hashing also writes `PREFIX/.ferry/digests/<path>`: the SHA-256 of the version of
//! the object at `path` with a given ETag, which downloads send as `Repr-Digest` (RFC 9530)
//! while the object keeps that ETag, as the directory store does from its index (issue 12).

use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::StreamExt as _;
use object_store::path::Path as Key;
use object_store::ObjectStoreExt as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::upload::{other, Keys, Record};
use super::{from_s3, S3Store};
use crate::path::RelPath;
use crate::store::upload::{ContentIndex, Hold, Indexed, UploadInfo, UploadState};
use crate::store::{BoxFuture, StoreError};

/// Published uploads read back for the index at once.
pub(super) const HASHING_AT_ONCE: usize = 2;

/// How the published uploads of this instance got their digests (tests read it to tell that
/// nothing was read back).
#[derive(Debug, Default)]
pub(super) struct Counts {
    /// Hashed as they arrived: no byte read back.
    pub known: AtomicU64,
    /// Read back and hashed after the publish.
    pub read_back: AtomicU64,
}

/// Version of the [`Entry`] format.
const ENTRY_VERSION: u32 = 1;

/// One index entry: where content of a length and digest was published, and the ETag of
/// the version that was hashed.
#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    version: u32,
    path: String,
    etag: String,
}

/// The digest of one version of a published object: `PREFIX/.ferry/digests/<path>`.
#[derive(Debug, Serialize, Deserialize)]
struct PathDigest {
    version: u32,
    /// The ETag of the version that was hashed.
    etag: String,
    /// Its SHA-256, 64 hex digits.
    sha256: String,
}

/// A digest as the index names it: 64 hex digits, lowercase; `None` for anything else.
fn digest_name(sha256: &str) -> Option<String> {
    let s = sha256.trim().to_ascii_lowercase();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then_some(s)
}

impl S3Store {
    fn index_dir(&self, len: u64) -> Key {
        self.state_dir("index").join(len.to_string())
    }

    /// Where the digest of the object at `path` is kept.
    fn digest_key(&self, path: &RelPath) -> Option<Key> {
        let rel = path.as_str().trim_matches('/');
        Key::parse(format!("{}/{rel}", self.state_dir("digests"))).ok()
    }

    /// The digest recorded for the object at `path`: the ETag of the version that was hashed
    /// and its SHA-256 (see the module), from [`Digests`] while it is fresh there, else read
    /// from the bucket. Any failure is "not known": a response then goes without
    /// `Repr-Digest`. The caller checks the ETag against the version it serves.
    pub(super) async fn digest_of(&self, path: &RelPath) -> Option<(String, [u8; 32])> {
        let key = self.digest_key(path)?;
        let now = std::time::Instant::now();
        if let Some(known) = self.digests.get(&key, now) {
            return known;
        }
        let read = self.read_digest(&key).await;
        self.digests.put(key, read.clone(), now);
        read
    }

    /// Forgets what [`S3Store::digest_of`] said of `path` (its object is another version now).
    pub(super) fn digest_stale(&self, path: &RelPath) {
        if let Some(key) = self.digest_key(path) {
            self.digests.forget(&key);
        }
    }

    async fn read_digest(&self, key: &Key) -> Option<(String, [u8; 32])> {
        let raw = self.client.get(key).await.ok()?.bytes().await.ok()?;
        let d: PathDigest = serde_json::from_slice(&raw).ok()?;
        if d.version != ENTRY_VERSION {
            return None;
        }
        let sha: [u8; 32] = hex::decode(digest_name(&d.sha256)?).ok()?.try_into().ok()?;
        Some((d.etag, sha))
    }

    /// Reads `path` back, hashes it and records it in the index, in the background.
    pub(super) fn index_later(&self, path: RelPath) {
        let store = self.clone();
        tokio::spawn(async move {
            let Ok(_permit) = store.hashing.clone().acquire_owned().await else {
                return;
            };
            if let Err(e) = store.index_now(&path).await {
                tracing::warn!(path = %path.as_str(), error = %e, "could not index a published upload");
            }
        });
    }

    /// The SHA-256 of the complete upload `rec`: its appenders' state of the recorded parts
    /// ([`Record::parts_hashed`]) and its tail, read. `None` when the record has no state for
    /// exactly its parts (the publish then reads the object back), or the tail cannot be read.
    pub(super) async fn upload_digest(&self, keys: &Keys, rec: &Record) -> Option<[u8; 32]> {
        let mut h = rec.parts_hashed(self.index)?;
        let tail = self
            .tail_bytes(keys, rec, rec.tail_len().ok()?)
            .await
            .ok()?;
        h.update(&tail);
        (Some(h.len()) == rec.info.length).then(|| h.digest())
    }

    /// Writes the index entry of the object just published at `path` (key `key`, `len`
    /// bytes), whose completion answered `etag`, with the digest `sha` ferryd computed as its
    /// bytes arrived (see the module). Only if the object has that ETag now, as S3 names it
    /// in a HEAD (which later lookups compare with): a store that spells a completion's ETag
    /// otherwise, or an object replaced since, is read back instead. Best effort, as the
    /// read-back is: a failure leaves the object unindexed.
    pub(super) async fn index_known(
        &self,
        path: &RelPath,
        key: &Key,
        len: u64,
        etag: &str,
        sha: [u8; 32],
    ) {
        match self.client.head(key).await {
            Ok(m) if m.e_tag.as_deref() == Some(etag) => {}
            _ => return self.index_later(path.clone()),
        }
        self.indexed.known.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = self.record_digest(path, len, etag, sha).await {
            tracing::warn!(path = %path.as_str(), error = %e, "could not index a published upload");
        }
    }

    /// Hashes the object at `path` and writes its index entry.
    pub(super) async fn index_now(&self, path: &RelPath) -> Result<(), StoreError> {
        self.indexed.read_back.fetch_add(1, Ordering::Relaxed);
        let key = self.key(path).ok_or(StoreError::NotFound)?;
        let got = self.client.get(&key).await.map_err(from_s3)?;
        let (len, etag) = (got.meta.size, got.meta.e_tag.clone());
        let etag = etag.ok_or_else(|| other("object without ETag"))?;
        if len == 0 {
            return Ok(());
        }
        let mut hash = Sha256::new();
        let mut seen = 0u64;
        let mut body = got.into_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(from_s3)?;
            seen += chunk.len() as u64;
            hash.update(&chunk);
        }
        if seen != len {
            return Err(other("object shorter than announced"));
        }
        self.record_digest(path, len, &etag, hash.finalize().into())
            .await
    }

    /// Writes that the version `etag` of the object at `path` (`len` bytes, not empty) has
    /// the SHA-256 `sha`: its digest entry and its index entry.
    async fn record_digest(
        &self,
        path: &RelPath,
        len: u64,
        etag: &str,
        sha: [u8; 32],
    ) -> Result<(), StoreError> {
        if len == 0 {
            return Ok(());
        }
        self.write_digest(path, etag, sha).await?;
        let sha = hex::encode(sha);
        let entry = Entry {
            version: ENTRY_VERSION,
            path: path.as_str().to_owned(),
            etag: etag.to_owned(),
        };
        let raw = serde_json::to_vec(&entry).map_err(other)?;
        let at = self.index_dir(len).join(sha);
        self.client.put(&at, raw.into()).await.map_err(from_s3)?;
        Ok(())
    }

    /// Records `sha` as the digest of the version `etag` of the object at `path`.
    async fn write_digest(
        &self,
        path: &RelPath,
        etag: &str,
        sha: [u8; 32],
    ) -> Result<(), StoreError> {
        let Some(at) = self.digest_key(path) else {
            return Ok(());
        };
        let digest = PathDigest {
            version: ENTRY_VERSION,
            etag: etag.to_owned(),
            sha256: hex::encode(sha),
        };
        let raw = serde_json::to_vec(&digest).map_err(other)?;
        self.client.put(&at, raw.into()).await.map_err(from_s3)?;
        let known = Some((digest.etag, sha));
        self.digests.put(at, known, std::time::Instant::now());
        Ok(())
    }

    /// Gives the copy at `to` (key `key`) of version `etag` of `from` the digest recorded for
    /// that version, if there is one (an instant upload: the content is not read again).
    /// Best effort: without it the copy is served without `Repr-Digest`.
    async fn copy_digest(&self, from: &RelPath, etag: &str, to: &RelPath, key: &Key) {
        let Some((hashed, sha)) = self.digest_of(from).await else {
            return;
        };
        let copied = match self.client.head(key).await {
            Ok(m) if hashed == etag => m.e_tag,
            _ => None,
        };
        if let Some(copied) = copied {
            if let Err(e) = self.write_digest(to, &copied, sha).await {
                tracing::warn!(path = %to.as_str(), error = %e, "could not record the digest of an instant upload");
            }
        }
    }

    /// After a copy of version `etag` of `from` to `copy`: if `from` is not that version any
    /// more, removes the copy and answers [`StoreError::NotFound`]. S3 itself refuses a copy
    /// from another version (`x-amz-copy-source-if-match`); this check is for servers that
    /// ignore the condition on part copies (moto does), where the object might have been
    /// replaced while it was copied.
    async fn check_source_kept(
        &self,
        from: &Key,
        etag: &str,
        copy: &Key,
    ) -> Result<(), StoreError> {
        let kept = match self.client.head(from).await {
            Ok(m) => m.e_tag.as_deref() == Some(etag),
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(from_s3(e)),
        };
        if kept {
            return Ok(());
        }
        if let Err(e) = self.client.delete(copy).await {
            tracing::warn!(key = %copy, error = %e, "could not remove a copy of a replaced object");
        }
        Err(StoreError::NotFound)
    }
}

/// What this instance last read of the digests in the bucket, so a download does not read
/// the digest of its object on every request: a digest found stays while its object keeps
/// the hashed version (the caller checks the ETag and calls [`S3Store::digest_stale`] when it
/// differs); "none" is asked again after [`Digests::MISSING_FOR`] (the background hashing, or
/// another instance's, may write it). At most [`Digests::MAX`] paths; when full it starts over.
#[derive(Default)]
pub(super) struct Digests {
    known: std::sync::Mutex<std::collections::HashMap<Key, Known>>,
}

type Known = (Option<(String, [u8; 32])>, std::time::Instant);

impl Digests {
    const MISSING_FOR: std::time::Duration = std::time::Duration::from_secs(5);
    const MAX: usize = 4096;

    /// `Some(answer)` if the answer for `key` is still good at `now`.
    fn get(&self, key: &Key, now: std::time::Instant) -> Option<Option<(String, [u8; 32])>> {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(key)? {
            (Some(d), _) => Some(Some(d.clone())),
            (None, at) if now.saturating_duration_since(*at) < Self::MISSING_FOR => Some(None),
            (None, _) => None,
        }
    }

    fn put(&self, key: Key, answer: Option<(String, [u8; 32])>, now: std::time::Instant) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= Self::MAX {
            known.clear();
        }
        known.insert(key, (answer, now));
    }

    fn forget(&self, key: &Key) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        known.remove(key);
    }
}

impl ContentIndex for S3Store {
    fn index_has_length(&self, len: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        Box::pin(async move {
            if len == 0 {
                return Ok(false);
            }
            let dir = self.index_dir(len);
            let mut listed = self.client.list(Some(&dir));
            match listed.next().await {
                Some(Ok(_)) => Ok(true),
                Some(Err(e)) => Err(from_s3(e)),
                None => Ok(false),
            }
        })
    }

    fn index_find<'a>(
        &'a self,
        sha256: &'a str,
        len: u64,
    ) -> BoxFuture<'a, Result<Option<Indexed>, StoreError>> {
        Box::pin(async move {
            let Some(sha) = digest_name(sha256).filter(|_| len > 0) else {
                return Ok(None);
            };
            let raw = match self.client.get(&self.index_dir(len).join(sha)).await {
                Ok(got) => got.bytes().await.map_err(from_s3)?,
                Err(object_store::Error::NotFound { .. }) => return Ok(None),
                Err(e) => return Err(from_s3(e)),
            };
            let entry: Entry = match serde_json::from_slice(&raw) {
                Ok(
                    e @ Entry {
                        version: ENTRY_VERSION,
                        ..
                    },
                ) => e,
                _ => return Ok(None), // another format: not trusted
            };
            let Ok(path) = RelPath::from_segments(entry.path.split('/')) else {
                return Ok(None);
            };
            if !self.vis.serves_path(&path) {
                return Ok(None);
            }
            let key = self.key(&path).ok_or(StoreError::NotFound)?;
            match self.client.head(&key).await {
                Ok(m) if m.size == len && m.e_tag.as_deref() == Some(entry.etag.as_str()) => {
                    Ok(Some(Indexed {
                        path,
                        hold: Hold::ETag(entry.etag),
                    }))
                }
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(from_s3(e)),
            }
        })
    }

    fn publish_copy<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        src: &'a Indexed,
        dir: &'a RelPath,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RelPath, StoreError>> {
        Box::pin(async move {
            let Hold::ETag(etag) = &src.hold else {
                return Err(other("a content index hold of another store"));
            };
            if dir.is_hidden() {
                return Err(StoreError::Forbidden);
            }
            let len = info
                .length
                .filter(|&l| l > 0)
                .ok_or_else(|| other("instant upload without a length"))?;
            let from = self.key(&src.path).ok_or(StoreError::NotFound)?;
            // The copy's multipart upload at the served name is recorded before it is
            // filled, as a publish's is: a crash or a failed abort leaves it named, and the
            // next publish, expiry or termination of this upload aborts it. Only that: the
            // record keeps the creation's offset until the copy is complete.
            let keys = Keys::new(self, &info.id);
            let rec = self.read_record(&keys).await?;
            if rec.info.revision != info.revision {
                return Err(StoreError::Conflict);
            }
            let rec = tokio::sync::Mutex::new(rec);
            let note = |key: Key, upload: String| -> BoxFuture<'_, Result<(), StoreError>> {
                let (keys, rec) = (&keys, &rec);
                Box::pin(async move {
                    let mut rec = rec.lock().await;
                    rec.publish_upload = Some((key.as_ref().to_owned(), upload));
                    self.write_record(keys, &mut rec).await
                })
            };
            let copied = self
                .copy_no_clobber(
                    &[(from.clone(), len)],
                    Some(etag),
                    Some(&note),
                    &info.id,
                    dir,
                    name,
                )
                .await;
            // Moved on by the notes, whatever the copy's outcome.
            info.revision = rec.into_inner().info.revision;
            let (path, key, _) = copied?;
            self.check_source_kept(&from, etag, &key).await?;
            self.copy_digest(&src.path, etag, &path, &key).await;
            let published = UploadState::Published {
                path: path.as_str().to_string(),
            };
            self.swap(info, |r| {
                r.info.offset = len;
                r.info.state = published;
                r.multipart = None;
                r.parts.clear();
                r.publish_upload = None; // completed
            })
            .await?;
            Ok(path)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::upload::{Concat, Concatenation as _, UploadId, UploadStore as _};
    use bytes::Bytes;

    /// A published upload of `data` at `name` in the root of `s`.
    async fn published(s: &S3Store, data: &[u8], name: &str) -> RelPath {
        let mut info = UploadInfo::new(
            &UploadId::random().unwrap(),
            Some(data.len() as u64),
            None,
            Concat::None,
        );
        s.create(&mut info).await.unwrap();
        let mut app = s.append(&info).await.unwrap();
        app.write(Bytes::copy_from_slice(data)).await.unwrap();
        app.checkpoint(&mut info).await.unwrap();
        s.publish(&mut info, &RelPath::root(), name).await.unwrap()
    }

    async fn new_upload(s: &S3Store, len: u64) -> UploadInfo {
        let mut info = UploadInfo::new(&UploadId::random().unwrap(), Some(len), None, Concat::None);
        s.create(&mut info).await.unwrap();
        info.offset = len;
        info
    }

    /// `len` bytes of a pattern that differs for each `seed` (and nowhere repeats a part).
    fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i.wrapping_mul(seed as usize * 2 + 7) ^ (i >> 13)) as u8)
            .collect()
    }

    /// A new upload of `len` bytes (`concat`), empty.
    async fn created(s: &S3Store, len: usize, concat: Concat) -> UploadInfo {
        let mut info =
            UploadInfo::new(&UploadId::random().unwrap(), Some(len as u64), None, concat);
        s.create(&mut info).await.unwrap();
        info
    }

    /// Appends `data` to `info` with one appender (one PATCH) in 100 KiB writes.
    async fn patch(s: &S3Store, info: &mut UploadInfo, data: &[u8]) {
        let mut app = s.append(info).await.unwrap();
        for piece in data.chunks(100 << 10) {
            app.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        app.checkpoint(info).await.unwrap();
        app.close().await.unwrap();
    }

    /// How the uploads published by `s` got their digests: (hashed as they arrived, read back).
    fn counts(s: &S3Store) -> (u64, u64) {
        let c = &s.indexed;
        (
            c.known.load(Ordering::Relaxed),
            c.read_back.load(Ordering::Relaxed),
        )
    }

    /// The index entry of `data`, awaited (a read-back runs in the background) for up to 30 s.
    async fn found(s: &S3Store, data: &[u8]) -> Option<Indexed> {
        let sha = hex::encode(Sha256::digest(data));
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let f = s.index_find(&sha, data.len() as u64).await.unwrap();
            if f.is_some() || std::time::Instant::now() > until {
                return f;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// Checks that `path` was indexed as `data`, and downloads get its digest for the ETag
    /// the object has.
    async fn indexed_as(s: &S3Store, path: &RelPath, data: &[u8]) {
        let found = found(s, data).await.expect("not in the index");
        assert_eq!(found.path, *path);
        let etag = s.client.head(&s.key(path).unwrap()).await.unwrap().e_tag;
        let (hashed, sha) = s.digest_of(path).await.expect("no digest");
        assert_eq!(Some(hashed), etag, "the digest is for the version served");
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(data)));
    }

    // Issue 11 point 7(ii): an upload's bytes are hashed as its parts leave for S3, PATCH after
    // PATCH (the state goes from appender to appender in the record), so the publish indexes
    // it without reading the object back: the right digest, for the ETag downloads see.
    #[tokio::test]
    async fn an_upload_over_several_patches_is_indexed_without_a_read_back() {
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let part = super::super::upload::MIN_PART;
        let data = bytes_of(3 * part + 1234, 1);
        let mut info = created(&s, data.len(), Concat::None).await;
        let cuts = [0, part + 10, part + 20, 3 * part + 1, data.len()];
        for w in cuts.windows(2) {
            patch(&s, &mut info, &data[w[0]..w[1]]).await;
            let rec = s.read_record(&Keys::new(&s, &info.id)).await.unwrap();
            let hashed = rec.hashed.as_ref().map(|h| h.len);
            assert_eq!(
                hashed,
                Some(rec.tail_start()),
                "the state of the recorded parts"
            );
        }
        assert!(info.is_complete());
        let path = s
            .publish(&mut info, &RelPath::root(), "f.bin")
            .await
            .unwrap();
        assert_eq!(
            counts(&s),
            (1, 0),
            "hashed as it arrived, nothing read back"
        );
        indexed_as(&s, &path, &data).await;
        assert_eq!(counts(&s), (1, 0));
    }

    // A completion ETag that the object does not have (a store that spells it otherwise, an
    // object replaced since) is never paired with the digest: the object is read back.
    #[tokio::test]
    async fn a_completion_etag_the_object_does_not_have_falls_back_to_the_read_back() {
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let data = bytes_of(1000, 5);
        let path = published(&s, &data, "e.bin").await;
        let before = counts(&s);
        let key = s.key(&path).unwrap();
        let sha: [u8; 32] = Sha256::digest(&data).into();
        s.index_known(&path, &key, 1000, "\"not-its-etag\"", sha)
            .await;
        assert_eq!(counts(&s).0, before.0, "not indexed as known");
        // The read-back runs in the background.
        let until = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while counts(&s).1 == before.1 && std::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(counts(&s).1, before.1 + 1, "read back");
        indexed_as(&s, &path, &data).await;
    }

    // A rollback (a chunk whose checksum did not match) takes the hash state back with the
    // record: the bytes dropped never count in the digest.
    #[tokio::test]
    async fn a_rollback_takes_the_hash_back_with_the_record() {
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let part = super::super::upload::MIN_PART;
        let data = bytes_of(2 * part + 99, 2);
        let mut info = created(&s, data.len(), Concat::None).await;
        let mut app = s.append(&info).await.unwrap();
        app.write(Bytes::copy_from_slice(&data[..part + 5]))
            .await
            .unwrap();
        app.checkpoint(&mut info).await.unwrap();
        // A wrong chunk, long enough that a part of it leaves for S3 (and is hashed)...
        app.write(Bytes::from(vec![0xEE; part + 7])).await.unwrap();
        // ... dropped: back to the record.
        app.rollback(info.offset).await.unwrap();
        app.write(Bytes::copy_from_slice(&data[part + 5..]))
            .await
            .unwrap();
        app.checkpoint(&mut info).await.unwrap();
        app.close().await.unwrap();
        let path = s
            .publish(&mut info, &RelPath::root(), "r.bin")
            .await
            .unwrap();
        assert_eq!(counts(&s), (1, 0));
        indexed_as(&s, &path, &data).await;
    }

    // Issue 11 point 4: a writer that takes the upload over goes on from the state in the
    // record; what the writer it interrupted sent (and hashed) after its last record write
    // never counts.
    #[tokio::test]
    async fn a_takeover_goes_on_from_the_recorded_hash() {
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let part = super::super::upload::MIN_PART;
        let data = bytes_of(2 * part + 777, 3);
        let mut info = created(&s, data.len(), Concat::None).await;
        let mut a = s.append(&info).await.unwrap();
        a.write(Bytes::copy_from_slice(&data[..part + 5]))
            .await
            .unwrap();
        a.checkpoint(&mut info).await.unwrap();
        a.write(Bytes::from(vec![0xEE; part])).await.unwrap();
        let id = UploadId::parse(&info.id).unwrap();
        s.take_over(&id, "b").await.unwrap();
        let mut info_b = s.load(&id).await.unwrap();
        patch(&s, &mut info_b, &data[part + 5..]).await;
        assert!(matches!(
            a.checkpoint(&mut info).await,
            Err(StoreError::Conflict)
        ));
        a.close().await.unwrap();
        let path = s
            .publish(&mut info_b, &RelPath::root(), "t.bin")
            .await
            .unwrap();
        assert_eq!(counts(&s), (1, 0));
        indexed_as(&s, &path, &data).await;
    }

    // Where no state covers exactly the recorded parts (an upload begun by an older ferryd,
    // which writes records without it; a state of fewer bytes), the publish reads the object
    // back, as before: the digest is still right. (A state of as many other bytes cannot be
    // told from the right one: the record is trusted as the index entries in the bucket are.)
    #[tokio::test]
    async fn without_a_state_for_exactly_the_parts_the_upload_is_read_back() {
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let part = super::super::upload::MIN_PART;
        for (n, wrong) in [None, Some(part as u64 - 64), Some(part as u64 + 1)]
            .into_iter()
            .enumerate()
        {
            let data = bytes_of(2 * part + 50, 4 + n as u8);
            let mut info = created(&s, data.len(), Concat::None).await;
            patch(&s, &mut info, &data[..part + 1]).await;
            let keys = Keys::new(&s, &info.id);
            let mut rec = s.read_record(&keys).await.unwrap();
            rec.hashed = wrong.map(|len| {
                // A well-formed state, of fewer or more bytes than the parts hold.
                let mut h = crate::index::running::Running::new();
                h.update(&vec![0u8; len as usize]);
                h.save()
            });
            s.write_record(&keys, &mut rec).await.unwrap();
            let mut info = s.load(&UploadId::parse(&info.id).unwrap()).await.unwrap();
            patch(&s, &mut info, &data[part + 1..]).await;
            let name = format!("old{n}.bin");
            let path = s.publish(&mut info, &RelPath::root(), &name).await.unwrap();
            indexed_as(&s, &path, &data).await;
            assert_eq!(counts(&s), (0, n as u64 + 1), "{wrong:?}");
        }
    }

    // A final upload made of partial uploads: its bytes never passed through ferryd in order,
    // so it is read back (the partial uploads are not hashed at all).
    #[tokio::test]
    async fn a_final_upload_from_partial_uploads_is_read_back() {
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let part = super::super::upload::MIN_PART;
        let datas = [bytes_of(part + 3, 9), bytes_of(1000, 10)];
        let mut ids = Vec::new();
        let mut parts = Vec::new();
        for d in &datas {
            let mut p = created(&s, d.len(), Concat::Partial).await;
            patch(&s, &mut p, d).await;
            let rec = s.read_record(&Keys::new(&s, &p.id)).await.unwrap();
            assert!(rec.hashed.is_none(), "a partial upload is not hashed");
            ids.push(p.id.clone());
            parts.push(p);
        }
        let mut fin = UploadInfo::new(
            &UploadId::random().unwrap(),
            None,
            None,
            Concat::Final { parts: ids },
        );
        s.create(&mut fin).await.unwrap();
        s.concatenate(&mut fin, &parts).await.unwrap();
        let path = s
            .publish(&mut fin, &RelPath::root(), "fin.bin")
            .await
            .unwrap();
        let want = datas.concat();
        indexed_as(&s, &path, &want).await;
        assert_eq!(counts(&s), (0, 1));
    }

    // Issue 11 point 3: an entry counts only while the object under its path is the version
    // that was hashed.
    #[tokio::test]
    async fn an_entry_is_trusted_only_while_the_object_keeps_its_etag() {
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let path = published(&s, b"content", "f.bin").await;
        s.index_now(&path).await.unwrap();
        let sha = hex::encode(Sha256::digest(b"content"));
        let found = s.index_find(&sha.to_uppercase(), 7).await.unwrap().unwrap();
        assert_eq!(found.path.as_str(), "f.bin");
        assert!(s.index_has_length(7).await.unwrap());
        assert!(!s.index_has_length(8).await.unwrap());
        assert!(
            s.index_find(&sha, 8).await.unwrap().is_none(),
            "size must match"
        );
        assert!(s.index_find("../../etc/passwd", 7).await.unwrap().is_none());
        let key = s.key(&path).unwrap();
        s.client
            .put(&key, Bytes::from_static(b"CONTENT").into())
            .await
            .unwrap();
        assert!(
            s.index_find(&sha, 7).await.unwrap().is_none(),
            "replaced: not trusted"
        );
    }

    // Issue 12's swap race on S3: the object is replaced after the index vouched for it and
    // before the copy. The copy must not publish the other content: the instant upload is
    // refused (NotFound, the caller uploads as usual) and nothing is left under the name.
    #[tokio::test]
    async fn instant_publish_never_copies_an_object_replaced_after_the_check() {
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let good = b"checked content".to_vec();
        let path = published(&s, &good, "src.bin").await;
        s.index_now(&path).await.unwrap();
        let sha = hex::encode(Sha256::digest(&good));
        let found = s.index_find(&sha, 15).await.unwrap().unwrap();
        s.client
            .put(
                &s.key(&path).unwrap(),
                Bytes::from_static(b"swapped content").into(),
            )
            .await
            .unwrap();
        let mut info = new_upload(&s, 15).await;
        let before = s.load(&UploadId::parse(&info.id).unwrap()).await.unwrap();
        let r = s
            .publish_copy(&mut info, &found, &RelPath::root(), "copy.bin")
            .await;
        assert!(matches!(r, Err(StoreError::NotFound)), "{r:?}");
        let copy = s
            .key(&RelPath::from_segments(["copy.bin"]).unwrap())
            .unwrap();
        assert!(s.client.head(&copy).await.is_err(), "nothing published");
        let after = s.load(&UploadId::parse(&info.id).unwrap()).await.unwrap();
        // Only the copy's multipart upload was recorded (moving the revision on, which the
        // caller gets, so the upload goes on as usual).
        assert_eq!(after.revision, info.revision, "the caller has the revision");
        let unversioned = |i: UploadInfo| UploadInfo {
            revision: None,
            ..i
        };
        assert_eq!(
            unversioned(after),
            unversioned(before),
            "the upload is as it was"
        );
    }

    // Issue 12 on S3: a digest found is kept until its object changes, "none" only briefly
    // (the background hashing writes it soon).
    #[test]
    fn digests_read_are_kept_and_missing_ones_asked_again_soon() {
        let d = Digests::default();
        let t0 = std::time::Instant::now();
        let (a, b) = (Key::from("a"), Key::from("b"));
        assert_eq!(d.get(&a, t0), None, "never read");
        d.put(a.clone(), Some(("\"e\"".into(), [7; 32])), t0);
        d.put(b.clone(), None, t0);
        let later = t0 + Digests::MISSING_FOR;
        assert_eq!(d.get(&a, later), Some(Some(("\"e\"".into(), [7; 32]))));
        assert_eq!(d.get(&b, t0), Some(None));
        assert_eq!(d.get(&b, later), None, "asked again");
        d.forget(&a);
        assert_eq!(d.get(&a, t0), None);
        for i in 0..Digests::MAX {
            d.put(Key::from(format!("k{i}")), None, t0);
        }
        assert!(d.known.lock().unwrap().len() <= Digests::MAX);
    }

    #[test]
    fn digests_are_64_hex_digits_named_in_lowercase() {
        let sha = "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD";
        assert_eq!(digest_name(sha).unwrap(), sha.to_ascii_lowercase());
        assert!(digest_name(&sha[1..]).is_none());
        assert!(digest_name("../../../../etc/passwd").is_none());
        let mut bad = sha.to_owned();
        bad.replace_range(0..1, "g");
        assert!(digest_name(&bad).is_none());
    }
}
