//! Publishing a finished upload into the served tree: a hard link under the first free name
//! (never replacing a file), then the staging name is dropped.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use super::super::upload::{name_candidate, UploadInfo, UploadState};
use super::super::StoreError;
use super::{data_path, save_info, sync_dir};
use crate::path::RelPath;

/// How many `name (n).ext` candidates publish tries before giving up with a conflict.
const MAX_CANDIDATES: u32 = 1000;

/// Creates `dir` (relative, visible) under the root and checks that it really lies inside it
/// (no symlinked component leads out).
fn target_dir(root: &Path, dir: &RelPath) -> Result<PathBuf, StoreError> {
    if dir.is_hidden() {
        return Err(StoreError::Forbidden);
    }
    let full = root.join(dir.as_str());
    // A file where a directory should be: the directory cannot be used.
    fs::create_dir_all(&full).map_err(|e| match e.kind() {
        io::ErrorKind::AlreadyExists | io::ErrorKind::NotADirectory => StoreError::Forbidden,
        _ => StoreError::Io(e),
    })?;
    let real = full.canonicalize()?;
    if !real.starts_with(root) {
        return Err(StoreError::Forbidden);
    }
    Ok(real)
}

/// Whether two paths name the same inode.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (fs::symlink_metadata(a), fs::symlink_metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Hard-links `src` into `dir` under the first free candidate of `name`. `link(2)` fails with
/// `EEXIST` instead of replacing, so a concurrent writer of the same name is never clobbered.
fn link_no_clobber(
    root: &Path,
    src: &Path,
    dir: &RelPath,
    name: &str,
) -> Result<RelPath, StoreError> {
    let full_dir = target_dir(root, dir)?;
    for n in 0..MAX_CANDIDATES {
        let candidate = name_candidate(name, n);
        match fs::hard_link(src, full_dir.join(&candidate)) {
            Ok(()) => {
                sync_dir(&full_dir)?;
                return dir.join(&candidate).map_err(|_| StoreError::Forbidden);
            }
            // Already linked by an earlier attempt that crashed before recording it.
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    && same_file(src, &full_dir.join(&candidate)) =>
            {
                sync_dir(&full_dir)?;
                return dir.join(&candidate).map_err(|_| StoreError::Forbidden);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Io(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("no free name for {name:?} after {MAX_CANDIDATES} tries"),
    )))
}

/// Records the published state, then frees the staging name (the data lives on under its
/// published name).
fn finish_publish(root: &Path, info: &mut UploadInfo, path: &RelPath) -> Result<(), StoreError> {
    info.state = UploadState::Published {
        path: path.as_str().to_string(),
    };
    save_info(root, info)?;
    match fs::remove_file(data_path(root, &info.id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

pub(super) fn publish_blocking(
    root: &Path,
    info: &mut UploadInfo,
    dir: &RelPath,
    name: &str,
) -> Result<RelPath, StoreError> {
    let data = data_path(root, &info.id);
    let len = info
        .length
        .ok_or_else(|| io::Error::other("publish of an upload without a length"))?;
    // Bytes past the checkpoint (a crash mid-write) must never be published.
    let f = OpenOptions::new().write(true).open(&data)?;
    if f.metadata()?.len() != len {
        f.set_len(len)?;
        f.sync_all()?;
    }
    let path = link_no_clobber(root, &data, dir, name)?;
    finish_publish(root, info, &path)?;
    Ok(path)
}

/// Publishes a copy of the served file `src`: a hard link when the file system allows it,
/// else a byte copy into staging first.
pub(super) fn publish_copy_blocking(
    root: &Path,
    info: &mut UploadInfo,
    src: &RelPath,
    dir: &RelPath,
    name: &str,
) -> Result<RelPath, StoreError> {
    let src_full = root.join(src.as_str());
    let path = match link_no_clobber(root, &src_full, dir, name) {
        Ok(p) => p,
        Err(StoreError::Io(e)) if e.kind() != io::ErrorKind::AlreadyExists => {
            let data = data_path(root, &info.id);
            let mut out = OpenOptions::new().write(true).truncate(true).open(&data)?;
            io::copy(&mut File::open(&src_full)?, &mut out)?;
            out.sync_data()?;
            link_no_clobber(root, &data, dir, name)?
        }
        Err(e) => return Err(e),
    };
    finish_publish(root, info, &path)?;
    Ok(path)
}
