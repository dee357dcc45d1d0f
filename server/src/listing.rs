//! Directory listings: HTML for people, JSON for scripts (`Accept: application/json` or
//! `?json`). Links are percent-encoded per segment, text is HTML-escaped, so any file name
//! (Chinese, spaces, `#`, `?`, quotes) links to itself.

use http::{header, HeaderValue, Method, Response};
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use serde::Serialize;

use crate::body::{self, Body};
use crate::files::set;
use crate::path::RelPath;
use crate::store::{fs::http_date, Entry};

/// Everything but RFC 3986 unreserved characters is encoded in a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

pub fn encode_segment(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
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
}

pub fn respond(dir: &RelPath, entries: &[Entry], json: bool, method: &Method) -> Response<Body> {
    let (text, ctype) = if json {
        (to_json(entries), "application/json")
    } else {
        (to_html(dir, entries), "text/html; charset=utf-8")
    };
    let len = text.len();
    let mut resp = Response::new(if method == Method::HEAD {
        body::empty()
    } else {
        body::full(text)
    });
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::VARY, HeaderValue::from_static("Accept"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    set(h, header::CONTENT_LENGTH, len.to_string());
    resp
}

fn href(e: &Entry) -> String {
    let mut h = encode_segment(&e.name);
    if e.is_dir {
        h.push('/');
    }
    h
}

pub fn to_json(entries: &[Entry]) -> String {
    let list: Vec<JsonEntry> = entries
        .iter()
        .map(|e| JsonEntry {
            name: &e.name,
            kind: if e.is_dir { "dir" } else { "file" },
            size: if e.is_dir { 0 } else { e.meta.len },
            mtime: e
                .meta
                .modified
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            modified: http_date(e.meta.modified),
            href: href(e),
        })
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

pub fn to_html(dir: &RelPath, entries: &[Entry]) -> String {
    let title = html_escape(&format!("/{}", dir.as_str()));
    let mut out = format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>Index of {title}</title></head>\n\
         <body><h1>Index of {title}</h1>\n<table>\n<tr><th>Name</th><th>Size</th><th>Modified</th><th></th></tr>\n"
    );
    if !dir.is_root() {
        out.push_str("<tr><td><a href=\"../\">../</a></td><td></td><td></td><td></td></tr>\n");
    }
    for e in entries {
        let link = href(e);
        let shown = html_escape(&e.name) + if e.is_dir { "/" } else { "" };
        let (size, download) = if e.is_dir {
            ("-".to_string(), String::new())
        } else {
            (
                e.meta.len.to_string(),
                format!("<a href=\"{link}?download\">download</a>"),
            )
        };
        out.push_str(&format!(
            "<tr><td><a href=\"{link}\">{shown}</a></td><td>{size}</td><td>{}</td><td>{download}</td></tr>\n",
            http_date(e.meta.modified)
        ));
    }
    out.push_str("</table></body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Meta;

    fn entry(name: &str, is_dir: bool) -> Entry {
        Entry {
            name: name.into(),
            is_dir,
            meta: Meta {
                len: 42,
                modified: std::time::UNIX_EPOCH,
                etag: "\"x\"".into(),
            },
        }
    }

    #[test]
    fn html_links_are_encoded_and_text_escaped() {
        let html = to_html(
            &RelPath::root(),
            &[entry("报告 #1 <a>.pdf", false), entry("sub", true)],
        );
        assert!(
            html.contains("href=\"%E6%8A%A5%E5%91%8A%20%231%20%3Ca%3E.pdf\""),
            "{html}"
        );
        assert!(html.contains(">报告 #1 &lt;a&gt;.pdf</a>"));
        assert!(html.contains("href=\"%E6%8A%A5%E5%91%8A%20%231%20%3Ca%3E.pdf?download\""));
        assert!(html.contains("href=\"sub/\">sub/</a>"));
        assert!(!html.contains("../"), "root has no parent link");
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
    }
}
