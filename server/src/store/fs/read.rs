//! Reading an opened file: positional reads in [`CHUNK`](super::CHUNK)-sized pieces, one read
//! ahead on the blocking pool, small remainders inline; every chunk holds permits of the shared
//! byte budget until the connection has written it.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::sync::Arc;

use bytes::Bytes;
use ferry_proto::ByteRange;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

use super::{CHUNK, INLINE_READ};
use crate::store::{BoxFuture, ByteStream, FileHandle, Memo, Meta};

pub(super) struct FsFile {
    meta: Meta,
    file: Arc<File>,
    budget: Arc<Semaphore>,
    /// Lives as long as the open-file cache keeps this handle for its path.
    memo: Memo,
}

impl FsFile {
    pub(super) fn new(meta: Meta, file: File, budget: Arc<Semaphore>) -> Self {
        Self {
            meta,
            file: Arc::new(file),
            budget,
            memo: Memo::new(),
        }
    }
}

/// Owner of one chunk's memory and of the budget permits it holds; both are released when the
/// last `Bytes` pointing into it is dropped (after hyper has written it).
struct Chunk {
    buf: Vec<u8>,
    _permit: OwnedSemaphorePermit,
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
}

impl ReadState {
    fn new(file: &FsFile, range: ByteRange) -> Self {
        Self {
            file: file.file.clone(),
            budget: file.budget.clone(),
            pos: range.start,
            end: range.end,
            ahead: None,
        }
    }

    /// Starts reading the next chunk in the background with the given permits.
    fn spawn_read(&mut self, n: usize, permit: OwnedSemaphorePermit) {
        let (file, at) = (self.file.clone(), self.pos);
        self.pos += n as u64;
        // Allocated here, on the worker, not on the blocking thread: a chunk then comes from
        // and returns to the worker's malloc arena, instead of each of dozens of blocking
        // threads keeping its own arena of freed chunks resident (peak RSS with 256
        // downloads varied 48-77 MiB that way).
        let buf = Vec::with_capacity(n);
        self.ahead = Some(tokio::task::spawn_blocking(move || {
            let buf = read_exact_at(&file, buf, n, at)?;
            Ok(Bytes::from_owner(Chunk {
                buf,
                _permit: permit,
            }))
        }));
    }

    /// Budget permits for `n` bytes, waiting until they are free.
    async fn acquire(&self, n: usize) -> io::Result<OwnedSemaphorePermit> {
        self.budget
            .clone()
            .acquire_many_owned(n as u32)
            .await
            .map_err(io::Error::other)
    }

    fn next_len(&self) -> usize {
        (self.end - self.pos).min(CHUNK as u64) as usize
    }

    /// Waits for budget, then starts the next read. Only called while this response holds no
    /// chunk of its own that the connection has not taken yet: waiting while holding one is
    /// how responses deadlocked on a shared budget.
    async fn start_next(&mut self) -> io::Result<()> {
        let n = self.next_len();
        let permit = self.acquire(n).await?;
        self.spawn_read(n, permit);
        Ok(())
    }

    /// Reads the small remainder on the worker itself: a page-cache `pread` of a few KiB costs
    /// less than handing it to the blocking pool and back.
    async fn read_inline(&mut self) -> io::Result<Bytes> {
        let n = self.next_len();
        let permit = self.acquire(n).await?;
        let buf = read_exact_at(&self.file, Vec::with_capacity(n), n, self.pos)?;
        self.pos += n as u64;
        Ok(Bytes::from_owner(Chunk {
            buf,
            _permit: permit,
        }))
    }

    /// Reads ahead only if the budget has room right now.
    fn try_start_next(&mut self) {
        let n = self.next_len();
        if let Ok(permit) = self.budget.clone().try_acquire_many_owned(n as u32) {
            self.spawn_read(n, permit);
        }
    }

    async fn next_chunk(&mut self) -> Option<io::Result<Bytes>> {
        if self.ahead.is_none() {
            if self.pos >= self.end {
                return None;
            }
            if self.end - self.pos <= INLINE_READ as u64 {
                return Some(self.read_inline().await);
            }
            if let Err(e) = self.start_next().await {
                return Some(Err(e));
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

    fn read_bytes(self: Arc<Self>, range: ByteRange) -> BoxFuture<'static, io::Result<Bytes>> {
        let mut state = ReadState::new(&self, range);
        if range.len() <= INLINE_READ as u64 {
            return Box::pin(async move { state.read_inline().await });
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
