//! Sends one upload (a whole file, or one part of it for `-x N`) chunk by chunk, one PATCH per
//! chunk so the server checkpoints progress after each (tus core, PATCH).
//!
//! Recovery, as tus expects of a client: a failed request is followed by HEAD to learn what
//! the server kept, then the upload continues from there. 409 (offset mismatch) resyncs the
//! same way; 460 (checksum mismatch, tus checksum extension) resends the chunk. 404/410 mean
//! the upload is gone and are returned to the caller, which starts over.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::{FileExt as _, MetadataExt as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::client::{Meter, Tus};
use super::digest::upload_checksum;
use super::plan::{next_chunk, Algo};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::retry::{Backoff, MAX_RETRY_AFTER};

/// Settings shared by every part of a run.
#[derive(Clone)]
pub struct Sender {
    pub tus: Tus,
    pub file: Arc<File>,
    pub path: PathBuf,
    pub chunk: u64,
    pub checksum: Option<Algo>,
    pub backoff: Backoff,
    /// Failed attempts in a row before giving up (reset whenever the server takes bytes).
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

/// What a PATCH failure asks for next.
enum Next {
    Resend,
    Resync,
}

impl Sender {
    /// Uploads the rest of `part`; returns the published location if the server sent one.
    pub async fn send(&self, mut part: Part) -> Result<Option<String>> {
        let len = part.range.end - part.range.start;
        let mut failures = 0u32;
        let mut published = None;
        let mut resync = false;
        let mut rng = fastrand::Rng::new();
        self.progress.connection_opened();
        let result = loop {
            if resync {
                match self.tus.head(&part.url).await {
                    Ok(h) if h.offset > len => {
                        let msg =
                            format!("expected Upload-Offset <= {len} on HEAD, got {}", h.offset);
                        break Err(Error::Protocol {
                            url: part.url.clone(),
                            msg,
                        });
                    }
                    Ok(h) => {
                        self.reposition(&part, h.offset);
                        part.offset = h.offset;
                        resync = false;
                    }
                    Err(e) => match self.fail(e, &mut failures, &mut rng).await {
                        Ok(()) => continue,
                        Err(e) => break Err(e),
                    },
                }
            }
            let Some(chunk) = next_chunk(part.offset, len, self.chunk) else {
                break Ok(published);
            };
            match self.patch(&part, chunk.clone()).await {
                Ok((offset, p)) if offset > chunk.start && offset <= chunk.end => {
                    self.reposition_after(chunk.end, offset);
                    part.offset = offset;
                    published = p.or(published);
                    failures = 0;
                }
                Ok((offset, _)) => {
                    let msg = format!(
                        "expected Upload-Offset in {}..={} after PATCH, got {offset}",
                        chunk.start + 1,
                        chunk.end
                    );
                    break Err(Error::Protocol {
                        url: part.url.clone(),
                        msg,
                    });
                }
                Err((e, sent)) => {
                    self.unsend(sent);
                    let next = match &e {
                        Error::Status { status: 460, .. } => Next::Resend,
                        _ => Next::Resync,
                    };
                    if let Err(e) = self.fail(e, &mut failures, &mut rng).await {
                        break Err(e);
                    }
                    resync = matches!(next, Next::Resync);
                }
            }
        };
        self.progress.connection_closed();
        result
    }

    /// Reads the chunk and PATCHes it; on failure also returns how many bytes were counted.
    async fn patch(
        &self,
        part: &Part,
        chunk: Range<u64>,
    ) -> std::result::Result<(u64, Option<String>), (Error, u64)> {
        let data = self
            .read(part.range.start + chunk.start, chunk.end - chunk.start)
            .await
            .map_err(|e| (e, 0))?;
        let checksum = self.checksum.map(|a| upload_checksum(a, &data));
        let sent = Arc::new(AtomicU64::new(0));
        let meter = Meter {
            progress: Arc::clone(&self.progress),
            id: part.id,
            sent: Arc::clone(&sent),
        };
        let res = self
            .tus
            .patch(&part.url, chunk.start, data, checksum, meter)
            .await;
        res.map_err(|e| (e, sent.load(Ordering::Relaxed)))
    }

    /// Reads `len` bytes at `at`, then checks (fstat) that the file still has the size and
    /// mtime it was planned with, so bytes of a changed file never reach the server.
    async fn read(&self, at: u64, len: u64) -> Result<Bytes> {
        let (file, path, stamp) = (Arc::clone(&self.file), self.path.clone(), self.stamp);
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; len as usize];
            file.read_exact_at(&mut buf, at)
                .map_err(|e| Error::io(&path, e))?;
            let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
            if (meta.len(), meta.mtime(), meta.mtime_nsec()) != stamp {
                let msg =
                    "changed during the upload; run the command again to upload the new version";
                return Err(Error::io(&path, std::io::Error::other(msg)));
            }
            Ok(Bytes::from(buf))
        });
        read.await
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?
    }

    /// Counts a failure; returns the error when it is final, otherwise waits before the retry.
    async fn fail(&self, e: Error, failures: &mut u32, rng: &mut fastrand::Rng) -> Result<()> {
        let transient = e.is_retryable()
            || matches!(
                e,
                Error::Status {
                    status: 409 | 460,
                    ..
                }
            );
        *failures += 1;
        if !transient || *failures >= self.max_tries {
            return Err(e);
        }
        let wait = match &e {
            Error::Status {
                retry_after: Some(d),
                ..
            } if *d <= MAX_RETRY_AFTER => *d,
            Error::Status {
                status: 409 | 460, ..
            } => Duration::ZERO,
            _ => self.backoff.delay(*failures - 1, rng),
        };
        self.progress.verbose(&format!(
            "{e}; retrying in {wait:?} ({failures}/{})",
            self.max_tries
        ));
        tokio::time::sleep(wait).await;
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
