//! `ferry put`: resumable, parallel, instant tus uploads.
//!
//! Per file: fingerprint it, find earlier uploads in the resume store ([`fingerprint`]), hash
//! it for instant upload ([`digest`]), create the upload(s) (`create`) or HEAD the stored
//! ones ([`client`]), send chunks over one connection per part ([`upload`]), concatenate the parts
//! (tus concatenation extension) and print where the file can be downloaded. Splitting and
//! capability parsing are pure ([`plan`]), so are the chunk size that adapts to the path
//! ([`chunking`]) and when a failed request is tried again (`attempts`); [`args`] holds the
//! command line.
//!
//! The resume entry is saved as soon as an upload exists and before any byte is sent, so a
//! kill at any moment leaves either no upload (start over) or an upload the store knows.

pub mod args;
mod attempts;
pub mod chunking;
pub mod client;
mod create;
pub mod digest;
mod done;
pub mod fingerprint;
pub mod plan;
pub mod tree;
pub mod upload;

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::progress::{Progress, Ui};
use crate::retry::Backoff;
use crate::size::format_size;
use attempts::retrying;
use client::{Created, Creation, Head, Tus};
use create::Started;
use fingerprint::{Entry, Fingerprint, Store};
use plan::{concat_final, Algo, Capabilities, ChecksumChoice};
use upload::{is_gone, Part, Sender};

/// Times one file may start over because the server forgot its upload(s).
const MAX_RESTARTS: usize = 3;

/// Settings of one `ferry put` run.
#[derive(Clone)]
pub struct Options {
    /// The tus endpoint (creation URL).
    pub endpoint: String,
    /// The first PATCH size (`--chunk-size`, else [`chunking::DEFAULT_CHUNK`]).
    pub chunk: u64,
    /// The largest PATCH: `--chunk-size` when given, else paced up to
    /// [`chunking::paced_ceiling`] ([`chunking::ChunkSizer`]).
    pub chunk_max: u64,
    /// Parts per file when the server concatenates (`-x`).
    pub parallel: usize,
    /// `--metadata` pairs, after the default `filename`.
    pub metadata: Vec<(String, String)>,
    /// Hash the file and send its sha256 so a server holding it finishes at once.
    pub instant: bool,
    /// Forget stored uploads for these files and start over.
    pub restart: bool,
    /// `--checksum`: which `Upload-Checksum` to send with each PATCH.
    pub checksum: ChecksumChoice,
    pub backoff: Backoff,
    pub max_tries: u32,
    /// `None` when no data directory exists: uploads then cannot resume.
    pub store: Option<Store>,
}

/// One run against one endpoint.
#[derive(Clone)]
pub struct Uploader {
    pub tus: Tus,
    pub opts: Options,
    pub caps: Capabilities,
    /// The `Upload-Checksum` algorithm chosen from the options and the capabilities.
    pub checksum: Option<Algo>,
}

impl Uploader {
    /// Asks the endpoint what it supports (OPTIONS).
    /// OPTIONS is optional in tus core ("the Server MAY"): a refusal other than 401/403
    /// means "assume core + creation", as tus-js-client and tuspy do (they never ask).
    pub async fn connect(tus: Tus, opts: Options) -> Result<Self> {
        let options = retrying(opts.backoff, opts.max_tries, || tus.options(&opts.endpoint));
        let caps = match options.await {
            Ok(caps) => caps,
            Err(Error::Status { status, .. })
                if (400..500).contains(&status) && status != 401 && status != 403 =>
            {
                tracing::warn!("OPTIONS answered {status}; assuming tus core with creation only");
                Capabilities {
                    extensions: vec!["creation".into()],
                    ..Capabilities::default()
                }
            }
            Err(e) => return Err(e),
        };
        tracing::debug!(?caps, "tus server capabilities");
        let protocol = |msg: String| Error::Protocol {
            url: opts.endpoint.clone(),
            msg,
        };
        if !caps.extensions.is_empty() && !caps.has("creation") {
            let offered = caps.extensions.join(",");
            return Err(protocol(format!(
                "expected the tus creation extension, the server offers {offered}"
            )));
        }
        let checksum = caps.checksum_for(opts.checksum).map_err(protocol)?;
        Ok(Self {
            tus,
            opts,
            caps,
            checksum,
        })
    }

    /// Uploads `path`; returns where it can be downloaded.
    pub async fn put(&self, path: &Path, ui: &Ui) -> Result<String> {
        self.put_file(path, ui).await.map(|(location, _)| location)
    }

    /// Uploads `path`; returns where it can be downloaded, and whether it had been uploaded
    /// completely before (nothing was sent).
    pub async fn put_file(&self, path: &Path, ui: &Ui) -> Result<(String, bool)> {
        let fp = Fingerprint::of(&self.opts.endpoint, path)?;
        if let Some(max) = self.caps.max_size.filter(|m| fp.size > *m) {
            let msg = format!(
                "{} is {} bytes but the server accepts at most {max} (Tus-Max-Size)",
                path.display(),
                fp.size
            );
            return Err(Error::Protocol {
                url: self.opts.endpoint.clone(),
                msg,
            });
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _lock = match &self.opts.store {
            Some(store) => Some(store.lock(&fp)?.ok_or_else(|| {
                let msg = format!(
                    "another ferry put is uploading this file to {}; wait for it or stop it",
                    self.opts.endpoint
                );
                Error::io(path, std::io::Error::other(msg))
            })?),
            None => None,
        };
        let progress = ui.transfer(&name);
        progress.set_total(Some(fp.size));
        let mut entry = self.load(&fp, &progress);
        if let Some(location) = self.already_done(&mut entry, &progress).await? {
            progress.finish(true, "already uploaded (--restart sends it again)");
            return Ok((location, true));
        }
        let result = self.put_tracked(path, &mut entry, &progress, ui).await;
        match &result {
            Ok(_) => progress.finish(true, &format!("done, {}", format_size(fp.size))),
            Err(_) => progress.finish(false, "failed; run the same command again to resume"),
        }
        result.map(|location| (location, false))
    }

    async fn put_tracked(
        &self,
        path: &Path,
        entry: &mut Entry,
        progress: &Arc<Progress>,
        ui: &Ui,
    ) -> Result<String> {
        let size = entry.fingerprint.size;
        if entry.sha256.is_none()
            && entry.parts.is_empty()
            && self.instant_may_apply(size, progress).await
        {
            entry.sha256 = Some(self.hash(path, size, ui).await?);
            self.save(entry)?;
        }
        for _ in 0..MAX_RESTARTS {
            match self.attempt(path, entry, progress).await {
                Err(e) if is_gone(&e) => {
                    progress.note("the server no longer knows the upload; starting over");
                    entry.parts.clear();
                    entry.final_url = None;
                    self.save(entry)?;
                }
                Ok(location) => {
                    // Kept (not removed) so that the same command run again skips the file.
                    entry.parts.clear();
                    entry.final_url = None;
                    entry.done = Some(location.clone());
                    self.save(entry)?;
                    return Ok(location);
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::Protocol {
            url: self.opts.endpoint.clone(),
            msg: format!("upload vanished {MAX_RESTARTS} times; giving up"),
        })
    }

    /// Whether the endpoint is ferryd: it answers the instant-upload question (with `?0` or
    /// `?1`), other tus servers do not. Decides how `put -r` sends the tree's structure.
    pub async fn is_ferryd(&self) -> bool {
        let asked = self.tus.instant_candidate(&self.opts.endpoint, 0).await;
        matches!(asked, Ok(Some(_)))
    }

    /// Whether hashing the file for instant upload can pay off: only when the server says it
    /// holds a file of this size. Hashing costs about 0.75 s per GiB before the first byte
    /// goes out, so it is skipped when the answer is no, when the server does not answer
    /// (no tus server but ferryd has instant upload) and when the question fails.
    async fn instant_may_apply(&self, size: u64, progress: &Progress) -> bool {
        if !self.opts.instant {
            return false;
        }
        match self.tus.instant_candidate(&self.opts.endpoint, size).await {
            Ok(Some(true)) => true,
            Ok(Some(false)) => {
                progress.verbose("the server holds no file of this size; not hashing");
                false
            }
            Ok(None) => false,
            Err(e) => {
                tracing::debug!(error = %e, "instant-upload probe failed; uploading");
                false
            }
        }
    }

    /// The whole file's sha256 for instant upload, streamed with its own progress line.
    async fn hash(&self, path: &Path, size: u64, ui: &Ui) -> Result<String> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default();
        let progress = ui.transfer(&format!("{name} (sha256)"));
        progress.set_total(Some(size));
        let (p, pr) = (path.to_path_buf(), Arc::clone(&progress));
        let sha = tokio::task::spawn_blocking(move || digest::file_sha256(&p, &pr))
            .await
            .map_err(|e| Error::io(path, std::io::Error::other(e)))?;
        progress.finish(sha.is_ok(), "hashed");
        sha
    }

    /// POST to the endpoint, retried like every request.
    async fn create_upload(&self, c: &Creation) -> Result<Created> {
        let (backoff, tries) = (self.opts.backoff, self.opts.max_tries);
        retrying(backoff, tries, || self.tus.create(&self.opts.endpoint, c)).await
    }

    /// HEAD of an upload, retried like every request (404/410 are not retried).
    async fn head_upload(&self, url: &str) -> Result<Head> {
        retrying(self.opts.backoff, self.opts.max_tries, || {
            self.tus.head(url)
        })
        .await
    }

    /// The stored entry, or a fresh one (a bad entry is reported and replaced).
    fn load(&self, fp: &Fingerprint, progress: &Progress) -> Entry {
        let Some(store) = &self.opts.store else {
            return Entry::new(fp.clone());
        };
        if self.opts.restart {
            return Entry::new(fp.clone());
        }
        match store.load(fp) {
            Ok(Some(e)) => {
                progress.verbose(&format!("resuming {} upload(s)", e.parts.len()));
                e
            }
            Ok(None) => Entry::new(fp.clone()),
            Err(e) => {
                progress.note(&format!("ignoring resume entry: {e}"));
                Entry::new(fp.clone())
            }
        }
    }

    fn save(&self, entry: &Entry) -> Result<()> {
        self.opts.store.as_ref().map_or(Ok(()), |s| s.save(entry))
    }

    /// One pass: create or resume the upload(s), send, concatenate.
    async fn attempt(
        &self,
        path: &Path,
        entry: &mut Entry,
        progress: &Arc<Progress>,
    ) -> Result<String> {
        let size = entry.fingerprint.size;
        if let Some(url) = entry.final_url.clone() {
            // A run that died after the last part: the final upload may be complete already
            // (and its parts retired), so it is asked first.
            match self.final_done(&url, size).await {
                Ok(Some(location)) => {
                    progress.set_done(size);
                    return Ok(location);
                }
                Ok(None) => {}
                Err(e) if is_gone(&e) => {
                    entry.final_url = None;
                    self.save(entry)?;
                }
                Err(e) => return Err(e),
            }
        }
        let mut resumed_published = None;
        let parts = if entry.parts.is_empty() {
            match self.create(path, entry).await? {
                Started::Done(location) => {
                    progress.set_done(entry.fingerprint.size);
                    progress.note("the server already holds this content; nothing to send");
                    return Ok(location);
                }
                Started::Parts(parts) => parts,
            }
        } else {
            let (parts, published) = self.resume(entry).await?;
            resumed_published = published;
            parts
        };
        progress.set_done(parts.iter().map(|p| p.offset).sum());
        let sent = self
            .send_parts(path, &entry.fingerprint, &parts, progress)
            .await?;
        let published = sent.or(resumed_published);
        if Fingerprint::of(&self.opts.endpoint, path)? != entry.fingerprint {
            let msg = format!(
                "{} changed during the upload; run the command again to upload the new version",
                path.display()
            );
            return Err(Error::Io {
                path: path.to_path_buf(),
                source: std::io::Error::other(msg),
            });
        }
        if parts.len() == 1 {
            return Ok(published.unwrap_or_else(|| parts[0].url.clone()));
        }
        if let Some(url) = &entry.final_url {
            if let Some(location) = self.await_final(url, size).await? {
                return Ok(location);
            }
        }
        let urls: Vec<String> = parts.iter().map(|p| p.url.clone()).collect();
        let creation = Creation {
            length: None,
            metadata: Some(self.metadata(path, entry)),
            concat: Some(concat_final(&urls)),
        };
        let done = self.create_upload(&creation).await?;
        Ok(done.published.unwrap_or(done.url))
    }

    /// Runs every part on its own task; the first error wins.
    async fn send_parts(
        &self,
        path: &Path,
        fp: &Fingerprint,
        parts: &[Part],
        progress: &Arc<Progress>,
    ) -> Result<Option<String>> {
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let sender = Sender {
            tus: self.tus.clone(),
            file: Arc::new(file),
            path: path.to_path_buf(),
            chunk: self.opts.chunk,
            chunk_max: self.opts.chunk_max,
            checksum: self.checksum,
            backoff: self.opts.backoff,
            max_tries: self.opts.max_tries,
            progress: Arc::clone(progress),
            stamp: (fp.size, fp.mtime_s, fp.mtime_ns),
        };
        let mut set = tokio::task::JoinSet::new();
        for part in parts.iter().cloned() {
            let sender = sender.clone();
            set.spawn(async move { sender.send(part).await });
        }
        let mut published = None;
        while let Some(joined) = set.join_next().await {
            let res = joined.map_err(|e| Error::io(path, std::io::Error::other(e)))?;
            published = res?.or(published);
        }
        Ok(published)
    }

    /// HEADs every stored part for its offset (tus core, HEAD); also returns where a
    /// single upload that was already complete got published.
    async fn resume(&self, entry: &Entry) -> Result<(Vec<Part>, Option<String>)> {
        let mut published = None;
        let mut parts = Vec::with_capacity(entry.parts.len());
        for (id, p) in entry.parts.iter().enumerate() {
            let head = self.head_upload(&p.url).await?;
            published = head.published.or(published);
            let len = p.end - p.start;
            if head.offset > len || head.length.is_some_and(|l| l != len) {
                let msg = format!(
                    "expected an upload of {len} bytes at offset <= {len}, got offset {} of {:?}",
                    head.offset, head.length
                );
                return Err(Error::Protocol {
                    url: p.url.clone(),
                    msg,
                });
            }
            parts.push(Part {
                id,
                url: p.url.clone(),
                range: p.start..p.end,
                offset: head.offset,
            });
        }
        Ok((parts, published))
    }
}
