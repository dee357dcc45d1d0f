//! Copying an object to a name inside S3 without ever replacing what is there: publish (the
//! completed staging object to its served name) and instant upload (a served object to a new
//! name). A multipart copy in ranges of at most 5 GiB ([`copy_ranges`]; one `UploadPartCopy`
//! of a whole object larger than that fails on S3), completed with `If-None-Match: *`, so
//! nothing is visible before the copy is complete and a taken name is never written: the next
//! `name (n).ext` is tried instead.

use std::ops::Range;

use object_store::multipart::MultipartStore as _;
use object_store::path::Path as Key;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions};

use super::raw::{Completed, MAX_COPY};
use super::upload::{other, MAX_CANDIDATES};
use super::{from_s3, S3Store};
use crate::path::RelPath;
use crate::store::upload::name_candidate;
use crate::store::StoreError;

/// The ranges a copy of `len` bytes is made of: `MAX_COPY` bytes each but the last (pure).
/// Every part but the last is then far above S3's 5 MiB minimum.
pub(super) fn copy_ranges(len: u64, max: u64) -> Vec<Range<u64>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < len {
        let end = len.min(at.saturating_add(max));
        out.push(at..end);
        at = end;
    }
    out
}

impl S3Store {
    /// Copies the `len` bytes of `from` (only its version with ETag `if_match`, if given) to
    /// the first free candidate of `dir/name`, never replacing an object. Returns the path
    /// and its key. A source that is gone (or not that version) is [`StoreError::NotFound`].
    pub(super) async fn copy_no_clobber(
        &self,
        from: &Key,
        if_match: Option<&str>,
        len: u64,
        dir: &RelPath,
        name: &str,
    ) -> Result<(RelPath, Key), StoreError> {
        for n in 0..MAX_CANDIDATES {
            let path = dir
                .join(&name_candidate(name, n))
                .map_err(|_| StoreError::Forbidden)?;
            if !self.vis.serves_path(&path) {
                return Err(StoreError::Forbidden);
            }
            let key = self.key(&path).ok_or(StoreError::Forbidden)?;
            if self.client.head(&key).await.is_ok() {
                continue; // taken: no copy needed to find out
            }
            let placed = match len {
                0 => self.create_empty(&key).await?,
                _ => self.copy_if_free(from, if_match, len, &key).await?,
            };
            if placed {
                return Ok((path, key));
            }
        }
        Err(other(format!(
            "no free name for {name:?} after {MAX_CANDIDATES} tries"
        )))
    }

    /// One attempt of [`S3Store::copy_no_clobber`] at `key`: whether it was free.
    async fn copy_if_free(
        &self,
        from: &Key,
        if_match: Option<&str>,
        len: u64,
        key: &Key,
    ) -> Result<bool, StoreError> {
        let mp = self.s3.create_multipart(key).await.map_err(from_s3)?;
        let done = async {
            let mut ids = Vec::new();
            for (idx, range) in copy_ranges(len, MAX_COPY).into_iter().enumerate() {
                ids.push(self.copy_part(key, &mp, idx, from, range, if_match).await?);
            }
            self.complete_no_clobber(key, &mp, &ids).await
        }
        .await;
        if !matches!(done, Ok(Completed::Done(_))) {
            let _ = self.s3.abort_multipart(key, &mp).await;
        }
        Ok(matches!(done?, Completed::Done(_)))
    }

    /// An empty object at `key` if nothing is there: whether it was free.
    async fn create_empty(&self, key: &Key) -> Result<bool, StoreError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .client
            .put_opts(key, bytes::Bytes::new().into(), opts)
            .await
        {
            Ok(_) => Ok(true),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(false),
            Err(e) => Err(from_s3(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_are_cut_at_the_largest_part() {
        assert!(copy_ranges(0, 10).is_empty());
        assert_eq!(copy_ranges(7, 10), vec![0..7]);
        assert_eq!(copy_ranges(10, 10), vec![0..10]);
        assert_eq!(copy_ranges(25, 10), vec![0..10, 10..20, 20..25]);
        let big = 12 * MAX_COPY + 1;
        let r = copy_ranges(big, MAX_COPY);
        assert_eq!(r.len(), 13);
        assert_eq!(r.last().unwrap().clone(), 12 * MAX_COPY..big);
        assert!(r.windows(2).all(|w| w[0].end == w[1].start));
    }
}
