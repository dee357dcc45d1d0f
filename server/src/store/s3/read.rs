//! An opened S3 object: the metadata of the version a HEAD saw, and ranged GETs of exactly
//! that version.

use std::io;
use std::sync::Arc;

use ferry_proto::ByteRange;
use futures_util::TryStreamExt as _;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore};

use crate::store::{ByteStream, FileHandle, Meta};

pub struct S3File {
    client: Arc<dyn ObjectStore>,
    key: Key,
    meta: Meta,
    /// The SHA-256 of this version, if the content index hashed it (`Repr-Digest`).
    sha256: Option<[u8; 32]>,
}

impl S3File {
    pub fn new(client: Arc<dyn ObjectStore>, key: Key, meta: Meta) -> Self {
        Self {
            client,
            key,
            meta,
            sha256: None,
        }
    }

    /// This version's SHA-256, known from the content index.
    pub fn with_sha256(self, sha256: Option<[u8; 32]>) -> Self {
        Self { sha256, ..self }
    }
}

impl FileHandle for S3File {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn sha256(&self) -> Option<[u8; 32]> {
        self.sha256
    }

    /// One GET for the range (`Range: bytes=start-(end-1)`; none for the whole object, which
    /// some servers answer cheaper: moto copies a ranged body once more), conditional on the
    /// ETag the response announced: if the object was replaced since, S3 answers 412 and the
    /// stream fails, so the connection is reset rather than a mix of two versions sent.
    ///
    /// The body streams as hyper polls it: each chunk is the `Bytes` the HTTP client read
    /// (up to about 500 KiB, hyper's read buffer), passed on whole, never copied or re-cut.
    /// Reading ahead is the HTTP client's own: its connection task reads the next chunk into a
    /// one-chunk slot while the response writes the one before, and the kernel's socket
    /// buffers hold more. Memory is then about two chunks per response whatever the range or
    /// the client's speed (32 ranges of 2 MiB to clients at 256 KiB/s: ferryd's peak RSS 15
    /// MiB). The relay costs ferryd 0.3 s of CPU per GiB on loopback, nine tenths of it in the
    /// kernel (the two sockets' copies and TCP); measured on moto and left out (issue 11 point
    /// 7(i), `bench/s3`): a task reading up to 4 chunks ahead into a channel (more CPU, no
    /// gain in speed), and a few ranged GETs at once (moto reads the whole object for every
    /// GET: two halves of 1 GiB took twice as long as one GET of it).
    fn read(self: Arc<Self>, range: ByteRange) -> ByteStream {
        let whole = range.start == 0 && range.end == self.meta.len;
        let opts = GetOptions {
            range: (!whole).then_some(GetRange::Bounded(range.start..range.end)),
            if_match: Some(self.meta.etag.clone()),
            ..GetOptions::default()
        };
        let get = async move {
            let got = self.client.get_opts(&self.key, opts).await?;
            Ok::<_, object_store::Error>(got.into_stream())
        };
        let want = range.len();
        let body = futures_util::stream::once(get)
            .try_flatten()
            .map_err(io::Error::other);
        Box::pin(exactly(body, want))
    }
}

/// Passes `body` on, failing it if it ends before `want` bytes or carries more: a server
/// that ignored the range must not turn into a wrong body with a right Content-Length.
fn exactly(
    body: impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send + 'static,
    want: u64,
) -> impl futures_util::Stream<Item = io::Result<bytes::Bytes>> + Send + 'static {
    let mut seen = 0u64;
    let mut body = Box::pin(body);
    let mut done = false;
    futures_util::stream::poll_fn(move |cx| {
        if done {
            return std::task::Poll::Ready(None);
        }
        let item = std::task::ready!(body.as_mut().poll_next(cx));
        let out = match item {
            Some(Ok(chunk)) => {
                seen = seen.saturating_add(chunk.len() as u64);
                if seen > want {
                    done = true;
                    Some(Err(io::Error::other(format!(
                        "expected {want} bytes from S3, got more"
                    ))))
                } else {
                    Some(Ok(chunk))
                }
            }
            Some(Err(e)) => {
                done = true;
                Some(Err(e))
            }
            None if seen < want => {
                done = true;
                Some(Err(io::Error::other(format!(
                    "expected {want} bytes from S3, got {seen}"
                ))))
            }
            None => None,
        };
        std::task::Poll::Ready(out)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_util::StreamExt as _;

    async fn run(chunks: &[&'static [u8]], want: u64) -> Vec<io::Result<Bytes>> {
        let items: Vec<io::Result<Bytes>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        exactly(futures_util::stream::iter(items), want)
            .collect()
            .await
    }

    #[tokio::test]
    async fn a_body_of_the_wrong_length_fails_the_stream() {
        let ok = run(&[b"ab", b"c"], 3).await;
        assert!(ok.iter().all(|r| r.is_ok()) && ok.len() == 2);
        let short = run(&[b"ab"], 3).await;
        assert!(short.last().unwrap().is_err(), "short body");
        let long = run(&[b"ab", b"cd"], 3).await;
        assert!(long.last().unwrap().is_err(), "ignored range");
        assert_eq!(long.len(), 2);
    }
}
