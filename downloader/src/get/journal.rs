//! The progress journal beside `NAME.part`: which byte ranges are durable, and what they are
//! ranges of (original URL, length, validator).
//!
//! On-disk format, version 1:
//!
//! ```text
//! ferry-journal 1\n
//! crc32 <8 hex digits of the body>\n
//! <body: JSON of `Journal`>
//! ```
//!
//! It is replaced atomically (temp file, fsync, rename, fsync the directory), and only after
//! the data it describes was fdatasync'ed, so it never claims bytes that are not on disk. A
//! file that fails the CRC or has an unknown version is reported, never half-trusted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ferry_proto::ByteRange;
use serde::{Deserialize, Serialize};

use super::ranges::RangeSet;

const MAGIC: &str = "ferry-journal";
pub const VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Journal {
    /// The URL the user gave (not a redirect target).
    pub url: String,
    pub length: u64,
    /// Strong ETag, quotes included.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    /// Durable byte ranges, half-open `[start, end)`.
    pub done: Vec<[u64; 2]>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JournalError {
    #[error("not a ferry journal: expected first line \"{MAGIC} {VERSION}\", got {0:?}")]
    NotJournal(String),
    #[error("journal version {0} is newer than this ferry understands (version {VERSION})")]
    Version(u32),
    #[error("journal is damaged: checksum expected {expected:08x}, got {seen:08x}")]
    Crc { expected: u32, seen: u32 },
    #[error("journal is damaged: {0}")]
    Body(String),
}

impl Journal {
    pub fn done_set(&self) -> RangeSet {
        RangeSet::from_ranges(self.done.iter().filter_map(|[a, b]| ByteRange::new(*a, *b)))
    }

    pub fn set_done(&mut self, set: &RangeSet) {
        self.done = set.ranges().iter().map(|r| [r.start, r.end]).collect();
    }
}

pub fn encode(journal: &Journal) -> Vec<u8> {
    // Serializing plain strings and integers cannot fail.
    let body = serde_json::to_vec(journal).unwrap_or_default();
    let mut out = format!("{MAGIC} {VERSION}\ncrc32 {:08x}\n", crc32fast::hash(&body)).into_bytes();
    out.extend_from_slice(&body);
    out
}

pub fn decode(bytes: &[u8]) -> Result<Journal, JournalError> {
    let (first, rest) = split_line(bytes);
    let first = String::from_utf8_lossy(first);
    let version = first
        .strip_prefix(MAGIC)
        .and_then(|v| v.strip_prefix(' '))
        .and_then(|v| v.parse::<u32>().ok())
        .ok_or_else(|| JournalError::NotJournal(first.chars().take(40).collect()))?;
    if version != VERSION {
        return Err(JournalError::Version(version));
    }
    let (crc_line, body) = split_line(rest);
    let expected = std::str::from_utf8(crc_line)
        .ok()
        .and_then(|l| l.strip_prefix("crc32 "))
        .and_then(|h| u32::from_str_radix(h, 16).ok())
        .ok_or_else(|| JournalError::Body("missing crc32 line".into()))?;
    let seen = crc32fast::hash(body);
    if seen != expected {
        return Err(JournalError::Crc { expected, seen });
    }
    let journal: Journal =
        serde_json::from_slice(body).map_err(|e| JournalError::Body(e.to_string()))?;
    if journal
        .done
        .iter()
        .any(|[a, b]| a >= b || *b > journal.length)
    {
        return Err(JournalError::Body(
            "a done range is empty or past the length".into(),
        ));
    }
    Ok(journal)
}

fn split_line(bytes: &[u8]) -> (&[u8], &[u8]) {
    match bytes.iter().position(|b| *b == b'\n') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[]),
    }
}

/// Replaces `path` with `bytes` atomically and durably: temp file, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, path)?;
    sync_dir(path)
}

/// fsyncs the directory holding `path`, making a rename or unlink in it durable.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Reads the journal at `path`; `Ok(None)` when there is none.
pub fn load(path: &Path) -> io::Result<Option<Result<Journal, JournalError>>> {
    match fs::read(path) {
        Ok(bytes) => Ok(Some(decode(&bytes))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Removes the journal (and a stray temp file); a missing file is fine.
pub fn remove(path: &Path) -> io::Result<()> {
    for p in [path.to_path_buf(), tmp_path(path)] {
        match fs::remove_file(&p) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Journal {
        Journal {
            url: "http://example.com/a.iso".into(),
            length: 5_000_000_000,
            etag: Some("\"abc\"".into()),
            last_modified: None,
            done: vec![[0, 100], [4_999_999_000, 5_000_000_000]],
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(decode(&encode(&sample())), Ok(sample()));
    }

    #[test]
    fn every_single_byte_flip_or_truncation_is_detected() {
        let good = encode(&sample());
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert_ne!(decode(&bad), Ok(sample()), "flip at {i} accepted");
            assert!(decode(&good[..i]).is_err(), "truncation at {i} accepted");
        }
    }

    #[test]
    fn unknown_version_is_a_clear_error() {
        let mut bytes = encode(&sample());
        bytes[14] = b'9';
        assert_eq!(decode(&bytes), Err(JournalError::Version(9)));
        assert!(matches!(decode(b"hello"), Err(JournalError::NotJournal(_))));
    }

    #[test]
    fn ranges_past_length_are_rejected() {
        let mut j = sample();
        j.done.push([10, 5_000_000_001]);
        assert!(matches!(decode(&encode(&j)), Err(JournalError::Body(_))));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.ferry-journal");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, &encode(&sample())).unwrap();
        assert_eq!(load(&path).unwrap(), Some(Ok(sample())));
        assert!(!tmp_path(&path).exists());
        remove(&path).unwrap();
        assert_eq!(load(&path).unwrap(), None);
        remove(&path).unwrap();
    }
}
