//! Whether the S3 server honours conditional writes (issue 11 point 4). Several ferryd
//! instances can share a bucket safely only if every change to an upload record is a
//! compare-and-swap: a create-if-absent (`If-None-Match: *`) must fail when the object
//! exists, a replace-if-match (`If-Match: ETAG`) must fail on a stale ETag. Some
//! S3-compatible servers ignore the headers and overwrite (Garage today); there, only a
//! single ferryd may write under the prefix. The probe writes under the state prefix and
//! removes what it wrote.

use object_store::path::Path as Key;
use object_store::{ObjectStoreExt as _, PutMode, PutOptions, UpdateVersion};

use super::{from_s3, S3Store};
use crate::store::upload::random_hex;
use crate::store::visibility::RESERVED;
use crate::store::StoreError;

/// What the probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionalWrites {
    /// Both a second create-if-absent and a replace with a stale ETag were refused.
    Honoured,
    /// The server wrote anyway: it ignores `If-None-Match` (or `If-Match`).
    Ignored,
}

impl S3Store {
    /// Probes the server (three writes and a delete of one object under `PREFIX/.ferry/`).
    pub async fn probe_conditional_writes(&self) -> Result<ConditionalWrites, StoreError> {
        let name = format!("probe-{}", random_hex(8)?);
        let key = match self.prefix.as_str() {
            "" => Key::from_iter([RESERVED, name.as_str()]),
            p => Key::from_iter(
                p.split('/')
                    .filter(|s| !s.is_empty())
                    .chain([RESERVED, name.as_str()]),
            ),
        };
        let result = self.probe_at(&key).await;
        if let Err(e) = self.client.delete(&key).await {
            tracing::debug!(%key, error = %e, "could not remove the conditional-write probe");
        }
        result
    }

    async fn probe_at(&self, key: &Key) -> Result<ConditionalWrites, StoreError> {
        let put = |body: &'static str, mode: PutMode| {
            let opts = PutOptions {
                mode,
                ..PutOptions::default()
            };
            self.client.put_opts(key, body.into(), opts)
        };
        put("first", PutMode::Create).await.map_err(from_s3)?;
        match put("second", PutMode::Create).await {
            Err(object_store::Error::AlreadyExists { .. }) => {}
            Ok(_) => return Ok(ConditionalWrites::Ignored),
            Err(e) => return Err(from_s3(e)),
        }
        let stale = UpdateVersion {
            e_tag: Some("\"00000000000000000000000000000000\"".into()),
            version: None,
        };
        match put("third", PutMode::Update(stale)).await {
            Err(object_store::Error::Precondition { .. }) => Ok(ConditionalWrites::Honoured),
            Ok(_) => Ok(ConditionalWrites::Ignored),
            Err(e) => Err(from_s3(e)),
        }
    }
}
