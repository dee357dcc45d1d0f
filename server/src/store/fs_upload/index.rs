//! The content index of the fs upload store: one small versioned JSON file per SHA-256
//! under `STATE/index/`, trusted only while the file it names is unchanged; and, for the
//! question "is there any file of this length", an empty marker
//! `STATE/index/by-length/<len>/<sha256>` per entry.

use std::fs::{self, File};
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::super::fs::beneath::open_beneath;
use super::super::fs::meta_of;
use super::super::upload::{IndexEntry, INFO_VERSION};
use super::super::StoreError;
use super::{write_atomic, Dirs};
use crate::path::RelPath;

pub(super) fn index_dir(state: &Path) -> PathBuf {
    state.join("index")
}

/// Opens a served file confined to the root (never through a symlink leading out).
fn open_served(d: &Dirs, path: &RelPath) -> io::Result<File> {
    open_beneath(&d.root_dir, path.as_str(), libc::O_RDONLY)
}

pub(super) fn hash_blocking(d: &Dirs, path: &RelPath) -> Result<(String, IndexEntry), StoreError> {
    let mut f = open_served(d, path)?;
    let before = meta_of(&f.metadata()?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    let after = meta_of(&open_served(d, path)?.metadata()?);
    if after != before {
        return Err(io::Error::other("file changed while it was hashed").into());
    }
    let entry = IndexEntry {
        version: INFO_VERSION,
        path: path.as_str().to_string(),
        len: before.len,
        etag: before.etag,
    };
    Ok((hex::encode(hasher.finalize()), entry))
}

/// How many length markers [`index_has_length_blocking`] checks before it answers "no".
const LENGTH_CANDIDATES: usize = 16;

fn by_length_dir(state: &Path, len: u64) -> PathBuf {
    index_dir(state).join("by-length").join(len.to_string())
}

pub(super) fn index_put_blocking(
    state: &Path,
    sha256: &str,
    entry: &IndexEntry,
) -> Result<(), StoreError> {
    let dir = index_dir(state);
    fs::create_dir_all(&dir)?;
    let raw = serde_json::to_vec(entry).map_err(io::Error::other)?;
    write_atomic(&dir.join(format!("{sha256}.json")), &raw)?;
    // The marker comes after the entry it points to, so a crash between the two leaves an
    // entry without a marker (a missed "yes": the client uploads) and never the reverse.
    let by_len = by_length_dir(state, entry.len);
    fs::create_dir_all(&by_len)?;
    File::create(by_len.join(sha256))?;
    Ok(())
}

pub(super) fn index_has_length_blocking(d: &Dirs, len: u64) -> Result<bool, StoreError> {
    let by_len = by_length_dir(&d.state, len);
    let dir = match fs::read_dir(&by_len) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e.into()),
    };
    for ent in dir.take(LENGTH_CANDIDATES) {
        let name = ent?.file_name();
        let Some(sha) = name.to_str() else { continue };
        if index_get_blocking(d, sha)?.is_some_and(|e| e.len == len) {
            return Ok(true);
        }
        // A stale marker (the file changed or went): drop it so it is not checked again.
        let _ = fs::remove_file(by_len.join(sha));
    }
    Ok(false)
}

pub(super) fn index_get_blocking(d: &Dirs, sha256: &str) -> Result<Option<IndexEntry>, StoreError> {
    if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(None);
    }
    let raw = match fs::read(index_dir(&d.state).join(format!("{sha256}.json"))) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let Ok(entry) = serde_json::from_slice::<IndexEntry>(&raw) else {
        return Ok(None);
    };
    if entry.version != INFO_VERSION {
        return Ok(None);
    }
    let Ok(rel) = RelPath::from_segments(entry.path.split('/')) else {
        return Ok(None);
    };
    // Trusted only while the file is still the same version: a regular file (not a symlink)
    // with the recorded size and ETag.
    match fs::symlink_metadata(d.root.join(rel.as_str())) {
        Ok(md) if md.is_file() => {
            let meta = meta_of(&md);
            Ok((meta.len == entry.len && meta.etag == entry.etag).then_some(entry))
        }
        _ => Ok(None),
    }
}
