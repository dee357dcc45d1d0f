//! Orphaned multipart uploads (issue 11 point 6(c)): an S3 multipart upload that no upload
//! record will ever complete or abort keeps its parts, and S3 bills them, until a lifecycle
//! rule aborts it. They come from writers interrupted between creating a multipart upload and
//! recording it (an instance killed there, or an abort that failed): the part reservation or
//! concatenation of ferryd before record version 3, whose uploads kept their parts in a
//! multipart upload (new uploads keep them as objects). Expiry and termination only abort
//! the multipart upload their record names.
//!
//! So the reaper (`UploadStore::sweep`) lists the multipart uploads in progress under the
//! staging prefix (`ListMultipartUploads`, [`super::raw`]) and aborts each one that is
//! orphaned ([`orphaned`]):
//! - its upload's record is gone, or its upload is no longer active (published, terminated,
//!   expired): a record never comes back to life and ids are never reused, so nobody can
//!   record that multipart upload any more (a writer still creating one fails its
//!   compare-and-swap, then aborts it itself);
//! - its upload is active but its record names another multipart upload (or none), and this
//!   instance has seen it so for [`ORPHAN_AGE`]. Younger ones are left alone: another
//!   instance may have just created it and its record write may still be on the way (S3
//!   lifecycle rules, which tusd leaves this to, count days from initiation too). The age is
//!   counted from when this instance first listed it, not from S3's `Initiated`, so a server
//!   whose dates are off (moto's are all of 2010) can never make a fresh one look old.
//!
//! Multipart uploads elsewhere under the prefix (a publish's copy to the served name, cut by a
//! crash) are not ferryd's alone to judge (another tool may be uploading into the served
//! tree): a lifecycle rule aborting incomplete multipart uploads stays the backstop for those.

use std::time::Duration;

use object_store::multipart::MultipartStore as _;
use object_store::path::Path as Key;

use super::raw::OpenMultipart;
use super::upload::Keys;
use super::S3Store;
use crate::store::upload::{UploadId, UploadState};
use crate::store::StoreError;

/// How old a multipart upload that an active upload's record does not name must be before it
/// is aborted: far longer than creating one and recording it can take (two requests).
pub const ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);

/// What the record of a multipart upload's upload says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Owner {
    /// No record: the upload was forgotten (or the key is not named like ferryd's).
    Gone,
    /// The upload is published, terminated or expired.
    Done,
    /// The upload is active; whether its record names this multipart upload.
    Live { names_it: bool },
}

/// Whether a multipart upload that `owner` says this of, first listed at `seen_ms` (Unix
/// ms), is orphaned at `now_ms` (pure; see the module).
pub(super) fn orphaned(owner: Owner, seen_ms: u64, now_ms: u64, min_age: Duration) -> bool {
    match owner {
        Owner::Gone | Owner::Done => true,
        Owner::Live { names_it: true } => false,
        Owner::Live { names_it: false } => {
            u128::from(now_ms.saturating_sub(seen_ms)) >= min_age.as_millis()
        }
    }
}

/// When this instance first listed each multipart upload in progress (by upload id), for the
/// age of those a live record does not name.
pub(super) type FirstSeen =
    std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>;

impl S3Store {
    /// Aborts every orphaned multipart upload under the staging prefix (see the module),
    /// judged at `now_ms` with `min_age` for ones a live upload does not name. Returns how
    /// many it aborted. A record it cannot read leaves its multipart uploads alone.
    pub(super) async fn abort_orphans(
        &self,
        now_ms: u64,
        min_age: Duration,
    ) -> Result<usize, StoreError> {
        let dir = self.uploads_dir();
        let prefix = format!("{}/", dir.as_ref());
        let listed = self.list_multipart(&prefix).await?;
        let seen: Vec<u64> = {
            let mut first = self.first_seen.lock().unwrap_or_else(|p| p.into_inner());
            // Only what is still in progress is remembered.
            first.retain(|id, _| listed.iter().any(|o| &o.upload_id == id));
            listed
                .iter()
                .map(|o| *first.entry(o.upload_id.clone()).or_insert(now_ms))
                .collect()
        };
        let mut aborted = 0;
        for (open, seen_ms) in listed.iter().zip(seen) {
            let owner = match self.owner(&prefix, open).await {
                Ok(o) => o,
                Err(e) => {
                    tracing::warn!(key = %open.key, error = %e, "cannot tell whether a multipart upload is orphaned");
                    continue;
                }
            };
            if !orphaned(owner, seen_ms, now_ms, min_age) {
                continue;
            }
            let Ok(key) = Key::parse(&open.key) else {
                continue;
            };
            match self.s3.abort_multipart(&key, &open.upload_id).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => aborted += 1,
                Err(e) => {
                    tracing::warn!(key = %open.key, error = %e, "cannot abort an orphaned multipart upload")
                }
            }
        }
        Ok(aborted)
    }

    /// What the record of the upload whose data key `open` is says about it.
    async fn owner(&self, prefix: &str, open: &OpenMultipart) -> Result<Owner, StoreError> {
        let id = open
            .key
            .strip_prefix(prefix)
            .and_then(|name| name.strip_suffix(".bin"))
            .and_then(UploadId::parse);
        let Some(id) = id else {
            // Not a name ferryd gives: only its age can tell.
            return Ok(Owner::Live { names_it: false });
        };
        match self.read_record(&Keys::new(self, id.as_str())).await {
            Err(StoreError::NotFound) => Ok(Owner::Gone),
            Err(e) => Err(e),
            Ok(rec) if rec.info.state != UploadState::Active => Ok(Owner::Done),
            Ok(rec) => Ok(Owner::Live {
                names_it: rec.multipart.as_deref() == Some(open.upload_id.as_str()),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = ORPHAN_AGE;
    const NOW: u64 = 10 * 3_600_000;

    #[test]
    fn a_multipart_upload_of_a_finished_or_forgotten_upload_is_orphaned_at_any_age() {
        for owner in [Owner::Gone, Owner::Done] {
            assert!(orphaned(owner, NOW, NOW, HOUR));
        }
    }

    #[test]
    fn one_a_live_record_names_is_never_orphaned() {
        let live = Owner::Live { names_it: true };
        assert!(!orphaned(live, 0, NOW, HOUR));
        assert!(!orphaned(live, NOW, NOW, Duration::ZERO));
    }

    // Another instance may have created it a moment ago and be recording it now.
    #[test]
    fn one_a_live_record_does_not_name_is_orphaned_only_once_old() {
        let stray = Owner::Live { names_it: false };
        assert!(!orphaned(stray, NOW, NOW, HOUR));
        assert!(!orphaned(stray, NOW - 3_599_999, NOW, HOUR));
        assert!(orphaned(stray, NOW - 3_600_000, NOW, HOUR));
        assert!(
            !orphaned(stray, NOW + 5000, NOW, HOUR),
            "the clock went back"
        );
    }

    /// The ids of the multipart uploads in progress under the store's staging prefix.
    async fn open_ids(s: &S3Store) -> Vec<String> {
        let prefix = format!("{}/", s.uploads_dir().as_ref());
        let mut ids: Vec<String> = s
            .list_multipart(&prefix)
            .await
            .unwrap()
            .into_iter()
            .map(|o| o.upload_id)
            .collect();
        ids.sort();
        ids
    }

    /// A multipart upload of the data key of upload `id` that no record names (a writer
    /// killed between creating it and recording it).
    async fn stray(s: &S3Store, id: &UploadId) -> String {
        s.s3.create_multipart(&Keys::new(s, id.as_str()).data())
            .await
            .unwrap()
    }

    // Issue 11 point 6(c): a writer killed between creating a multipart upload and recording
    // it leaves one that expiry does not abort (it aborts the one its record names). The
    // sweep aborts it once its upload is over or forgotten; while the upload is live, only
    // after it has been seen for ORPHAN_AGE (another instance may be recording it), and never
    // the one the live record names.
    #[tokio::test]
    async fn the_sweep_aborts_orphaned_multipart_uploads_and_nothing_a_live_upload_uses() {
        use crate::store::upload::{Concat, UploadInfo, UploadStore as _};
        use bytes::Bytes;
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let s = &s;
        let new = |len| async move {
            let id = UploadId::random().unwrap();
            let mut info = UploadInfo::new(&id, Some(len), None, Concat::None);
            s.create(&mut info).await.unwrap();
            (id, info)
        };
        // Live, with a recorded part, a multipart upload its record names (as a version 2
        // record does, whose parts are in one) and a stray.
        let part = super::super::upload::MIN_PART;
        let (live, mut info) = new(3 * part as u64).await;
        let mut app = s.append(&info).await.unwrap();
        app.write(Bytes::from(vec![7; part + 5])).await.unwrap();
        app.checkpoint(&mut info).await.unwrap();
        drop(app);
        let keys = Keys::new(s, live.as_str());
        let named = stray(s, &live).await;
        let mut rec = s.read_record(&keys).await.unwrap();
        rec.multipart = Some(named.clone());
        s.write_record(&keys, &mut rec).await.unwrap();
        let mut info = s.load(&live).await.unwrap();
        let live_stray = stray(s, &live).await;
        // Expired with a stray, and a stray of an upload whose record is gone.
        let (done, mut done_info) = new(10).await;
        let done_stray = stray(s, &done).await;
        s.discard(&mut done_info, UploadState::Expired)
            .await
            .unwrap();
        let gone = UploadId::random().unwrap();
        let gone_stray = stray(s, &gone).await;
        let mut all = vec![named.clone(), live_stray.clone(), done_stray, gone_stray];
        all.sort();
        assert_eq!(open_ids(s).await, all, "expiry left the stray");

        let now = crate::store::upload::unix_now_ms();
        assert_eq!(s.abort_orphans(now, ORPHAN_AGE).await.unwrap(), 2);
        let mut left = vec![named.clone(), live_stray];
        left.sort();
        assert_eq!(open_ids(s).await, left, "the live upload's are kept");
        let almost = now + ORPHAN_AGE.as_millis() as u64 - 1;
        assert_eq!(s.abort_orphans(almost, ORPHAN_AGE).await.unwrap(), 0);
        let later = now + ORPHAN_AGE.as_millis() as u64;
        assert_eq!(s.abort_orphans(later, ORPHAN_AGE).await.unwrap(), 1);
        assert_eq!(open_ids(s).await, [named], "the one its record names stays");

        // The live upload still completes and publishes.
        let mut app = s.append(&info).await.unwrap();
        app.write(Bytes::from(vec![8; 2 * part - 5])).await.unwrap();
        app.checkpoint(&mut info).await.unwrap();
        drop(app);
        let path = s
            .publish(&mut info, &crate::path::RelPath::root(), "live.bin")
            .await
            .unwrap();
        assert_eq!(path.as_str(), "live.bin");
        assert!(open_ids(s).await.is_empty());
    }
}
