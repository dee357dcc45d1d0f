//! The upload records this process read or wrote last, so that a PATCH reads its record once
//! (issue 11 point 7(ii): every small request costs the S3 server as much as a few hundred
//! KiB of a part).
//!
//! A record's revision is its ETag, which names its bytes: a record remembered at the
//! revision an [`UploadInfo`](crate::store::upload::UploadInfo) was loaded (or last recorded)
//! at is that very record, so the appender of a PATCH, and the publish after its last
//! checkpoint, take it from here instead of reading it again right after the PATCH's load did.
//! Whether the stored record is still at that revision is decided, as before, by the
//! compare-and-swap of the next record write: one that moved on meanwhile (another instance
//! took the upload over) fails it with the same conflict a fresh read would have caused, a
//! step later.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use super::upload::Record;
use crate::store::upload::{Revision, UploadState};

/// Records kept at most, the most recent first, one per upload: PATCHes in progress at
/// once, each between its load and its appender (some wait for a place to receive in,
/// [`super::upload::RECEIVING`]), and a few uploads in between. A record of a large upload
/// lists its parts (about 100 bytes each), so this also bounds the memory.
pub const REMEMBERED: usize = 32;

#[derive(Default)]
pub(super) struct Recent(Mutex<VecDeque<Record>>);

impl Recent {
    fn lock(&self) -> MutexGuard<'_, VecDeque<Record>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The record of its upload is stored as `rec` now (read, or written by this process,
    /// with its revision). Only active uploads are kept: nothing else is appended to.
    pub fn remember(&self, rec: &Record) {
        let mut kept = self.lock();
        kept.retain(|r| r.info.id != rec.info.id);
        if rec.info.state == UploadState::Active && rec.info.revision.is_some() {
            kept.truncate(REMEMBERED - 1);
            kept.push_front(rec.clone());
        }
    }

    /// Upload `id` has no record any more.
    pub fn forget(&self, id: &str) {
        self.lock().retain(|r| r.info.id != id);
    }

    /// The record of upload `id` at `revision`, if it is the one remembered.
    pub fn at(&self, id: &str, revision: &Revision) -> Option<Record> {
        let kept = self.lock();
        let rec = kept
            .iter()
            .find(|r| r.info.id == id && r.info.revision.as_ref() == Some(revision))?;
        Some(rec.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::upload::{Concat, UploadId, UploadInfo};

    fn record(id: &UploadId, revision: &str, state: UploadState) -> Record {
        let mut info = UploadInfo::new(id, Some(1), None, Concat::None);
        info.state = state;
        let mut rec: Record =
            serde_json::from_value(serde_json::json!({ "version": 3, "info": info })).unwrap();
        rec.info.revision = Some(Revision(revision.into()));
        rec
    }

    fn rev(r: &str) -> Revision {
        Revision(r.into())
    }

    #[test]
    fn a_record_is_found_at_its_latest_revision_only() {
        let recent = Recent::default();
        let id = UploadId::random().unwrap();
        recent.remember(&record(&id, "\"a\"", UploadState::Active));
        assert!(recent.at(id.as_str(), &rev("\"a\"")).is_some());
        recent.remember(&record(&id, "\"b\"", UploadState::Active));
        assert!(recent.at(id.as_str(), &rev("\"a\"")).is_none(), "moved on");
        assert!(recent.at(id.as_str(), &rev("\"b\"")).is_some());
        let other = UploadId::random().unwrap();
        assert!(recent.at(other.as_str(), &rev("\"b\"")).is_none());
        recent.forget(id.as_str());
        assert!(recent.at(id.as_str(), &rev("\"b\"")).is_none(), "forgotten");
    }

    #[test]
    fn only_active_uploads_are_kept_and_only_so_many() {
        let recent = Recent::default();
        let id = UploadId::random().unwrap();
        recent.remember(&record(&id, "\"a\"", UploadState::Active));
        let published = UploadState::Published { path: "f".into() };
        recent.remember(&record(&id, "\"b\"", published));
        assert!(recent.at(id.as_str(), &rev("\"a\"")).is_none());
        assert!(recent.at(id.as_str(), &rev("\"b\"")).is_none());
        let ids: Vec<UploadId> = (0..REMEMBERED + 5)
            .map(|_| UploadId::random().unwrap())
            .collect();
        for id in &ids {
            recent.remember(&record(id, "\"r\"", UploadState::Active));
        }
        assert_eq!(recent.lock().len(), REMEMBERED);
        assert!(
            recent.at(ids[0].as_str(), &rev("\"r\"")).is_none(),
            "the oldest went"
        );
        assert!(recent
            .at(ids[REMEMBERED + 4].as_str(), &rev("\"r\""))
            .is_some());
    }
}
