//! The durable queue of post-event hook calls: one file per event in the state directory
//! (`hooks/NNNNNNNNNNNNNNNNNNNN.json`, sequence-numbered), written with the house rule (temp
//! file, fsync, rename, fsync the directory) before the request that caused it answers. One
//! sender task delivers the files in sequence order, removing each only after a 2xx, so
//! events are delivered at least once and in order (per upload, and in fact overall); a
//! failure is retried with backoff (1 s doubling to 60 s) and holds the rest back. After a
//! restart, [`Queue::open`] finds the files left and the sender delivers them first.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

const MAX_BACKOFF: Duration = Duration::from_secs(60);

pub struct Queue {
    dir: PathBuf,
    next: AtomicU64,
    url: String,
    client: reqwest::Client,
    wake: Notify,
    /// Deliveries that succeeded (for tests and logs).
    delivered: AtomicU64,
}

impl Queue {
    /// Opens (creating) the queue directory; numbering continues after what is there.
    pub fn open(dir: &Path, url: String, client: reqwest::Client) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let last = pending(dir)?.last().map_or(0, |(n, _)| *n);
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            next: AtomicU64::new(last + 1),
            url,
            client,
            wake: Notify::new(),
            delivered: AtomicU64::new(0),
        }))
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    /// Writes one event durably and wakes the sender.
    pub async fn push(&self, body: &serde_json::Value) -> std::io::Result<()> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let dir = self.dir.clone();
        let bytes = serde_json::to_vec(body).map_err(std::io::Error::other)?;
        tokio::task::spawn_blocking(move || write_durably(&dir, seq, &bytes))
            .await
            .map_err(std::io::Error::other)??;
        self.wake.notify_one();
        Ok(())
    }

    /// Delivers queued events forever (spawn it once).
    pub async fn run(self: Arc<Self>) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let files = match pending(&self.dir) {
                Ok(f) => f,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot list the hook queue");
                    Vec::new()
                }
            };
            if files.is_empty() {
                self.wake.notified().await;
                continue;
            }
            for (_, path) in files {
                while !self.deliver(&path).await {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                backoff = Duration::from_secs(1);
            }
        }
    }

    /// One attempt; true when the event is done with (delivered, or unreadable).
    async fn deliver(&self, path: &Path) -> bool {
        let Ok(body) = tokio::fs::read(path).await else {
            return true; // gone: nothing to deliver
        };
        let resp = self
            .client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        match resp {
            Ok(r) if r.status().is_success() => {
                if let Err(e) = tokio::fs::remove_file(path).await {
                    tracing::warn!(error = %e, "cannot remove a delivered hook event");
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(r) => {
                tracing::warn!(status = %r.status(), "hook refused an event; will retry");
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "hook unreachable; will retry");
                false
            }
        }
    }
}

/// Queued files in sequence order.
fn pending(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        out.push((seq, e.path()));
    }
    out.sort_unstable_by_key(|(n, _)| *n);
    Ok(out)
}

fn write_durably(dir: &Path, seq: u64, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{seq:020}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, dir.join(format!("{seq:020}.json")))?;
    std::fs::File::open(dir)?.sync_all()
}
