//! The access log: one line per request, written after the response body ended (finished or
//! dropped), in nginx's `combined` format or as JSON lines.
//!
//! Workers never block on it: an entry goes into a bounded channel (`try_send`; a full channel
//! drops the line and counts it, where nginx would block) and one writer thread formats and
//! writes through a buffer, flushed at least once a second, on [`AccessLogHandle::close`], and
//! before the file is reopened ([`AccessLogHandle::reopen`], on SIGHUP or SIGUSR1, for
//! logrotate's `postrotate`).
//!
//! What is never logged: the `Authorization` header (no field takes headers beyond `Referer`,
//! `User-Agent` and `Range`), URL fragments (cut at `#`, though clients do not send them), and
//! the value of any query parameter whose name looks like a credential (`token`, `key`,
//! `sig`, `password`, `secret`, `auth`, `credential`): it becomes `REDACTED`. ferryd takes
//! tokens only from `Authorization: Bearer`, so such a parameter is a client's mistake that
//! must not end up in a log file readable by more people than the token was meant for.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Lines that may wait for the writer before new ones are dropped.
const QUEUE: usize = 16 * 1024;
const FLUSH_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// nginx's `combined` (`$remote_addr - $remote_user [$time_local] "$request" $status
    /// $body_bytes_sent "$http_referer" "$http_user_agent"`), then ferryd's fields as
    /// `key=value` pairs, which parsers of `combined` ignore as trailing text.
    #[default]
    Combined,
    Json,
}

/// Where lines go: a file (appended, created 0640) or stdout (`-`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Stdout,
    File(PathBuf),
}

impl Target {
    pub fn parse(s: &str) -> Self {
        if s == "-" {
            Target::Stdout
        } else {
            Target::File(PathBuf::from(s))
        }
    }
}

/// One finished request.
#[derive(Debug, Clone)]
pub struct Entry {
    pub time: SystemTime,
    pub remote: String,
    pub method: String,
    /// Path and query, with credentials redacted ([`redact_target`]).
    pub target: String,
    pub version: &'static str,
    pub status: u16,
    /// Response body bytes handed to the connection.
    pub sent: u64,
    /// Upload body bytes stored by this request (tus PATCH, creation-with-upload).
    pub received: u64,
    pub duration: Duration,
    pub referer: Option<String>,
    pub user_agent: Option<String>,
    pub range: Option<String>,
    pub upload_id: Option<String>,
    /// Whether the whole body was handed over (false: the client went away first).
    pub completed: bool,
}

enum Msg {
    Entry(Box<Entry>),
    Reopen,
    Close,
}

/// The sending side, cheap to clone, held by the request pipeline.
#[derive(Clone)]
pub struct AccessLog {
    tx: SyncSender<Msg>,
    dropped: Arc<AtomicU64>,
}

impl AccessLog {
    /// Queues an entry; never blocks. A full queue drops it (counted, warned about).
    pub fn record(&self, entry: Entry) {
        match self.tx.try_send(Msg::Entry(Box::new(entry))) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

/// The owner's side: reopen and close. Closing flushes and waits for the writer.
pub struct AccessLogHandle {
    log: AccessLog,
    thread: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl AccessLogHandle {
    pub fn log(&self) -> AccessLog {
        self.log.clone()
    }

    /// Flushes, then reopens the file by name (after logrotate moved it).
    pub fn reopen(&self) {
        let _ = self.log.tx.send(Msg::Reopen);
    }

    /// Writes everything queued, flushes, and stops the writer.
    pub fn close(&self) {
        let _ = self.log.tx.send(Msg::Close);
        let t = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(t) = t {
            let _ = t.join();
        }
    }
}

impl Drop for AccessLogHandle {
    fn drop(&mut self) {
        self.close();
    }
}

/// Opens the target and starts the writer thread.
pub fn start(target: Target, format: Format) -> io::Result<AccessLogHandle> {
    let out = open(&target)?;
    let (tx, rx) = mpsc::sync_channel(QUEUE);
    let log = AccessLog {
        tx,
        dropped: Arc::new(AtomicU64::new(0)),
    };
    let dropped = log.dropped.clone();
    let thread = std::thread::Builder::new()
        .name("ferryd-access-log".into())
        .spawn(move || write_loop(rx, target, format, out, dropped))?;
    Ok(AccessLogHandle {
        log,
        thread: std::sync::Mutex::new(Some(thread)),
    })
}

fn open(target: &Target) -> io::Result<Box<dyn io::Write + Send>> {
    match target {
        Target::Stdout => Ok(Box::new(io::stdout())),
        Target::File(p) => {
            use std::os::unix::fs::OpenOptionsExt as _;
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(p)?;
            Ok(Box::new(f))
        }
    }
}

fn write_loop(
    rx: mpsc::Receiver<Msg>,
    target: Target,
    format: Format,
    out: Box<dyn io::Write + Send>,
    dropped: Arc<AtomicU64>,
) {
    let mut out = io::BufWriter::with_capacity(64 * 1024, out);
    let mut line = String::with_capacity(512);
    let mut last_flush = std::time::Instant::now();
    let mut reported = 0;
    loop {
        let msg = rx.recv_timeout(FLUSH_EVERY);
        match msg {
            Ok(Msg::Entry(e)) => {
                line.clear();
                format_entry(&e, format, &mut line);
                if let Err(e) = out.write_all(line.as_bytes()) {
                    tracing::warn!(error = %e, "access log write failed");
                }
            }
            Ok(Msg::Reopen) => {
                let _ = out.flush();
                match open(&target) {
                    Ok(f) => out = io::BufWriter::with_capacity(64 * 1024, f),
                    Err(e) => {
                        tracing::warn!(error = %e, "access log reopen failed; keeping the old file")
                    }
                }
            }
            Ok(Msg::Close) | Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {}
        }
        if last_flush.elapsed() >= FLUSH_EVERY {
            let _ = out.flush();
            last_flush = std::time::Instant::now();
            let now = dropped.load(Ordering::Relaxed);
            if now != reported {
                tracing::warn!(
                    dropped = now - reported,
                    "access log fell behind: lines dropped"
                );
                reported = now;
            }
        }
    }
    let _ = out.flush();
}

/// Appends the entry's line (with `\n`) to `out`.
pub fn format_entry(e: &Entry, format: Format, out: &mut String) {
    match format {
        Format::Combined => combined(e, out),
        Format::Json => json(e, out),
    }
    out.push('\n');
}

fn combined(e: &Entry, out: &mut String) {
    let _ = write!(
        out,
        "{} - - [{}] \"{} {} {}\" {} {} \"",
        e.remote,
        clf_time(e.time),
        e.method,
        e.target,
        e.version,
        e.status,
        e.sent
    );
    escape_into(e.referer.as_deref().unwrap_or("-"), out);
    out.push_str("\" \"");
    escape_into(e.user_agent.as_deref().unwrap_or("-"), out);
    let _ = write!(
        out,
        "\" rt={:.3} rx={} range=\"",
        e.duration.as_secs_f64(),
        e.received
    );
    escape_into(e.range.as_deref().unwrap_or("-"), out);
    out.push_str("\" upload=");
    escape_into(e.upload_id.as_deref().unwrap_or("-"), out);
    if !e.completed {
        out.push_str(" aborted");
    }
}

fn json(e: &Entry, out: &mut String) {
    let v = serde_json::json!({
        "time": iso_time(e.time),
        "remote_addr": e.remote,
        "method": e.method,
        "path": e.target,
        "protocol": e.version,
        "status": e.status,
        "bytes_sent": e.sent,
        "bytes_received": e.received,
        "duration_ms": (e.duration.as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0,
        "referer": e.referer,
        "user_agent": e.user_agent,
        "range": e.range,
        "upload_id": e.upload_id,
        "completed": e.completed,
    });
    out.push_str(&v.to_string());
}

/// nginx's escaping for quoted log fields: `"`, `\` and bytes outside printable ASCII become
/// `\xHH`, so a line can never be split or a field closed by a client-chosen string.
pub fn escape_into(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b) {
            let _ = write!(out, "\\x{b:02X}");
        } else {
            out.push(b as char);
        }
    }
}

/// The request target as logged: the fragment cut, credential-like query values redacted,
/// escaped like other fields (a target with a space or quote cannot break the line).
pub fn redact_target(path_and_query: &str) -> String {
    let no_fragment = path_and_query.split('#').next().unwrap_or("");
    let (path, query) = match no_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (no_fragment, None),
    };
    let mut out = String::with_capacity(no_fragment.len());
    escape_into(path, &mut out);
    if let Some(q) = query {
        out.push('?');
        for (i, pair) in q.split('&').enumerate() {
            if i > 0 {
                out.push('&');
            }
            match pair.split_once('=') {
                Some((k, _)) if secret_name(k) => {
                    escape_into(k, &mut out);
                    out.push_str("=REDACTED");
                }
                _ => escape_into(pair, &mut out),
            }
        }
    }
    out
}

fn secret_name(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "token",
        "key",
        "sig",
        "password",
        "passwd",
        "secret",
        "auth",
        "credential",
    ]
    .iter()
    .any(|s| k.contains(s))
}

/// `10/Oct/2000:13:55:36 +0000` (nginx `$time_local`, always UTC here).
fn clf_time(t: SystemTime) -> String {
    let (d, mon, y, hms) = date_parts(t);
    format!("{d}/{mon}/{y}:{hms} +0000")
}

/// `2000-10-10T13:55:36Z`.
fn iso_time(t: SystemTime) -> String {
    let (d, mon, y, hms) = date_parts(t);
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let m = months.iter().position(|&x| x == mon).map_or(0, |i| i + 1);
    format!("{y}-{m:02}-{d}T{hms}Z")
}

/// Day, month name, year and `HH:MM:SS` of `t` in UTC, taken from the IMF-fixdate that
/// httpdate already formats (`Sun, 06 Nov 1994 08:49:37 GMT`) rather than a second calendar.
fn date_parts(t: SystemTime) -> (String, String, String, String) {
    let s = httpdate::fmt_http_date(t);
    let mut it = s.split(' ').skip(1);
    let mut next = || it.next().unwrap_or("").to_string();
    (next(), next(), next(), next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry() -> Entry {
        Entry {
            time: SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777),
            remote: "192.0.2.7".into(),
            method: "GET".into(),
            target: "/a%20b.txt".into(),
            version: "HTTP/1.1",
            status: 206,
            sent: 10,
            received: 0,
            duration: Duration::from_millis(1500),
            referer: None,
            user_agent: Some("curl/8 \"x\"".into()),
            range: Some("bytes=0-9".into()),
            upload_id: None,
            completed: true,
        }
    }

    #[test]
    fn combined_line_is_nginx_combined_then_ferryd_fields() {
        let mut s = String::new();
        format_entry(&entry(), Format::Combined, &mut s);
        assert_eq!(
            s,
            "192.0.2.7 - - [06/Nov/1994:08:49:37 +0000] \"GET /a%20b.txt HTTP/1.1\" 206 10 \"-\" \
             \"curl/8 \\x22x\\x22\" rt=1.500 rx=0 range=\"bytes=0-9\" upload=-\n"
        );
    }

    #[test]
    fn json_line_is_one_object() {
        let mut s = String::new();
        format_entry(&entry(), Format::Json, &mut s);
        assert!(s.ends_with('\n') && s.matches('\n').count() == 1);
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v["time"], "1994-11-06T08:49:37Z");
        assert_eq!(v["status"], 206);
        assert_eq!(v["range"], "bytes=0-9");
        assert_eq!(v["duration_ms"], 1500.0);
    }

    #[test]
    fn credential_query_values_and_fragments_are_not_logged() {
        assert_eq!(
            redact_target("/f?access_token=abc&x=1&Signature=s#frag"),
            "/f?access_token=REDACTED&x=1&Signature=REDACTED"
        );
        assert_eq!(redact_target("/a\"b"), "/a\\x22b");
        assert_eq!(redact_target("/plain"), "/plain");
    }

    #[test]
    fn entries_reach_the_file_and_survive_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("access.log");
        let h = start(Target::File(path.clone()), Format::Combined).unwrap();
        h.log().record(entry());
        // logrotate: move the file away, then ask for a reopen; the first line (still
        // buffered) goes to the moved file, the second to a new one.
        std::fs::rename(&path, dir.path().join("access.log.1")).unwrap();
        h.reopen();
        let mut second = entry();
        second.status = 404;
        h.log().record(second);
        h.close();
        let old = std::fs::read_to_string(dir.path().join("access.log.1")).unwrap();
        let new = std::fs::read_to_string(&path).unwrap();
        assert!(old.contains("\" 206 10 "), "{old}");
        assert!(
            new.contains("\" 404 10 ") && !new.contains(" 206 "),
            "{new}"
        );
    }
}
