//! `ferry get -r` of the same nested tree from ferryd (JSON listing), nginx `autoindex` and
//! python's `http.server` (HTML listings): byte-identical, nothing outside the start folder,
//! and running the same command again downloads nothing and exits 0.

use std::path::Path;
use std::time::SystemTime;

use ferry_tests::autoindex::{nginx, nginx_with, python_http_server};
use ferry_tests::TestServer;

use super::{assert_tree, ferry, files_below, make_tree, out_dir, path_arg, stderr};

/// Downloads `url` (a `pub/` folder) into a fresh directory twice; checks the tree after the
/// first run and that the second changed nothing.
async fn get_twice(url: &str) {
    let t = tempfile::tempdir().unwrap();
    let out = out_dir(&t);
    let args = [
        "get",
        "-r",
        "-j",
        "3",
        "-x",
        "2",
        "-k",
        "256K",
        "-d",
        path_arg(&out),
        url,
    ];
    let first = ferry(&args, t.path()).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("6 files,"), "{}", stderr(&first));
    assert_tree(&out.join("pub"));
    assert_eq!(
        files_below(&out).len(),
        super::TREE.len(),
        "only pub/ below the output"
    );

    let before = mtimes(&out);
    let again = ferry(&args, t.path()).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("0 failed (6 already complete)"),
        "{}",
        stderr(&again)
    );
    assert_eq!(mtimes(&out), before, "a re-run rewrote nothing");
    assert_tree(&out.join("pub"));
}

fn mtimes(dir: &Path) -> Vec<(String, SystemTime)> {
    files_below(dir)
        .into_iter()
        .map(|r| {
            let m = std::fs::metadata(dir.join(&r)).unwrap().modified().unwrap();
            (r, m)
        })
        .collect()
}

#[tokio::test]
async fn get_r_from_ferryd_json_listing_is_byte_identical_and_a_rerun_is_a_noop() {
    let srv = TestServer::start().await;
    make_tree(&srv.root.path().join("pub"));
    srv.put_file("outside.txt", b"not below pub/");
    srv.put_file("pubx/sibling.txt", b"not below pub/ either");
    get_twice(&srv.url("/pub")).await;
}

#[tokio::test]
async fn get_r_from_nginx_autoindex_is_byte_identical_and_a_rerun_is_a_noop() {
    let root = tempfile::tempdir().unwrap();
    make_tree(&root.path().join("pub"));
    std::fs::write(root.path().join("outside.txt"), b"not below pub/").unwrap();
    let Some(srv) = nginx(root.path()) else {
        return;
    };
    get_twice(&srv.url("/pub/")).await;
}

#[tokio::test]
async fn get_r_from_python_http_server_is_byte_identical_and_a_rerun_is_a_noop() {
    let root = tempfile::tempdir().unwrap();
    make_tree(&root.path().join("pub"));
    std::fs::write(root.path().join("outside.txt"), b"not below pub/").unwrap();
    let Some(srv) = python_http_server(root.path()) else {
        return;
    };
    get_twice(&srv.url("/pub/")).await;
}

/// Issue 9 §3: credentials from the URL go with every listing and file request of `-r`
/// (nginx `auth_basic` checks each one; its `/pub` → `/pub/` redirect stays on the origin),
/// and no printed line holds the password.
#[tokio::test]
async fn get_r_behind_basic_auth_sends_the_url_credentials_and_never_prints_them() {
    let root = tempfile::tempdir().unwrap();
    make_tree(&root.path().join("pub"));
    let users = |work: &Path| {
        let file = work.join("htpasswd");
        std::fs::write(&file, "alice:{PLAIN}tr33-s3cret\n").unwrap();
        format!(
            "auth_basic \"ferry\"; auth_basic_user_file {};",
            file.display()
        )
    };
    let Some(srv) = nginx_with(root.path(), users) else {
        return;
    };
    let t = tempfile::tempdir().unwrap();
    let out = out_dir(&t);
    let url = srv
        .url("/pub")
        .replace("http://", "http://alice:tr33-s3cret@");
    let args = ["get", "-r", "-v", "-j", "2", "-d", path_arg(&out), &url];
    let run = ferry(&args, t.path()).await;
    assert!(run.status.success(), "{}", stderr(&run));
    assert!(!stderr(&run).contains("tr33-s3cret"), "{}", stderr(&run));
    assert_tree(&out.join("pub"));
    let wrong = url.replace("tr33-s3cret", "tr33-s3cretX");
    let t2 = tempfile::tempdir().unwrap();
    let args = ["get", "-r", "--no-netrc", "-d", path_arg(t2.path()), &wrong];
    let run = ferry(&args, t2.path()).await;
    assert_eq!(run.status.code(), Some(1), "{}", stderr(&run));
    assert!(stderr(&run).contains("401"), "{}", stderr(&run));
    assert!(!stderr(&run).contains("tr33-s3cret"), "{}", stderr(&run));
}
