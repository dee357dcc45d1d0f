//! CORS for browser clients (Fetch standard §3.2), shared by tus, files and the page's assets:
//! an allowed `Origin` is echoed, and the tus and range response headers are exposed so
//! tus-js-client can read `Location` and `Upload-Offset` and a downloader `Content-Range`.

use http::{header, HeaderMap, HeaderValue};

pub const ALLOW_METHODS: &str = "POST, GET, HEAD, PATCH, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "Authorization, Content-Type, Tus-Resumable, Upload-Offset, Upload-Length, \
Upload-Defer-Length, Upload-Metadata, Upload-Concat, Upload-Checksum, X-HTTP-Method-Override, X-Requested-With, \
Ferry-Instant-Length, Range, If-Range, If-Match, If-None-Match, If-Modified-Since, If-Unmodified-Since";
const EXPOSE_HEADERS: &str =
    "Location, Upload-Offset, Upload-Length, Upload-Defer-Length, Upload-Expires, \
Upload-Metadata, Upload-Concat, Tus-Resumable, Tus-Version, Tus-Extension, Tus-Max-Size, \
Tus-Checksum-Algorithm, Ferry-Published, Ferry-Instant-Candidate, Content-Range, \
Content-Disposition, Accept-Ranges, ETag";

/// The value for `Access-Control-Allow-Origin`, if `origin` is allowed.
pub fn allowed(origins: &[String], origin: &str) -> Option<String> {
    if origins.iter().any(|o| o == "*") {
        Some("*".into())
    } else {
        origins
            .iter()
            .find(|o| o.eq_ignore_ascii_case(origin))
            .map(|_| origin.to_string())
    }
}

/// Adds the CORS headers to a response.
pub fn apply(origins: &[String], origin: Option<&HeaderValue>, preflight: bool, h: &mut HeaderMap) {
    if origins.is_empty() {
        return;
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(allow) = origin
        .and_then(|o| o.to_str().ok())
        .and_then(|o| allowed(origins, o))
    else {
        return;
    };
    let Ok(allow) = HeaderValue::try_from(allow) else {
        return;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static(EXPOSE_HEADERS),
    );
    if preflight {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(ALLOW_METHODS),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static(ALLOW_HEADERS),
        );
        h.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static("86400"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_listed_origins_are_echoed() {
        let list = vec!["https://app.example".to_string()];
        assert_eq!(
            allowed(&list, "https://app.example").as_deref(),
            Some("https://app.example")
        );
        assert_eq!(allowed(&list, "https://evil.example"), None);
        assert_eq!(allowed(&["*".into()], "https://any").as_deref(), Some("*"));
    }

    #[test]
    fn preflight_lists_methods_and_exposes_tus_headers() {
        let mut h = HeaderMap::new();
        let origin = HeaderValue::from_static("https://app.example");
        apply(&["https://app.example".into()], Some(&origin), true, &mut h);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://app.example"
        );
        let exposed = h[header::ACCESS_CONTROL_EXPOSE_HEADERS].to_str().unwrap();
        for name in [
            "Location",
            "Upload-Offset",
            "Upload-Length",
            "Upload-Expires",
            "Tus-Version",
        ] {
            assert!(exposed.contains(name), "{name}");
        }
        assert!(h[header::ACCESS_CONTROL_ALLOW_METHODS]
            .to_str()
            .unwrap()
            .contains("PATCH"));
    }
}
