//! Appending to staging data: positional writes on the blocking pool, one in flight while the
//! next chunk is received; a checkpoint syncs the data before it records the offset.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::super::upload::{Appender, Revision, UploadInfo};
use super::super::{BoxFuture, StoreError};
use super::save_info;

/// Positional writes on the blocking pool, one in flight while the next chunk is received.
pub(super) struct FsAppender {
    pub(super) root: PathBuf,
    pub(super) file: Arc<File>,
    /// Where byte 0 of the upload is in `file` (non-zero for a placed part).
    pub(super) base: u64,
    /// A placed part: the file is shared, never truncated.
    pub(super) placed: bool,
    /// Upload offset after every byte queued so far.
    pub(super) pos: u64,
    /// The record's revision as this appender recorded it last (or opened it): what the next
    /// checkpoint's compare-and-swap expects.
    pub(super) revision: Option<Revision>,
    pub(super) pending: Option<JoinHandle<io::Result<()>>>,
    /// A background checkpoint (sync + record) still running or not yet collected; it yields
    /// the revision it recorded.
    pub(super) behind: Option<JoinHandle<Result<Option<Revision>, StoreError>>>,
}

impl FsAppender {
    async fn drain(&mut self) -> io::Result<()> {
        match self.pending.take() {
            Some(h) => h.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }

    /// Waits for the background checkpoint, if any, takes the revision it recorded and
    /// reports its failure.
    async fn settle(&mut self) -> Result<(), StoreError> {
        if let Some(h) = self.behind.take() {
            self.revision = h.await.map_err(|e| StoreError::Io(io::Error::other(e)))??;
        }
        Ok(())
    }

    /// Syncs the data, then records `info` with the current position, by compare-and-swap
    /// from the revision this appender recorded last (blocking pool).
    fn sync_then_record(&self, info: &UploadInfo) -> JoinHandle<Result<UploadInfo, StoreError>> {
        let (file, root, mut next) = (self.file.clone(), self.root.clone(), info.clone());
        next.offset = self.pos;
        next.revision = self.revision.clone();
        tokio::task::spawn_blocking(move || {
            file.sync_data()?; // data first ...
            save_info(&root, &mut next)?; // ... then the offset that claims it
            Ok(next)
        })
    }
}

impl Appender for FsAppender {
    fn write(&mut self, data: Bytes) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.drain().await?;
            let (file, at) = (self.file.clone(), self.base + self.pos);
            self.pos += data.len() as u64;
            self.pending = Some(tokio::task::spawn_blocking(move || {
                file.write_all_at(&data, at)
            }));
            Ok(())
        })
    }

    fn position(&self) -> u64 {
        self.pos
    }

    fn checkpoint<'a>(
        &'a mut self,
        info: &'a mut UploadInfo,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            self.settle().await?;
            self.drain().await?;
            let saved = self
                .sync_then_record(info)
                .await
                .map_err(|e| StoreError::Io(io::Error::other(e)))??;
            self.revision = saved.revision.clone();
            *info = saved;
            Ok(())
        })
    }

    fn checkpoint_behind<'a>(
        &'a mut self,
        info: &'a UploadInfo,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            if self.behind.as_ref().is_some_and(|h| !h.is_finished()) {
                return Ok(false);
            }
            self.settle().await?;
            self.drain().await?; // only bytes already written can be synced
            let job = self.sync_then_record(info);
            self.behind = Some(tokio::spawn(async move {
                job.await
                    .map_err(|e| StoreError::Io(io::Error::other(e)))?
                    .map(|saved| saved.revision)
            }));
            Ok(true)
        })
    }

    fn rollback(&mut self, offset: u64) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.settle().await.map_err(io::Error::other)?;
            self.drain().await?;
            if !self.placed {
                let file = self.file.clone();
                tokio::task::spawn_blocking(move || file.set_len(offset))
                    .await
                    .map_err(io::Error::other)??;
            }
            self.pos = offset;
            Ok(())
        })
    }

    fn close(&mut self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(async move {
            let settled = self.settle().await;
            self.drain().await?;
            settled
        })
    }
}
