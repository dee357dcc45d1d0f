//! Publishing a finished upload into the served tree: a hard link under the first free name
//! (never replacing a file), then the staging name is dropped.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use super::super::fs::beneath::{create_dir_beneath, identity_at, is_escape, link_into, real_path};
use super::super::upload::{name_candidate, UploadInfo, UploadState};
use super::super::StoreError;
use super::{data_path, save_info, Dirs};
use crate::path::RelPath;

/// How many `name (n).ext` candidates publish tries before giving up with a conflict.
const MAX_CANDIDATES: u32 = 1000;

/// Opens `dir` (relative, visible) under the root, creating what is missing, confined to the
/// root by the kernel: a component that is (or is swapped for) a symlink leading out is
/// refused before anything is created below it, whatever `--allow-symlinks-outside` says.
/// A directory whose resolved location is in the state area is refused too.
fn target_dir(d: &Dirs, dir: &RelPath) -> Result<File, StoreError> {
    if dir.is_hidden() {
        return Err(StoreError::Forbidden);
    }
    let f = create_dir_beneath(&d.root_dir, dir).map_err(|e| {
        // A file where a directory should be, a way out, or a name too long for the file
        // system (a record from before `dir` was checked at creation): unusable.
        if is_escape(&e)
            || matches!(
                e.kind(),
                io::ErrorKind::AlreadyExists
                    | io::ErrorKind::NotADirectory
                    | io::ErrorKind::InvalidFilename
            )
        {
            StoreError::Forbidden
        } else {
            StoreError::Io(e)
        }
    })?;
    let real = real_path(&f).ok_or_else(|| io::Error::other("no /proc to check a target"))?;
    if !real.starts_with(&d.root)
        || real.starts_with(&d.state)
        || real.starts_with(d.root.join(super::super::fs::state::LEGACY_DIR))
    {
        return Err(StoreError::Forbidden);
    }
    Ok(f)
}

/// Whether `name` in `dir` is the inode `src` names.
fn same_file(src: &Path, dir: &File, name: &str) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    match (fs::metadata(src), identity_at(dir, name)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == y,
        _ => false,
    }
}

/// Hard-links `src` into `dir` under the first free candidate of `name`. `link(2)` fails with
/// `EEXIST` instead of replacing, so a concurrent writer of the same name is never clobbered.
fn link_no_clobber(d: &Dirs, src: &Path, dir: &RelPath, name: &str) -> Result<RelPath, StoreError> {
    let dir_f = target_dir(d, dir)?;
    for n in 0..MAX_CANDIDATES {
        let candidate = name_candidate(name, n);
        match link_into(src, &dir_f, &candidate) {
            Ok(()) => {
                dir_f.sync_all()?;
                return dir.join(&candidate).map_err(|_| StoreError::Forbidden);
            }
            // Already linked by an earlier attempt that crashed before recording it.
            Err(e)
                if e.kind() == io::ErrorKind::AlreadyExists
                    && same_file(src, &dir_f, &candidate) =>
            {
                dir_f.sync_all()?;
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
fn finish_publish(state: &Path, info: &mut UploadInfo, path: &RelPath) -> Result<(), StoreError> {
    info.state = UploadState::Published {
        path: path.as_str().to_string(),
    };
    save_info(state, info)?;
    match fs::remove_file(data_path(state, &info.id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

pub(super) fn publish_blocking(
    d: &Dirs,
    info: &mut UploadInfo,
    dir: &RelPath,
    name: &str,
) -> Result<RelPath, StoreError> {
    let data = data_path(&d.state, &info.id);
    let len = info
        .length
        .ok_or_else(|| io::Error::other("publish of an upload without a length"))?;
    // Bytes past the checkpoint (a crash mid-write) must never be published.
    let f = OpenOptions::new().write(true).open(&data)?;
    if f.metadata()?.len() != len {
        f.set_len(len)?;
        f.sync_all()?;
    }
    let path = link_no_clobber(d, &data, dir, name)?;
    finish_publish(&d.state, info, &path)?;
    Ok(path)
}

/// Publishes a copy of the served file open as `src` (the descriptor the content index
/// checked): a hard link to that very inode when the file system allows it, else a byte copy
/// of it into staging first. Never the path opened again: another file renamed over it since
/// the check must not be what gets published.
pub(super) fn publish_copy_blocking(
    d: &Dirs,
    info: &mut UploadInfo,
    src: &File,
    dir: &RelPath,
    name: &str,
) -> Result<RelPath, StoreError> {
    use std::io::{Seek as _, SeekFrom};
    // `linkat` through `/proc/self/fd/N` links the inode the descriptor holds.
    let src_full = super::super::fs::beneath::fd_path(src);
    let path = match link_no_clobber(d, &src_full, dir, name) {
        Ok(p) => p,
        Err(StoreError::Io(e)) if e.kind() != io::ErrorKind::AlreadyExists => {
            let data = data_path(&d.state, &info.id);
            let mut out = OpenOptions::new().write(true).truncate(true).open(&data)?;
            let mut from = src;
            from.seek(SeekFrom::Start(0))?;
            io::copy(&mut from, &mut out)?;
            out.sync_data()?;
            link_no_clobber(d, &data, dir, name)?
        }
        Err(e) => return Err(e),
    };
    finish_publish(&d.state, info, &path)?;
    Ok(path)
}
