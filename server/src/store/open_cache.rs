//! A small cache of open files, like nginx's `open_file_cache`, that never answers with a
//! file that changed.
//!
//! Opening a file costs three syscalls (`openat2`, `fstat`, `close`); for small ranged GETs
//! those are a large share of the work. A cached entry stands for its path as long as nothing
//! changed: device, inode, size and modification time all as `fstat` said when it was opened
//! (under the root-confinement rules). How that is known, per entry:
//!
//! - **watched** (the common case): the cache's own inotify instance ([`notify`]) watches the
//!   file's inode and every directory on its path, and every lookup first asks whether an
//!   event is queued (one `ioctl`), applying any before it answers. An entry is watched only
//!   if its path leads to it without symlinks, on a local file system, with the watches in
//!   place before its `fstat`.
//! - **checked** (the fallback: no inotify instance, no watch left, a path through a symlink,
//!   a network file system): one `statx` of the path per use, compared with the identity.
//!
//! Either way a file replaced by rename, rewritten, truncated or deleted by a system call that
//! returned before a request started never answers that request from the cache, and a path
//! that now leads somewhere else (a swapped symlink or directory) goes through the full,
//! confined open again. A change made while a request is being answered may or may not be
//! seen by it, with or without the cache (a `pread` races a `write` in any server).
//!
//! A lookup applies what changed before it answers; a cache that gets no lookups is swept in
//! the background ([`sweep`]), so that it does not keep deleted files open for long.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::Mutex;

mod notify;
pub mod sweep;
use notify::{Change, Notify};

/// What must be unchanged for a cached open file to stand for the path. The strong ETag is
/// made from the same stat, and the content index keys its digests by it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub len: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
}

impl Identity {
    pub fn of(md: &std::fs::Metadata) -> Self {
        Self {
            dev: md.dev(),
            ino: md.ino(),
            len: md.len(),
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
        }
    }

    /// The identity a `statx` result describes, converted field by field as the standard
    /// library converts it into a [`std::fs::Metadata`], so both constructors agree.
    pub fn of_statx(st: &libc::statx) -> Self {
        Self {
            dev: libc::makedev(st.stx_dev_major, st.stx_dev_minor),
            ino: st.stx_ino,
            len: st.stx_size,
            mtime: st.stx_mtime.tv_sec,
            mtime_nsec: i64::from(st.stx_mtime.tv_nsec),
        }
    }
}

/// FNV-1a for the cache's path keys: a lookup per request hashed with SipHash cost more than
/// the rest of the lookup (#13). Flooding is not a concern here: the maps hold at most
/// `capacity` paths of files that exist, so colliding names cannot make them long.
#[derive(Default, Clone, Copy)]
struct Fnv;

impl std::hash::BuildHasher for Fnv {
    type Hasher = FnvHasher;

    fn build_hasher(&self) -> FnvHasher {
        FnvHasher(0xcbf2_9ce4_8422_2325)
    }
}

struct FnvHasher(u64);

impl std::hash::Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// How the cache knows an entry is still current.
pub enum Cached<T> {
    /// Watched, and no event since: current.
    Current(T),
    /// Not watched: current only if a `stat` of the path shows this identity now.
    Check(Identity, T),
    Miss,
}

struct Entry<T> {
    id: Identity,
    value: T,
    watched: bool,
}

struct Inner<T> {
    entries: HashMap<String, Entry<T>, Fnv>,
    /// Paths being opened, with the token of the open that may insert them: an event for the
    /// path while it is opened removes it, and the open then does not cache its file.
    opening: HashMap<String, u64, Fnv>,
    next_token: u64,
    /// `None`: no inotify instance (every entry is checked).
    notify: Option<Notify>,
    changes: Vec<Change>,
}

impl<T> Inner<T> {
    /// Applies every queued event.
    fn sync(&mut self) {
        let Some(n) = self.notify.as_mut() else {
            return;
        };
        if !n.pending() {
            return;
        }
        n.drain(&mut self.changes);
        let mut changes = std::mem::take(&mut self.changes);
        for c in changes.drain(..) {
            match c {
                Change::Path(p) => {
                    self.entries.retain(|k, _| !notify::is_at_or_below(k, &p));
                    self.opening.retain(|k, _| !notify::is_at_or_below(k, &p));
                    if let Some(n) = self.notify.as_mut() {
                        n.forget_dirs(&p);
                    }
                }
                Change::All => self.reset(),
            }
        }
        self.changes = changes;
    }

    /// Forgets every entry and every watch (a fresh inotify instance).
    fn reset(&mut self) {
        self.entries.clear();
        self.opening.clear();
        self.notify = match self.notify.take() {
            Some(_) => Notify::new().ok(),
            None => None,
        };
    }
}

pub struct OpenCache<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
}

/// An open in progress (see [`OpenCache::begin`]); dropped without [`OpenCache::finish`], it
/// withdraws the path.
pub struct Ticket<'a, T> {
    cache: &'a OpenCache<T>,
    key: String,
    token: u64,
    /// The directories on the path are watched.
    dirs: bool,
    /// The file itself is watched.
    file: bool,
}

impl<T> Drop for Ticket<'_, T> {
    fn drop(&mut self) {
        let mut inner = self.cache.lock();
        if inner.opening.get(&self.key) == Some(&self.token) {
            inner.opening.remove(&self.key);
        }
    }
}

impl<T> OpenCache<T> {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl<T: Clone> OpenCache<T> {
    /// A cache of at most `capacity` open files (each holds a file descriptor), watched by
    /// inotify when `watch` and an instance is available.
    pub fn new(capacity: usize, watch: bool) -> Self {
        let notify = match watch && capacity > 0 {
            true => Notify::new()
                .map_err(|e| {
                    tracing::warn!(error = %e,
                        "open-file cache: no inotify instance (fs.inotify.max_user_instances?); cached files are checked with a stat per request")
                })
                .ok(),
            false => None,
        };
        Self {
            inner: Mutex::new(Inner {
                entries: HashMap::default(),
                opening: HashMap::default(),
                next_token: 0,
                notify,
                changes: Vec::new(),
            }),
            capacity,
        }
    }

    /// The cached value for `key`, after applying whatever changed.
    pub fn get(&self, key: &str) -> Cached<T> {
        if self.capacity == 0 {
            return Cached::Miss;
        }
        let mut inner = self.lock();
        inner.sync();
        match inner.entries.get(key) {
            Some(e) if e.watched => Cached::Current(e.value.clone()),
            Some(e) => Cached::Check(e.id, e.value.clone()),
            None => Cached::Miss,
        }
    }

    /// Applies whatever changed without waiting for a lookup, and drops the checked entries
    /// whose path no longer leads to their file: `current(key, id)` says whether it does (a
    /// `stat`, made outside the lock). Dropped entries close their descriptors once no
    /// response holds them.
    pub fn sweep(&self, current: impl Fn(&str, Identity) -> bool) {
        let checked: Vec<(String, Identity)> = {
            let mut inner = self.lock();
            inner.sync();
            (inner.entries.iter())
                .filter(|(_, e)| !e.watched)
                .map(|(k, e)| (k.clone(), e.id))
                .collect()
        };
        for (key, id) in checked {
            if !current(&key, id) {
                self.forget(&key, id);
            }
        }
    }

    /// Drops the entry for `key` if it still has identity `id` (a [`Cached::Check`] failed).
    pub fn forget(&self, key: &str, id: Identity) {
        let mut inner = self.lock();
        if inner.entries.get(key).is_some_and(|e| e.id == id) {
            inner.entries.remove(key);
        }
    }

    /// Starts opening `key`: watches the directories on its path (under `root`, the served
    /// root's path) before the file is opened, so that any later change to what the path
    /// leads to is an event.
    pub fn begin(&self, root: &Path, key: &str) -> Ticket<'_, T> {
        let mut inner = self.lock();
        inner.sync();
        let over = (inner.notify.as_ref()).is_some_and(|n| n.added > 4 * self.capacity + 64);
        if over {
            inner.reset();
        }
        inner.next_token += 1;
        let token = inner.next_token;
        let dirs = self.capacity > 0
            && inner
                .notify
                .as_mut()
                .is_some_and(|n| n.watch_dirs(root, key));
        inner.opening.insert(key.to_string(), token);
        Ticket {
            cache: self,
            key: key.to_string(),
            token,
            dirs,
            file: false,
        }
    }

    /// Watches the opened `file` itself; call before its `fstat`. Only for a file whose path
    /// leads to it without symlinks, on a file system that reports every change.
    pub fn watch(&self, ticket: &mut Ticket<'_, T>, file: &File) {
        if !ticket.dirs || !notify::reports_all_changes(file) {
            return;
        }
        let mut inner = self.lock();
        ticket.file = inner
            .notify
            .as_mut()
            .is_some_and(|n| n.watch_file(file, &ticket.key));
    }

    /// Caches `value`, opened as `id`, unless the path changed since [`Self::begin`].
    pub fn finish(&self, ticket: Ticket<'_, T>, id: Identity, value: T) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.sync();
        if inner.opening.get(&ticket.key) != Some(&ticket.token) {
            return; // changed while it was opened, or a later open of the same path wins
        }
        inner.opening.remove(&ticket.key);
        let mut watched = ticket.file;
        if inner.entries.len() >= self.capacity && !inner.entries.contains_key(&ticket.key) {
            // Cheap and bounded: start over rather than track recency. The watches go too, and
            // with them this file's: it is cached checked until it is opened again.
            inner.reset();
            watched = false;
        }
        inner
            .entries
            .insert(ticket.key.clone(), Entry { id, value, watched });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::os::unix::fs::FileExt as _;
    use std::time::{Duration, UNIX_EPOCH};

    /// Opens `key` under `root` as the store does (directories watched, then the file, then
    /// its fstat) and caches `v` for it.
    fn open(c: &OpenCache<u32>, root: &Path, key: &str, v: u32) {
        let mut t = c.begin(root, key);
        let f = File::open(root.join(key)).unwrap();
        c.watch(&mut t, &f);
        let id = Identity::of(&f.metadata().unwrap());
        c.finish(t, id, v);
    }

    fn current(c: &OpenCache<u32>, key: &str) -> Option<u32> {
        match c.get(key) {
            Cached::Current(v) => Some(v),
            _ => None,
        }
    }

    /// Whether the file system of the test's temporary directory reports changes (where it
    /// does not, the cache checks every entry with a stat, tested below). In CI (`CI=true` or
    /// `FERRY_REQUIRE_TOOLS`) it must: a skip there would hide the watched path untested.
    fn watchable(root: &Path) -> bool {
        let f = File::open(root).unwrap();
        let ok = notify::reports_all_changes(&f) && Notify::new().is_ok();
        let ci = std::env::var("CI").is_ok_and(|v| v == "true")
            || std::env::var("FERRY_REQUIRE_TOOLS").is_ok();
        assert!(ok || !ci, "no inotify on {} in CI", root.display());
        ok
    }

    #[test]
    fn a_watched_entry_is_dropped_by_the_change_before_the_next_lookup() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        if !watchable(root) {
            eprintln!("skipped: no inotify on {}", root.display());
            return;
        }
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        let c = OpenCache::new(16, true);
        let put = |k: &str, v: &[u8]| std::fs::write(root.join(k), v).unwrap();
        put("a/b/f", b"one");
        put("g", b"two");

        // Rewritten in place, same size, no sleep: gone at the very next lookup.
        open(&c, root, "a/b/f", 1);
        assert_eq!(current(&c, "a/b/f"), Some(1));
        let f = File::options()
            .write(true)
            .open(root.join("a/b/f"))
            .unwrap();
        f.write_all_at(b"ONE", 0).unwrap();
        assert!(matches!(c.get("a/b/f"), Cached::Miss));

        // Written through a hard link in another directory.
        open(&c, root, "a/b/f", 2);
        std::fs::hard_link(root.join("a/b/f"), root.join("elsewhere/h")).unwrap();
        open(&c, root, "a/b/f", 3); // the link itself is an attribute change (nlink)
        let mut h = File::options()
            .append(true)
            .open(root.join("elsewhere/h"))
            .unwrap();
        h.write_all(b"!").unwrap();
        assert!(matches!(c.get("a/b/f"), Cached::Miss));

        // Only its mtime changed (touch): the ETag changes, so the entry goes.
        open(&c, root, "a/b/f", 4);
        let f = File::options()
            .write(true)
            .open(root.join("a/b/f"))
            .unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(5)).unwrap();
        assert!(matches!(c.get("a/b/f"), Cached::Miss));

        // Replaced by rename.
        open(&c, root, "a/b/f", 5);
        put("elsewhere/new", b"new");
        std::fs::rename(root.join("elsewhere/new"), root.join("a/b/f")).unwrap();
        assert!(matches!(c.get("a/b/f"), Cached::Miss));

        // A directory on its path swapped for another.
        open(&c, root, "a/b/f", 6);
        open(&c, root, "g", 7);
        std::fs::rename(root.join("a"), root.join("old")).unwrap();
        std::fs::create_dir_all(root.join("a/b")).unwrap();
        put("a/b/f", b"six");
        assert!(matches!(c.get("a/b/f"), Cached::Miss));
        // The new directories are watched when the path is opened again.
        open(&c, root, "a/b/f", 8);
        assert_eq!(current(&c, "a/b/f"), Some(8));
        put("a/b/new", b"x");
        std::fs::rename(root.join("a/b/new"), root.join("a/b/f")).unwrap();
        assert!(matches!(c.get("a/b/f"), Cached::Miss));

        // Unrelated names coming and going leave an entry alone; truncation does not.
        assert_eq!(current(&c, "g"), Some(7));
        put("other", b"o");
        std::fs::remove_file(root.join("other")).unwrap();
        assert_eq!(current(&c, "g"), Some(7));
        File::options()
            .write(true)
            .open(root.join("g"))
            .unwrap()
            .set_len(1)
            .unwrap();
        assert!(matches!(c.get("g"), Cached::Miss));
    }

    #[test]
    fn a_change_while_the_file_is_opened_keeps_it_out_of_the_cache() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        if !watchable(root) {
            eprintln!("skipped: no inotify on {}", root.display());
            return;
        }
        std::fs::write(root.join("f"), b"one").unwrap();
        let c = OpenCache::new(16, true);
        let mut t = c.begin(root, "f");
        let f = File::open(root.join("f")).unwrap();
        c.watch(&mut t, &f);
        let id = Identity::of(&f.metadata().unwrap());
        // Replaced after the open, before the entry is in: that open's file is not cached.
        std::fs::write(root.join("tmp"), b"two").unwrap();
        std::fs::rename(root.join("tmp"), root.join("f")).unwrap();
        c.finish(t, id, 1);
        assert!(matches!(c.get("f"), Cached::Miss));
        // An open that failed withdraws its path.
        let t = c.begin(root, "missing");
        drop(t);
        assert!(c.lock().opening.is_empty());
    }

    #[test]
    fn without_inotify_every_entry_is_checked_against_its_identity() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let c = OpenCache::new(4, false);
        open(&c, d.path(), "f", 1);
        let id = Identity::of(&std::fs::metadata(&p).unwrap());
        assert!(matches!(c.get("f"), Cached::Check(i, 1) if i == id));
        c.forget("f", id);
        assert!(matches!(c.get("f"), Cached::Miss));
        // A path through a symlink is checked too, even with inotify.
        std::os::unix::fs::symlink("f", d.path().join("link")).unwrap();
        let c = OpenCache::new(4, true);
        // The store calls `watch` only for a path without symlinks.
        let t = c.begin(d.path(), "link");
        let f = File::open(&p).unwrap();
        c.finish(t, Identity::of(&f.metadata().unwrap()), 2);
        assert!(matches!(c.get("link"), Cached::Check(_, 2)));
    }

    #[test]
    fn identity_changes_with_rewrite_and_rename() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let id0 = Identity::of(&std::fs::metadata(&p).unwrap());
        // Rewritten in place with another mtime.
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(5)).unwrap();
        drop(f);
        let id1 = Identity::of(&std::fs::metadata(&p).unwrap());
        assert_ne!(id0, id1);
        // Replaced by rename (new inode), even with the same size and mtime.
        let q = dir.path().join("g");
        std::fs::write(&q, b"two").unwrap();
        let f = std::fs::File::options().write(true).open(&q).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(5)).unwrap();
        drop(f);
        std::fs::rename(&q, &p).unwrap();
        assert_ne!(id1, Identity::of(&std::fs::metadata(&p).unwrap()));
    }

    #[test]
    fn a_sweep_applies_changes_and_checks_unwatched_entries_without_a_lookup() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        std::fs::write(root.join("f"), b"one").unwrap();
        let entries = |c: &OpenCache<u32>| c.lock().entries.len();
        if watchable(root) {
            let c = OpenCache::new(4, true);
            open(&c, root, "f", 1);
            assert!(matches!(c.get("f"), Cached::Current(1)));
            c.sweep(|_, _| panic!("a watched entry is not checked"));
            assert_eq!(entries(&c), 1, "nothing changed");
            std::fs::remove_file(root.join("f")).unwrap();
            c.sweep(|_, _| panic!("a watched entry is not checked"));
            assert_eq!(entries(&c), 0, "the deletion applied by the sweep");
            std::fs::write(root.join("f"), b"one").unwrap();
        }
        let c = OpenCache::new(4, false);
        open(&c, root, "f", 2);
        let id = Identity::of(&std::fs::metadata(root.join("f")).unwrap());
        c.sweep(|k, i| k == "f" && i == id);
        assert_eq!(entries(&c), 1, "still the same file");
        c.sweep(|_, _| false);
        assert_eq!(entries(&c), 0, "no longer the file cached");
    }

    #[test]
    fn capacity_is_bounded() {
        let d = tempfile::tempdir().unwrap();
        for k in ["a", "b", "c"] {
            std::fs::write(d.path().join(k), k).unwrap();
        }
        let c = OpenCache::new(2, true);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            open(&c, d.path(), k, i as u32);
        }
        assert!(c.lock().entries.len() <= 2);
        assert!(!matches!(c.get("c"), Cached::Miss));
        let none = OpenCache::new(0, true);
        open(&none, d.path(), "a", 1);
        assert!(matches!(none.get("a"), Cached::Miss));
    }
}
