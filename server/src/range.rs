//! Resolution of a `Range` request header against a representation length (RFC 9110 §14.1-14.2).
//! Pure: no I/O. `http-range-header` is at most used for syntax; the resolution is ours.

use ferry_proto::ByteRange;

/// What to send for a GET carrying `Range`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RangeOutcome {
    /// Ignore the header and send the whole representation with 200: unknown unit, invalid
    /// syntax, or a request that fails the amplification defence (CVE-2011-3192).
    Full,
    /// One range (after coalescing): 206 with `Content-Range`.
    Single(ByteRange),
    /// Two to [`MAX_RANGES`] disjoint, non-adjacent ranges: 206 `multipart/byteranges`.
    Multi(Vec<ByteRange>),
    /// Valid syntax but no range overlaps the representation: 416 with `bytes */len`.
    Unsatisfiable,
}

/// More ranges than this after coalescing is treated as abuse and answered with 200.
pub const MAX_RANGES: usize = 16;

/// Resolves `header` (the raw field value) against a representation of `len` bytes.
pub fn resolve(header: &str, len: u64) -> RangeOutcome {
    let _ = (header, len);
    unimplemented!("being written")
}
