//! tus 1.0.0 vocabulary (tus.io `protocols/resumable-upload`): header names, the version
//! string, and the `Upload-Metadata` codec.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::HeaderName;

pub const TUS_VERSION: &str = "1.0.0";
/// Media type a PATCH body must carry (tus core, PATCH).
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

pub const TUS_RESUMABLE: HeaderName = HeaderName::from_static("tus-resumable");
pub const TUS_VERSION_HEADER: HeaderName = HeaderName::from_static("tus-version");
pub const TUS_EXTENSION: HeaderName = HeaderName::from_static("tus-extension");
pub const TUS_MAX_SIZE: HeaderName = HeaderName::from_static("tus-max-size");
pub const TUS_CHECKSUM_ALGORITHM: HeaderName = HeaderName::from_static("tus-checksum-algorithm");
pub const UPLOAD_OFFSET: HeaderName = HeaderName::from_static("upload-offset");
pub const UPLOAD_LENGTH: HeaderName = HeaderName::from_static("upload-length");
pub const UPLOAD_DEFER_LENGTH: HeaderName = HeaderName::from_static("upload-defer-length");
pub const UPLOAD_METADATA: HeaderName = HeaderName::from_static("upload-metadata");
pub const UPLOAD_EXPIRES: HeaderName = HeaderName::from_static("upload-expires");
pub const UPLOAD_CHECKSUM: HeaderName = HeaderName::from_static("upload-checksum");
pub const UPLOAD_CONCAT: HeaderName = HeaderName::from_static("upload-concat");

/// Metadata key carrying the whole file's SHA-256, lowercase hex, for instant upload (a ferry
/// extension: a server that already holds this content completes the upload at once).
pub const META_SHA256: &str = "sha256";
/// Metadata key of the file name (the key tus-js-client, tuspy and Uppy use).
pub const META_FILENAME: &str = "filename";
/// Metadata key of the target directory, relative to the served root (a ferry extension).
pub const META_DIR: &str = "dir";
/// ferry extension: the URL path a finished upload was published as (it differs from the
/// requested name when that name was taken). ferryd sends it; `ferry put` prints it.
pub const FERRY_PUBLISHED: HeaderName = HeaderName::from_static("ferry-published");
/// ferry extension, on OPTIONS: a client about to upload a file of this many bytes asks
/// whether instant upload could apply before it spends the time hashing the file.
pub const FERRY_INSTANT_LENGTH: HeaderName = HeaderName::from_static("ferry-instant-length");
/// ferry extension, the answer to [`FERRY_INSTANT_LENGTH`] (an RFC 8941 boolean): `?1` when
/// the content index holds a file of exactly that length (hash and send `sha256`), `?0` when
/// it holds none (instant upload cannot apply). Absent: the server does not know.
pub const FERRY_INSTANT_CANDIDATE: HeaderName = HeaderName::from_static("ferry-instant-candidate");

/// One `Upload-Metadata` pair: the key, and the decoded value (tus allows a key alone).
pub type MetadataPair = (String, Option<Vec<u8>>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("Upload-Metadata key {0:?} is empty or contains spaces or commas")]
    BadKey(String),
    #[error("Upload-Metadata value for key {0:?} is not valid base64")]
    BadBase64(String),
    #[error("Upload-Metadata key {0:?} appears more than once")]
    DuplicateKey(String),
    #[error("Upload-Metadata pair {0:?} has more than a key and a value")]
    ExtraField(String),
}

/// Decodes `key base64,key2 base64,key3` (tus core, Upload-Metadata). Keys are unique,
/// non-empty ASCII without spaces or commas; values are standard base64 with padding.
pub fn decode_metadata(header: &str) -> Result<Vec<MetadataPair>, MetadataError> {
    let mut out: Vec<MetadataPair> = Vec::new();
    if header.trim().is_empty() {
        return Ok(out);
    }
    for pair in header.split(',') {
        let pair = pair.trim();
        let mut fields = pair.split(' ').filter(|f| !f.is_empty());
        let key = fields.next().unwrap_or_default();
        if key.is_empty() || !key.is_ascii() {
            return Err(MetadataError::BadKey(key.to_string()));
        }
        let value = match fields.next() {
            None => None,
            Some(v) => Some(
                STANDARD
                    .decode(v)
                    .map_err(|_| MetadataError::BadBase64(key.to_string()))?,
            ),
        };
        if fields.next().is_some() {
            return Err(MetadataError::ExtraField(pair.to_string()));
        }
        if out.iter().any(|(k, _)| k == key) {
            return Err(MetadataError::DuplicateKey(key.to_string()));
        }
        out.push((key.to_string(), value));
    }
    Ok(out)
}

/// Encodes pairs into an `Upload-Metadata` value.
pub fn encode_metadata<'a>(pairs: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) -> String {
    pairs
        .into_iter()
        .map(|(k, v)| match v {
            Some(v) => format!("{k} {}", STANDARD.encode(v)),
            None => k.to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_utf8_and_bare_keys() {
        let v = encode_metadata([
            ("filename", Some("报告.pdf".as_bytes())),
            ("is_confidential", None),
        ]);
        let d = decode_metadata(&v).unwrap();
        assert_eq!(
            d[0],
            ("filename".into(), Some("报告.pdf".as_bytes().to_vec()))
        );
        assert_eq!(d[1], ("is_confidential".into(), None));
    }

    #[test]
    fn metadata_spec_example() {
        // tus core, Upload-Metadata example.
        let d = decode_metadata(
            "relativePath bnVsbA==,filename d29ybGRfZG9taW5hdGlvbl9wbGFuLnBkZg==,is_confidential",
        )
        .unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d[1].1.as_deref(), Some(&b"world_domination_plan.pdf"[..]));
    }

    #[test]
    fn metadata_errors() {
        assert_eq!(
            decode_metadata("a !!!"),
            Err(MetadataError::BadBase64("a".into()))
        );
        assert_eq!(
            decode_metadata("a YQ==,a YQ=="),
            Err(MetadataError::DuplicateKey("a".into()))
        );
        assert!(matches!(
            decode_metadata("a YQ== YQ=="),
            Err(MetadataError::ExtraField(_))
        ));
        assert!(matches!(
            decode_metadata("a YQ==,,b"),
            Err(MetadataError::BadKey(_))
        ));
        assert_eq!(decode_metadata("").unwrap(), vec![]);
    }
}
