//! The durable queue of post-event hook calls: one file per event in the state directory
//! (`hooks/NNNNNNNNNNNNNNNNNNNN-UPLOADID.json`, sequence-numbered), written with the house
//! rule (temp file, fsync, rename, fsync the directory) before the request that caused it
//! answers. Delivery is in order per upload, as tusd's hooks are: each upload's events go out
//! one after the other in sequence order, and a file is removed only after a 2xx, so every
//! event is delivered at least once. A failure is retried with backoff (1 s doubling to 60 s)
//! and holds back only the later events of the same upload: other uploads' events keep going
//! (up to [`PARALLEL`] uploads at a time, so one slow receiver cannot stall the rest either).
//! After a restart, [`Queue::open`] finds the files left and the sender delivers them first.
//!
//! Files named `NNN.json` (before the upload id was part of the name) still load: their
//! upload is read from the event's `upload.id`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Uploads whose events are being delivered at once.
pub const PARALLEL: usize = 8;

/// One queued event: the upload it is about and its file.
#[derive(Debug, Clone)]
struct Event {
    upload: String,
    path: PathBuf,
}

pub struct Queue {
    dir: PathBuf,
    next: AtomicU64,
    url: String,
    client: reqwest::Client,
    wake: Notify,
    /// Deliveries that succeeded (for tests and logs).
    delivered: AtomicU64,
    /// Events not yet delivered, by sequence number.
    waiting: Mutex<BTreeMap<u64, Event>>,
}

/// When an upload whose delivery failed is tried again, and the wait after that.
#[derive(Clone, Copy)]
struct Retry {
    at: Instant,
    backoff: Duration,
}

impl Queue {
    /// Opens (creating) the queue directory; numbering continues after what is there.
    pub fn open(dir: &Path, url: String, client: reqwest::Client) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir)?;
        let waiting = pending(dir)?;
        let last = waiting.keys().next_back().copied().unwrap_or(0);
        Ok(Arc::new(Self {
            dir: dir.to_path_buf(),
            next: AtomicU64::new(last + 1),
            url,
            client,
            wake: Notify::new(),
            delivered: AtomicU64::new(0),
            waiting: Mutex::new(waiting),
        }))
    }

    pub fn delivered(&self) -> u64 {
        self.delivered.load(Ordering::Relaxed)
    }

    fn waiting(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Event>> {
        self.waiting.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes one event about `upload` durably and wakes the sender.
    pub async fn push(&self, upload: &str, body: &serde_json::Value) -> std::io::Result<()> {
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        let upload = file_safe(upload);
        let dir = self.dir.clone();
        let bytes = serde_json::to_vec(body).map_err(std::io::Error::other)?;
        let name = format!("{seq:020}-{upload}.json");
        let path = tokio::task::spawn_blocking(move || write_durably(&dir, seq, &name, &bytes))
            .await
            .map_err(std::io::Error::other)??;
        self.waiting().insert(seq, Event { upload, path });
        self.wake.notify_one();
        Ok(())
    }

    /// Delivers queued events forever (spawn it once).
    pub async fn run(self: Arc<Self>) {
        let mut retry: HashMap<String, Retry> = HashMap::new();
        let mut busy: HashMap<tokio::task::Id, String> = HashMap::new();
        let mut tasks: JoinSet<bool> = JoinSet::new();
        loop {
            let now = Instant::now();
            let ready = self.ready(&busy, &retry, now);
            for (upload, events) in ready {
                let handle = tasks.spawn(self.clone().deliver_all(events));
                busy.insert(handle.id(), upload);
            }
            let next_retry = retry
                .iter()
                .filter(|(u, r)| r.at > now && !busy.values().any(|b| b == *u))
                .map(|(_, r)| r.at)
                .min();
            let sleep = next_retry.unwrap_or_else(|| now + Duration::from_secs(3600));
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep_until(sleep) => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    let (id, ok) = match done {
                        Ok((id, ok)) => (id, ok),
                        Err(e) => (e.id(), false),
                    };
                    if let Some(upload) = busy.remove(&id) {
                        note_outcome(&mut retry, upload, ok);
                    }
                }
            }
        }
    }

    /// The uploads to start delivering now, each with its waiting events in order: not busy,
    /// not waiting for a retry, at most [`PARALLEL`] in all, oldest first event first.
    fn ready(
        &self,
        busy: &HashMap<tokio::task::Id, String>,
        retry: &HashMap<String, Retry>,
        now: Instant,
    ) -> Vec<(String, Vec<Event>)> {
        let busy: HashSet<&String> = busy.values().collect();
        let room = PARALLEL.saturating_sub(busy.len());
        let mut groups: Vec<(String, Vec<Event>)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        for e in self.waiting().values() {
            if busy.contains(&e.upload) || retry.get(&e.upload).is_some_and(|r| r.at > now) {
                continue;
            }
            match index.get(&e.upload) {
                Some(&i) => groups[i].1.push(e.clone()),
                None if groups.len() < room => {
                    index.insert(e.upload.clone(), groups.len());
                    groups.push((e.upload.clone(), vec![e.clone()]));
                }
                None => {}
            }
        }
        groups
    }

    /// Delivers one upload's events in order; stops at the first failure (false).
    async fn deliver_all(self: Arc<Self>, events: Vec<Event>) -> bool {
        for e in events {
            if !self.deliver(&e.path).await {
                return false;
            }
            self.waiting().retain(|_, w| w.path != e.path);
        }
        true
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

/// After an upload's delivery ended: forget its backoff, or double it (pure).
fn note_outcome(retry: &mut HashMap<String, Retry>, upload: String, ok: bool) {
    if ok {
        retry.remove(&upload);
        return;
    }
    let backoff = retry.get(&upload).map_or(FIRST_BACKOFF, |r| r.backoff);
    let next = Retry {
        at: Instant::now() + backoff,
        backoff: (backoff * 2).min(MAX_BACKOFF),
    };
    retry.insert(upload, next);
}

/// An upload id as it may appear in a file name: ASCII letters and digits, at most 64.
fn file_safe(upload: &str) -> String {
    upload
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .take(64)
        .collect()
}

/// Queued events by sequence number; stray temp files (a crash before the rename) go.
fn pending(dir: &Path) -> std::io::Result<BTreeMap<u64, Event>> {
    let mut out = BTreeMap::new();
    for e in std::fs::read_dir(dir)? {
        let e = e?;
        let name = e.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.ends_with(".tmp") {
            let _ = std::fs::remove_file(e.path());
            continue;
        }
        let Some((seq, upload)) = parse_name(name) else {
            continue;
        };
        let upload = match upload {
            Some(u) => u.to_string(),
            None => legacy_upload(&e.path()),
        };
        out.insert(
            seq,
            Event {
                upload,
                path: e.path(),
            },
        );
    }
    Ok(out)
}

/// `NNN-UPLOAD.json` or (the earlier form) `NNN.json` (pure).
fn parse_name(name: &str) -> Option<(u64, Option<&str>)> {
    let stem = name.strip_suffix(".json")?;
    match stem.split_once('-') {
        Some((seq, upload)) => Some((seq.parse().ok()?, Some(upload))),
        None => Some((stem.parse().ok()?, None)),
    }
}

/// The upload of an event file named without it: its `upload.id` ("" if unreadable).
fn legacy_upload(path: &Path) -> String {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| v["upload"]["id"].as_str().map(file_safe))
        .unwrap_or_default()
}

fn write_durably(dir: &Path, seq: u64, name: &str, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let tmp = dir.join(format!("{seq:020}.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    let path = dir.join(name);
    std::fs::rename(&tmp, &path)?;
    std::fs::File::open(dir)?.sync_all()?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_and_without_the_upload() {
        assert_eq!(
            parse_name("00000000000000000007-abc123.json"),
            Some((7, Some("abc123")))
        );
        assert_eq!(parse_name("00000000000000000012.json"), Some((12, None)));
        assert_eq!(parse_name("00000000000000000012.tmp"), None);
        assert_eq!(parse_name("x-abc.json"), None);
        assert_eq!(file_safe("../a/b-c"), "abc");
    }

    #[test]
    fn open_loads_both_name_forms_in_order_and_drops_stray_temp_files() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let d = tempfile::tempdir().unwrap();
        let legacy = r#"{"event":"post-create","upload":{"id":"aaaa"}}"#;
        std::fs::write(d.path().join("00000000000000000003.json"), legacy).unwrap();
        std::fs::write(d.path().join("00000000000000000005-bbbb.json"), "{}").unwrap();
        std::fs::write(d.path().join("00000000000000000009.tmp"), "half").unwrap();
        std::fs::write(d.path().join("README"), "not an event").unwrap();
        let client = reqwest::Client::builder().build().unwrap();
        let q = Queue::open(d.path(), "http://127.0.0.1:9/".into(), client).unwrap();
        let waiting: Vec<(u64, String)> = q
            .waiting()
            .iter()
            .map(|(n, e)| (*n, e.upload.clone()))
            .collect();
        assert_eq!(waiting, [(3, "aaaa".to_string()), (5, "bbbb".to_string())]);
        assert!(!d.path().join("00000000000000000009.tmp").exists());
        assert_eq!(
            q.next.load(Ordering::Relaxed),
            6,
            "numbering goes on after the last"
        );
    }

    #[test]
    fn backoff_doubles_per_upload_and_resets_on_success() {
        let mut r = HashMap::new();
        note_outcome(&mut r, "a".into(), false);
        note_outcome(&mut r, "a".into(), false);
        note_outcome(&mut r, "b".into(), false);
        assert_eq!(r["a"].backoff, Duration::from_secs(4));
        assert_eq!(r["b"].backoff, Duration::from_secs(2));
        for _ in 0..10 {
            note_outcome(&mut r, "a".into(), false);
        }
        assert_eq!(r["a"].backoff, MAX_BACKOFF);
        note_outcome(&mut r, "a".into(), true);
        assert!(!r.contains_key("a") && r.contains_key("b"));
    }
}
