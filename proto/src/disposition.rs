//! `Content-Disposition` (RFC 6266) with RFC 8187 extended file names.
//!
//! The header we send is pure ASCII: a `filename="..."` fallback in which every non-ASCII
//! character becomes `_`, plus `filename*=UTF-8''...` whenever the name is not plain ASCII
//! (RFC 6266 §4.3 recommends sending both, the extended form last). Clients read `filename*`
//! first (RFC 6266 §4.3), then `filename`.

use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Whether the client should show the file or save it (RFC 6266 §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    Inline,
    Attachment,
}

/// RFC 8187 §3.2.1 `attr-char` minus ALPHA / DIGIT: everything else is percent-encoded.
const ATTR_CHAR_ESCAPES: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// Builds the header value for `name`. Control characters are dropped from both forms.
pub fn content_disposition(kind: Disposition, name: &str) -> String {
    let kind = match kind {
        Disposition::Inline => "inline",
        Disposition::Attachment => "attachment",
    };
    let clean: String = name.chars().filter(|c| !c.is_control()).collect();
    let mut fallback = String::with_capacity(clean.len());
    for c in clean.chars() {
        match c {
            '"' | '\\' => {
                fallback.push('\\');
                fallback.push(c);
            }
            c if c.is_ascii() => fallback.push(c),
            _ => fallback.push('_'),
        }
    }
    let mut value = format!("{kind}; filename=\"{fallback}\"");
    if !clean.is_ascii() {
        value.push_str("; filename*=UTF-8''");
        value.extend(utf8_percent_encode(&clean, ATTR_CHAR_ESCAPES));
    }
    value
}

/// The file name a `Content-Disposition` value carries: `filename*` first, then `filename`.
/// The result is not sanitized; pass it through [`sanitize_file_name`] before using it as a path.
pub fn parse_filename(value: &str) -> Option<String> {
    let params = parse_params(value);
    let extended = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("filename*"))
        .and_then(|(_, v)| decode_ext_value(v));
    extended.or_else(|| {
        params
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("filename"))
            .map(|(_, v)| v)
    })
}

/// Splits `type; a=b; c="d;e"` into `(name, value)` pairs, unquoting quoted strings.
fn parse_params(value: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = match value.split_once(';') {
        Some((_, r)) => r,
        None => return out,
    };
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        let Some((name, after)) = rest.split_once('=') else {
            return out;
        };
        let name = name.trim().to_string();
        let after = after.trim_start();
        let (val, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            let mut val = String::new();
            let mut chars = quoted.char_indices();
            let mut end = quoted.len();
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, n)) = chars.next() {
                            val.push(n);
                        }
                    }
                    '"' => {
                        end = i + 1;
                        break;
                    }
                    c => val.push(c),
                }
            }
            (val, &quoted[end.min(quoted.len())..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        out.push((name, val));
        rest = remaining;
    }
}

/// RFC 8187 §3.2 `ext-value`: `charset'[language]'pct-encoded`. UTF-8 and ISO-8859-1 are
/// understood (the two RFC 8187 requires).
fn decode_ext_value(v: &str) -> Option<String> {
    let mut parts = v.splitn(3, '\'');
    let charset = parts.next()?;
    let _language = parts.next()?;
    let encoded = parts.next()?;
    let bytes: Vec<u8> = percent_decode_str(encoded).collect();
    if charset.eq_ignore_ascii_case("utf-8") {
        String::from_utf8(bytes).ok()
    } else if charset.eq_ignore_ascii_case("iso-8859-1") {
        Some(bytes.into_iter().map(char::from).collect())
    } else {
        None
    }
}

/// Whether `c` is a bidirectional formatting character (Unicode UAX #9: embeddings and
/// overrides U+202A–U+202E, isolates U+2066–U+2069, the marks U+200E, U+200F and U+061C).
/// In a file name they make `txt.exe` display as `exe.txt` (CVE-2021-42574 style).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Makes an untrusted name safe to use as one path component: keeps the part after the last
/// `/` or `\`, drops control and bidirectional formatting characters, refuses empty, `.` and
/// `..`, and caps the length at 255 bytes on a character boundary. `None` means no usable
/// name.
pub fn sanitize_file_name(name: &str) -> Option<String> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or(name);
    let mut clean: String = last
        .chars()
        .filter(|&c| !c.is_control() && !is_bidi_control(c))
        .collect();
    let trimmed = clean.trim();
    if trimmed.len() != clean.len() {
        clean = trimmed.to_string();
    }
    if clean.is_empty() || clean == "." || clean == ".." {
        return None;
    }
    if clean.len() > 255 {
        let mut cut = 255;
        while !clean.is_char_boundary(cut) {
            cut -= 1;
        }
        clean.truncate(cut);
    }
    Some(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_name_has_only_quoted_form() {
        assert_eq!(
            content_disposition(Disposition::Inline, "report.pdf"),
            "inline; filename=\"report.pdf\""
        );
    }

    #[test]
    fn quotes_and_backslashes_are_escaped() {
        let v = content_disposition(Disposition::Attachment, "a\"b\\c.txt");
        assert_eq!(v, "attachment; filename=\"a\\\"b\\\\c.txt\"");
        assert_eq!(parse_filename(&v).as_deref(), Some("a\"b\\c.txt"));
    }

    #[test]
    fn chinese_name_gets_ascii_fallback_and_rfc8187_form() {
        // RFC 6266 §5 example shape; the header itself must be pure ASCII.
        let v = content_disposition(Disposition::Attachment, "报告 2024.pdf");
        assert!(v.is_ascii(), "{v}");
        assert_eq!(
            v,
            "attachment; filename=\"__ 2024.pdf\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A%202024.pdf"
        );
        assert_eq!(parse_filename(&v).as_deref(), Some("报告 2024.pdf"));
    }

    #[test]
    fn control_characters_are_dropped() {
        let v = content_disposition(Disposition::Inline, "a\r\nb.txt");
        assert_eq!(v, "inline; filename=\"ab.txt\"");
    }

    #[test]
    fn parse_prefers_extended_form_whatever_the_order() {
        let v = "attachment; filename*=UTF-8''%E2%82%AC%20rates.txt; filename=\"EUR rates.txt\"";
        assert_eq!(parse_filename(v).as_deref(), Some("€ rates.txt"));
        assert_eq!(
            parse_filename("attachment; FILENAME=plain.bin").as_deref(),
            Some("plain.bin")
        );
        assert_eq!(
            parse_filename("attachment; filename*=iso-8859-1'en'%A3%20rates").as_deref(),
            Some("£ rates")
        );
        assert_eq!(parse_filename("attachment"), None);
        assert_eq!(
            parse_filename("inline; filename=\"x;y.txt\"; size=3").as_deref(),
            Some("x;y.txt")
        );
    }

    #[test]
    fn sanitize_strips_directories_and_refuses_dot_names() {
        assert_eq!(
            sanitize_file_name("../../etc/passwd").as_deref(),
            Some("passwd")
        );
        assert_eq!(sanitize_file_name("C:\\x\\y.txt").as_deref(), Some("y.txt"));
        assert_eq!(sanitize_file_name(".."), None);
        assert_eq!(sanitize_file_name("a/"), None);
        assert_eq!(sanitize_file_name(" \u{7}"), None);
        assert_eq!(sanitize_file_name("文件.zip").as_deref(), Some("文件.zip"));
        let long = "é".repeat(200);
        let s = sanitize_file_name(&long).unwrap();
        assert!(s.len() <= 255 && s.chars().all(|c| c == 'é'));
    }
}
