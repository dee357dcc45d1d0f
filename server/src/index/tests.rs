//! The indexer against real trees: restart without rehashing, a damaged cache rebuilt, new
//! and rewritten files picked up by inotify, visibility rules.

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use super::*;

/// Polls `probe` every 10 ms for at most 10 s (background work on a loaded machine).
pub(crate) fn until<T>(mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "condition not reached within 10 s"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn start(root: &Path) -> Index {
    let vis = Visibility {
        allow_hidden: false,
    };
    Index::start(root, &root.join(".ferry"), vis, IndexOptions::default()).unwrap()
}

fn ready(ix: &Index) -> IndexStats {
    until(|| Some(ix.shared().stats()).filter(|s| s.ready))
}

fn digest_of(ix: &Index, path: &Path) -> Option<[u8; 32]> {
    ix.shared()
        .digest(&Identity::of(&std::fs::metadata(path).ok()?))
}

/// A file older than the settle time, so the indexer hashes it at once.
fn old_file(path: &Path, data: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, data).unwrap();
    let f = std::fs::File::options().write(true).open(path).unwrap();
    f.set_modified(std::time::SystemTime::now() - Duration::from_secs(5))
        .unwrap();
}

fn tree(root: &Path, n: usize) {
    for i in 0..n {
        old_file(
            &root.join(format!("d{}/f{i}", i % 3)),
            format!("file {i}").as_bytes(),
        );
    }
}

#[test]
fn restart_over_an_unchanged_tree_hashes_nothing() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path(), 20);
    let first = start(d.path());
    let s = ready(&first);
    assert_eq!((s.files_hashed, s.entries), (20, 20));
    drop(first);
    let again = start(d.path());
    let s = ready(&again);
    assert_eq!((s.files_hashed, s.entries), (0, 20), "nothing rehashed");
    let want: [u8; 32] = Sha256::digest(b"file 4").into();
    assert_eq!(digest_of(&again, &d.path().join("d1/f4")), Some(want));
    // One file changed while the server was down: only it is hashed.
    old_file(&d.path().join("d1/f4"), b"FILE 4");
    drop(again);
    let third = start(d.path());
    assert_eq!(ready(&third).files_hashed, 1);
    let want: [u8; 32] = Sha256::digest(b"FILE 4").into();
    assert_eq!(digest_of(&third, &d.path().join("d1/f4")), Some(want));
}

#[test]
fn a_truncated_or_corrupted_cache_is_rebuilt_not_trusted() {
    let d = tempfile::tempdir().unwrap();
    tree(d.path(), 5);
    drop(ready_index(d.path()));
    let cache = d.path().join(".ferry").join(CACHE_FILE);
    let raw = std::fs::read(&cache).unwrap();
    std::fs::write(&cache, &raw[..raw.len() / 2]).unwrap();
    let ix = start(d.path());
    assert_eq!(
        ready(&ix).files_hashed,
        5,
        "a truncated cache is not trusted"
    );
    drop(ix);
    // A digest flipped on disk (with its line intact) fails the checksum.
    let text = std::fs::read_to_string(&cache).unwrap();
    let flipped = text.replacen(" 0", " 1", 1);
    assert_ne!(flipped, text);
    std::fs::write(&cache, flipped).unwrap();
    let ix = start(d.path());
    assert_eq!(ready(&ix).files_hashed, 5);
    let want: [u8; 32] = Sha256::digest(b"file 2").into();
    assert_eq!(digest_of(&ix, &d.path().join("d2/f2")), Some(want));
}

fn ready_index(root: &Path) -> Index {
    let ix = start(root);
    ready(&ix);
    ix
}

#[test]
fn new_and_rewritten_files_are_seen_without_a_rescan() {
    let d = tempfile::tempdir().unwrap();
    let ix = ready_index(d.path());
    let p = d.path().join("new/a.bin");
    std::fs::create_dir(d.path().join("new")).unwrap();
    std::fs::write(&p, b"first").unwrap();
    let first = until(|| digest_of(&ix, &p));
    assert_eq!(first, <[u8; 32]>::from(Sha256::digest(b"first")));
    // Rewritten in place, same size: the new identity never maps to the old digest.
    std::fs::write(&p, b"secnd").unwrap();
    let now = Identity::of(&std::fs::metadata(&p).unwrap());
    assert_ne!(ix.shared().digest(&now), Some(first));
    let second = until(|| ix.shared().digest(&now));
    assert_eq!(second, <[u8; 32]>::from(Sha256::digest(b"secnd")));
    // Deleted: forgotten.
    std::fs::remove_file(&p).unwrap();
    until(|| (ix.shared().stats().entries == 0).then_some(()));
    // Hidden files and the state area stay out.
    old_file(&d.path().join(".secret"), b"x");
    old_file(&d.path().join(".ferry/uploads/u.bin"), b"y");
    old_file(&d.path().join("seen"), b"z");
    until(|| digest_of(&ix, &d.path().join("seen")));
    assert_eq!(ix.shared().stats().entries, 1);
}

#[test]
fn find_answers_only_for_the_unchanged_file() {
    let d = tempfile::tempdir().unwrap();
    old_file(&d.path().join("a"), b"same");
    let ix = ready_index(d.path());
    let sha: [u8; 32] = Sha256::digest(b"same").into();
    assert_eq!(ix.shared().find(&sha, 4).unwrap().0.as_str(), "a");
    assert!(ix.shared().has_len(4) && !ix.shared().has_len(5));
    assert!(ix.shared().find(&sha, 5).is_none());
    old_file(&d.path().join("a"), b"SAME");
    assert!(ix.shared().find(&sha, 4).is_none());
}
