//! The persistent form of the index: one text file in the state area, replaced atomically
//! (temp file, fsync, rename, fsync of the directory), so a kill -9 leaves the previous
//! complete version. Format version 1:
//!
//! ```text
//! ferry-index 1\n
//! <entries>\n
//! <dev> <ino> <size> <mtime_s> <mtime_ns> <sha256 hex> <path as a JSON string>\n   (× entries)
//! end <sha256 hex of every byte above this line>\n
//! ```
//!
//! A file with another version, a wrong count, a bad line or a checksum that does not match
//! (truncated, corrupted) is not trusted: the index is rebuilt by hashing.

use std::io;
use std::path::Path;

use sha2::{Digest, Sha256};

use super::table::Table;
use crate::store::open_cache::Identity;

pub const VERSION: u32 = 1;
const MAGIC: &str = "ferry-index";

pub fn encode(table: &Table) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(table.len() * 128 + 64);
    let _ = writeln!(out, "{MAGIC} {VERSION}\n{}", table.len());
    for (path, id, sha) in table.iter() {
        // A path is UTF-8 without NUL; as a JSON string it holds no newline.
        let path = serde_json::to_string(path).unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {} {} {} {} {} {path}",
            id.dev,
            id.ino,
            id.len,
            id.mtime,
            id.mtime_nsec,
            hex::encode(sha)
        );
    }
    let sum = hex::encode(Sha256::digest(out.as_bytes()));
    let _ = writeln!(out, "end {sum}");
    out.into_bytes()
}

/// Parses a cache file; the error says what was wrong.
pub fn decode(raw: &[u8]) -> Result<Table, String> {
    let text = std::str::from_utf8(raw).map_err(|_| "not UTF-8".to_string())?;
    let body_end = text
        .trim_end_matches('\n')
        .rfind('\n')
        .map(|i| i + 1)
        .ok_or("no end line (truncated)")?;
    let (body, trailer) = text.split_at(body_end);
    let sum = trailer
        .strip_prefix("end ")
        .map(str::trim_end)
        .ok_or("no end line (truncated)")?;
    if sum != hex::encode(Sha256::digest(body.as_bytes())) {
        return Err("checksum mismatch (truncated or corrupted)".into());
    }
    let mut lines = body.lines();
    let head = lines.next().unwrap_or_default();
    let version = head
        .strip_prefix(MAGIC)
        .map(str::trim)
        .ok_or_else(|| format!("expected a {MAGIC} header, got {head:?}"))?;
    if version != VERSION.to_string() {
        return Err(format!(
            "expected index cache version {VERSION}, got {version}"
        ));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("no entry count")?;
    let mut table = Table::default();
    for (n, line) in lines.enumerate() {
        let (path, id, sha) = entry(line).ok_or_else(|| format!("bad entry {n}"))?;
        table.insert(&path, id, sha);
    }
    if table.len() != count {
        return Err(format!("expected {count} entries, got {}", table.len()));
    }
    Ok(table)
}

fn entry(line: &str) -> Option<(String, Identity, [u8; 32])> {
    let mut f = line.splitn(7, ' ');
    let mut num = || f.next()?.parse::<i64>().ok();
    let (dev, ino, len) = (num()? as u64, num()? as u64, num()? as u64);
    let (mtime, mtime_nsec) = (num()?, num()?);
    let mut sha = [0u8; 32];
    hex::decode_to_slice(f.next()?, &mut sha).ok()?;
    let path: String = serde_json::from_str(f.next()?).ok()?;
    let id = Identity {
        dev,
        ino,
        len,
        mtime,
        mtime_nsec,
    };
    Some((path, id, sha))
}

/// Loads the cache at `path`: `None` if there is none; an unusable one is logged and ignored.
pub fn load(path: &Path) -> Option<Table> {
    let raw = match std::fs::read(path) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "index: cannot read the cache; rebuilding");
            return None;
        }
    };
    match decode(&raw) {
        Ok(t) => Some(t),
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "index: cache not trusted; rebuilding");
            None
        }
    }
}

/// Replaces the cache at `path` with `table`, atomically and durably.
pub fn save(path: &Path, table: &Table) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    crate::store::fs_upload::write_atomic(path, &encode(table))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Table {
        let mut t = Table::default();
        let id = |ino| Identity {
            dev: 64769,
            ino,
            len: 12,
            mtime: -3,
            mtime_nsec: 999_999_999,
        };
        t.insert("a b/报告.txt", id(1), [7; 32]);
        t.insert("new\nline \"q\"", id(2), [8; 32]);
        t
    }

    #[test]
    fn round_trips_any_path() {
        let t = decode(&encode(&sample())).unwrap();
        assert_eq!(t.len(), 2);
        assert_eq!(t.get("a b/报告.txt").unwrap().1, [7; 32]);
        assert_eq!(t.get("new\nline \"q\"").unwrap().0.ino, 2);
        assert_eq!(decode(&encode(&Table::default())).unwrap().len(), 0);
    }

    #[test]
    fn truncated_corrupted_or_other_versions_are_refused() {
        let raw = encode(&sample());
        for cut in [0, 1, 14, raw.len() / 2, raw.len() - 2] {
            assert!(decode(&raw[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = raw.clone();
        flipped[20] ^= 1;
        assert!(decode(&flipped).is_err());
        let text = String::from_utf8(raw).unwrap();
        let v2 = text.replace("ferry-index 1", "ferry-index 2");
        let body = &v2[..v2.rfind("end ").unwrap()];
        let v2 = format!("{body}end {}\n", hex::encode(Sha256::digest(body)));
        let err = decode(v2.as_bytes()).unwrap_err();
        assert!(
            err.contains("expected index cache version 1, got 2"),
            "{err}"
        );
    }
}
