//! A small cache of open files, like nginx's `open_file_cache`, revalidated on every use.
//!
//! Opening a file costs three syscalls (`openat2`, `fstat`, `close`); for small ranged GETs
//! those are a large share of the work. A cached entry is reused only if one `stat` of the
//! path right now shows the very same file: device, inode, size and modification time all
//! equal to what `fstat` said when it was opened (under the root-confinement rules). A file
//! replaced by rename, rewritten, truncated or deleted therefore never answers from the
//! cache, and a path that now leads somewhere else (a swapped symlink) does not match the
//! inode that was opened safely, so it goes through the full, confined open again.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::Mutex;

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

pub struct OpenCache<T> {
    entries: Mutex<HashMap<String, (Identity, T)>>,
    capacity: usize,
}

impl<T: Clone> OpenCache<T> {
    /// A cache of at most `capacity` open files (each holds a file descriptor).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    /// The cached value for `key` if it was opened as the file `now` describes; a stale
    /// entry is dropped.
    pub fn get(&self, key: &str, now: Identity) -> Option<T> {
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        match map.get(key) {
            Some((id, v)) if *id == now => Some(v.clone()),
            Some(_) => {
                map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn insert(&self, key: &str, id: Identity, value: T) {
        if self.capacity == 0 {
            return;
        }
        let mut map = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() >= self.capacity && !map.contains_key(key) {
            // Cheap and bounded: start over rather than track recency.
            map.clear();
        }
        map.insert(key.to_string(), (id, value));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn entry_is_reused_only_for_the_same_file_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        std::fs::write(&p, b"one").unwrap();
        let cache = OpenCache::new(4);
        cache.insert("f", Identity::of(&std::fs::metadata(&p).unwrap()), 1);
        assert_eq!(
            cache.get("f", Identity::of(&std::fs::metadata(&p).unwrap())),
            Some(1)
        );
        // Rewritten in place with another mtime: stale, and dropped.
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(5)).unwrap();
        drop(f);
        assert_eq!(
            cache.get("f", Identity::of(&std::fs::metadata(&p).unwrap())),
            None
        );
        cache.insert("f", Identity::of(&std::fs::metadata(&p).unwrap()), 2);
        // Replaced by rename (new inode), even with the same size and mtime.
        let q = dir.path().join("g");
        std::fs::write(&q, b"two").unwrap();
        let f = std::fs::File::options().write(true).open(&q).unwrap();
        f.set_modified(UNIX_EPOCH + Duration::from_secs(5)).unwrap();
        drop(f);
        std::fs::rename(&q, &p).unwrap();
        assert_eq!(
            cache.get("f", Identity::of(&std::fs::metadata(&p).unwrap())),
            None
        );
    }

    #[test]
    fn capacity_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let md = std::fs::metadata(dir.path()).unwrap();
        let cache = OpenCache::new(2);
        for (i, k) in ["a", "b", "c"].into_iter().enumerate() {
            cache.insert(k, Identity::of(&md), i);
        }
        assert!(cache.entries.lock().unwrap().len() <= 2);
        assert_eq!(cache.get("c", Identity::of(&md)), Some(2));
        assert_eq!(OpenCache::new(0).get("x", Identity::of(&md)), None::<u8>);
    }
}
