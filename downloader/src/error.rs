//! The crate's one error type. `is_retryable()` tells a worker whether another attempt on a
//! fresh connection may succeed; `is_usage()` maps to exit code 2.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use crate::get::journal::JournalError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Usage(String),
    #[error("{url}: {}", describe_network(source))]
    Network { url: String, source: reqwest::Error },
    #[error("{url}: no bytes received for {secs} s, dropping the connection", secs = .after.as_secs())]
    Stalled { url: String, after: Duration },
    #[error("{url}: server answered {}", describe_status(*.status))]
    Status {
        url: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    /// tus core: a PATCH at another offset than the server's (409), with the offset the
    /// server holds (`Upload-Offset`, as ferryd sends it). A 409 without it (tusd's) is a
    /// plain [`Error::Status`], and the client asks with a HEAD instead.
    #[error("{url}: server answered 409 Conflict; it holds {offset} bytes")]
    Conflict { url: String, offset: u64 },
    #[error("{url}: {msg}")]
    Protocol { url: String, msg: String },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: disk full; the journal is kept, free some space and run the same command again", path.display())]
    DiskFull { path: PathBuf },
    #[error("{} already exists; use --overwrite to replace it", path.display())]
    Exists { path: PathBuf },
    #[error("{} exists and is not the remote file: {why}; --update downloads the new version and replaces it, --overwrite replaces it whatever it is", path.display())]
    Differs { path: PathBuf, why: String },
    #[error("{} is already being downloaded from another URL of this run", path.display())]
    InUse { path: PathBuf },
    #[error("{}: {source}; --restart discards it and starts from zero", path.display())]
    Journal { path: PathBuf, source: JournalError },
    #[error("{algo} mismatch: expected {expected}, got {seen}")]
    Checksum {
        algo: String,
        expected: String,
        seen: String,
    },
    #[error("interrupted; run the same command again to resume")]
    Interrupted,
    #[error("{failed} of {total} downloads failed")]
    Some { failed: usize, total: usize },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A TLS failure in words with the way out (see [`crate::tls`]); otherwise reqwest's text
/// followed by the innermost cause ("connection refused"), which reqwest leaves out.
fn describe_network(source: &reqwest::Error) -> String {
    if let Some(tls) = crate::tls::describe(source) {
        return tls;
    }
    let mut root: &(dyn std::error::Error + 'static) = source;
    while let Some(next) = root.source() {
        root = next;
    }
    let (outer, inner) = (source.to_string(), root.to_string());
    if std::ptr::addr_eq(root, source) || outer.contains(&inner) {
        outer
    } else {
        format!("{outer}: {inner}")
    }
}

/// `404 Not Found`, with a hint where the user can do something about it.
fn describe_status(status: u16) -> String {
    let mut out = status.to_string();
    if let Some(reason) = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
    {
        out.push(' ');
        out.push_str(reason);
    }
    out.push_str(match status {
        401 => " (credentials needed: --user USER[:PASSWORD], user:password@ in the URL, ~/.netrc or --netrc-file FILE, or --token)",
        403 => " (the credentials were refused)",
        _ => "",
    });
    out
}

impl Error {
    /// An I/O error on `path`, with ENOSPC/EDQUOT turned into the clear disk-full message.
    pub fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        let path = path.into();
        if matches!(source.raw_os_error(), Some(28) | Some(122)) {
            return Error::DiskFull { path };
        }
        Error::Io { path, source }
    }

    /// Whether another attempt on a fresh connection may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            // A certificate that does not verify (or any TLS failure) is not transient.
            Error::Network { source, .. } => crate::tls::rustls_error(source).is_none(),
            Error::Stalled { .. } | Error::Protocol { .. } => true,
            Error::Status { status, .. } => *status == 408 || *status == 429 || *status >= 500,
            _ => false,
        }
    }

    /// The server's `Retry-After`, when it sent one with an error status.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Status { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The server's doing (not the disk's, the user's or a signal): another server of the
    /// same file may do better.
    pub fn is_remote(&self) -> bool {
        matches!(
            self,
            Error::Network { .. }
                | Error::Stalled { .. }
                | Error::Status { .. }
                | Error::Protocol { .. }
        )
    }

    pub fn is_usage(&self) -> bool {
        matches!(self, Error::Usage(_))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn statuses_are_named_and_auth_failures_say_what_to_do() {
        assert_eq!(super::describe_status(404), "404 Not Found");
        assert!(
            super::describe_status(401).starts_with("401 Unauthorized (credentials needed: --user")
        );
        assert_eq!(super::describe_status(599), "599");
    }

    use super::*;

    #[test]
    fn enospc_and_edquot_are_disk_full_and_not_retryable() {
        for code in [28, 122] {
            let e = Error::io("/x/y.part", io::Error::from_raw_os_error(code));
            assert!(matches!(e, Error::DiskFull { .. }), "{e:?}");
            assert!(e.to_string().contains("journal is kept"));
            assert!(!e.is_retryable());
        }
        assert!(matches!(
            Error::io("/x", io::Error::from_raw_os_error(13)),
            Error::Io { .. }
        ));
    }
}
