//! `ferry get -r URL/`: a directory tree. [`walk`] reads the listings (ferryd's JSON, or any
//! autoindex HTML: [`listing`]), [`scope`] decides which links belong to the tree and turns
//! each into a checked relative path; then every file goes through the single-file
//! [`crate::get::download`] (probe, segments, journal, verify, publish), `-j` at a time.
//!
//! The tree is saved as one folder named like the start URL's last segment (`cp -r`,
//! `scp -r`), inside `-d DIR` or the current directory; `-o DIR` names that folder instead.
//! A file that is already there with the remote length counts as complete and is not
//! fetched again (the listing's size, else a HEAD), so running the same command again
//! finishes what is missing and is a no-op once everything is there.

pub mod listing;
pub mod scope;
pub mod walk;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::{Client, Url};
use tokio::sync::{watch, Semaphore};

use super::{download, probe, Options};
use crate::error::{Error, Result};
use crate::progress::{Progress, Ui};
use crate::summary::{Outcome, Tally};
use scope::Scope;
use walk::{walk, RemoteFile};

/// Downloads the tree below `start`, `jobs` files at a time; returns the tally.
pub async fn get_tree(
    client: &Client,
    start: &str,
    opts: &Options,
    jobs: usize,
    ui: &Ui,
    interrupt: watch::Receiver<bool>,
) -> Result<Arc<Tally>> {
    let url = Url::parse(start).map_err(|e| Error::Usage(format!("invalid URL {start:?}: {e}")))?;
    let scope = Scope::new(url);
    let root = match (&opts.output, &opts.dir) {
        (Some(o), _) => o.clone(),
        (None, Some(d)) => d.join(scope.folder_name()),
        (None, None) => PathBuf::from(scope.folder_name()),
    };
    let tree = walk(client, &scope, &opts.worker).await?;
    let tally = Arc::new(Tally::default());
    for why in &tree.refused {
        ui.error(&format!("ferry get: {}: not followed: {why}", scope.root()));
        tally.record(Outcome::Failed, 0);
    }
    for why in &tree.failed_dirs {
        ui.error(&format!("ferry get: listing failed: {why}"));
        tally.record(Outcome::Failed, 0);
    }
    let overall = ui.transfer("total");
    let known: Option<u64> = tree.files.iter().map(|f| f.size).sum();
    overall.set_total(known);
    let ticker = spawn_ticker(Arc::clone(&overall), Arc::clone(&tally), tree.files.len());
    let files_ui = ui.under(Arc::clone(&overall));
    let gate = Arc::new(Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for file in tree.files {
        let job = Job {
            client: client.clone(),
            opts: Options {
                output: Some(file.rel.to_path()),
                dir: Some(root.clone()),
                ..opts.clone()
            },
            ui: files_ui.clone(),
            interrupt: interrupt.clone(),
            tally: Arc::clone(&tally),
        };
        let gate = Arc::clone(&gate);
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            job.run(file).await;
        });
    }
    while set.join_next().await.is_some() {}
    ticker.abort();
    crate::summary::finish_overall(&overall, &tally, ui);
    Ok(tally)
}

/// One file of the tree, with everything its task needs.
struct Job {
    client: Client,
    opts: Options,
    ui: Ui,
    interrupt: watch::Receiver<bool>,
    tally: Arc<Tally>,
}

impl Job {
    async fn run(self, file: RemoteFile) {
        let shown = file.rel.as_slash_string();
        if *self.interrupt.borrow() {
            self.tally.record(Outcome::Failed, 0);
            return;
        }
        self.tally.started();
        let path = self
            .opts
            .dir
            .clone()
            .unwrap_or_default()
            .join(file.rel.to_path());
        let result = match self.already_there(&file, &path).await {
            Ok(Some(len)) => Ok((Outcome::Skipped, len)),
            Ok(None) => {
                let url = file.url.as_str();
                let got = download(
                    &self.client,
                    url,
                    &self.opts,
                    &self.ui,
                    self.interrupt.clone(),
                );
                got.await.map(|p| (Outcome::Done, local_len(&p)))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((outcome, len)) => self.tally.record(outcome, len),
            Err(e) => {
                self.ui.error(&format!("ferry get: {shown}: {e}"));
                self.tally.record(Outcome::Failed, 0);
            }
        }
    }

    /// `Some(len)` when `path` already holds a file of the remote length (the listing's, or
    /// a HEAD's); an error when it holds something else and `--overwrite` was not given.
    async fn already_there(&self, file: &RemoteFile, path: &Path) -> Result<Option<u64>> {
        if self.opts.overwrite {
            return Ok(None);
        }
        let Ok(meta) = std::fs::metadata(path) else {
            return Ok(None);
        };
        let remote = match file.size {
            Some(size) => Some(size),
            None => {
                let (timeout, auth) = (self.opts.worker.timeout, &self.opts.worker.auth);
                probe::probe_as(&self.client, file.url.as_str(), timeout, auth)
                    .await?
                    .length
            }
        };
        if meta.is_file() && remote == Some(meta.len()) {
            return Ok(Some(meta.len()));
        }
        let remote = remote.map_or("unknown".to_string(), |r| format!("{r} bytes"));
        let msg = format!(
            "exists and differs from the remote file (here {} bytes, there {remote}); use --overwrite to replace it",
            meta.len()
        );
        Err(Error::io(path, std::io::Error::other(msg)))
    }
}

fn local_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Refreshes the overall line: bytes, files done of all, failed, in flight.
pub(crate) fn spawn_ticker(
    overall: Arc<Progress>,
    tally: Arc<Tally>,
    total: usize,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_millis(200));
        loop {
            every.tick().await;
            overall.set_status(tally.status(total));
            overall.tick();
        }
    })
}
