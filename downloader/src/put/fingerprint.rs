//! The resume store: which tus upload(s) already hold part of a local file.
//!
//! A fingerprint is (endpoint, canonical path, size, mtime); the same file sent to the same
//! endpoint finds its uploads again after any interruption. Each fingerprint is one small JSON
//! file `uploads/<id>.json` in the data directory (`$FERRY_DATA_DIR`, else
//! `$XDG_DATA_HOME/ferry`, else `~/.local/share/ferry`), where `id` is a hash of the
//! fingerprint. tus-js-client keys its `localStorage` the same way (`tus::<fingerprint>`).
//!
//! Concurrent `ferry put` processes never corrupt the store: an entry is written to a unique
//! temporary file, fsynced, renamed over the old one and the directory fsynced, so a reader
//! sees either the old or the new entry, never a torn one; different files never share an
//! entry file. Two processes uploading the *same* file to the same endpoint are kept apart by
//! a flock on `uploads/<id>.lock` ([`Store::lock`]): the second stops with a clear error.
//!
//! Entry format (version 1), JSON: `{"version": 1, "fingerprint": {"endpoint", "path" (hex of
//! the path bytes), "size", "mtime_s", "mtime_ns"}, "sha256": hex or null, "parts": [{"start",
//! "end", "url"}], "final_url": url (optional), "done": url (optional)}`; parts are half-open
//! byte ranges of the file, one per tus upload; `final_url` is the final upload created before
//! the parts finished (concatenation-unfinished); `done` is where the finished file is, kept
//! so that a re-run skips it (an entry without it is an unfinished upload). Another version is reported and replaced, never misread.

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

/// Version of the entry format; bump when a field changes meaning.
pub const FORMAT_VERSION: u32 = 1;

/// What identifies "this version of this file, sent to this endpoint".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub endpoint: String,
    /// Canonical path as bytes (paths need not be UTF-8), hex encoded in the file.
    #[serde(with = "hex_bytes")]
    pub path: Vec<u8>,
    pub size: u64,
    pub mtime_s: i64,
    pub mtime_ns: i64,
}

impl Fingerprint {
    /// The fingerprint of `file` (which must exist) for `endpoint`.
    pub fn of(endpoint: &str, file: &Path) -> Result<Self> {
        let canonical = fs::canonicalize(file).map_err(|e| Error::io(file, e))?;
        let meta = fs::metadata(&canonical).map_err(|e| Error::io(file, e))?;
        Ok(Self::new(
            endpoint,
            &canonical,
            meta.len(),
            meta.mtime(),
            meta.mtime_nsec(),
        ))
    }

    pub fn new(endpoint: &str, canonical: &Path, size: u64, mtime_s: i64, mtime_ns: i64) -> Self {
        let path = canonical.as_os_str().as_bytes().to_vec();
        Self {
            endpoint: endpoint.to_string(),
            path,
            size,
            mtime_s,
            mtime_ns,
        }
    }

    /// Stable file-name-safe id: the first 128 bits of SHA-256 over the length-prefixed fields.
    pub fn id(&self) -> String {
        let mut h = Sha256::new();
        for field in [self.endpoint.as_bytes(), &self.path] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field);
        }
        h.update(self.size.to_le_bytes());
        h.update(self.mtime_s.to_le_bytes());
        h.update(self.mtime_ns.to_le_bytes());
        hex::encode(&h.finalize()[..16])
    }
}

/// One upload on the server holding bytes `start..end` of the file (half-open).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartEntry {
    pub start: u64,
    pub end: u64,
    pub url: String,
}

/// Everything needed to resume one file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub version: u32,
    pub fingerprint: Fingerprint,
    /// The whole file's SHA-256 (lowercase hex), cached so a resume does not hash again.
    pub sha256: Option<String>,
    /// One part for a single stream; several partial uploads for `-x N` (concatenation).
    pub parts: Vec<PartEntry>,
    /// The final upload joining `parts`, when it was created before they finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub final_url: Option<String>,
    /// Where the finished file can be downloaded: set once the upload completed, so running
    /// the same command again (`put -r` over a tree) skips it. Older entries lack it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub done: Option<String>,
}

impl Entry {
    pub fn new(fingerprint: Fingerprint) -> Self {
        Self {
            version: FORMAT_VERSION,
            fingerprint,
            sha256: None,
            parts: Vec::new(),
            final_url: None,
            done: None,
        }
    }
}

/// The directory of entries.
#[derive(Debug, Clone)]
pub struct Store {
    dir: PathBuf,
}

/// `$FERRY_DATA_DIR`, else `$XDG_DATA_HOME/ferry`, else `$HOME/.local/share/ferry` (XDG Base
/// Directory spec). Empty variables count as unset, as the spec says.
pub fn default_data_dir() -> Option<PathBuf> {
    data_dir_from(|name| std::env::var_os(name))
}

/// [`default_data_dir`] with the environment passed in, for tests.
pub fn data_dir_from(env: impl Fn(&str) -> Option<std::ffi::OsString>) -> Option<PathBuf> {
    let var = |name| env(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    var("FERRY_DATA_DIR")
        .or_else(|| var("XDG_DATA_HOME").map(|d| d.join("ferry")))
        .or_else(|| var("HOME").map(|h| h.join(".local/share/ferry")))
}

impl Store {
    /// Opens (creating if needed) the store under `data_dir`.
    pub fn open(data_dir: &Path) -> Result<Self> {
        let dir = data_dir.join("uploads");
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        Ok(Self { dir })
    }

    fn path(&self, fp: &Fingerprint) -> PathBuf {
        self.dir.join(format!("{}.json", fp.id()))
    }

    /// The entry for `fp`, `None` when there is none. An unreadable entry, one of another
    /// format version or one whose fingerprint differs is an error the caller may report and
    /// then ignore by starting over.
    pub fn load(&self, fp: &Fingerprint) -> Result<Option<Entry>> {
        let path = self.path(fp);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let invalid =
            |msg: String| Error::io(&path, io::Error::new(io::ErrorKind::InvalidData, msg));
        let value: serde_json::Value = serde_json::from_slice(&text)
            .map_err(|e| invalid(format!("corrupt resume entry: {e}")))?;
        let version = value.get("version").and_then(|v| v.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(invalid(format!(
                "expected resume entry version {FORMAT_VERSION}, got {version:?}"
            )));
        }
        let entry: Entry = serde_json::from_value(value)
            .map_err(|e| invalid(format!("corrupt resume entry: {e}")))?;
        if entry.fingerprint != *fp {
            return Err(invalid("resume entry belongs to another file".to_string()));
        }
        Ok(Some(entry))
    }

    /// Saves `entry` atomically: unique temp file, fsync, rename, fsync the directory.
    pub fn save(&self, entry: &Entry) -> Result<()> {
        let path = self.path(&entry.fingerprint);
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            entry.fingerprint.id(),
            std::process::id(),
            fastrand::u64(..)
        ));
        let json =
            serde_json::to_vec_pretty(entry).map_err(|e| Error::io(&tmp, io::Error::other(e)))?;
        let write = || -> io::Result<()> {
            let mut f = fs::File::create(&tmp)?;
            f.write_all(&json)?;
            f.sync_all()?;
            fs::rename(&tmp, &path)?;
            fs::File::open(&self.dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = fs::remove_file(&tmp);
            Error::io(&path, e)
        })
    }

    /// Forgets `fp` (after success, or when the server no longer knows the uploads).
    pub fn remove(&self, fp: &Fingerprint) -> Result<()> {
        let path = self.path(fp);
        match fs::remove_file(&path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(&path, e)),
            _ => Ok(()),
        }
    }

    /// Takes the per-fingerprint lock (`<id>.lock`, flock): `None` when another process
    /// holds it, i.e. another `ferry put` is uploading the same file to the same endpoint
    /// and the two would fight over the same uploads. The kernel releases the lock when the
    /// process dies, even by SIGKILL, so a crash never leaves it stale. Lock files stay (an
    /// unlink could race with a process that just opened the old file); `prune` removes old,
    /// unheld ones.
    pub fn lock(&self, fp: &Fingerprint) -> Result<Option<EntryLock>> {
        let path = self.dir.join(format!("{}.lock", fp.id()));
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => Ok(Some(EntryLock { _file: file })),
            Err(fs::TryLockError::WouldBlock) => Ok(None),
            Err(fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }

    /// Removes entries and leftover temporary files not written for `max_age`: their uploads
    /// have expired on any server with expiration (24 h in tusd and ferryd), and a file that
    /// changed leaves its old fingerprint behind. Best effort; returns how many were removed.
    pub fn prune(&self, max_age: Duration) -> usize {
        let Ok(dir) = fs::read_dir(&self.dir) else {
            return 0;
        };
        let now = SystemTime::now();
        let old = |e: &fs::DirEntry| {
            let modified = e.metadata().and_then(|m| m.modified()).ok();
            modified
                .and_then(|m| now.duration_since(m).ok())
                .is_some_and(|age| age > max_age)
        };
        // A lock file still held belongs to a running upload.
        let unheld = |e: &fs::DirEntry| {
            let is_lock = e.path().extension().is_some_and(|x| x == "lock");
            !is_lock || fs::File::open(e.path()).is_ok_and(|f| f.try_lock().is_ok())
        };
        dir.flatten()
            .filter(|e| old(e) && unheld(e) && fs::remove_file(e.path()).is_ok())
            .count()
    }
}

/// Proof that this process uploads one fingerprint; dropping it releases the lock.
#[derive(Debug)]
pub struct EntryLock {
    _file: fs::File,
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = String::deserialize(d)?;
        hex::decode(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(path: &str, size: u64, mtime: i64) -> Fingerprint {
        Fingerprint::new("http://127.0.0.1:1/files/", Path::new(path), size, mtime, 7)
    }

    fn entry(fp: Fingerprint, urls: &[&str]) -> Entry {
        let mut e = Entry::new(fp);
        e.sha256 = Some("ab".repeat(32));
        e.parts = urls
            .iter()
            .enumerate()
            .map(|(i, u)| PartEntry {
                start: i as u64 * 10,
                end: i as u64 * 10 + 10,
                url: u.to_string(),
            })
            .collect();
        e
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let e = entry(fp("/a/b", 20, 1), &["http://x/files/1", "http://x/files/2"]);
        store.save(&e).unwrap();
        assert_eq!(store.load(&e.fingerprint).unwrap(), Some(e.clone()));
        store.remove(&e.fingerprint).unwrap();
        assert_eq!(store.load(&e.fingerprint).unwrap(), None);
        store.remove(&e.fingerprint).unwrap();
    }

    #[test]
    fn any_changed_field_is_another_fingerprint() {
        let base = fp("/a/b", 20, 1);
        let others = [
            Fingerprint {
                endpoint: "http://127.0.0.1:2/files/".into(),
                ..base.clone()
            },
            fp("/a/c", 20, 1),
            fp("/a/b", 21, 1),
            fp("/a/b", 20, 2),
            Fingerprint {
                mtime_ns: 8,
                ..base.clone()
            },
        ];
        for other in others {
            assert_ne!(base.id(), other.id(), "{other:?}");
        }
        assert_eq!(base.id(), fp("/a/b", 20, 1).id());
    }

    #[test]
    fn prune_removes_only_old_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (fresh, stale) = (
            entry(fp("/fresh", 1, 1), &["u"]),
            entry(fp("/stale", 1, 1), &["u"]),
        );
        store.save(&fresh).unwrap();
        store.save(&stale).unwrap();
        let leftover = dir.path().join("uploads/.x.1.2.tmp");
        fs::write(&leftover, b"torn").unwrap();
        let long_ago = SystemTime::now() - Duration::from_secs(30 * 86400);
        for p in [store.path(&stale.fingerprint), leftover.clone()] {
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        assert_eq!(store.prune(Duration::from_secs(7 * 86400)), 2);
        assert_eq!(store.load(&fresh.fingerprint).unwrap(), Some(fresh));
        assert_eq!(store.load(&stale.fingerprint).unwrap(), None);
        assert!(!leftover.exists());
    }

    #[test]
    fn lock_is_exclusive_until_dropped_and_old_held_locks_survive_prune() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (a, b) = (fp("/a", 1, 1), fp("/b", 1, 1));
        let held = store.lock(&a).unwrap().expect("first lock");
        assert!(
            store.lock(&a).unwrap().is_none(),
            "a second holder must be refused"
        );
        let other = store
            .lock(&b)
            .unwrap()
            .expect("other files lock independently");
        drop(other);
        let long_ago = SystemTime::now() - Duration::from_secs(30 * 86400);
        for id in [a.id(), b.id()] {
            let p = dir.path().join(format!("uploads/{id}.lock"));
            fs::File::options()
                .write(true)
                .open(p)
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
        assert_eq!(
            store.prune(Duration::from_secs(86400)),
            1,
            "only the unheld lock file goes"
        );
        drop(held);
        assert!(store.lock(&a).unwrap().is_some());
    }

    #[test]
    fn non_utf8_paths_survive() {
        use std::os::unix::ffi::OsStrExt;
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let path = Path::new(std::ffi::OsStr::from_bytes(b"/tmp/\xff\xfe"));
        let e = entry(Fingerprint::new("e", path, 1, 1, 1), &["u"]);
        store.save(&e).unwrap();
        assert_eq!(store.load(&e.fingerprint).unwrap(), Some(e));
    }

    #[test]
    fn other_versions_and_garbage_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let f = fp("/a", 1, 1);
        let file = store.path(&f);
        fs::write(&file, b"{\"version\": 2}").unwrap();
        let err = store.load(&f).unwrap_err().to_string();
        assert!(
            err.contains("expected resume entry version 1, got Some(2)"),
            "{err}"
        );
        fs::write(&file, b"{\"vers").unwrap();
        assert!(store.load(&f).unwrap_err().to_string().contains("corrupt"));
        let mut e = entry(fp("/other", 1, 1), &["u"]);
        e.version = FORMAT_VERSION;
        fs::write(&file, serde_json::to_vec(&e).unwrap()).unwrap();
        assert!(store
            .load(&f)
            .unwrap_err()
            .to_string()
            .contains("another file"));
    }

    #[test]
    fn fingerprint_of_a_real_file_uses_the_canonical_path() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        fs::write(&file, b"hello").unwrap();
        let via_dots = dir.path().join(".").join("f");
        let a = Fingerprint::of("e", &file).unwrap();
        let b = Fingerprint::of("e", &via_dots).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.size, 5);
        assert!(Fingerprint::of("e", &dir.path().join("missing")).is_err());
    }

    #[test]
    fn concurrent_writers_never_leave_a_torn_entry() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let f = fp("/shared", 100, 1);
        std::thread::scope(|s| {
            for t in 0..4 {
                let (store, f) = (store.clone(), f.clone());
                s.spawn(move || {
                    for i in 0..25 {
                        let url = format!("http://x/files/{t}-{i}");
                        store.save(&entry(f.clone(), &[&url, &url])).unwrap();
                        let seen = store.load(&f).unwrap().expect("an entry is always present");
                        assert_eq!(seen.parts.len(), 2);
                        assert_eq!(seen.parts[0].url, seen.parts[1].url, "torn entry");
                    }
                });
            }
        });
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("uploads")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files must not remain");
    }

    #[test]
    fn data_dir_follows_ferry_then_xdg_then_home() {
        fn env<'a>(
            vars: &'a [(&'a str, &'a str)],
        ) -> impl Fn(&str) -> Option<std::ffi::OsString> + 'a {
            move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.into())
        }
        let all = [
            ("FERRY_DATA_DIR", "/f"),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(data_dir_from(env(&all)), Some(PathBuf::from("/f")));
        let xdg = [
            ("FERRY_DATA_DIR", ""),
            ("XDG_DATA_HOME", "/x"),
            ("HOME", "/h"),
        ];
        assert_eq!(data_dir_from(env(&xdg)), Some(PathBuf::from("/x/ferry")));
        let home = [("XDG_DATA_HOME", ""), ("HOME", "/h")];
        assert_eq!(
            data_dir_from(env(&home)),
            Some(PathBuf::from("/h/.local/share/ferry"))
        );
        assert_eq!(data_dir_from(env(&[])), None);
    }
}
