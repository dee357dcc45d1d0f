//! Issue 9 §1: running the same `ferry get` again is safe. A finished file is recognised by
//! its recorded origin (xattrs) or by length + mtime, and is done (exit 0); a changed remote
//! file is named and exits 1; `--update` fetches the new version into the part file and
//! replaces the old one only once complete.

use std::fs;
use std::path::Path;
use std::process::Output;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry::get::origin::{self, Key};
use ferry::get::output::Target;

use crate::support::*;

const LM: &str = "Sun, 06 Nov 1994 08:49:37 GMT";
const LM_SECS: u64 = 784_111_777;

async fn ferry(url: &str, dir: &Path, extra: &[&str]) -> Output {
    let mut args: Vec<String> = ["get", "-d"].map(String::from).to_vec();
    args.push(dir.to_str().unwrap().into());
    args.extend(
        [
            "-o",
            "f.bin",
            "-x",
            "2",
            "--retry-wait",
            "20ms",
            "--timeout",
            "5s",
        ]
        .map(String::from),
    );
    args.extend(extra.iter().map(|s| s.to_string()));
    args.push(url.into());
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(&args)
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn gets(server: &Server) -> usize {
    server
        .requests()
        .iter()
        .filter(|r| r.method == http::Method::GET)
        .count()
}

fn mtime_secs(p: &Path) -> u64 {
    let t = fs::metadata(p).unwrap().modified().unwrap();
    t.duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rerun_after_finish_is_done_records_origin_and_removes_leftovers() {
    let data = random_bytes(300_000, 60);
    let server = Server::start(data.clone()).await;
    *server.last_modified.lock().unwrap() = Some(LM.into());
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/f.bin").replace("http://", "http://me:pw@");
    let first = ferry(&url, dir.path(), &[]).await;
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    let t = Target::for_path(dir.path().join("f.bin"));
    assert_eq!(mtime_secs(&t.path), LM_SECS, "mtime = Last-Modified");
    let local = origin::inspect(&t.path).unwrap().unwrap();
    assert_eq!(
        local.url.as_deref(),
        Some(server.url("/f.bin").as_str()),
        "origin URL recorded without credentials"
    );
    let key = local.key.expect("user.ferry.validator");
    assert_eq!(
        (
            key.etag.as_deref(),
            key.last_modified.as_deref(),
            key.length
        ),
        (Some("\"v1\""), Some(LM), Some(data.len() as u64))
    );
    // A kill right after the rename leaves the journal (and maybe the part file) behind.
    fs::write(&t.journal, b"stale").unwrap();
    fs::write(&t.part, b"stale").unwrap();
    let before = gets(&server);
    let again = ferry(&url, dir.path(), &[]).await;
    assert_eq!(again.status.code(), Some(0), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("already complete"),
        "{}",
        stderr(&again)
    );
    assert_eq!(gets(&server), before, "nothing downloaded again");
    assert!(!t.journal.exists() && !t.part.exists(), "leftovers removed");
    assert_eq!(fs::read(&t.path).unwrap(), data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changed_remote_exits_1_and_update_replaces_only_when_complete() {
    let old = random_bytes(400_000, 61);
    let server = Server::start(old.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let url = server.url("/f.bin");
    assert_eq!(
        ferry(&url, dir.path(), &["-q"]).await.status.code(),
        Some(0)
    );
    let t = Target::for_path(dir.path().join("f.bin"));
    let new = random_bytes(500_000, 62);
    server.set_data(new.clone(), "\"v2\"");
    let changed = ferry(&url, dir.path(), &[]).await;
    let err = stderr(&changed);
    assert_eq!(changed.status.code(), Some(1), "{err}");
    assert!(err.contains("ETag \"v1\" -> \"v2\""), "{err}");
    assert!(err.contains("length 400000 -> 500000"), "{err}");
    assert!(err.contains("--update"), "{err}");
    assert_eq!(
        fs::read(&t.path).unwrap(),
        old,
        "untouched without --update"
    );
    // --update, cut off mid-way: the old file stays whole, the new bytes wait in the part.
    server.drop_after.store(100_000, SeqCst);
    server.drops_left.store(100, SeqCst);
    let cut = ferry(&url, dir.path(), &["--update", "--max-tries", "1"]).await;
    assert_eq!(cut.status.code(), Some(1), "{}", stderr(&cut));
    assert_eq!(
        fs::read(&t.path).unwrap(),
        old,
        "replaced only when complete"
    );
    assert!(t.journal.exists(), "the new version resumes");
    server.drops_left.store(0, SeqCst);
    let done = ferry(&url, dir.path(), &["--update"]).await;
    assert_eq!(done.status.code(), Some(0), "{}", stderr(&done));
    assert!(stderr(&done).contains("resuming"), "{}", stderr(&done));
    assert_eq!(fs::read(&t.path).unwrap(), new);
    let key = origin::inspect(&t.path).unwrap().unwrap().key;
    assert_eq!(key.and_then(|k: Key| k.etag).as_deref(), Some("\"v2\""));
    // And now it is current again.
    let again = ferry(&url, dir.path(), &["--update"]).await;
    assert_eq!(again.status.code(), Some(0));
    assert!(
        stderr(&again).contains("already complete"),
        "{}",
        stderr(&again)
    );
}

/// A file ferry did not write (no attributes, as on file systems without user xattrs): the
/// length and the mtime against `Last-Modified` decide, as `wget -N` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_attributes_length_and_mtime_decide() {
    let data = random_bytes(200_000, 63);
    let server = Server::start(data.clone()).await;
    *server.last_modified.lock().unwrap() = Some(LM.into());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.bin");
    fs::write(&path, &data).unwrap();
    let set_mtime = |secs: u64| {
        let f = fs::File::options().write(true).open(&path).unwrap();
        f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
            .unwrap();
    };
    set_mtime(LM_SECS + 3600);
    let url = server.url("/f.bin");
    let out = ferry(&url, dir.path(), &[]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("mtime"), "{}", stderr(&out));
    set_mtime(LM_SECS);
    let out = ferry(&url, dir.path(), &[]).await;
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("mtime = Last-Modified"),
        "{}",
        stderr(&out)
    );
    assert_eq!(gets(&server), 0, "nothing downloaded");
}
