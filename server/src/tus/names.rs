//! Where a finished upload may be published: hygiene of the `dir` and `filename` metadata
//! (pure; ferry extension). A bad `dir` is refused at creation with 400, so an upload never
//! starts that could not be published.
//!
//! Rules, for both: no control characters and no bidirectional formatting characters
//! (U+202A–U+202E, U+2066–U+2069, U+200E/U+200F, U+061C: a name like `txt.exe` shown as
//! `exe.txt`). A `filename` is cleaned (such characters dropped, see
//! [`sanitize_file_name`]); a `dir` is refused, since a client naming a directory means that
//! exact directory. Each `dir` component is at most [`MAX_NAME`] bytes, and the whole `dir`
//! leaves room for a file name within `PATH_MAX` (4096 bytes).
//!
//! Windows device names (`CON`, `PRN`, `AUX`, `NUL`, `COM1`–`COM9`, `LPT1`–`LPT9`, with any
//! extension, any case): harmless on the POSIX file systems ferryd writes to, but a tree
//! served to Windows clients (or copied there) must not hold them. A `filename` that is one
//! gets a `_` prefix (as a leading `.` does); a `dir` component that is one is refused.

use ferry_proto::disposition::{is_bidi_control, sanitize_file_name};

use crate::error::{Error, Result};
use crate::path::RelPath;
use crate::store::upload::MAX_NAME;

/// Longest `dir` (bytes): `PATH_MAX` less a separator, a [`MAX_NAME`] file name and the NUL.
pub const MAX_DIR: usize = 4096 - 1 - MAX_NAME - 1;

/// Whether `name` is a Windows device name, with or without an extension (`nul.txt`).
pub fn is_windows_reserved(name: &str) -> bool {
    let stem = name.split('.').next().unwrap_or(name).trim_end();
    let upper = stem.to_ascii_uppercase();
    match upper.as_str() {
        "CON" | "PRN" | "AUX" | "NUL" => true,
        _ => match upper.as_bytes() {
            [b'C', b'O', b'M', d] | [b'L', b'P', b'T', d] => (b'1'..=b'9').contains(d),
            _ => false,
        },
    }
}

/// Validates the `dir` metadata into the publish directory (400 with the reason otherwise).
pub fn publish_dir(raw: &str) -> Result<RelPath> {
    let bad = |why: String| Error::bad_request(format!("expected a usable dir, got {why}"));
    if raw.len() > MAX_DIR {
        return Err(bad(format!("{} bytes (at most {MAX_DIR})", raw.len())));
    }
    if let Some(c) = raw.chars().find(|&c| c.is_control() || is_bidi_control(c)) {
        return Err(bad(format!("the character U+{:04X}", c as u32)));
    }
    let p = RelPath::from_segments(raw.split('/'))?;
    if p.is_hidden() {
        return Err(bad(format!("a hidden directory {raw:?}")));
    }
    for seg in p.segments() {
        if seg.len() > MAX_NAME {
            return Err(bad(format!(
                "a component of {} bytes (at most {MAX_NAME})",
                seg.len()
            )));
        }
        if is_windows_reserved(seg) {
            return Err(bad(format!("the reserved device name {seg:?}")));
        }
    }
    Ok(p)
}

/// The published file name from the `filename` metadata: sanitized to one component, and
/// neither hidden nor a Windows device name (both get a `_` prefix). `None`: no usable name.
pub fn publish_name(raw: &str) -> Option<String> {
    let n = sanitize_file_name(raw)?;
    Some(match n.strip_prefix('.') {
        Some(rest) => format!("_{rest}"),
        None if is_windows_reserved(&n) => {
            let mut v = format!("_{n}");
            if v.len() > MAX_NAME {
                v = sanitize_file_name(&v)?; // cut back on a character boundary
            }
            v
        }
        None => n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn windows_device_names_with_any_extension_or_case() {
        for n in [
            "CON",
            "con",
            "Nul.txt",
            "aux.tar.gz",
            "COM1",
            "lpt9.log",
            "PRN ",
        ] {
            assert!(is_windows_reserved(n), "{n}");
        }
        for n in [
            "CONSOLE", "COM0", "COM10", "LPT", "xnul", "nul_", "a.con", "",
        ] {
            assert!(!is_windows_reserved(n), "{n}");
        }
    }

    #[test]
    fn dir_refuses_long_components_long_paths_controls_bidi_and_devices() {
        let long = "a".repeat(256);
        let deep = vec!["d".repeat(200); 20].join("/"); // 4019 bytes
        for bad in [
            long.as_str(),
            &format!("ok/{long}"),
            deep.as_str(),
            "a\u{1}b",
            "tab\there",
            "x/\u{7f}",
            "x/\u{85}",
            "evil\u{202E}txt.exe",
            "a\u{2066}b",
            "a\u{200F}",
            "CON",
            "docs/nul.txt",
            ".ferry",
            "../x",
        ] {
            let e = publish_dir(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::BAD_REQUEST, "{bad:?}");
        }
        let fits = "n".repeat(255);
        assert_eq!(publish_dir(&fits).unwrap().as_str(), fits);
        assert_eq!(publish_dir("a/b c/报告").unwrap().as_str(), "a/b c/报告");
        let most = vec!["d".repeat(99); 38].join("/"); // 3799 bytes
        assert!(publish_dir(&most).is_ok());
    }

    #[test]
    fn names_drop_bidi_controls_and_defuse_devices() {
        assert_eq!(publish_name("evil\u{202E}txt.exe").unwrap(), "eviltxt.exe");
        assert_eq!(publish_name("a\u{1}b.txt").unwrap(), "ab.txt");
        assert_eq!(publish_name("NUL.txt").unwrap(), "_NUL.txt");
        assert_eq!(publish_name("con").unwrap(), "_con");
        assert_eq!(publish_name(".env").unwrap(), "_env");
        assert_eq!(publish_name("\u{202E}").as_deref(), None);
        let long = format!("CON{}", "x".repeat(252)); // not a device name: stem is longer
        assert_eq!(publish_name(&long).unwrap(), long);
        let dev = format!("con.{}", "x".repeat(251)); // 255 bytes, a device name
        assert!(publish_name(&dev).unwrap().len() <= MAX_NAME);
    }
}
