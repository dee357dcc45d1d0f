//! The checksum and checksum-trailer extensions: `Upload-Checksum: <algorithm> <base64 digest>`
//! over the body of one PATCH. Unsupported algorithm, bad base64 or a digest of the wrong
//! length for its algorithm → 400 (a malformed header: resending the chunk cannot help, so it
//! must not be a 460); mismatch → 460 and the chunk is discarded (the offset does not move).

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use http::StatusCode;
use md5::Digest as _;

use crate::error::{Error, Result};

/// Advertised in `Tus-Checksum-Algorithm`.
pub const ALGORITHMS: &str = "sha1,md5,sha256,crc32";

/// tus checksum: "460 Checksum Mismatch".
pub fn mismatch(reason: impl Into<String>) -> Error {
    Error::client(
        StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
        reason,
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Md5,
    Sha256,
    /// CRC-32 (IEEE), digest as 4 big-endian bytes.
    Crc32,
}

impl Algorithm {
    pub const ALL: [Algorithm; 4] = [
        Algorithm::Sha1,
        Algorithm::Md5,
        Algorithm::Sha256,
        Algorithm::Crc32,
    ];

    fn parse(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "sha1" => Algorithm::Sha1,
            "md5" => Algorithm::Md5,
            "sha256" => Algorithm::Sha256,
            "crc32" => Algorithm::Crc32,
            _ => return None,
        })
    }

    /// Length of a digest in bytes.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Sha1 => 20,
            Algorithm::Md5 => 16,
            Algorithm::Sha256 => 32,
            Algorithm::Crc32 => 4,
        }
    }
}

/// A parsed `Upload-Checksum`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

/// Parses `Upload-Checksum` (400 for an unknown algorithm, bad base64 or a digest whose length
/// does not fit the algorithm).
pub fn parse(value: &str) -> Result<Expected> {
    let (name, b64) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
    let algorithm = Algorithm::parse(name).ok_or_else(|| {
        Error::bad_request(format!(
            "expected a checksum algorithm of {ALGORITHMS}, got {name:?}"
        ))
    })?;
    let digest = STANDARD
        .decode(b64.trim())
        .map_err(|_| Error::bad_request("expected a base64 digest in Upload-Checksum"))?;
    if digest.len() != algorithm.digest_len() {
        return Err(Error::bad_request(format!(
            "expected a {}-byte {name} digest in Upload-Checksum, got {} bytes",
            algorithm.digest_len(),
            digest.len()
        )));
    }
    Ok(Expected { algorithm, digest })
}

/// A running digest of one algorithm.
pub enum Hasher {
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Sha256(sha2::Sha256),
    Crc32(crc32fast::Hasher),
}

impl Hasher {
    pub fn new(a: Algorithm) -> Self {
        match a {
            Algorithm::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algorithm::Md5 => Hasher::Md5(md5::Md5::new()),
            Algorithm::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algorithm::Crc32 => Hasher::Crc32(crc32fast::Hasher::new()),
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Hasher::Sha1(_) => Algorithm::Sha1,
            Hasher::Md5(_) => Algorithm::Md5,
            Hasher::Sha256(_) => Algorithm::Sha256,
            Hasher::Crc32(_) => Algorithm::Crc32,
        }
    }

    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
            Hasher::Sha256(h) => h.update(data),
            Hasher::Crc32(h) => h.update(data),
        }
    }

    pub fn finalize(self) -> Vec<u8> {
        match self {
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Crc32(h) => h.finalize().to_be_bytes().to_vec(),
        }
    }
}

/// The digests a PATCH computes: one algorithm when `Upload-Checksum` came as a header, all of
/// them when it is announced as a trailer (the algorithm is only known at the end).
pub struct Digests(Vec<Hasher>);

impl Digests {
    pub fn one(a: Algorithm) -> Self {
        Digests(vec![Hasher::new(a)])
    }

    pub fn all() -> Self {
        Digests(Algorithm::ALL.into_iter().map(Hasher::new).collect())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.iter_mut().for_each(|h| h.update(data));
    }

    /// Checks `expected`; 460 on mismatch.
    pub fn verify(self, expected: &Expected) -> Result<()> {
        let hasher = self
            .0
            .into_iter()
            .find(|h| h.algorithm() == expected.algorithm);
        match hasher.map(Hasher::finalize) {
            Some(d) if d == expected.digest => Ok(()),
            Some(d) => Err(mismatch(format!(
                "expected {:?} digest {}, computed {}",
                expected.algorithm,
                STANDARD.encode(&expected.digest),
                STANDARD.encode(d)
            ))),
            None => Err(mismatch(
                "the Upload-Checksum trailer names another algorithm than the header",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(a: &str, data: &[u8], digest_b64: &str) -> Result<()> {
        let e = parse(&format!("{a} {digest_b64}"))?;
        let mut d = Digests::one(e.algorithm);
        d.update(data);
        d.verify(&e)
    }

    #[test]
    fn known_digests_of_hello() {
        // Digests of "hello" from sha1sum, md5sum, sha256sum and crc32 (IEEE 0x3610a686).
        check("sha1", b"hello", "qvTGHdzF6KLavt4PO0gs2a6pQ00=").unwrap();
        check("md5", b"hello", "XUFAKrxLKna5cZ2REBfFkg==").unwrap();
        check(
            "sha256",
            b"hello",
            "LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=",
        )
        .unwrap();
        check("crc32", b"hello", "NhCmhg==").unwrap();
        check("SHA1", b"he", "qvTGHdzF6KLavt4PO0gs2a6pQ00=")
            .map(|_| ())
            .unwrap_err();
    }

    #[test]
    fn unknown_algorithm_is_400_mismatch_is_460() {
        assert_eq!(
            parse("blake3 AAAA").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            parse("sha1 !!").unwrap_err().status(),
            StatusCode::BAD_REQUEST
        );
        // Issue 8: a digest of the wrong length can never match, so 460 made clients resend
        // the chunk forever; it is a malformed header (400).
        for bad in [
            "md5 AAAA",
            "sha1 XUFAKrxLKna5cZ2REBfFkg==",
            "crc32 ",
            "sha256 NhCmhg==",
        ] {
            let e = parse(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad}");
            assert!(e.to_string().contains("-byte"), "{bad}: {e}");
        }
        assert_eq!(
            check("md5", b"x", "XUFAKrxLKna5cZ2REBfFkg==")
                .unwrap_err()
                .status()
                .as_u16(),
            460
        );
    }

    #[test]
    fn all_digests_serve_a_trailer_of_any_algorithm() {
        let mut d = Digests::all();
        d.update(b"hello");
        d.verify(&parse("crc32 NhCmhg==").unwrap()).unwrap();
    }
}
