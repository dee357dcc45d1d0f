//! Hashing one file for the index: SHA-256 of its bytes, read sequentially in 1 MiB pieces at
//! no more than the configured rate, and trusted only if the file was the same before and
//! after (same identity by `fstat` of the open file and by `lstat` of the path).

use std::fs::File;
use std::io::{self, Read as _};
use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::table::Sha256 as Digest256;
use crate::store::fs::beneath::open_beneath;
use crate::store::open_cache::Identity;

const PIECE: usize = 1 << 20;

/// While the server is reading files, the indexer sleeps this many times as long as its last
/// piece took: at most a tenth of its idle speed, so hashing a large tree never competes with
/// serving, and still finishes on a server that is never idle.
const YIELD_FACTOR: u32 = 9;
const YIELD_MIN: Duration = Duration::from_millis(5);
const YIELD_MAX: Duration = Duration::from_millis(200);

/// Whether the server served files while the indexer hashed its last piece. The indexer
/// moves `epoch` after every piece; a request marks the current epoch as seen. A request
/// costs two loads of lines that change at most once per piece (about a millisecond) and,
/// once per piece, a store: nothing like a counter every request would write.
#[derive(Debug)]
pub struct Activity {
    epoch: AtomicU64,
    seen: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            epoch: AtomicU64::new(0),
            seen: AtomicU64::new(u64::MAX),
        }
    }
}

impl Activity {
    /// A file is being served (called on every open of the store).
    #[inline]
    pub fn note(&self) {
        let epoch = self.epoch.load(Ordering::Relaxed);
        if self.seen.load(Ordering::Relaxed) != epoch {
            self.seen.store(epoch, Ordering::Relaxed);
        }
    }

    /// Whether a file was served since the last call; starts a new epoch.
    fn served_since_last(&self) -> bool {
        let epoch = self.epoch.load(Ordering::Relaxed);
        let served = self.seen.load(Ordering::Relaxed) == epoch;
        self.epoch.store(epoch.wrapping_add(1), Ordering::Relaxed);
        served
    }
}

/// Keeps hashing at or under `rate` bytes per second (none: as fast as the disk goes), and
/// yields to serving (see [`Activity`]).
pub struct Pacer {
    rate: Option<u64>,
    since: Instant,
    bytes: u64,
    activity: Option<Arc<Activity>>,
    /// When the current piece started (the end of the previous [`Pacer::take`]).
    piece_start: Instant,
    /// Time spent yielding to serving, for the log and tests.
    yielded: Duration,
}

impl Pacer {
    pub fn new(rate: Option<u64>) -> Self {
        Self {
            rate: rate.filter(|r| *r > 0),
            since: Instant::now(),
            bytes: 0,
            activity: None,
            piece_start: Instant::now(),
            yielded: Duration::ZERO,
        }
    }

    /// Yields to serving whenever `activity` reports requests.
    pub fn yielding_to(mut self, activity: Arc<Activity>) -> Self {
        self.activity = Some(activity);
        self
    }

    /// Time spent yielding to serving so far.
    pub fn yielded(&self) -> Duration {
        self.yielded
    }

    /// Accounts for `n` bytes read and sleeps as long as serving and the rate ask.
    fn take(&mut self, n: usize) {
        if let Some(activity) = &self.activity {
            if activity.served_since_last() {
                let pause = (self.piece_start.elapsed() * YIELD_FACTOR).clamp(YIELD_MIN, YIELD_MAX);
                std::thread::sleep(pause);
                self.yielded += pause;
            }
        }
        self.pace(n);
        self.piece_start = Instant::now();
    }

    fn pace(&mut self, n: usize) {
        let Some(rate) = self.rate else { return };
        let now = Instant::now();
        let due = self.since + Duration::from_secs_f64(self.bytes as f64 / rate as f64);
        if now > due + Duration::from_secs(1) {
            // Idle for a while: no burst to make up for it.
            self.since = now;
            self.bytes = 0;
        } else if due > now {
            std::thread::sleep(due - now);
        }
        self.bytes += n as u64;
    }
}

/// The outcome of hashing one path.
pub enum Hashed {
    /// The digest of the file with this identity.
    Done(Identity, Digest256),
    /// The file changed while it was read, or the indexer is stopping: try again later.
    Changed,
}

/// Hashes the regular file `rel` under the root (opened without leaving it).
pub fn hash_file(
    root: &Root,
    rel: &str,
    buf: &mut Vec<u8>,
    pacer: &mut Pacer,
    stop: &AtomicBool,
    mut progress: impl FnMut(u64),
) -> io::Result<Hashed> {
    // Non-blocking: a FIFO swapped in for the file must not hang the indexer.
    let mut f = root.open(rel, libc::O_RDONLY | libc::O_NONBLOCK)?;
    let md = f.metadata()?;
    if !md.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let before = Identity::of(&md);
    // SAFETY: advisory call on a descriptor we own.
    unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    buf.resize(PIECE, 0);
    let mut hasher = Sha256::new();
    loop {
        if stop.load(Ordering::Relaxed) {
            return Ok(Hashed::Changed);
        }
        let n = match f.read(buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        progress(n as u64);
        pacer.take(n);
    }
    let same = Identity::of(&f.metadata()?) == before
        && Identity::of(&std::fs::symlink_metadata(root.path.join(rel))?) == before;
    Ok(if same {
        Hashed::Done(before, hasher.finalize().into())
    } else {
        Hashed::Changed
    })
}

/// The served root: its path and a descriptor that opens are confined to.
pub struct Root {
    pub path: std::path::PathBuf,
    dir: File,
}

impl Root {
    pub fn new(path: &Path) -> io::Result<Self> {
        Ok(Self {
            path: path.to_path_buf(),
            dir: File::open(path)?,
        })
    }

    /// Opens `rel` with `flags` without leaving the root (`openat2` with `RESOLVE_BENEATH`;
    /// a plain open where the kernel has no `openat2`).
    pub fn open(&self, rel: &str, flags: i32) -> io::Result<File> {
        use std::os::unix::fs::OpenOptionsExt as _;
        match open_beneath(&self.dir, rel, flags) {
            Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(flags)
                .open(self.path.join(rel)),
            r => r,
        }
    }

    /// The identity of the regular file `rel` now (confined open, `fstat`), if it is one.
    pub fn identity(&self, rel: &str) -> Option<Identity> {
        let md = self.open(rel, libc::O_PATH).ok()?.metadata().ok()?;
        md.is_file().then(|| Identity::of(&md))
    }
}

/// Lowers the calling thread's CPU and I/O priority (nice 19, idle I/O class), so hashing
/// yields to serving. Best effort: a refusal is ignored.
pub fn lower_priority() {
    // SAFETY: plain syscalls on the calling thread, no pointers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 19);
        // IOPRIO_WHO_PROCESS (1), this thread (0), IOPRIO_CLASS_IDLE (3) << IOPRIO_CLASS_SHIFT.
        libc::syscall(libc::SYS_ioprio_set, 1, 0, 3 << 13);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digest_matches_sha256_and_rate_is_kept() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        let data = vec![7u8; 3 * PIECE + 5];
        std::fs::write(&p, &data).unwrap();
        let root = Root::new(d.path()).unwrap();
        let (mut buf, stop) = (Vec::new(), AtomicBool::new(false));
        let mut pacer = Pacer::new(Some(8 << 20)); // 8 MiB/s: 3 MiB after the first take ≈ 0.37 s
        let t = Instant::now();
        let mut seen = 0;
        let Hashed::Done(id, sha) =
            hash_file(&root, "f", &mut buf, &mut pacer, &stop, |n| seen += n).unwrap()
        else {
            panic!("file did not change");
        };
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(seen, data.len() as u64);
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&data)));
        assert_eq!(id, Identity::of(&std::fs::metadata(&p).unwrap()));
        stop.store(true, Ordering::Relaxed);
        let again = hash_file(&root, "f", &mut buf, &mut Pacer::new(None), &stop, |_| {});
        assert!(matches!(again, Ok(Hashed::Changed)), "stopping gives up");
        // Confined to the root: a symlink leading out is not followed.
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), d.path().join("out")).unwrap();
        stop.store(false, Ordering::Relaxed);
        assert!(hash_file(&root, "out", &mut buf, &mut Pacer::new(None), &stop, |_| {}).is_err());
        assert_eq!(root.identity("out"), None);
        assert_eq!(root.identity("f"), Some(id));
    }
    #[test]
    fn hashing_yields_while_files_are_served_and_still_finishes() {
        let d = tempfile::tempdir().unwrap();
        let data = vec![3u8; 8 * PIECE];
        std::fs::write(d.path().join("f"), &data).unwrap();
        let root = Root::new(d.path()).unwrap();
        let (mut buf, stop) = (Vec::new(), AtomicBool::new(false));

        // Nobody served anything: no pause.
        let activity = Arc::new(Activity::default());
        let mut idle = Pacer::new(None).yielding_to(activity.clone());
        assert!(hash_file(&root, "f", &mut buf, &mut idle, &stop, |_| {}).is_ok());
        assert_eq!(idle.yielded(), Duration::ZERO);

        // A request during every piece: a pause after each, and the digest is still right.
        let serving = AtomicBool::new(true);
        let mut busy = Pacer::new(None).yielding_to(activity.clone());
        let outcome = std::thread::scope(|s| {
            s.spawn(|| {
                while serving.load(Ordering::Relaxed) {
                    activity.note();
                    std::thread::sleep(Duration::from_micros(200));
                }
            });
            let r = hash_file(&root, "f", &mut buf, &mut busy, &stop, |_| {});
            serving.store(false, Ordering::Relaxed);
            r
        });
        let Ok(Hashed::Done(_, sha)) = outcome else {
            panic!("hashing did not finish");
        };
        assert_eq!(sha, <[u8; 32]>::from(Sha256::digest(&data)));
        // Most of the 8 pieces saw a request (the first may start the epoch).
        assert!(busy.yielded() >= YIELD_MIN * 6, "{:?}", busy.yielded());
    }
}
