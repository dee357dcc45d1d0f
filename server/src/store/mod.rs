//! The storage abstraction. Handlers never touch the filesystem (or, later, S3) directly: they
//! go through [`Store`], which resolves a validated [`RelPath`] to an [`Object`] handle.
//!
//! The core trait is small on purpose (tusd's DataStore): open a file or directory, read byte
//! ranges from an opened file, list a directory. Optional capabilities (upload staging and
//! atomic publish for tus, a content index for instant upload) are separate traits a backend
//! may implement and advertise through [`Store::uploads`]; the tus `Tus-Extension` header is
//! derived from what the backend returns there.
//!
//! Backends: [`fs`] (a local directory, the default) and, with the `s3` feature, [`s3`] (an
//! S3-compatible bucket through `object_store`). Which one serves is chosen by `--store`
//! ([`url`]); the hidden-file policy both apply is [`visibility`]. Handlers only see this
//! trait: nothing outside `store/` knows which backend answers.
//!
//! Reads go through an opened handle so that the metadata a response announces (length,
//! ETag) and the bytes it sends come from the same version of the file: a file replaced by
//! rename while a response streams keeps streaming the old version.

#[cfg(test)]
pub(crate) mod conformance;
pub mod fs;
pub mod fs_upload;
pub mod lock;
pub mod open_cache;
#[cfg(feature = "s3")]
pub mod s3;
pub mod upload;
pub mod url;
pub mod visibility;

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use ferry_proto::ByteRange;
use futures_util::Stream;

use crate::path::RelPath;

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;
/// A stream of file bytes; an `Err` item aborts the response (the connection is reset, so a
/// client never takes a short body for a complete one).
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// What a response needs to know about a stored object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub len: u64,
    pub modified: SystemTime,
    /// A strong entity tag including its quotes (RFC 9110 §8.8.3). It changes whenever the
    /// content may have changed: backends derive it from size, sub-second mtime and identity.
    pub etag: String,
}

/// A directory's entries in listing order, in batches, each looked up as it is asked for (a
/// listing of 100,000 entries starts at once and never holds them all). An `Err` item aborts
/// the response, as in a [`ByteStream`].
pub type EntryStream = Pin<Box<dyn Stream<Item = io::Result<Vec<Entry>>> + Send>>;

/// One entry of a directory listing: what the listing shows, nothing more (no entity tag,
/// which would cost a formatted string per entry of a 100,000-entry directory).
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub is_dir: bool,
    /// Bytes, as the file system reports them (listings show none for a folder).
    pub len: u64,
    pub modified: SystemTime,
    /// The file's SHA-256, if the content index has it for this version.
    pub sha256: Option<[u8; 32]>,
}

/// A slot where a handler keeps what it derived from an opened file (the response header
/// values), built on first use and reused for as long as the store reuses the handle. The
/// handle stands for one unchanged version of the file, so nothing in it can go stale. Typed
/// as `Any` so the store does not depend on what a handler keeps there.
pub type Memo = std::sync::OnceLock<Box<dyn std::any::Any + Send + Sync>>;

/// An opened file: its metadata and positional reads of the same version.
pub trait FileHandle: Send + Sync {
    fn meta(&self) -> &Meta;

    /// The handle's [`Memo`], if the backend reuses handles across requests (an open-file
    /// cache); `None` means every request derives its values afresh.
    fn memo(&self) -> Option<&Memo> {
        None
    }
    /// The SHA-256 of this version of the file, if the backend knows it (the content index).
    fn sha256(&self) -> Option<[u8; 32]> {
        None
    }
    /// Streams exactly `range` (which lies within `meta().len`).
    fn read(self: Arc<Self>, range: ByteRange) -> ByteStream;

    /// Reads a small `range` into one buffer, so a small response goes out as a single write
    /// with its head. Backends with a cheaper path than collecting [`FileHandle::read`]
    /// override it.
    fn read_bytes(self: Arc<Self>, range: ByteRange) -> BoxFuture<'static, io::Result<Bytes>> {
        Box::pin(collect(self.read(range), range.len()))
    }

    /// [`FileHandle::read_bytes`] done at once, if this backend reads a range this small
    /// without waiting (a local file: one `pread`); `None`: ask `read_bytes`. Saves a small
    /// response the future a read would be, which is most of its cost (#13).
    fn read_now(&self, _range: ByteRange) -> Option<io::Result<Bytes>> {
        None
    }
}

/// Concatenates a stream of `len` bytes into one buffer.
pub async fn collect(mut stream: ByteStream, len: u64) -> io::Result<Bytes> {
    use futures_util::StreamExt as _;
    let mut out = bytes::BytesMut::with_capacity(len.min(1 << 20) as usize);
    while let Some(chunk) = stream.next().await {
        out.extend_from_slice(&chunk?);
    }
    Ok(out.freeze())
}

pub enum Object {
    File(Arc<dyn FileHandle>),
    Dir(Meta),
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    /// The path exists but policy forbids serving it (dotfile, symlink leaving the root).
    #[error("forbidden")]
    Forbidden,
    /// A compare-and-swap of a record lost: the record changed (or, for a creation, already
    /// existed) since the caller read it. Another writer owns it now; nothing was recorded.
    #[error("the record changed since it was read")]
    Conflict,
    #[error(transparent)]
    Io(#[from] io::Error),
}

impl StoreError {
    pub(crate) fn from_io(e: io::Error) -> Self {
        match e.kind() {
            // A name longer than the file system allows cannot exist: missing, like any other.
            io::ErrorKind::NotFound
            | io::ErrorKind::NotADirectory
            | io::ErrorKind::InvalidFilename => StoreError::NotFound,
            io::ErrorKind::PermissionDenied => StoreError::Forbidden,
            _ => StoreError::Io(e),
        }
    }
}

/// The core storage interface.
pub trait Store: Send + Sync + 'static {
    fn open<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<Object, StoreError>>;
    /// [`Store::open`] done at once, if this backend opens without waiting (the local file
    /// system opens inline, see [`fs`]); `None`: ask `open`.
    fn open_now(&self, _path: &RelPath) -> Option<Result<Object, StoreError>> {
        None
    }
    /// Lists a directory, hidden entries already filtered out, folders first, then by name.
    fn list<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<EntryStream, StoreError>>;
    /// The upload capability (tus), if this backend has one.
    fn uploads(&self) -> Option<&dyn upload::UploadStore> {
        None
    }
    /// The content indexer's progress (for the metrics), if this backend runs one.
    fn index_stats(&self) -> Option<crate::index::IndexStats> {
        None
    }
}
