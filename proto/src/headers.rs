//! Header names that the `http` crate does not define. Handlers use these constants, never
//! string literals.

use http::HeaderName;

/// RFC 9530 §2.
pub const CONTENT_DIGEST: HeaderName = HeaderName::from_static("content-digest");
/// RFC 9530 §3.
pub const REPR_DIGEST: HeaderName = HeaderName::from_static("repr-digest");
/// Method override used by tus clients behind proxies that only pass GET/POST.
pub const X_HTTP_METHOD_OVERRIDE: HeaderName = HeaderName::from_static("x-http-method-override");
/// RFC 9530 §4: the digest algorithms a client would like `Repr-Digest` in.
pub const WANT_REPR_DIGEST: HeaderName = HeaderName::from_static("want-repr-digest");
