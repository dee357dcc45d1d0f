//! The `Host` rule of HTTP/1.1 (RFC 9112 §3.2): "A server MUST respond with a 400 (Bad
//! Request) status code to any HTTP/1.1 request message that lacks a Host header field and to
//! any request message that contains more than one Host header field line or a Host header
//! field with an invalid field value." nginx answers the same cases with 400.
//!
//! HTTP/1.0 may omit `Host`; HTTP/2 carries the authority in `:authority` instead (RFC 9113
//! §8.3.1), so only a duplicated or invalid `Host` is refused there.

use http::{header, HeaderMap, Version};

use crate::error::{Error, Result};

/// 400 unless the request carries the `Host` its version requires, once, with a valid value.
pub fn check(version: Version, headers: &HeaderMap) -> Result<()> {
    let mut hosts = headers.get_all(header::HOST).iter();
    let host = match (hosts.next(), hosts.next()) {
        (None, _) if version == Version::HTTP_11 => {
            return Err(Error::bad_request(
                "expected a Host header (HTTP/1.1), got none",
            ))
        }
        (None, _) => return Ok(()),
        (Some(_), Some(_)) => {
            return Err(Error::bad_request("expected one Host header, got several"))
        }
        (Some(h), None) => h,
    };
    if valid(host.as_bytes()) {
        Ok(())
    } else {
        Err(Error::bad_request(
            "expected Host to be host[:port], got an invalid value",
        ))
    }
}

/// `Host = uri-host [ ":" port ]` (RFC 9110 §7.2), or empty (RFC 9112 §3.2: a target without
/// an authority). No userinfo, path, or whitespace.
fn valid(v: &[u8]) -> bool {
    if v.is_empty() {
        return true;
    }
    if v.contains(&b'@') {
        return false;
    }
    let Ok(a) = http::uri::Authority::try_from(v) else {
        return false;
    };
    // `port = *DIGIT` (RFC 3986 §3.2.3); `Authority` leaves the port unchecked.
    match a.as_str().get(a.host().len()..) {
        Some("") => true,
        Some(rest) => rest
            .strip_prefix(':')
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(hosts: &[&'static str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in hosts {
            h.append(header::HOST, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn http11_needs_exactly_one_valid_host() {
        // RFC 9112 §3.2
        let ok = |v, hs: &[&'static str]| check(v, &headers(hs)).is_ok();
        assert!(!ok(Version::HTTP_11, &[]));
        assert!(ok(Version::HTTP_10, &[]));
        assert!(ok(Version::HTTP_2, &[]));
        assert!(!ok(Version::HTTP_11, &["a", "a"]));
        assert!(!ok(Version::HTTP_2, &["a", "b"]));
        for good in [
            "example.com",
            "x:8080",
            "127.0.0.1:1",
            "[::1]:80",
            "[::1]",
            "",
        ] {
            assert!(ok(Version::HTTP_11, &[good]), "{good}");
        }
        for bad in ["a b", "u@x", "x/y", "x:port", "[::1", "x?q"] {
            assert!(!ok(Version::HTTP_11, &[bad]), "{bad}");
        }
    }
}
