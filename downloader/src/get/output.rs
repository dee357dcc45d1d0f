//! Where the download goes: `NAME.part` (positional writes), `NAME.ferry-journal` beside it,
//! and the final `NAME`, published with a rename that never clobbers unless `--overwrite`.

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use super::journal;
use super::Options;
use crate::error::{Error, Result};

/// Used when neither the server nor the URL gives a usable name.
pub const FALLBACK_NAME: &str = "download";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub path: PathBuf,
    pub part: PathBuf,
    pub journal: PathBuf,
}

impl Target {
    /// `-d DIR` joined with `-o FILE`, or with the (already sanitized) remote name.
    pub fn resolve(opts: &Options, remote_name: Option<&str>) -> Result<Self> {
        let name = match &opts.output {
            Some(o) if o.as_os_str().is_empty() || o.ends_with("..") => {
                return Err(Error::Usage(format!(
                    "invalid output file {:?}",
                    o.display().to_string()
                )))
            }
            Some(o) => o.clone(),
            None => PathBuf::from(remote_name.unwrap_or(FALLBACK_NAME)),
        };
        let path = match &opts.dir {
            Some(d) => d.join(name),
            None => name,
        };
        Ok(Self::for_path(path))
    }

    pub fn for_path(path: PathBuf) -> Self {
        let with = |suffix: &str| {
            let mut s = path.clone().into_os_string();
            s.push(suffix);
            PathBuf::from(s)
        };
        Self {
            part: with(".part"),
            journal: with(".ferry-journal"),
            path,
        }
    }

    pub fn display_name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// Reserves this target for one download of this process (`-i` lists may name the same
    /// file twice); the reservation ends when the returned guard is dropped. Two *processes*
    /// downloading to the same file are not detected.
    pub fn reserve(&self) -> Result<Reservation> {
        let mut active = ACTIVE.lock().unwrap_or_else(|p| p.into_inner());
        if !active.insert(self.path.clone()) {
            return Err(Error::InUse {
                path: self.path.clone(),
            });
        }
        Ok(Reservation(self.path.clone()))
    }

    /// Opens `NAME.part`. A fresh download truncates it (a preallocated file without a
    /// journal is never trusted); a resumed one keeps its bytes.
    pub fn open_part(&self, length: Option<u64>, resume: bool) -> Result<File> {
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(!resume)
            .open(&self.part)
            .map_err(|e| Error::io(&self.part, e))?;
        if let Some(len) = length {
            file.set_len(len).map_err(|e| Error::io(&self.part, e))?;
        }
        Ok(file)
    }

    /// Forgets partial progress: journal first (so a crash in between leaves a part file
    /// without a journal, which is never trusted), then the part file.
    pub fn discard(&self) -> Result<()> {
        journal::remove(&self.journal).map_err(|e| Error::io(&self.journal, e))?;
        remove_if_exists(&self.part)
    }

    /// Moves the finished part file to its final name and removes the journal.
    pub fn publish(&self, overwrite: bool) -> Result<()> {
        if overwrite {
            fs::rename(&self.part, &self.path).map_err(|e| Error::io(&self.path, e))?;
        } else {
            rename_no_clobber(&self.part, &self.path)?;
        }
        journal::sync_dir(&self.path).map_err(|e| Error::io(&self.path, e))?;
        journal::remove(&self.journal).map_err(|e| Error::io(&self.journal, e))?;
        journal::sync_dir(&self.journal).map_err(|e| Error::io(&self.journal, e))
    }
}

static ACTIVE: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());

/// A target reserved by [`Target::reserve`].
#[derive(Debug)]
pub struct Reservation(PathBuf);

impl Drop for Reservation {
    fn drop(&mut self) {
        ACTIVE
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.0);
    }
}

/// link + unlink: the link fails if `to` exists, so nothing is clobbered even if another
/// process creates `to` meanwhile.
fn rename_no_clobber(from: &Path, to: &Path) -> Result<()> {
    match fs::hard_link(from, to) {
        Ok(()) => remove_if_exists(from),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(Error::Exists {
            path: to.to_path_buf(),
        }),
        // File systems without hard links: check, then rename (a small race, said here).
        Err(_) if !to.exists() => fs::rename(from, to).map_err(|e| Error::io(to, e)),
        Err(e) => Err(Error::io(to, e)),
    }
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_sit_beside_the_target() {
        let opts = Options {
            dir: Some("out".into()),
            ..Options::default()
        };
        let t = Target::resolve(&opts, Some("a.iso")).unwrap();
        assert_eq!(t.path, PathBuf::from("out/a.iso"));
        assert_eq!(t.part, PathBuf::from("out/a.iso.part"));
        assert_eq!(t.journal, PathBuf::from("out/a.iso.ferry-journal"));
        assert_eq!(
            Target::resolve(&Options::default(), None).unwrap().path,
            PathBuf::from(FALLBACK_NAME)
        );
    }

    #[test]
    fn a_target_is_reserved_once_at_a_time() {
        let t = Target::for_path("reserve-test-target".into());
        let first = t.reserve().unwrap();
        assert!(matches!(t.reserve(), Err(Error::InUse { .. })));
        drop(first);
        t.reserve().unwrap();
    }

    #[test]
    fn publish_never_clobbers_without_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let t = Target::for_path(dir.path().join("f"));
        fs::write(&t.path, b"old").unwrap();
        fs::write(&t.part, b"new").unwrap();
        assert!(matches!(t.publish(false), Err(Error::Exists { .. })));
        assert_eq!(fs::read(&t.path).unwrap(), b"old");
        t.publish(true).unwrap();
        assert_eq!(fs::read(&t.path).unwrap(), b"new");
        assert!(!t.part.exists());
    }
}
