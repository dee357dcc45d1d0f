//! tus uploads into S3 (issue 11 point 3, core extensions): one S3 multipart upload per tus
//! upload, parts of [`part_size`] bytes, a tail shorter than a part kept as an object of its own
//! until a later checkpoint completes a part, and one record object per upload listing the
//! parts. Every change of the record is a compare-and-swap (`PutMode::Create`, then
//! `PutMode::Update` with the record's ETag), so a writer whose upload changed meanwhile
//! fails with [`StoreError::Conflict`] and records nothing.
//!
//! Layout under `PREFIX/.ferry/uploads/` (never served or listed):
//! - `<id>.info`: the [`Record`] (versioned JSON): the [`UploadInfo`], the multipart upload id,
//!   the recorded parts with their part numbers, the next free part number, the writer's
//!   lease. The offset HEAD reports is the record's: parts S3 acknowledged plus the recorded
//!   tail, never bytes S3 has not acknowledged.
//! - `<id>.tail.<start>.<token>`: the bytes from `start` (the sum of the recorded parts) on;
//!   only the first `offset - start` count. Named by its start and by a token of the
//!   appender that wrote it, so neither a tail written by a checkpoint that never got
//!   recorded nor one an interrupted writer sends late can be mistaken for the recorded one.
//! - `<id>.bin`: the multipart upload's key; the completed object while publishing.
//!
//! Publish copies the completed object to its name with a multipart copy completed with
//! `If-None-Match: *` ([`super::copy`]), so nothing is visible before it is complete and
//! an existing object is never replaced (the next `name (n).ext` is tried instead), then has
//! the published object read back for the content index ([`super::index`]).
//!
//! Concatenation is [`super::concat`], the content index (instant upload) [`super::index`].
//!
//! Several instances (issue 11 point 4): a writer reserves part numbers in the record before
//! it sends the parts, so a writer that takes the upload over ([`super::lease`]) numbers its
//! parts after every part the interrupted one may still send; a publish claims the record
//! before it copies.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{from_s3, S3Store};
use crate::path::RelPath;
use crate::store::upload::{
    random_hex, unix_now_ms, Appender, Concatenation, ContentIndex, Revision, UploadId, UploadInfo,
    UploadState, UploadStore,
};
use crate::store::visibility::RESERVED;
use crate::store::{BoxFuture, StoreError};

/// Request bodies (PATCH, creation-with-upload) an S3 store takes into memory at once. Each
/// holds what arrived since its last checkpoint (the whole chunk when it carries a checksum,
/// which must match before any of it reaches S3: 8 MiB per PATCH of `ferry put`), so a
/// ninth waits, its body unread (TCP holds its client back), until one of them ends: 16
/// uploads at once stay within 8 such buffers (bench/s3/run.sh rss).
pub const RECEIVING: usize = 8;

/// Smallest part ferryd cuts (S3 wants at least 5 MiB for every part but the last).
pub const MIN_PART: usize = 8 << 20;

/// Most parts of one S3 multipart upload.
pub const MAX_PARTS: u64 = 10_000;

/// Largest part S3 takes.
const MAX_PART: u64 = 5 << 30;

/// The size of every part but the last, for uploads of at most `max_upload` bytes: the
/// smallest whole number of MiB, at least [`MIN_PART`], with which [`MAX_PARTS`] parts hold
/// `max_upload` (tusd's s3store sizes its parts the same way). Without a maximum, and past
/// what S3 allows (5 GiB parts), the bounds.
pub fn part_size(max_upload: Option<u64>) -> usize {
    const MIB: u64 = 1 << 20;
    let need = max_upload.map_or(0, |m| m.div_ceil(MAX_PARTS));
    let part = need
        .div_ceil(MIB)
        .saturating_mul(MIB)
        .clamp(MIN_PART as u64, MAX_PART);
    usize::try_from(part).unwrap_or(MIN_PART)
}

/// Version of the [`Record`] format written. Version 1 (before leases, part numbers and
/// tail tokens) still loads: its parts are numbered by position, its tail has no token.
const RECORD_VERSION: u32 = 2;

/// How many `name (n).ext` candidates publish tries.
pub(super) const MAX_CANDIDATES: u32 = 1000;

/// How long a publish holds off other instances' takeovers (see [`Record::publishing_until_ms`]):
/// longer than S3 takes to copy the largest part (5 GiB).
const PUBLISH_HOLD_MS: u64 = 10 * 60 * 1000;

/// The record object of one upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    version: u32,
    pub(super) info: UploadInfo,
    /// The S3 multipart upload, once the first part was cut.
    #[serde(default)]
    pub(super) multipart: Option<String>,
    /// The parts S3 acknowledged, in order.
    #[serde(default)]
    pub(super) parts: Vec<Part>,
    /// The lowest S3 part number no writer has reserved yet. A writer reserves the numbers
    /// of the parts it is about to send by recording them here first (a compare-and-swap),
    /// so a writer that takes the upload over numbers its parts after every part an
    /// interrupted writer may still be sending: those can never replace its own. The parts
    /// completed may therefore skip numbers ([`super::raw`]).
    #[serde(default)]
    next_part: usize,
    /// The token of the recorded tail's object (see [`Keys::tail`]); each appender writes
    /// tails under a token of its own, so an interrupted writer's late tail never replaces
    /// the one recorded by the writer that took over.
    #[serde(default)]
    pub(super) tail: String,
    /// Which instance writes the upload (the lease locker's, [`super::lease`]); `None` for a
    /// store only this process writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lease: Option<super::lease::Lease>,
    /// While a publish copies the data to its name: until when other instances wait instead
    /// of taking the upload over (two publishes would leave two copies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    publishing_until_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Part {
    pub(super) etag: String,
    len: u64,
    /// Its S3 part number; `None` in version 1 records: its position + 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    number: Option<usize>,
}

impl Record {
    /// Where the tail starts: the bytes in the recorded parts. Read back from the bucket, so
    /// added without overflow: parts past `u64` leave no offset after their start, and every
    /// `offset - start` is checked.
    pub(super) fn tail_start(&self) -> u64 {
        self.parts.iter().fold(0u64, |t, p| t.saturating_add(p.len))
    }

    /// The bytes of the recorded tail: from [`Record::tail_start`] to the offset.
    pub(super) fn tail_len(&self) -> Result<u64, StoreError> {
        self.info
            .offset
            .checked_sub(self.tail_start())
            .ok_or_else(|| other("upload offset before its recorded parts"))
    }

    /// The S3 part number of each recorded part, in order.
    fn numbers(&self) -> Vec<usize> {
        self.parts
            .iter()
            .enumerate()
            .map(|(i, p)| p.number.unwrap_or(i + 1))
            .collect()
    }

    /// The recorded parts as (S3 part number, ETag), in order.
    pub(super) fn numbered_parts(&self) -> Vec<(usize, String)> {
        self.numbers()
            .into_iter()
            .zip(self.parts.iter().map(|p| p.etag.clone()))
            .collect()
    }

    /// The next part number a writer may reserve (the record's numbers are read back from
    /// the bucket: added without overflow, and a number past [`MAX_PARTS`] is refused where
    /// it would be sent).
    fn next_free(&self) -> usize {
        let after_parts = self.numbers().last().map_or(1, |n| n.saturating_add(1));
        self.next_part.max(after_parts)
    }
}

pub(super) fn other(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Io(std::io::Error::other(e))
}

/// A lost compare-and-swap is a conflict; anything else is S3's error.
fn from_put(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            StoreError::Conflict
        }
        e => from_s3(e),
    }
}

/// The keys of one upload.
#[derive(Clone)]
pub(super) struct Keys {
    dir: Key,
    id: String,
}

impl Keys {
    pub(super) fn new(store: &S3Store, id: &str) -> Self {
        Self {
            dir: store.uploads_dir(),
            id: id.to_owned(),
        }
    }
    fn record(&self) -> Key {
        self.dir.clone().join(format!("{}.info", self.id))
    }
    pub(super) fn data(&self) -> Key {
        self.dir.clone().join(format!("{}.bin", self.id))
    }
    /// The tail object from `start` on, written by the appender with `token` (empty in
    /// version 1 records).
    pub(super) fn tail(&self, start: u64, token: &str) -> Key {
        let name = match token {
            "" => format!("{}.tail.{start}", self.id),
            t => format!("{}.tail.{start}.{t}", self.id),
        };
        self.dir.clone().join(name)
    }
}

impl S3Store {
    /// `PREFIX/.ferry/<name>`: a directory of the backend's own state.
    pub(super) fn state_dir(&self, name: &str) -> Key {
        Key::from_iter(
            self.prefix
                .split('/')
                .filter(|s| !s.is_empty())
                .chain([RESERVED, name]),
        )
    }

    pub(super) fn uploads_dir(&self) -> Key {
        self.state_dir("uploads")
    }

    pub(super) async fn read_record(&self, keys: &Keys) -> Result<Record, StoreError> {
        let got = self.client.get(&keys.record()).await.map_err(from_s3)?;
        let etag = got.meta.e_tag.clone();
        let raw = got.bytes().await.map_err(from_s3)?;
        let mut rec: Record = serde_json::from_slice(&raw).map_err(other)?;
        if !(1..=RECORD_VERSION).contains(&rec.version) {
            return Err(other(format!(
                "expected upload record version 1 to {RECORD_VERSION}, got {}",
                rec.version
            )));
        }
        rec.info.revision = Some(Revision(etag.ok_or_else(|| other("record without ETag"))?));
        Ok(rec)
    }

    /// Writes `rec` if the stored record is at `rec.info.revision` (absent for `None`), and
    /// moves the revision on.
    async fn write_record(&self, keys: &Keys, rec: &mut Record) -> Result<(), StoreError> {
        let mode = match &rec.info.revision {
            None => PutMode::Create,
            Some(r) => PutMode::Update(UpdateVersion {
                e_tag: Some(r.0.clone()),
                version: None,
            }),
        };
        let mut stored = rec.clone();
        stored.version = RECORD_VERSION;
        stored.info.revision = None;
        let raw = serde_json::to_vec(&stored).map_err(other)?;
        let opts = PutOptions {
            mode,
            ..PutOptions::default()
        };
        let put = self
            .client
            .put_opts(&keys.record(), raw.into(), opts)
            .await
            .map_err(from_put)?;
        let etag = put
            .e_tag
            .ok_or_else(|| other("S3 answered a put without ETag"))?;
        rec.info.revision = Some(Revision(etag));
        Ok(())
    }

    /// Reads the record of `info`, checks it is still at `info.revision`, lets `change` edit
    /// it (its `info` already replaced by `info`) and writes it back by compare-and-swap.
    pub(super) async fn swap(
        &self,
        info: &mut UploadInfo,
        change: impl FnOnce(&mut Record),
    ) -> Result<Record, StoreError> {
        let keys = Keys::new(self, &info.id);
        let mut rec = self.read_record(&keys).await?;
        if rec.info.revision != info.revision {
            return Err(StoreError::Conflict);
        }
        rec.info = info.clone();
        change(&mut rec);
        self.write_record(&keys, &mut rec).await?;
        *info = rec.info.clone();
        Ok(rec)
    }

    /// The first `len` bytes of the tail `rec` names.
    async fn tail_bytes(&self, keys: &Keys, rec: &Record, len: u64) -> Result<Bytes, StoreError> {
        if len == 0 {
            return Ok(Bytes::new());
        }
        let bytes = self
            .client
            .get_range(&keys.tail(rec.tail_start(), &rec.tail), 0..len)
            .await
            .map_err(from_s3)?;
        if bytes.len() as u64 != len {
            return Err(other("upload tail shorter than recorded"));
        }
        Ok(bytes)
    }

    /// Removes the staging objects of an upload (best effort: a lifecycle rule is the
    /// backstop) and aborts its multipart upload.
    async fn remove_staging(&self, keys: &Keys, multipart: Option<&String>) {
        if let Some(mp) = multipart {
            let _ = self.s3.abort_multipart(&keys.data(), mp).await;
        }
        let mut listed = self.client.list(Some(&keys.dir));
        let mut doomed = Vec::new();
        while let Some(Ok(o)) = listed.next().await {
            let name = o.location.filename().unwrap_or("");
            if name.starts_with(&format!("{}.tail.", keys.id)) || name == format!("{}.bin", keys.id)
            {
                doomed.push(o.location);
            }
        }
        for k in doomed {
            if let Err(e) = self.client.delete(&k).await {
                tracing::warn!(key = %k, error = %e, "could not remove upload staging");
            }
        }
    }

    /// Completes the data of `rec` as the object `<id>.bin` (the tail uploaded as the last
    /// part, numbered after every reserved one), or finds it completed by an earlier attempt.
    async fn complete_data(&self, keys: &Keys, rec: &Record) -> Result<(), StoreError> {
        let len = rec.info.offset;
        if let Ok(m) = self.client.head(&keys.data()).await {
            if m.size == len {
                return Ok(());
            }
        }
        let tail = self.tail_bytes(keys, rec, rec.tail_len()?).await?;
        let mp = match &rec.multipart {
            Some(mp) if !rec.parts.is_empty() => mp,
            other => {
                // Smaller than a part (or only parts an interrupted writer never recorded):
                // one plain put.
                if let Some(mp) = other {
                    let _ = self.s3.abort_multipart(&keys.data(), mp).await;
                }
                self.client
                    .put(&keys.data(), tail.into())
                    .await
                    .map_err(from_s3)?;
                return Ok(());
            }
        };
        let mut parts = rec.numbered_parts();
        if !tail.is_empty() {
            let n = rec.next_free();
            if n as u64 > MAX_PARTS {
                return Err(other(format!(
                    "the upload's tail needs S3 part number {n}, past the {MAX_PARTS} S3 allows"
                )));
            }
            let last = self
                .s3
                .put_part(&keys.data(), mp, n - 1, tail.into())
                .await
                .map_err(from_s3)?;
            parts.push((n, last.content_id));
        }
        self.complete_parts(&keys.data(), mp, parts).await
    }

    /// Completes the multipart upload `mp` of `key` from `parts` (S3 part number, ETag):
    /// through object_store when they are numbered 1, 2, 3, …, else with the request of our
    /// own that lets the numbers skip ([`super::raw`]).
    pub(super) async fn complete_parts(
        &self,
        key: &Key,
        mp: &str,
        parts: Vec<(usize, String)>,
    ) -> Result<(), StoreError> {
        if parts.iter().enumerate().all(|(i, (n, _))| *n == i + 1) {
            let ids = parts
                .into_iter()
                .map(|(_, content_id)| PartId { content_id })
                .collect();
            self.s3
                .complete_multipart(key, &mp.to_owned(), ids)
                .await
                .map_err(from_s3)?;
            Ok(())
        } else {
            self.complete_numbered(key, mp, &parts).await
        }
    }

    /// The appender of [`UploadStore::append`]: the recorded tail in memory, part numbers
    /// from the record's next free one on.
    async fn appender(&self, info: &UploadInfo) -> Result<S3Appender, StoreError> {
        // Before anything is read into memory (the tail, then the body).
        let receiving = self
            .receiving
            .clone()
            .acquire_owned()
            .await
            .map_err(other)?;
        let keys = Keys::new(self, &info.id);
        let rec = self.read_record(&keys).await?;
        if rec.info.revision != info.revision {
            return Err(StoreError::Conflict);
        }
        let start = rec.tail_start();
        let tail_len = info
            .offset
            .checked_sub(start)
            .ok_or_else(|| other("upload offset before its recorded parts"))?;
        // A part's room at once: filling it never copies it into a buffer twice its size
        // (pages are only taken as bytes arrive).
        let mut buf = BytesMut::with_capacity(self.part);
        buf.extend_from_slice(&self.tail_bytes(&keys, &rec, tail_len).await?);
        Ok(S3Appender {
            store: self.clone(),
            keys,
            multipart: rec.multipart.clone(),
            parts: rec.parts.clone(),
            next_part: rec.next_free(),
            token: random_hex(4)?,
            base: start,
            buf,
            recorded: rec,
            _receiving: receiving,
        })
    }

    /// Writes `owner`'s lease into the record of `id` (a compare-and-swap, retried while
    /// the record moves on): whoever wrote the upload so far fails its next record write.
    /// Nothing to do for a missing record or an upload no longer active; a publish in
    /// progress is waited for, not taken over (see [`super::lease`]).
    pub(super) async fn take_over(
        &self,
        id: &UploadId,
        owner: &str,
    ) -> Result<super::lease::TakeOver, StoreError> {
        use super::lease::{Lease, TakeOver};
        let keys = Keys::new(self, id.as_str());
        loop {
            let mut rec = match self.read_record(&keys).await {
                Ok(r) => r,
                Err(StoreError::NotFound) => return Ok(TakeOver::Done),
                Err(e) => return Err(e),
            };
            if rec.info.state != UploadState::Active {
                return Ok(TakeOver::Done);
            }
            match rec.publishing_until_ms {
                Some(t) if unix_now_ms() < t => return Ok(TakeOver::Publishing),
                _ => rec.publishing_until_ms = None,
            }
            rec.lease = Some(Lease::taken(owner, rec.lease.as_ref()));
            match self.write_record(&keys, &mut rec).await {
                Ok(()) => return Ok(TakeOver::Done),
                Err(StoreError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl UploadStore for S3Store {
    /// With `--single-instance`, locks in this process's memory; shared by several
    /// instances, a lease in the upload's record ([`super::lease`]).
    fn locker(&self) -> Box<dyn crate::store::lock::Locker> {
        if self.single_instance {
            Box::new(crate::store::lock::InProcess::default())
        } else {
            Box::new(super::lease::LeaseLocker::new(self.clone()))
        }
    }

    fn create<'a>(&'a self, info: &'a mut UploadInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut rec = Record {
                version: RECORD_VERSION,
                info: info.clone(),
                multipart: None,
                parts: Vec::new(),
                next_part: 1,
                tail: String::new(),
                lease: None,
                publishing_until_ms: None,
            };
            rec.info.revision = None; // a creation expects no record
            self.write_record(&Keys::new(self, &info.id), &mut rec)
                .await?;
            *info = rec.info;
            Ok(())
        })
    }

    fn load<'a>(&'a self, id: &'a UploadId) -> BoxFuture<'a, Result<UploadInfo, StoreError>> {
        Box::pin(async move { Ok(self.read_record(&Keys::new(self, id.as_str())).await?.info) })
    }

    fn save<'a>(&'a self, info: &'a mut UploadInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move { self.swap(info, |_| {}).await.map(|_| ()) })
    }

    fn append<'a>(
        &'a self,
        info: &'a UploadInfo,
    ) -> BoxFuture<'a, Result<Box<dyn Appender>, StoreError>> {
        Box::pin(async move { Ok(Box::new(self.appender(info).await?) as Box<dyn Appender>) })
    }

    fn publish<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        dir: &'a RelPath,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RelPath, StoreError>> {
        Box::pin(async move {
            if dir.is_hidden() {
                return Err(StoreError::Forbidden);
            }
            let keys = Keys::new(self, &info.id);
            let mut rec = self.read_record(&keys).await?;
            if rec.info.revision != info.revision {
                return Err(StoreError::Conflict);
            }
            if info.length != Some(rec.info.offset) {
                return Err(other("publish of an incomplete upload"));
            }
            // Claim the publish first (a compare-and-swap): another instance asked to take
            // the upload over meanwhile waits for it (lease.rs) instead of making a second
            // copy, and a writer this one took over can no longer record anything.
            rec.publishing_until_ms = Some(unix_now_ms().saturating_add(PUBLISH_HOLD_MS));
            self.write_record(&keys, &mut rec).await?;
            info.revision = rec.info.revision.clone();
            let len = rec.info.offset;
            let copied = match self.complete_data(&keys, &rec).await {
                Ok(()) => {
                    self.copy_no_clobber(&keys.data(), None, len, &info.id, dir, name)
                        .await
                }
                Err(e) => Err(e),
            };
            let path = match copied {
                Ok((p, _)) => p,
                Err(e) => {
                    // Let go of the claim, so a retry need not wait for it to run out.
                    let _ = self.swap(info, |r| r.publishing_until_ms = None).await;
                    return Err(e);
                }
            };
            let published = UploadState::Published {
                path: path.as_str().to_string(),
            };
            self.swap(info, |r| {
                r.info.state = published;
                r.multipart = None;
                r.parts.clear();
                r.publishing_until_ms = None;
            })
            .await?;
            self.remove_staging(&keys, None).await;
            if self.index {
                self.index_later(path.clone());
            }
            Ok(path)
        })
    }

    fn discard<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        state: UploadState,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut next = info.clone();
            next.state = state;
            let mut multipart = None;
            // The tombstone first: a crash leaves staging without a live record, which
            // purge (or a lifecycle rule) removes, never a live record without its data.
            self.swap(&mut next, |r| {
                multipart = r.multipart.take();
                r.parts.clear();
            })
            .await?;
            *info = next;
            self.remove_staging(&Keys::new(self, &info.id), multipart.as_ref())
                .await;
            Ok(())
        })
    }

    fn purge<'a>(&'a self, id: &'a UploadId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let keys = Keys::new(self, id.as_str());
            let multipart = match self.read_record(&keys).await {
                Ok(r) => r.multipart,
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e),
            };
            self.remove_staging(&keys, multipart.as_ref()).await;
            self.forget_finals(id).await?;
            match self.client.delete(&keys.record()).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(from_s3(e)),
            }
        })
    }

    fn list_uploads(&self) -> BoxFuture<'_, Result<Vec<UploadInfo>, StoreError>> {
        Box::pin(async move {
            let dir = self.uploads_dir();
            let mut ids = Vec::new();
            let mut listed = self.client.list(Some(&dir));
            while let Some(o) = listed.next().await {
                let o = o.map_err(from_s3)?;
                if let Some(id) = o.location.filename().and_then(|n| n.strip_suffix(".info")) {
                    ids.push(id.to_owned());
                }
            }
            let mut out = Vec::new();
            for id in ids {
                match self.read_record(&Keys::new(self, &id)).await {
                    Ok(r) => out.push(r.info),
                    Err(e) => tracing::warn!(%id, error = %e, "skipping unreadable upload record"),
                }
            }
            Ok(out)
        })
    }

    /// Aborts orphaned multipart uploads ([`super::orphans`]).
    fn sweep(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(self.abort_orphans(unix_now_ms(), super::orphans::ORPHAN_AGE))
    }

    fn concatenation(&self) -> Option<&dyn Concatenation> {
        Some(self)
    }

    fn content_index(&self) -> Option<&dyn ContentIndex> {
        self.index.then_some(self as &dyn ContentIndex)
    }
}

/// Appends in memory from the recorded tail on; a checkpoint reserves the part numbers of
/// the full parts (a record write), uploads them, writes the rest as the new tail object,
/// then records the parts and the offset. Every record write is a compare-and-swap from the
/// revision this appender wrote last: once another writer took the upload over, the next
/// one fails with [`StoreError::Conflict`] and this appender stops, its recorded bytes kept.
struct S3Appender {
    store: S3Store,
    keys: Keys,
    /// The record as this appender last wrote (or first read) it, with its revision.
    recorded: Record,
    multipart: Option<String>,
    /// Parts acknowledged by S3 (recorded, or cut by this appender and recorded at its next
    /// checkpoint).
    parts: Vec<Part>,
    /// The next part number to use (reserved in `recorded` while parts are being cut).
    next_part: usize,
    /// Names this appender's tail objects (see [`Keys::tail`]).
    token: String,
    /// Upload offset of `buf[0]`.
    base: u64,
    buf: BytesMut,
    /// This appender's place among the bodies received at once ([`RECEIVING`]).
    _receiving: tokio::sync::OwnedSemaphorePermit,
}

/// The tail object `rec` names, if its tail holds bytes.
fn recorded_tail(keys: &Keys, rec: &Record) -> Option<Key> {
    (rec.info.offset > rec.tail_start()).then(|| keys.tail(rec.tail_start(), &rec.tail))
}

impl S3Appender {
    /// Records that this appender is about to send `count` parts (numbers `next_part..`),
    /// creating the multipart upload first if there is none yet.
    async fn reserve(&mut self, count: usize) -> Result<(), StoreError> {
        let last = self.next_part.saturating_add(count - 1);
        if last as u64 > MAX_PARTS {
            return Err(other(format!(
                "the upload needs S3 part number {last}, past the {MAX_PARTS} S3 allows"
            )));
        }
        let created = match &self.multipart {
            Some(_) => None,
            None => {
                let m = self
                    .store
                    .s3
                    .create_multipart(&self.keys.data())
                    .await
                    .map_err(from_s3)?;
                self.multipart = Some(m.clone());
                Some(m)
            }
        };
        let mut rec = self.recorded.clone();
        rec.multipart = self.multipart.clone();
        rec.next_part = self.next_part + count;
        rec.lease = rec.lease.as_ref().map(super::lease::Lease::renewed);
        match self.store.write_record(&self.keys, &mut rec).await {
            Ok(()) => {
                self.recorded = rec;
                Ok(())
            }
            Err(e) => {
                if let Some(m) = created {
                    let _ = self.store.s3.abort_multipart(&self.keys.data(), &m).await;
                    self.multipart = None;
                }
                Err(e)
            }
        }
    }

    /// Uploads every full part of the buffer under the numbers [`S3Appender::reserve`] recorded.
    async fn cut_parts(&mut self) -> Result<(), StoreError> {
        let len = self.store.part;
        let mp = self
            .multipart
            .clone()
            .ok_or_else(|| other("parts cut before their multipart upload"))?;
        while self.buf.len() >= len {
            let n = self.next_part;
            let part = self.buf.split_to(len).freeze();
            let id = self
                .store
                .s3
                .put_part(&self.keys.data(), &mp, n - 1, part.into())
                .await
                .map_err(from_s3)?;
            self.parts.push(Part {
                etag: id.content_id,
                len: len as u64,
                number: Some(n),
            });
            self.next_part += 1;
            self.base += len as u64;
        }
        // Room for the next part at once, as in `appender`.
        self.buf.reserve(len.saturating_sub(self.buf.len()));
        Ok(())
    }

    async fn record(&mut self, info: &UploadInfo) -> Result<UploadInfo, StoreError> {
        let full = self.buf.len() / self.store.part;
        if full > 0 {
            self.reserve(full).await?;
            self.cut_parts().await?;
        }
        if !self.buf.is_empty() {
            let tail = self.buf.clone().freeze();
            self.store
                .client
                .put(&self.keys.tail(self.base, &self.token), tail.into())
                .await
                .map_err(from_s3)?;
        }
        let mut rec = Record {
            version: RECORD_VERSION,
            info: info.clone(),
            multipart: self.multipart.clone(),
            parts: self.parts.clone(),
            next_part: self.next_part,
            tail: self.token.clone(),
            lease: self
                .recorded
                .lease
                .as_ref()
                .map(super::lease::Lease::renewed),
            publishing_until_ms: None,
        };
        rec.info.offset = self.position();
        rec.info.revision = self.recorded.info.revision.clone();
        self.store.write_record(&self.keys, &mut rec).await?;
        let old = recorded_tail(&self.keys, &self.recorded);
        self.recorded = rec;
        if let Some(old) =
            old.filter(|o| Some(o) != recorded_tail(&self.keys, &self.recorded).as_ref())
        {
            let _ = self.store.client.delete(&old).await;
        }
        Ok(self.recorded.info.clone())
    }
}

impl Appender for S3Appender {
    fn write(&mut self, data: Bytes) -> BoxFuture<'_, std::io::Result<()>> {
        self.buf.extend_from_slice(&data);
        Box::pin(async { Ok(()) })
    }

    fn position(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn checkpoint<'a>(
        &'a mut self,
        info: &'a mut UploadInfo,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            *info = self.record(info).await?;
            Ok(())
        })
    }

    fn checkpoint_behind<'a>(
        &'a mut self,
        info: &'a UploadInfo,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move { self.record(info).await.map(|_| true) })
    }

    fn rollback(&mut self, offset: u64) -> BoxFuture<'_, std::io::Result<()>> {
        let keep = offset
            .checked_sub(self.base)
            .and_then(|k| usize::try_from(k).ok())
            .filter(|&k| k <= self.buf.len());
        Box::pin(async move {
            let keep = keep.ok_or_else(|| {
                std::io::Error::other("cannot roll back into bytes already sent to S3")
            })?;
            self.buf.truncate(keep);
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async { Ok(()) })
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::super::S3Options;
    use super::*;

    /// A store on a fresh prefix of the S3 server of `FERRY_TEST_S3_ENDPOINT` (moto, which
    /// `scripts/test` starts), taking uploads. Without the server: a failure in CI, a skip
    /// elsewhere.
    pub(crate) fn fresh() -> Option<((), S3Store)> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let endpoint = match std::env::var("FERRY_TEST_S3_ENDPOINT") {
            Ok(e) if !e.is_empty() => e,
            _ if std::env::var("FERRY_REQUIRE_TOOLS").is_ok()
                || std::env::var("CI").is_ok_and(|v| v == "true") =>
            {
                panic!("FERRY_TEST_S3_ENDPOINT is required; run scripts/test")
            }
            _ => {
                eprintln!("SKIPPED: no FERRY_TEST_S3_ENDPOINT (scripts/test starts moto)");
                return None;
            }
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        create_bucket(&endpoint, "ferry-unit");
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let opts = S3Options {
            bucket: "ferry-unit".into(),
            prefix: format!("u{}-{n}/www", std::process::id()),
            endpoint: Some(endpoint),
            region: Some("us-east-1".into()),
            credentials: Some(("testing".into(), "testing".into())),
            single_instance: true,
            ..S3Options::default()
        };
        Some(((), S3Store::new(&opts).unwrap()))
    }

    /// Creates `bucket` (moto takes an unsigned PUT; an existing bucket answers 409).
    fn create_bucket(endpoint: &str, bucket: &str) {
        use std::io::{Read as _, Write as _};
        let authority = endpoint.trim_start_matches("http://").trim_end_matches('/');
        let mut s = std::net::TcpStream::connect(authority).unwrap();
        let req = format!(
            "PUT /{bucket} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.1 409"),
            "{resp}"
        );
    }

    /// The store conformance suite on S3.
    mod conformance {
        crate::store::conformance::conformance_tests!(super::fresh());
    }

    // Issue 11 point 4: a writer that reserved a part number and was then taken over may still
    // send that part. The new writer numbers its parts after it, so the late part replaces
    // none of them; the old writer's record write fails and nothing of it counts; the
    // completion skips its number (not 1, 2, 3: `raw`), and the published bytes are right.
    #[tokio::test]
    async fn a_late_part_of_a_writer_taken_over_replaces_nothing() {
        let Some(((), s)) = fresh() else { return };
        let len = 2 * MIN_PART + 777;
        let data: Vec<u8> = (0..len).map(|i| (i * 13 + i / 5003) as u8).collect();
        let id = UploadId::random().unwrap();
        let concat = crate::store::upload::Concat::None;
        let mut info = UploadInfo::new(&id, Some(len as u64), None, concat);
        s.create(&mut info).await.unwrap();
        // A records its first part, then reserves the number of its second...
        let mut a = s.appender(&info).await.unwrap();
        a.write(Bytes::copy_from_slice(&data[..MIN_PART + 5]))
            .await
            .unwrap();
        a.checkpoint(&mut info).await.unwrap();
        a.write(Bytes::from(vec![0xEE; MIN_PART])).await.unwrap();
        a.reserve(1).await.unwrap();
        // ... and B takes the upload over before that part is sent.
        s.take_over(&id, "b").await.unwrap();
        let mut info_b = s.load(&id).await.unwrap();
        assert_eq!(info_b.offset, (MIN_PART + 5) as u64);
        let mut b = s.appender(&info_b).await.unwrap();
        assert_eq!(b.next_part, 3, "numbered after the part A reserved");
        b.write(Bytes::copy_from_slice(
            &data[MIN_PART + 5..2 * MIN_PART + 100],
        ))
        .await
        .unwrap();
        b.checkpoint(&mut info_b).await.unwrap();
        // A's part lands late; A's record write fails, nothing of it counts.
        a.cut_parts().await.unwrap();
        assert!(matches!(
            a.checkpoint(&mut info).await,
            Err(StoreError::Conflict)
        ));
        assert_eq!(
            s.load(&id).await.unwrap().offset,
            (2 * MIN_PART + 100) as u64
        );
        b.write(Bytes::copy_from_slice(&data[2 * MIN_PART + 100..]))
            .await
            .unwrap();
        b.checkpoint(&mut info_b).await.unwrap();
        assert!(info_b.is_complete());
        let path = s
            .publish(&mut info_b, &RelPath::root(), "late.bin")
            .await
            .unwrap();
        let got = s
            .client
            .get(&s.key(&path).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got[..] == data[..], "published bytes differ");
        let left: Vec<_> = s.client.list(Some(&s.uploads_dir())).collect().await;
        assert_eq!(left.len(), 1, "only the record: {left:?}");
    }

    #[test]
    fn parts_are_sized_so_ten_thousand_hold_the_largest_upload() {
        assert_eq!(part_size(None), MIN_PART);
        assert_eq!(part_size(Some(1 << 30)), MIN_PART);
        assert_eq!(part_size(Some(MIN_PART as u64 * MAX_PARTS)), MIN_PART);
        assert_eq!(
            part_size(Some(MIN_PART as u64 * MAX_PARTS + 1)),
            MIN_PART + (1 << 20)
        );
        let tib = 1u64 << 40;
        let p = part_size(Some(tib)) as u64;
        assert!(
            p * MAX_PARTS >= tib && p.is_multiple_of(1 << 20) && (p - (1 << 20)) * MAX_PARTS < tib
        );
        assert_eq!(
            part_size(Some(u64::MAX)) as u64,
            MAX_PART,
            "S3's largest part"
        );
    }

    fn record_of(offset: u64, part_lens: &[u64]) -> Record {
        let id = UploadId::random().unwrap();
        let mut info = UploadInfo::new(&id, Some(offset), None, crate::store::upload::Concat::None);
        info.offset = offset;
        Record {
            version: RECORD_VERSION,
            info,
            multipart: Some("mp".into()),
            parts: part_lens
                .iter()
                .map(|&len| Part {
                    etag: "\"e\"".into(),
                    len,
                    number: None,
                })
                .collect(),
            next_part: 0,
            tail: String::new(),
            lease: None,
            publishing_until_ms: None,
        }
    }

    // Review of 57408dd: a record read back from the bucket whose parts add up past u64, or
    // past its offset, leaves no tail; the sum and `offset - start` in complete_data
    // overflowed (a panic in debug builds, a wrapped length in release).
    #[test]
    fn a_record_whose_parts_do_not_fit_its_offset_has_no_tail() {
        let ok = record_of(25, &[10, 10]);
        assert_eq!((ok.tail_start(), ok.tail_len().unwrap()), (20, 5));
        assert_eq!(record_of(5, &[u64::MAX, 1]).tail_start(), u64::MAX);
        assert!(record_of(5, &[u64::MAX, 1]).tail_len().is_err());
        assert!(record_of(5, &[10]).tail_len().is_err());
    }

    // Review of 95bcddc: the part number after the record's last one is added without
    // overflow (a record read back with number usize::MAX panicked next_free in debug builds).
    #[test]
    fn the_next_part_number_after_a_corrupt_record_does_not_overflow() {
        let mut rec = record_of(30, &[10, 10]);
        assert_eq!(rec.next_free(), 3);
        rec.next_part = 7;
        assert_eq!(rec.next_free(), 7);
        rec.parts[1].number = Some(usize::MAX);
        assert_eq!(rec.next_free(), usize::MAX);
    }

    // The same through the store: a corrupt record makes append and publish fail, not panic.
    #[tokio::test]
    async fn append_and_publish_refuse_a_corrupt_record() {
        let Some(((), s)) = fresh() else { return };
        for (parts, number) in [
            (&[10u64][..], None),
            (&[u64::MAX, 1][..], None),
            (&[2u64][..], Some(usize::MAX)),
        ] {
            let id = UploadId::random().unwrap();
            let mut info = UploadInfo::new(&id, Some(5), None, crate::store::upload::Concat::None);
            s.create(&mut info).await.unwrap();
            let keys = Keys::new(&s, id.as_str());
            let mut rec = s.read_record(&keys).await.unwrap();
            rec.parts = record_of(5, parts).parts;
            rec.parts[0].number = number;
            rec.info.offset = 5;
            rec.multipart = number.map(|_| "mp".to_owned());
            s.write_record(&keys, &mut rec).await.unwrap();
            let mut info = s.load(&id).await.unwrap();
            if number.is_some() {
                // Parts and offset agree: the tail is there, only its part number is not.
                let tail = keys.tail(rec.tail_start(), &rec.tail);
                s.client
                    .put(&tail, Bytes::from_static(b"abc").into())
                    .await
                    .unwrap();
            } else {
                assert!(s.append(&info).await.is_err(), "{parts:?}");
            }
            let r = s.publish(&mut info, &RelPath::root(), "f").await;
            assert!(matches!(r, Err(StoreError::Io(_))), "{parts:?}: {r:?}");
        }
    }

    // Issue 11 point 3: parts of MIN_PART bytes, a tail object, and the offset from the record;
    // a new appender resumes from the recorded tail; publish joins the parts and never
    // replaces an existing object.
    #[tokio::test]
    async fn parts_and_tail_survive_a_new_appender_and_publish_without_clobbering() {
        let Some(((), s)) = fresh() else { return };
        let len = 2 * MIN_PART + 1234;
        let data: Vec<u8> = (0..len).map(|i| (i * 7 + i / 4099) as u8).collect();
        let id = UploadId::random().unwrap();
        let mut info = UploadInfo::new(
            &id,
            Some(len as u64),
            None,
            crate::store::upload::Concat::None,
        );
        s.create(&mut info).await.unwrap();
        let mut app = s.append(&info).await.unwrap();
        app.write(Bytes::copy_from_slice(&data[..MIN_PART + 10]))
            .await
            .unwrap();
        app.checkpoint(&mut info).await.unwrap();
        assert_eq!(info.offset, (MIN_PART + 10) as u64);
        app.write(Bytes::copy_from_slice(&data[MIN_PART + 10..MIN_PART + 20]))
            .await
            .unwrap();
        drop(app); // never checkpointed: lost
        let mut info = s.load(&id).await.unwrap();
        assert_eq!(
            info.offset,
            (MIN_PART + 10) as u64,
            "offset from the record"
        );
        let mut app = s.append(&info).await.unwrap();
        assert_eq!(app.position(), (MIN_PART + 10) as u64);
        app.write(Bytes::copy_from_slice(&data[MIN_PART + 10..]))
            .await
            .unwrap();
        app.checkpoint(&mut info).await.unwrap();
        assert!(info.is_complete());
        // An object already there keeps its name and bytes.
        let taken = s
            .key(&RelPath::from_segments(["in", "f.bin"]).unwrap())
            .unwrap();
        s.client
            .put(&taken, Bytes::from_static(b"mine").into())
            .await
            .unwrap();
        let dir = RelPath::from_segments(["in"]).unwrap();
        let path = s.publish(&mut info, &dir, "f.bin").await.unwrap();
        assert_eq!(path.as_str(), "in/f (1).bin");
        let got = s
            .client
            .get(&s.key(&path).unwrap())
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert!(got[..] == data[..], "published bytes differ");
        let mine = s.client.get(&taken).await.unwrap().bytes().await.unwrap();
        assert_eq!(&mine[..], b"mine");
        assert!(matches!(
            s.load(&id).await.unwrap().state,
            UploadState::Published { .. }
        ));
        // Staging is gone: only the record is left under the uploads prefix.
        let left: Vec<_> = s.client.list(Some(&s.uploads_dir())).collect().await;
        assert_eq!(left.len(), 1, "{left:?}");
    }
}
