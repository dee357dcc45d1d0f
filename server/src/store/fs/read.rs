//! Reading an opened file: positional reads in [`CHUNK`](super::CHUNK)-sized pieces, one read
//! ahead on the blocking pool, small remainders inline. Every chunk holds permits of the shared
//! byte budget until the connection has written it, but no read ever waits for the budget:
//! with the budget spent (by clients that stopped reading, say), a response goes on in
//! [`SHARE`](super::SHARE)-sized reads of its own. Memory stays bounded by the budget plus one
//! share per response, and a client that never reads stalls only itself.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ferry_proto::ByteRange;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::{CHUNK, INLINE_READ, SHARE};
use crate::index;
use crate::store::open_cache::Identity;
use crate::store::{BoxFuture, ByteStream, FileHandle, Memo, Meta};

pub(super) struct FsFile {
    meta: Meta,
    file: Arc<File>,
    budget: Arc<Semaphore>,
    /// Lives as long as the open-file cache keeps this handle for its path.
    memo: Memo,
    digest: Digest,
}

impl FsFile {
    pub(super) fn new(
        meta: Meta,
        file: File,
        budget: Arc<Semaphore>,
        id: Identity,
        index: Option<Arc<index::Shared>>,
    ) -> Self {
        Self {
            meta,
            file: Arc::new(file),
            budget,
            memo: Memo::new(),
            digest: Digest {
                id,
                index,
                found: OnceLock::new(),
                asked: AtomicU64::new(u64::MAX),
            },
        }
    }
}

/// The content index's digest for the identity this handle was opened as. Once found it is
/// kept (the handle stands for that one version); until then the index is asked again only
/// when it has gained a digest since the last time, so a miss costs one atomic load.
struct Digest {
    id: Identity,
    index: Option<Arc<index::Shared>>,
    found: OnceLock<[u8; 32]>,
    /// The index generation of the last miss.
    asked: AtomicU64,
}

impl Digest {
    fn get(&self) -> Option<[u8; 32]> {
        if let Some(d) = self.found.get() {
            return Some(*d);
        }
        let index = self.index.as_ref()?;
        let generation = index.generation();
        if self.asked.load(Ordering::Relaxed) == generation {
            return None;
        }
        let found = index.digest(&self.id);
        self.asked.store(generation, Ordering::Relaxed);
        if let Some(d) = found {
            let _ = self.found.set(d);
        }
        found
    }
}

/// Owner of one chunk's memory and of the budget permits it holds; both are released when the
/// last `Bytes` pointing into it is dropped (after hyper has written it).
struct Chunk {
    buf: Vec<u8>,
    _permit: Option<OwnedSemaphorePermit>,
}

impl AsRef<[u8]> for Chunk {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

struct ReadState {
    file: Arc<File>,
    budget: Arc<Semaphore>,
    pos: u64,
    end: u64,
    ahead: Option<JoinHandle<io::Result<Bytes>>>,
    /// Told of every chunk read on the blocking pool, so that the indexer yields during a
    /// long download as it does for a stream of requests (small bodies: the open told it).
    index: Option<Arc<index::Shared>>,
}

impl ReadState {
    fn new(file: &FsFile, range: ByteRange) -> Self {
        Self {
            file: file.file.clone(),
            budget: file.budget.clone(),
            pos: range.start,
            end: range.end,
            ahead: None,
            index: if range.end.saturating_sub(range.start) > INLINE_READ as u64 {
                file.digest.index.clone()
            } else {
                None
            },
        }
    }

    /// Starts reading the next chunk in the background with the given permits.
    fn spawn_read(&mut self, n: usize, permit: OwnedSemaphorePermit) {
        let (file, at) = (self.file.clone(), self.pos);
        self.pos += n as u64;
        if let Some(index) = &self.index {
            index.note_read();
        }
        // Allocated here, on the worker, not on the blocking thread: a chunk then comes from
        // and returns to the worker's malloc arena, instead of each of dozens of blocking
        // threads keeping its own arena of freed chunks resident (peak RSS with 256
        // downloads varied 48-77 MiB that way).
        let buf = Vec::with_capacity(n);
        self.ahead = Some(tokio::task::spawn_blocking(move || {
            let buf = read_exact_at(&file, buf, n, at)?;
            Ok(Bytes::from_owner(Chunk {
                buf,
                _permit: Some(permit),
            }))
        }));
    }

    /// Budget permits for `n` bytes if the budget has room right now. Never waits: a response
    /// that waited would wait on whoever holds the budget, and a client that stops reading
    /// holds its chunks until the idle timeout.
    fn try_permit(&self, n: usize) -> Option<OwnedSemaphorePermit> {
        let n = u32::try_from(n).ok()?;
        self.budget.clone().try_acquire_many_owned(n).ok()
    }

    fn next_len(&self) -> usize {
        (self.end - self.pos).min(CHUNK as u64) as usize
    }

    /// Reads `n` bytes on the worker itself: a page-cache `pread` of a few KiB costs less than
    /// handing it to the blocking pool and back.
    fn read_inline(&mut self, n: usize, permit: Option<OwnedSemaphorePermit>) -> io::Result<Bytes> {
        let buf = read_exact_at(&self.file, Vec::with_capacity(n), n, self.pos)?;
        self.pos += n as u64;
        Ok(match permit {
            Some(p) => Bytes::from_owner(Chunk {
                buf,
                _permit: Some(p),
            }),
            None => Bytes::from(buf),
        })
    }

    /// The next piece when no read is ahead: a chunk bought from the budget (on the blocking
    /// pool, or inline when small), or, with the budget spent, [`SHARE`] bytes of the
    /// response's own share, read inline.
    fn start(&mut self) -> Option<io::Result<Bytes>> {
        let n = self.next_len();
        if n <= SHARE {
            return Some(self.read_inline(n, None));
        }
        match self.try_permit(n) {
            Some(permit) if n <= INLINE_READ => Some(self.read_inline(n, Some(permit))),
            Some(permit) => {
                self.spawn_read(n, permit);
                None
            }
            None => Some(self.read_inline(SHARE, None)),
        }
    }

    /// Reads ahead only if the budget has room right now.
    fn try_start_next(&mut self) {
        let n = self.next_len();
        if let Some(permit) = self.try_permit(n) {
            self.spawn_read(n, permit);
        }
    }

    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if self.ahead.is_none() {
            if self.pos >= self.end {
                return None;
            }
            if let Some(piece) = self.start() {
                return Some(piece);
            }
        }
        let handle = self.ahead.take()?;
        let chunk = match handle.await {
            Ok(r) => r,
            Err(e) => Err(io::Error::other(e)),
        };
        if chunk.is_ok() && self.pos < self.end {
            self.try_start_next();
        }
        Some(chunk)
    }
}

/// Reads exactly `n` bytes at offset `at` into `buf` (empty, with room for `n`); a file that
/// ends first is an error (`UnexpectedEof`, as `FileExt::read_exact_at`), never a short body.
/// Unlike `read_exact_at` into `vec![0; n]`, the buffer is not zeroed before the kernel
/// overwrites it: for a small ranged GET that memset was a tenth of the server's own work.
fn read_exact_at(file: &File, mut buf: Vec<u8>, n: usize, at: u64) -> io::Result<Vec<u8>> {
    buf.clear();
    buf.reserve_exact(n);
    while buf.len() < n {
        let pos = at
            .checked_add(buf.len() as u64)
            .and_then(|p| libc::off_t::try_from(p).ok())
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let want = n - buf.len();
        let spare = &mut buf.spare_capacity_mut()[..want];
        // SAFETY: `spare` is writable memory of `spare.len()` bytes owned by `buf`; `pread`
        // writes at most that many bytes into it and does not keep the pointer.
        let got = unsafe {
            libc::pread(
                file.as_raw_fd(),
                spare.as_mut_ptr().cast(),
                spare.len(),
                pos,
            )
        };
        match got {
            0 => return Err(io::ErrorKind::UnexpectedEof.into()),
            // SAFETY: the kernel initialized the first `got` bytes of the spare capacity, and
            // `got <= spare.len()`, so the new length stays within the capacity.
            got if got > 0 => unsafe { buf.set_len(buf.len() + got as usize) },
            _ => {
                let e = io::Error::last_os_error();
                if e.kind() != io::ErrorKind::Interrupted {
                    return Err(e);
                }
            }
        }
    }
    Ok(buf)
}

impl FileHandle for FsFile {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn memo(&self) -> Option<&Memo> {
        Some(&self.memo)
    }

    fn sha256(&self) -> Option<[u8; 32]> {
        self.digest.get()
    }

    fn read_now(&self, range: ByteRange) -> Option<io::Result<Bytes>> {
        // One small body per response, read at once outside the budget (as a share), so that
        // clients holding the budget cannot hold up small answers. No read state: cloning its
        // handles would touch reference counts.
        let n = usize::try_from(range.len()).ok().filter(|n| *n <= SHARE)?;
        let read = read_exact_at(&self.file, Vec::with_capacity(n), n, range.start);
        Some(read.map(Bytes::from))
    }

    fn read_bytes(self: Arc<Self>, range: ByteRange) -> BoxFuture<'static, io::Result<Bytes>> {
        if let Some(read) = self.read_now(range) {
            return Box::pin(std::future::ready(read));
        }
        let mut state = ReadState::new(&self, range);
        if range.len() <= INLINE_READ as u64 {
            let n = range.len() as usize;
            let permit = state.try_permit(n);
            return Box::pin(std::future::ready(state.read_inline(n, permit)));
        }
        Box::pin(crate::store::collect(self.read(range), range.len()))
    }

    fn read(self: Arc<Self>, range: ByteRange) -> ByteStream {
        let state = ReadState::new(&self, range);
        Box::pin(futures_util::stream::unfold(state, |mut s| async move {
            let item = s.next_chunk().await?;
            let failed = item.is_err();
            if failed {
                s.pos = s.end; // stop after reporting the error
                s.ahead = None;
            }
            Some((item, s))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_exact_at_reads_the_range_and_refuses_to_come_up_short() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let f = File::open(&p).unwrap();
        let read = |n, at| read_exact_at(&f, Vec::new(), n, at);
        assert_eq!(read(4096, 1234).unwrap(), &data[1234..5330]);
        assert_eq!(read(0, 10_000).unwrap(), b"");
        assert_eq!(read(10, 9_990).unwrap(), &data[9_990..]);
        let reused = read_exact_at(&f, vec![7; 3], 2, 0).unwrap();
        assert_eq!(reused, &data[..2]);
        // A file shorter than the range (truncated since it was opened) is an error.
        let short = read(11, 9_990).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        let past = read(1, u64::MAX).unwrap_err();
        assert_eq!(past.kind(), io::ErrorKind::InvalidInput);
    }
}
