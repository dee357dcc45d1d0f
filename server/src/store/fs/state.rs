//! Where the fs backend keeps its own state (upload staging, upload records, the content
//! index): a directory outside the served tree, so that no path, symlink or flag can reach it
//! through the file server. By default it is `.NAME.ferry` beside ROOT (`/srv/www` →
//! `/srv/.www.ferry`); `--state-dir` puts it elsewhere. It must be on ROOT's file system:
//! finished uploads are published by hard link.
//!
//! Older versions kept this state in `ROOT/.ferry`. When the state directory does not exist
//! yet and `ROOT/.ferry` does, it is moved there (one `rename`, same file system); if both
//! exist, `ROOT/.ferry` is left alone and, as before, never served or listed.

use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// The state directory of older versions, inside ROOT. Never served, whatever the flags.
pub const LEGACY_DIR: &str = crate::store::visibility::RESERVED;

fn setup_error(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// `.NAME.ferry` beside the (canonical) `root`.
pub fn default_state_dir(root: &Path) -> io::Result<PathBuf> {
    match (root.parent(), root.file_name()) {
        (Some(parent), Some(name)) => {
            let mut dir = std::ffi::OsString::from(".");
            dir.push(name);
            dir.push(".ferry");
            Ok(parent.join(dir))
        }
        _ => Err(setup_error(format!(
            "{} has no parent directory for the state directory; pass --state-dir DIR",
            root.display()
        ))),
    }
}

/// Makes the state directory ready for `root` (canonical): moves a legacy `ROOT/.ferry`
/// there or creates it (mode 0700), then checks that it lies outside ROOT (and ROOT outside
/// it) and on ROOT's file system. Returns its canonical path.
pub fn prepare(root: &Path, wanted: Option<&Path>) -> io::Result<PathBuf> {
    let dir = match wanted {
        Some(d) => d.to_path_buf(),
        None => default_state_dir(root)?,
    };
    let legacy = root.join(LEGACY_DIR);
    if !dir.exists() && legacy.is_dir() {
        std::fs::rename(&legacy, &dir).map_err(|e| {
            setup_error(format!(
                "cannot move the old state directory {} to {}: {e}",
                legacy.display(),
                dir.display()
            ))
        })?;
        tracing::info!(from = %legacy.display(), to = %dir.display(), "moved the upload state out of the served tree");
    }
    let mut builder = std::fs::DirBuilder::new();
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.recursive(true).create(&dir).map_err(|e| {
        setup_error(format!(
            "cannot create the state directory {}: {e}; pass --state-dir DIR (on the same file system as ROOT)",
            dir.display()
        ))
    })?;
    let dir = dir.canonicalize()?;
    if dir.starts_with(root) || root.starts_with(&dir) {
        return Err(setup_error(format!(
            "the state directory {} must lie outside ROOT {} (and ROOT outside it)",
            dir.display(),
            root.display()
        )));
    }
    let (r, s) = (
        std::fs::metadata(root)?.dev(),
        std::fs::metadata(&dir)?.dev(),
    );
    if r != s {
        return Err(setup_error(format!(
            "the state directory {} is on another file system than ROOT {}; finished uploads are published by hard link, so pass --state-dir DIR on ROOT's file system",
            dir.display(),
            root.display()
        )));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_a_hidden_sibling_and_a_legacy_dir_moves_there() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        let root = base.join("www");
        std::fs::create_dir_all(root.join(".ferry/uploads")).unwrap();
        std::fs::write(root.join(".ferry/uploads/x.info"), b"{}").unwrap();
        let state = prepare(&root, None).unwrap();
        assert_eq!(state, base.join(".www.ferry"));
        assert!(state.join("uploads/x.info").is_file());
        assert!(!root.join(".ferry").exists(), "moved, not copied");
        // Again: nothing to move, the directory is reused.
        assert_eq!(prepare(&root, None).unwrap(), state);
    }

    #[test]
    fn refuses_a_state_dir_inside_root_or_containing_it() {
        let d = tempfile::tempdir().unwrap();
        let base = d.path().canonicalize().unwrap();
        let root = base.join("www");
        std::fs::create_dir_all(&root).unwrap();
        let inside = prepare(&root, Some(&root.join("state"))).unwrap_err();
        assert!(inside.to_string().contains("outside ROOT"), "{inside}");
        let around = prepare(&root, Some(&base)).unwrap_err();
        assert!(around.to_string().contains("outside ROOT"), "{around}");
        assert!(default_state_dir(Path::new("/")).is_err());
    }

    #[test]
    fn refuses_a_state_dir_on_another_file_system() {
        // /dev/shm is a tmpfs on Linux; skip where it is not another file system than /tmp.
        let shm = Path::new("/dev/shm");
        let d = tempfile::tempdir().unwrap();
        let root = d.path().canonicalize().unwrap().join("www");
        std::fs::create_dir_all(&root).unwrap();
        let other = shm.join(format!("ferry-state-test-{}", std::process::id()));
        let same = shm.is_dir()
            && std::fs::metadata(shm).unwrap().dev() == std::fs::metadata(&root).unwrap().dev();
        if !shm.is_dir() || same {
            eprintln!("SKIPPED: no second file system at /dev/shm");
            return;
        }
        let e = prepare(&root, Some(&other)).unwrap_err();
        let _ = std::fs::remove_dir(&other);
        assert!(e.to_string().contains("another file system"), "{e}");
    }
}
