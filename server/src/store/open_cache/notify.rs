//! The open-file cache's own inotify instance: a watch on each cached file (content and
//! attribute changes, through whatever name or hard link they were made) and on each
//! directory along a cached path (names created, deleted or moved). Separate from the content
//! index's watcher so that requests can ask "did anything change?" of this queue alone, and so
//! that it works with `--no-index`.
//!
//! Why the queue is asked on every request (one `ioctl(FIONREAD)`, ~0.26 µs here) rather than
//! read by a thread in the background: the kernel queues an event inside the system call that
//! made the change (`vfs_write` calls `fsnotify_modify` before returning, `vfs_rename`
//! `fsnotify_move`), but a thread reading the queue runs later, under load milliseconds
//! later. In that window a rewritten file would be served from the old descriptor under the
//! old strong ETag while `pread` already returns the new bytes. A request that finds the
//! queue empty knows that no change made by a system call that returned before it started is
//! pending: the same promise the per-request `statx` (~0.98 µs, a path walk) gave.
//! (A thread does read the queue once a second as well, [`super::sweep`], but only so that
//! a cache without lookups lets go of deleted files; a request never relies on it.)

use std::collections::{HashMap, HashSet};
use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

/// Changes to a cached file's inode: content (any writer, any name), size, mtime, links.
const FILE_MASK: u32 = libc::IN_MODIFY
    | libc::IN_ATTRIB
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_MASK_ADD;

/// Changes to what the names in a directory on a cached path lead to.
const DIR_MASK: u32 = libc::IN_CREATE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR
    | libc::IN_MASK_ADD;

/// What a watch descriptor stands for (one inode may stand for several keys).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    /// The directory with this relative path (`""`: the root).
    Dir(String),
    /// The cached file with this key.
    File(String),
}

/// What an event says the cache can no longer trust.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Change {
    /// This relative path and everything below it.
    Path(String),
    /// Everything: events were lost.
    All,
}

pub(super) struct Notify {
    fd: OwnedFd,
    targets: HashMap<i32, Vec<Target>>,
    /// Directories watched (relative paths), so a path's directories are watched once.
    dirs: HashSet<String>,
    /// Watches added, an upper bound on the kernel's count for this instance.
    pub(super) added: usize,
}

impl Notify {
    pub(super) fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the descriptor is checked and then owned.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            // SAFETY: a fresh descriptor nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
            targets: HashMap::new(),
            dirs: HashSet::new(),
            added: 0,
        })
    }

    /// Whether events wait in the queue (an error counts as yes: the caller then drains).
    pub(super) fn pending(&self) -> bool {
        let mut n: libc::c_int = 0;
        // SAFETY: FIONREAD writes one int into `n`.
        let r = unsafe { libc::ioctl(self.fd.as_raw_fd(), libc::FIONREAD, &mut n) };
        r != 0 || n > 0
    }

    /// Reads every queued event and says what it invalidates.
    pub(super) fn drain(&mut self, out: &mut Vec<Change>) {
        let mut buf = [0u8; 4096];
        loop {
            // SAFETY: reads at most `buf.len()` bytes into `buf`.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n < 0 {
                if io::Error::last_os_error().kind() != io::ErrorKind::WouldBlock {
                    out.push(Change::All); // cannot tell what was missed
                }
                return;
            }
            if n == 0 {
                return;
            }
            self.parse(&buf[..n as usize], out);
        }
    }

    fn parse(&mut self, mut buf: &[u8], out: &mut Vec<Change>) {
        const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
        while buf.len() >= HEAD {
            // SAFETY: the kernel writes whole events; `read_unaligned` copes with alignment.
            let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
            let end = HEAD.saturating_add(ev.len as usize).min(buf.len());
            let name = buf[HEAD..end].split(|b| *b == 0).next().unwrap_or_default();
            buf = &buf[end..];
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                out.push(Change::All);
                continue;
            }
            // The inode itself moved, went, or lost its watch: the watch no longer stands for
            // its old path (a directory is watched afresh when a path through it is opened).
            let gone = libc::IN_IGNORED | libc::IN_MOVE_SELF | libc::IN_DELETE_SELF;
            let targets = if ev.mask & gone != 0 {
                self.targets.remove(&ev.wd).unwrap_or_default()
            } else {
                self.targets.get(&ev.wd).cloned().unwrap_or_default()
            };
            for t in targets {
                out.push(match t {
                    Target::File(key) => Change::Path(key),
                    // A name that is not UTF-8 was never served: it cannot be on a cached path.
                    Target::Dir(dir) if !name.is_empty() => match std::str::from_utf8(name) {
                        Ok(name) => Change::Path(join(&dir, name)),
                        Err(_) => continue,
                    },
                    // The directory itself went away, moved, or lost its watch.
                    Target::Dir(dir) => Change::Path(dir),
                });
            }
        }
    }

    /// Forgets that directories at or below `path` are watched: the names there may now lead
    /// to other directories, which must be watched afresh.
    pub(super) fn forget_dirs(&mut self, path: &str) {
        self.dirs.retain(|d| !is_at_or_below(d, path));
    }

    /// Watches every directory from the root down to the parent of `key`, in that order, so
    /// a directory swapped after its parent is watched shows up as an event in the parent.
    /// `root` is the served root's path. False if a watch could not be added.
    pub(super) fn watch_dirs(&mut self, root: &Path, key: &str) -> bool {
        let mut dir = String::new();
        let mut rest = key;
        loop {
            if !self.dirs.contains(&dir) {
                let full = root.join(&dir);
                let Some(wd) = self.add(&full, DIR_MASK) else {
                    return false;
                };
                self.target(wd, Target::Dir(dir.clone()));
                self.dirs.insert(dir.clone());
            }
            let Some((seg, tail)) = rest.split_once('/') else {
                return true;
            };
            dir = join(&dir, seg);
            rest = tail;
        }
    }

    /// Watches the inode `file` is open on (through `/proc/self/fd`, not by name, so it is
    /// exactly that file), for `key`. False if it could not be watched.
    pub(super) fn watch_file(&mut self, file: &File, key: &str) -> bool {
        let path = format!("/proc/self/fd/{}", file.as_raw_fd());
        match self.add(Path::new(&path), FILE_MASK) {
            Some(wd) => {
                self.target(wd, Target::File(key.to_string()));
                true
            }
            None => false,
        }
    }

    fn target(&mut self, wd: i32, t: Target) {
        let ts = self.targets.entry(wd).or_default();
        if !ts.contains(&t) {
            ts.push(t);
        }
    }

    fn add(&mut self, path: &Path, mask: u32) -> Option<i32> {
        let c = CString::new(path.as_os_str().as_bytes()).ok()?;
        // SAFETY: `c` is NUL-terminated and valid for the call.
        let wd = unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), c.as_ptr(), mask) };
        if wd < 0 {
            return None;
        }
        self.added += 1;
        Some(wd)
    }
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Whether relative path `p` is `path` or lies below it (`""` is the root: everything).
pub(super) fn is_at_or_below(p: &str, path: &str) -> bool {
    path.is_empty()
        || p.strip_prefix(path)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Whether the file system `file` lives on reports every change to inotify: local ones do;
/// on network and FUSE file systems another machine can change a file without an event here.
pub(super) fn reports_all_changes(file: &File) -> bool {
    // SAFETY: `statfs` is plain old data; all-zero is valid for the kernel to overwrite.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a writable `statfs`, valid for the call.
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    // ext2/3/4, XFS, Btrfs, tmpfs, F2FS, bcachefs, and overlayfs (a container's root: changes
    // made through the overlay are reported on its inodes; its lower layers must not change
    // under it anyway).
    const LOCAL: [u64; 7] = [
        0xEF53,
        0x5846_5342,
        0x9123_683E,
        0x0102_1994,
        0xF2F5_2010,
        0xCA45_1A4E,
        0x794C_7630,
    ];
    // The magic is 32 bits; `f_type` is a signed word of the platform's width.
    #[allow(clippy::unnecessary_cast)]
    let t = (st.f_type as u64) & 0xFFFF_FFFF;
    LOCAL.contains(&t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_at_or_below() {
        assert!(is_at_or_below("a/b", ""));
        assert!(is_at_or_below("a/b", "a"));
        assert!(is_at_or_below("a", "a"));
        assert!(!is_at_or_below("ab/c", "a"));
        assert!(!is_at_or_below("a", "a/b"));
    }
}
