//! Third-party tools for the tests: [`tool`] finds one (failing in CI, never skipping) and
//! [`TinyProxy`] runs Debian's tinyproxy, a forward and CONNECT proxy, on loopback.
//!
//! Self-contained (std and tempfile only) so that the `ferry` crate's own test binaries
//! (`get`, `put`), which cannot depend on this crate, include this file with `#[path]` and
//! discover tools exactly as the e2e suite does.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The path of a third-party tool. In CI (`CI=true` or `FERRY_REQUIRE_TOOLS`) a missing tool
/// is a failure, never a silent skip: `scripts/test` installs them. Elsewhere the caller gets
/// `None` and the test says it skipped.
pub fn tool(name: &str) -> Option<PathBuf> {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {name}"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| PathBuf::from(String::from_utf8_lossy(&o.stdout).trim().to_string()));
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true")
            || std::env::var("FERRY_REQUIRE_TOOLS").is_ok()
        {
            panic!("{name} is required for this test but is not installed; run scripts/test");
        }
        eprintln!("SKIPPED: {name} not installed (scripts/test installs it)");
    }
    found
}

/// tinyproxy in the foreground as the current user, its config and log in a temp dir,
/// accepting only 127.0.0.1, CONNECT allowed to every port (no `ConnectPort` line). Killed
/// on drop.
///
/// tinyproxy refuses `Port 0` and cannot take a listening socket from its parent, so the port
/// is one the kernel just handed out for `127.0.0.1:0`; if something else takes it before
/// tinyproxy binds, tinyproxy exits and the next free port is tried.
pub struct TinyProxy {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl TinyProxy {
    /// `None` (test skipped) when tinyproxy is not installed, outside CI.
    pub fn start() -> Option<Self> {
        let bin = tool("tinyproxy")?;
        let mut last = String::new();
        for _ in 0..10 {
            match Self::spawn(&bin) {
                Ok(proxy) => return Some(proxy),
                Err(why) => last = why,
            }
        }
        panic!("tinyproxy did not start: {last}");
    }

    fn spawn(bin: &Path) -> Result<Self, String> {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let log = dir.path().join("tinyproxy.log");
        let conf = dir.path().join("tinyproxy.conf");
        let text = format!(
            "Port {port}\nListen 127.0.0.1\nTimeout 60\nMaxClients 200\nAllow 127.0.0.1\n\
             LogFile \"{}\"\nLogLevel Info\n",
            log.display()
        );
        std::fs::write(&conf, text).expect("write tinyproxy.conf");
        let mut child = Command::new(bin)
            .arg("-d")
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tinyproxy");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = child.try_wait().expect("tinyproxy status") {
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!(
                    "exited with {status} on port {port}: {}",
                    err.trim()
                ));
            }
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if text.contains("Accepting connections") {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no \"Accepting connections\" in 10 s:\n{text}"));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            _dir: dir,
        })
    }

    /// The request line of every request tinyproxy carried so far, from its log, e.g.
    /// `GET http://127.0.0.1:4321/f.bin HTTP/1.1` or `CONNECT 127.0.0.1:4321 HTTP/1.1`.
    pub fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split_once("]: Request (file descriptor "))
            .filter_map(|(_, rest)| rest.split_once("): "))
            .map(|(_, line)| line.to_string())
            .collect()
    }
}

impl Drop for TinyProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
