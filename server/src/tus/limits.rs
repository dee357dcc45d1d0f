//! Bounded state per server (issue 8 point 3): at most `--max-open-uploads` unfinished uploads
//! and at most `--max-staged-bytes` of declared length staged at once.
//!
//! Counted: an open upload is an active record (not yet published, terminated or expired).
//! Staged bytes are the declared `Upload-Length` of open uploads that are not final uploads
//! (a final upload's bytes are its parts'), reserved at creation; a deferred length counts
//! from the PATCH that declares it. The counters are derived from the records: built from
//! them once at start, before the first creation (so they survive a restart), then moved by
//! every transition with atomics: creation reserves, publishing, termination, expiry and a
//! part retired into its published final upload release. They are not rebuilt by the reaper
//! while requests run: a listing races creations whose record is not written yet and
//! releases whose record is, so a rebuild would undercount. Known imprecision (errs on the
//! safe side): a deferred length declared by a PATCH that then fails before its record is
//! saved stays counted until the next start.
//!
//! Answers: a creation past the open-upload limit, or one whose length would take the staged
//! bytes past theirs, is 503 with `Retry-After` (a server-wide capacity limit, not this
//! client's rate: nginx's `limit_conn` answers 503 too; 429 would blame the client); a length
//! that alone exceeds the staged limit can never fit and is 413.

use std::sync::atomic::{AtomicU64, Ordering};

use http::StatusCode;
use tokio::sync::OnceCell;

use super::Tus;
use crate::error::{Error, Result};
use crate::store::upload::{Concat, UploadInfo, UploadState};

/// Seconds a client is told to wait before creating again.
pub const RETRY_AFTER_SECS: u64 = 60;

/// The live counts, see the module doc.
#[derive(Debug, Default)]
pub struct Counts {
    open: AtomicU64,
    staged: AtomicU64,
    built: OnceCell<()>,
}

/// The bytes an open upload stages: its declared length, none for a final upload.
fn staged_of(info: &UploadInfo) -> u64 {
    match info.concat {
        Concat::Final { .. } => 0,
        _ => info.length.unwrap_or(0),
    }
}

/// Adds `n` to `counter` if the sum stays within `max`; whether it did.
fn try_add(counter: &AtomicU64, n: u64, max: u64) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
            c.checked_add(n).filter(|&s| s <= max)
        })
        .is_ok()
}

fn sub(counter: &AtomicU64, n: u64) {
    let _ = counter.fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
        Some(c.saturating_sub(n))
    });
}

impl Tus {
    /// Builds the counts from the upload records, once (at start, or the first creation).
    pub async fn count_once(&self) -> Result<()> {
        self.counts.built.get_or_try_init(|| self.recount()).await?;
        Ok(())
    }

    async fn recount(&self) -> Result<()> {
        let (mut open, mut staged) = (0u64, 0u64);
        for info in self.uploads()?.list_uploads().await? {
            if info.state == UploadState::Active {
                open += 1;
                staged = staged.saturating_add(staged_of(&info));
            }
        }
        self.counts.open.store(open, Ordering::Release);
        self.counts.staged.store(staged, Ordering::Release);
        Ok(())
    }

    /// Reserves room for a new upload of `length` bytes (`None`: deferred or final), or
    /// refuses it (413, 503). Call [`Tus::unreserve`] if the upload is then not created.
    pub(crate) async fn reserve(&self, length: Option<u64>) -> Result<()> {
        self.count_once().await?;
        let max_open = self.cfg.max_open_uploads;
        if !try_add(&self.counts.open, 1, max_open) {
            return Err(Error::Busy(format!(
                "too many unfinished uploads: at most {max_open} at once (--max-open-uploads)"
            )));
        }
        if let Err(e) = self.reserve_bytes(length.unwrap_or(0)) {
            sub(&self.counts.open, 1);
            return Err(e);
        }
        Ok(())
    }

    /// Reserves `n` staged bytes: 413 if `n` alone is past the limit, 503 if the sum is.
    pub(crate) fn reserve_bytes(&self, n: u64) -> Result<()> {
        let Some(max) = self.cfg.max_staged_bytes else {
            let _ = self
                .counts
                .staged
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |c| {
                    Some(c.saturating_add(n))
                });
            return Ok(());
        };
        if n > max {
            return Err(Error::client(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("Upload-Length {n} exceeds the staging limit of {max} bytes (--max-staged-bytes)"),
            ));
        }
        if !try_add(&self.counts.staged, n, max) {
            return Err(Error::Busy(format!(
                "staging is full: {n} more bytes would pass {max} (--max-staged-bytes)"
            )));
        }
        Ok(())
    }

    /// Gives back what [`Tus::reserve`] took for an upload that was not created.
    pub(crate) fn unreserve(&self, length: Option<u64>) {
        sub(&self.counts.open, 1);
        sub(&self.counts.staged, length.unwrap_or(0));
    }

    /// An open upload was published, terminated or expired: its room is free.
    pub(crate) fn release(&self, info: &UploadInfo) {
        if !self.counts.built.initialized() {
            return; // the count, when built, will not see it
        }
        sub(&self.counts.open, 1);
        sub(&self.counts.staged, staged_of(info));
    }

    /// The current counts (open uploads, staged bytes).
    pub fn counts(&self) -> (u64, u64) {
        (
            self.counts.open.load(Ordering::Acquire),
            self.counts.staged.load(Ordering::Acquire),
        )
    }
}
