//! Which final uploads wait for a partial upload (concatenation-unfinished), so that the
//! part's completion finds them without reading every record: one empty marker
//! `STATE/finals/<part>/<final>` per pair, written before the final upload's record (a crash
//! in between leaves a marker naming nothing, which readers skip). Purging a part removes its
//! markers.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use super::super::upload::UploadId;
use super::super::StoreError;

fn finals_dir(state: &Path, part: &str) -> PathBuf {
    state.join("finals").join(part)
}

pub(super) fn note_blocking(state: &Path, part: &str, fin: &str) -> Result<(), StoreError> {
    let dir = finals_dir(state, part);
    fs::create_dir_all(&dir)?;
    File::create(dir.join(fin))?;
    Ok(())
}

pub(super) fn finals_blocking(state: &Path, part: &str) -> Result<Vec<UploadId>, StoreError> {
    let dir = match fs::read_dir(finals_dir(state, part)) {
        Ok(d) => d,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let mut out = Vec::new();
    for ent in dir {
        if let Some(id) = ent?.file_name().to_str().and_then(UploadId::parse) {
            out.push(id);
        }
    }
    Ok(out)
}

pub(super) fn forget_blocking(state: &Path, part: &str) -> Result<(), StoreError> {
    match fs::remove_dir_all(finals_dir(state, part)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}
