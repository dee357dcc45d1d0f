//! The content index: the SHA-256 of every regular file the server serves, kept by one
//! low-priority background thread and persisted in the state area, so that downloads carry
//! `Repr-Digest` (RFC 9530) and any served file can be the source of an instant upload.
//!
//! - [`table`]: the in-memory maps (pure).
//! - [`cache`]: the versioned on-disk form, replaced atomically.
//! - [`walk`]: the served tree under the file server's visibility rules.
//! - [`watch`]: inotify, so changes are seen without a rescan.
//! - [`hash`]: hashing one file at a bounded rate, at low priority.
//! - [`running`]: SHA-256 whose state a record can carry (uploads hashed as they arrive).
//! - `worker`: the thread tying them together.
//!
//! A digest is keyed by the identity of the file it was computed for (device, inode, size,
//! mtime: the stat the strong ETag and the open-file cache come from). A lookup answers only
//! for that exact identity, so a rewritten file never gets its old digest; it has none until
//! the indexer has hashed the new content.

pub mod cache;
pub mod hash;
pub mod running;
pub mod table;
pub mod walk;
pub mod watch;
mod worker;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::path::RelPath;
use crate::store::open_cache::Identity;
use table::{Sha256, Table};
pub use walk::Visibility;

/// How many files of a length [`Shared::has_len`] checks before it answers "no".
const LENGTH_CANDIDATES: usize = 16;

/// Name of the cache file in the state area.
pub const CACHE_FILE: &str = "index.v1";

/// How the indexer runs (`--index-rate`, `--index-rescan`).
#[derive(Debug, Clone)]
pub struct IndexOptions {
    /// Most bytes hashed per second; `None`: no limit (the thread still runs at nice 19 and
    /// in the idle I/O class).
    pub rate: Option<u64>,
    /// Time between full rescans, the backstop for changes inotify did not report.
    pub rescan: Duration,
}

impl Default for IndexOptions {
    fn default() -> Self {
        Self {
            rate: None,
            rescan: Duration::from_secs(600),
        }
    }
}

/// What the indexer has done, for the log, the metrics and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexStats {
    /// Files hashed since start (a restart over an unchanged tree hashes none).
    pub files_hashed: u64,
    pub bytes_hashed: u64,
    /// Files with a digest.
    pub entries: u64,
    /// Files known to need hashing and not hashed yet (the rest of a scan's list, and files
    /// that changed too recently and wait to settle).
    pub pending: u64,
    /// Full walks of the tree done since start (the first one and every rescan).
    pub scans: u64,
    /// Times the cache was written since start.
    pub cache_saves: u64,
    /// The first scan is over: every file present at start has a digest or failed.
    pub ready: bool,
}

/// The index as the server reads it; the worker thread writes it.
pub struct Shared {
    root: hash::Root,
    table: RwLock<Table>,
    /// Bumped whenever a digest is added, so a handle that found none knows when to ask again.
    generation: AtomicU64,
    files_hashed: AtomicU64,
    bytes_hashed: AtomicU64,
    pending: AtomicU64,
    scans: AtomicU64,
    cache_saves: AtomicU64,
    ready: AtomicBool,
    /// Requests for files, which the worker yields to.
    activity: Arc<hash::Activity>,
}

impl Shared {
    /// The server is reading a file: the indexer yields for a while (see [`hash::Activity`]).
    #[inline]
    pub fn note_read(&self) {
        self.activity.note();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Table> {
        self.table.read().unwrap_or_else(|p| p.into_inner())
    }

    /// The digest of the file with identity `id`, if it was computed for exactly it.
    pub fn digest(&self, id: &Identity) -> Option<Sha256> {
        self.read().digest(id)
    }

    /// Changes whenever a digest is added.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A served file with `sha` and `len` that is, right now, the file that was hashed: its
    /// path and the descriptor (read-only) that was checked, so the caller uses exactly that
    /// file, not whatever the path names a moment later.
    pub fn find(&self, sha: &Sha256, len: u64) -> Option<(RelPath, std::fs::File)> {
        let candidates = self.read().with_digest(sha, len);
        candidates.into_iter().find_map(|(path, id)| {
            let file = self.open_unchanged(&path, &id)?;
            Some((RelPath::from_segments(path.split('/')).ok()?, file))
        })
    }

    /// Whether an indexed file of exactly `len` bytes is, right now, the file that was
    /// hashed. A few candidates are checked: a wrong "no" only costs the client an upload.
    pub fn has_len(&self, len: u64) -> bool {
        let candidates = self.read().with_len(len, LENGTH_CANDIDATES);
        candidates
            .into_iter()
            .any(|(path, id)| self.unchanged(&path, &id))
    }

    /// Whether `path` is, now, the regular file `id` names (a confined open and `fstat`).
    fn unchanged(&self, path: &str, id: &Identity) -> bool {
        self.root.identity(path) == Some(*id)
    }

    /// `path` opened for reading (confined, non-blocking in case a FIFO was swapped in) if the
    /// descriptor is the regular file `id` names.
    fn open_unchanged(&self, path: &str, id: &Identity) -> Option<std::fs::File> {
        let f = self
            .root
            .open(path, libc::O_RDONLY | libc::O_NONBLOCK)
            .ok()?;
        let md = f.metadata().ok()?;
        (md.is_file() && Identity::of(&md) == *id).then_some(f)
    }

    pub fn stats(&self) -> IndexStats {
        IndexStats {
            files_hashed: self.files_hashed.load(Ordering::Relaxed),
            bytes_hashed: self.bytes_hashed.load(Ordering::Relaxed),
            entries: self.read().len() as u64,
            pending: self.pending.load(Ordering::Relaxed),
            scans: self.scans.load(Ordering::Relaxed),
            cache_saves: self.cache_saves.load(Ordering::Relaxed),
            ready: self.ready.load(Ordering::Acquire),
        }
    }
}

/// The running indexer. Dropping it stops the thread (after the file it is hashing, or at
/// once between pieces) and saves the cache.
pub struct Index {
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    waker: watch::Waker,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Index {
    /// Starts indexing `root`, keeping the cache in `state_dir`.
    pub fn start(
        root: &Path,
        state_dir: &Path,
        vis: Visibility,
        opts: IndexOptions,
    ) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            root: hash::Root::new(root)?,
            table: RwLock::new(Table::default()),
            generation: AtomicU64::new(0),
            files_hashed: AtomicU64::new(0),
            bytes_hashed: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            scans: AtomicU64::new(0),
            cache_saves: AtomicU64::new(0),
            ready: AtomicBool::new(false),
            activity: Arc::default(),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let watcher = watch::Watcher::new()?;
        let waker = watcher.waker()?;
        let worker = worker::Worker::new(
            shared.clone(),
            state_dir.join(CACHE_FILE),
            vis,
            opts,
            stop.clone(),
            watcher,
        );
        let thread = std::thread::Builder::new()
            .name("ferryd-index".into())
            .spawn(move || worker.run())?;
        Ok(Self {
            shared,
            stop,
            waker,
            thread: Some(thread),
        })
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
