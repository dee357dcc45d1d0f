//! Finished uploads (issue 9 §1): the resume entry of a file that was uploaded keeps where it
//! was published (`done`), so running the same `ferry put` again names the same location and
//! exits 0 without sending a byte — as long as the server still holds all of it, which a HEAD
//! checks; an upload the server lost (expired, deleted) is forgotten and sent again.

use super::fingerprint::Entry;
use super::upload::is_gone;
use super::Uploader;
use crate::error::Result;
use crate::progress::Progress;

impl Uploader {
    /// The location of an earlier finished upload of this very file (same endpoint, path,
    /// size and mtime), if the server still holds it; a vanished one is forgotten.
    pub(super) async fn already_done(
        &self,
        entry: &mut Entry,
        progress: &Progress,
    ) -> Result<Option<String>> {
        let Some(location) = entry.done.clone() else {
            return Ok(None);
        };
        let size = entry.fingerprint.size;
        match self.tus.holds(&location, size).await {
            Ok(true) => {
                progress.set_done(size);
                Ok(Some(location))
            }
            Ok(false) => self.forget_done(entry, progress, "no longer holds it whole"),
            Err(e) if is_gone(&e) => self.forget_done(entry, progress, "no longer has it"),
            Err(e) => Err(e),
        }
    }

    fn forget_done(
        &self,
        entry: &mut Entry,
        progress: &Progress,
        why: &str,
    ) -> Result<Option<String>> {
        progress.note(&format!(
            "uploaded before, but the server {why}: uploading again"
        ));
        *entry = Entry::new(entry.fingerprint.clone());
        self.save(entry)?;
        Ok(None)
    }
}
