//! The hidden-file policy, the same for every backend: which stored names the server serves
//! and lists. Backends apply it; they do not decide it.
//!
//! Two rules: a name starting with `.` is served only with `--allow-hidden`, and the top-level
//! name [`RESERVED`] is never served or listed, whatever the flags say. It is where a backend
//! keeps its own state inside the served namespace: the legacy `ROOT/.ferry` of the directory
//! store, the staging prefix `PREFIX/.ferry/` of the S3 store.

use crate::path::RelPath;

/// The top-level name reserved for a backend's own state.
pub const RESERVED: &str = ".ferry";

/// Which names the file server serves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Visibility {
    pub allow_hidden: bool,
}

impl Visibility {
    /// Whether the relative path `rel` (segments joined by `/`) is served.
    pub fn serves(&self, rel: &str) -> bool {
        let mut segs = rel.split('/').filter(|s| !s.is_empty());
        if segs.clone().next() == Some(RESERVED) {
            return false;
        }
        self.allow_hidden || !segs.any(|s| s.starts_with('.'))
    }

    /// [`Visibility::serves`] for a validated request path.
    pub fn serves_path(&self, path: &RelPath) -> bool {
        path.segments().next() != Some(RESERVED) && (self.allow_hidden || !path.is_hidden())
    }

    /// Whether a directory entry called `name` is listed (at any depth: a `.ferry` below the
    /// top level is hidden too, which costs nothing and keeps the rule one line).
    pub fn lists(&self, name: &str) -> bool {
        name != RESERVED && (self.allow_hidden || !name.starts_with('.'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_top_level_name_is_never_served_even_with_allow_hidden() {
        let all = Visibility { allow_hidden: true };
        let none = Visibility::default();
        for v in [all, none] {
            assert!(!v.serves(".ferry/uploads/x"));
            assert!(!v.serves(".ferry"));
            assert!(!v.serves_path(&RelPath::from_uri_path("/.ferry/x").unwrap()));
            assert!(!v.lists(".ferry"));
            assert!(v.serves("a/b.txt"));
        }
        assert!(all.serves("a/.env") && !none.serves("a/.env"));
        assert!(all.lists(".env") && !none.lists(".env"));
        let dot = RelPath::from_uri_path("/.git/config").unwrap();
        assert!(all.serves_path(&dot) && !none.serves_path(&dot));
    }
}
