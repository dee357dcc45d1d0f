//! Which links of a listing belong to the tree, and where each one goes on disk. Pure.
//!
//! A link is followed only when, resolved against the listing's URL (RFC 3986 §5.2, which
//! also removes `.` and `..` segments, and treats `%2e%2e` as `..` as the WHATWG URL
//! standard does), it has the start URL's scheme, host and port, no query (sort links such as
//! Apache's `?C=N;O=D` or Caddy's `?sort=name`), and a path strictly below the start URL's
//! directory: `wget -r -np` and rclone's http backend draw the same line. Parent links,
//! breadcrumbs, absolute links elsewhere on the host and links to other hosts fall outside.
//!
//! The local path is made from the URL path below the start, one segment at a time, each
//! percent-decoded exactly once and then refused if it could name anything but one entry
//! inside the output directory: empty, `.`, `..`, containing `/`, `\` or NUL (`%2f`, `%5c`,
//! `%00` decode to these), control characters, or not UTF-8. [`RelPath`] holds only such
//! checked segments, so joining it to the output directory never leaves it.

use std::path::PathBuf;

use percent_encoding::percent_decode_str;
use reqwest::Url;

/// A relative path of checked segments (see the module docs). Never empty, never absolute,
/// never with `.`/`..`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct RelPath(Vec<String>);

impl RelPath {
    /// Checks decoded segments; `Err` names the first refused one.
    pub fn from_segments(segments: Vec<String>) -> Result<Self, String> {
        if segments.is_empty() {
            return Err("empty path".into());
        }
        for s in &segments {
            check_segment(s)?;
        }
        Ok(Self(segments))
    }

    pub fn segments(&self) -> &[String] {
        &self.0
    }

    /// The same path, relative, for joining to the output directory.
    pub fn to_path(&self) -> PathBuf {
        self.0.iter().collect()
    }

    /// `a/b/c` (segments joined by `/`).
    pub fn as_slash_string(&self) -> String {
        self.0.join("/")
    }

    /// The path of `self` joined with one more checked segment.
    pub fn child(&self, name: &str) -> Result<Self, String> {
        check_segment(name)?;
        let mut v = self.0.clone();
        v.push(name.to_string());
        Ok(Self(v))
    }
}

fn check_segment(s: &str) -> Result<(), String> {
    let bad = s.is_empty()
        || s == "."
        || s == ".."
        || s.chars()
            .any(|c| c == '/' || c == '\\' || c.is_control() || is_bidi_control(c));
    if bad {
        Err(format!("refusing path segment {s:?}"))
    } else {
        Ok(())
    }
}

/// Bidirectional formatting characters (U+202A-U+202E, U+2066-U+2069) make a name display as
/// another (`exe.txt` shown for `txt.exe`); ferryd refuses them in uploaded names too.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The start of a recursive download: a directory URL (always ending in `/`).
#[derive(Debug, Clone)]
pub struct Scope {
    root: Url,
}

/// A link of a listing that belongs to the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub url: Url,
    pub rel: RelPath,
    pub dir: bool,
}

/// Why a link was left out; `Unsafe` ones are reported, the others are expected in listings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Skip {
    /// Parent, sibling, other host, query (sort link), the directory itself.
    Outside,
    /// Below the start, but its path cannot be written safely.
    Unsafe(String),
}

impl Scope {
    /// `url` with a `/` appended to its path when missing (`http://h/pub` means the folder
    /// `pub/`, as for rclone), without query or fragment.
    pub fn new(mut url: Url) -> Self {
        url.set_query(None);
        url.set_fragment(None);
        if !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Self { root: url }
    }

    pub fn root(&self) -> &Url {
        &self.root
    }

    /// The name of the folder the tree is saved as: the last segment of the start URL,
    /// decoded and checked, or the host for a start at `/` (as `wget -r -nd` would not; wget
    /// keeps `host/path/...`, we keep only the last folder, like `cp -r` and `scp -r`).
    pub fn folder_name(&self) -> String {
        let last = self
            .root
            .path_segments()
            .and_then(|mut s| s.rfind(|s| !s.is_empty()))
            .and_then(|s| decode_segment(s).ok());
        last.unwrap_or_else(|| {
            let host = self.root.host_str().unwrap_or("download");
            host.trim_matches(|c| c == '[' || c == ']')
                .replace(':', "_")
        })
    }

    /// Resolves `href` against `base` (the URL the listing was read from) and decides.
    /// `dir` is the listing's word on the kind; otherwise a trailing `/` means a directory.
    pub fn member(&self, base: &Url, href: &str, dir: Option<bool>) -> Result<Member, Skip> {
        let mut url = base.join(href.trim()).map_err(|_| Skip::Outside)?;
        url.set_fragment(None);
        if url.path() == base.path() && url.query() == base.query() {
            return Err(Skip::Outside); // the listed directory itself (`""`, `#top`, `./`)
        }
        let same_origin = url.scheme() == self.root.scheme()
            && url.host() == self.root.host()
            && url.port_or_known_default() == self.root.port_or_known_default();
        if !same_origin || url.query().is_some() || !url.username().is_empty() {
            return Err(Skip::Outside);
        }
        let below = url
            .path()
            .strip_prefix(self.root.path())
            .filter(|rest| !rest.is_empty())
            .ok_or(Skip::Outside)?;
        let is_dir = dir.unwrap_or_else(|| below.ends_with('/'));
        let raw = below.strip_suffix('/').unwrap_or(below);
        let segments = raw
            .split('/')
            .map(decode_segment)
            .collect::<Result<Vec<_>, _>>()
            .map_err(Skip::Unsafe)?;
        let rel = RelPath::from_segments(segments).map_err(Skip::Unsafe)?;
        if is_dir && !url.path().ends_with('/') {
            let path = format!("{}/", url.path());
            url.set_path(&path);
        }
        Ok(Member {
            url,
            rel,
            dir: is_dir,
        })
    }
}

/// Percent-decodes one URL path segment, once; refuses invalid UTF-8.
fn decode_segment(s: &str) -> Result<String, String> {
    let bytes: Vec<u8> = percent_decode_str(s).collect();
    String::from_utf8(bytes).map_err(|_| format!("refusing path segment {s:?}: not UTF-8"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> (Scope, Url) {
        let start = Url::parse("http://h:8080/pub").unwrap();
        let s = Scope::new(start);
        let base = Url::parse("http://h:8080/pub/a/").unwrap();
        (s, base)
    }

    fn rel(m: Result<Member, Skip>) -> Result<String, Skip> {
        m.map(|m| m.rel.as_slash_string())
    }

    #[test]
    fn start_url_gets_a_trailing_slash_and_a_folder_name() {
        let (s, _) = scope();
        assert_eq!(s.root().as_str(), "http://h:8080/pub/");
        assert_eq!(s.folder_name(), "pub");
        let top = Scope::new(Url::parse("http://[::1]:8080/?x").unwrap());
        assert_eq!(
            (top.root().as_str(), top.folder_name()),
            ("http://[::1]:8080/", "__1".into())
        );
        let enc = Scope::new(Url::parse("http://h/a%20b/").unwrap());
        assert_eq!(enc.folder_name(), "a b");
    }

    #[test]
    fn links_below_the_start_keep_their_decoded_path() {
        let (s, base) = scope();
        assert_eq!(
            rel(s.member(&base, "x%20y.txt", None)),
            Ok("a/x y.txt".into())
        );
        assert_eq!(
            rel(s.member(&base, "%E6%8A%A5.pdf", None)),
            Ok("a/\u{62a5}.pdf".into())
        );
        let d = s.member(&base, "deep/", None).unwrap();
        assert!(d.dir);
        assert_eq!(d.url.as_str(), "http://h:8080/pub/a/deep/");
        // ferryd's JSON says it is a directory even without the slash.
        let j = s.member(&base, "deeper", Some(true)).unwrap();
        assert_eq!(
            (j.dir, j.url.as_str()),
            (true, "http://h:8080/pub/a/deeper/")
        );
        assert_eq!(
            rel(s.member(&base, "./c.txt#frag", None)),
            Ok("a/c.txt".into())
        );
        assert_eq!(
            rel(s.member(&base, "http://h:8080/pub/a/abs", None)),
            Ok("a/abs".into())
        );
        assert_eq!(rel(s.member(&base, "../b/sib", None)), Ok("b/sib".into()));
    }

    #[test]
    fn parents_other_hosts_queries_and_breadcrumbs_are_outside() {
        let (s, base) = scope();
        for href in [
            "../../",
            "../../x",
            "/",
            "/pub/",
            "/etc/passwd",
            "/pubx/y",
            "?C=N;O=D",
            "x?sort=name",
            "http://other/pub/a/x",
            "https://h:8080/pub/a/x",
            "http://h:8081/pub/a/x",
            "http://user@h:8080/pub/a/x",
            "//other/pub/a/x",
            "#top",
            "",
            "mailto:x@y",
            "javascript:alert(1)",
        ] {
            assert_eq!(s.member(&base, href, None), Err(Skip::Outside), "{href}");
        }
        // The listed directory itself (an empty rest below the start) is not a member.
        let root = Url::parse("http://h:8080/pub/").unwrap();
        assert_eq!(s.member(&root, "./", None), Err(Skip::Outside));
    }

    /// Regression (issue 9 point 6): a hostile listing must not write outside the output
    /// directory. `..` and `%2e%2e` are resolved by the URL rules (and leave the scope);
    /// what could survive decoding as a separator or a dot segment is refused.
    #[test]
    fn traversal_links_never_escape() {
        let (s, base) = scope();
        for href in [
            "../../x",
            "%2e%2e/%2e%2e/x",
            ".%2E/.%2e/x",
            "..%2f..%2fx",
            "/etc/x",
        ] {
            match s.member(&base, href, None) {
                Err(_) => {}
                Ok(m) => panic!("{href} became {:?}", m.rel),
            }
        }
        for href in [
            "..%2fx",
            "a%2fb",
            "a%5cb",
            "a%00b",
            "%2e%2e%2f",
            "x%0a",
            "%FF",
            "\u{202e}cod.exe",
        ] {
            assert!(
                matches!(s.member(&base, href, None), Err(Skip::Unsafe(_))),
                "{href}"
            );
        }
        // Backslashes in an href are separators in http URLs (WHATWG), so `..\` is `../`.
        assert_eq!(s.member(&base, "..\\..\\x", None), Err(Skip::Outside));
    }

    #[test]
    fn rel_paths_refuse_dots_separators_and_empties() {
        for bad in [
            vec![],
            vec![String::new()],
            vec!["..".into()],
            vec!["a/b".into()],
        ] {
            assert!(RelPath::from_segments(bad).is_err());
        }
        let ok = RelPath::from_segments(vec!["a".into(), "b c".into()]).unwrap();
        assert_eq!(ok.to_path(), PathBuf::from("a/b c"));
        assert!(ok.child("..").is_err());
        assert_eq!(ok.child("d").unwrap().as_slash_string(), "a/b c/d");
    }
}
