//! The upload capability of [`FsStore`]: staging in the state directory
//! ([`FsStore::state_dir`], outside the served tree), durable checkpoints, publish by hard link (which fails rather than
//! replace an existing name). The content index is the tree-wide one of [`crate::index`]
//! (instant upload from any served file, not only from published uploads).
//!
//! Layout under the state directory `STATE` (all records are versioned JSON):
//! - `STATE/uploads/<id>.bin`: received bytes; only the first `offset` bytes count. A part
//!   placed into a final upload has none: its bytes are in the final upload's `.bin` from
//!   `placement.at` on.
//! - `STATE/uploads/<id>.info`: the [`UploadInfo`], replaced atomically (temp, fsync,
//!   rename, fsync dir) after every `fdatasync` of the data. Its [`Revision`] is a digest of
//!   its bytes, and every replacement is a compare-and-swap on it ([`save_info`]).
//! - `STATE/index.v1`: the content index cache (see [`crate::index::cache`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use sha2::{Digest as _, Sha256};

use super::fs::FsStore;
use super::upload::*;
use super::{BoxFuture, StoreError};
use crate::path::RelPath;

mod append;
mod concat;
mod finals;
mod publish;
#[cfg(test)]
mod tests;

use append::FsAppender;
use concat::{concatenate_blocking, place_blocking, unplace_blocking};
use publish::{publish_blocking, publish_copy_blocking};

/// Paths the blocking work needs: the served root (held open, for confined publishing) and
/// the state directory.
#[derive(Clone)]
pub(crate) struct Dirs {
    pub(crate) root: PathBuf,
    pub(crate) root_dir: Arc<File>,
    pub(crate) state: PathBuf,
}

impl FsStore {
    fn dirs(&self) -> Dirs {
        Dirs {
            root: self.root().to_path_buf(),
            root_dir: self.root_dir().clone(),
            state: self.state_dir().to_path_buf(),
        }
    }
}

fn uploads_dir(state: &Path) -> PathBuf {
    state.join("uploads")
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

/// The revision of a record: a digest of its bytes. Two records with equal bytes are the
/// same state, so a compare-and-swap that cannot tell them apart loses nothing.
fn revision_of(raw: &[u8]) -> Revision {
    Revision(hex::encode(&Sha256::digest(raw)[..16]))
}

/// Serialises the compare-and-swap of one record with every other write of it in this
/// process (one of a fixed set of locks, chosen by the id). The directory store has a single
/// ferryd writing its state directory; stores shared by processes compare in the storage.
fn record_lock(id: &str) -> MutexGuard<'static, ()> {
    const STRIPES: usize = 64;
    static LOCKS: [Mutex<()>; STRIPES] = [const { Mutex::new(()) }; STRIPES];
    let h = id.bytes().fold(0usize, |h, b| {
        h.wrapping_mul(31).wrapping_add(usize::from(b))
    });
    LOCKS[h % STRIPES].lock().unwrap_or_else(|p| p.into_inner())
}

fn read_info(root: &Path, id: &str) -> Result<UploadInfo, StoreError> {
    let raw = fs::read(info_path(root, id)).map_err(StoreError::from_io)?;
    let mut info = UploadInfo::decode(&raw)?;
    info.revision = Some(revision_of(&raw));
    Ok(info)
}

/// Records `info` if the stored record is still at `info.revision` (absent, for `None`) and
/// moves `info.revision` on; otherwise [`StoreError::Conflict`] and nothing is written.
fn save_info(root: &Path, info: &mut UploadInfo) -> Result<(), StoreError> {
    let path = info_path(root, &info.id);
    let _only_writer = record_lock(&info.id);
    let stored = match fs::read(&path) {
        Ok(raw) => Some(revision_of(&raw)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    if stored != info.revision {
        return Err(StoreError::Conflict);
    }
    let raw = info.encode();
    write_atomic(&path, &raw)?;
    info.revision = Some(revision_of(&raw));
    Ok(())
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
    fn create<'a>(&'a self, info: &'a mut UploadInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, mut owned) = (self.state_dir().to_path_buf(), info.clone());
        owned.revision = None; // a creation expects no record
        Box::pin(async move {
            *info = blocking(move || {
                let dir = uploads_dir(&root);
                fs::create_dir_all(&dir)?;
                let data = File::options()
                    .write(true)
                    .create_new(true)
                    .open(data_path(&root, &owned.id));
                match data {
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        return Err(StoreError::Conflict)
                    }
                    r => r?,
                };
                save_info(&root, &mut owned).map(|()| owned)
            })
            .await?;
            Ok(())
        })
    }

    fn load<'a>(&'a self, id: &'a UploadId) -> BoxFuture<'a, Result<UploadInfo, StoreError>> {
        let (root, id) = (self.state_dir().to_path_buf(), id.as_str().to_string());
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

    fn save<'a>(&'a self, info: &'a mut UploadInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, mut owned) = (self.state_dir().to_path_buf(), info.clone());
        Box::pin(async move {
            *info = blocking(move || save_info(&root, &mut owned).map(|()| owned)).await?;
            Ok(())
        })
    }

    fn append<'a>(
        &'a self,
        info: &'a UploadInfo,
    ) -> BoxFuture<'a, Result<Box<dyn Appender>, StoreError>> {
        let root = self.state_dir().to_path_buf();
        let (path, base) = data_location(&root, info);
        let (offset, placed) = (info.offset, info.placement.is_some());
        let revision = info.revision.clone();
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
                revision,
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
        let (dirs, mut owned, dir, name) =
            (self.dirs(), info.clone(), dir.clone(), name.to_string());
        Box::pin(async move {
            let (path, owned) =
                blocking(move || Ok((publish_blocking(&dirs, &mut owned, &dir, &name)?, owned)))
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
        let (root, mut owned) = (self.state_dir().to_path_buf(), info.clone());
        owned.state = state;
        Box::pin(async move {
            *info = blocking(move || {
                save_info(&root, &mut owned)?; // the tombstone first: a crash leaves no live record without data
                match fs::remove_file(data_path(&root, &owned.id)) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
                    _ => Ok(owned),
                }
            })
            .await?;
            Ok(())
        })
    }

    fn purge<'a>(&'a self, id: &'a UploadId) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, id) = (self.state_dir().to_path_buf(), id.as_str().to_string());
        Box::pin(blocking(move || {
            for p in [data_path(&root, &id), info_path(&root, &id)] {
                match fs::remove_file(p) {
                    Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e.into()),
                    _ => {}
                }
            }
            finals::forget_blocking(&root, &id)
        }))
    }

    fn list_uploads(&self) -> BoxFuture<'_, Result<Vec<UploadInfo>, StoreError>> {
        let root = self.state_dir().to_path_buf();
        Box::pin(blocking(move || list_blocking(&root)))
    }

    fn concatenation(&self) -> Option<&dyn Concatenation> {
        Some(self)
    }

    fn placement(&self) -> Option<&dyn PlaceParts> {
        Some(self)
    }

    fn content_index(&self) -> Option<&dyn ContentIndex> {
        self.index().is_some().then_some(self as &dyn ContentIndex)
    }
}

impl Concatenation for FsStore {
    fn concatenate<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        parts: &'a [UploadInfo],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, mut owned, parts) =
            (self.state_dir().to_path_buf(), info.clone(), parts.to_vec());
        Box::pin(async move {
            let owned =
                blocking(move || concatenate_blocking(&root, &mut owned, &parts).map(|()| owned))
                    .await?;
            *info = owned;
            Ok(())
        })
    }

    fn note_final<'a>(
        &'a self,
        part: &'a UploadId,
        fin: &'a UploadId,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let state = self.state_dir().to_path_buf();
        let (part, fin) = (part.to_string(), fin.to_string());
        Box::pin(blocking(move || finals::note_blocking(&state, &part, &fin)))
    }

    fn finals_of<'a>(
        &'a self,
        part: &'a UploadId,
    ) -> BoxFuture<'a, Result<Vec<UploadId>, StoreError>> {
        let (state, part) = (self.state_dir().to_path_buf(), part.to_string());
        Box::pin(blocking(move || finals::finals_blocking(&state, &part)))
    }
}

impl PlaceParts for FsStore {
    fn place<'a>(
        &'a self,
        part: &'a mut UploadInfo,
        into: &'a UploadInfo,
        at: u64,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, mut owned, into) = (self.state_dir().to_path_buf(), part.clone(), into.clone());
        Box::pin(async move {
            let owned =
                blocking(move || place_blocking(&root, &mut owned, &into, at).map(|()| owned))
                    .await?;
            *part = owned;
            Ok(())
        })
    }

    fn unplace<'a>(&'a self, part: &'a mut UploadInfo) -> BoxFuture<'a, Result<(), StoreError>> {
        let (root, mut owned) = (self.state_dir().to_path_buf(), part.clone());
        Box::pin(async move {
            *part = blocking(move || unplace_blocking(&root, &mut owned).map(|()| owned)).await?;
            Ok(())
        })
    }
}

impl ContentIndex for FsStore {
    fn index_has_length(&self, len: u64) -> BoxFuture<'_, Result<bool, StoreError>> {
        let index = self.index().cloned();
        Box::pin(async move {
            match index {
                Some(ix) => blocking(move || Ok(ix.has_len(len))).await,
                None => Ok(false),
            }
        })
    }

    fn index_find<'a>(
        &'a self,
        sha256: &'a str,
        len: u64,
    ) -> BoxFuture<'a, Result<Option<Indexed>, StoreError>> {
        let mut sha = [0u8; 32];
        let index = self.index().cloned();
        let valid = hex::decode_to_slice(sha256.trim(), &mut sha).is_ok();
        Box::pin(async move {
            let found = match index {
                Some(ix) if valid => blocking(move || Ok(ix.find(&sha, len))).await?,
                _ => None,
            };
            Ok(found.map(|(path, file)| Indexed {
                path,
                hold: Hold::File(file),
            }))
        })
    }

    fn publish_copy<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        src: &'a Indexed,
        dir: &'a RelPath,
        name: &'a str,
    ) -> BoxFuture<'a, Result<RelPath, StoreError>> {
        let dirs = self.dirs();
        let (mut owned, dir, name) = (info.clone(), dir.clone(), name.to_string());
        // The checked descriptor itself (a dup of it), never the path opened again.
        let src = match &src.hold {
            Hold::File(f) => f.try_clone(),
            Hold::ETag(_) => Err(io::Error::other("a content index hold of another store")),
        };
        Box::pin(async move {
            let src = src?;
            let (path, owned) = blocking(move || {
                Ok((
                    publish_copy_blocking(&dirs, &mut owned, &src, &dir, &name)?,
                    owned,
                ))
            })
            .await?;
            *info = owned;
            Ok(path)
        })
    }
}
