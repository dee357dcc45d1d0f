//! `ferry get` against ferryd: the two halves of the project agree on the wire.

use clap::Parser as _;
use ferry::cli::{run, Cli, EXIT_FAILED, EXIT_OK};
use ferry_tests::{pattern, sha256_file, sha256_hex, TestServer};

async fn ferry(args: &[&str]) -> u8 {
    let cli = Cli::try_parse_from(std::iter::once("ferry").chain(args.iter().copied()))
        .expect("valid command line");
    run(cli).await
}

#[tokio::test]
async fn parallel_download_from_ferryd_is_byte_identical_and_named_by_utf8_disposition() {
    let srv = TestServer::start().await;
    let data = pattern(6 * 1024 * 1024 + 333, 41);
    srv.put_file("数据 集.bin", &data);
    let dir = tempfile::tempdir().unwrap();
    let url = format!(
        "{}?download",
        srv.url("/%E6%95%B0%E6%8D%AE%20%E9%9B%86.bin")
    );
    let checksum = format!("sha256={}", sha256_hex(&data));
    let d = dir.path().to_str().unwrap();
    let code = ferry(&[
        "get",
        "-q",
        "-x",
        "4",
        "-k",
        "256K",
        "--checksum",
        &checksum,
        "-d",
        d,
        &url,
    ])
    .await;
    assert_eq!(code, EXIT_OK);
    let dest = dir.path().join("数据 集.bin");
    assert_eq!(sha256_file(&dest), sha256_hex(&data));
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "no .part or journal left behind: {leftovers:?}"
    );
}

#[tokio::test]
async fn missing_file_and_wrong_checksum_fail_with_exit_1() {
    let srv = TestServer::start().await;
    srv.put_file("a.bin", &pattern(10_000, 2));
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    assert_eq!(
        ferry(&["get", "-q", "-d", d, &srv.url("/nope.bin")]).await,
        EXIT_FAILED
    );
    let wrong = format!("sha256={}", "0".repeat(64));
    assert_eq!(
        ferry(&[
            "get",
            "-q",
            "--checksum",
            &wrong,
            "-d",
            d,
            &srv.url("/a.bin")
        ])
        .await,
        EXIT_FAILED
    );
    assert!(
        !dir.path().join("a.bin").exists(),
        "a file failing its checksum is not published"
    );
}
