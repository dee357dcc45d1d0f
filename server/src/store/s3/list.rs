//! Listings of a "directory" (a key prefix) by delimiter listing, a page at a time, streamed
//! in the store's listing order (folders first, then by name) without holding the directory.
//!
//! S3 lists keys and common prefixes together in one order, by UTF-8 bytes (the order of
//! Rust's `str`, so the same as the directory store's). Folders first therefore takes two
//! walks over the pages in general:
//!
//! 1. Every page in turn: its common prefixes go out as they come; its files are held, up to
//!    [`HELD_PAGES`] pages' worth. A directory that fits (nearly every one) is listed in this
//!    single walk, its held files sent after the last folder.
//! 2. Only past that: the files after the last held one are listed again from there
//!    (`start-after`), a page at a time.
//!
//! In memory: a page or two of entries and the held files, however large the prefix. A
//! background task reads one page ahead of the response, so S3's latency overlaps sending.
//! The backend's state (`PREFIX/.ferry/`) and, without `--allow-hidden`, dot-names are left
//! out like on disk ([`Visibility::lists`]).
//!
//! Ordering is S3's: general-purpose buckets (and MinIO, Garage, Ceph, R2, moto) list in key
//! order; S3 Express directory buckets do not, and their listings come in their order.

use std::collections::VecDeque;
use std::io;

use object_store::aws::AmazonS3;
use object_store::list::{PaginatedListOptions, PaginatedListStore as _};
use object_store::path::Path as Key;
use object_store::ListResult;

use super::dir_meta;
use crate::store::visibility::Visibility;
use crate::store::{Entry, EntryStream, StoreError};

/// Entries per batch, as the directory store sends them (one `<tbody>` of the HTML listing).
const BATCH: usize = 256;

/// Keys per page when the server is not told (S3's own maximum and default).
const S3_PAGE: usize = 1000;

/// Pages' worth of files held during the first walk: up to this many, a directory is listed
/// in one walk.
pub const HELD_PAGES: usize = 4;

/// Pages the background task reads ahead of the response.
const AHEAD: usize = 1;

/// One listing in progress.
pub struct Walk {
    client: AmazonS3,
    /// The listed prefix with its trailing `/` (`None`: the whole bucket).
    prefix: Option<String>,
    /// The directory's own key: a "folder marker" object under it is the directory itself.
    dir: Key,
    vis: Visibility,
    /// `max-keys` of each request (`None`: the server's default).
    page: Option<usize>,
    /// Files the first walk may hold.
    hold: usize,
    step: Step,
    token: Option<String>,
    /// Files of the first walk, sent after the folders.
    held: Vec<Entry>,
    /// A file did not fit in `held`: the second walk lists the files after `resume`.
    overflow: bool,
    resume: Option<String>,
    /// Entries ready to go out.
    ready: VecDeque<Entry>,
    /// Whether anything at all (hidden names too) lies under the prefix.
    seen: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// The first walk; `true` once a page was read.
    Folders(bool),
    /// The second walk; `true` once a page was read.
    Files(bool),
    Done,
}

impl Walk {
    pub fn new(client: AmazonS3, dir: Key, vis: Visibility, page: Option<usize>) -> Self {
        let prefix = (!dir.as_ref().is_empty()).then(|| format!("{}/", dir.as_ref()));
        let page = page.filter(|&p| p > 0);
        Self {
            client,
            prefix,
            dir,
            vis,
            hold: HELD_PAGES.saturating_mul(page.unwrap_or(S3_PAGE)),
            page,
            step: Step::Folders(false),
            token: None,
            held: Vec::new(),
            overflow: false,
            resume: None,
            ready: VecDeque::new(),
            seen: false,
        }
    }

    /// Reads pages until something is known to lie under the prefix, or nothing does. S3 has
    /// no empty directories: nothing there means no directory there (as a listing of a
    /// missing directory on disk).
    pub async fn exists(&mut self) -> Result<bool, StoreError> {
        while !self.seen && self.step != Step::Done {
            if let Step::Folders(true) = self.step {
                if self.token.is_none() {
                    break;
                }
            }
            self.folders_page().await?;
        }
        Ok(self.seen)
    }

    /// The entries, batch by batch, read a page ahead of the consumer on a task of their own
    /// (which ends when the stream is dropped).
    pub fn stream(mut self) -> EntryStream {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<io::Result<Vec<Entry>>>(AHEAD);
        tokio::spawn(async move {
            loop {
                let item = match self.next_batch().await {
                    Ok(Some(b)) => Ok(b),
                    Ok(None) => break,
                    Err(e) => Err(io::Error::other(e)),
                };
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        Box::pin(futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)))
    }

    /// The next batch in listing order, `None` at the end.
    async fn next_batch(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        loop {
            if !self.ready.is_empty() {
                let n = self.ready.len().min(BATCH);
                return Ok(Some(self.ready.drain(..n).collect()));
            }
            match self.step {
                Step::Folders(read) if read && self.token.is_none() => {
                    // The first walk is over: the held files follow the folders.
                    self.ready.extend(std::mem::take(&mut self.held));
                    self.step = if self.overflow {
                        Step::Files(false)
                    } else {
                        Step::Done
                    };
                }
                Step::Folders(_) => self.folders_page().await?,
                Step::Files(read) if read && self.token.is_none() => self.step = Step::Done,
                Step::Files(_) => self.files_page().await?,
                Step::Done => return Ok(None),
            }
        }
    }

    /// One page of the first walk: its folders ready to go, its files held while they fit.
    async fn folders_page(&mut self) -> Result<(), StoreError> {
        let page = self.fetch(None).await?;
        self.step = Step::Folders(true);
        // A folder marker alone (`dir/`, made by some consoles) is an empty folder.
        self.seen |= !page.common_prefixes.is_empty() || !page.objects.is_empty();
        let vis = self.vis;
        let folders = page.common_prefixes.iter().filter_map(|p| {
            let name = p.filename()?;
            vis.lists(name).then(|| folder(name))
        });
        self.ready.extend(folders);
        for o in &page.objects {
            let Some(file) = self.file(o) else { continue };
            if self.overflow || self.held.len() >= self.hold {
                self.overflow = true;
                continue;
            }
            self.resume = Some(o.location.as_ref().to_owned());
            self.held.push(file);
        }
        Ok(())
    }

    /// One page of the second walk, from after the last held file on.
    async fn files_page(&mut self) -> Result<(), StoreError> {
        let start_after = match self.step {
            Step::Files(false) => self.resume.clone(),
            _ => None,
        };
        let page = self.fetch(start_after).await?;
        self.step = Step::Files(true);
        let files: Vec<Entry> = page.objects.iter().filter_map(|o| self.file(o)).collect();
        self.ready.extend(files);
        Ok(())
    }

    /// The next page (after `start_after` for the first of a walk), the token moved on.
    async fn fetch(&mut self, start_after: Option<String>) -> Result<ListResult, StoreError> {
        let opts = PaginatedListOptions {
            offset: start_after,
            delimiter: Some("/".into()),
            max_keys: self.page,
            page_token: self.token.take(),
            ..PaginatedListOptions::default()
        };
        let got = self
            .client
            .list_paginated(self.prefix.as_deref(), opts)
            .await
            .map_err(super::from_s3)?;
        self.token = got.page_token.filter(|t| !t.is_empty());
        Ok(got.result)
    }

    /// The listed file of an object, unless it is hidden or the directory's own marker.
    fn file(&self, o: &object_store::ObjectMeta) -> Option<Entry> {
        if o.location == self.dir {
            return None;
        }
        let name = o.location.filename()?;
        self.vis.lists(name).then(|| Entry {
            name: name.to_owned(),
            is_dir: false,
            len: o.size,
            modified: o.last_modified.into(),
            sha256: None,
        })
    }
}

/// A folder's entry: S3 keeps no metadata for a common prefix.
fn folder(name: &str) -> Entry {
    let meta = dir_meta();
    Entry {
        name: name.to_owned(),
        is_dir: true,
        len: meta.len,
        modified: meta.modified,
        sha256: None,
    }
}
