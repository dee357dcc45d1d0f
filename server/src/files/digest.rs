//! `Repr-Digest` (RFC 9530 §3) on file responses, and the client's `Want-Repr-Digest`
//! (§4). ferryd has SHA-256 digests only (from the content index).

use base64::Engine as _;
use http::{HeaderMap, HeaderValue};

use ferry_proto::headers::WANT_REPR_DIGEST;

/// Whether the request lets a `Repr-Digest: sha-256=…` go out: always without
/// `Want-Repr-Digest` (the field may be sent unsolicited, §3); with it, only if it gives
/// `sha-256` a preference above 0.
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(WANT_REPR_DIGEST)
        .is_none_or(|v| wants_sha256(v.as_bytes()))
}

/// Reads a `Want-Repr-Digest` value: an RFC 8941 dictionary of algorithm keys to integer
/// preferences 0-10, where 0 means "not acceptable" (RFC 9530 §4). A field that does not
/// parse as one is ignored (RFC 8941 §4.2), as if it were absent.
pub fn wants_sha256(value: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(value) else {
        return true;
    };
    let mut sha256 = None;
    for member in text.split(',') {
        // Parameters (`;a=b`) carry nothing for us.
        let member = member.split(';').next().unwrap_or_default();
        let Some((key, pref)) = member.trim_matches([' ', '\t']).split_once('=') else {
            return true;
        };
        let key_ok = key.starts_with(|c: char| c.is_ascii_lowercase() || c == '*')
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.*".contains(&b));
        match pref.parse::<u8>() {
            Ok(p) if p <= 10 && key_ok => {
                if key == "sha-256" {
                    sha256 = Some(p); // the last of duplicate keys wins (RFC 8941 §4.2.2)
                }
            }
            _ => return true,
        }
    }
    sha256.is_some_and(|p| p > 0)
}

/// The field value for a SHA-256 digest: `sha-256=:<base64>:`.
pub fn repr_digest(sha256: &[u8; 32]) -> Option<HeaderValue> {
    let b64 = base64::engine::general_purpose::STANDARD.encode(sha256);
    HeaderValue::try_from(format!("sha-256=:{b64}:")).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn want_repr_digest_is_read_as_rfc_9530_section_4_says() {
        for (field, want) in [
            ("sha-256=1", true),
            ("sha-512=3, sha-256=10", true),
            ("sha-256=5;foo=1", true),
            ("sha-512=3", false), // only an algorithm we lack: no field
            ("sha-256=0", false), // 0: not acceptable
            ("sha-512=10, sha-256=0", false),
            ("sha-256=3, sha-256=0", false), // the last duplicate wins
            ("sha-256", true),               // not a dictionary of integers: ignored
            ("sha-256=11", true),            // out of range: ignored
            ("SHA-256=1", true),             // keys are lowercase: invalid, ignored
            ("", true),
        ] {
            assert_eq!(wants_sha256(field.as_bytes()), want, "{field:?}");
        }
        assert!(wanted(&HeaderMap::new()));
        let mut h = HeaderMap::new();
        h.insert(WANT_REPR_DIGEST, HeaderValue::from_static("md5=5"));
        assert!(!wanted(&h));
    }

    #[test]
    fn value_is_a_byte_sequence_of_the_digest() {
        // SHA-256 of the empty string (`printf '' | openssl dgst -sha256 -binary | base64`).
        let sha: [u8; 32] =
            hex::decode("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(
            repr_digest(&sha).unwrap(),
            "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:"
        );
    }
}
