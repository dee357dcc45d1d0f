//! Whole-file verification: `--checksum ALGO=HEX` and the server's RFC 9530 `Repr-Digest` /
//! `Content-Digest` (`sha-256=:BASE64:`), checked before the file gets its final name.

use std::fs::File;
use std::io::Read;
use std::path::Path;

use base64::Engine;
use sha2::Digest;

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algo {
    Sha256,
    Sha512,
    Sha1,
    Md5,
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
            Algo::Sha1 => "sha1",
            Algo::Md5 => "md5",
        }
    }

    fn hasher(self) -> Hasher {
        match self {
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
            Algo::Sha1 => Hasher::Sha1(sha1::Sha1::new()),
            Algo::Md5 => Hasher::Md5(md5::Md5::new()),
        }
    }
}

/// A digest the finished file must have, and who asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub algo: Algo,
    pub digest: Vec<u8>,
    pub source: &'static str,
}

/// Parses `--checksum sha256=HEX` (also `sha-256`, `sha1`, `md5`, `sha512`).
pub fn parse_checksum_arg(arg: &str) -> Result<Expected, String> {
    let (algo, hex_digest) = arg.split_once('=').ok_or_else(|| {
        format!("invalid checksum {arg:?}: expected ALGO=HEX, for example sha256=9f86d0...")
    })?;
    let algo = match algo.to_ascii_lowercase().replace('-', "").as_str() {
        "sha256" => Algo::Sha256,
        "sha512" => Algo::Sha512,
        "sha1" => Algo::Sha1,
        "md5" => Algo::Md5,
        other => {
            return Err(format!(
                "unknown checksum algorithm {other:?}: expected sha256, sha512, sha1 or md5"
            ))
        }
    };
    let digest = hex::decode(hex_digest.trim())
        .map_err(|_| format!("invalid checksum {arg:?}: the digest must be hexadecimal"))?;
    let want = algo.hasher().finish().len();
    if digest.len() != want {
        return Err(format!(
            "invalid {} checksum: expected {} hex digits, got {}",
            algo.name(),
            want * 2,
            hex_digest.trim().len()
        ));
    }
    Ok(Expected {
        algo,
        digest,
        source: "--checksum",
    })
}

/// The strongest digest understood in an RFC 9530 `Repr-Digest`/`Content-Digest` value
/// (a structured-field dictionary such as `sha-256=:X48E9q...=:, sha-512=:...:`).
pub fn parse_digest_header(value: &str, source: &'static str) -> Option<Expected> {
    let mut best: Option<Expected> = None;
    for member in value.split(',') {
        let Some((key, val)) = member.trim().split_once('=') else {
            continue;
        };
        let algo = match key.trim() {
            "sha-512" => Algo::Sha512,
            "sha-256" => Algo::Sha256,
            _ => continue,
        };
        let b64 = val
            .trim()
            .strip_prefix(':')
            .and_then(|v| v.strip_suffix(':'));
        let Some(Ok(digest)) = b64.map(|b| base64::engine::general_purpose::STANDARD.decode(b))
        else {
            continue;
        };
        if best.as_ref().is_none_or(|b| b.algo != Algo::Sha512) {
            best = Some(Expected {
                algo,
                digest,
                source,
            });
        }
    }
    best
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
}

impl Hasher {
    fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
            Hasher::Sha1(h) => h.update(data),
            Hasher::Md5(h) => h.update(data),
        }
    }

    fn finish(self) -> Vec<u8> {
        match self {
            Hasher::Sha256(h) => h.finalize().to_vec(),
            Hasher::Sha512(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Md5(h) => h.finalize().to_vec(),
        }
    }
}

/// Reads `path` once and checks every expected digest. Blocking: call from `spawn_blocking`.
pub fn verify(path: &Path, expected: &[Expected]) -> Result<()> {
    if expected.is_empty() {
        return Ok(());
    }
    let mut hashers: Vec<Hasher> = expected.iter().map(|e| e.algo.hasher()).collect();
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        hashers.iter_mut().for_each(|h| h.update(&buf[..n]));
    }
    for (want, hasher) in expected.iter().zip(hashers) {
        let seen = hasher.finish();
        if seen != want.digest {
            return Err(Error::Checksum {
                algo: format!("{} ({})", want.algo.name(), want.source),
                expected: hex::encode(&want.digest),
                seen: hex::encode(seen),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ABC_SHA256: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn parses_checksum_argument() {
        let e = parse_checksum_arg(&format!("SHA-256={ABC_SHA256}")).unwrap();
        assert_eq!(e.algo, Algo::Sha256);
        assert_eq!(hex::encode(&e.digest), ABC_SHA256);
        assert!(parse_checksum_arg("md5=900150983cd24fb0d6963f7d28e17f72").is_ok());
        assert!(parse_checksum_arg("sha256")
            .unwrap_err()
            .contains("ALGO=HEX"));
        assert!(parse_checksum_arg("crc=00")
            .unwrap_err()
            .contains("unknown checksum"));
        assert!(parse_checksum_arg("sha1=zz")
            .unwrap_err()
            .contains("hexadecimal"));
        assert!(parse_checksum_arg("sha1=00")
            .unwrap_err()
            .contains("expected 40 hex digits, got 2"));
    }

    /// RFC 9530 Appendix B example digests of `{"hello": "world"}`.
    #[test]
    fn parses_rfc9530_dictionary_preferring_sha512() {
        let v = "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:";
        let e = parse_digest_header(v, "Repr-Digest").unwrap();
        assert_eq!((e.algo, e.digest.len()), (Algo::Sha256, 32));
        let both = format!(
            "unixsum=:AA==:, {v}, sha-512=:{}:",
            base64::engine::general_purpose::STANDARD.encode([7u8; 64])
        );
        assert_eq!(parse_digest_header(&both, "x").unwrap().algo, Algo::Sha512);
        assert_eq!(parse_digest_header("md5=:AA==:", "x"), None);
    }

    #[test]
    fn verify_detects_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abc").unwrap();
        let good = parse_checksum_arg(&format!("sha256={ABC_SHA256}")).unwrap();
        verify(&path, std::slice::from_ref(&good)).unwrap();
        std::fs::write(&path, b"abd").unwrap();
        let err = verify(&path, &[good]).unwrap_err().to_string();
        assert!(
            err.contains("expected ba7816bf") && err.contains("got "),
            "{err}"
        );
    }
}
