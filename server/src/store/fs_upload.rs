//! The upload capability of [`FsStore`]: staging under `ROOT/.ferry/` (which the backend never
//! lists or serves), durable checkpoints, publish by hard link (which fails rather than
//! replace an existing name), and a content index of one small file per SHA-256.
//!
//! Layout (all records are versioned JSON):
//! - `.ferry/uploads/<id>.bin`: received bytes; only the first `offset` bytes count.
//! - `.ferry/uploads/<id>.info`: the [`UploadInfo`], replaced atomically (temp, fsync,
//!   rename, fsync dir) after every `fdatasync` of the data.
//! - `.ferry/index/<sha256>.json`: an [`IndexEntry`].
//! - `.ferry/index/by-length/<len>/<sha256>`: empty; which digests have that length.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::fs::{FsStore, STAGING_DIR};
use super::upload::*;
use super::{BoxFuture, StoreError};
use crate::path::RelPath;

/// How many `name (n).ext` candidates publish tries before giving up with a conflict.
const MAX_CANDIDATES: u32 = 1000;

mod append;
mod index;
#[cfg(test)]
mod tests;

use append::FsAppender;
use index::{hash_blocking, index_get_blocking, index_has_length_blocking, index_put_blocking};

fn uploads_dir(root: &Path) -> PathBuf {
    root.join(STAGING_DIR).join("uploads")
}

fn data_path(root: &Path, id: &str) -> PathBuf {
    uploads_dir(root).join(format!("{id}.bin"))
}

/// The file holding an upload's bytes and the position of its first byte there: its own data,
/// or the final upload's data it was placed into.
fn data_location(root: &Path, info: &UploadInfo) -> (PathBuf, u64) {
    match &info.placement {
        Some(p) => (data_path(root, &p.upload), p.at),
        None => (data_path(root, &info.id), 0),
    }
}

fn info_path(root: &Path, id: &str) -> PathBuf {
    uploads_dir(root).join(format!("{id}.info"))
}

/// Runs blocking file work on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Io(io::Error::other(e)))?
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Replaces `path` with `data` atomically and durably: temp file, fsync, rename, fsync dir.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("record path has no parent"))?;
    let tmp = path.with_extension("tmp");
    let mut f = File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(dir)
}

fn read_info(root: &Path, id: &str) -> Result<UploadInfo, StoreError> {
    let raw = fs::read(info_path(root, id)).map_err(StoreError::from_io)?;
    Ok(UploadInfo::decode(&raw)?)
}

fn save_info(root: &Path, info: &UploadInfo) -> Result<(), StoreError> {
    Ok(write_atomic(&info_path(root, &info.id), &info.encode())?)
}

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

fn publish_blocking(
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
fn publish_copy_blocking(
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

fn concatenate_blocking(
    root: &Path,
    info: &mut UploadInfo,
    parts: &[UploadInfo],
) -> Result<(), StoreError> {
    let out = OpenOptions::new()
        .write(true)
        .open(data_path(root, &info.id))?;
    let mut at = 0u64;
    for part in parts {
        let len = part
            .length
            .filter(|&l| l == part.offset)
            .ok_or_else(|| io::Error::other("part is incomplete"))?;
        let placed_here = part
            .placement
            .as_ref()
            .is_some_and(|p| p.upload == info.id && p.at == at);
        if !placed_here {
            let (src, base) = data_location(root, part);
            copy_range(&File::open(src)?, base, &out, at, len)?;
        }
        at += len;
    }
    out.set_len(at)?;
    out.sync_data()?;
    info.length = Some(at);
    info.offset = at;
    save_info(root, info)
}

/// Copies `len` bytes from `src` at `from` to `dst` at `to` (positional; in the kernel where
/// it can, `copy_file_range(2)`, which may share blocks on file systems that support it).
fn copy_range(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::FileExt as _;
    let (mut done, mut kernel) = (0u64, true);
    let mut buf = Vec::new();
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        if kernel {
            let mut off_in = i64::try_from(from + done).map_err(io::Error::other)?;
            let mut off_out = i64::try_from(to + done).map_err(io::Error::other)?;
            // SAFETY: both descriptors are open for the duration of the call and the offset
            // pointers point to live locals.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            match n {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n if n > 0 => {
                    done += n as u64;
                    continue;
                }
                _ => {
                    let e = io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => {
                            kernel = false;
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
        buf.resize(want.min(1 << 20), 0);
        let n = src.read_at(&mut buf, from + done)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "part data shorter than its offset",
            ));
        }
        dst.write_all_at(&buf[..n], to + done)?;
        done += n as u64;
    }
    Ok(())
}

/// See [`UploadStore::place`]. Order for crash safety: the bytes go to the final upload's
/// data and are synced before the part's record says they are there; the part's own data is
/// removed only after that.
fn place_blocking(
    root: &Path,
    part: &mut UploadInfo,
    into: &UploadInfo,
    at: u64,
) -> Result<(), StoreError> {
    if part.placement.is_some() || part.concat != Concat::Partial {
        return Ok(());
    }
    let len = part
        .length
        .ok_or_else(|| io::Error::other("a part without a length cannot be placed"))?;
    let total = into
        .length
        .ok_or_else(|| io::Error::other("a final upload without a length"))?;
    if at.checked_add(len).is_none_or(|end| end > total) {
        return Err(io::Error::other("part does not fit the final upload").into());
    }
    let dst = OpenOptions::new()
        .write(true)
        .open(data_path(root, &into.id))?;
    if dst.metadata()?.len() < total {
        dst.set_len(total)?;
    }
    if part.offset > 0 {
        copy_range(
            &File::open(data_path(root, &part.id))?,
            0,
            &dst,
            at,
            part.offset,
        )?;
    }
    dst.sync_data()?;
    part.placement = Some(Placement {
        upload: into.id.clone(),
        at,
    });
    save_info(root, part)?;
    match fs::remove_file(data_path(root, &part.id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

fn list_blocking(root: &Path) -> Result<Vec<UploadInfo>, StoreError> {
    let mut out = Vec::new();
    let dir = match fs::read_dir(uploads_dir(root)) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e.into()),
    };
    for ent in dir {
        let name = ent?.file_name();
        let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".info")) else {
            continue;
        };
        match read_info(root, id) {
            Ok(info) => out.push(info),
            Err(e) => tracing::warn!(%id, error = %e, "skipping unreadable upload record"),
        }
    }
    Ok(out)
}

impl UploadStore for FsStore {
    fn caps(&self) -> UploadCaps {
        UploadCaps {
            termination: true,
            concatenation: true,
            expiration: true,
            content_index: true,
        }
    }

    fn create<'a>(&'a self, info: &'a UploadInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, info) = (self.root().to_path_buf(), info.clone());
        Box::pin(blocking(move || {
            let dir = uploads_dir(&root);
            fs::create_dir_all(&dir)?;
            File::options()
                .write(true)
                .create_new(true)
                .open(data_path(&root, &info.id))?;
            save_info(&root, &info)
        }))
    }

    fn load<'a>(&'a self, id: &'a UploadId) -> BoxFuture<'a, Result<UploadInfo, StoreError>> {
        let (root, id) = (self.root().to_path_buf(), id.as_str().to_string());
        Box::pin(blocking(move || {
            let mut info = read_info(&root, &id)?;
            // A part placed into a final upload whose data is gone (the final was terminated,
            // expired, or published and this part's bytes went with it) has no bytes left.
            if info.state == UploadState::Active
                && info.placement.is_some()
                && !data_location(&root, &info).0.exists()
            {
                info.state = UploadState::Terminated;
            }
            Ok(info)
        }))
    }

    fn save<'a>(&'a self, info: &'a UploadInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, info) = (self.root().to_path_buf(), info.clone());
        Box::pin(blocking(move || save_info(&root, &info)))
    }

    fn append<'a>(
        &'a self,
        info: &'a UploadInfo,
    ) -> BoxFuture<'a, Result<Box<dyn Appender>, StoreError>> {
        let root = self.root().to_path_buf();
        let (path, base) = data_location(&root, info);
        let (offset, placed) = (info.offset, info.placement.is_some());
        Box::pin(async move {
            let file = blocking(move || {
                let f = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .map_err(StoreError::from_io)?;
                // Cut bytes that were never checkpointed. A placed part shares the file with
                // its neighbours: its stale bytes are simply overwritten (only `offset` counts).
                if !placed && f.metadata()?.len() != offset {
                    f.set_len(offset)?;
                }
                Ok(f)
            })
            .await?;
            Ok(Box::new(FsAppender {
                root,
                file: Arc::new(file),
                base,
                placed,
                pos: offset,
                pending: None,
                behind: None,
            }) as Box<dyn Appender>)
        })
    }

    fn publish<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        dir: &'a RelPath,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RelPath, StoreError>> {
        let (root, mut owned, dir, name) = (
            self.root().to_path_buf(),
            info.clone(),
            dir.clone(),
            name.to_string(),
        );
        Box::pin(async move {
            let (path, owned) =
                blocking(move || Ok((publish_blocking(&root, &mut owned, &dir, &name)?, owned)))
                    .await?;
            *info = owned;
            Ok(path)
        })
    }

    fn publish_copy<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        src: &'a RelPath,
        dir: &'a RelPath,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RelPath, StoreError>> {
        let root = self.root().to_path_buf();
        let (mut owned, src, dir, name) =
            (info.clone(), src.clone(), dir.clone(), name.to_string());
        Box::pin(async move {
            let (path, owned) = blocking(move || {
                Ok((
                    publish_copy_blocking(&root, &mut owned, &src, &dir, &name)?,
                    owned,
                ))
            })
            .await?;
            *info = owned;
            Ok(path)
        })
    }

    fn discard<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        state: UploadState,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let root = self.root().to_path_buf();
        info.state = state;
        let owned = info.clone();
        Box::pin(blocking(move || {
            save_info(&root, &owned)?; // the tombstone first: a crash leaves no live record without data
            match fs::remove_file(data_path(&root, &owned.id)) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
                _ => Ok(()),
            }
        }))
    }

    fn purge<'a>(&'a self, id: &'a UploadId) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, id) = (self.root().to_path_buf(), id.as_str().to_string());
        Box::pin(blocking(move || {
            for p in [data_path(&root, &id), info_path(&root, &id)] {
                match fs::remove_file(p) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            Ok(())
        }))
    }

    fn place<'a>(
        &'a self,
        part: &'a mut UploadInfo,
        into: &'a UploadInfo,
        at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, mut owned, into) = (self.root().to_path_buf(), part.clone(), into.clone());
        Box::pin(async move {
            let owned =
                blocking(move || place_blocking(&root, &mut owned, &into, at).map(|()| owned))
                    .await?;
            *part = owned;
            Ok(())
        })
    }

    fn concatenate<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        parts: &'a [UploadInfo],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, mut owned, parts) = (self.root().to_path_buf(), info.clone(), parts.to_vec());
        Box::pin(async move {
            let owned =
                blocking(move || concatenate_blocking(&root, &mut owned, &parts).map(|()| owned))
                    .await?;
            *info = owned;
            Ok(())
        })
    }

    fn list_uploads(&self) -> BoxFuture<'_, Result<Vec<UploadInfo>, StoreError>> {
        let root = self.root().to_path_buf();
        Box::pin(blocking(move || list_blocking(&root)))
    }

    fn hash_file<'a>(
        &'a self,
        path: &'a RelPath,
    ) -> BoxFuture<'a, Result<(String, IndexEntry), StoreError>> {
        let (root, path) = (self.root().to_path_buf(), path.clone());
        Box::pin(blocking(move || hash_blocking(&root, &path)))
    }

    fn index_put<'a>(
        &'a self,
        sha256: &'a str,
        entry: &'a IndexEntry,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, sha, entry) = (self.root().to_path_buf(), sha256.to_string(), entry.clone());
        Box::pin(blocking(move || index_put_blocking(&root, &sha, &entry)))
    }

    fn index_has_length(&self, len: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let root = self.root().to_path_buf();
        Box::pin(blocking(move || index_has_length_blocking(&root, len)))
    }

    fn index_get<'a>(
        &'a self,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<IndexEntry>, StoreError>> {
        let (root, sha) = (self.root().to_path_buf(), sha256.to_ascii_lowercase());
        Box::pin(blocking(move || index_get_blocking(&root, &sha)))
    }
}
