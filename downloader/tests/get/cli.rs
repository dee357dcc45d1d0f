//! The `ferry` binary: exit codes, `-i`/`-j`, and the server's `Repr-Digest`.

use std::fs;
use std::process::Command;

use base64::Engine;
use sha2::Digest;

use crate::support::*;

fn ferry(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn usage_errors_exit_2_with_a_plain_message() {
    for args in [
        &["get", "-x", "100", "http://127.0.0.1:1/"][..],
        &["get", "-k", "4Q", "http://127.0.0.1:1/"],
        &["get", "--checksum", "sha256=xyz", "http://127.0.0.1:1/"],
        &["get"],
        &[
            "get",
            "-o",
            "one",
            "http://127.0.0.1:1/a",
            "http://127.0.0.1:1/b",
        ],
        &["get", "ftp://127.0.0.1/x"],
    ] {
        let out = ferry(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_file_downloads_several_at_once_and_failures_exit_1() {
    let a = random_bytes(300_000, 40);
    let server = Server::start(a.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("urls.txt");
    fs::write(
        &list,
        format!(
            "# two names for one file\n{}\n\n{}\n",
            server.url("/a.bin"),
            server.url("/b.bin")
        ),
    )
    .unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let l = list.to_str().unwrap().to_string();
    let out =
        tokio::task::spawn_blocking(move || ferry(&["get", "-q", "-i", &l, "-j", "2", "-d", &d]))
            .await
            .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(fs::read(dir.path().join("a.bin")).unwrap(), a);
    assert_eq!(fs::read(dir.path().join("b.bin")).unwrap(), a);
    // Run again: both files are complete already (issue 9 §1), so nothing fails.
    let d = dir.path().to_str().unwrap().to_string();
    let l = list.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || ferry(&["get", "-i", &l, "-d", &d]))
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(err.matches("already complete").count(), 2, "{err}");
    // One of them is not the remote file: that one fails, the other is still done.
    fs::write(dir.path().join("b.bin"), b"something else").unwrap();
    let d = dir.path().to_str().unwrap().to_string();
    let l = list.to_str().unwrap().to_string();
    let out = tokio::task::spawn_blocking(move || ferry(&["get", "-q", "-i", &l, "-d", &d]))
        .await
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--update"));
}

/// RFC 9530: a `Repr-Digest` from the server is checked before the file gets its name.
#[tokio::test]
async fn repr_digest_is_verified() {
    let data = random_bytes(200_000, 41);
    let server = Server::start(data.clone()).await;
    let b64 = |d: &[u8]| base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(d));
    *server.repr_digest.lock().unwrap() = Some(format!("sha-256=:{}:", b64(b"something else")));
    let dir = tempfile::tempdir().unwrap();
    let err = download(&server.url("/d"), &fast_options(dir.path(), "d"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("Repr-Digest"), "{err}");
    assert!(!dir.path().join("d").exists());
    *server.repr_digest.lock().unwrap() = Some(format!("sha-256=:{}:", b64(&data)));
    let dir = tempfile::tempdir().unwrap();
    download(&server.url("/d"), &fast_options(dir.path(), "d"))
        .await
        .unwrap();
}

/// Two URLs of one run that resolve to the same file name must not share a part file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_name_twice_in_one_run_is_refused_not_mixed() {
    let data = random_bytes(2 << 20, 42);
    let server = Server::start(data.clone()).await;
    server
        .rate
        .store(4 << 20, std::sync::atomic::Ordering::SeqCst);
    let dir = tempfile::tempdir().unwrap();
    let (d, a, b) = (
        dir.path().to_str().unwrap().to_string(),
        server.url("/x/same.bin"),
        server.url("/y/same.bin"),
    );
    let out =
        tokio::task::spawn_blocking(move || ferry(&["get", "-q", "-j", "2", "-d", &d, &a, &b]))
            .await
            .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("already being downloaded") || err.contains("already exists"),
        "{err}"
    );
    assert_eq!(
        sha256(&fs::read(dir.path().join("same.bin")).unwrap()),
        sha256(&data)
    );
}

/// Issue 9 §7: the flags `get` and `put` share are one definition, so `--help` says the same
/// words for each of them in both subcommands.
#[test]
fn shared_flags_have_the_same_help_in_get_and_put() {
    const HEADING: &str = "Connection options (same for get and put):";
    let section = |sub: &str| {
        let out = ferry(&[sub, "--help"]);
        assert_eq!(out.status.code(), Some(0));
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let start = text
            .find(HEADING)
            .unwrap_or_else(|| panic!("{sub} --help has no {HEADING:?}:\n{text}"));
        // The section ends at the next heading (a line that does not start with a space).
        let body: Vec<&str> = text[start + HEADING.len()..]
            .lines()
            .skip(1)
            .take_while(|l| l.is_empty() || l.starts_with(' '))
            .collect();
        body.join(" ")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    let (get, put) = (section("get"), section("put"));
    assert_eq!(get, put);
    for flag in [
        "--header",
        "--user-agent",
        "--token",
        "--max-tries",
        "--retry-wait",
        "--timeout",
    ] {
        assert!(
            get.contains(flag),
            "{flag} missing from the shared section: {get}"
        );
    }
    // A shared flag is listed once, under the shared heading only.
    let full = String::from_utf8_lossy(&ferry(&["put", "--help"]).stdout).into_owned();
    assert_eq!(full.matches("--max-tries").count(), 1, "{full}");
}
