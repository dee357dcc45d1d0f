//! Walking the served tree under the file server's visibility rules: the state area is never
//! visited, names starting with `.` only with `--allow-hidden`, names that are not UTF-8 are
//! skipped (no URL can name them). Symlinks are not followed: a file reached through one is
//! served with the identity of its target, which carries the target's digest when the
//! target itself lies in the tree.

use std::fs;
use std::os::unix::fs::FileTypeExt as _;
use std::path::Path;

use crate::store::open_cache::Identity;
pub use crate::store::visibility::Visibility;

/// What a walk reports.
pub trait Visit {
    /// A directory entered (`rel` is empty for the root).
    fn dir(&mut self, rel: &str, full: &Path);
    /// A regular file and its identity now.
    fn file(&mut self, rel: String, id: Identity);
}

/// Walks `start` (relative to `root`) depth first. Unreadable directories are logged and
/// skipped.
pub fn walk(root: &Path, start: &str, vis: Visibility, visit: &mut dyn Visit) {
    let mut stack = vec![start.to_string()];
    while let Some(rel) = stack.pop() {
        let full = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(&rel)
        };
        let entries = match fs::read_dir(&full) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(dir = %full.display(), error = %e, "index: cannot read a directory");
                continue;
            }
        };
        visit.dir(&rel, &full);
        for ent in entries.flatten() {
            let Ok(name) = ent.file_name().into_string() else {
                continue;
            };
            let child = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            if !vis.serves(&child) {
                continue;
            }
            let Ok(ft) = ent.file_type() else { continue };
            if ft.is_dir() {
                stack.push(child);
            } else if ft.is_file() {
                if let Ok(md) = fs::symlink_metadata(ent.path()) {
                    visit.file(child, Identity::of(&md));
                }
            } else if ft.is_symlink() || ft.is_fifo() || ft.is_socket() {
                // Not followed; not content.
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Seen {
        dirs: Vec<String>,
        files: Vec<String>,
    }

    impl Visit for Seen {
        fn dir(&mut self, rel: &str, _: &Path) {
            self.dirs.push(rel.to_string());
        }
        fn file(&mut self, rel: String, _: Identity) {
            self.files.push(rel);
        }
    }

    #[test]
    fn walks_what_the_file_server_serves() {
        let d = tempfile::tempdir().unwrap();
        for p in [
            "a.txt",
            "sub/b.txt",
            ".hidden",
            "sub/.git/c",
            ".ferry/uploads/x.bin",
        ] {
            let full = d.path().join(p);
            fs::create_dir_all(full.parent().unwrap()).unwrap();
            fs::write(full, p).unwrap();
        }
        std::os::unix::fs::symlink("a.txt", d.path().join("link")).unwrap();
        let mut seen = Seen::default();
        walk(
            d.path(),
            "",
            Visibility {
                allow_hidden: false,
            },
            &mut seen,
        );
        seen.files.sort();
        assert_eq!(seen.files, ["a.txt", "sub/b.txt"]);
        seen.dirs.sort();
        assert_eq!(seen.dirs, ["", "sub"]);
        let mut all = Seen::default();
        walk(d.path(), "", Visibility { allow_hidden: true }, &mut all);
        all.files.sort();
        assert_eq!(all.files, [".hidden", "a.txt", "sub/.git/c", "sub/b.txt"]);
    }
}
