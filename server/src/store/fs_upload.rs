//! The upload capability of [`FsStore`]: staging under `ROOT/.ferry/` (which the backend never
//! lists or serves), durable checkpoints, publish by hard link (which fails rather than
//! replace an existing name), and a content index of one small file per SHA-256.
//!
//! Layout (all records are versioned JSON):
//! - `.ferry/uploads/<id>.bin`: received bytes; only the first `offset` bytes count.
//! - `.ferry/uploads/<id>.info`: the [`UploadInfo`], replaced atomically (temp, fsync,
//!   rename, fsync dir) after every `fdatasync` of the data.
//! - `.ferry/index/<sha256>.json`: an [`IndexEntry`].

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read as _, Write as _};
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
use index::{hash_blocking, index_dir, index_get_blocking};

fn uploads_dir(root: &Path) -> PathBuf {
    root.join(STAGING_DIR).join("uploads")
}

fn data_path(root: &Path, id: &str) -> PathBuf {
    uploads_dir(root).join(format!("{id}.bin"))
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
    let mut out = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(data_path(root, &info.id))?;
    let mut total = 0u64;
    for part in parts {
        let len = part
            .length
            .filter(|&l| l == part.offset)
            .ok_or_else(|| io::Error::other("part is incomplete"))?;
        let mut src = File::open(data_path(root, &part.id))?.take(len);
        let copied = io::copy(&mut src, &mut out)?;
        if copied != len {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "part data shorter than its offset",
            )
            .into());
        }
        total += len;
    }
    out.sync_data()?;
    info.length = Some(total);
    info.offset = total;
    save_info(root, info)
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
        Box::pin(blocking(move || read_info(&root, &id)))
    }

    fn save<'a>(&'a self, info: &'a UploadInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, info) = (self.root().to_path_buf(), info.clone());
        Box::pin(blocking(move || save_info(&root, &info)))
    }

    fn append<'a>(
        &'a self,
        info: &'a UploadInfo,
    ) -> BoxFuture<'a, Result<Box<dyn Appender>, StoreError>> {
        let (root, id, offset) = (self.root().to_path_buf(), info.id.clone(), info.offset);
        Box::pin(async move {
            let r2 = root.clone();
            let file = blocking(move || {
                let f = OpenOptions::new()
                    .write(true)
                    .open(data_path(&r2, &id))
                    .map_err(StoreError::from_io)?;
                if f.metadata()?.len() != offset {
                    f.set_len(offset)?; // cut bytes that were never checkpointed
                }
                Ok(f)
            })
            .await?;
            Ok(Box::new(FsAppender {
                root,
                file: Arc::new(file),
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
        Box::pin(blocking(move || {
            let dir = index_dir(&root);
            fs::create_dir_all(&dir)?;
            let raw = serde_json::to_vec(&entry).map_err(io::Error::other)?;
            Ok(write_atomic(&dir.join(format!("{sha}.json")), &raw)?)
        }))
    }

    fn index_get<'a>(
        &'a self,
        sha256: &'a str,
    ) -> BoxFuture<'a, Result<Option<IndexEntry>, StoreError>> {
        let (root, sha) = (self.root().to_path_buf(), sha256.to_ascii_lowercase());
        Box::pin(blocking(move || index_get_blocking(&root, &sha)))
    }
}
