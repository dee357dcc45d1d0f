//! Directory listings: HTML for people, JSON for scripts (`Accept: application/json` or
//! `?json`). Links are percent-encoded per segment, text is HTML-escaped, so any file name
//! (Chinese, spaces, `#`, `?`, quotes, `<script>`) links to itself and shows as text.
//!
//! Both forms are streamed, a few hundred entries per chunk, so a directory of 100,000
//! entries never becomes one string in memory. Folders come first, then files, each by name.
//! The HTML works without JavaScript; the page's script ([`crate::ui`]) enhances it.

mod html;

use std::time::UNIX_EPOCH;

use std::io;

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt as _};
use http::{header, HeaderValue, Method, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

pub use html::html_escape;

use crate::body::{self, Body};
use crate::http::http_date;
use crate::path::RelPath;
use crate::store::{Entry, EntryStream};

/// Everything but RFC 3986 unreserved characters is encoded in a path segment.
pub(crate) const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

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
            size: if e.is_dir { 0 } else { e.len },
            mtime: mtime(e),
            modified: http_date(e.modified),
            href: href(e),
            sha256: e.sha256.map(hex::encode),
        }
    }
}

pub fn respond(
    dir: &RelPath,
    entries: EntryStream,
    json: bool,
    method: &Method,
    page: Page<'_>,
) -> Response<Body> {
    let ctype = if json {
        "application/json"
    } else {
        "text/html; charset=utf-8"
    };
    // The UI's reserved prefix is not a file of the root.
    let root = dir.is_root();
    let entries = entries.map(move |batch| {
        batch.map(|mut b| {
            if root {
                b.retain(|e| e.name != crate::ui::RESERVED);
            }
            b
        })
    });
    let body = if method == Method::HEAD {
        body::empty()
    } else if json {
        body::stream(Box::pin(json_chunks(entries)))
    } else {
        body::stream(Box::pin(html::chunks(dir, entries, page)))
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
    e.modified
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The JSON array, one body chunk per batch of entries, rendered as the body is read.
fn json_chunks(
    entries: impl Stream<Item = io::Result<Vec<Entry>>> + Send,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let mut first = true;
    let items = entries.map(move |batch| {
        let batch = batch?;
        let mut out = String::with_capacity(batch.len() * 160);
        for e in &batch {
            if !first {
                out.push(',');
            }
            first = false;
            // Serializing a struct of strings and integers cannot fail.
            out.push_str(&serde_json::to_string(&JsonEntry::of(e)).unwrap_or_default());
        }
        Ok(Bytes::from(out))
    });
    let open = stream::once(async { Ok(Bytes::from_static(b"[")) });
    let close = stream::once(async { Ok(Bytes::from_static(b"]")) });
    nonempty(open.chain(items).chain(close))
}

/// Leaves out empty chunks (a batch whose entries all vanished): an empty chunk is no part of
/// HTTP/1.1 chunked framing but its end.
fn nonempty(
    s: impl Stream<Item = io::Result<Bytes>> + Send,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    s.filter(|c| std::future::ready(!matches!(c, Ok(b) if b.is_empty())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt as _;

    /// `entries` as a store streams them: batches of 256, and an empty batch (all of its
    /// entries vanished) before the last.
    pub(super) fn batched(entries: &[Entry]) -> impl Stream<Item = io::Result<Vec<Entry>>> {
        let mut batches: Vec<io::Result<Vec<Entry>>> =
            entries.chunks(256).map(|c| Ok(c.to_vec())).collect();
        batches.insert(batches.len().saturating_sub(1), Ok(Vec::new()));
        stream::iter(batches)
    }

    /// The chunks of a body whose every future is ready.
    pub(super) fn drain(s: impl Stream<Item = io::Result<Bytes>>) -> Vec<String> {
        let chunks: Vec<_> = s.collect::<Vec<_>>().now_or_never().unwrap();
        chunks
            .into_iter()
            .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect()
    }

    fn to_json(entries: &[Entry]) -> String {
        drain(json_chunks(batched(entries))).concat()
    }

    #[test]
    fn empty_batches_make_no_chunks() {
        let chunks = drain(json_chunks(batched(&[entry("a", false)])));
        assert_eq!(
            chunks,
            [
                "[",
                r#"{"name":"a","type":"file","size":42,"mtime":0,"modified":"Thu, 01 Jan 1970 00:00:00 GMT","href":"a"}"#,
                "]"
            ]
        );
    }

    pub(super) fn entry(name: &str, is_dir: bool) -> Entry {
        Entry {
            name: name.into(),
            is_dir,
            len: 42,
            modified: std::time::UNIX_EPOCH,
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
