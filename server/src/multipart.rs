//! `multipart/byteranges` responses (RFC 9110 §14.6), streamed part by part with an exact
//! `Content-Length` computed up front.

use std::sync::Arc;

use ferry_proto::ByteRange;

use crate::store::{ByteStream, FileHandle};

/// A planned multipart body: its `Content-Type` header value, exact length, and the stream.
pub struct Multipart {
    pub content_type: String,
    pub content_length: u64,
    pub body: ByteStream,
}

/// Builds the body for `ranges` (disjoint, in the order given) of `file`, whose own media type
/// is `part_type`. `boundary` is the separator string (no leading dashes).
pub fn multipart(file: Arc<dyn FileHandle>, ranges: &[ByteRange], part_type: &str, boundary: &str) -> Multipart {
    let _ = (file, ranges, part_type, boundary);
    unimplemented!("being written")
}
