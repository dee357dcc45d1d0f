//! Directory listings: HTML for people, JSON for scripts (`Accept: application/json` or
//! `?json`). Links are percent-encoded per segment, text is HTML-escaped, so any file name
//! (Chinese, spaces, `#`, `?`, quotes, `<script>`) links to itself and shows as text.
//!
//! Both forms are streamed, a few hundred entries per chunk, so a directory of 100,000
//! entries never becomes one string in memory. Folders come first, then files, each by name.
//! The HTML works without JavaScript; the page's script ([`crate::ui`]) enhances it.

mod html;

use std::time::UNIX_EPOCH;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

pub use html::html_escape;

use crate::body::{self, Body};
use crate::http::http_date;
use crate::path::RelPath;
use crate::store::Entry;

/// Everything but RFC 3986 unreserved characters is encoded in a path segment.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Entries rendered per body chunk.
const CHUNK: usize = 256;

pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// What the HTML page needs to know about the server beyond the directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct Page<'a> {
    /// The tus endpoint's base path, when uploads are enabled.
    pub tus_base: Option<&'a str>,
    /// Whether uploads need a bearer token.
    pub upload_token: bool,
}

#[derive(Serialize)]
struct JsonEntry<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    size: u64,
    /// Seconds since the Unix epoch.
    mtime: u64,
    modified: String,
    /// The entry's link, relative to the listed directory.
    href: String,
    /// Lowercase hex SHA-256, for files the content index has a digest of.
    #[serde(skip_serializing_if = "Option::is_none")]
    sha256: Option<String>,
}

impl<'a> JsonEntry<'a> {
    fn of(e: &'a Entry) -> Self {
        JsonEntry {
            name: &e.name,
            kind: if e.is_dir { "dir" } else { "file" },
            size: if e.is_dir { 0 } else { e.meta.len },
            mtime: mtime(e),
            modified: http_date(e.meta.modified),
            href: href(e),
            sha256: e.sha256.map(hex::encode),
        }
    }
}

pub fn respond(
    dir: &RelPath,
    mut entries: Vec<Entry>,
    json: bool,
    method: &Method,
    page: Page<'_>,
) -> Response<Body> {
    if dir.is_root() {
        entries.retain(|e| e.name != crate::ui::RESERVED);
    }
    // Stable: folders first, each group keeps the store's name order.
    entries.sort_by_key(|e| !e.is_dir);
    let ctype = if json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    let body = if method == Method::HEAD {
        body::empty()
    } else if json {
        body::stream(Box::pin(futures_util::stream::iter(json_chunks(entries))))
    } else {
        let chunks = html::chunks(dir, entries, page);
        body::stream(Box::pin(futures_util::stream::iter(chunks)))
    };
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if !json {
        crate::ui::secure(h);
    }
    resp
}

fn href(e: &Entry) -> String {
    let mut h = encode_segment(&e.name);
    if e.is_dir {
        h.push('/');
    }
    h
}

fn mtime(e: &Entry) -> u64 {
    e.meta
        .modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The JSON array, `CHUNK` entries per item, rendered as the body is read.
fn json_chunks(entries: Vec<Entry>) -> impl Iterator<Item = std::io::Result<Bytes>> + Send {
    let mut it = entries.into_iter().peekable();
    let mut first = true;
    let mut done = false;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let mut out = String::with_capacity(CHUNK * 160);
        if first {
            out.push('[');
        }
        for e in it.by_ref().take(CHUNK) {
            if !first {
                out.push(',');
            }
            first = false;
            // Serializing a struct of strings and integers cannot fail.
            out.push_str(&serde_json::to_string(&JsonEntry::of(&e)).unwrap_or_default());
        }
        if first {
            first = false;
        }
        if it.peek().is_none() {
            out.push(']');
            done = true;
        }
        Some(Ok(Bytes::from(out)))
    })
}

/// The whole JSON listing as one string (tests and small callers).
pub fn to_json(entries: &[Entry]) -> String {
    json_chunks(entries.to_vec())
        .filter_map(|c| c.ok())
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Meta;

    pub(super) fn entry(name: &str, is_dir: bool) -> Entry {
        Entry {
            name: name.into(),
            is_dir,
            meta: Meta {
                len: 42,
                modified: std::time::UNIX_EPOCH,
                etag: "\"x\"".into(),
            },
            sha256: None,
        }
    }

    #[test]
    fn json_lists_type_size_and_href() {
        let v: serde_json::Value =
            serde_json::from_str(&to_json(&[entry("a b", false), entry("d", true)])).unwrap();
        assert_eq!(v[0]["name"], "a b");
        assert_eq!(v[0]["href"], "a%20b");
        assert_eq!(v[0]["size"], 42);
        assert_eq!(v[1]["type"], "dir");
        assert_eq!(v[1]["href"], "d/");
        assert!(v[0].get("sha256").is_none(), "no digest known: no key");
        let hashed = Entry {
            sha256: Some([0xab; 32]),
            ..entry("h", false)
        };
        let v: serde_json::Value = serde_json::from_str(&to_json(&[hashed])).unwrap();
        assert_eq!(v[0]["sha256"], "ab".repeat(32));
    }

    #[test]
    fn json_of_nothing_and_of_many_chunks_is_valid() {
        assert_eq!(to_json(&[]), "[]");
        let many: Vec<Entry> = (0..1000).map(|i| entry(&format!("f{i}"), false)).collect();
        let v: serde_json::Value = serde_json::from_str(&to_json(&many)).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 1000);
        assert_eq!(v[999]["name"], "f999");
    }
}
