//! tus uploads into S3 (issue 11 point 3, core extensions): the data of a tus upload is a
//! series of part objects of [`part_size`] bytes, a tail shorter than a part kept as an object
//! of its own until a later checkpoint completes a part, and one record object per upload
//! listing the parts. Every change of the record is a compare-and-swap (`PutMode::Create`, then
//! `PutMode::Update` with the record's ETag), so a writer whose upload changed meanwhile
//! fails with [`StoreError::Conflict`] and records nothing.
//!
//! Layout under `PREFIX/.ferry/uploads/` (never served or listed):
//! - `<id>.info`: the [`Record`] (versioned JSON): the [`UploadInfo`], the recorded parts, the
//!   writer's lease. The offset HEAD reports is the record's: parts S3 acknowledged plus the
//!   recorded tail, never bytes S3 has not acknowledged.
//! - `<id>.part.<start>.<token>`: the part from offset `start`, sent by the appender with
//!   `token` while the body still arrives (up to [`SENDING`] parts in flight per store), so
//!   reading the request and writing to S3 overlap. Named by its appender's token, so a part
//!   an interrupted writer sends late never replaces one the writer that took over recorded.
//! - `<id>.tail.<start>.<token>`: the bytes from `start` (the sum of the recorded parts) on;
//!   only the first `offset - start` count, named the same way.
//! - `<id>.bin`: only in uploads begun by ferryd before record version 3, whose parts were an
//!   S3 multipart upload at this key (completed here when they are published or concatenated).
//!
//! Publish ([`super::copy`]) creates a multipart upload at the published name, copies the
//! parts into it inside S3 (`UploadPartCopy`; the tail, shorter than S3's smallest part, is
//! read and sent as the last part) and completes it with `If-None-Match: *`: one completion
//! per upload, as a plain multipart upload costs, nothing visible before it is complete, and
//! an existing object is never replaced (the next `name (n).ext` is tried instead, with the
//! parts intact). The content index ([`super::index`]) gets the digest the appenders computed
//! as the parts left (the record carries its state from PATCH to PATCH), and only the tail is
//! read; without that state the published object is read back.
//!
//! Concatenation is [`super::concat`], the content index (instant upload) [`super::index`].
//!
//! Several instances (issue 11 point 4): parts are named by their writer's token, so a writer
//! that takes the upload over ([`super::lease`]) never meets the late parts of the one it
//! interrupted; a publish claims the record before it copies and renews the claim while it
//! copies, and a publish repeated by another instance (after a crash, or after the claim ran
//! out) ends at the same name: every published copy is labelled with its upload.

use bytes::{Bytes, BytesMut};
use futures_util::StreamExt as _;
use object_store::list::{PaginatedListOptions, PaginatedListStore as _};
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions, UpdateVersion};
use serde::{Deserialize, Serialize};

use super::{from_s3, S3Store};
use crate::index::running::Running;
use crate::path::RelPath;
use crate::store::upload::{
    random_hex, unix_now_ms, Appender, Concat, Concatenation, ContentIndex, Revision, UploadId,
    UploadInfo, UploadState, UploadStore,
};
use crate::store::visibility::RESERVED;
use crate::store::{BoxFuture, StoreError};

/// Parts' worth of request bodies (PATCH, creation-with-upload) an S3 store holds in memory
/// at once: each appender's buffer of what arrived since its last part, and each part on
/// its way to S3 (it keeps the place its buffer had; the appender takes another before it
/// buffers more). A seventh waits, its body unread (TCP holds its client back), until one is
/// free: 16 uploads at once stay within 6 parts (bench/s3/run.sh rss; 8 held 112-138 MiB
/// peak once parts went out while bodies arrived, over the 128 MiB goal).
pub const RECEIVING: usize = 6;

/// Parts on their way to S3 at once, over all uploads of a store: a body whose next part finds
/// none free waits, unread, until one arrives. (Memory is bounded by [`RECEIVING`]: a part
/// in flight keeps its body's place.)
pub const SENDING: usize = 4;

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
/// Version 2 (parts in an S3 multipart upload at `<id>.bin`) loads and continues: its parts
/// stay where they are (completed as `<id>.bin` when published), later parts are objects.
const RECORD_VERSION: u32 = 3;

/// How many `name (n).ext` candidates publish tries.
pub(super) const MAX_CANDIDATES: u32 = 1000;

/// How long a publish holds off other instances' takeovers (see [`Record::publishing_until_ms`])
/// from its last renewal. A publish renews it every [`PUBLISH_RENEW`] while it copies, so an
/// instance killed while it publishes holds the upload this long at most; a publish that
/// outlives it anyway (one S3 request slower than this) is repeated by the next instance
/// asked, which ends at the same name (see [`super::copy`]): work done twice, never a file.
const PUBLISH_HOLD_MS: u64 = 15_000;

/// How often a publish renews its claim.
const PUBLISH_RENEW: std::time::Duration = std::time::Duration::from_secs(4);

/// The record object of one upload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Record {
    version: u32,
    pub(super) info: UploadInfo,
    /// The S3 multipart upload at `<id>.bin` holding the parts of a version 2 record (parts
    /// without a token); none in uploads begun since.
    #[serde(default)]
    pub(super) multipart: Option<String>,
    /// The parts S3 acknowledged, in order.
    #[serde(default)]
    pub(super) parts: Vec<Part>,
    /// Version 2: the lowest S3 part number of `multipart` no writer had reserved. Kept as
    /// read, for the numbers of its parts.
    #[serde(default)]
    next_part: usize,
    /// A concatenated final upload: its data, the partial uploads' objects end to end (key
    /// and length), copied into the published object by the publish.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) pieces: Vec<Piece>,
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
    /// The multipart upload a publish (or an instant upload's copy, [`super::index`])
    /// created at the published name (key, upload id), recorded before it copies into it: a
    /// publish cut by a crash or failed leaves it open, and the next publish (or expiry,
    /// termination) aborts it. A crash between its creation and this record's write leaves
    /// one nobody knows of; an S3 lifecycle rule (`AbortIncompleteMultipartUpload`) is the
    /// backstop for that window (ferryd does not judge multipart uploads in the served tree,
    /// where other writers may have theirs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) publish_upload: Option<(String, String)>,
    /// A partial upload: the final uploads that recorded its objects as their pieces and
    /// may not have copied them yet ([`super::concat`]'s pin). While one is named here, a
    /// termination or expiry of this upload records the tombstone (clients get 410) but
    /// keeps its objects; the last final upload to let go (published, terminated or
    /// expired) removes them, or the tombstone's purge once every final named is gone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) pinned_by: Vec<String>,
    /// The SHA-256 state of the upload's bytes up to the end of the recorded parts
    /// ([`Record::tail_start`]), computed by the appenders as the parts went to S3, so the
    /// publish knows the upload's digest after hashing only the tail (see [`super::index`]).
    /// Written by every appender's record write, for exactly the parts it records; `None`
    /// (the publish reads the object back instead) when an appender could not keep it: a
    /// record of before this field (an older ferryd drops it when it writes the record), a
    /// version 2 multipart upload, a partial upload, a store without the content index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) hashed: Option<crate::index::running::Saved>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Part {
    pub(super) etag: String,
    pub(super) len: u64,
    /// Version 2: its S3 part number in `multipart`; `None` in version 1 records: its
    /// position + 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    number: Option<usize>,
    /// The token of the appender that sent it: the part is the object `<id>.part.<start>.<token>`
    /// ([`Keys::part`]). `None`: a part of the version 2 multipart upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) token: Option<String>,
}

/// A piece of a concatenated final upload's data: bytes `0..len` of the object `key`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Piece {
    pub(super) key: String,
    pub(super) len: u64,
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

    /// The hash state of the recorded parts' bytes (see [`Record::hashed`]) an appender goes
    /// on from, or a publish finishes with the tail: a fresh one before the first part, else
    /// the recorded one if it covers exactly the parts. `None` for uploads never published as
    /// they are (partial and final uploads), version 2 multipart uploads, and stores without
    /// the content index (`index`).
    pub(super) fn parts_hashed(&self, index: bool) -> Option<Running> {
        if !index
            || self.info.concat != Concat::None
            || self.multipart.is_some()
            || !self.pieces.is_empty()
        {
            return None;
        }
        if self.parts.is_empty() {
            return Some(Running::new());
        }
        let start = self.tail_start();
        self.hashed
            .as_ref()
            .and_then(Running::load)
            .filter(|h| h.len() == start)
    }

    /// The S3 part number of each recorded part, in order.
    fn numbers(&self) -> Vec<usize> {
        self.parts
            .iter()
            .enumerate()
            .map(|(i, p)| p.number.unwrap_or(i + 1))
            .collect()
    }

    /// The recorded parts of the version 2 multipart upload (those without a token, always
    /// the first ones) as (S3 part number, ETag), in order, and the bytes they hold.
    pub(super) fn multipart_parts(&self) -> (Vec<(usize, String)>, u64) {
        let mut len = 0u64;
        let parts = self
            .numbers()
            .into_iter()
            .zip(self.parts.iter())
            .take_while(|(_, p)| p.token.is_none())
            .map(|(n, p)| {
                len = len.saturating_add(p.len);
                (n, p.etag.clone())
            })
            .collect();
        (parts, len)
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
    /// The part object from `start`, sent by the appender with `token`.
    pub(super) fn part(&self, start: u64, token: &str) -> Key {
        self.dir
            .clone()
            .join(format!("{}.part.{start}.{token}", self.id))
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
        self.recent.remember(&rec);
        Ok(rec)
    }

    /// The record of `info` at `info.revision`: the one this process read or wrote last
    /// when it is that revision ([`super::recent`]), else read. [`StoreError::Conflict`] when
    /// the stored record is found at another; one that moved on since it was remembered
    /// fails the caller's next record write instead.
    pub(super) async fn record_at(
        &self,
        keys: &Keys,
        info: &UploadInfo,
    ) -> Result<Record, StoreError> {
        if let Some(rec) = info
            .revision
            .as_ref()
            .and_then(|r| self.recent.at(&keys.id, r))
        {
            return Ok(rec);
        }
        let rec = self.read_record(keys).await?;
        if rec.info.revision != info.revision {
            return Err(StoreError::Conflict);
        }
        Ok(rec)
    }

    /// Writes `rec` if the stored record is at `rec.info.revision` (absent for `None`), and
    /// moves the revision on.
    pub(super) async fn write_record(
        &self,
        keys: &Keys,
        rec: &mut Record,
    ) -> Result<(), StoreError> {
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
        stored.info.revision = rec.info.revision.clone();
        self.recent.remember(&stored);
        Ok(())
    }

    /// Takes the record of `info` at `info.revision` ([`S3Store::record_at`]), lets `change`
    /// edit it (its `info` already replaced by `info`) and writes it back by
    /// compare-and-swap.
    pub(super) async fn swap(
        &self,
        info: &mut UploadInfo,
        change: impl FnOnce(&mut Record),
    ) -> Result<Record, StoreError> {
        let keys = Keys::new(self, &info.id);
        let mut rec = self.record_at(&keys, info).await?;
        rec.info = info.clone();
        change(&mut rec);
        self.write_record(&keys, &mut rec).await?;
        *info = rec.info.clone();
        Ok(rec)
    }

    /// The first `len` bytes of the tail `rec` names.
    pub(super) async fn tail_bytes(
        &self,
        keys: &Keys,
        rec: &Record,
        len: u64,
    ) -> Result<Bytes, StoreError> {
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
    pub(super) async fn remove_staging(&self, keys: &Keys, multipart: Option<&String>) {
        if let Some(mp) = multipart {
            let _ = self.s3.abort_multipart(&keys.data(), mp).await;
        }
        let doomed = self.staging_objects(keys).await;
        // One request per 1000 objects (S3's DeleteObjects), not one per part: this runs
        // inside the PATCH that publishes, and a GiB has 128 parts.
        let doomed = futures_util::stream::iter(doomed.into_iter().map(Ok)).boxed();
        let mut gone = self.client.delete_stream(doomed);
        while let Some(r) = gone.next().await {
            if let Err(e) = r {
                tracing::warn!(id = %keys.id, error = %e, "could not remove upload staging");
            }
        }
    }

    /// The staging objects of an upload: `<id>.` and anything but `info`, listed by that key
    /// prefix (a string prefix: object_store's `list` takes a directory, and listing
    /// `.ferry/uploads/` read the objects of every upload in flight, 1000 a request, in every
    /// publish). Best effort: a listing that fails ends with what it found.
    async fn staging_objects(&self, keys: &Keys) -> Vec<Key> {
        let prefix = format!("{}/{}.", keys.dir, keys.id);
        let record = keys.record();
        let mut doomed = Vec::new();
        let mut token = None;
        loop {
            let opts = PaginatedListOptions {
                page_token: token.take(),
                ..PaginatedListOptions::default()
            };
            let page = match self.s3.list_paginated(Some(&prefix), opts).await {
                Ok(page) => page,
                Err(e) => {
                    tracing::warn!(id = %keys.id, error = %e, "could not list upload staging");
                    break;
                }
            };
            doomed.extend(
                (page.result.objects.into_iter())
                    .map(|o| o.location)
                    .filter(|k| *k != record),
            );
            match page.page_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        doomed
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

    /// Aborts the multipart upload `(key, upload id)` a publish recorded (best effort: it may
    /// be completed or aborted already).
    async fn abort_publish_upload(&self, (key, upload): &(String, String)) {
        let Ok(key) = Key::parse(key) else {
            return;
        };
        if let Err(e) = self.s3.abort_multipart(&key, upload).await {
            tracing::debug!(key = %key, error = %e, "could not abort a publish's multipart upload");
        }
    }

    /// Runs `copy` (a publish) while renewing the publish's claim in `rec` every
    /// [`PUBLISH_RENEW`]. A renewal that fails (another instance took the upload over after
    /// the claim ran out) stops the renewals; the publish goes on, and its record write
    /// fails then. A renewal due while the copy writes the record (its `note`, which renews
    /// the claim too) is skipped.
    async fn holding<T>(
        &self,
        keys: &Keys,
        rec: &tokio::sync::Mutex<Record>,
        copy: impl std::future::Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        tokio::pin!(copy);
        let mut renewing = true;
        loop {
            tokio::select! {
                r = &mut copy => return r,
                () = tokio::time::sleep(PUBLISH_RENEW), if renewing => {
                    // Never wait for the lock here: `copy` is not polled while this runs,
                    // and its `note` holds the lock across its record write, so waiting
                    // would never end. A `note` in flight writes the claim itself.
                    let Ok(mut rec) = rec.try_lock() else {
                        continue;
                    };
                    rec.publishing_until_ms = Some(unix_now_ms().saturating_add(PUBLISH_HOLD_MS));
                    if let Err(e) = self.write_record(keys, &mut rec).await {
                        tracing::warn!(id = %keys.id, error = %e, "could not renew a publish's claim");
                        renewing = false;
                    }
                }
            }
        }
    }

    /// The data of the upload `rec` as copy sources (key and length, in order): a final
    /// upload's pieces; else the recorded parts (those of a version 2 multipart upload
    /// completed as `<id>.bin` first, once: a later call finds it) and the tail.
    pub(super) async fn sources_of(&self, rec: &Record) -> Result<Vec<(Key, u64)>, StoreError> {
        if !rec.pieces.is_empty() {
            return rec
                .pieces
                .iter()
                .map(|p| Key::parse(&p.key).map(|k| (k, p.len)).map_err(other))
                .collect();
        }
        let keys = Keys::new(self, &rec.info.id);
        let mut out = Vec::new();
        let (numbered, mut at) = rec.multipart_parts();
        if !numbered.is_empty() {
            let done = matches!(self.client.head(&keys.data()).await, Ok(m) if m.size == at);
            if !done {
                let mp = rec
                    .multipart
                    .as_ref()
                    .ok_or_else(|| other("parts recorded without a multipart upload"))?;
                // By their recorded numbers: several writers in turn may have skipped some.
                if let Err(e) = self.complete_parts(&keys.data(), mp, numbered).await {
                    // Another instance completed it meanwhile (the multipart upload is gone
                    // then, the object is there).
                    let there = self.client.head(&keys.data()).await;
                    if !matches!(there, Ok(m) if m.size == at) {
                        return Err(e);
                    }
                }
            }
            out.push((keys.data(), at));
        }
        for p in rec.parts.iter().skip_while(|p| p.token.is_none()) {
            let token = p
                .token
                .as_deref()
                .ok_or_else(|| other("a multipart upload's part after a part object"))?;
            out.push((keys.part(at, token), p.len));
            at = at
                .checked_add(p.len)
                .ok_or_else(|| other("parts add up past u64"))?;
        }
        let tail = rec.tail_len()?;
        if tail > 0 {
            out.push((keys.tail(rec.tail_start(), &rec.tail), tail));
        }
        Ok(out)
    }

    /// The appender of [`UploadStore::append`]: the recorded tail in memory.
    async fn appender(&self, info: &UploadInfo) -> Result<S3Appender, StoreError> {
        // Before anything is read into memory (the tail, then the body).
        let receiving = self
            .receiving
            .clone()
            .acquire_owned()
            .await
            .map_err(other)?;
        let keys = Keys::new(self, &info.id);
        // As the PATCH's load just read it, mostly: no second read.
        let rec = self.record_at(&keys, info).await?;
        let start = rec.tail_start();
        let tail_len = info
            .offset
            .checked_sub(start)
            .ok_or_else(|| other("upload offset before its recorded parts"))?;
        // A part's room at once: filling it never copies it into a buffer twice its size
        // (pages are only taken as bytes arrive).
        let mut buf = BytesMut::with_capacity(self.part);
        let tail = match self.tail_bytes(&keys, &rec, tail_len).await {
            // The remembered record's tail: a writer that took the upload over since may have
            // replaced it. Then this is the conflict a fresh read would have found, not a
            // missing upload.
            Err(StoreError::NotFound) => {
                return Err(match self.read_record(&keys).await {
                    Ok(now) if now.info.revision != info.revision => StoreError::Conflict,
                    Ok(_) => other("the recorded upload tail is missing"),
                    Err(e) => e,
                });
            }
            r => r?,
        };
        buf.extend_from_slice(&tail);
        let hashed = rec.parts_hashed(self.index);
        Ok(S3Appender {
            store: self.clone(),
            keys,
            hasher: hashed.clone(),
            parts_hashed: hashed,
            parts: rec.parts.clone(),
            sending: std::collections::VecDeque::new(),
            broken: false,
            token: random_hex(4)?,
            base: start,
            buf,
            recorded: rec,
            receiving: Some(receiving),
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
                pieces: Vec::new(),
                tail: String::new(),
                lease: None,
                publishing_until_ms: None,
                publish_upload: None,
                pinned_by: Vec::new(),
                hashed: None,
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
            // As the last checkpoint wrote it, mostly.
            let mut rec = self.record_at(&keys, info).await?;
            if info.length != Some(rec.info.offset) {
                return Err(other("publish of an incomplete upload"));
            }
            // Claim the publish first (a compare-and-swap): another instance asked to take
            // the upload over meanwhile waits for it (lease.rs) instead of copying again, and
            // a writer this one took over can no longer record anything.
            rec.publishing_until_ms = Some(unix_now_ms().saturating_add(PUBLISH_HOLD_MS));
            // An earlier publish cut by a crash left its copy open: nobody completes it now.
            let stale = rec.publish_upload.take();
            self.write_record(&keys, &mut rec).await?;
            info.revision = rec.info.revision.clone();
            if let Some(stale) = stale {
                self.abort_publish_upload(&stale).await;
            }
            let sources = self.sources_of(&rec).await;
            // Before the staging objects go: the digest needs the tail.
            let digest = self.upload_digest(&keys, &rec).await;
            let rec = tokio::sync::Mutex::new(rec);
            // Each multipart upload created at a candidate is recorded before it is filled.
            let note = |key: Key, upload: String| -> BoxFuture<'_, Result<(), StoreError>> {
                let (keys, rec) = (&keys, &rec);
                Box::pin(async move {
                    let mut rec = rec.lock().await;
                    rec.publish_upload = Some((key.as_ref().to_owned(), upload));
                    rec.publishing_until_ms = Some(unix_now_ms().saturating_add(PUBLISH_HOLD_MS));
                    self.write_record(keys, &mut rec).await
                })
            };
            let copied = match sources {
                Ok(sources) => {
                    let copy =
                        self.copy_no_clobber(&sources, None, Some(&note), &info.id, dir, name);
                    self.holding(&keys, &rec, copy).await
                }
                Err(e) => Err(e),
            };
            let rec = rec.into_inner();
            info.revision = rec.info.revision.clone();
            let (path, key, etag) = match copied {
                Ok(placed) => placed,
                Err(e) => {
                    // Let go of the claim, so a retry need not wait for it to run out.
                    let _ = self
                        .swap(info, |r| {
                            r.publishing_until_ms = None;
                            // Kept: the failed copy tried to abort it, but only as a best
                            // effort; the next publish, expiry or termination aborts it
                            // again (aborting twice is harmless).
                        })
                        .await;
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
                r.pieces.clear();
                r.publishing_until_ms = None;
                r.publish_upload = None; // completed
            })
            .await?;
            // A version 2 upload's multipart upload is completed (as `<id>.bin`) by now, or
            // was never filled: either way nobody needs it open.
            self.remove_staging(&keys, rec.multipart.as_ref()).await;
            self.unpin_parts(info).await; // a final upload's pieces are copied
            match (digest, etag, info.length) {
                (Some(sha), Some(etag), Some(len)) => {
                    self.index_known(&path, &key, len, &etag, sha).await;
                }
                _ if self.index => self.index_later(path.clone()),
                _ => {}
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
            let (mut multipart, mut copying, mut pinned) = (None, None, false);
            // The tombstone first: a crash leaves staging without a live record, which
            // purge (or a lifecycle rule) removes, never a live record without its data.
            self.swap(&mut next, |r| {
                copying = r.publish_upload.take();
                // A part whose objects a final upload has yet to copy keeps them: that
                // final upload (or the tombstone's purge) removes them once it lets go.
                pinned = !r.pinned_by.is_empty();
                if !pinned {
                    multipart = r.multipart.take();
                    r.parts.clear();
                }
            })
            .await?;
            *info = next;
            if let Some(c) = copying {
                self.abort_publish_upload(&c).await;
            }
            if !pinned {
                self.remove_staging(&Keys::new(self, &info.id), multipart.as_ref())
                    .await;
            }
            self.unpin_parts(info).await; // a final upload lets go of its parts' objects
            Ok(())
        })
    }

    fn purge<'a>(&'a self, id: &'a UploadId) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let keys = Keys::new(self, id.as_str());
            let multipart = match self.read_record(&keys).await {
                Ok(r) => {
                    if self.pinned_live(&r).await {
                        // A final upload yet to be published copies from its objects: the
                        // tombstone stays, and a later pass purges it.
                        return Ok(());
                    }
                    if let Some(c) = &r.publish_upload {
                        self.abort_publish_upload(c).await;
                    }
                    r.multipart
                }
                Err(StoreError::NotFound) => None,
                Err(e) => return Err(e),
            };
            self.remove_staging(&keys, multipart.as_ref()).await;
            self.forget_finals(id).await?;
            self.recent.forget(&keys.id);
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

/// Appends from the recorded tail on: every full part is sent to S3 as the body arrives (a
/// task per part, at most [`SENDING`] per store at once, in the order of the bytes); a
/// checkpoint waits for them, writes the rest as the new tail object, then records the parts
/// and the offset. A checkpoint in the background records only the parts that arrived (no
/// tail: it never waits). Every record write is a compare-and-swap from the revision this
/// appender wrote last: once another writer took the upload over, the next one fails with
/// [`StoreError::Conflict`] and this appender stops, its recorded bytes kept.
struct S3Appender {
    store: S3Store,
    keys: Keys,
    /// The record as this appender last wrote (or first read) it, with its revision.
    recorded: Record,
    /// Parts S3 acknowledged (recorded, or sent by this appender and recorded at its next
    /// checkpoint), from offset 0.
    parts: Vec<Part>,
    /// The hash state of the bytes in `parts` (recorded as [`Record::hashed`]); `None` once
    /// it cannot be known (see [`Record::parts_hashed`]).
    parts_hashed: Option<Running>,
    /// The hash state of the bytes before `buf` (`parts` and the parts on their way): each
    /// part is hashed, in order, when it leaves the buffer; the buffer never is (the tail
    /// is hashed by the publish, see [`super::index`]).
    hasher: Option<Running>,
    /// Parts on their way, in order, right after `parts`.
    sending: std::collections::VecDeque<Sending>,
    /// A part failed to arrive: the bytes after `parts` are lost, nothing more is recorded.
    broken: bool,
    /// Names this appender's part and tail objects (see [`Keys::part`]).
    token: String,
    /// Upload offset of `buf[0]`.
    base: u64,
    buf: BytesMut,
    /// This appender's place among the bodies received at once ([`RECEIVING`]): the room of
    /// its buffer. A full part takes it along to S3, and the appender takes a new one before
    /// it buffers more, so buffers and parts in flight together hold [`RECEIVING`] parts.
    receiving: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// A part on its way to S3.
struct Sending {
    len: u64,
    token: String,
    /// The hash state after its bytes.
    hashed: Option<Running>,
    /// Its ETag once S3 has it.
    task: tokio::task::JoinHandle<Result<String, StoreError>>,
}

/// The tail object `rec` names, if its tail holds bytes.
fn recorded_tail(keys: &Keys, rec: &Record) -> Option<Key> {
    (rec.info.offset > rec.tail_start()).then(|| keys.tail(rec.tail_start(), &rec.tail))
}

impl S3Appender {
    /// Sends every full part of the buffer, each in a task of its own once one of the store's
    /// [`SENDING`] places is free (until then the body waits).
    async fn send_full_parts(&mut self) -> Result<(), StoreError> {
        let len = self.store.part;
        while self.buf.len() >= len {
            self.take_room().await?; // (a second part in one write)
            let place = self
                .store
                .sending
                .clone()
                .acquire_owned()
                .await
                .map_err(other)?;
            let part = self.buf.split_to(len).freeze();
            if let Some(h) = self.hasher.as_mut() {
                h.update(&part);
            }
            let key = self.keys.part(self.base, &self.token);
            let client = self.store.client.clone();
            let room = self.receiving.take();
            let task = tokio::spawn(async move {
                let _place = (place, room);
                let put = client.put(&key, part.into()).await.map_err(from_s3)?;
                put.e_tag
                    .ok_or_else(|| other("S3 answered a part's put without ETag"))
            });
            self.sending.push_back(Sending {
                len: len as u64,
                token: self.token.clone(),
                hashed: self.hasher.clone(),
                task,
            });
            self.base += len as u64;
        }
        if !self.buf.is_empty() {
            self.take_room().await?;
        }
        Ok(())
    }

    /// Takes a place among the bodies received at once for the buffer, unless it has one.
    async fn take_room(&mut self) -> Result<(), StoreError> {
        if self.receiving.is_none() {
            let room = self.store.receiving.clone().acquire_owned().await;
            self.receiving = Some(room.map_err(other)?);
        }
        Ok(())
    }

    /// Moves the parts that arrived (all of them, waiting, with `wait`) from `sending` to
    /// `parts`, in order. A part that failed breaks the appender.
    async fn arrived(&mut self, wait: bool) -> Result<(), StoreError> {
        if self.broken {
            return Err(other("a part of this upload failed to reach S3"));
        }
        while let Some(next) = self.sending.front() {
            if !wait && !next.task.is_finished() {
                break;
            }
            let Some(s) = self.sending.pop_front() else {
                break;
            };
            let etag = match s.task.await.map_err(other).and_then(|r| r) {
                Ok(etag) => etag,
                Err(e) => {
                    self.broken = true;
                    for rest in self.sending.drain(..) {
                        rest.task.abort();
                    }
                    return Err(e);
                }
            };
            self.parts.push(Part {
                etag,
                len: s.len,
                number: None,
                token: Some(s.token),
            });
            self.parts_hashed = s.hashed;
        }
        Ok(())
    }

    /// Records the parts that arrived and, with `tail`, every byte received (the rest
    /// written as this appender's tail object first), at `offset`.
    async fn record(&mut self, info: &UploadInfo, tail: bool) -> Result<UploadInfo, StoreError> {
        let offset = if tail {
            self.arrived(true).await?;
            if !self.buf.is_empty() {
                let bytes = self.buf.clone().freeze();
                self.store
                    .client
                    .put(&self.keys.tail(self.base, &self.token), bytes.into())
                    .await
                    .map_err(from_s3)?;
            }
            self.position()
        } else {
            self.arrived(false).await?;
            self.parts.iter().map(|p| p.len).sum()
        };
        let mut rec = self.recorded.clone();
        rec.info = info.clone();
        rec.info.offset = offset;
        rec.info.revision = self.recorded.info.revision.clone();
        rec.parts = self.parts.clone();
        let start = rec.tail_start();
        rec.hashed = (self.parts_hashed.as_ref())
            .filter(|h| h.len() == start)
            .map(Running::save);
        rec.tail = self.token.clone();
        rec.lease = rec.lease.as_ref().map(super::lease::Lease::renewed);
        rec.publishing_until_ms = None;
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

    /// Back to the record as this appender last wrote (or read) it: parts sent since are
    /// dropped (their objects are never recorded), the recorded tail read back.
    async fn back_to_recorded(&mut self) -> Result<(), StoreError> {
        for s in self.sending.drain(..) {
            s.task.abort();
        }
        let rec = &self.recorded;
        let tail = self
            .store
            .tail_bytes(&self.keys, rec, rec.tail_len()?)
            .await?;
        self.parts = rec.parts.clone();
        self.parts_hashed = rec.parts_hashed(self.store.index);
        self.hasher = self.parts_hashed.clone();
        self.base = rec.tail_start();
        self.buf.clear();
        self.buf.extend_from_slice(&tail);
        // Parts still landing from before carry the old token; new ones never meet them.
        self.token = random_hex(4)?;
        self.broken = false;
        Ok(())
    }
}

impl Appender for S3Appender {
    fn write(&mut self, mut data: Bytes) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            // Up to the end of the part, then the rest into the next part's buffer: bytes
            // that went past it grew the buffer to twice a part, copying it (Vec's growth),
            // on every part of a PATCH longer than one.
            while !data.is_empty() {
                self.take_room().await.map_err(std::io::Error::other)?;
                // A part's room at once, as in `appender`, but only once bytes come: a buffer
                // reserved while a part is on its way, and the body already over, costs
                // memory (glibc hands it out from pages it had used) for nothing.
                let room = self.store.part.saturating_sub(self.buf.len());
                let now = data.split_to(room.clamp(1, data.len()));
                self.buf.reserve(room.max(now.len()));
                self.buf.extend_from_slice(&now);
                self.send_full_parts()
                    .await
                    .map_err(std::io::Error::other)?;
            }
            Ok(())
        })
    }

    fn position(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    fn checkpoint<'a>(
        &'a mut self,
        info: &'a mut UploadInfo,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            *info = self.record(info, true).await?;
            Ok(())
        })
    }

    /// Records the parts that arrived, if they go past the recorded offset (never the tail:
    /// the bytes after the last part are recorded by the next checkpoint).
    fn checkpoint_behind<'a>(
        &'a mut self,
        info: &'a UploadInfo,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            self.arrived(false).await?;
            let done: u64 = self.parts.iter().map(|p| p.len).sum();
            if done <= self.recorded.info.offset {
                return Ok(false);
            }
            self.record(info, false).await.map(|_| true)
        })
    }

    fn rollback(&mut self, offset: u64) -> BoxFuture<'_, std::io::Result<()>> {
        Box::pin(async move {
            if offset < self.base && offset == self.recorded.info.offset {
                self.back_to_recorded()
                    .await
                    .map_err(std::io::Error::other)?;
            }
            let keep = offset
                .checked_sub(self.base)
                .and_then(|k| usize::try_from(k).ok())
                .filter(|&k| k <= self.buf.len())
                .ok_or_else(|| {
                    std::io::Error::other("cannot roll back into bytes already recorded")
                })?;
            self.buf.truncate(keep);
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            if self.broken {
                return Ok(());
            }
            self.arrived(true).await
        })
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

    // An upload's staging objects are found by their own key prefix: its parts and tails, not
    // its record, and nothing of another upload, even one whose id begins with this one's.
    #[tokio::test]
    async fn staging_is_listed_by_the_uploads_own_prefix() {
        let Some(((), s)) = fresh() else { return };
        let (mine, other) = (Keys::new(&s, "ab12"), Keys::new(&s, "ab123"));
        let put = |key: Key| {
            let client = s.client.clone();
            async move { client.put(&key, Bytes::from_static(b"x").into()).await }
        };
        for key in [
            mine.record(),
            mine.part(0, "t1"),
            mine.part(8, "t2"),
            mine.dir.clone().join("ab12.tail.16.t2"),
            other.record(),
            other.part(0, "t1"),
        ] {
            put(key).await.unwrap();
        }
        let mut got: Vec<String> = (s.staging_objects(&mine).await.iter())
            .map(|k| k.filename().unwrap_or("").to_owned())
            .collect();
        got.sort();
        assert_eq!(got, ["ab12.part.0.t1", "ab12.part.8.t2", "ab12.tail.16.t2"]);
        s.remove_staging(&mine, None).await;
        assert!(s.staging_objects(&mine).await.is_empty());
        assert_eq!(
            s.staging_objects(&other).await.len(),
            1,
            "the other upload's part stays"
        );
        for key in [mine.record(), other.record()] {
            assert!(s.client.head(&key).await.is_ok(), "{key} stays");
        }
    }

    // Issue 11 point 4: a writer taken over may still be sending a part. Its part objects
    // carry its own token, so the late part replaces none of the new writer's; the old
    // writer's record write fails and nothing of it counts, and the published bytes are right.
    #[tokio::test]
    async fn a_late_part_of_a_writer_taken_over_replaces_nothing() {
        let Some(((), s)) = fresh() else { return };
        let len = 2 * MIN_PART + 777;
        let data: Vec<u8> = (0..len).map(|i| (i * 13 + i / 5003) as u8).collect();
        let id = UploadId::random().unwrap();
        let concat = crate::store::upload::Concat::None;
        let mut info = UploadInfo::new(&id, Some(len as u64), None, concat);
        s.create(&mut info).await.unwrap();
        // A records its first part and a tail, then starts sending a second part...
        let mut a = s.appender(&info).await.unwrap();
        a.write(Bytes::copy_from_slice(&data[..MIN_PART + 5]))
            .await
            .unwrap();
        a.checkpoint(&mut info).await.unwrap();
        a.write(Bytes::from(vec![0xEE; MIN_PART])).await.unwrap();
        // ... and B takes the upload over meanwhile, from A's recorded offset.
        s.take_over(&id, "b").await.unwrap();
        let mut info_b = s.load(&id).await.unwrap();
        assert_eq!(info_b.offset, (MIN_PART + 5) as u64);
        let mut b = s.appender(&info_b).await.unwrap();
        b.write(Bytes::copy_from_slice(
            &data[MIN_PART + 5..2 * MIN_PART + 100],
        ))
        .await
        .unwrap();
        b.checkpoint(&mut info_b).await.unwrap();
        // A's part lands (late or not); A's record write fails, nothing of it counts.
        assert!(matches!(
            a.checkpoint(&mut info).await,
            Err(StoreError::Conflict)
        ));
        a.close().await.unwrap();
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
        assert!(
            published_bytes(&s, &path).await[..] == data[..],
            "published bytes differ"
        );
        let left: Vec<_> = s.client.list(Some(&s.uploads_dir())).collect().await;
        assert_eq!(left.len(), 1, "only the record: {left:?}");
    }

    // Issue 11 point 7(ii): a PATCH's appender takes the record its load just read, without
    // reading it again, and the compare-and-swap still refuses a record that moved on
    // meanwhile (here another instance's write, made past this store): the checkpoint fails,
    // nothing of it counts.
    #[tokio::test]
    async fn an_appender_takes_the_loaded_record_and_still_conflicts_once_it_moved_on() {
        let Some(((), s)) = fresh() else { return };
        let id = UploadId::random().unwrap();
        let concat = crate::store::upload::Concat::None;
        let mut info = UploadInfo::new(&id, Some(10), None, concat);
        s.create(&mut info).await.unwrap();
        let mut info = s.load(&id).await.unwrap();
        let keys = Keys::new(&s, id.as_str());
        let raw = s.client.get(&keys.record()).await.unwrap().bytes().await;
        let mut moved = raw.unwrap().to_vec();
        moved.push(b'\n'); // the same record, new bytes: a new ETag
        s.client.put(&keys.record(), moved.into()).await.unwrap();
        let mut app = s
            .append(&info)
            .await
            .expect("the loaded record, not a read");
        app.write(Bytes::from_static(b"hello")).await.unwrap();
        assert!(matches!(
            app.checkpoint(&mut info).await,
            Err(StoreError::Conflict)
        ));
        app.close().await.unwrap();
        assert_eq!(s.load(&id).await.unwrap().offset, 0);
        // Read afresh, the moved record is taken as it is now.
        let mut info = s.load(&id).await.unwrap();
        let mut app = s.append(&info).await.unwrap();
        app.write(Bytes::from_static(b"hello")).await.unwrap();
        app.checkpoint(&mut info).await.unwrap();
        assert_eq!(s.load(&id).await.unwrap().offset, 5);
    }

    // Review rev3: the appender takes the remembered record, whose tail another instance's
    // writer may have replaced, and deleted, since the PATCH's load: a tail gone with a
    // record that moved on is that same conflict (409: the client asks HEAD and resumes),
    // not a missing upload (404: a tus client drops the upload and starts over).
    #[tokio::test]
    async fn a_tail_gone_with_a_record_that_moved_on_is_a_conflict_not_a_missing_upload() {
        let Some(((), s)) = fresh() else { return };
        let id = UploadId::random().unwrap();
        let concat = crate::store::upload::Concat::None;
        let mut info = UploadInfo::new(&id, Some(10), None, concat);
        s.create(&mut info).await.unwrap();
        let mut app = s.append(&info).await.unwrap();
        app.write(Bytes::from_static(b"hello")).await.unwrap();
        app.checkpoint(&mut info).await.unwrap();
        app.close().await.unwrap();
        let info = s.load(&id).await.unwrap();
        let keys = Keys::new(&s, id.as_str());
        let rec = s.read_record(&keys).await.unwrap();
        let tail = keys.tail(rec.tail_start(), &rec.tail);
        // Another instance: the record moves on (the same with new bytes: a new ETag), and
        // the tail it named goes.
        let raw = s.client.get(&keys.record()).await.unwrap().bytes().await;
        let mut moved = raw.unwrap().to_vec();
        moved.push(b'\n');
        s.client.put(&keys.record(), moved.into()).await.unwrap();
        s.client.delete(&tail).await.unwrap();
        let got = s.append(&info).await.map(|_| ());
        assert!(matches!(got, Err(StoreError::Conflict)), "{got:?}");
    }

    // A write across the end of a part is cut there, its rest goes into the next part's
    // buffer (it grew the buffer to twice a part before, copying it): the bytes of writes
    // that never meet a part's end still arrive whole and in order.
    #[tokio::test]
    async fn writes_across_the_ends_of_parts_publish_the_bytes_in_order() {
        let Some(((), s)) = fresh() else { return };
        let len = 3 * MIN_PART;
        let id = UploadId::random().unwrap();
        let concat = crate::store::upload::Concat::None;
        let mut info = UploadInfo::new(&id, Some(len as u64), None, concat);
        s.create(&mut info).await.unwrap();
        let mut app = s.appender(&info).await.unwrap();
        let data: Vec<u8> = (0..len).map(|i| (i / 4093) as u8).collect();
        for piece in data.chunks(300_007) {
            app.write(Bytes::copy_from_slice(piece)).await.unwrap();
            assert!(app.buf.len() < MIN_PART, "a full part is sent at once");
        }
        app.checkpoint(&mut info).await.unwrap();
        assert!(info.is_complete());
        let path = s
            .publish(&mut info, &RelPath::root(), "w.bin")
            .await
            .unwrap();
        assert!(published_bytes(&s, &path).await[..] == data[..]);
    }

    // Review of 6e6fbd0: the claim's renewal waited for the record's lock while the copy,
    // which it does not poll meanwhile, held it across a record write (its `note`): the
    // publish hung for good. A copy holding the lock past a renewal must still finish.
    // Real time (about 5 s): the crate's tokio has no paused clock.
    #[tokio::test]
    async fn a_renewal_due_while_the_copy_notes_its_upload_does_not_hang_the_publish() {
        let opts = S3Options {
            bucket: "b".into(),
            endpoint: Some("http://127.0.0.1:9".into()),
            region: Some("us-east-1".into()),
            credentials: Some(("k".into(), "s".into())),
            single_instance: true,
            ..S3Options::default()
        };
        let _ = rustls::crypto::ring::default_provider().install_default();
        let s = S3Store::new(&opts).unwrap(); // never asked: nothing is written in 5 s
        let id = UploadId::random().unwrap();
        let keys = Keys::new(&s, id.as_str());
        let rec = tokio::sync::Mutex::new(record_of(0, &[]));
        let copy = async {
            let _noting = rec.lock().await; // as `note` holds it across its write
            tokio::time::sleep(PUBLISH_RENEW + std::time::Duration::from_secs(1)).await;
            Ok(7)
        };
        let held = tokio::time::timeout(
            std::time::Duration::from_secs(20),
            s.holding(&keys, &rec, copy),
        )
        .await;
        assert_eq!(held.expect("the publish hung").unwrap(), 7);
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

    /// The bytes of the object published at `path`.
    async fn published_bytes(s: &S3Store, path: &RelPath) -> Bytes {
        let key = s.key(path).unwrap();
        s.client.get(&key).await.unwrap().bytes().await.unwrap()
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
                    token: None,
                })
                .collect(),
            next_part: 0,
            pieces: Vec::new(),
            tail: String::new(),
            lease: None,
            publishing_until_ms: None,
            publish_upload: None,
            pinned_by: Vec::new(),
            hashed: None,
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
        assert!(
            published_bytes(&s, &path).await[..] == data[..],
            "published bytes differ"
        );
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
