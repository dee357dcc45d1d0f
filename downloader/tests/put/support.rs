//! Helpers for the `ferry put` tests: files, running an upload in-process or through the real
//! binary, and @tus/server under node.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use ferry::progress::{Mode, Ui};
use ferry::put::args::{PutArgs, PutPlan};
use ferry::put::fingerprint::Store;
use ferry::put::Uploader;

/// Deterministic pseudo-random bytes (xorshift), so failures reproduce.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A temp dir holding the file to upload and the resume store.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub file: PathBuf,
    pub data: Vec<u8>,
}

impl Scratch {
    pub fn new(len: usize, seed: u64) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = pattern(len, seed);
        let file = dir.path().join("upload.bin");
        std::fs::write(&file, &data).unwrap();
        Self { dir, file, data }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Resume entries of uploads that have not finished (a finished one keeps its entry,
    /// with `done`, so that a re-run skips it).
    pub fn unfinished_entries(&self) -> usize {
        let Ok(dir) = std::fs::read_dir(self.data_dir().join("uploads")) else {
            return 0;
        };
        dir.flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with(".json"))
            .filter(|e| {
                let text = std::fs::read_to_string(e.path()).unwrap_or_default();
                let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
                v.get("done").is_none()
            })
            .count()
    }

    /// Resume entries (`*.json`; lock files are not entries).
    pub fn entries(&self) -> usize {
        let dir = std::fs::read_dir(self.data_dir().join("uploads"));
        let json = |e: &std::fs::DirEntry| e.file_name().to_string_lossy().ends_with(".json");
        dir.map(|d| d.flatten().filter(json).count()).unwrap_or(0)
    }

    /// `ferry put FLAGS FILE ENDPOINT` in-process with quick retries (unless FLAGS set
    /// `--retry-wait`); returns the location.
    pub async fn put(&self, endpoint: &str, flags: &[&str]) -> ferry::Result<String> {
        let file = self.file.to_str().unwrap();
        let mut argv = vec!["put", "--timeout", "5s"];
        if !flags.contains(&"--retry-wait") {
            argv.extend(["--retry-wait", "20ms"]);
        }
        argv.extend_from_slice(flags);
        argv.extend([file, endpoint]);
        let args = Wrap::try_parse_from(argv).expect("valid flags").put;
        let mut plan = PutPlan::from_args(args)?;
        plan.options.store = Some(Store::open(&self.data_dir()).unwrap());
        let uploader = Uploader::connect(plan.tus, plan.options).await?;
        uploader
            .put(&self.file, &Ui::with_mode(Mode::Quiet, false))
            .await
    }

    /// The real `ferry` binary with this scratch's data directory.
    pub fn command(&self, endpoint: &str, flags: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("put")
            .args(["--retry-wait", "20ms"])
            .args(flags)
            .arg(&self.file)
            .arg(endpoint);
        cmd.env("FERRY_DATA_DIR", self.data_dir())
            .env_remove("FERRY_TOKEN");
        cmd
    }
}

#[derive(Parser)]
struct Wrap {
    #[command(flatten)]
    put: PutArgs,
}

/// @tus/server + @tus/file-store under node (tests/interop/tus-node-server.mjs).
pub struct NodeTus {
    child: Child,
    pub endpoint: String,
    pub store: tempfile::TempDir,
    port: u16,
}

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/interop")
}

impl NodeTus {
    /// `None` (test skipped) when node or `npm install` in tests/interop is missing; in CI
    /// (`CI=true` or `FERRY_REQUIRE_TOOLS`) that is a failure instead.
    pub fn start() -> Option<Self> {
        let ready = interop_dir().join("node_modules/@tus/server").exists()
            && Command::new("node")
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success());
        if !ready {
            let required = std::env::var("CI").is_ok_and(|v| v == "true")
                || std::env::var("FERRY_REQUIRE_TOOLS").is_ok();
            assert!(
                !required,
                "node and tests/interop/node_modules are required; run scripts/test"
            );
            eprintln!("SKIPPED: node or tests/interop/node_modules missing (cd tests/interop && npm install)");
            return None;
        }
        let store = tempfile::tempdir().unwrap();
        Some(Self::spawn(store, 0))
    }

    fn spawn(store: tempfile::TempDir, port: u16) -> Self {
        let mut child = Command::new("node")
            .arg(interop_dir().join("tus-node-server.mjs"))
            .arg(store.path())
            .arg(port.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start node");
        let mut line = String::new();
        use std::io::BufRead as _;
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let endpoint = line.trim().to_string();
        assert!(
            endpoint.starts_with("http://127.0.0.1:"),
            "node printed {line:?}"
        );
        let port = endpoint
            .split(':')
            .nth(2)
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .unwrap();
        Self {
            child,
            endpoint,
            store,
            port,
        }
    }

    /// SIGKILLs node and starts it again on the same port with the same store.
    pub fn restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (store, port) = (
            std::mem::replace(&mut self.store, tempfile::tempdir().unwrap()),
            self.port,
        );
        Self::spawn(store, port)
    }

    /// The stored bytes of the upload at `location`.
    pub fn content(&self, location: &str) -> Vec<u8> {
        let id = location.trim().rsplit('/').next().unwrap();
        std::fs::read(self.store.path().join(id)).unwrap()
    }
}

impl Drop for NodeTus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Polls `cond` every 5 ms for up to 10 s.
/// The location a finished `ferry put` printed; fails the test, showing stderr, unless the run
/// exited 0.
pub fn succeeded(out: &std::process::Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8 location")
}

pub async fn wait_for(mut cond: impl FnMut() -> bool) {
    for _ in 0..2000 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("condition not reached in 10 s");
}
