//! Issue 9 §3 for `ferry put`: `user:password@` in the endpoint URL, `--user` and
//! `--netrc-file` authorize every tus request (parallel parts and the final concatenation
//! included); the password is never printed, nor kept in the resume store.

use base64::Engine as _;

use crate::support::{succeeded, Scratch};
use crate::tus_server::{Config, TusServer};

const PASSWORD: &str = "pw-s3cr3t";

fn basic(user: &str, password: &str) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Basic {b64}")
}

fn assert_no_secret(text: &str) {
    let encoded = basic("bob", PASSWORD);
    assert!(
        !text.contains(PASSWORD) && !text.contains(&encoded[6..]),
        "password printed or stored: {text}"
    );
}

fn assert_store_clean(s: &Scratch) {
    let uploads = s.data_dir().join("uploads");
    for entry in std::fs::read_dir(uploads).unwrap().flatten() {
        assert_no_secret(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_from_the_url_user_flag_and_netrc_authorize_every_tus_request() {
    let server = TusServer::start(Config {
        authorization: Some(basic("bob", PASSWORD)),
        ..Config::full()
    })
    .await;
    let endpoint = server.endpoint();
    let with_userinfo = endpoint.replacen("http://", &format!("http://bob:{PASSWORD}@"), 1);
    let netrc = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        netrc.path(),
        format!("machine 127.0.0.1 login bob password {PASSWORD}"),
    )
    .unwrap();
    let user = format!("bob:{PASSWORD}");
    let netrc_arg = netrc.path().display().to_string();
    let runs: [(&str, Vec<&str>); 3] = [
        (&with_userinfo, vec![]),
        (&endpoint, vec!["--user", &user]),
        (&endpoint, vec!["--netrc-file", &netrc_arg]),
    ];
    for (i, (url, flags)) in runs.into_iter().enumerate() {
        let s = Scratch::new(300_000, 40 + i as u64);
        let mut flags = flags;
        flags.extend(["-v", "-x", "2", "--chunk-size", "64K", "--no-netrc"]);
        if flags.contains(&"--netrc-file") {
            flags.retain(|f| *f != "--no-netrc");
        }
        let out = s.command(url, &flags).output().unwrap();
        assert_no_secret(&String::from_utf8_lossy(&out.stderr));
        let location = succeeded(&out);
        assert_no_secret(&location);
        let got = server.content(location.trim());
        assert_eq!(got.as_deref(), Some(&s.data[..]));
        assert_store_clean(&s);
    }
    // Wrong password: refused (401, not retried), and still not printed.
    let s = Scratch::new(1000, 49);
    let wrong = endpoint.replacen("http://", &format!("http://bob:{PASSWORD}x@"), 1);
    let out = s.command(&wrong, &["-v", "--no-netrc"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("401"), "{err}");
    assert_no_secret(&err);
}
