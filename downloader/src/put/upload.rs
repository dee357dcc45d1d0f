//! Sends one upload (a whole file, or one part of it for `-x N`) chunk by chunk, one PATCH per
//! chunk so the server checkpoints progress after each (tus core, PATCH).
//!
//! Recovery, as tus expects of a client: a failed request is followed at once by HEAD to learn
//! what the server kept, then the upload continues from there, immediately when the offset
//! moved since the last failure, after a backoff otherwise ([`Attempts`]). 409 (offset
//! mismatch) resyncs the same way, without the HEAD when the 409 carries the server's
//! `Upload-Offset` (ferryd's does; tusd's does not); 460 (checksum mismatch, tus checksum
//! extension) resends the chunk. A cut PATCH or a 413 shrinks the chunks, and each PATCH's
//! time paces the next ones ([`ChunkSizer`]). 404/410 mean the upload is gone and are
//! returned to the caller, which starts over.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::attempts::Attempts;
use super::chunking::ChunkSizer;
use super::client::{Meter, Tus};
use super::digest::upload_checksum;
use super::plan::{next_chunk, Algo};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::retry::Backoff;

/// Settings shared by every part of a run.
#[derive(Clone)]
pub struct Sender {
    pub tus: Tus,
    pub file: Arc<File>,
    pub path: PathBuf,
    /// The first PATCH size; each part adapts it ([`ChunkSizer`]) up to `chunk_max`.
    pub chunk: u64,
    /// The largest PATCH: `--chunk-size` when given (then equal to `chunk`), else the paced
    /// ceiling ([`super::chunking::paced_ceiling`]).
    pub chunk_max: u64,
    pub checksum: Option<Algo>,
    pub backoff: Backoff,
    /// Failed attempts in a row without the server's offset moving before giving up.
    pub max_tries: u32,
    pub progress: Arc<Progress>,
    /// (size, mtime seconds, mtime nanoseconds) the upload was planned for; a chunk read
    /// after the file changed is never sent.
    pub stamp: (u64, i64, i64),
}

/// One upload: `url` holds bytes `range` of the file; the server already has `offset` of them.
#[derive(Debug, Clone)]
pub struct Part {
    pub id: usize,
    pub url: String,
    pub range: Range<u64>,
    pub offset: u64,
}

/// Whether an error means the upload no longer exists on the server (tus core: 404 or 410
/// for unknown or terminated uploads; 403 is not included, it is an auth answer).
pub fn is_gone(e: &Error) -> bool {
    matches!(
        e,
        Error::Status {
            status: 404 | 410,
            ..
        }
    )
}

/// A chunk read and checksummed, ready to PATCH.
struct Prepared {
    data: Bytes,
    checksum: Option<String>,
}

/// The next chunk being read and checksummed on a blocking thread while the current PATCH
/// is on the wire, so the disk read and the hashing overlap the network and the server.
struct Ahead {
    range: Range<u64>,
    /// The sizer's [`ChunkSizer::shrinks`] when it was prepared.
    shrinks: u32,
    task: tokio::task::JoinHandle<Result<Prepared>>,
}

/// One part's sending loop: where it is, how big its chunks are, how it fails.
struct Run {
    part: Part,
    len: u64,
    sizer: ChunkSizer,
    attempts: Attempts,
    /// A failed PATCH whose wait is decided once the server's offset is known (progress
    /// since the last failure means no wait).
    pending: Option<Error>,
    /// Ask the server's offset (HEAD) before the next PATCH.
    resync: bool,
    ahead: Option<Ahead>,
    published: Option<String>,
}

impl Sender {
    /// Uploads the rest of `part`; returns the published location if the server sent one.
    pub async fn send(&self, part: Part) -> Result<Option<String>> {
        let mut run = Run {
            len: part.range.end - part.range.start,
            sizer: ChunkSizer::new(self.chunk, self.chunk_max),
            attempts: Attempts::new(self.backoff, self.max_tries, part.offset),
            part,
            pending: None,
            resync: false,
            ahead: None,
            published: None,
        };
        self.progress.connection_opened();
        let result = self.drive(&mut run).await;
        if let Some(a) = run.ahead.take() {
            a.task.abort();
        }
        self.progress.connection_closed();
        result
    }

    async fn drive(&self, run: &mut Run) -> Result<Option<String>> {
        loop {
            if run.resync {
                match self.resync(&mut run.part, run.len).await {
                    Ok(()) => run.resync = false,
                    Err(e) => {
                        self.fail(e, run).await?;
                        continue;
                    }
                }
            }
            if let Some(e) = run.pending.take() {
                self.fail(e, run).await?;
            }
            let Some(chunk) = upcoming(run) else {
                return Ok(run.published.take());
            };
            let prepared = self.take(&mut run.ahead, &run.part, &chunk).await?;
            run.ahead = next_chunk(chunk.end, run.len, run.sizer.size())
                .map(|n| self.prepare(&run.part, n, run.sizer.shrinks()));
            let started = Instant::now();
            let result = self.patch(&run.part, chunk.clone(), prepared).await;
            self.settle(run, chunk, result, started.elapsed())?;
        }
    }

    /// Books the outcome of the PATCH of `chunk`, answered after `took`: the new offset (and
    /// the pace it sets), or what the failure teaches about the path (a cut or a 413 shrinks
    /// the chunks) and what to do next.
    fn settle(
        &self,
        run: &mut Run,
        chunk: Range<u64>,
        result: std::result::Result<(u64, Option<String>), (Error, u64)>,
        took: Duration,
    ) -> Result<()> {
        let size = chunk.end - chunk.start;
        let (e, sent) = match result {
            Ok((offset, p)) if offset > chunk.start && offset <= chunk.end => {
                self.reposition_after(chunk.end, offset);
                run.part.offset = offset;
                run.published = p.or(run.published.take());
                if offset == chunk.end {
                    // Only the part's last chunk is cut short by its end.
                    run.sizer.taken(size, chunk.end < run.len, took);
                }
                return Ok(());
            }
            Ok((offset, _)) => {
                let (first, last) = (chunk.start + 1, chunk.end);
                let msg =
                    format!("expected Upload-Offset in {first}..={last} after PATCH, got {offset}");
                let url = run.part.url.clone();
                return Err(Error::Protocol { url, msg });
            }
            Err(failed) => failed,
        };
        self.unsend(sent);
        match &e {
            // A proxy in front of the server refuses bodies this big: smaller ones at once.
            Error::Status { status: 413, .. } => {
                if !run.sizer.too_large(size) {
                    return Err(e);
                }
                let next = run.sizer.size();
                self.progress
                    .verbose(&format!("{e}; PATCHes of at most {next} bytes from now on"));
                return Ok(());
            }
            Error::Network { .. } | Error::Stalled { .. } if sent > 0 && run.sizer.cut(sent) => {
                let next = run.sizer.size();
                self.progress.verbose(&format!(
                    "PATCH cut after {sent} bytes; chunks of {next} bytes"
                ));
            }
            _ => {}
        }
        // 460: the chunk was discarded, send it again; a 409 that says the server's offset:
        // go on from there without asking; anything else (a bare 409 too): ask first.
        run.resync = !matches!(
            e,
            Error::Status { status: 460, .. } | Error::Conflict { .. }
        );
        if let Error::Conflict { offset, .. } = &e {
            if let Err(bad) = self.adopt(&mut run.part, run.len, *offset, "409") {
                run.pending = Some(bad);
                return Ok(());
            }
        }
        run.pending = Some(e);
        Ok(())
    }

    /// HEAD: learn what the server kept (tus core: the client resumes from `Upload-Offset`).
    async fn resync(&self, part: &mut Part, len: u64) -> Result<()> {
        let h = self.tus.head(&part.url).await?;
        self.adopt(part, len, h.offset, "HEAD")
    }

    /// Goes on from `offset`, what the server says it holds (on a HEAD or a 409).
    fn adopt(&self, part: &mut Part, len: u64, offset: u64, on: &str) -> Result<()> {
        if offset > len {
            let msg = format!("expected Upload-Offset <= {len} on {on}, got {offset}");
            // Not retryable: the server holds more than this part has.
            return Err(Error::Io {
                path: self.path.clone(),
                source: std::io::Error::other(format!("{}: {msg}", part.url)),
            });
        }
        self.reposition(part, offset);
        part.offset = offset;
        Ok(())
    }

    /// The prepared `chunk`: the read-ahead if it is that chunk, else read now.
    async fn take(
        &self,
        ahead: &mut Option<Ahead>,
        part: &Part,
        chunk: &Range<u64>,
    ) -> Result<Prepared> {
        let task = match ahead.take() {
            Some(a) if a.range == *chunk => a.task,
            stale => {
                if let Some(a) = stale {
                    a.task.abort();
                }
                self.prepare(part, chunk.clone(), 0).task
            }
        };
        task.await
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?
    }

    /// Starts reading and checksumming `chunk` (offsets within `part`) on a blocking thread;
    /// `shrinks`: the sizer's count of cuts and 413s by then.
    fn prepare(&self, part: &Part, chunk: Range<u64>, shrinks: u32) -> Ahead {
        let (at, len) = (part.range.start + chunk.start, chunk.end - chunk.start);
        let (file, path, stamp, algo) = (
            Arc::clone(&self.file),
            self.path.clone(),
            self.stamp,
            self.checksum,
        );
        let task = tokio::task::spawn_blocking(move || {
            let data = read_unchanged(&file, &path, stamp, at, len)?;
            let checksum = algo.map(|a| upload_checksum(a, &data));
            Ok(Prepared { data, checksum })
        });
        Ahead {
            range: chunk,
            shrinks,
            task,
        }
    }

    /// PATCHes one prepared chunk; on failure also returns how many bytes were counted.
    async fn patch(
        &self,
        part: &Part,
        chunk: Range<u64>,
        prepared: Prepared,
    ) -> std::result::Result<(u64, Option<String>), (Error, u64)> {
        let sent = Arc::new(AtomicU64::new(0));
        let meter = Meter {
            progress: Arc::clone(&self.progress),
            id: part.id,
            sent: Arc::clone(&sent),
        };
        let res = self
            .tus
            .patch(
                &part.url,
                chunk.start,
                prepared.data,
                prepared.checksum,
                meter,
            )
            .await;
        res.map_err(|e| (e, sent.load(Ordering::Relaxed)))
    }

    /// Counts a failure; returns the error when it is final, otherwise waits before the retry
    /// (not at all when the server's offset moved since the last failure).
    async fn fail(&self, e: Error, run: &mut Run) -> Result<()> {
        let Some(wait) = run.attempts.failed(&e, run.part.offset) else {
            return Err(e);
        };
        let failures = run.attempts.failures();
        self.progress.verbose(&format!(
            "{e}; retrying in {wait:?} ({failures}/{} since the last progress)",
            self.max_tries
        ));
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        Ok(())
    }

    /// The progress bar counted `sent` bytes of a PATCH that failed; take them back.
    fn unsend(&self, sent: u64) {
        self.progress
            .set_done(self.progress.done().saturating_sub(sent));
    }

    /// The server accepted only up to `offset` of a chunk that ended at `end`.
    fn reposition_after(&self, end: u64, offset: u64) {
        self.unsend(end - offset);
    }

    /// HEAD said the server holds `offset` while we believed `part.offset`.
    fn reposition(&self, part: &Part, offset: u64) {
        let done = self.progress.done();
        self.progress
            .set_done((done + offset).saturating_sub(part.offset));
    }
}

/// The chunk to PATCH next: the one read ahead when it starts at the offset (prepared at the
/// size of its time: the pace moved on meanwhile, and a larger size applies from the chunk
/// after it), unless a cut or a 413 since made it too large; else the sizer's.
fn upcoming(run: &Run) -> Option<Range<u64>> {
    if let Some(a) = &run.ahead {
        let len = a.range.end - a.range.start;
        let fits = len <= run.sizer.size() || a.shrinks == run.sizer.shrinks();
        if a.range.start == run.part.offset && fits {
            return Some(a.range.clone());
        }
    }
    next_chunk(run.part.offset, run.len, run.sizer.size())
}

/// Reads `len` bytes at `at`, then checks (fstat) that the file still has the size and mtime
/// it was planned with, so bytes of a changed file never reach the server.
fn read_unchanged(
    file: &File,
    path: &Path,
    stamp: (u64, i64, i64),
    at: u64,
    len: u64,
) -> Result<Bytes> {
    let mut buf = vec![0u8; len as usize];
    file.read_exact_at(&mut buf, at)
        .map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if (meta.len(), meta.mtime(), meta.mtime_nsec()) != stamp {
        let msg = "changed during the upload; run the command again to upload the new version";
        return Err(Error::io(path, std::io::Error::other(msg)));
    }
    Ok(Bytes::from(buf))
}
