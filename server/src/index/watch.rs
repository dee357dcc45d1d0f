//! Change notifications for the indexer: Linux inotify through libc (about a hundred lines
//! instead of the `notify` crate and its dependencies), one watch per served directory, plus
//! an eventfd so the server can wake the indexer (shutdown). Whatever inotify misses (a full
//! watch table, a queue overflow, a filesystem without events) the periodic rescan finds.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

/// Events that may change what a path holds. Not `IN_MODIFY`: it fires on every write of a
/// file being copied in; its `IN_CLOSE_WRITE` comes at the end.
const MASK: u32 = libc::IN_CREATE
    | libc::IN_CLOSE_WRITE
    | libc::IN_MOVED_TO
    | libc::IN_MOVED_FROM
    | libc::IN_DELETE
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_ONLYDIR;

/// What a batch of events asks the indexer to look at again.
#[derive(Debug, Default)]
pub struct Changes {
    /// Relative paths of entries that were created, written, moved or deleted.
    pub paths: Vec<String>,
    /// Events were lost: rescan everything.
    pub overflow: bool,
}

pub struct Watcher {
    /// `None` when inotify is unavailable (no instance left, no kernel support): then only
    /// the periodic rescan finds changes.
    fd: Option<OwnedFd>,
    wake: OwnedFd,
    dirs: HashMap<i32, String>,
    warned_full: bool,
}

impl Watcher {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain syscall; the returned descriptor is checked and owned below.
        let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        let fd = if fd < 0 {
            tracing::warn!(error = %io::Error::last_os_error(),
                "index: no inotify (fs.inotify.max_user_instances?); changes are found by the periodic rescan");
            None
        } else {
            // SAFETY: a fresh descriptor nothing else owns.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        let wake = new_eventfd()?;
        Ok(Self {
            fd,
            wake,
            dirs: HashMap::new(),
            warned_full: false,
        })
    }

    /// A handle that wakes [`Watcher::wait`] from another thread.
    pub fn waker(&self) -> io::Result<Waker> {
        Ok(Waker(self.wake.try_clone()?))
    }

    /// Watches the directory `full`, known to the index as `rel`.
    pub fn add(&mut self, rel: &str, full: &Path) {
        let (Some(fd), Ok(c)) = (&self.fd, CString::new(full.as_os_str().as_bytes())) else {
            return;
        };
        // SAFETY: `c` is NUL-terminated and valid for the call.
        let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), c.as_ptr(), MASK) };
        if wd >= 0 {
            self.dirs.insert(wd, rel.to_string());
        } else if !self.warned_full {
            self.warned_full = true;
            tracing::warn!(dir = %full.display(), error = %io::Error::last_os_error(),
                "index: cannot watch a directory (fs.inotify.max_user_watches?); changes there are found by the periodic rescan");
        }
    }

    /// Waits up to `timeout` for events or a wake-up; returns what changed.
    pub fn wait(&mut self, timeout: Duration) -> Changes {
        let mut fds = [
            libc::pollfd {
                // A negative descriptor is ignored by poll(2).
                fd: self.fd.as_ref().map_or(-1, |f| f.as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let ms = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid array of two pollfd for the call.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, ms) };
        if fds[1].revents != 0 {
            let mut b = [0u8; 8];
            // SAFETY: reads at most 8 bytes into `b`.
            unsafe { libc::read(self.wake.as_raw_fd(), b.as_mut_ptr().cast(), 8) };
        }
        self.drain()
    }

    fn drain(&mut self) -> Changes {
        let mut out = Changes::default();
        let Some(fd) = self.fd.as_ref().map(|f| f.as_raw_fd()) else {
            return out;
        };
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            // SAFETY: reads at most `buf.len()` bytes into `buf`.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            self.parse(&buf[..n as usize], &mut out);
        }
    }

    fn parse(&mut self, mut buf: &[u8], out: &mut Changes) {
        const HEAD: usize = std::mem::size_of::<libc::inotify_event>();
        while buf.len() >= HEAD {
            // SAFETY: the kernel wrote whole events; `read_unaligned` copes with alignment.
            let ev: libc::inotify_event = unsafe { std::ptr::read_unaligned(buf.as_ptr().cast()) };
            let end = HEAD.saturating_add(ev.len as usize).min(buf.len());
            let name = &buf[HEAD..end];
            let name = name.split(|b| *b == 0).next().unwrap_or_default();
            buf = &buf[end..];
            if ev.mask & libc::IN_Q_OVERFLOW != 0 {
                out.overflow = true;
                continue;
            }
            if ev.mask & (libc::IN_IGNORED | libc::IN_DELETE_SELF) != 0 {
                self.dirs.remove(&ev.wd);
                continue;
            }
            let (Some(dir), Ok(name)) = (self.dirs.get(&ev.wd), std::str::from_utf8(name)) else {
                continue;
            };
            if name.is_empty() {
                continue;
            }
            out.paths.push(if dir.is_empty() {
                name.to_string()
            } else {
                format!("{dir}/{name}")
            });
        }
    }
}

/// Wakes the indexer's wait (see [`Watcher::waker`]).
pub struct Waker(OwnedFd);

impl Waker {
    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from `one` to an eventfd we own.
        unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

fn new_eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall; the descriptor is checked and then owned.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_created_written_and_removed_names_relative_to_the_root() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("sub")).unwrap();
        let mut w = Watcher::new().unwrap();
        w.add("", d.path());
        w.add("sub", &d.path().join("sub"));
        std::fs::write(d.path().join("sub/f"), b"x").unwrap();
        std::fs::remove_file(d.path().join("sub/f")).unwrap();
        std::fs::write(d.path().join("g"), b"y").unwrap();
        let c = w.wait(Duration::from_secs(2));
        assert!(c.paths.iter().any(|p| p == "sub/f"), "{c:?}");
        assert!(c.paths.iter().any(|p| p == "g"), "{c:?}");
        // The waker ends a wait at once, with nothing changed.
        w.waker().unwrap().wake();
        let t = std::time::Instant::now();
        let c = w.wait(Duration::from_secs(10));
        assert!(c.paths.is_empty() && t.elapsed() < Duration::from_secs(5));
    }
}
