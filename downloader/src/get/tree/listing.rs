//! Directory listings as a list of links, pure: ferryd's JSON listing, and the `<a href>` links
//! of any autoindex-style HTML page (nginx `autoindex`, Apache `mod_autoindex`, Caddy
//! `file_server browse`, python's `http.server`, ferryd's HTML).
//!
//! Only links are read here; which of them belong to the tree (same origin, below the start
//! URL, no query) is decided by [`super::scope`], for both forms alike, so a hostile JSON
//! listing gets the same checks as a hostile page.
//!
//! The HTML side is a small hand-written scanner, not an HTML parser: all it needs is the
//! `href` of each `<a>` start tag, with quoted or unquoted values and character references
//! decoded (HTML Living Standard §13.2.5, attribute value states; §13.5 named references, of
//! which only the five that escapers emit and numeric ones are decoded). Comments are skipped
//! so a commented-out link is not followed. Script and style bodies are not special-cased:
//! autoindex pages carry their scripts in separate files, and a link found inside a script
//! still has to pass the scope checks like any other.

use serde::Deserialize;

/// One entry of a listing: where it points (as written, relative to the listing's URL) and
/// what the listing says about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub href: String,
    /// `Some(true)` when the listing says it is a directory (JSON `type`); HTML listings tell
    /// by the trailing `/` of the link, which [`super::scope`] reads.
    pub dir: Option<bool>,
    /// Size in bytes when the listing gives it exactly (ferryd's JSON).
    pub size: Option<u64>,
}

/// ferryd's JSON listing entry (`server/src/listing.rs`): `name`, `type`, `size`, `mtime`,
/// `modified`, `href` (relative to the listed directory), `sha256`. Fields we do not use
/// are ignored, so a newer ferryd with more fields still parses.
#[derive(Debug, Deserialize)]
struct JsonEntry {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    size: Option<u64>,
    href: String,
}

/// Parses ferryd's JSON listing (an array of entries).
pub fn parse_json(body: &[u8]) -> Result<Vec<Link>, String> {
    let entries: Vec<JsonEntry> = serde_json::from_slice(body)
        .map_err(|e| format!("expected a JSON array of listing entries: {e}"))?;
    Ok(entries
        .into_iter()
        .filter_map(|e| {
            let dir = match e.kind.as_str() {
                "dir" => true,
                "file" => false,
                _ => return None,
            };
            Some(Link {
                href: e.href,
                dir: Some(dir),
                size: e.size.filter(|_| !dir),
            })
        })
        .collect())
}

/// Every `href` of an `<a>` start tag in `html`, in document order, decoded.
pub fn parse_html(html: &str) -> Vec<Link> {
    let bytes = html.as_bytes();
    let mut links = Vec::new();
    let mut i = 0;
    while let Some(off) = html[i..].find('<') {
        i += off;
        if html[i..].starts_with("<!--") {
            i = html[i + 4..]
                .find("-->")
                .map_or(html.len(), |e| i + 4 + e + 3);
            continue;
        }
        let is_a = bytes
            .get(i + 1)
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'a'))
            && bytes
                .get(i + 2)
                .is_some_and(|b| b.is_ascii_whitespace() || *b == b'>' || *b == b'/');
        if !is_a {
            i += 1;
            continue;
        }
        let (href, end) = scan_tag(html, i + 2);
        if let Some(href) = href {
            links.push(Link {
                href: decode_references(&href),
                dir: None,
                size: None,
            });
        }
        i = end;
    }
    links
}

/// Reads the attributes of a start tag from `i` (just after the tag name) to its `>`;
/// returns the raw `href` value, if any, and the index after the tag.
fn scan_tag(html: &str, mut i: usize) -> (Option<String>, usize) {
    let b = html.as_bytes();
    let mut href = None;
    loop {
        while b
            .get(i)
            .is_some_and(|c| c.is_ascii_whitespace() || *c == b'/')
        {
            i += 1;
        }
        match b.get(i) {
            None => return (href, b.len()),
            Some(b'>') => return (href, i + 1),
            _ => {}
        }
        let name_start = i;
        while b
            .get(i)
            .is_some_and(|c| !c.is_ascii_whitespace() && !matches!(c, b'=' | b'>' | b'/'))
        {
            i += 1;
        }
        let name = &html[name_start..i];
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            continue; // an attribute without a value
        }
        i += 1;
        while b.get(i).is_some_and(u8::is_ascii_whitespace) {
            i += 1;
        }
        let (value, next) = match b.get(i) {
            Some(q @ (b'"' | b'\'')) => {
                let start = i + 1;
                let end = html[start..]
                    .find(*q as char)
                    .map_or(b.len(), |e| start + e);
                (&html[start..end], (end + 1).min(b.len()))
            }
            _ => {
                let start = i;
                while b
                    .get(i)
                    .is_some_and(|c| !c.is_ascii_whitespace() && *c != b'>')
                {
                    i += 1;
                }
                (&html[start..i], i)
            }
        };
        // The first of duplicate attributes wins (HTML §13.2.5.33).
        if href.is_none() && name.eq_ignore_ascii_case("href") {
            href = Some(value.to_string());
        }
        i = next;
    }
}

/// Decodes `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`/`&#39;` and numeric references;
/// anything else is kept as written.
fn decode_references(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let c = match &rest[1..semi] {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                num => numeric_reference(num),
            }?;
            Some((c, semi + 1))
        });
        match decoded {
            Some((c, len)) => {
                out.push(c);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

fn numeric_reference(s: &str) -> Option<char> {
    let n = s.strip_prefix('#')?;
    let code = match n.strip_prefix(['x', 'X']) {
        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
        None => n.parse().ok()?,
    };
    char::from_u32(code).filter(|c| *c != '\0')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hrefs(html: &str) -> Vec<String> {
        parse_html(html).into_iter().map(|l| l.href).collect()
    }

    #[test]
    fn nginx_autoindex_links_come_out_in_order() {
        let page = "<html>\r\n<head><title>Index of /pub/</title></head>\r\n<body>\r\n\
            <h1>Index of /pub/</h1><hr><pre><a href=\"../\">../</a>\r\n\
            <a href=\"a%20b/\">a b/</a>                                              04-Dec-2026 21:00                   -\r\n\
            <a href=\"%E6%8A%A5%E5%91%8A%20%231.pdf\">\u{62a5}\u{544a} #1.pdf</a>   04-Dec-2026 21:00               70000\r\n\
            </pre><hr></body>\r\n</html>\r\n";
        assert_eq!(
            hrefs(page),
            ["../", "a%20b/", "%E6%8A%A5%E5%91%8A%20%231.pdf"]
        );
    }

    #[test]
    fn apache_sort_links_and_python_list_items_are_plain_links() {
        let apache = "<tr><th><a href=\"?C=N;O=D\">Name</a></th></tr>\
            <tr><td><a href=\"/parent/\">Parent Directory</a></td></tr>\
            <tr><td><a href=\"f.txt\">f.txt</a></td></tr>";
        assert_eq!(hrefs(apache), ["?C=N;O=D", "/parent/", "f.txt"]);
        let python = "<ul>\n<li><a href=\"sub/\">sub/</a></li>\n<li><a href=\"x%26y.txt\">x&amp;y.txt</a></li>\n</ul>";
        assert_eq!(hrefs(python), ["sub/", "x%26y.txt"]);
    }

    #[test]
    fn attribute_syntax_variants_are_read() {
        // HTML §13.2.5.32-38: single, double and unquoted values; case-insensitive names;
        // other attributes before href; whitespace around `=`.
        let page = "<A class=x HREF='one'>1</A><a  data-x=\"y>\" href = two>2</a>\
            <a\nhref=\"three\"\n>3</a><a download href=\"four\">4</a><abbr href=\"no\">";
        assert_eq!(hrefs(page), ["one", "two", "three", "four"]);
    }

    #[test]
    fn links_without_href_and_commented_links_are_skipped() {
        let page = "<a name=\"top\">x</a><!-- <a href=\"hidden\">h</a> --><a href=\"seen\">";
        assert_eq!(hrefs(page), ["seen"]);
    }

    #[test]
    fn character_references_are_decoded_once() {
        let page = "<a href=\"a&amp;b&#x2F;c&#47;d&amp;amp;e&bogus;f&#0;\">";
        assert_eq!(hrefs(page), ["a&b/c/d&amp;e&bogus;f&#0;"]);
    }

    #[test]
    fn truncated_pages_do_not_panic() {
        for page in [
            "<a",
            "<a href",
            "<a href=",
            "<a href=\"x",
            "<!-- <a href=x>",
            "<a href=x",
        ] {
            let _ = parse_html(page);
        }
        assert_eq!(hrefs("<a href=\"x"), ["x"]);
    }

    #[test]
    fn ferryd_json_gives_kind_and_size() {
        let body = br#"[{"name":"d","type":"dir","size":0,"mtime":1,"modified":"x","href":"d/"},
            {"name":"f","type":"file","size":7,"mtime":1,"modified":"x","href":"f","sha256":"ab"},
            {"name":"s","type":"socket","size":0,"href":"s"}]"#;
        let links = parse_json(body).unwrap();
        assert_eq!(links.len(), 2);
        assert_eq!((links[0].dir, links[0].size), (Some(true), None));
        assert_eq!((links[1].href.as_str(), links[1].size), ("f", Some(7)));
        assert!(parse_json(b"{\"not\":\"a list\"}")
            .unwrap_err()
            .contains("expected"));
    }
}
