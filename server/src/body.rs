//! The response body type shared by every handler, and how request body errors are told
//! apart.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::StreamExt;
use http_body::{Frame, SizeHint};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, StreamBody};

use crate::store::ByteStream;

/// The response body of every handler: nothing, one buffer, or any other body, boxed. The
/// first two are not boxed: a small file response is one buffer, and boxing it cost an
/// allocation and a dynamic call per poll of every small GET (#13).
pub enum Body {
    Empty,
    /// Emptied once its frame went out.
    Full(Bytes),
    Boxed(UnsyncBoxBody<Bytes, std::io::Error>),
}

pub fn empty() -> Body {
    Body::Empty
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Body::Full(data.into())
}

pub fn stream(s: ByteStream) -> Body {
    boxed(StreamBody::new(s.map(|r| r.map(Frame::data))))
}

/// Any other body.
pub fn boxed<B>(body: B) -> Body
where
    B: http_body::Body<Data = Bytes, Error = std::io::Error> + Send + 'static,
{
    Body::Boxed(body.boxed_unsync())
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        match self.get_mut() {
            Body::Empty => Poll::Ready(None),
            Body::Full(data) if data.is_empty() => Poll::Ready(None),
            Body::Full(data) => Poll::Ready(Some(Ok(Frame::data(std::mem::take(data))))),
            Body::Boxed(body) => Pin::new(body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            Body::Empty => true,
            Body::Full(data) => data.is_empty(),
            Body::Boxed(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            Body::Empty => SizeHint::with_exact(0),
            Body::Full(data) => SizeHint::with_exact(data.len() as u64),
            Body::Boxed(body) => body.size_hint(),
        }
    }
}

/// Whether an error reading a request body means the body broke HTTP/1.1 framing (a bad chunk
/// size or delimiter, trailers over the limit), as opposed to the peer going away (EOF, reset)
/// or HTTP/2 stream errors. hyper reports the first as an `InvalidData`/`InvalidInput` I/O
/// error under its body error, the others as `UnexpectedEof` or connection errors. A TLS
/// record that fails to decrypt is also `InvalidData`, and is treated the same: nothing read
/// through it is trusted.
pub fn is_malformed(e: &hyper::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::{InvalidData, InvalidInput};
            return matches!(io.kind(), InvalidData | InvalidInput);
        }
        cause = c.source();
    }
    false
}
