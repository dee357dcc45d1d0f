//! Pure planning for `ferry put`: how a file is split into parts for `-x N`, which chunk a
//! PATCH sends next, which checksum algorithm to use, and the parsing of what a tus server
//! advertises. No I/O here.
//!
//! Ranges are half-open (`start..end`, `end` exclusive). Unlike [`ferry_proto::ByteRange`] a
//! part may be empty: tus allows a zero-length upload (tus core, Upload-Length).

use std::ops::Range;

/// Splits `len` bytes into at most `parallel` contiguous parts of at least `min_part` bytes
/// each (the last part absorbs the remainder). Always at least one part, even for `len == 0`.
pub fn split(len: u64, parallel: usize, min_part: u64) -> Vec<Range<u64>> {
    let by_size = (len / min_part.max(1)).max(1);
    let count = (parallel.max(1) as u64).min(by_size);
    let base = len / count;
    (0..count)
        .map(|i| {
            let start = i * base;
            let end = if i + 1 == count { len } else { start + base };
            start..end
        })
        .collect()
}

/// The next chunk one PATCH sends: from `offset` to at most `chunk` bytes further, never past
/// `end`. `None` when the part is complete.
pub fn next_chunk(offset: u64, end: u64, chunk: u64) -> Option<Range<u64>> {
    (offset < end).then(|| offset..end.min(offset.saturating_add(chunk.max(1))))
}

/// A checksum algorithm of the tus checksum extension, in ferry's order of preference.
///
/// The per-request checksum guards each chunk in transit; the file's identity is the whole-file
/// SHA-256 sent for instant upload. So the cheapest adequate check comes first: crc32 costs
/// nothing measurable, while sha256 on every PATCH cost about 0.6 s per GiB with client and
/// server hashing on the same cores (bench/put/README.md). `--checksum sha256` still asks for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Algo {
    Crc32,
    Sha256,
    Sha1,
    Md5,
}

impl Algo {
    /// The name used in `Tus-Checksum-Algorithm` and `Upload-Checksum` (tus checksum
    /// extension; names as in the IANA hash function textual names, lowercase).
    pub fn name(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha1 => "sha1",
            Algo::Md5 => "md5",
            Algo::Crc32 => "crc32",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Algo::Sha256, Algo::Sha1, Algo::Md5, Algo::Crc32]
            .into_iter()
            .find(|a| a.name().eq_ignore_ascii_case(name.trim()))
    }
}

/// `--checksum`: which `Upload-Checksum` algorithm to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumChoice {
    /// The first the server advertises of crc32, sha256, sha1, md5; none if it has none.
    #[default]
    Auto,
    None,
    Only(Algo),
}

impl ChecksumChoice {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "none" => Ok(Self::None),
            other => Algo::parse(other).map(Self::Only).ok_or_else(|| {
                format!("invalid checksum {s:?}: expected auto, none, sha256, sha1, md5 or crc32")
            }),
        }
    }
}

/// Splits a comma-separated header value (`Tus-Extension`, `Tus-Checksum-Algorithm`) into
/// trimmed, non-empty items.
pub fn parse_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// What a server said about itself in its OPTIONS answer (tus core, OPTIONS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    pub extensions: Vec<String>,
    pub checksum_algorithms: Vec<String>,
    pub max_size: Option<u64>,
}

impl Capabilities {
    pub fn has(&self, extension: &str) -> bool {
        self.extensions
            .iter()
            .any(|e| e.eq_ignore_ascii_case(extension))
    }

    /// The best algorithm both sides know, when the server advertises `checksum`.
    pub fn checksum(&self) -> Option<Algo> {
        if !self.has("checksum") {
            return None;
        }
        self.checksum_algorithms
            .iter()
            .filter_map(|n| Algo::parse(n))
            .min()
    }

    /// The algorithm to use for `choice`; an explicit algorithm the server does not offer is
    /// an error (sending it would get 400 on every PATCH).
    pub fn checksum_for(&self, choice: ChecksumChoice) -> Result<Option<Algo>, String> {
        match choice {
            ChecksumChoice::Auto => Ok(self.checksum()),
            ChecksumChoice::None => Ok(None),
            ChecksumChoice::Only(a) => {
                let offered = self.has("checksum")
                    && self
                        .checksum_algorithms
                        .iter()
                        .any(|n| Algo::parse(n) == Some(a));
                if offered {
                    Ok(Some(a))
                } else {
                    Err(format!(
                        "expected the server to offer checksum {}, it offers {:?}",
                        a.name(),
                        if self.has("checksum") {
                            self.checksum_algorithms.join(",")
                        } else {
                            "none".into()
                        }
                    ))
                }
            }
        }
    }

    /// Whether `-x N` may split into parts: the server must concatenate them.
    pub fn can_concatenate(&self) -> bool {
        self.has("concatenation")
    }
}

/// The `Upload-Concat` value of a final upload: `final;URL URL ...` in part order (tus
/// concatenation extension).
pub fn concat_final(urls: &[String]) -> String {
    format!("final;{}", urls.join(" "))
}

/// Parses one `--metadata k=v`. Keys must be valid `Upload-Metadata` keys: non-empty ASCII
/// without spaces or commas (tus core, Upload-Metadata).
pub fn parse_metadata_arg(arg: &str) -> Result<(String, String), String> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| format!("invalid metadata {arg:?}: expected KEY=VALUE"))?;
    let bad = key.is_empty() || !key.is_ascii() || key.contains([' ', ',', '\t']);
    if bad {
        return Err(format!(
            "invalid metadata key {key:?}: expected non-empty ASCII without spaces or commas"
        ));
    }
    Ok((key.to_string(), value.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_tiles(parts: &[Range<u64>], len: u64) {
        assert_eq!(parts.first().map(|p| p.start), Some(0));
        assert_eq!(parts.last().map(|p| p.end), Some(len));
        for w in parts.windows(2) {
            assert_eq!(w[0].end, w[1].start, "parts must be contiguous: {parts:?}");
        }
    }

    #[test]
    fn split_evenly_with_remainder_in_last_part() {
        let parts = split(10, 3, 1);
        assert_eq!(parts, vec![0..3, 3..6, 6..10]);
    }

    #[test]
    fn split_never_makes_parts_below_the_minimum() {
        assert_eq!(split(100, 8, 40), vec![0..50, 50..100]);
        assert_eq!(split(39, 8, 40), vec![0..39]);
    }

    #[test]
    fn split_empty_file_is_one_empty_part() {
        assert_eq!(split(0, 4, 1024), vec![0..0]);
        assert_eq!(split(0, 0, 0), vec![0..0]);
    }

    #[test]
    fn split_tiles_the_file_for_many_shapes() {
        for len in [0u64, 1, 2, 7, 1000, 1 << 20, (1 << 30) + 17] {
            for parallel in [0usize, 1, 2, 3, 4, 16, 100] {
                for min in [0u64, 1, 512, 1 << 20] {
                    let parts = split(len, parallel, min);
                    assert_tiles(&parts, len);
                    assert!(
                        parts.len() <= parallel.max(1),
                        "{len} {parallel} {min}: {parts:?}"
                    );
                    if parts.len() > 1 {
                        assert!(
                            parts.iter().all(|p| p.end - p.start >= min),
                            "{len} {parallel} {min}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn chunks_walk_to_the_end_and_stop() {
        let mut offset = 5;
        let mut seen = vec![];
        while let Some(c) = next_chunk(offset, 17, 5) {
            offset = c.end;
            seen.push(c);
        }
        assert_eq!(seen, vec![5..10, 10..15, 15..17]);
        assert_eq!(next_chunk(17, 17, 5), None);
        assert_eq!(
            next_chunk(0, 3, 0),
            Some(0..1),
            "a zero chunk size still makes progress"
        );
        assert_eq!(
            next_chunk(u64::MAX - 1, u64::MAX, u64::MAX),
            Some(u64::MAX - 1..u64::MAX)
        );
    }

    #[test]
    fn checksum_prefers_crc32_then_sha256_sha1_md5() {
        let caps = |algos: &str| Capabilities {
            extensions: parse_list("creation,checksum"),
            checksum_algorithms: parse_list(algos),
            max_size: None,
        };
        assert_eq!(
            caps("md5, crc32 ,SHA256,sha1").checksum(),
            Some(Algo::Crc32)
        );
        assert_eq!(caps("md5,SHA256,sha1").checksum(), Some(Algo::Sha256));
        assert_eq!(caps("md5,sha1").checksum(), Some(Algo::Sha1));
        assert_eq!(caps("md5").checksum(), Some(Algo::Md5));
        assert_eq!(caps("blake3,sha512").checksum(), None);
        assert_eq!(caps("").checksum(), None);
    }

    #[test]
    fn explicit_checksum_choice_must_be_offered() {
        let caps = Capabilities {
            extensions: parse_list("checksum"),
            checksum_algorithms: parse_list("sha1,crc32"),
            max_size: None,
        };
        assert_eq!(
            caps.checksum_for(ChecksumChoice::Auto),
            Ok(Some(Algo::Crc32))
        );
        assert_eq!(caps.checksum_for(ChecksumChoice::None), Ok(None));
        assert_eq!(
            caps.checksum_for(ChecksumChoice::Only(Algo::Sha1)),
            Ok(Some(Algo::Sha1))
        );
        let err = caps
            .checksum_for(ChecksumChoice::Only(Algo::Sha256))
            .unwrap_err();
        assert!(
            err.contains("expected the server to offer checksum sha256"),
            "{err}"
        );
        let bare = Capabilities::default();
        assert!(bare
            .checksum_for(ChecksumChoice::Only(Algo::Crc32))
            .unwrap_err()
            .contains("none"));
        assert_eq!(
            ChecksumChoice::parse("CRC32"),
            Ok(ChecksumChoice::Only(Algo::Crc32))
        );
        assert_eq!(ChecksumChoice::parse("none"), Ok(ChecksumChoice::None));
        assert!(ChecksumChoice::parse("blake3")
            .unwrap_err()
            .contains("expected auto"));
    }

    #[test]
    fn checksum_needs_the_extension_advertised() {
        let caps = Capabilities {
            extensions: parse_list("creation"),
            checksum_algorithms: parse_list("sha256"),
            max_size: None,
        };
        assert_eq!(caps.checksum(), None);
    }

    #[test]
    fn extensions_are_case_insensitive_and_trimmed() {
        let caps = Capabilities {
            extensions: parse_list(" creation , Concatenation,,"),
            ..Default::default()
        };
        assert!(caps.can_concatenate());
        assert!(caps.has("creation"));
        assert!(!caps.has("termination"));
        assert_eq!(caps.extensions.len(), 2);
    }

    #[test]
    fn concat_final_lists_parts_in_order() {
        // tus concatenation extension, example: `Upload-Concat: final;/files/a /files/b`.
        let urls = vec!["/files/a".to_string(), "/files/b".to_string()];
        assert_eq!(concat_final(&urls), "final;/files/a /files/b");
    }

    #[test]
    fn metadata_args_split_on_the_first_equals() {
        assert_eq!(parse_metadata_arg("k=v=w"), Ok(("k".into(), "v=w".into())));
        assert_eq!(
            parse_metadata_arg("empty="),
            Ok(("empty".into(), String::new()))
        );
        for bad in ["novalue", "=v", "a b=c", "a,b=c", "ключ=v"] {
            let err = parse_metadata_arg(bad).unwrap_err();
            assert!(err.contains("expected"), "{bad}: {err}");
        }
    }
}
