//! `ferry put -r DIR URL`: every regular file below DIR, `-j` at a time, each through the
//! single-file [`Uploader::put_file`] (resume store, parts, instant upload), so each file
//! resumes on its own and a re-run skips the files whose upload finished.
//!
//! The structure travels in metadata. DIR's own name is kept (`cp -r`, `scp -r`): `photos/a/b.jpg`
//! below `ferry put -r photos` is published by ferryd as `photos/a/b.jpg`, under the `dir`
//! given with `--metadata dir=...` if any. ferryd takes the folder from `dir` and the name
//! from `filename`; other tus servers have no `dir`, so they get the relative path in
//! `filename` (`photos/a/b.jpg`), which is what Uppy and tus-js-client users send too. ferryd
//! is recognised by its answer to the instant-upload question (`Ferry-Instant-Candidate`).
//!
//! Symbolic links, sockets and other special files are skipped with a note (rclone skips
//! symlinks by default too); directories are not followed through links, so a loop cannot
//! form.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use ferry_proto::tus::META_FILENAME;
use tokio::sync::Semaphore;

use super::Uploader;
use crate::error::{Error, Result};
use crate::get::tree::scope::RelPath;
use crate::progress::Ui;
use crate::summary::{Outcome, Tally};

/// The `dir` metadata key (ferry extension, see ferryd's publish rules).
pub const META_DIR: &str = "dir";

/// A local file of the tree and its path relative to DIR's parent (`photos/a/b.jpg`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub path: PathBuf,
    pub rel: RelPath,
    pub size: u64,
}

/// Every regular file below `dir`, sorted by relative path; special files and names that
/// cannot be sent (not UTF-8, control characters) are returned as notes.
pub fn walk_local(dir: &Path) -> Result<(Vec<LocalFile>, Vec<String>)> {
    let top = dir
        .canonicalize()
        .map_err(|e| Error::io(dir, e))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "root".into());
    let root = RelPath::from_segments(vec![top])
        .map_err(|why| Error::Usage(format!("{}: {why}", dir.display())))?;
    let (mut files, mut notes) = (Vec::new(), Vec::new());
    let mut stack = vec![(dir.to_path_buf(), root)];
    while let Some((path, rel)) = stack.pop() {
        let entries = std::fs::read_dir(&path).map_err(|e| Error::io(&path, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&path, e))?;
            let child = entry.path();
            let kind = entry.file_type().map_err(|e| Error::io(&child, e))?;
            let name = entry.file_name();
            let rel = match name.to_str().ok_or_else(|| "not UTF-8".to_string()) {
                Ok(n) => rel.child(n),
                Err(why) => Err(why),
            };
            let rel = match rel {
                Ok(r) => r,
                Err(why) => {
                    notes.push(format!("{}: skipped: {why}", child.display()));
                    continue;
                }
            };
            if kind.is_dir() {
                stack.push((child, rel));
            } else if kind.is_file() {
                let size = entry.metadata().map_err(|e| Error::io(&child, e))?.len();
                files.push(LocalFile {
                    path: child,
                    rel,
                    size,
                });
            } else {
                notes.push(format!("{}: skipped: not a regular file", child.display()));
            }
        }
    }
    files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok((files, notes))
}

/// Metadata placing `rel` on the server: ferryd gets `dir` (after the user's `dir`, if any)
/// and `filename`; other servers get the whole relative path as `filename`. Pure.
pub fn placement(rel: &RelPath, user_dir: Option<&str>, ferryd: bool) -> Vec<(String, String)> {
    let Some((name, folders)) = rel.segments().split_last() else {
        return Vec::new(); // a RelPath is never empty
    };
    if !ferryd {
        return vec![(META_FILENAME.to_string(), rel.as_slash_string())];
    }
    let mut dir: Vec<&str> = user_dir
        .map(|d| d.split('/').filter(|s| !s.is_empty()).collect())
        .unwrap_or_default();
    dir.extend(folders.iter().map(String::as_str));
    let mut meta = vec![(META_FILENAME.to_string(), name.clone())];
    if !dir.is_empty() {
        meta.push((META_DIR.to_string(), dir.join("/")));
    }
    meta
}

/// Uploads the tree below each of `dirs`, `jobs` files at a time; prints each file's
/// location on stdout; returns the tally.
pub async fn put_tree(
    uploader: Uploader,
    dirs: &[PathBuf],
    jobs: usize,
    ui: &Ui,
) -> Result<Arc<Tally>> {
    let ferryd = uploader.is_ferryd().await;
    let tally = Arc::new(Tally::default());
    let mut files = Vec::new();
    for dir in dirs {
        let (found, notes) = walk_local(dir)?;
        for note in notes {
            ui.error(&format!("ferry put: {note}"));
        }
        files.extend(found);
    }
    let total: u64 = files.iter().map(|f| f.size).sum();
    let overall = ui.transfer("total");
    overall.set_total(Some(total));
    let count = files.len();
    let ticker = crate::get::tree::spawn_ticker(Arc::clone(&overall), Arc::clone(&tally), count);
    let files_ui = ui.under(Arc::clone(&overall));
    let user_dir = uploader
        .opts
        .metadata
        .iter()
        .rev()
        .find(|(k, _)| k == META_DIR)
        .map(|(_, v)| v.clone());
    let gate = Arc::new(Semaphore::new(jobs.max(1)));
    let mut set = tokio::task::JoinSet::new();
    for file in files {
        let mut one = uploader.clone();
        one.opts
            .metadata
            .retain(|(k, _)| k != META_DIR && k != META_FILENAME);
        one.opts
            .metadata
            .extend(placement(&file.rel, user_dir.as_deref(), ferryd));
        let (gate, tally, ui) = (Arc::clone(&gate), Arc::clone(&tally), files_ui.clone());
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            tally.started();
            match one.put_file(&file.path, &ui).await {
                Ok((location, skipped)) => {
                    println!("{location}");
                    let outcome = if skipped {
                        Outcome::Skipped
                    } else {
                        Outcome::Done
                    };
                    tally.record(outcome, file.size);
                }
                Err(e) => {
                    ui.error(&format!("ferry put: {}: {e}", file.path.display()));
                    tally.record(Outcome::Failed, 0);
                }
            }
        });
    }
    while set.join_next().await.is_some() {}
    ticker.abort();
    crate::summary::finish_overall(&overall, &tally, ui);
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rel(s: &str) -> RelPath {
        RelPath::from_segments(s.split('/').map(String::from).collect()).unwrap()
    }

    #[test]
    fn ferryd_gets_dir_and_name_others_the_relative_path() {
        let r = rel("photos/a/b.jpg");
        let pairs = |v: Vec<(String, String)>| v.into_iter().collect::<Vec<_>>();
        assert_eq!(
            pairs(placement(&r, None, true)),
            [
                ("filename".into(), "b.jpg".into()),
                ("dir".into(), "photos/a".into())
            ]
        );
        assert_eq!(
            pairs(placement(&r, Some("in/box/"), true)),
            [
                ("filename".into(), "b.jpg".into()),
                ("dir".into(), "in/box/photos/a".into())
            ]
        );
        assert_eq!(
            pairs(placement(&r, None, false)),
            [("filename".into(), "photos/a/b.jpg".into())]
        );
    }

    #[test]
    fn local_walk_keeps_the_top_folder_and_skips_links() {
        let t = tempfile::tempdir().unwrap();
        let top = t.path().join("photos");
        std::fs::create_dir_all(top.join("a/b")).unwrap();
        std::fs::write(top.join("x.txt"), b"12").unwrap();
        std::fs::write(top.join("a/b/y.txt"), b"3").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", top.join("a/link")).unwrap();
        std::os::unix::fs::symlink("..", top.join("a/loop")).unwrap();
        let (files, notes) = walk_local(&top).unwrap();
        let rels: Vec<_> = files.iter().map(|f| f.rel.as_slash_string()).collect();
        assert_eq!(rels, ["photos/a/b/y.txt", "photos/x.txt"]);
        assert_eq!(files[1].size, 2);
        assert_eq!(notes.len(), 2, "{notes:?}");
    }
}
