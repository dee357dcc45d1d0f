//! The response body type shared by every handler, and how request body errors are told
//! apart.

use bytes::Bytes;
use futures_util::StreamExt;
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Empty, Full, StreamBody};
use hyper::body::Frame;

use crate::store::ByteStream;

pub type Body = UnsyncBoxBody<Bytes, std::io::Error>;

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

pub fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn stream(s: ByteStream) -> Body {
    StreamBody::new(s.map(|r| r.map(Frame::data))).boxed_unsync()
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
