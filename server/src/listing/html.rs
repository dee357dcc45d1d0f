//! The HTML listing, rendered in chunks. Without JavaScript it is a complete page: breadcrumbs,
//! a parent link, one link per entry (no second `?download` link, so `wget -r` and rclone see
//! each file once), human sizes with the exact byte count in `title`, UTC dates in `<time>`.
//! The page's script reads `data-*` attributes and the JSON listing to enhance it.

use bytes::Bytes;

use super::{href, mtime, Page, CHUNK};
use crate::path::RelPath;
use crate::store::Entry;

pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    escape_into(&mut out, s);
    out
}

fn escape_into(out: &mut String, s: &str) {
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
}

/// The page, as body chunks: the head, `CHUNK` rows at a time, the tail.
pub(super) fn chunks(
    dir: &RelPath,
    entries: Vec<Entry>,
    page: Page<'_>,
) -> impl Iterator<Item = std::io::Result<Bytes>> + Send {
    let count = entries.len();
    let head = head(dir, page);
    let mut rows = entries.into_iter().peekable();
    let mut parts = std::iter::once(head).chain(std::iter::from_fn(move || {
        rows.peek()?;
        let mut out = String::with_capacity(CHUNK * 300);
        for e in rows.by_ref().take(CHUNK) {
            row(&mut out, &e);
        }
        Some(out)
    }));
    let mut tail = Some(format!(
        "</tbody></table>\n<p id=\"count\" data-count=\"{count}\">{count} items</p>\n</main>\n</body></html>\n"
    ));
    std::iter::from_fn(move || parts.next().or_else(|| tail.take())).map(|s| Ok(Bytes::from(s)))
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
    out.push_str("<th scope=\"col\" class=\"m\">Modified</th></tr></thead>\n<tbody>\n");
    if !dir.is_root() {
        out.push_str("<tr class=\"up\"><td class=\"n\"><a href=\"../\" rel=\"up\">../</a></td>");
        out.push_str("<td class=\"s\"></td><td class=\"m\"></td></tr>\n");
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

fn row(out: &mut String, e: &Entry) {
    let secs = mtime(e);
    let (kind, size) = if e.is_dir {
        ("d", 0)
    } else {
        ("f", e.meta.len)
    };
    out.push_str(&format!(
        "<tr class=\"{kind}\" data-size=\"{size}\" data-mtime=\"{secs}\"><td class=\"n\"><a href=\"{}\">",
        href(e)
    ));
    escape_into(out, &e.name);
    if e.is_dir {
        out.push('/');
    }
    out.push_str("</a></td>");
    if e.is_dir {
        out.push_str("<td class=\"s\">-</td>");
    } else {
        out.push_str(&format!(
            "<td class=\"s\" title=\"{size} bytes\">{}</td>",
            human_size(size)
        ));
    }
    let iso = iso_utc(secs);
    out.push_str(&format!(
        "<td class=\"m\"><time datetime=\"{iso}\">{} UTC</time></td></tr>\n",
        iso.get(..16).unwrap_or(&iso).replace('T', " ")
    ));
}

/// `1.5 MiB`-style sizes (binary units, one decimal below 10).
pub fn human_size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if v < 10.0 {
        format!("{v:.1} {}", UNITS[unit])
    } else {
        format!("{v:.0} {}", UNITS[unit])
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the epoch (proleptic Gregorian calendar, Howard
/// Hinnant's `civil_from_days`).
pub fn iso_utc(secs: u64) -> String {
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
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::entry;
    use super::*;

    fn page(dir: &RelPath, entries: Vec<Entry>) -> String {
        chunks(dir, entries, Page::default())
            .map(|c| String::from_utf8(c.unwrap().to_vec()).unwrap())
            .collect()
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
    fn many_entries_come_in_many_chunks() {
        let entries: Vec<Entry> = (0..1000).map(|i| entry(&format!("f{i}"), false)).collect();
        let n = chunks(&RelPath::root(), entries, Page::default()).count();
        assert_eq!(n, 1 + 1000usize.div_ceil(CHUNK) + 1);
    }

    #[test]
    fn sizes_and_dates_are_human() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(1536), "1.5 KiB");
        assert_eq!(human_size(64 << 20), "64 MiB");
        assert_eq!(human_size(u64::MAX), "16 EiB");
        assert_eq!(iso_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(iso_utc(1_733_339_045), "2024-12-04T19:04:05Z");
    }
}
