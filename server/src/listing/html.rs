//! The HTML listing, rendered in chunks. Without JavaScript it is a complete page: breadcrumbs,
//! a parent link, one link per entry (no second `?download` link, so `wget -r` and rclone see
//! each file once), human sizes with the exact byte count in `title`, UTC dates.
//!
//! Rows are small, because a directory of 100,000 entries is 100,000 of them (nginx's
//! `autoindex` sends about 120 bytes an entry): no classes, no `data-*`, optional end tags
//! left out (HTML's "optional tags"), so a file is
//! `<tr><td><a href="a%20b">a b</a><td title=1536>1.5 KiB<td>2024-12-04 19:04:05` and a
//! folder's link ends in `/`. The page's script reads exactly these: the link, the byte count
//! in `title` and the UTC date. Each chunk of rows is its own `<tbody>`, so the stylesheet
//! can skip laying out the ones off screen (`content-visibility: auto`) and the script can
//! enhance one when it comes into view. Everything is written straight into the chunk's
//! buffer; no string is built per row.

use std::fmt::Write as _;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{stream, Stream, StreamExt as _};
use percent_encoding::utf8_percent_encode;

use super::{mtime, Page, SEGMENT};
use crate::path::RelPath;
use crate::store::Entry;

/// Bytes a row takes, about, for sizing a chunk's buffer.
const ROW_BYTES: usize = 128;

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

/// Text or attribute value: `&<>"'` become references, everything else is copied in runs.
fn escape_into(out: &mut String, s: &str) {
    let mut run = 0;
    for (i, b) in s.bytes().enumerate() {
        let by = match b {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        // `run..i` ends before an ASCII byte, so it is on a character boundary.
        out.push_str(s.get(run..i).unwrap_or_default());
        out.push_str(by);
        run = i + 1;
    }
    out.push_str(s.get(run..).unwrap_or_default());
}

/// The page, as body chunks: the head (sent before any entry is looked up), one `<tbody>`
/// per batch of entries, the tail with the count of entries listed.
pub(super) fn chunks(
    dir: &RelPath,
    entries: impl Stream<Item = io::Result<Vec<Entry>>> + Send,
    page: Page<'_>,
) -> impl Stream<Item = io::Result<Bytes>> + Send {
    let head = Bytes::from(head(dir, page));
    let count = Arc::new(AtomicUsize::new(0));
    let counted = count.clone();
    let rows = entries.map(move |batch| {
        let batch = batch?;
        if batch.is_empty() {
            return Ok(Bytes::new());
        }
        counted.fetch_add(batch.len(), Ordering::Relaxed);
        let mut out = String::with_capacity(batch.len() * ROW_BYTES + 8);
        out.push_str("<tbody>\n");
        for e in &batch {
            row(&mut out, e);
        }
        Ok(Bytes::from(out))
    });
    let tail = stream::once(async move {
        let n = count.load(Ordering::Relaxed);
        Ok(Bytes::from(format!(
            "</table>\n<p id=\"count\" data-count=\"{n}\">{n} items</p>\n</main>\n</body></html>\n"
        )))
    });
    super::nonempty(stream::once(async { Ok(head) }).chain(rows).chain(tail))
}

fn head(dir: &RelPath, page: Page<'_>) -> String {
    let ui = crate::ui::prefix();
    let title = html_escape(&format!("/{}", dir.as_str()));
    let mut out = String::with_capacity(2048);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    out.push_str("<meta name=\"color-scheme\" content=\"light dark\">\n");
    out.push_str(&format!("<title>Index of {title}</title>\n"));
    out.push_str(&format!(
        "<link rel=\"stylesheet\" href=\"{ui}ferry.css\">\n"
    ));
    out.push_str("<link rel=\"icon\" href=\"data:,\">\n");
    if page.tus_base.is_some() {
        out.push_str(&format!(
            "<script src=\"{ui}vendor/tus.min.js\" defer></script>\n"
        ));
    }
    out.push_str(&format!(
        "<script type=\"module\" src=\"{ui}listing.js\"></script>\n</head>\n"
    ));
    out.push_str(&format!("<body data-ui=\"{ui}\""));
    if let Some(base) = page.tus_base {
        out.push_str(" data-tus=\"");
        escape_into(&mut out, base);
        out.push_str(&format!(
            "\" data-token=\"{}\"",
            u8::from(page.upload_token)
        ));
    }
    out.push_str(">\n<header class=\"bar\">");
    crumbs(&mut out, dir);
    out.push_str("</header>\n<main>\n");
    out.push_str(&format!("<h1 id=\"title\">Index of {title}</h1>\n"));
    out.push_str("<div id=\"tools\"></div>\n<table id=\"listing\">\n<thead><tr>");
    out.push_str("<th scope=\"col\" class=\"n\">Name</th><th scope=\"col\" class=\"s\">Size</th>");
    out.push_str("<th scope=\"col\" class=\"m\">Modified (UTC)</th></tr></thead>\n");
    if !dir.is_root() {
        out.push_str("<tbody class=\"up\"><tr><td><a href=\"../\" rel=\"up\">../</a><td><td>\n");
    }
    out
}

/// `Home / a / b`: each ancestor a link, the current directory plain text.
fn crumbs(out: &mut String, dir: &RelPath) {
    out.push_str(
        "<nav aria-label=\"Breadcrumb\" id=\"crumbs\"><ol><li><a href=\"/\">Home</a></li>",
    );
    let segs: Vec<&str> = dir.segments().collect();
    let mut link = String::from("/");
    for (i, seg) in segs.iter().enumerate() {
        link.push_str(&super::encode_segment(seg));
        link.push('/');
        out.push_str("<li>");
        if i + 1 == segs.len() {
            out.push_str("<span aria-current=\"page\">");
            escape_into(out, seg);
            out.push_str("</span>");
        } else {
            out.push_str(&format!("<a href=\"{link}\">"));
            escape_into(out, seg);
            out.push_str("</a>");
        }
        out.push_str("</li>");
    }
    out.push_str("</ol></nav>");
}

/// One entry. `</a>` is the only end tag: a `<td>` ends at the next `<td>`, a row at the next
/// `<tr>` or at the end of its `<tbody>` (HTML Living Standard §13.1.2.4, optional tags).
fn row(out: &mut String, e: &Entry) {
    // Most names are RFC 3986 unreserved characters only: link and text are the name itself.
    let plain = e
        .name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
    out.push_str("<tr><td><a href=\"");
    if plain {
        out.push_str(&e.name);
    } else {
        out.extend(utf8_percent_encode(&e.name, SEGMENT));
    }
    if e.is_dir {
        out.push('/');
    }
    out.push_str("\">");
    if plain {
        out.push_str(&e.name);
    } else {
        escape_into(out, &e.name);
    }
    if e.is_dir {
        out.push_str("/</a><td>-<td>");
    } else {
        // Writing into a String cannot fail.
        let _ = write!(out, "</a><td title={}>", e.len);
        human_size_into(out, e.len);
        out.push_str("<td>");
    }
    utc_into(out, mtime(e));
    out.push('\n');
}

/// `1.5 MiB`-style sizes (binary units, one decimal below 10).
fn human_size_into(out: &mut String, n: u64) {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        let _ = write!(out, "{n} B");
        return;
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let u = UNITS.get(unit).copied().unwrap_or("EiB");
    let _ = if v < 10.0 {
        write!(out, "{v:.1} {u}")
    } else {
        write!(out, "{v:.0} {u}")
    };
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) for seconds since the epoch: proleptic Gregorian calendar,
/// Howard Hinnant's `civil_from_days`. Years past 9999 are clamped there, as HTTP dates are.
fn utc_into(out: &mut String, secs: u64) {
    let secs = secs.min(253_402_300_799); // 9999-12-31 23:59:59
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let [y, m, d] = [y, m, d].map(|v| u64::try_from(v).unwrap_or(0));
    let parts = [(y, 4, "-"), (m, 2, "-"), (d, 2, " ")];
    let clock = [
        (rem / 3600, 2, ":"),
        (rem % 3600 / 60, 2, ":"),
        (rem % 60, 2, ""),
    ];
    for (v, width, sep) in parts.into_iter().chain(clock) {
        for p in (0..width).rev() {
            out.push(char::from(b'0' + (v / 10u64.pow(p) % 10) as u8));
        }
        out.push_str(sep);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{batched, drain, entry};
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn page(dir: &RelPath, entries: Vec<Entry>) -> String {
        drain(chunks(dir, batched(&entries), Page::default())).concat()
    }

    #[test]
    fn html_links_are_encoded_and_text_escaped() {
        let html = page(
            &RelPath::root(),
            vec![entry("报告 #1 <a>.pdf", false), entry("sub", true)],
        );
        assert!(
            html.contains("href=\"%E6%8A%A5%E5%91%8A%20%231%20%3Ca%3E.pdf\""),
            "{html}"
        );
        assert!(html.contains(">报告 #1 &lt;a&gt;.pdf</a>"));
        assert!(!html.contains("?download"), "one link per file");
        assert!(html.contains("href=\"sub/\">sub/</a>"));
        assert!(!html.contains("href=\"../\""), "root has no parent link");
    }

    #[test]
    fn hostile_names_render_as_text() {
        let name = "<script>alert(1)</script>\"'&\u{202e}gpj.exe\nx";
        let html = page(&RelPath::root(), vec![entry(name, false)]);
        assert!(!html.contains("<script>alert"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&quot;&#39;&amp;\u{202e}"));
        let dir = RelPath::from_uri_path("/a%22%3E%3Cscript%3E/").unwrap();
        let html = page(&dir, vec![]);
        assert!(!html.contains("\"><script>"), "{html}");
    }

    #[test]
    fn breadcrumbs_link_every_ancestor() {
        let dir = RelPath::from_uri_path("/a%20b/c/").unwrap();
        let html = page(&dir, vec![]);
        assert!(html.contains("<a href=\"/\">Home</a>"));
        assert!(html.contains("<a href=\"/a%20b/\">a b</a>"));
        assert!(html.contains("<span aria-current=\"page\">c</span>"));
        assert!(html.contains("href=\"../\""));
    }

    #[test]
    fn rows_are_small_and_carry_what_the_script_reads() {
        // The whole row, as the page's script parses it: link, exact bytes in title, UTC date.
        let mut out = String::new();
        let file = Entry {
            len: 1536,
            modified: UNIX_EPOCH + Duration::from_secs(1_733_339_045),
            ..entry("file-000123.txt", false)
        };
        row(&mut out, &file);
        assert_eq!(
            out,
            "<tr><td><a href=\"file-000123.txt\">file-000123.txt</a><td title=1536>1.5 KiB\
             <td>2024-12-04 19:04:05\n"
        );
        // nginx's autoindex row for the same name is about 120 bytes.
        assert!(out.len() <= 100, "{} bytes", out.len());
        out.clear();
        row(&mut out, &entry("d", true));
        assert_eq!(
            out,
            "<tr><td><a href=\"d/\">d/</a><td>-<td>1970-01-01 00:00:00\n"
        );
    }

    #[test]
    fn every_chunk_of_rows_is_its_own_tbody() {
        let entries: Vec<Entry> = (0..1000).map(|i| entry(&format!("f{i}"), false)).collect();
        let parts = drain(chunks(&RelPath::root(), batched(&entries), Page::default()));
        assert_eq!(
            parts.len(),
            1 + 1000usize.div_ceil(256) + 1,
            "empty batches make no chunk"
        );
        for rows in &parts[1..parts.len() - 1] {
            assert!(rows.starts_with("<tbody>\n<tr>"), "{rows}");
        }
        assert_eq!(parts.concat().matches("<tr><td>").count(), 1000);
        assert!(parts.concat().contains("data-count=\"1000\">1000 items"));
    }

    #[test]
    fn sizes_and_dates_are_human() {
        let human = |n| {
            let mut s = String::new();
            human_size_into(&mut s, n);
            s
        };
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(64 << 20), "64 MiB");
        assert_eq!(human(u64::MAX), "16 EiB");
        let utc = |secs| {
            let mut s = String::new();
            utc_into(&mut s, secs);
            s
        };
        assert_eq!(utc(0), "1970-01-01 00:00:00");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(utc(1_733_339_045), "2024-12-04 19:04:05");
        assert_eq!(
            utc(u64::MAX),
            "9999-12-31 23:59:59",
            "clamped, as HTTP dates are"
        );
    }

    #[test]
    fn escaping_copies_runs_between_specials() {
        assert_eq!(html_escape(""), "");
        assert_eq!(html_escape("plain 名字"), "plain 名字");
        assert_eq!(html_escape("&a<b>\"'"), "&amp;a&lt;b&gt;&quot;&#39;");
        assert_eq!(html_escape("名<字>"), "名&lt;字&gt;");
    }
}
