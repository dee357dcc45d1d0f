//! Creating the upload(s) for a file: one plain upload, or partial uploads for `-x N` (tus
//! concatenation extension), each recorded in the resume store before any byte is sent; and
//! instant upload (a ferry extension): the creation carries the file's sha256 and a server
//! that already holds the content answers with the upload complete.

use std::ops::Range;
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;
use std::time::Duration;

use ferry_proto::tus::{encode_metadata, META_FILENAME, META_SHA256};

use super::attempts::retrying;
use super::client::{Created, Creation};
use super::fingerprint::{Entry, PartEntry};
use super::plan::{concat_final, split};
use super::upload::{is_gone, Part};
use super::Uploader;
use crate::error::Result;

impl Uploader {
    /// Creates the upload(s), recording each in the resume store before any byte is sent.
    pub(super) async fn create(&self, path: &Path, entry: &mut Entry) -> Result<Started> {
        let size = entry.fingerprint.size;
        let plan = if self.caps.can_concatenate() {
            split(size, self.opts.parallel, self.opts.chunk)
        } else {
            split(size, 1, 1)
        };
        let whole = Creation {
            length: Some(size),
            metadata: Some(self.metadata(path, entry)),
            concat: None,
        };
        let instant = entry.sha256.is_some();
        if plan.len() == 1 {
            let c = self.create_upload(&whole).await?;
            self.record(entry, vec![(0..size, c.url.clone())])?;
            if let Some(location) = self.instant_done(&c, size, instant).await? {
                return Ok(Started::Done(location));
            }
            return Ok(Started::Parts(vec![Part {
                id: 0,
                url: c.url,
                range: 0..size,
                offset: c.offset.unwrap_or(0),
            }]));
        }
        if instant {
            // Instant upload needs the sha256 on a whole-file creation; partial uploads carry
            // none. Ask once, and remove the probe again if the server lacks the content.
            let probe = self.create_upload(&whole).await?;
            if let Some(location) = self.instant_done(&probe, size, true).await? {
                return Ok(Started::Done(location));
            }
            if self.caps.has("termination") {
                let _ = self.tus.delete(&probe.url).await;
            }
        }
        let mut created = Vec::with_capacity(plan.len());
        for range in plan {
            let partial = Creation {
                length: Some(range.end - range.start),
                metadata: None,
                concat: Some("partial".into()),
            };
            created.push((range, self.create_upload(&partial).await?.url));
        }
        self.record(entry, created.clone())?;
        if self.caps.has("concatenation-unfinished") {
            // The final upload now, before any byte: a server can then write the parts'
            // bytes where they belong (ferryd does) instead of copying them at the end.
            let urls: Vec<String> = created.iter().map(|(_, url)| url.clone()).collect();
            let fin = Creation {
                length: None,
                metadata: Some(self.metadata(path, entry)),
                concat: Some(concat_final(&urls)),
            };
            match self.create_upload(&fin).await {
                Ok(c) => {
                    entry.final_url = Some(c.url);
                    self.save(entry)?;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "early final upload refused; joining at the end")
                }
            }
        }
        let parts = created
            .into_iter()
            .enumerate()
            .map(|(id, (range, url))| Part {
                id,
                url,
                range,
                offset: 0,
            });
        Ok(Started::Parts(parts.collect()))
    }

    fn record(&self, entry: &mut Entry, parts: Vec<(Range<u64>, String)>) -> Result<()> {
        entry.final_url = None;
        entry.parts = parts
            .into_iter()
            .map(|(r, url)| PartEntry {
                start: r.start,
                end: r.end,
                url,
            })
            .collect();
        self.save(entry)
    }

    /// Whether a fresh upload is already complete (instant upload): the creation answer's
    /// `Upload-Offset`, else a HEAD when we sent a sha256.
    async fn instant_done(&self, c: &Created, size: u64, ask: bool) -> Result<Option<String>> {
        let (offset, published) = match c.offset {
            Some(o) => (o, c.published.clone()),
            None if ask => {
                let h = self.head_upload(&c.url).await?;
                (h.offset, h.published.or(c.published.clone()))
            }
            None => return Ok(None),
        };
        Ok((offset == size).then(|| published.unwrap_or_else(|| c.url.clone())))
    }

    /// HEAD of a final upload ([`super::client::Tus::final_done`]), retried like every
    /// request: an instance that dies while it publishes the file must not fail the put.
    pub(super) async fn final_done(&self, url: &str, size: u64) -> Result<Option<String>> {
        retrying(self.opts.backoff, self.opts.max_tries, || {
            self.tus.final_done(url, size)
        })
        .await
    }

    /// Waits for the early final upload to complete now that every part is (ferryd completes
    /// it on the HEAD at once; other servers may join in the background). `None` if it does
    /// not within a few seconds: the caller then creates a final upload the usual way.
    pub(super) async fn await_final(&self, url: &str, size: u64) -> Result<Option<String>> {
        let mut wait = Duration::from_millis(20);
        for _ in 0..10 {
            match self.final_done(url, size).await {
                Ok(Some(location)) => return Ok(Some(location)),
                Ok(None) => {}
                Err(e) if is_gone(&e) => return Ok(None),
                Err(e) => return Err(e),
            }
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(1));
        }
        tracing::warn!(%url, "the final upload did not complete; joining the parts again");
        Ok(None)
    }

    /// `Upload-Metadata`: `filename` from the path, the user's pairs (which may replace it),
    /// and `sha256` for instant upload.
    pub(super) fn metadata(&self, path: &Path, entry: &Entry) -> String {
        let name = path.file_name().map(|n| n.as_bytes()).unwrap_or_default();
        let mut pairs: Vec<(&str, Option<&[u8]>)> = vec![(META_FILENAME, Some(name))];
        for (k, v) in &self.opts.metadata {
            pairs.retain(|(key, _)| key != k);
            pairs.push((k, Some(v.as_bytes())));
        }
        if let Some(sha) = &entry.sha256 {
            pairs.retain(|(key, _)| *key != META_SHA256);
            pairs.push((META_SHA256, Some(sha.as_bytes())));
        }
        encode_metadata(pairs)
    }
}

pub(super) enum Started {
    /// Instant upload: nothing to send; where the file is.
    Done(String),
    Parts(Vec<Part>),
}
