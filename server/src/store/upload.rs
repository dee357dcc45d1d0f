//! The upload capability: what a backend must offer for tus uploads (tusd's DataStore plus its
//! optional "composer" interfaces, one trait each).
//!
//! A backend that supports uploads returns itself from [`super::Store::uploads`]. Optional
//! capabilities are traits of their own ([`Concatenation`], [`PlaceParts`], [`ContentIndex`]);
//! the tus handler derives its `Tus-Extension` header from which the store offers, never
//! from a list typed by hand.
//!
//! Durability contract: bytes are appended through an [`Appender`]; its
//! [`Appender::checkpoint`] makes the appended bytes durable (`fdatasync`) and only then
//! records the new offset atomically. The recorded offset is the upload's offset; bytes past
//! it (written before a crash, never checkpointed) are cut off when the next appender opens.
//!
//! Concurrency contract: the record is versioned. Every write of a record is a
//! compare-and-swap against the [`Revision`] the caller's [`UploadInfo`] was loaded (or last
//! recorded) at: creating expects no record, every later write expects `info.revision`. A
//! record that changed meanwhile (another writer took the upload over) fails with
//! [`StoreError::Conflict`] and is left as the other writer recorded it; a success stores the
//! new revision in `info.revision`. Several writers can never silently overwrite each other's
//! progress (object_store's `PutMode::Create` / `PutMode::Update`; the directory store checks
//! the same way under a per-record lock).

use std::io;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::{BoxFuture, StoreError};
use crate::path::RelPath;

/// Version of the on-disk [`UploadInfo`] format. Other versions fail to load with a clear error.
pub const INFO_VERSION: u32 = 1;

/// An upload id: 32 lowercase hex digits (128 random bits). Validated at the edge, so a store
/// can use it as a file name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadId(String);

impl UploadId {
    /// A fresh id from the operating system's random source.
    pub fn random() -> io::Result<Self> {
        Ok(UploadId(random_hex(16)?))
    }

    /// Accepts exactly 32 lowercase hex digits.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 32
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        ok.then(|| UploadId(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for UploadId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `n` bytes from `/dev/urandom`, hex-encoded (upload ids, generated tokens).
pub fn random_hex(n: usize) -> io::Result<String> {
    use std::io::Read as _;
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buf)?;
    Ok(hex::encode(buf))
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The tus concatenation role of an upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Concat {
    None,
    Partial,
    /// Ids of the partial uploads, in order.
    Final {
        parts: Vec<String>,
    },
}

/// Where an upload is in its life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum UploadState {
    /// Receiving bytes (or a complete partial upload waiting to be concatenated).
    Active,
    /// Complete and linked into the served tree at `path` (relative to the root).
    Published { path: String },
    /// Deleted by the client (tus termination); kept as a tombstone so requests get 410.
    Terminated,
    /// Removed by the reaper; kept as a tombstone so requests get 410.
    Expired,
}

/// Which stored revision of an upload record an [`UploadInfo`] was read at, as the store names
/// it (the directory store: a digest of the record's bytes; an object store: the object's
/// ETag). Opaque to everyone but the store that made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Revision(pub(crate) String);

/// The durable record of one upload (versioned JSON on the fs backend).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadInfo {
    pub version: u32,
    pub id: String,
    /// `None` while the length is deferred (creation-defer-length).
    pub length: Option<u64>,
    /// Bytes durably received. Never more than `length`.
    pub offset: u64,
    /// `Upload-Metadata` exactly as the client sent it (already validated).
    pub metadata: Option<String>,
    pub concat: Concat,
    pub state: UploadState,
    /// Unix milliseconds after which an unfinished upload (or a tombstone) may be removed.
    pub expires_ms: Option<u64>,
    /// A partial upload whose bytes are written straight into a final upload's data (see
    /// [`UploadStore::place`]); `None`: the upload has its own data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<Placement>,
    /// A final upload: the ids of its parts that were not complete when it was created
    /// (concatenation-unfinished). They were sent for it, so they are terminated once it is
    /// published, as placed parts are, whether or not the store could place them (the S3
    /// store never does), unless another final upload still waits for one (the last to be
    /// published terminates it); parts complete before it was created stay usable for other
    /// final uploads until they expire (as tusd keeps parts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unfinished_parts: Vec<String>,
    /// The stored revision this record was loaded or last recorded at; `None` before it is
    /// created. Not part of the record: the store derives it (see the concurrency contract).
    #[serde(skip)]
    pub revision: Option<Revision>,
}

/// Where a placed partial upload's bytes live: in the data of final upload `upload`, from
/// byte `at` on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Placement {
    pub upload: String,
    pub at: u64,
}

impl UploadInfo {
    pub fn new(
        id: &UploadId,
        length: Option<u64>,
        metadata: Option<String>,
        concat: Concat,
    ) -> Self {
        Self {
            version: INFO_VERSION,
            id: id.as_str().to_string(),
            length,
            offset: 0,
            metadata,
            concat,
            state: UploadState::Active,
            expires_ms: None,
            placement: None,
            unfinished_parts: Vec::new(),
            revision: None,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.length == Some(self.offset)
    }

    /// Parses the on-disk form, refusing other format versions.
    pub fn decode(raw: &[u8]) -> io::Result<Self> {
        #[derive(Deserialize)]
        struct Probe {
            version: u32,
        }
        let probe: Probe = serde_json::from_slice(raw).map_err(invalid)?;
        if probe.version != INFO_VERSION {
            return Err(invalid(format!(
                "expected upload info version {INFO_VERSION}, got {}",
                probe.version
            )));
        }
        serde_json::from_slice(raw).map_err(invalid)
    }

    pub fn encode(&self) -> Vec<u8> {
        // Serializing plain data with string keys cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }
}

fn invalid(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Appends bytes to one upload's staging data.
pub trait Appender: Send {
    /// Queues `data` at the current position (the previous write may still be in flight).
    fn write(&mut self, data: Bytes) -> BoxFuture<'_, io::Result<()>>;
    /// Position after every byte queued so far.
    fn position(&self) -> u64;
    /// Makes every queued byte durable, then atomically records `info` with
    /// `offset = position()`, expecting the revision this appender recorded last (or opened
    /// at). On error `info` is unchanged; on [`StoreError::Conflict`] another writer owns the
    /// upload now and this appender must stop.
    fn checkpoint<'a>(
        &'a mut self,
        info: &'a mut UploadInfo,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Starts a checkpoint of every byte queued so far in the background, so receiving goes
    /// on while the disk flushes, and returns `true`; does nothing and returns `false` while
    /// the previous one still runs. Background checkpoints are recorded in order and always
    /// before a [`Appender::checkpoint`].
    fn checkpoint_behind<'a>(
        &'a mut self,
        info: &'a UploadInfo,
    ) -> BoxFuture<'a, Result<bool, StoreError>>;
    /// Drops everything past `offset` (a chunk whose checksum did not match).
    fn rollback(&mut self, offset: u64) -> BoxFuture<'_, io::Result<()>>;
    /// Waits for every write and background checkpoint still in flight. Call it before the
    /// upload is released to another writer.
    fn close(&mut self) -> BoxFuture<'_, Result<(), StoreError>>;
}

/// Upload staging, publish, termination and expiry: what every upload store does (tusd's
/// DataStore with its terminater). All ids are validated; all paths are [`RelPath`]s. Every
/// method that records an `info` does so by compare-and-swap (see the module's concurrency
/// contract): on [`StoreError::Conflict`] nothing of the record changed.
///
/// What a store may also do is a separate trait each, offered through an accessor that
/// returns `None` by default: [`Concatenation`], [`PlaceParts`], [`ContentIndex`]. The tus
/// `Tus-Extension` header is derived from which are present (`tus::core::extensions`).
pub trait UploadStore: Send + Sync {
    /// A [`Locker`](super::lock::Locker) for this store's uploads; the tus endpoint makes
    /// one at start and takes every upload's lock through it. The default locks in this
    /// process's memory, enough for a store no other process writes.
    fn locker(&self) -> Box<dyn super::lock::Locker> {
        Box::new(super::lock::InProcess::default())
    }
    /// Creates empty staging data and records `info` durably, only if no record of its id
    /// exists (else [`StoreError::Conflict`]).
    fn create<'a>(&'a self, info: &'a mut UploadInfo) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The last checkpointed record, with its [`Revision`]. `NotFound` for an unknown id.
    fn load<'a>(&'a self, id: &'a UploadId) -> BoxFuture<'a, Result<UploadInfo, StoreError>>;
    /// Records `info` atomically (length declared later, state changes).
    fn save<'a>(&'a self, info: &'a mut UploadInfo) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Opens the staging data for appending at `info.offset`, cutting off any bytes past it.
    /// The appender's checkpoints are compare-and-swaps from `info.revision` on.
    fn append<'a>(
        &'a self,
        info: &'a UploadInfo,
    ) -> BoxFuture<'a, Result<Box<dyn Appender>, StoreError>>;
    /// Links the complete staging data of `info` into the served tree as `dir/name`, or the
    /// first free [`name_candidate`], never replacing an existing file; records the
    /// [`UploadState::Published`] state and returns the path used.
    fn publish<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        dir: &'a RelPath,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RelPath, StoreError>>;
    /// Frees the staging data and records `state` (a tombstone) with a new expiry
    /// (termination, expiry, a retired part).
    fn discard<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        state: UploadState,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Removes every trace of an upload (an old tombstone).
    fn purge<'a>(&'a self, id: &'a UploadId) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Every upload record (for the reaper and the limits' count at start).
    fn list_uploads(&self) -> BoxFuture<'_, Result<Vec<UploadInfo>, StoreError>>;
    /// Frees what interrupted writers left that no record accounts for, so neither expiry
    /// nor termination would ever free it (on S3: orphaned multipart uploads). The reaper
    /// calls it after each pass; returns how many things it freed. The default has none.
    fn sweep(&self) -> BoxFuture<'_, Result<usize, StoreError>> {
        Box::pin(async { Ok(0) })
    }
    /// tus concatenation, if this store joins uploads.
    fn concatenation(&self) -> Option<&dyn Concatenation> {
        None
    }
    /// Writing unfinished parts in place in their final upload, if this store can.
    fn placement(&self) -> Option<&dyn PlaceParts> {
        None
    }
    /// A content index of the served files (instant upload), if this store keeps one.
    fn content_index(&self) -> Option<&dyn ContentIndex> {
        None
    }
}

/// tus concatenation and concatenation-unfinished.
pub trait Concatenation: Send + Sync {
    /// Writes the data of the complete `parts`, in order, as the data of `info`, makes it
    /// durable and records `info` as complete. Parts placed into `info` at their position
    /// are already there.
    fn concatenate<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        parts: &'a [UploadInfo],
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Records that the final upload `fin` waits for the partial upload `part`
    /// (concatenation-unfinished), so that [`Concatenation::finals_of`] finds it without
    /// reading every record. Called before `fin` is created.
    fn note_final<'a>(
        &'a self,
        part: &'a UploadId,
        fin: &'a UploadId,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// The final uploads that may wait for `part`; some may be gone or finished (callers
    /// check).
    fn finals_of<'a>(
        &'a self,
        part: &'a UploadId,
    ) -> BoxFuture<'a, Result<Vec<UploadId>, StoreError>>;
}

/// Placing parts (an optimisation of [`Concatenation`]: without it, concatenation copies).
pub trait PlaceParts: Send + Sync {
    /// Moves the unfinished partial upload `part` into the data of the final upload `into`
    /// at byte `at` (concatenation-unfinished): its received bytes are copied there once and
    /// every later byte is written there directly, so [`Concatenation::concatenate`] has
    /// nothing left to copy for it. Records the placement durably.
    fn place<'a>(
        &'a self,
        part: &'a mut UploadInfo,
        into: &'a UploadInfo,
        at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>>;
    /// Gives the complete placed part `part` its own data again (a copy of its bytes in the
    /// final upload's data), and records it as not placed: before that final upload is
    /// published (its data, with the part's bytes, leaves staging), when another final upload
    /// still has to be concatenated from the part.
    fn unplace<'a>(&'a self, part: &'a mut UploadInfo) -> BoxFuture<'a, Result<(), StoreError>>;
}

/// A content index by SHA-256 of the served files (instant upload).
pub trait ContentIndex: Send + Sync {
    /// Whether the content index holds a file of exactly `len` bytes (the cheap question a
    /// client asks before hashing for instant upload). A wrong "yes" only costs the client a
    /// hash; [`ContentIndex::index_find`] checks before anything is trusted.
    fn index_has_length(&self, len: u64) -> BoxFuture<'_, Result<bool, StoreError>>;
    /// A served file with content `sha256` (hex) and `len` bytes, only while it is still the
    /// very file that was hashed (same device, inode, size and mtime), held so that
    /// [`ContentIndex::publish_copy`] uses that file and not whatever its path names later.
    fn index_find<'a>(
        &'a self,
        sha256: &'a str,
        len: u64,
    ) -> BoxFuture<'a, Result<Option<Indexed>, StoreError>>;
    /// Like [`UploadStore::publish`] but with the bytes of the already served file `src`
    /// (instant upload) as [`ContentIndex::index_find`] found and checked it, whatever its
    /// path names now: `info` must have `length` equal to its size.
    fn publish_copy<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        src: &'a Indexed,
        dir: &'a RelPath,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RelPath, StoreError>>;
}

/// A served file the content index vouched for (instant upload): where it was found, and a
/// hold on the very file that was checked, so that publishing a copy of it cannot pick up
/// another file renamed over `path` between the check and the copy (issue 12's swap race).
#[derive(Debug)]
pub struct Indexed {
    pub path: RelPath,
    pub(crate) hold: Hold,
}

/// What an [`Indexed`] file is held by, as the store that found it keeps it.
#[derive(Debug)]
pub(crate) enum Hold {
    /// The directory store's: the descriptor whose identity was checked.
    File(std::fs::File),
    /// An object store's: the ETag of the object version that was hashed; copies are made
    /// from that version only.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    ETag(String),
}

/// Longest file name (bytes) a candidate may have: the common `NAME_MAX`.
pub const MAX_NAME: usize = 255;

/// The `n`-th name to try when publishing `name`: the name itself, then `stem (n).ext`
/// (`report.pdf`, `report (1).pdf`, ...; a dotless or leading-dot name gets the suffix at
/// the end). The stem is shortened so the result stays within [`MAX_NAME`] bytes.
pub fn name_candidate(name: &str, n: u32) -> String {
    if n == 0 {
        return name.to_string();
    }
    let (stem, ext) = match name.rfind('.') {
        Some(dot) if dot > 0 && name.len() - dot < 64 => name.split_at(dot),
        _ => (name, ""),
    };
    let suffix = format!(" ({n}){ext}");
    let mut cut = stem.len().min(MAX_NAME.saturating_sub(suffix.len()));
    while !stem.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}{suffix}", &stem[..cut])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_id_accepts_only_32_lowercase_hex() {
        assert!(UploadId::parse("0123456789abcdef0123456789abcdef").is_some());
        assert!(UploadId::parse("0123456789ABCDEF0123456789abcdef").is_none());
        assert!(UploadId::parse("../etc").is_none());
        assert!(UploadId::parse("").is_none());
        let a = UploadId::random().unwrap();
        assert!(UploadId::parse(a.as_str()).is_some());
        assert_ne!(a, UploadId::random().unwrap());
    }

    #[test]
    fn name_candidates_keep_the_extension() {
        assert_eq!(name_candidate("report.pdf", 0), "report.pdf");
        assert_eq!(name_candidate("report.pdf", 1), "report (1).pdf");
        assert_eq!(name_candidate("a.tar.gz", 2), "a.tar (2).gz");
        assert_eq!(name_candidate("README", 3), "README (3)");
        assert_eq!(name_candidate(".env", 1), ".env (1)");
        let long = format!("{}.txt", "é".repeat(125)); // 254 bytes
        let c = name_candidate(&long, 12);
        assert!(c.len() <= MAX_NAME && c.ends_with("é (12).txt"), "{c}");
    }

    #[test]
    fn candidates_always_fit_and_keep_the_suffix_for_any_name() {
        // Property over generated names: mixed 1-4 byte characters, dots anywhere, up to the
        // 255-byte cap that sanitize_file_name leaves.
        let alphabet = ['a', '.', 'é', '报', '😀', ' '];
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        for _ in 0..2000 {
            let mut name = String::new();
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let len = (x % 90) as usize + 1;
            for i in 0..len {
                let c = alphabet[((x >> (i % 60)) as usize + i) % alphabet.len()];
                if name.len() + c.len_utf8() > MAX_NAME {
                    break;
                }
                name.push(c);
            }
            for n in [1, 9, 10, 999] {
                let c = name_candidate(&name, n);
                assert!(c.len() <= MAX_NAME, "{c:?}");
                assert!(c.contains(&format!(" ({n})")), "{c:?}");
                assert_ne!(c, name);
            }
        }
    }

    #[test]
    fn info_round_trips_and_refuses_other_versions() {
        let id = UploadId::parse("0123456789abcdef0123456789abcdef").unwrap();
        let mut info = UploadInfo::new(
            &id,
            Some(10),
            Some("filename YQ==".into()),
            Concat::Final {
                parts: vec!["x".into()],
            },
        );
        info.state = UploadState::Published {
            path: "a/b.txt".into(),
        };
        assert_eq!(UploadInfo::decode(&info.encode()).unwrap(), info);
        let v2 = String::from_utf8(info.encode())
            .unwrap()
            .replace("\"version\": 1", "\"version\": 2");
        let err = UploadInfo::decode(v2.as_bytes()).unwrap_err();
        assert!(
            err.to_string()
                .contains("expected upload info version 1, got 2"),
            "{err}"
        );
        assert!(UploadInfo::decode(b"{").is_err());
    }
}
