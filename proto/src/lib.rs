//! HTTP vocabulary shared by `ferryd` (server) and `ferry` (client), kept in one place so the
//! two sides cannot disagree about an inclusive end or an escaped file name.
//!
//! - [`range`]: half-open [`ByteRange`], the `Range` request form and `Content-Range` (RFC 9110 §14).
//! - [`disposition`]: `Content-Disposition` build and parse (RFC 6266, RFC 8187).
//! - [`tus`]: tus 1.0.0 header names and the `Upload-Metadata` codec.
//! - [`headers`]: header-name constants not in the `http` crate.

pub mod disposition;
pub mod headers;
pub mod range;
pub mod tus;

pub use range::{ByteRange, ContentRange};
