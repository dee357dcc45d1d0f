//! Directory listings, in two steps so that a directory of 100,000 entries streams:
//!
//! 1. [`names`] reads the names (`getdents`; the kind comes with each name) and sorts them,
//!    folders first, then by name, as nginx's autoindex orders them. Only a symlink is looked
//!    at here, because whether it may be listed and whether it is a folder depend on its
//!    target.
//! 2. [`batches`] looks up sizes and dates a batch at a time on the blocking pool, one batch
//!    ahead of the one being sent: the response starts at once, and `statx` of the next
//!    batch overlaps rendering and sending this one (nginx stats every entry, then renders
//!    the whole page, then sends it). Each `statx` is relative to the listed directory's
//!    descriptor: no path is built and the kernel walks no `/proc/self/fd` link per entry.
//!
//! In memory: the names, and a batch or two of entries.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::beneath::fd_path;
use super::{in_state_area, statx_at, FsOptions};
use crate::index::Shared;
use crate::store::open_cache::Identity;
use crate::store::{Entry, EntryStream, StoreError};

/// Entries per batch: a `<tbody>` of the HTML listing.
pub const BATCH: usize = 256;

/// A listed name, looked at (`statx`) later, unless it is a symlink, resolved at once.
pub enum Named {
    Later { name: String, is_dir: bool },
    Resolved(Entry),
}

impl Named {
    fn key(&self) -> (bool, &str) {
        match self {
            Named::Later { name, is_dir } => (!is_dir, name),
            Named::Resolved(e) => (!e.is_dir, &e.name),
        }
    }
}

/// The names in `dir` (a path through an opened descriptor), folders first, then by name,
/// with the same visibility policy as [`super::FsStore::resolve`]: hidden names only when
/// allowed, a symlink only when its target is allowed, never one into the state area.
pub fn names(
    root: &Path,
    state: &Path,
    opts: &FsOptions,
    dir: &File,
    index: Option<&Shared>,
) -> Result<Vec<Named>, StoreError> {
    let path = fd_path(dir);
    let mut out = Vec::new();
    for ent in std::fs::read_dir(&path).map_err(StoreError::from_io)? {
        let ent = ent?;
        let Ok(name) = ent.file_name().into_string() else {
            continue; // not UTF-8: cannot be linked to, so not listed
        };
        if !opts.visibility().lists(&name) {
            continue;
        }
        // The kind from `getdents`, or one `lstat` where the file system does not tell.
        let Ok(kind) = ent.file_type() else {
            continue; // vanished
        };
        if !kind.is_symlink() {
            out.push(Named::Later {
                name,
                is_dir: kind.is_dir(),
            });
            continue;
        }
        let full = path.join(&name);
        match full.canonicalize() {
            Ok(real) if in_state_area(root, state, &real) => continue,
            Ok(real) if opts.allow_symlinks_outside || real.starts_with(root) => {}
            _ => continue,
        }
        let Ok(md) = std::fs::metadata(&full) else {
            continue; // dangling link
        };
        out.push(Named::Resolved(Entry {
            name,
            is_dir: md.is_dir(),
            len: md.len(),
            modified: md.modified().unwrap_or(UNIX_EPOCH),
            sha256: index
                .filter(|_| md.is_file())
                .and_then(|ix| ix.digest(&Identity::of(&md))),
        }));
    }
    out.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
    Ok(out)
}

/// The entries of `names` in order, [`BATCH`] at a time, each batch looked up on the blocking
/// pool while the previous one is sent. An entry that vanished meanwhile is left out.
pub fn batches(dir: File, names: Vec<Named>, index: Option<Arc<Shared>>) -> EntryStream {
    let dir = Arc::new(dir);
    let mut rest = names.into_iter();
    let mut start = move || {
        let batch: Vec<Named> = rest.by_ref().take(BATCH).collect();
        if batch.is_empty() {
            return None;
        }
        let (dir, index) = (dir.clone(), index.clone());
        Some(tokio::task::spawn_blocking(move || {
            let index = index.as_deref();
            batch
                .into_iter()
                .filter_map(|n| look_up(&dir, n, index))
                .collect::<Vec<Entry>>()
        }))
    };
    let first = start();
    Box::pin(futures_util::stream::unfold(
        (first, start),
        |(next, mut start)| async move {
            let batch = next?.await.map_err(io::Error::other);
            let following = start();
            Some((batch, (following, start)))
        },
    ))
}

/// One entry, looked at now. `lstat` semantics: a name that became a symlink since it was
/// read is left out (its target was never checked).
fn look_up(dir: &File, named: Named, index: Option<&Shared>) -> Option<Entry> {
    match named {
        Named::Resolved(e) => Some(e),
        Named::Later { name, .. } => {
            let flags = libc::AT_SYMLINK_NOFOLLOW | libc::AT_STATX_SYNC_AS_STAT;
            let st = statx_at(dir, &name, flags).ok()?;
            let kind = u32::from(st.stx_mode) & libc::S_IFMT;
            if kind == libc::S_IFLNK {
                return None;
            }
            let mtime = u64::try_from(st.stx_mtime.tv_sec).unwrap_or(0);
            let nanos = st.stx_mtime.tv_nsec.min(999_999_999);
            let sha256 = (kind == libc::S_IFREG)
                .then(|| index?.digest(&Identity::of_statx(&st)))
                .flatten();
            Some(Entry {
                name,
                is_dir: kind == libc::S_IFDIR,
                len: st.stx_size,
                modified: UNIX_EPOCH
                    .checked_add(Duration::new(mtime, nanos))
                    .unwrap_or(UNIX_EPOCH),
                sha256,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::TryStreamExt as _;

    async fn listed(dir: File, names: Vec<Named>) -> Vec<(String, bool, u64)> {
        let batches: Vec<Vec<Entry>> = batches(dir, names, None).try_collect().await.unwrap();
        assert!(batches.iter().all(|b| b.len() <= BATCH));
        let all = batches.into_iter().flatten();
        all.map(|e| (e.name, e.is_dir, if e.is_dir { 0 } else { e.len }))
            .collect()
    }

    #[tokio::test]
    async fn folders_first_then_names_and_hidden_and_outside_links_left_out() {
        let d = tempfile::tempdir().unwrap();
        let (root, outside) = (d.path().join("root"), d.path().join("outside"));
        std::fs::create_dir_all(root.join("zdir")).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::write(root.join("b"), b"bb").unwrap();
        std::fs::write(root.join("A"), b"a").unwrap();
        std::fs::write(root.join(".hidden"), b"h").unwrap();
        std::fs::write(outside.join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.join("secret"), root.join("out")).unwrap();
        std::os::unix::fs::symlink(root.join("zdir"), root.join("adir")).unwrap();
        std::os::unix::fs::symlink(root.join("b"), root.join("c")).unwrap();
        let dir = File::open(&root).unwrap();
        let opts = FsOptions::default();
        let names = names(&root, &d.path().join("state"), &opts, &dir, None).unwrap();
        assert_eq!(
            listed(dir, names).await,
            [
                ("adir".into(), true, 0),
                ("zdir".into(), true, 0),
                ("A".into(), false, 1),
                ("b".into(), false, 2),
                ("c".into(), false, 2),
            ]
        );
    }

    #[tokio::test]
    async fn an_entry_gone_or_turned_symlink_before_its_batch_is_left_out() {
        let d = tempfile::tempdir().unwrap();
        for i in 0..(BATCH + 10) {
            std::fs::write(d.path().join(format!("f{i:04}")), b"x").unwrap();
        }
        let dir = File::open(d.path()).unwrap();
        let opts = FsOptions::default();
        let names = names(d.path(), &d.path().join("s"), &opts, &dir, None).unwrap();
        std::fs::remove_file(d.path().join("f0003")).unwrap();
        std::fs::remove_file(d.path().join("f0260")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("f0260")).unwrap();
        let got = listed(dir, names).await;
        assert_eq!(got.len(), BATCH + 8);
        assert!(!got.iter().any(|(n, ..)| n == "f0003" || n == "f0260"));
    }
}
