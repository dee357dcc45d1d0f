//! Checksums for `ferry put`: the per-request `Upload-Checksum` value (tus checksum extension)
//! and the whole file's SHA-256 for instant upload, streamed with progress.

use std::io::Read as _;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use md5::Md5;
use sha1::Sha1;
use sha2::{Digest, Sha256};

use super::plan::Algo;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// The `Upload-Checksum` value for `data`: `<algorithm> <base64 of the raw digest>` (tus
/// checksum extension). CRC-32 is sent as its four bytes big-endian, as tusd and ferryd do.
pub fn upload_checksum(algo: Algo, data: &[u8]) -> String {
    let digest: Vec<u8> = match algo {
        Algo::Sha256 => Sha256::digest(data).to_vec(),
        Algo::Sha1 => Sha1::digest(data).to_vec(),
        Algo::Md5 => Md5::digest(data).to_vec(),
        Algo::Crc32 => crc32fast::hash(data).to_be_bytes().to_vec(),
    };
    format!("{} {}", algo.name(), STANDARD.encode(digest))
}

/// SHA-256 of the file at `path`, lowercase hex, reading 1 MiB at a time and reporting each
/// block to `progress`. Blocking: run it on a blocking thread.
pub fn file_sha256(path: &Path, progress: &Progress) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(path, e)),
        };
        hasher.update(&buf[..n]);
        progress.add(0, n as u64);
        progress.tick();
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::{Mode, Ui};

    #[test]
    fn upload_checksum_values_match_known_digests() {
        // Digests of "abc" from FIPS 180-2 / RFC 1321 / RFC 3174 test vectors; CRC-32 0x352441C2.
        let b64 = |h: &str| STANDARD.encode(hex::decode(h).unwrap());
        let sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(
            upload_checksum(Algo::Sha256, b"abc"),
            format!("sha256 {}", b64(sha256))
        );
        let sha1 = "a9993e364706816aba3e25717850c26c9cd0d89d";
        assert_eq!(
            upload_checksum(Algo::Sha1, b"abc"),
            format!("sha1 {}", b64(sha1))
        );
        let md5 = "900150983cd24fb0d6963f7d28e17f72";
        assert_eq!(
            upload_checksum(Algo::Md5, b"abc"),
            format!("md5 {}", b64(md5))
        );
        assert_eq!(
            upload_checksum(Algo::Crc32, b"abc"),
            format!("crc32 {}", b64("352441c2"))
        );
    }

    #[test]
    fn file_sha256_streams_and_counts_every_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let data: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let progress = Ui::with_mode(Mode::Quiet, false).transfer("f");
        assert_eq!(
            file_sha256(&path, &progress).unwrap(),
            hex::encode(Sha256::digest(&data))
        );
        assert_eq!(progress.done(), data.len() as u64);
        assert!(file_sha256(&dir.path().join("missing"), &progress).is_err());
    }
}
