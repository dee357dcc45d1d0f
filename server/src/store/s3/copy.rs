//! Copying objects to a name inside S3 without ever replacing what is there: publish (an
//! upload's part objects and tail, or a final upload's pieces, laid end to end by
//! [`super::concat::plan`]) and instant upload (a served object to a new name, in ranges of
//! at most 5 GiB, [`copy_ranges`]: one `UploadPartCopy` of a whole object larger than that
//! fails on S3). A multipart upload at the name, filled inside S3 and completed with
//! `If-None-Match: *`: nothing is visible before the copy is complete, a taken name is never
//! written (the next `name (n).ext` is tried instead; the sources are untouched), and S3
//! assembles the object once (the one completion a plain multipart upload costs as well).
//!
//! Every copy is labelled with the upload it publishes (user metadata `ferry-upload`), so a
//! publish retried after a crash between the copy and the record finds its own copy and
//! keeps it, instead of publishing the file a second time as `name (1).ext` (the directory
//! store's link check, `same_file`, does the same by inode). The same label makes two
//! publishes of one upload at once (an instance whose claim ran out, and the one that took
//! over) end at the same name: each candidate is either someone else's (both skip it), or
//! free (one completion wins, and the other then finds it labelled as its own).

use std::ops::Range;

use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path as Key;
use object_store::{
    Attribute, AttributeValue, Attributes, GetOptions, PutMode, PutMultipartOptions, PutOptions,
};

use super::concat::{plan, Planned, PARTS_AT_ONCE, S3_LIMITS};
use super::raw::{Completed, MAX_COPY};
use super::upload::{other, MAX_CANDIDATES, MAX_PARTS};
use super::{from_s3, S3Store};
use crate::path::RelPath;
use crate::store::upload::name_candidate;
use crate::store::{BoxFuture, StoreError};

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

/// The user metadata naming the upload an object was published for.
const OWNER: &str = "ferry-upload";

fn owner_attributes(owner: &str) -> Attributes {
    let mut a = Attributes::new();
    a.insert(
        Attribute::Metadata(OWNER.into()),
        AttributeValue::from(owner.to_owned()),
    );
    a
}

/// Called with each multipart upload a copy creates (its key and upload id) before the copy
/// fills it; an error aborts it and fails the copy.
pub(super) type Note<'a> =
    dyn Fn(Key, String) -> BoxFuture<'a, Result<(), StoreError>> + Send + Sync + 'a;

/// Who holds a name.
enum Holder {
    Free,
    /// An object published for this upload (an earlier attempt of the same publish).
    Same,
    Other,
}

impl S3Store {
    /// Copies `sources` (key and length) end to end to the first free candidate of
    /// `dir/name`, never replacing an object, labelled as published for upload `owner` (a
    /// candidate already holding `owner`'s copy is taken as the result). Returns the path, its
    /// key, and the ETag S3 answered for the object this call completed (`None` for an empty
    /// object, or a copy of an earlier attempt found in place). With `if_match` (one source
    /// only), only from the source's version with that ETag; a source that is gone (or not
    /// that version) is [`StoreError::NotFound`]. `note` hears of each multipart upload
    /// before it is filled.
    pub(super) async fn copy_no_clobber(
        &self,
        sources: &[(Key, u64)],
        if_match: Option<&str>,
        note: Option<&Note<'_>>,
        owner: &str,
        dir: &RelPath,
        name: &str,
    ) -> Result<(RelPath, Key, Option<String>), StoreError> {
        let len = sources
            .iter()
            .try_fold(0u64, |t, s| t.checked_add(s.1))
            .ok_or_else(|| other("sources add up past u64"))?;
        for n in 0..MAX_CANDIDATES {
            let path = dir
                .join(&name_candidate(name, n))
                .map_err(|_| StoreError::Forbidden)?;
            if !self.vis.serves_path(&path) {
                return Err(StoreError::Forbidden);
            }
            let key = self.key(&path).ok_or(StoreError::Forbidden)?;
            match self.holder(&key, owner).await? {
                Holder::Same => return Ok((path, key, None)),
                Holder::Other => continue, // taken: no copy needed to find out
                Holder::Free => {}
            }
            let placed = match len {
                0 => self.create_empty(&key, owner).await?.then_some(None),
                _ => (self
                    .copy_if_free(sources, if_match, note, owner, &key)
                    .await?)
                    .map(Some),
            };
            if let Some(etag) = placed {
                return Ok((path, key, etag));
            }
            // Lost to another writer of the name between the look and the copy.
            if matches!(self.holder(&key, owner).await?, Holder::Same) {
                return Ok((path, key, None));
            }
        }
        Err(other(format!(
            "no free name for {name:?} after {MAX_CANDIDATES} tries"
        )))
    }

    /// Whether an object has the name `key`, and whether it was published for `owner`.
    async fn holder(&self, key: &Key, owner: &str) -> Result<Holder, StoreError> {
        let opts = GetOptions {
            head: true,
            ..GetOptions::default()
        };
        match self.client.get_opts(key, opts).await {
            Ok(got) => {
                let label = got.attributes.get(&Attribute::Metadata(OWNER.into()));
                Ok(match label.map(|v| v.as_ref()) {
                    Some(o) if o == owner => Holder::Same,
                    _ => Holder::Other,
                })
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Holder::Free),
            Err(e) => Err(from_s3(e)),
        }
    }

    /// One attempt of [`S3Store::copy_no_clobber`] at `key`: the new object's ETag (from the
    /// completion's answer), `None` if the name was taken.
    async fn copy_if_free(
        &self,
        sources: &[(Key, u64)],
        if_match: Option<&str>,
        note: Option<&Note<'_>>,
        owner: &str,
        key: &Key,
    ) -> Result<Option<String>, StoreError> {
        // One source (instant upload) is copied in ranges whatever their size: the last part
        // may be short. Several are laid out by the plan.
        let planned: Vec<Planned> = match sources {
            [(_, len)] => copy_ranges(*len, MAX_COPY)
                .into_iter()
                .map(|range| Planned::Copy { piece: 0, range })
                .collect(),
            _ => plan(&sources.iter().map(|s| s.1).collect::<Vec<_>>(), S3_LIMITS),
        };
        if planned.len() as u64 > MAX_PARTS {
            return Err(other(format!(
                "{} pieces need more than the {MAX_PARTS} parts S3 allows",
                sources.len()
            )));
        }
        let opts = PutMultipartOptions {
            attributes: owner_attributes(owner),
            ..PutMultipartOptions::default()
        };
        let mp = self
            .s3
            .create_multipart_opts(key, opts)
            .await
            .map_err(from_s3)?;
        let done = async {
            if let Some(note) = note {
                note(key.clone(), mp.clone()).await?;
            }
            let ids: Vec<PartId> = futures_util::stream::iter(planned.into_iter().enumerate())
                .map(|(idx, part)| match part {
                    Planned::Copy { piece, range } if if_match.is_some() => {
                        let from = &sources[piece].0;
                        futures_util::future::Either::Left(
                            self.copy_part(key, &mp, idx, from, range, if_match),
                        )
                    }
                    part => futures_util::future::Either::Right(
                        self.put_planned(key, &mp, idx, part, sources),
                    ),
                })
                .buffered(PARTS_AT_ONCE)
                .try_collect()
                .await?;
            self.complete_no_clobber(key, &mp, &ids).await
        }
        .await;
        if !matches!(done, Ok(Completed::Done(_))) {
            let _ = self.s3.abort_multipart(key, &mp).await;
        }
        Ok(match done? {
            Completed::Done(etag) => Some(etag),
            Completed::Taken => None,
        })
    }

    /// An empty object at `key` if nothing is there: whether it was free.
    async fn create_empty(&self, key: &Key, owner: &str) -> Result<bool, StoreError> {
        let opts = PutOptions {
            mode: PutMode::Create,
            attributes: owner_attributes(owner),
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
    use bytes::Bytes;
    use object_store::ObjectStoreExt as _;

    // Issue 11 point 6(c), nothing published twice: a publish retried after a crash between
    // its copy and its record finds its own copy (labelled with its upload) and keeps it;
    // another upload, or an object put by other means, never counts as its own.
    #[tokio::test]
    async fn a_retried_publish_keeps_its_own_copy_and_never_takes_another() {
        let Some(((), s)) = super::super::upload::tests::fresh() else {
            return;
        };
        let src = s.state_dir("uploads").join("src.bin");
        s.client
            .put(&src, Bytes::from_static(b"hello").into())
            .await
            .unwrap();
        let root = RelPath::root();
        let taken = s.key(&root.join("g.txt").unwrap()).unwrap();
        s.client
            .put(&taken, Bytes::from_static(b"theirs").into())
            .await
            .unwrap();
        let mut got = Vec::new();
        for (owner, len, name) in [
            ("a", 5, "f.txt"),
            ("a", 5, "f.txt"), // the retry
            ("b", 5, "f.txt"),
            ("a", 5, "g.txt"),
            ("c", 0, "e"),
            ("c", 0, "e"),
            ("d", 0, "e"),
        ] {
            let (path, _, _) = s
                .copy_no_clobber(&[(src.clone(), len)], None, None, owner, &root, name)
                .await
                .unwrap();
            got.push(path.as_str().to_owned());
        }
        assert_eq!(
            got,
            [
                "f.txt",
                "f.txt",
                "f (1).txt",
                "g (1).txt",
                "e",
                "e",
                "e (1)"
            ]
        );
        let theirs = s.client.get(&taken).await.unwrap().bytes().await.unwrap();
        assert_eq!(&theirs[..], b"theirs");
    }

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
