//! Mirrors (issue 9 §4): the servers one download takes bytes from, whether a mirror may be
//! mixed with the main URL at all, and which server each new request goes to.
//!
//! Bytes from two servers are mixed only when they are proven to be the same file
//! ([`same_content`]): `--checksum` was given (checked at the end, see [`super::liar`]), or
//! both servers send the same RFC 9530 digest, or the same strong ETag (RFC 9110 §8.8.3: a
//! strong ETag names one exact byte sequence). Anything else is only a fallback, used from
//! zero if the servers proven so far all fail (aria2 mixes any URIs of one length).
//!
//! Which server: a worker's first request goes to the servers in turn (each gets measured);
//! later ones to the server with the best smoothed per-connection speed, after any alive
//! server nobody has measured yet (aria2's "feedback" URI selector works the same way). A
//! connection far slower than the others is retried on a fresh one ([`super::speed`]), which
//! then goes to the fastest server, and steals take from the segment that would finish last
//! ([`super::plan`]): together, a slow mirror loses its segments to fast ones.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use super::probe::{Probe, Validator};

/// Index of a server in [`Sources`]; 0 is the reference (the main URL, or the first that
/// answered).
pub type SourceId = usize;

/// Why a mirror may be mixed with the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proof {
    /// `--checksum`: the whole file is verified at the end, the culprit found if it fails.
    Checksum,
    /// The same `Repr-Digest`/`Content-Digest` value.
    Digest,
    /// The same strong ETag.
    StrongEtag,
}

/// Whether `mirror` is proven to serve the very bytes `reference` serves. Both must have a
/// length, the same one, and ranges; a digest that differs disproves it whatever else holds.
pub fn same_content(reference: &Probe, mirror: &Probe, checksum_given: bool) -> Option<Proof> {
    let ranged = |p: &Probe| p.ranges && p.length.is_some();
    if !ranged(reference) || !ranged(mirror) || reference.length != mirror.length {
        return None;
    }
    let digests = match (&reference.digest, &mirror.digest) {
        (Some(a), Some(b)) if a.algo == b.algo => Some(a.digest == b.digest),
        _ => None,
    };
    let etag = |p: &Probe| p.validator.etag.clone();
    match (digests, checksum_given) {
        (Some(false), _) => None,
        (_, true) => Some(Proof::Checksum),
        (Some(true), false) => Some(Proof::Digest),
        (None, false) if etag(reference).is_some() && etag(reference) == etag(mirror) => {
            Some(Proof::StrongEtag)
        }
        (None, false) => None,
    }
}

/// One server of a download.
#[derive(Debug)]
pub struct Source {
    pub url: String,
    /// Its own validator, for its `If-Range` and to see it change.
    pub validator: Validator,
    dead: AtomicBool,
    /// Smoothed per-connection bytes/s seen from it; 0 until measured.
    speed: AtomicU64,
    /// Connections fetching from it now.
    busy: AtomicUsize,
}

/// The servers of one round and which one each worker uses.
#[derive(Debug)]
pub struct Sources {
    list: Vec<Source>,
    /// Worker -> the server of its current (or last) request; `usize::MAX` before the first.
    on: Vec<AtomicUsize>,
}

const NONE: usize = usize::MAX;

impl Sources {
    /// `servers[0]` is the reference. `workers`: how many workers pick servers.
    pub fn new(servers: Vec<(String, Validator)>, workers: usize) -> Self {
        let list = servers
            .into_iter()
            .map(|(url, validator)| Source {
                url,
                validator,
                dead: AtomicBool::new(false),
                speed: AtomicU64::new(0),
                busy: AtomicUsize::new(0),
            })
            .collect();
        Self {
            list,
            on: (0..workers).map(|_| AtomicUsize::new(NONE)).collect(),
        }
    }

    pub fn get(&self, id: SourceId) -> Option<&Source> {
        self.list.get(id)
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    fn alive(&self) -> impl Iterator<Item = (SourceId, &Source)> {
        self.list
            .iter()
            .enumerate()
            .filter(|(_, s)| !s.dead.load(Ordering::Relaxed))
    }

    pub fn alive_count(&self) -> usize {
        self.alive().count()
    }

    pub fn is_alive(&self, id: SourceId) -> bool {
        self.list
            .get(id)
            .is_some_and(|s| !s.dead.load(Ordering::Relaxed))
    }

    /// Chooses the server of worker `worker`'s next request and counts it busy until
    /// [`done`](Self::done). `None` when every server is dead.
    pub fn pick(&self, worker: usize) -> Option<SourceId> {
        let alive: Vec<(SourceId, &Source)> = self.alive().collect();
        let first = self.on.get(worker).map(|o| o.load(Ordering::Relaxed)) == Some(NONE);
        let chosen = if alive.is_empty() {
            return None;
        } else if first {
            alive[worker % alive.len()].0
        } else if let Some((id, _)) = alive.iter().find(|(_, s)| {
            s.speed.load(Ordering::Relaxed) == 0 && s.busy.load(Ordering::Relaxed) == 0
        }) {
            *id
        } else {
            alive
                .iter()
                .max_by_key(|(id, s)| (s.speed.load(Ordering::Relaxed), std::cmp::Reverse(*id)))
                .map(|(id, _)| *id)?
        };
        if let Some(o) = self.on.get(worker) {
            o.store(chosen, Ordering::Relaxed);
        }
        self.list[chosen].busy.fetch_add(1, Ordering::Relaxed);
        Some(chosen)
    }

    /// Worker's request to `id` ended.
    pub fn done(&self, id: SourceId) {
        if let Some(s) = self.list.get(id) {
            let _ = s
                .busy
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1));
        }
    }

    /// A connection to `id` measured `bytes_per_sec` over one window: smoothed 1/4 new.
    pub fn observe(&self, id: SourceId, bytes_per_sec: u64) {
        if let Some(s) = self.list.get(id) {
            let _ = s
                .speed
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                    Some(match old {
                        0 => bytes_per_sec,
                        _ => old - old / 4 + bytes_per_sec / 4,
                    })
                });
        }
    }

    /// The smoothed speed of the server worker `worker` last used (0 unknown).
    pub fn speed_of_worker(&self, worker: usize) -> u64 {
        let on = self
            .on
            .get(worker)
            .map_or(NONE, |o| o.load(Ordering::Relaxed));
        self.list
            .get(on)
            .map_or(0, |s| s.speed.load(Ordering::Relaxed))
    }

    /// The best smoothed per-connection speed of an alive server (0 unknown).
    pub fn best_speed(&self) -> u64 {
        self.alive()
            .map(|(_, s)| s.speed.load(Ordering::Relaxed))
            .max()
            .unwrap_or(0)
    }

    /// Stops using `id`; false when it was the last alive server (then it stays alive:
    /// the caller fails the round instead).
    pub fn drop_source(&self, id: SourceId) -> bool {
        if self.alive().filter(|(i, _)| *i != id).count() == 0 {
            return false;
        }
        if let Some(s) = self.list.get(id) {
            s.dead.store(true, Ordering::Relaxed);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::get::checksum::{Algo, Expected};

    fn probe(len: u64, etag: &str, digest: Option<u8>) -> Probe {
        Probe {
            length: Some(len),
            ranges: true,
            validator: Validator {
                etag: etag.starts_with('"').then(|| etag.to_string()),
                last_modified: None,
                any_etag: Some(etag.to_string()),
            },
            file_name: None,
            digest: digest.map(|d| Expected {
                algo: Algo::Sha256,
                digest: vec![d; 32],
                source: "Repr-Digest",
            }),
        }
    }

    #[test]
    fn mixing_needs_a_proof() {
        let main = probe(10, "\"a\"", None);
        assert_eq!(
            same_content(&main, &probe(10, "\"a\"", None), false),
            Some(Proof::StrongEtag)
        );
        assert_eq!(same_content(&main, &probe(10, "\"b\"", None), false), None);
        assert_eq!(
            same_content(&main, &probe(10, "W/\"a\"", None), false),
            None,
            "weak"
        );
        assert_eq!(
            same_content(&main, &probe(10, "\"b\"", None), true),
            Some(Proof::Checksum)
        );
        assert_eq!(
            same_content(&main, &probe(11, "\"a\"", None), true),
            None,
            "length"
        );
        let mut no_ranges = probe(10, "\"a\"", None);
        no_ranges.ranges = false;
        assert_eq!(same_content(&main, &no_ranges, true), None);
    }

    #[test]
    fn digests_prove_and_disprove() {
        let main = probe(10, "\"a\"", Some(1));
        assert_eq!(
            same_content(&main, &probe(10, "\"x\"", Some(1)), false),
            Some(Proof::Digest)
        );
        // A different digest disproves even a matching ETag or a --checksum.
        assert_eq!(
            same_content(&main, &probe(10, "\"a\"", Some(2)), false),
            None
        );
        assert_eq!(
            same_content(&main, &probe(10, "\"a\"", Some(2)), true),
            None
        );
        // Only one side has a digest: the ETag decides.
        assert_eq!(
            same_content(&main, &probe(10, "\"a\"", None), false),
            Some(Proof::StrongEtag)
        );
    }

    #[test]
    fn first_requests_spread_then_the_fastest_wins() {
        let v = Validator::default;
        let s = Sources::new(
            vec![("a".into(), v()), ("b".into(), v()), ("c".into(), v())],
            4,
        );
        let firsts: Vec<_> = (0..4).map(|w| s.pick(w).unwrap()).collect();
        assert_eq!(firsts, vec![0, 1, 2, 0]);
        s.observe(0, 2 << 20);
        s.observe(1, 8 << 20);
        s.observe(2, 32 << 20);
        for id in firsts {
            s.done(id);
        }
        assert_eq!(s.pick(1), Some(2));
        assert_eq!(s.speed_of_worker(1), 32 << 20);
        assert_eq!(s.best_speed(), 32 << 20);
        assert!(s.drop_source(2));
        assert_eq!(s.pick(1), Some(1));
        assert!(s.drop_source(0));
        assert!(!s.drop_source(1), "the last server is never dropped");
        assert_eq!(s.alive_count(), 1);
    }

    #[test]
    fn an_unmeasured_idle_server_is_tried_before_the_fastest() {
        let v = Validator::default;
        let s = Sources::new(vec![("a".into(), v()), ("b".into(), v())], 2);
        assert_eq!(s.pick(0), Some(0));
        s.observe(0, 100);
        s.done(0);
        assert_eq!(
            s.pick(0),
            Some(1),
            "b was never measured and nobody is on it"
        );
        assert_eq!(s.pick(0), Some(0), "b is busy now: the fastest measured");
    }
}
