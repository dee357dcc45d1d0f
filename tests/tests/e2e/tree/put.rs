//! `ferry put -r` into ferryd: the tree is published with its structure (`dir` metadata),
//! served byte-identical (read back with `ferry get -r`), a re-run sends nothing and
//! publishes no second copy; a file the server refuses fails alone, with the summary and
//! exit code 1.

use ferry_tests::TestServer;
use ferryd::tus::TusConfig;

use super::{assert_tree, ferry, files_below, make_tree, out_dir, path_arg, stderr, TREE};

const TOKEN: &str = "tree-put-token";

async fn ferryd(max_size: Option<u64>) -> TestServer {
    let cfg = TusConfig {
        upload_token: Some(TOKEN.into()),
        max_size,
        ..TusConfig::default()
    };
    TestServer::start_tus(cfg).await.0
}

#[tokio::test]
async fn put_r_of_a_nested_tree_is_served_identically_and_a_rerun_sends_nothing() {
    let srv = ferryd(None).await;
    let t = tempfile::tempdir().unwrap();
    let photos = t.path().join("photos");
    make_tree(&photos);
    let endpoint = srv.url("/files/");
    let args = [
        "put",
        "-r",
        "-j",
        "3",
        "--token",
        TOKEN,
        "--chunk-size",
        "1M",
        path_arg(&photos),
        &endpoint,
    ];
    let data = t.path().join("data");
    let first = ferry(&args, &data).await;
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(stderr(&first).contains("6 files,"), "{}", stderr(&first));
    let printed = String::from_utf8_lossy(&first.stdout).lines().count();
    assert_eq!(printed, TREE.len(), "one location per file");
    assert_tree(&srv.root.path().join("photos"));

    // What ferryd serves is the same tree.
    let back = out_dir(&t);
    let get = [
        "get",
        "-r",
        "-j",
        "2",
        "-d",
        path_arg(&back),
        &srv.url("/photos/"),
    ];
    let got = ferry(&get, &data).await;
    assert!(got.status.success(), "{}", stderr(&got));
    assert_tree(&back.join("photos"));

    let again = ferry(&args, &data).await;
    assert!(again.status.success(), "{}", stderr(&again));
    assert!(
        stderr(&again).contains("0 failed (6 already complete)"),
        "{}",
        stderr(&again)
    );
    let sorted = |out: &[u8]| {
        let mut v: Vec<String> = String::from_utf8_lossy(out)
            .lines()
            .map(String::from)
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        sorted(&first.stdout),
        sorted(&again.stdout),
        "the same locations"
    );
    assert_eq!(
        files_below(&srv.root.path().join("photos")).len(),
        TREE.len(),
        "no second copy"
    );
}

#[tokio::test]
async fn put_r_with_one_file_refused_uploads_the_rest_and_exits_1_with_the_summary() {
    // c.bin (3 MiB) is larger than the server accepts; the other five fit.
    let srv = ferryd(Some(1 << 20)).await;
    let t = tempfile::tempdir().unwrap();
    let photos = t.path().join("photos");
    make_tree(&photos);
    let endpoint = srv.url("/files/");
    let args = [
        "put",
        "-r",
        "-j",
        "2",
        "--token",
        TOKEN,
        path_arg(&photos),
        &endpoint,
    ];
    let out = ferry(&args, &t.path().join("data")).await;
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("c.bin") && err.contains("Tus-Max-Size"),
        "{err}"
    );
    assert!(
        err.contains("ferry put: 5 files,") && err.contains(", 1 failed"),
        "{err}"
    );
    let served = files_below(&srv.root.path().join("photos"));
    assert_eq!(served.len(), TREE.len() - 1, "{served:?}");
    assert!(!served.iter().any(|f| f.ends_with("c.bin")));
}
