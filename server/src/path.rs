//! Request paths, validated once at the edge into a [`RelPath`] that the store trusts.
//!
//! The URL path is percent-decoded exactly once. Refused with 400: invalid percent-encoding
//! results that are not UTF-8, NUL, encoded separators (`%2F`, `%5C`, which would let a
//! segment smuggle a path boundary), backslashes, and `..` segments. `.` segments and empty
//! segments (`//`) are dropped, as nginx's merge_slashes does.

use percent_encoding::percent_decode_str;

/// A normalized path relative to the store root: segments joined by `/`, none of them empty,
/// `.` or `..`, and none containing `/`, `\` or NUL. The empty path is the root.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelPath(String);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PathError {
    #[error("path is not valid UTF-8 after percent-decoding")]
    NotUtf8,
    #[error("path contains a NUL byte")]
    Nul,
    #[error("path contains an encoded or backslash separator")]
    EncodedSeparator,
    #[error("path contains a '..' segment")]
    DotDot,
    #[error("path must start with '/'")]
    NotAbsolute,
}

impl RelPath {
    /// The store root.
    pub fn root() -> Self {
        RelPath(String::new())
    }

    /// Validates the path part of a request URI (without the query).
    pub fn from_uri_path(raw: &str) -> Result<Self, PathError> {
        let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
        if is_plain(rest) {
            // Nothing to decode, drop or refuse: the path is its own normal form (one scan
            // instead of a decode and four checks per segment, #13).
            return Ok(RelPath(rest.to_owned()));
        }
        Self::decode(rest)
    }

    /// [`Self::from_uri_path`] of `/rest`, segment by segment.
    fn decode(rest: &str) -> Result<Self, PathError> {
        let mut out = String::with_capacity(rest.len());
        for seg in rest.split('/') {
            if has_encoded_separator(seg) {
                return Err(PathError::EncodedSeparator);
            }
            // Borrows `seg` unless it has something to decode.
            let decoded = percent_decode_str(seg)
                .decode_utf8()
                .map_err(|_| PathError::NotUtf8)?;
            Self::check_segment(&decoded)?;
            match &*decoded {
                "" | "." => {}
                seg => {
                    if !out.is_empty() {
                        out.push('/');
                    }
                    out.push_str(seg);
                }
            }
        }
        Ok(RelPath(out))
    }

    /// Builds a path from already-decoded segments (file names from upload metadata), with the
    /// same rules.
    pub fn from_segments<'a>(segs: impl IntoIterator<Item = &'a str>) -> Result<Self, PathError> {
        let mut out = Vec::new();
        for seg in segs {
            Self::check_segment(seg)?;
            if !seg.is_empty() && seg != "." {
                out.push(seg.to_string());
            }
        }
        Ok(RelPath(out.join("/")))
    }

    fn check_segment(seg: &str) -> Result<(), PathError> {
        if seg.contains('\0') {
            return Err(PathError::Nul);
        }
        if seg.contains('\\') || seg.contains('/') {
            return Err(PathError::EncodedSeparator);
        }
        if seg == ".." {
            return Err(PathError::DotDot);
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').filter(|s| !s.is_empty())
    }

    /// The last segment, if any.
    pub fn file_name(&self) -> Option<&str> {
        // Segments are never empty: the last is what follows the last `/`.
        let last = match self.0.as_bytes().iter().rposition(|&b| b == b'/') {
            Some(slash) => self.0.get(slash + 1..)?,
            None => self.0.as_str(),
        };
        (!last.is_empty()).then_some(last)
    }

    /// Whether any segment starts with `.` (a dotfile or a file inside a dot-directory).
    pub fn is_hidden(&self) -> bool {
        self.0.starts_with('.') || self.0.contains("/.")
    }

    pub fn join(&self, name: &str) -> Result<Self, PathError> {
        Self::from_segments(self.segments().chain([name]))
    }
}

/// Whether `rest` (a path without its leading `/`) is already normal: no `%`, `\\` or NUL,
/// and no segment empty, `.` or `..`. Then [`RelPath::decode`] would return it unchanged.
fn is_plain(rest: &str) -> bool {
    let ordinary = |seg: &[u8]| !matches!(seg, b"" | b"." | b"..");
    let bytes = rest.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'%' | b'\\' | 0 => return false,
            b'/' if !ordinary(&bytes[start..i]) => return false,
            b'/' => start = i + 1,
            _ => {}
        }
    }
    rest.is_empty() || ordinary(&bytes[start..])
}

/// Whether `seg` contains `%2F` or `%5C` in either case.
fn has_encoded_separator(seg: &str) -> bool {
    seg.as_bytes().windows(3).any(|w| {
        let low = w[2] | 0x20; // ASCII lowercase for letters; only F/f and C/c give these
        w[0] == b'%' && ((w[1] == b'2' && low == b'f') || (w[1] == b'5' && low == b'c'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_once_and_normalizes() {
        let p = RelPath::from_uri_path("/a//./b%20c/%E6%8A%A5%E5%91%8A.pdf").unwrap();
        assert_eq!(p.as_str(), "a/b c/报告.pdf");
        assert_eq!(p.file_name(), Some("报告.pdf"));
        // %2525 decodes once to %25, not to %.
        assert_eq!(RelPath::from_uri_path("/x%2525").unwrap().as_str(), "x%25");
        assert!(RelPath::from_uri_path("/").unwrap().is_root());
        assert!(RelPath::from_uri_path("//./").unwrap().is_root());
        assert_eq!(RelPath::from_uri_path("/a/").unwrap().as_str(), "a");
        // Near misses of an encoded separator are ordinary characters.
        let p = RelPath::from_uri_path("/%252F%2e%25%5b%2g").unwrap();
        assert_eq!(p.as_str(), "%2F.%[%2g");
        let p = RelPath::from_uri_path("/%252f%2e%20%5b%3Fc2F").unwrap();
        assert_eq!(p.as_str(), "%2f. [?c2F");
    }

    #[test]
    fn refuses_traversal_and_smuggled_separators() {
        use PathError::*;
        for (raw, err) in [
            ("/../etc/passwd", DotDot),
            ("/a/%2e%2e/b", DotDot),
            ("/a%2Fb", EncodedSeparator),
            ("/a%5cb", EncodedSeparator),
            ("/a%2fb", EncodedSeparator),
            ("/a%5Cb/c", EncodedSeparator),
            ("/ok/%2F", EncodedSeparator),
            ("/a\\b", EncodedSeparator),
            ("/a%00b", Nul),
            ("/%ff", NotUtf8),
            ("a", NotAbsolute),
        ] {
            assert_eq!(RelPath::from_uri_path(raw), Err(err), "{raw}");
        }
    }

    // The plain-path shortcut must agree with the full decode on every path it takes: all
    // paths of up to 6 characters over an alphabet of the characters that matter.
    #[test]
    fn plain_paths_are_their_own_normal_form() {
        let alphabet = ['a', '.', '/', '%', '2', 'F', '\\', '\0', 'é'];
        let mut paths = vec![String::new()];
        let mut shortcuts = 0;
        for _ in 0..6 {
            let mut longer = Vec::new();
            for p in &paths {
                for c in alphabet {
                    let mut q = p.clone();
                    q.push(c);
                    if is_plain(&q) {
                        shortcuts += 1;
                        assert_eq!(RelPath::decode(&q), Ok(RelPath(q.clone())), "{q:?}");
                    }
                    longer.push(q);
                }
            }
            paths = longer;
        }
        assert!(shortcuts > 1000, "{shortcuts}");
        assert!(is_plain("") && is_plain("a/b.c/d") && is_plain("..a/b.."));
        assert!(!is_plain("a/") && !is_plain("a//b") && !is_plain("./a") && !is_plain("a/.."));
    }

    #[test]
    fn hidden_detects_dot_segments_anywhere() {
        assert!(RelPath::from_uri_path("/.git/config").unwrap().is_hidden());
        assert!(RelPath::from_uri_path("/a/.env").unwrap().is_hidden());
        assert!(!RelPath::from_uri_path("/a/b.env").unwrap().is_hidden());
        assert!(!RelPath::from_uri_path("/a./b").unwrap().is_hidden());
        assert!(!RelPath::root().is_hidden());
        assert_eq!(RelPath::root().file_name(), None);
        assert_eq!(
            RelPath::from_uri_path("/a/b").unwrap().file_name(),
            Some("b")
        );
    }
}
