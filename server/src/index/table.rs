//! The in-memory content index: for every indexed path, the identity (device, inode, size,
//! mtime) its SHA-256 was computed for, and the maps derived from it that the three questions
//! need: "the digest of this opened file" (by identity), "a file with this digest" (instant
//! upload) and "any file of this length" (`Ferry-Instant-Candidate`). Pure data, no I/O.

use std::collections::HashMap;
use std::sync::Arc;

use crate::store::open_cache::Identity;

pub type Sha256 = [u8; 32];

#[derive(Debug, Default)]
pub struct Table {
    by_path: HashMap<Arc<str>, (Identity, Sha256)>,
    /// Hard links share an identity: the count of paths holding it.
    by_id: HashMap<Identity, (Sha256, u32)>,
    by_sha: HashMap<Sha256, Vec<Arc<str>>>,
    by_len: HashMap<u64, Vec<Arc<str>>>,
}

impl Table {
    pub fn len(&self) -> usize {
        self.by_path.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_path.is_empty()
    }

    /// The digest of the file with identity `id`, if one was computed for exactly it.
    pub fn digest(&self, id: &Identity) -> Option<Sha256> {
        self.by_id.get(id).map(|(sha, _)| *sha)
    }

    pub fn get(&self, path: &str) -> Option<&(Identity, Sha256)> {
        self.by_path.get(path)
    }

    /// Paths recorded with `sha` and size `len`, with the identity each was hashed as.
    pub fn with_digest(&self, sha: &Sha256, len: u64) -> Vec<(Arc<str>, Identity)> {
        let paths = self.by_sha.get(sha).map(Vec::as_slice).unwrap_or_default();
        paths
            .iter()
            .filter_map(|p| self.by_path.get(p).map(|(id, _)| (p.clone(), *id)))
            .filter(|(_, id)| id.len == len)
            .collect()
    }

    pub fn has_len(&self, len: u64) -> bool {
        self.by_len.contains_key(&len)
    }

    /// Up to `max` paths recorded with size `len`, with the identity each was hashed as.
    pub fn with_len(&self, len: u64, max: usize) -> Vec<(Arc<str>, Identity)> {
        let paths = self.by_len.get(&len).map(Vec::as_slice).unwrap_or_default();
        paths
            .iter()
            .take(max)
            .filter_map(|p| self.by_path.get(p).map(|(id, _)| (p.clone(), *id)))
            .collect()
    }

    /// Records `path` as `id` with `sha`, replacing what was recorded for it.
    pub fn insert(&mut self, path: &str, id: Identity, sha: Sha256) {
        self.remove(path);
        let path: Arc<str> = path.into();
        self.by_id.entry(id).or_insert((sha, 0)).1 += 1;
        self.by_sha.entry(sha).or_default().push(path.clone());
        self.by_len.entry(id.len).or_default().push(path.clone());
        self.by_path.insert(path, (id, sha));
    }

    /// Forgets `path`; returns whether it was recorded.
    pub fn remove(&mut self, path: &str) -> bool {
        let Some((path, (id, sha))) = self.by_path.remove_entry(path) else {
            return false;
        };
        if let Some((_, n)) = self.by_id.get_mut(&id) {
            *n -= 1;
            if *n == 0 {
                self.by_id.remove(&id);
            }
        }
        if let Some(paths) = self.by_sha.get_mut(&sha) {
            paths.retain(|p| *p != path);
            if paths.is_empty() {
                self.by_sha.remove(&sha);
            }
        }
        if let Some(paths) = self.by_len.get_mut(&id.len) {
            paths.retain(|p| *p != path);
            if paths.is_empty() {
                self.by_len.remove(&id.len);
            }
        }
        true
    }

    /// Forgets `dir` and everything below it (a directory deleted or moved away).
    pub fn remove_tree(&mut self, dir: &str) -> usize {
        let prefix = format!("{dir}/");
        let gone: Vec<Arc<str>> = self
            .by_path
            .keys()
            .filter(|p| dir.is_empty() || p.starts_with(&prefix) || &***p == dir)
            .cloned()
            .collect();
        for p in &gone {
            self.remove(p);
        }
        gone.len()
    }

    /// Every recorded path, for a rescan to find the ones that went.
    pub fn paths(&self) -> Vec<Arc<str>> {
        self.by_path.keys().cloned().collect()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Identity, &Sha256)> {
        self.by_path.iter().map(|(p, (id, sha))| (&**p, id, sha))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(ino: u64, len: u64) -> Identity {
        Identity {
            dev: 1,
            ino,
            len,
            mtime: 5,
            mtime_nsec: 7,
        }
    }

    #[test]
    fn derived_maps_follow_inserts_replacements_and_removals() {
        let mut t = Table::default();
        t.insert("a", id(1, 10), [1; 32]);
        t.insert("b", id(1, 10), [1; 32]); // a hard link of a
        t.insert("d/c", id(2, 20), [2; 32]);
        assert_eq!(t.digest(&id(1, 10)), Some([1; 32]));
        assert!(t.has_len(10) && t.has_len(20) && !t.has_len(30));
        assert_eq!(t.with_len(10, 16).len(), 2);
        assert_eq!(t.with_len(10, 1).len(), 1);
        assert_eq!(t.with_digest(&[1; 32], 10).len(), 2);
        assert!(
            t.with_digest(&[1; 32], 11).is_empty(),
            "size must match too"
        );
        assert!(t.remove("a"));
        assert_eq!(t.digest(&id(1, 10)), Some([1; 32]), "b still holds it");
        // b rewritten: the old identity and digest are gone with it.
        t.insert("b", id(3, 30), [3; 32]);
        assert_eq!(t.digest(&id(1, 10)), None);
        assert!(!t.has_len(10) && t.has_len(30));
        assert!(t.with_digest(&[1; 32], 10).is_empty());
        assert_eq!(t.remove_tree("d"), 1);
        assert!(!t.has_len(20) && t.get("d/c").is_none());
        assert_eq!(t.len(), 1);
        assert!(!t.remove("nope"));
    }

    #[test]
    fn remove_tree_takes_only_that_directory() {
        let mut t = Table::default();
        for p in ["d/x", "d/e/y", "dd/z", "d"] {
            t.insert(p, id(p.len() as u64, 1), [0; 32]);
        }
        assert_eq!(t.remove_tree("d"), 3);
        assert_eq!(t.paths().len(), 1);
        assert!(t.get("dd/z").is_some());
        assert_eq!(t.remove_tree(""), 1);
        assert!(t.is_empty());
    }
}
