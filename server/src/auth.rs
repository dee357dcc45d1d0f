//! Bearer tokens (RFC 6750 §2.1): uploads (POST, PATCH, DELETE) need the upload token, reads
//! (HEAD, GET) the read token when one is configured; the upload token also allows HEAD of an
//! upload, so that an uploader can resume. Tokens are compared in constant time. Every 401
//! carries [`CHALLENGE`] (RFC 9110 §11.6.1, RFC 6750 §3), added where errors become
//! responses.

use http::{header, HeaderMap, Method, StatusCode};

use crate::error::{Error, Result};
use crate::tus::TusConfig;

/// Compares two byte strings in time that depends only on their lengths, never on where they
/// first differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = (a.len() ^ b.len()) as u64;
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= u64::from(std::hint::black_box(x ^ y));
    }
    diff == 0
}

/// Whether `Authorization: Bearer <token>` carries `token`.
pub fn bearer_ok(h: &HeaderMap, token: &str) -> bool {
    let Some(value) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let mut parts = value.trim().splitn(2, ' ');
    let scheme = parts.next().unwrap_or("");
    let given = parts.next().unwrap_or("").trim();
    scheme.eq_ignore_ascii_case("bearer") && constant_time_eq(given.as_bytes(), token.as_bytes())
}

/// The cookie a browser carries the read token in. A browser cannot add `Authorization` to a
/// navigation, so the page's login form (see [`crate::ui`]) stores the token here (`SameSite=
/// Strict`, so other sites cannot make the browser read with it); only reads accept it.
pub const READ_COOKIE: &str = "ferry-read-token";

/// Whether a `Cookie` header carries `name=token` (the value percent-decoded).
pub fn cookie_ok(h: &HeaderMap, name: &str, token: &str) -> bool {
    let mut ok = false;
    for v in h
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        for pair in v.split(';') {
            let Some((k, val)) = pair.trim().split_once('=') else {
                continue;
            };
            if k == name {
                let val = percent_encoding::percent_decode_str(val).decode_utf8_lossy();
                ok |= constant_time_eq(val.as_bytes(), token.as_bytes());
            }
        }
    }
    ok
}

/// Whether a read may proceed: the read token as a bearer token or in [`READ_COOKIE`].
pub fn read_ok(h: &HeaderMap, token: &str) -> bool {
    bearer_ok(h, token) || cookie_ok(h, READ_COOKIE, token)
}

/// The `WWW-Authenticate` value of every 401: files and uploads alike.
pub const CHALLENGE: &str = "Bearer realm=\"ferry\"";

/// Whether the request may upload: it carries the upload token, or uploads are public.
pub fn is_uploader(cfg: &TusConfig, h: &HeaderMap) -> bool {
    cfg.upload_token.as_deref().is_none_or(|t| bearer_ok(h, t))
}

/// 401 unless the request carries the token its method needs. HEAD of an upload is also
/// allowed to an uploader (tus clients resume with HEAD; RFC 6750 leaves scopes to us).
pub fn check(cfg: &TusConfig, method: &Method, h: &HeaderMap) -> Result<()> {
    let (token, what) = match *method {
        Method::POST | Method::PATCH | Method::DELETE => (cfg.upload_token.as_deref(), "upload"),
        Method::HEAD if cfg.read_token.is_some() && is_uploader(cfg, h) => (None, "upload"),
        _ => (cfg.read_token.as_deref(), "read"),
    };
    match token {
        Some(t) if !(bearer_ok(h, t) || (what == "read" && cookie_ok(h, READ_COOKIE, t))) => {
            Err(Error::client(
                StatusCode::UNAUTHORIZED,
                format!("expected Authorization: Bearer <{what} token>"),
            ))
        }
        _ => Ok(()),
    }
}

/// A fresh 256-bit token, hex-encoded, for a server started without one.
pub fn generate_token() -> std::io::Result<String> {
    crate::store::upload::random_hex(32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_read_cookie_is_found_among_others_and_decoded() {
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; ferry-read-token=r%20t"),
        );
        assert!(read_ok(&h, "r t"));
        assert!(!read_ok(&h, "r"));
        assert!(!cookie_ok(&h, "other", "r t"));
        let mut h = HeaderMap::new();
        h.append(
            header::COOKIE,
            HeaderValue::from_static("x-ferry-read-token=r"),
        );
        assert!(!read_ok(&h, "r"), "the name matches exactly");
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
        assert!(constant_time_eq(b"", b""));
    }

    #[test]
    fn bearer_scheme_is_case_insensitive_token_is_not() {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer abc"),
        );
        assert!(bearer_ok(&h, "abc"));
        assert!(!bearer_ok(&h, "ABC"));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert!(!bearer_ok(&h, "abc"));
    }

    #[test]
    fn reads_are_public_unless_a_read_token_is_set() {
        let mut cfg = TusConfig {
            upload_token: Some("u".into()),
            ..TusConfig::default()
        };
        let none = HeaderMap::new();
        assert!(check(&cfg, &Method::HEAD, &none).is_ok());
        assert_eq!(
            check(&cfg, &Method::PATCH, &none).unwrap_err().status(),
            StatusCode::UNAUTHORIZED
        );
        cfg.read_token = Some("r".into());
        assert!(check(&cfg, &Method::GET, &none).is_err());
        // The upload token lets an uploader resume (HEAD), not download (GET).
        let mut upload = HeaderMap::new();
        upload.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer u"));
        assert!(check(&cfg, &Method::HEAD, &upload).is_ok());
        assert!(check(&cfg, &Method::GET, &upload).is_err());
        assert!(check(&cfg, &Method::HEAD, &none).is_err());
    }
}
