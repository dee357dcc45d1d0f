//! Appending to staging data: positional writes on the blocking pool, one in flight while the
//! next chunk is received; a checkpoint syncs the data before it records the offset.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use tokio::task::JoinHandle;

use super::super::upload::{Appender, UploadInfo};
use super::super::{BoxFuture, StoreError};
use super::{blocking, save_info};

/// Positional writes on the blocking pool, one in flight while the next chunk is received.
pub(super) struct FsAppender {
    pub(super) root: PathBuf,
    pub(super) file: Arc<File>,
    pub(super) pos: u64,
    pub(super) pending: Option<JoinHandle<io::Result<()>>>,
}

impl FsAppender {
    async fn drain(&mut self) -> io::Result<()> {
        match self.pending.take() {
            Some(h) => h.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Appender for FsAppender {
    fn write(&mut self, data: Bytes) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.drain().await?;
            let (file, at) = (self.file.clone(), self.pos);
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
            self.drain().await?;
            let (file, root, mut next) = (self.file.clone(), self.root.clone(), info.clone());
            next.offset = self.pos;
            let saved = blocking(move || {
                file.sync_data()?; // data first ...
                save_info(&root, &next)?; // ... then the offset that claims it
                Ok(next)
            })
            .await?;
            *info = saved;
            Ok(())
        })
    }

    fn rollback(&mut self, offset: u64) -> BoxFuture<'_, io::Result<()>> {
        Box::pin(async move {
            self.drain().await?;
            let file = self.file.clone();
            tokio::task::spawn_blocking(move || file.set_len(offset))
                .await
                .map_err(io::Error::other)??;
            self.pos = offset;
            Ok(())
        })
    }
}
