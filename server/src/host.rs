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
/// an authority). No userinfo, path, or whitespace. A byte scan, not a URI parse: this runs on
/// every request (#13).
fn valid(v: &[u8]) -> bool {
    let (host, port) = match v.first() {
        None => return true,
        // IP-literal = "[" ( IPv6address / IPvFuture ) "]" (RFC 3986 §3.2.2)
        Some(b'[') => match v.iter().position(|&b| b == b']') {
            Some(end) if end > 1 => {
                let inner = &v[1..end];
                if !inner.iter().all(|&b| literal_byte(b)) {
                    return false;
                }
                (&v[..=end], &v[end + 1..])
            }
            _ => return false,
        },
        Some(_) => {
            let end = v.iter().position(|&b| b == b':').unwrap_or(v.len());
            (&v[..end], &v[end..])
        }
    };
    let host_ok = host.first() == Some(&b'[') || reg_name(host);
    // `port = *DIGIT` (RFC 3986 §3.2.3)
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    host_ok && port_ok
}

/// `reg-name = *( unreserved / pct-encoded / sub-delims )`, which IPv4 addresses also match.
fn reg_name(v: &[u8]) -> bool {
    let mut i = 0;
    while let Some(&b) = v.get(i) {
        if b == b'%' {
            let hex = v.get(i + 1..i + 3);
            if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                return false;
            }
            i += 3;
        } else if unreserved(b) || sub_delim(b) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

fn literal_byte(b: u8) -> bool {
    unreserved(b) || sub_delim(b) || b == b':'
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'='
    )
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
            "%41.example",
            "[v1.fe80::a+en1]",
            "x:",
        ] {
            assert!(ok(Version::HTTP_11, &[good]), "{good}");
        }
        for bad in [
            "a b", "u@x", "x/y", "x:port", "[::1", "x?q", "[]", "[::1]x", "x:1:2", "%zz", "x\\y",
            "[a/b]", "a#b", "x:-1",
        ] {
            assert!(!ok(Version::HTTP_11, &[bad]), "{bad}");
        }
    }
}
