//! Local-filesystem backend: serves a directory tree.
//!
//! Policy lives here, not in handlers: dotfiles are invisible unless allowed; a symlink whose
//! target resolves outside the root is refused unless allowed. The backend's own state
//! (upload staging, records, index) lives outside the root (see [`state`]); whatever the
//! flags say, nothing whose resolved location is in it (or in the legacy `ROOT/.ferry`) is
//! ever read, listed or written through the served tree: the check is on the opened
//! descriptor, after every symlink.
//!
//! Reads are positional (`pread`) in chunks of [`CHUNK`] bytes on the blocking pool, one chunk
//! read ahead per response so disk and socket overlap. Every chunk holds permits of a shared
//! byte budget until the connection has written it, which bounds the memory of all responses
//! together however many clients there are. No read waits for that budget: when it is spent,
//! a response reads [`SHARE`] bytes at a time of its own (see `read`), so clients that hold
//! the budget by never reading slow the others to small reads but never stop them.

use std::fs::File;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::UNIX_EPOCH;

use tokio::sync::Semaphore;

use super::open_cache::{sweep, Cached, Identity, OpenCache};
use super::visibility::Visibility;
use super::{BoxFuture, EntryStream, Meta, Object, Store, StoreError};
use crate::index::{Index, IndexOptions};
use crate::path::RelPath;
use crate::worker::PerWorker;

pub(crate) mod beneath;
mod list;
mod read;
pub mod state;
use beneath::{open_beneath, real_path};
use read::FsFile;
use state::LEGACY_DIR;

/// Bytes per positional read: large enough for throughput, small enough that the budget
/// spreads across many connections.
pub const CHUNK: usize = 512 * 1024;
/// Reads of at most this many bytes happen inline on the async worker.
pub const INLINE_READ: usize = 64 * 1024;
/// Bytes a response reads at a time, outside the budget, while the budget is spent: its own
/// share, so that clients holding the budget (by not reading) cannot stall anyone else.
/// nginx's `output_buffers` default is 2 x 32 KiB per connection, for comparison.
pub const SHARE: usize = 16 * 1024;

#[derive(Debug, Clone)]
pub struct FsOptions {
    /// Serve and list names starting with `.`.
    pub allow_hidden: bool,
    /// Follow symlinks whose target lies outside the root.
    pub allow_symlinks_outside: bool,
    /// Bytes of file data that responses may hold in memory at once in full-size chunks; past
    /// it, each response reads [`SHARE`] bytes at a time (memory: budget + one share each).
    pub read_budget: usize,
    /// Open files kept for reuse by each worker thread (each holds a descriptor); 0 disables
    /// the cache.
    pub open_files: usize,
    /// Where uploads are staged and records kept (`--state-dir`); `None`: `.NAME.ferry`
    /// beside the root. Must be outside the root, on its file system.
    pub state_dir: Option<PathBuf>,
    /// The content index (`None`: `--no-index`, no digests and no instant upload).
    pub index: Option<IndexOptions>,
}

impl FsOptions {
    /// The hidden-file policy these options ask for.
    pub fn visibility(&self) -> Visibility {
        Visibility {
            allow_hidden: self.allow_hidden,
        }
    }
}

impl Default for FsOptions {
    fn default() -> Self {
        Self {
            allow_hidden: false,
            allow_symlinks_outside: false,
            read_budget: 16 * 1024 * 1024,
            open_files: 128,
            state_dir: None,
            index: Some(IndexOptions::default()),
        }
    }
}

pub struct FsStore {
    root: PathBuf,
    /// The root held open: `openat2` resolves request paths relative to it.
    root_dir: Arc<File>,
    /// The backend's own state directory (canonical), outside the root.
    state: PathBuf,
    /// One cache per worker thread (see [`crate::worker`]): a cached file, its reference
    /// count, its header values and the cache's lock are then touched by one core only. Each
    /// worker opens a file once, with its own descriptor and inotify instance.
    open_files: PerWorker<OpenCache<Arc<FsFile>>>,
    /// Sweeps the caches of idle workers (see [`sweep`]); `None`: no cache, or no thread.
    _sweeper: Option<sweep::Sweeper>,
    opts: FsOptions,
    budget: Arc<Semaphore>,
    index: Option<Index>,
}

impl FsStore {
    /// Opens `root`, which must be an existing directory, and prepares the state directory
    /// (see [`state::prepare`]).
    pub fn new(root: &Path, opts: FsOptions) -> io::Result<Self> {
        let root = root.canonicalize()?;
        if !root.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a directory", root.display()),
            ));
        }
        let permits = opts.read_budget.max(2 * CHUNK);
        let state = state::prepare(&root, opts.state_dir.as_deref())?;
        let index = match &opts.index {
            Some(o) => Some(Index::start(&root, &state, opts.visibility(), o.clone())?),
            None => None,
        };
        let root_dir = Arc::new(File::open(&root)?);
        let open_files = PerWorker::default();
        let sweeper = match opts.open_files {
            0 => None,
            _ => start_sweeper(&open_files, &root_dir, &root),
        };
        Ok(Self {
            root_dir,
            state,
            open_files,
            _sweeper: sweeper,
            root,
            budget: Arc::new(Semaphore::new(permits)),
            opts,
            index,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The backend's own state directory (canonical): upload staging and records under
    /// `uploads/`, the content index under `index/`. Outside the root, on its file system.
    pub fn state_dir(&self) -> &Path {
        &self.state
    }

    /// The content index, unless indexing is off.
    pub fn index(&self) -> Option<&Arc<crate::index::Shared>> {
        self.index.as_ref().map(Index::shared)
    }

    /// The root held open, for confined opens (`openat2`) relative to it.
    pub(crate) fn root_dir(&self) -> &Arc<File> {
        &self.root_dir
    }

    /// Whether a resolved (real) location lies in the backend's state: the state directory
    /// or the legacy `ROOT/.ferry`.
    pub(crate) fn in_state_area(&self, real: &Path) -> bool {
        in_state_area(&self.root, &self.state, real)
    }

    /// NotFound if the opened `file` really lies in the state area, whatever path led there.
    /// Without `/proc` the path is resolved by name instead. Says whether `path` leads to the
    /// file directly (its real location is `ROOT/path`: no symlink on the way).
    fn check_resolved(&self, file: &File, path: &RelPath) -> Result<bool, StoreError> {
        let direct = self.root.join(path.as_str());
        let real = match real_path(file) {
            Some(r) => r,
            None => direct.canonicalize().map_err(StoreError::from_io)?,
        };
        if self.in_state_area(&real) {
            return Err(StoreError::NotFound);
        }
        Ok(real == direct)
    }

    /// Opens a validated path read-only under the visibility policy. Unless symlinks may
    /// leave the root, the kernel confines the whole resolution to the root in one step
    /// (`openat2` with `RESOLVE_BENEATH`), so no symlink swapped in between a check and the
    /// open can escape. A path the kernel refuses that way (an absolute symlink, or a kernel
    /// without `openat2`) takes the slower check-then-open path, which still refuses targets
    /// outside the root. Also says whether the path leads to the file without symlinks.
    fn open_file(&self, path: &RelPath) -> Result<(File, bool), StoreError> {
        let file = self.open_unchecked(path)?;
        let direct = self.check_resolved(&file, path)?;
        Ok((file, direct))
    }

    fn open_unchecked(&self, path: &RelPath) -> Result<File, StoreError> {
        self.check_visible(path)?;
        if !self.opts.allow_symlinks_outside {
            match open_beneath(&self.root_dir, path.as_str(), libc::O_RDONLY) {
                Ok(f) => return Ok(f),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EXDEV | libc::ENOSYS | libc::EPERM)
                    ) => {}
                Err(e) => return Err(StoreError::from_io(e)),
            }
        }
        File::open(self.resolve(path)?).map_err(StoreError::from_io)
    }

    /// The calling worker's open-file cache.
    fn open_files(&self) -> &OpenCache<Arc<FsFile>> {
        self.open_files
            .get_or_init(|| OpenCache::new(self.opts.open_files, true))
    }

    /// The cached open file for `path` in `cache`, if it is still the same file (see
    /// [`OpenCache`]).
    fn cached(&self, cache: &OpenCache<Arc<FsFile>>, path: &RelPath) -> Option<Arc<FsFile>> {
        self.check_visible(path).ok()?;
        let (id, hit) = match cache.get(path.as_str()) {
            Cached::Current(hit) => return Some(hit),
            Cached::Check(id, hit) => (id, hit),
            Cached::Miss => return None,
        };
        if identity_now(&self.root_dir, &self.root, path.as_str())? != id {
            cache.forget(path.as_str(), id);
            return None;
        }
        Some(hit)
    }

    fn visibility(&self) -> Visibility {
        self.opts.visibility()
    }

    fn check_visible(&self, path: &RelPath) -> Result<(), StoreError> {
        if !self.visibility().serves_path(path) {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Maps a validated path to a filesystem path, enforcing the visibility policy.
    fn resolve(&self, path: &RelPath) -> Result<PathBuf, StoreError> {
        self.check_visible(path)?;
        let full = self.root.join(path.as_str());
        if !self.opts.allow_symlinks_outside && self.has_symlink(path)? {
            let real = full.canonicalize().map_err(StoreError::from_io)?;
            if !real.starts_with(&self.root) {
                return Err(StoreError::Forbidden);
            }
        }
        Ok(full)
    }

    /// Whether any component below the root is a symlink (one `lstat` each); only then is the
    /// full `realpath` needed.
    fn has_symlink(&self, path: &RelPath) -> Result<bool, StoreError> {
        let mut p = self.root.clone();
        for seg in path.segments() {
            p.push(seg);
            let md = std::fs::symlink_metadata(&p).map_err(StoreError::from_io)?;
            if md.file_type().is_symlink() {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Whether `real` (a resolved path) lies in the state directory `state` or the legacy
/// `ROOT/.ferry`.
fn in_state_area(root: &Path, state: &Path, real: &Path) -> bool {
    real.starts_with(state) || real.starts_with(root.join(LEGACY_DIR))
}

/// The identity of the file `rel` (relative to the served root, open as `root_dir`) leads to
/// now; `None` if there is none.
fn identity_now(root_dir: &File, root: &Path, rel: &str) -> Option<Identity> {
    match stat_at(root_dir, rel) {
        Ok(id) => Some(id),
        // No statx (old kernel, or a seccomp filter saying EPERM, as std also assumes).
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) => {
            Some(Identity::of(&std::fs::metadata(root.join(rel)).ok()?))
        }
        Err(_) => None,
    }
}

/// Sweeps the open-file caches in the background (see [`sweep`]); a checked entry is current
/// while its path leads to a file of the same identity. `None`, with a warning, if no thread
/// could be started.
fn start_sweeper(
    caches: &PerWorker<OpenCache<Arc<FsFile>>>,
    root_dir: &Arc<File>,
    root: &Path,
) -> Option<sweep::Sweeper> {
    let (dir, root) = (root_dir.clone(), root.to_path_buf());
    let current = move |key: &str, id| identity_now(&dir, &root, key) == Some(id);
    sweep::start(caches.copies(), sweep::EVERY, current)
        .map_err(|e| {
            tracing::warn!(error = %e,
                "open-file cache: no sweeping thread; an idle worker keeps deleted files open until its next request")
        })
        .ok()
}

/// The identity of what `rel` names under the held root right now (`statx`, following
/// symlinks as `std::fs::metadata` does). Relative to the root descriptor, the kernel walks
/// only the request's own components, and no path is built in memory. This is not confined to
/// the root: it only has to show whether the path still leads to the file that was opened
/// under the confinement rules.
fn stat_at(root: &File, rel: &str) -> io::Result<Identity> {
    statx_at(root, rel, libc::AT_STATX_SYNC_AS_STAT).map(|st| Identity::of_statx(&st))
}

/// `statx` of `rel` relative to the directory `dir` with `flags` (`AT_SYMLINK_NOFOLLOW` for
/// `lstat` semantics); `""` is the directory itself.
pub(super) fn statx_at(dir: &File, rel: &str, flags: libc::c_int) -> io::Result<libc::statx> {
    use std::os::fd::AsRawFd;
    let rel = if rel.is_empty() { "." } else { rel };
    let mut buf = [0u8; 256];
    let long;
    let c_path = match buf.get_mut(..rel.len()) {
        Some(head) if rel.len() < 256 => {
            head.copy_from_slice(rel.as_bytes()); // the NUL after it is already there
            std::ffi::CStr::from_bytes_until_nul(&buf).map_err(io::Error::other)?
        }
        _ => {
            long = std::ffi::CString::new(rel).map_err(io::Error::other)?;
            long.as_c_str()
        }
    };
    // SAFETY: `statx` is plain old data; all-zero is a valid value for the kernel to overwrite.
    let mut st: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is NUL-terminated and `st` is a writable `statx`, both valid for the call.
    let r = unsafe {
        libc::statx(
            dir.as_raw_fd(),
            c_path.as_ptr(),
            flags,
            libc::STATX_BASIC_STATS,
            &mut st,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// Strong validator from size, mtime in nanoseconds and inode: any rewrite in place changes
/// the size or mtime, any replacement by rename changes the inode.
pub fn meta_of(md: &std::fs::Metadata) -> Meta {
    let modified = md.modified().unwrap_or(UNIX_EPOCH);
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Meta {
        len: md.len(),
        modified,
        etag: format!("\"{:x}-{:x}-{:x}\"", md.len(), nanos, md.ino()),
    }
}

impl FsStore {
    /// Opens `path` on the calling thread. open/fstat (and lstat for the symlink check) run
    /// inline on the worker, as nginx does them in its event loop: on a local filesystem they
    /// are microseconds, and a trip to the blocking pool per request cost more than the
    /// request itself for small ranges.
    fn open_inline(&self, path: &RelPath) -> Result<Object, StoreError> {
        if let Some(index) = &self.index {
            index.shared().note_read();
        }
        let cache = self.open_files();
        if let Some(hit) = self.cached(cache, path) {
            return Ok(Object::File(hit));
        }
        self.check_visible(path)?;
        // The path's directories are watched before the open and the file before its fstat,
        // so a change at any point after is an event for the cache.
        let mut ticket = cache.begin(&self.root, path.as_str());
        let (file, direct) = self.open_file(path)?;
        if direct {
            cache.watch(&mut ticket, &file);
        }
        let md = file.metadata()?;
        if md.is_dir() {
            return Ok(Object::Dir(meta_of(&md)));
        }
        if !md.is_file() {
            return Err(StoreError::Forbidden); // fifo, device, socket
        }
        let id = Identity::of(&md);
        let index = self.index().cloned();
        let opened = Arc::new(FsFile::new(
            meta_of(&md),
            file,
            self.budget.clone(),
            id,
            index,
        ));
        cache.finish(ticket, id, opened.clone());
        Ok(Object::File(opened))
    }
}

impl Store for FsStore {
    fn open<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<Object, StoreError>> {
        Box::pin(std::future::ready(self.open_inline(path)))
    }

    fn open_now(&self, path: &RelPath) -> Option<Result<Object, StoreError>> {
        Some(self.open_inline(path))
    }

    fn list<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<EntryStream, StoreError>> {
        Box::pin(async move {
            // Opened (confined and checked like any read), then listed through the descriptor:
            // what is listed is what was checked.
            let (dir, _) = self.open_file(path)?;
            let (root, state, opts) = (self.root.clone(), self.state.clone(), self.opts.clone());
            let index = self.index().cloned();
            let names = tokio::task::spawn_blocking(move || {
                list::names(&root, &state, &opts, &dir, index.as_deref()).map(|n| (dir, n))
            });
            let (dir, names) = names
                .await
                .map_err(|e| StoreError::Io(io::Error::other(e)))??;
            Ok(list::batches(dir, names, self.index().cloned()))
        })
    }

    fn uploads(&self) -> Option<&dyn super::upload::UploadStore> {
        Some(self)
    }

    fn index_stats(&self) -> Option<crate::index::IndexStats> {
        self.index().map(|ix| ix.stats())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ETag worker `worker`'s cache answers for `name` (opened on a thread of its own
    /// marked as that worker, as `server::run_workers` marks its threads).
    fn etag_on_worker(store: &Arc<FsStore>, worker: usize, name: &str) -> String {
        let (store, name) = (store.clone(), name.to_string());
        std::thread::spawn(move || {
            crate::worker::enter(worker);
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let path = RelPath::from_uri_path(&format!("/{name}")).unwrap();
            match rt.block_on(store.open(&path)).unwrap() {
                Object::File(f) => f.meta().etag.clone(),
                Object::Dir(_) => panic!("{name} is a directory"),
            }
        })
        .join()
        .unwrap()
    }

    // Each worker keeps its own cache (#13): a rewrite must reach every one of them, so that
    // no worker answers with the old ETag after the write returned.
    #[test]
    fn every_worker_cache_sees_a_rewrite() {
        use std::os::unix::fs::FileExt as _;
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.bin");
        std::fs::write(&p, b"one").unwrap();
        let opts = FsOptions {
            state_dir: Some(state.path().to_path_buf()),
            index: None,
            ..Default::default()
        };
        let store = Arc::new(FsStore::new(dir.path(), opts).unwrap());
        let before = etag_on_worker(&store, 0, "f.bin");
        assert_eq!(etag_on_worker(&store, 1, "f.bin"), before);
        // Same size, same inode; the mtime set after the write, so the ETag surely differs.
        let f = File::options().write(true).open(&p).unwrap();
        f.write_all_at(b"two", 0).unwrap();
        f.set_modified(UNIX_EPOCH + std::time::Duration::from_secs(5))
            .unwrap();
        let after = meta_of(&std::fs::metadata(&p).unwrap());
        assert_ne!(after.etag, before);
        for worker in [0, 1] {
            assert_eq!(
                etag_on_worker(&store, worker, "f.bin"),
                after.etag,
                "{worker}"
            );
        }
    }

    /// How many descriptors this process holds on the file that was at `path`.
    fn descriptors_on(path: &Path) -> usize {
        let deleted = format!("{} (deleted)", path.display());
        (std::fs::read_dir("/proc/self/fd").unwrap().flatten())
            .filter_map(|fd| std::fs::read_link(fd.path()).ok())
            .filter(|to| to == path || to.as_os_str() == deleted.as_str())
            .count()
    }

    // The review of #13 found that a worker's cache applied change events only at its next
    // lookup: an idle worker kept deleted files open, their space not freed, indefinitely.
    #[test]
    fn an_idle_worker_closes_a_deleted_file_without_another_request() {
        let dir = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let root = dir.path().canonicalize().unwrap();
        let (watched, checked) = (root.join("f.bin"), root.join("g.bin"));
        std::fs::write(&watched, b"one").unwrap();
        std::fs::write(&checked, b"two").unwrap();
        // Through a symlink the entry is checked by a stat, not watched.
        std::os::unix::fs::symlink("g.bin", root.join("link.bin")).unwrap();
        let opts = FsOptions {
            state_dir: Some(state.path().to_path_buf()),
            index: None,
            ..Default::default()
        };
        let store = Arc::new(FsStore::new(&root, opts).unwrap());
        etag_on_worker(&store, 0, "f.bin");
        etag_on_worker(&store, 1, "link.bin");
        assert_eq!(descriptors_on(&watched), 1, "cached by worker 0");
        assert_eq!(descriptors_on(&checked), 1, "cached by worker 1");
        std::fs::remove_file(&watched).unwrap();
        std::fs::remove_file(&checked).unwrap();
        // Within a sweep or two; the bound is for a loaded machine.
        let deadline = std::time::Instant::now() + 30 * sweep::EVERY;
        while descriptors_on(&watched) + descriptors_on(&checked) > 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "still open {:?} after {:?} without requests",
                30 * sweep::EVERY,
                (descriptors_on(&watched), descriptors_on(&checked))
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    #[test]
    fn stat_at_sees_what_metadata_sees() {
        let dir = tempfile::tempdir().unwrap();
        let root = File::open(dir.path()).unwrap();
        std::fs::create_dir(dir.path().join("d")).unwrap();
        // 255 bytes fill the stack buffer with the NUL; 256 take the allocated path.
        let (fits, long) = ("n".repeat(255), format!("d/{}", "n".repeat(254)));
        for name in ["f", "d/g", fits.as_str(), long.as_str()] {
            let p = dir.path().join(name);
            std::fs::write(&p, name).unwrap();
            let md = std::fs::metadata(&p).unwrap();
            assert_eq!(stat_at(&root, name).unwrap(), Identity::of(&md), "{name}");
        }
        let md = std::fs::metadata(dir.path()).unwrap();
        assert_eq!(stat_at(&root, "").unwrap(), Identity::of(&md));
        std::os::unix::fs::symlink("d/g", dir.path().join("link")).unwrap();
        let md = std::fs::metadata(dir.path().join("d/g")).unwrap();
        assert_eq!(stat_at(&root, "link").unwrap(), Identity::of(&md));
        let missing = stat_at(&root, "nope").unwrap_err();
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }
}
