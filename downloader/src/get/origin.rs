//! Where a finished file came from (issue 9 §1), so that running the same `ferry get` again is
//! safe. At the end of a download the part file gets its origin, before it takes its final
//! name:
//! - `user.xdg.origin.url`: the URL asked for, without credentials (freedesktop "Common
//!   Extended Attributes", as wget `--xattr` and curl `--xattr` write it);
//! - `user.ferry.validator`: `{"v":1,"length":…,"etag":…,"last_modified":…}` as the server
//!   sent them;
//! - the mtime set to `Last-Modified` (wget's default, curl `-R`).
//!
//! A later run compares the existing file with a fresh probe ([`compare`]): the same file is
//! done (exit 0), a changed one is named with what changed. Without attributes (file systems
//! without user xattrs, or a file that ferry did not write) the proof falls back to the length
//! and the mtime against `Last-Modified` (what `wget -N` compares); with no `Last-Modified`
//! there is no proof, and the file counts as different.

use std::fs::File;
use std::io;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::probe::Probe;
use super::xattr;

pub const ORIGIN_URL: &str = "user.xdg.origin.url";
pub const FERRY_KEY: &str = "user.ferry.validator";
const KEY_VERSION: u32 = 1;

/// What identified the remote file when it was downloaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Key {
    pub v: u32,
    pub length: Option<u64>,
    /// Any ETag the server sent, weak ones included (they still reveal a change).
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

impl Key {
    pub fn of(probe: &Probe) -> Self {
        Self {
            v: KEY_VERSION,
            length: probe.length,
            etag: probe.validator.any_etag.clone(),
            last_modified: probe.validator.last_modified.clone(),
        }
    }
}

/// An existing local file, as far as ferry can tell.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Local {
    /// From `user.xdg.origin.url`.
    pub url: Option<String>,
    /// From `user.ferry.validator` (only a version this code knows).
    pub key: Option<Key>,
    pub length: u64,
    /// Whole seconds since the epoch.
    pub mtime: Option<u64>,
}

/// Whether an existing file is the remote file of a fresh probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The same file; the text says what proved it.
    Current(String),
    /// Not (or not provably) the same; the text says what differs.
    Differs(String),
}

/// The URL as recorded: without user name, password and fragment.
pub fn recorded_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => url.to_string(),
    }
}

/// Compares an existing file with the remote file of `url` as `probe` sees it (pure).
pub fn compare(local: &Local, url: &str, probe: &Probe) -> Verdict {
    let remote = Key::of(probe);
    let lm_secs = |lm: &Option<String>| {
        lm.as_deref()
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    let Some(key) = &local.key else {
        return compare_without_record(local, &remote, lm_secs(&remote.last_modified));
    };
    let mut changed = Vec::new();
    let mut note = |what: &str, was: &Option<String>, now: &Option<String>| {
        if was != now {
            changed.push(format!("{what} {} -> {}", show(was), show(now)));
        }
    };
    note("ETag", &key.etag, &remote.etag);
    note("Last-Modified", &key.last_modified, &remote.last_modified);
    note(
        "length",
        &key.length.map(|l| l.to_string()),
        &remote.length.map(|l| l.to_string()),
    );
    if !changed.is_empty() {
        return Verdict::Differs(format!(
            "the remote file changed since it was downloaded ({})",
            changed.join(", ")
        ));
    }
    if key.length != Some(local.length)
        || lm_secs(&key.last_modified).is_some_and(|t| local.mtime != Some(t))
    {
        return Verdict::Differs("the local file was changed since it was downloaded".into());
    }
    let same_url = local.url.as_deref() == Some(recorded_url(url).as_str());
    let strong = probe.validator.etag.is_some();
    match (same_url, &local.url) {
        (true, _) => Verdict::Current("same URL, same ETag, Last-Modified and length".into()),
        // Another URL (a mirror, a re-signed URL): only a strong ETag proves the same content.
        (false, _) if strong => Verdict::Current("same strong ETag and length".into()),
        (false, Some(from)) => Verdict::Differs(format!(
            "it was downloaded from {from}, and the server gives no strong ETag to compare"
        )),
        (false, None) => Verdict::Differs("its origin URL is not recorded".into()),
    }
}

fn compare_without_record(local: &Local, remote: &Key, remote_lm: Option<u64>) -> Verdict {
    let Some(length) = remote.length else {
        return Verdict::Differs(
            "the server gives no length, so the local file cannot be compared".into(),
        );
    };
    if local.length != length {
        return Verdict::Differs(format!(
            "the local file has {} bytes, the remote file {length}",
            local.length
        ));
    }
    match remote_lm {
        Some(t) if local.mtime != Some(t) => Verdict::Differs(format!(
            "the local file's mtime is not the remote Last-Modified ({})",
            show(&remote.last_modified)
        )),
        Some(_) => Verdict::Current("same length, mtime = Last-Modified".into()),
        // Unlike `wget -c`, the length alone is no proof: a wrong file of the right size
        // would be called complete.
        None => Verdict::Differs(
            "it has no recorded origin and the server sends no Last-Modified, so it cannot be \
             proven to be the remote file"
                .into(),
        ),
    }
}

fn show(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("none")
}

/// Records the origin on the finished part file: mtime, attributes, then fsync. A file system
/// without user attributes keeps only the mtime (logged at debug level).
pub fn record(file: &File, url: &str, probe: &Probe) -> io::Result<()> {
    let modified = probe
        .validator
        .last_modified
        .as_deref()
        .and_then(|v| httpdate::parse_http_date(v).ok());
    if let Some(t) = modified {
        file.set_modified(t)?;
    }
    let key = serde_json::to_vec(&Key::of(probe)).map_err(io::Error::other)?;
    let attrs = xattr::set(file, ORIGIN_URL, recorded_url(url).as_bytes())
        .and_then(|()| xattr::set(file, FERRY_KEY, &key));
    match attrs {
        Err(e) if xattr::unsupported(&e) => {
            tracing::debug!("no extended attributes here ({e}); a re-run compares length and mtime")
        }
        Err(e) => tracing::warn!("cannot record the file's origin in extended attributes: {e}"),
        Ok(()) => {}
    }
    file.sync_all()
}

/// Reads what is known about `path`; `None` when it does not exist.
pub fn inspect(path: &Path) -> io::Result<Option<Local>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    let attr = |name| match xattr::get(&file, name) {
        Ok(v) => v,
        Err(e) => {
            tracing::debug!("cannot read {name}: {e}");
            None
        }
    };
    let url = attr(ORIGIN_URL).and_then(|v| String::from_utf8(v).ok());
    let key = attr(FERRY_KEY)
        .and_then(|v| serde_json::from_slice::<Key>(&v).ok())
        .filter(|k| k.v == KEY_VERSION);
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t: SystemTime| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs());
    Ok(Some(Local {
        url,
        key,
        length: meta.len(),
        mtime,
    }))
}

#[cfg(test)]
#[path = "origin_tests.rs"]
mod tests;
