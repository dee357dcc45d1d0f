//! The indexer thread: load the cache, scan the tree (hashing only what the cache does not
//! vouch for), then follow inotify events and rescan periodically. One thread at nice 19 in
//! the idle I/O class, at most `--index-rate` bytes per second.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLockWriteGuard};
use std::time::{Duration, Instant, SystemTime};

use super::hash::{hash_file, lower_priority, Hashed, Pacer};
use super::table::Table;
use super::walk::{walk, Visibility, Visit};
use super::watch::Watcher;
use super::{cache, IndexOptions, Shared};
use crate::store::open_cache::Identity;

/// A file modified less than this long ago is hashed later: it may still be being written,
/// and a write within the same timestamp tick as the last one would not change its mtime.
const SETTLE: Duration = Duration::from_millis(200);
/// Progress lines during a long scan.
const PROGRESS_EVERY: Duration = Duration::from_secs(10);
/// During a long scan the cache is saved this often, so a kill loses little work.
const SAVE_DURING_SCAN: Duration = Duration::from_secs(60);

pub(super) struct Worker {
    shared: Arc<Shared>,
    cache_path: PathBuf,
    vis: Visibility,
    opts: IndexOptions,
    stop: Arc<AtomicBool>,
    watcher: Watcher,
    pacer: Pacer,
    buf: Vec<u8>,
    /// Paths to look at again once their time has come.
    later: Vec<(Instant, String)>,
    /// The table differs from the saved cache since then.
    dirty_since: Option<Instant>,
    /// Shortest time between two saves (grows with the cost of a save).
    save_gap: Duration,
}

impl Worker {
    pub(super) fn new(
        shared: Arc<Shared>,
        cache_path: PathBuf,
        vis: Visibility,
        opts: IndexOptions,
        stop: Arc<AtomicBool>,
        watcher: Watcher,
    ) -> Self {
        Self {
            pacer: Pacer::new(opts.rate).yielding_to(shared.activity.clone()),
            shared,
            cache_path,
            vis,
            opts,
            stop,
            watcher,
            buf: Vec::new(),
            later: Vec::new(),
            dirty_since: None,
            save_gap: Duration::from_secs(5),
        }
    }

    pub(super) fn run(mut self) {
        lower_priority();
        if let Some(t) = cache::load(&self.cache_path) {
            tracing::info!(entries = t.len(), "index: cache loaded");
            *self.table() = t;
            self.shared.generation.fetch_add(1, Ordering::AcqRel);
        }
        self.full_scan();
        self.shared.ready.store(true, Ordering::Release);
        let mut next_rescan = Instant::now() + self.opts.rescan;
        while !self.stopping() {
            let now = Instant::now();
            let mut wake = next_rescan;
            wake = self.later.iter().map(|(t, _)| *t).fold(wake, Instant::min);
            if let Some(d) = self.dirty_since {
                wake = wake.min(d + self.save_gap);
            }
            let changes = self.watcher.wait(wake.saturating_duration_since(now));
            if self.stopping() {
                break;
            }
            if changes.overflow || Instant::now() >= next_rescan {
                self.full_scan();
                next_rescan = Instant::now() + self.opts.rescan;
            }
            let due = self.take_due();
            let paths: HashSet<String> = changes.paths.into_iter().chain(due).collect();
            let mut left = paths.len();
            for p in paths {
                self.note_pending(left);
                self.look(&p);
                left -= 1;
            }
            self.note_pending(0);
            self.save_if_due(false);
        }
        self.save_if_due(true);
    }

    fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn table(&self) -> RwLockWriteGuard<'_, Table> {
        self.shared.table.write().unwrap_or_else(|p| p.into_inner())
    }

    /// Publishes how many files wait for hashing: `in_hand` still to look at now, and those
    /// waiting to settle.
    fn note_pending(&self, in_hand: usize) {
        let n = (in_hand + self.later.len()) as u64;
        self.shared.pending.store(n, Ordering::Relaxed);
    }

    fn take_due(&mut self) -> Vec<String> {
        let now = Instant::now();
        let (due, wait): (Vec<_>, Vec<_>) = self.later.drain(..).partition(|(t, _)| *t <= now);
        self.later = wait;
        due.into_iter().map(|(_, p)| p).collect()
    }

    /// Walks the whole tree: forgets what went, hashes what is new or changed.
    fn full_scan(&mut self) {
        let started = Instant::now();
        let mut found = Found {
            watcher: &mut self.watcher,
            files: Vec::new(),
        };
        walk(&self.shared.root.path, "", self.vis, &mut found);
        let files = found.files;
        let seen: HashSet<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
        let mut gone = 0;
        {
            let mut t = self.table();
            for p in t.paths() {
                if !seen.contains(&*p) {
                    gone += usize::from(t.remove(&p));
                }
            }
        }
        if gone > 0 {
            self.mark_dirty();
        }
        let todo: Vec<(String, Identity)> = {
            let t = self.shared.read();
            files
                .iter()
                .filter(|(p, id)| t.get(p).map(|(have, _)| have) != Some(id))
                .cloned()
                .collect()
        };
        let total: u64 = files.iter().map(|(_, id)| id.len).sum();
        let todo_bytes: u64 = todo.iter().map(|(_, id)| id.len).sum();
        tracing::info!(
            files = files.len(),
            bytes = total,
            to_hash = todo.len(),
            to_hash_bytes = todo_bytes,
            "index: tree scanned"
        );
        self.hash_all(&todo, todo_bytes);
        self.note_pending(0);
        self.shared.scans.fetch_add(1, Ordering::Relaxed);
        // Saved before "ready" is logged: a server stopped right after it restarts from it.
        self.save_if_due(true);
        tracing::info!(
            entries = self.shared.read().len(),
            hashed = todo.len(),
            secs = format_args!("{:.2}", started.elapsed().as_secs_f64()),
            yielded_to_serving_s = format_args!("{:.1}", self.pacer.yielded().as_secs_f64()),
            "index: ready"
        );
    }

    fn hash_all(&mut self, todo: &[(String, Identity)], todo_bytes: u64) {
        let (started, mut last_log, mut last_save) =
            (Instant::now(), Instant::now(), Instant::now());
        let mut done_bytes = 0u64;
        for (i, (rel, id)) in todo.iter().enumerate() {
            if self.stopping() {
                return;
            }
            self.note_pending(todo.len() - i);
            self.update(rel, *id);
            done_bytes += id.len;
            if last_log.elapsed() >= PROGRESS_EVERY {
                last_log = Instant::now();
                let mib_s = done_bytes as f64 / started.elapsed().as_secs_f64() / 1048576.0;
                tracing::info!(
                    files = i + 1,
                    of = todo.len(),
                    bytes = done_bytes,
                    of_bytes = todo_bytes,
                    mib_per_s = format_args!("{mib_s:.0}"),
                    yielded_to_serving_s =
                        format_args!("{:.1}", self.pacer.yielded().as_secs_f64()),
                    "index: hashing"
                );
            }
            if last_save.elapsed() >= SAVE_DURING_SCAN {
                last_save = Instant::now();
                self.save_if_due(true);
            }
        }
    }

    /// Looks at one path again after an event: a file, a directory (moved in), or nothing.
    fn look(&mut self, rel: &str) {
        if !self.vis.serves(rel) {
            return;
        }
        let full = self.shared.root.path.join(rel);
        match std::fs::symlink_metadata(&full) {
            Ok(md) if md.is_file() => self.update(rel, Identity::of(&md)),
            Ok(md) if md.is_dir() => {
                let mut found = Found {
                    watcher: &mut self.watcher,
                    files: Vec::new(),
                };
                walk(&self.shared.root.path, rel, self.vis, &mut found);
                for (p, id) in found.files {
                    self.update(&p, id);
                }
            }
            _ => {
                let mut t = self.table();
                let n = usize::from(t.remove(rel)) + t.remove_tree(rel);
                drop(t);
                if n > 0 {
                    self.mark_dirty();
                }
            }
        }
    }

    /// Hashes `rel` unless the table already has its digest for identity `id`.
    fn update(&mut self, rel: &str, id: Identity) {
        let known = {
            let t = self.shared.read();
            if t.get(rel).map(|(have, _)| *have) == Some(id) {
                return;
            }
            t.digest(&id)
        };
        if let Some(sha) = known {
            // Another name of a file already hashed (a hard link: a publish, an instant upload).
            self.table().insert(rel, id, sha);
            self.mark_dirty();
            return;
        }
        let mtime = SystemTime::UNIX_EPOCH
            + Duration::new(
                id.mtime.max(0) as u64,
                id.mtime_nsec.clamp(0, 999_999_999) as u32,
            );
        if SystemTime::now()
            .duration_since(mtime)
            .is_ok_and(|age| age < SETTLE)
        {
            self.later.push((Instant::now() + SETTLE, rel.to_string()));
            return;
        }
        let shared = self.shared.clone();
        let counted = |n| {
            shared.bytes_hashed.fetch_add(n, Ordering::Relaxed);
        };
        let outcome = hash_file(
            &shared.root,
            rel,
            &mut self.buf,
            &mut self.pacer,
            &self.stop,
            counted,
        );
        match outcome {
            Ok(Hashed::Done(id, sha)) => {
                self.shared.files_hashed.fetch_add(1, Ordering::Relaxed);
                self.table().insert(rel, id, sha);
                self.shared.generation.fetch_add(1, Ordering::AcqRel);
                tracing::debug!(path = rel, sha256 = %hex::encode(sha), "index: hashed");
            }
            Ok(Hashed::Changed) if !self.stopping() => {
                self.table().remove(rel);
                self.later.push((Instant::now() + SETTLE, rel.to_string()));
            }
            Ok(Hashed::Changed) => return,
            Err(e) => {
                tracing::debug!(path = rel, error = %e, "index: cannot hash");
                self.table().remove(rel);
            }
        }
        self.mark_dirty();
    }

    fn mark_dirty(&mut self) {
        self.dirty_since.get_or_insert_with(Instant::now);
    }

    /// Saves the cache if it changed and the last save is far enough back (or `now`).
    fn save_if_due(&mut self, now: bool) {
        let Some(since) = self.dirty_since else {
            return;
        };
        if !now && since.elapsed() < self.save_gap {
            return;
        }
        let started = Instant::now();
        let result = cache::save(&self.cache_path, &self.shared.read());
        match result {
            Ok(()) => {
                self.dirty_since = None;
                self.shared.cache_saves.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::warn!(path = %self.cache_path.display(), error = %e, "index: cannot save the cache");
                self.dirty_since = Some(Instant::now());
            }
        }
        // Saving costs at most about 5% of the time: a big tree is saved less often.
        self.save_gap = (started.elapsed() * 20).max(Duration::from_secs(5));
    }
}

/// Collects a walk's files and watches its directories.
struct Found<'a> {
    watcher: &'a mut Watcher,
    files: Vec<(String, Identity)>,
}

impl Visit for Found<'_> {
    fn dir(&mut self, rel: &str, full: &Path) {
        self.watcher.add(rel, full);
    }
    fn file(&mut self, rel: String, id: Identity) {
        self.files.push((rel, id));
    }
}
