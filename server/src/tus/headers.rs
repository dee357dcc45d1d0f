//! Typed parsing of tus request headers (pure) and the response headers ferry adds.

use ferry_proto::tus::{
    decode_metadata, TUS_RESUMABLE, TUS_VERSION, UPLOAD_DEFER_LENGTH, UPLOAD_LENGTH,
    UPLOAD_METADATA,
};
use http::{header, HeaderMap, HeaderName, StatusCode};

use crate::error::{Error, Result};

pub use ferry_proto::tus::{FERRY_PUBLISHED, META_DIR};

/// tus core: every request but OPTIONS carries `Tus-Resumable: 1.0.0`, else 412.
pub fn check_version(h: &HeaderMap) -> Result<()> {
    match h.get(TUS_RESUMABLE).map(|v| v.to_str()) {
        Some(Ok(v)) if v.trim() == TUS_VERSION => Ok(()),
        Some(v) => Err(Error::client(
            StatusCode::PRECONDITION_FAILED,
            format!(
                "expected Tus-Resumable {TUS_VERSION}, got {:?}",
                v.unwrap_or("(not text)")
            ),
        )),
        None => Err(Error::client(
            StatusCode::PRECONDITION_FAILED,
            format!("expected Tus-Resumable {TUS_VERSION}, got none"),
        )),
    }
}

/// A non-negative decimal header value (`Upload-Offset`, `Upload-Length`), if present.
pub fn u64_header(h: &HeaderMap, name: &HeaderName) -> Result<Option<u64>> {
    let Some(v) = h.get(name) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or("").trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::bad_request(format!(
            "expected a non-negative integer in {name}, got {v:?}"
        )));
    }
    s.parse()
        .map(Some)
        .map_err(|_| Error::bad_request(format!("{name} {s} is too large")))
}

/// `Upload-Length: n` or `Upload-Defer-Length: 1` (creation, creation-defer-length): exactly
/// one of them. `None` means deferred.
pub fn length_or_defer(h: &HeaderMap) -> Result<Option<u64>> {
    let length = u64_header(h, &UPLOAD_LENGTH)?;
    let defer = h.get(UPLOAD_DEFER_LENGTH).map(|v| v.as_bytes());
    match (length, defer) {
        (Some(l), None) => Ok(Some(l)),
        (None, Some(b"1")) => Ok(None),
        (None, Some(v)) => Err(Error::bad_request(format!(
            "expected Upload-Defer-Length 1, got {:?}",
            String::from_utf8_lossy(v)
        ))),
        (Some(_), Some(_)) => Err(Error::bad_request(
            "expected Upload-Length or Upload-Defer-Length, got both",
        )),
        (None, None) => Err(Error::bad_request(
            "expected Upload-Length or Upload-Defer-Length, got neither",
        )),
    }
}

/// The `Upload-Metadata` value as sent, after checking it decodes (400 otherwise).
pub fn metadata(h: &HeaderMap) -> Result<Option<String>> {
    let Some(v) = h.get(UPLOAD_METADATA) else {
        return Ok(None);
    };
    let s = v
        .to_str()
        .map_err(|_| Error::bad_request("Upload-Metadata is not ASCII"))?;
    decode_metadata(s).map_err(|e| Error::bad_request(e.to_string()))?;
    Ok(Some(s.to_string()))
}

/// One decoded metadata value as UTF-8 text, if the key is present with a value.
pub fn meta_value(metadata: Option<&str>, key: &str) -> Option<String> {
    let pairs = decode_metadata(metadata?).ok()?;
    let (_, v) = pairs.into_iter().find(|(k, _)| k == key)?;
    String::from_utf8(v?).ok()
}

/// Whether the body is tus data (`Content-Type: application/offset+octet-stream`).
pub fn is_offset_stream(h: &HeaderMap) -> bool {
    h.get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case(ferry_proto::tus::OFFSET_OCTET_STREAM)
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(HeaderName::from_static(k), HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn version_must_be_exactly_1_0_0() {
        assert!(check_version(&map(&[("tus-resumable", "1.0.0")])).is_ok());
        for bad in [map(&[("tus-resumable", "0.2.2")]), map(&[])] {
            assert_eq!(
                check_version(&bad).unwrap_err().status(),
                StatusCode::PRECONDITION_FAILED
            );
        }
    }

    #[test]
    fn integers_refuse_signs_and_garbage() {
        let h = map(&[("upload-offset", "42")]);
        assert_eq!(
            u64_header(&h, &ferry_proto::tus::UPLOAD_OFFSET).unwrap(),
            Some(42)
        );
        for bad in ["-1", "+1", "1.5", "", "99999999999999999999999"] {
            let mut h = HeaderMap::new();
            h.insert(
                ferry_proto::tus::UPLOAD_OFFSET,
                HeaderValue::from_str(bad).unwrap(),
            );
            assert!(
                u64_header(&h, &ferry_proto::tus::UPLOAD_OFFSET).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn length_xor_defer() {
        assert_eq!(
            length_or_defer(&map(&[("upload-length", "5")])).unwrap(),
            Some(5)
        );
        assert_eq!(
            length_or_defer(&map(&[("upload-defer-length", "1")])).unwrap(),
            None
        );
        assert!(length_or_defer(&map(&[("upload-defer-length", "0")])).is_err());
        assert!(length_or_defer(&map(&[])).is_err());
        assert!(length_or_defer(&map(&[
            ("upload-length", "5"),
            ("upload-defer-length", "1")
        ]))
        .is_err());
    }

    #[test]
    fn metadata_is_validated_and_kept_verbatim() {
        let h = map(&[("upload-metadata", "filename YS50eHQ=,flag")]);
        assert_eq!(
            metadata(&h).unwrap().as_deref(),
            Some("filename YS50eHQ=,flag")
        );
        assert_eq!(
            meta_value(Some("filename YS50eHQ=,flag"), "filename").as_deref(),
            Some("a.txt")
        );
        assert_eq!(meta_value(Some("filename YS50eHQ=,flag"), "flag"), None);
        assert!(metadata(&map(&[("upload-metadata", "a YQ==,a YQ==")])).is_err());
        assert!(metadata(&map(&[("upload-metadata", "a %%%")])).is_err());
    }

    #[test]
    fn offset_stream_content_type_ignores_case_and_params() {
        assert!(is_offset_stream(&map(&[(
            "content-type",
            "Application/Offset+Octet-Stream; x=1"
        )])));
        assert!(!is_offset_stream(&map(&[(
            "content-type",
            "application/octet-stream"
        )])));
        assert!(!is_offset_stream(&map(&[])));
    }
}
