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
use std::path::{Path, PathBuf};
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

/// A chunk read and checksummed, ready to PATCH.
struct Prepared {
    data: Bytes,
    checksum: Option<String>,
}

/// The next chunk being read and checksummed on a blocking thread while the current PATCH
/// is on the wire, so the disk read and the hashing overlap the network and the server.
struct Ahead {
    range: Range<u64>,
    task: tokio::task::JoinHandle<Result<Prepared>>,
}

impl Sender {
    /// Uploads the rest of `part`; returns the published location if the server sent one.
    pub async fn send(&self, mut part: Part) -> Result<Option<String>> {
        let len = part.range.end - part.range.start;
        let (mut failures, mut rng) = (0u32, fastrand::Rng::new());
        let (mut published, mut resync, mut ahead) = (None, false, None);
        self.progress.connection_opened();
        let result = loop {
            if resync {
                match self.resync(&mut part, len).await {
                    Ok(()) => resync = false,
                    Err(e) => match self.fail(e, &mut failures, &mut rng).await {
                        Ok(()) => continue,
                        Err(e) => break Err(e),
                    },
                }
            }
            let Some(chunk) = next_chunk(part.offset, len, self.chunk) else {
                break Ok(published);
            };
            let prepared = match self.take(&mut ahead, &part, &chunk).await {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            ahead = next_chunk(chunk.end, len, self.chunk).map(|n| self.prepare(&part, n));
            match self.patch(&part, chunk.clone(), prepared).await {
                Ok((offset, p)) if offset > chunk.start && offset <= chunk.end => {
                    self.reposition_after(chunk.end, offset);
                    part.offset = offset;
                    published = p.or(published);
                    failures = 0;
                }
                Ok((offset, _)) => {
                    let (first, last) = (chunk.start + 1, chunk.end);
                    let msg = format!(
                        "expected Upload-Offset in {first}..={last} after PATCH, got {offset}"
                    );
                    break Err(Error::Protocol {
                        url: part.url.clone(),
                        msg,
                    });
                }
                Err((e, sent)) => {
                    self.unsend(sent);
                    // 460: the chunk was discarded, send it again; anything else: ask first.
                    resync = !matches!(e, Error::Status { status: 460, .. });
                    if let Err(e) = self.fail(e, &mut failures, &mut rng).await {
                        break Err(e);
                    }
                }
            }
        };
        self.progress.connection_closed();
        result
    }

    /// HEAD: learn what the server kept (tus core: the client resumes from `Upload-Offset`).
    async fn resync(&self, part: &mut Part, len: u64) -> Result<()> {
        let h = self.tus.head(&part.url).await?;
        if h.offset > len {
            let msg = format!("expected Upload-Offset <= {len} on HEAD, got {}", h.offset);
            // Not retryable: the server holds more than this part has.
            return Err(Error::Io {
                path: self.path.clone(),
                source: std::io::Error::other(format!("{}: {msg}", part.url)),
            });
        }
        self.reposition(part, h.offset);
        part.offset = h.offset;
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
                self.prepare(part, chunk.clone()).task
            }
        };
        task.await
            .map_err(|e| Error::io(&self.path, std::io::Error::other(e)))?
    }

    /// Starts reading and checksumming `chunk` (offsets within `part`) on a blocking thread.
    fn prepare(&self, part: &Part, chunk: Range<u64>) -> Ahead {
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
        Ahead { range: chunk, task }
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
        let wait = retry_wait(&e, self.backoff, *failures, rng);
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

/// The wait before retry number `failures` (1-based) after `e`: the server's `Retry-After`
/// when sane (RFC 9110 §10.2.3), none after 409/460 (the next request fixes the cause),
/// else jittered exponential backoff.
pub fn retry_wait(e: &Error, backoff: Backoff, failures: u32, rng: &mut fastrand::Rng) -> Duration {
    match e {
        Error::Status {
            retry_after: Some(d),
            ..
        } if *d <= MAX_RETRY_AFTER => *d,
        Error::Status {
            status: 409 | 460, ..
        } => Duration::ZERO,
        _ => backoff.delay(failures.saturating_sub(1), rng),
    }
}

/// Repeats a tus request other than PATCH (OPTIONS, HEAD, POST) while it fails with a
/// retryable error, at most `max_tries` attempts. All are safe to repeat: a creation whose
/// answer was lost leaves an unused upload that the server expires.
pub async fn retrying<T, Fut>(
    backoff: Backoff,
    max_tries: u32,
    mut op: impl FnMut() -> Fut,
) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut rng = fastrand::Rng::new();
    let mut failures = 0u32;
    loop {
        match op().await {
            Err(e) if e.is_retryable() && failures + 1 < max_tries => {
                failures += 1;
                let wait = retry_wait(&e, backoff, failures, &mut rng);
                tracing::info!("{e}; retrying in {wait:?} ({failures}/{max_tries})");
                tokio::time::sleep(wait).await;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> Error {
        Error::Status {
            url: "u".into(),
            status: code,
            retry_after: None,
        }
    }

    async fn count_calls(max_tries: u32, answers: &[u16]) -> (Result<u16>, usize) {
        let backoff = Backoff::new(Duration::from_millis(1));
        let calls = std::cell::Cell::new(0usize);
        let res = retrying(backoff, max_tries, || {
            let n = calls.get();
            calls.set(n + 1);
            let code = answers[n.min(answers.len() - 1)];
            async move {
                if code < 300 {
                    Ok(code)
                } else {
                    Err(status(code))
                }
            }
        })
        .await;
        (res, calls.get())
    }

    #[tokio::test]
    async fn retrying_repeats_transient_failures_until_success() {
        let (res, calls) = count_calls(5, &[503, 429, 200]).await;
        assert_eq!((res.ok(), calls), (Some(200), 3));
    }

    #[tokio::test]
    async fn retrying_gives_up_after_max_tries() {
        let (res, calls) = count_calls(3, &[503]).await;
        assert!(res.is_err_and(|e| e.to_string().contains("503")));
        assert_eq!(calls, 3);
    }

    #[tokio::test]
    async fn retrying_never_repeats_a_final_answer() {
        // 404/410: the upload is gone (tus core); 401: the token is wrong.
        for code in [404, 410, 401, 413] {
            let (res, calls) = count_calls(5, &[code]).await;
            assert!(res.is_err());
            assert_eq!(calls, 1, "{code}");
        }
    }

    #[test]
    fn retry_wait_honours_retry_after_and_skips_waiting_after_409_460() {
        let b = Backoff::new(Duration::from_secs(1));
        let mut rng = fastrand::Rng::with_seed(7);
        let after = Error::Status {
            url: "u".into(),
            status: 503,
            retry_after: Some(Duration::from_secs(3)),
        };
        assert_eq!(retry_wait(&after, b, 1, &mut rng), Duration::from_secs(3));
        let absurd = Error::Status {
            url: "u".into(),
            status: 503,
            retry_after: Some(Duration::from_secs(99_999)),
        };
        assert!(retry_wait(&absurd, b, 1, &mut rng) <= Duration::from_secs(1));
        assert_eq!(retry_wait(&status(409), b, 4, &mut rng), Duration::ZERO);
        assert_eq!(retry_wait(&status(460), b, 4, &mut rng), Duration::ZERO);
        let third = retry_wait(&status(503), b, 3, &mut rng);
        assert!(
            third >= Duration::from_secs(2) && third <= Duration::from_secs(4),
            "{third:?}"
        );
    }
}
