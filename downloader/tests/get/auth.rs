//! Issue 9 §3: credentials like curl and wget. `--user`, `user:password@` in the URL,
//! `--netrc-file` and `~/.netrc` each authorize against a server that checks the header;
//! credentials never reach another host after a redirect (curl's rule: 127.0.0.1 and
//! localhost on another port are other origins); the password never appears in stderr, in
//! the journal or in the file's recorded origin.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Output, Stdio};

use base64::Engine as _;

use crate::support::*;

const USER: &str = "alice";
const PASSWORD: &str = "s3cr3t-pw";

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

async fn server_with_auth(data: &[u8], user: &str, password: &str) -> std::sync::Arc<Server> {
    let server = Server::start(data.to_vec()).await;
    *server.authorization.lock().unwrap() = Some(basic(user, password));
    server
}

/// `ferry get -v -x 2 ARGS` into `dir`, with no terminal (a new session), `HOME` = `home`,
/// and `stdin` as standard input.
async fn ferry_get(dir: &Path, home: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["get", "-v", "-x", "2", "--retry-wait", "50ms", "-d"])
        .arg(dir)
        .args(args)
        .env("HOME", home)
        .env_remove("FERRY_TOKEN")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: setsid is async-signal-safe; it detaches the child from the terminal, so
    // that /dev/tty cannot be opened, as in cron or CI.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    let input = stdin.map(String::from);
    tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        if let Some(text) = input {
            let mut pipe = child.stdin.take().unwrap();
            pipe.write_all(text.as_bytes()).unwrap();
        }
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap()
}

/// Exit code 0, and neither the password nor its Basic encoding in stderr.
fn assert_ok_and_quiet(out: &Output) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_no_secret(&err);
}

fn assert_no_secret(text: &str) {
    let encoded = basic(USER, PASSWORD);
    assert!(
        !text.contains(PASSWORD) && !text.contains(&encoded[6..]),
        "password printed: {text}"
    );
}

/// Neither the password nor its encoding in any file below `dir` nor in its xattrs.
fn assert_not_stored(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            assert_not_stored(&path);
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        assert_no_secret(&String::from_utf8_lossy(&bytes));
        for value in xattr_values(&path) {
            assert_no_secret(&String::from_utf8_lossy(&value));
        }
    }
}

fn xattr_values(path: &Path) -> Vec<Vec<u8>> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let mut names = vec![0u8; 4096];
    // SAFETY: `c` is a valid C string and `names` a buffer of the length given.
    let n = unsafe { libc::listxattr(c.as_ptr(), names.as_mut_ptr().cast(), names.len()) };
    let Ok(n) = usize::try_from(n) else {
        return Vec::new(); // no xattr support here
    };
    let mut values = Vec::new();
    for name in names[..n].split(|b| *b == 0).filter(|s| !s.is_empty()) {
        let name = std::ffi::CString::new(name).unwrap();
        let mut value = vec![0u8; 4096];
        // SAFETY: as above, with a valid attribute name.
        let len = unsafe {
            libc::getxattr(
                c.as_ptr(),
                name.as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        if let Ok(len) = usize::try_from(len) {
            value.truncate(len);
            values.push(value);
        }
    }
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_flag_url_userinfo_and_netrc_each_authorize() {
    let data = random_bytes(300_000, 90);
    let server = server_with_auth(&data, USER, PASSWORD).await;
    let url = server.url("/f.bin");
    let home = tempfile::tempdir().unwrap();
    let user_pw = format!("{USER}:{PASSWORD}");
    let with_userinfo = url.replacen("http://", &format!("http://{USER}:{PASSWORD}@"), 1);
    let netrc = home.path().join("creds");
    let machine = format!("machine 127.0.0.1 login {USER} password {PASSWORD}\n");
    std::fs::write(&netrc, &machine).unwrap();
    let netrc_arg = netrc.display().to_string();
    for args in [
        vec!["--user", &user_pw, &url],
        vec![&with_userinfo],
        vec!["--netrc-file", &netrc_arg, &url],
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = ferry_get(dir.path(), home.path(), &args, None).await;
        assert_ok_and_quiet(&out);
        assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
        assert_not_stored(dir.path());
    }
    // ~/.netrc is read by default (as wget and aria2c do), not with --no-netrc.
    std::fs::write(home.path().join(".netrc"), &machine).unwrap();
    let dir = tempfile::tempdir().unwrap();
    assert_ok_and_quiet(&ferry_get(dir.path(), home.path(), &[&url], None).await);
    let out = ferry_get(
        dir.path(),
        home.path(),
        &["--no-netrc", "--overwrite", &url],
        None,
    )
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("401") && err.contains("--user"), "{err}");
    let sent: Vec<_> = server
        .requests()
        .into_iter()
        .map(|r| r.authorization)
        .collect();
    assert!(sent.contains(&Some(basic(USER, PASSWORD))), "{sent:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_password_fails_without_printing_it_or_storing_it() {
    let data = random_bytes(200_000, 91);
    let server = server_with_auth(&data, USER, "other").await;
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = server
        .url("/f.bin")
        .replacen("http://", &format!("http://{USER}:{PASSWORD}@"), 1);
    let out = ferry_get(dir.path(), home.path(), &["-vv", &url], None).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("401"), "{err}");
    assert_no_secret(&err);
    // A failure after the probe leaves a journal: it holds the URL without the password.
    *server.authorization.lock().unwrap() = None;
    server.refusals.lock().unwrap().extend([(503, None); 8]);
    let out = ferry_get(dir.path(), home.path(), &["--max-tries", "1", &url], None).await;
    assert_eq!(out.status.code(), Some(1));
    assert_no_secret(&String::from_utf8_lossy(&out.stderr));
    assert!(
        std::fs::read_dir(dir.path()).unwrap().count() > 0,
        "no journal left"
    );
    assert_not_stored(dir.path());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_never_follow_a_redirect_to_another_host() {
    let data = random_bytes(400_000, 92);
    let first = server_with_auth(&[], USER, PASSWORD).await;
    let other = Server::start(data.clone()).await;
    // 127.0.0.1:A -> localhost:B: another host and another port.
    let other_base = other.url("").replace("127.0.0.1", "localhost");
    *first.redirect_base.lock().unwrap() = Some(other_base);
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let user_pw = format!("{USER}:{PASSWORD}");
    let url = first.url("/go/f.bin");
    let out = ferry_get(dir.path(), home.path(), &["--user", &user_pw, &url], None).await;
    assert_ok_and_quiet(&out);
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
    let asked = first.requests();
    assert!(
        !asked.is_empty() && asked.iter().all(|r| r.status == 302),
        "{asked:?}"
    );
    let served = other.requests();
    assert!(!served.is_empty());
    assert!(
        served.iter().all(|r| r.authorization.is_none()),
        "credentials sent to the other host: {served:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_without_password_reads_it_like_curl_without_a_terminal() {
    let data = random_bytes(100_000, 93);
    let server = server_with_auth(&data, USER, PASSWORD).await;
    let url = server.url("/f.bin");
    let home = tempfile::tempdir().unwrap();
    // No terminal: the password is read from standard input (curl's getpass fallback).
    let dir = tempfile::tempdir().unwrap();
    let input = format!("{PASSWORD}\n");
    let out = ferry_get(dir.path(), home.path(), &["-u", USER, &url], Some(&input)).await;
    assert_ok_and_quiet(&out);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Enter host password for user 'alice'"),
        "{err}"
    );
    // Nothing on standard input: an empty password, and a warning that says so.
    *server.authorization.lock().unwrap() = Some(basic(USER, ""));
    let dir = tempfile::tempdir().unwrap();
    let out = ferry_get(dir.path(), home.path(), &["-u", USER, &url], None).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("no password given"), "{err}");
}

/// Mirrors (issue 9 §3 with §4): each mirror URL's `user:password@` is kept for its own
/// origin, so the main server and the mirror each get only their own credentials, never the
/// other's, and both serve ranges of the one file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_mirror_gets_only_its_own_credentials() {
    let data = random_bytes(4 << 20, 94);
    let main = server_with_auth(&data, USER, PASSWORD).await;
    let mirror = server_with_auth(&data, "bob", "mirror-pw").await;
    let with = |s: &Server, creds: &str| {
        s.url("/f.bin")
            .replacen("http://", &format!("http://{creds}@"), 1)
    };
    let (main_url, mirror_url) = (
        with(&main, &format!("{USER}:{PASSWORD}")),
        with(&mirror, "bob:mirror-pw"),
    );
    let home = tempfile::tempdir().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = ferry_get(
        dir.path(),
        home.path(),
        &["--mirror", &mirror_url, &main_url],
        None,
    )
    .await;
    assert_ok_and_quiet(&out);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("mirror-pw"));
    assert_eq!(std::fs::read(dir.path().join("f.bin")).unwrap(), data);
    assert_not_stored(dir.path());
    for (name, server, own) in [
        ("main", &main, basic(USER, PASSWORD)),
        ("mirror", &mirror, basic("bob", "mirror-pw")),
    ] {
        assert!(ranged_gets(server) >= 1, "{name} served no range");
        let sent: Vec<_> = server
            .requests()
            .into_iter()
            .map(|r| r.authorization)
            .collect();
        assert!(
            sent.iter().all(|a| a.as_deref() == Some(own.as_str())),
            "{name} got other credentials: {sent:?}"
        );
    }
}
