//! Real third-party downloaders against ferryd, byte-identical results: curl, wget, aria2c.

use std::path::Path;
use std::process::Command;

use ferry_tests::{pattern, sha256_file, sha256_hex, tool, TestServer};

const SIZE: usize = 3 * 1024 * 1024 + 17;

async fn serve() -> (TestServer, Vec<u8>) {
    let srv = TestServer::start().await;
    let data = pattern(SIZE, 11);
    srv.put_file("数据 file.bin", &data);
    (srv, data)
}

const PATH: &str = "/%E6%95%B0%E6%8D%AE%20file.bin";

/// Runs a command on the blocking pool (the server runs on this test's runtime) and asserts
/// success.
async fn run(mut cmd: Command) -> std::process::Output {
    let out = tokio::task::spawn_blocking(move || cmd.output().expect("spawn"))
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[tokio::test]
async fn curl_range_and_resume() {
    let Some(curl) = tool("curl") else { return };
    let (srv, data) = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&curl);
    cmd.args(["-sS", "-f", "-r", "1000-1999", &srv.url(PATH)]);
    let out = run(cmd).await;
    assert_eq!(out.stdout, &data[1000..2000]);
    // `curl -C -` continues a truncated download.
    let dest = dir.path().join("out.bin");
    std::fs::write(&dest, &data[..SIZE / 3]).unwrap();
    let mut cmd = Command::new(&curl);
    cmd.args(["-sS", "-f", "-C", "-", "-o"])
        .arg(&dest)
        .arg(srv.url(PATH));
    run(cmd).await;
    assert_eq!(sha256_file(&dest), sha256_hex(&data));
}

#[tokio::test]
async fn wget_continue() {
    let Some(wget) = tool("wget") else { return };
    let (srv, data) = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("out.bin");
    std::fs::write(&dest, &data[..SIZE / 2]).unwrap();
    let mut cmd = Command::new(&wget);
    cmd.args(["-q", "-c", "-O"]).arg(&dest).arg(srv.url(PATH));
    run(cmd).await;
    assert_eq!(sha256_file(&dest), sha256_hex(&data));
}

#[tokio::test]
async fn aria2c_four_connections_and_utf8_name() {
    let Some(aria2c) = tool("aria2c") else { return };
    let (srv, data) = serve().await;
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(&aria2c);
    cmd.args([
        "-q",
        "-x4",
        "-s4",
        "-k1M",
        "--allow-overwrite=true",
        "--auto-file-renaming=false",
        "-d",
    ])
    .arg(dir.path())
    .arg(format!("{}?download", srv.url(PATH)));
    run(cmd).await;
    // aria2c names the file from Content-Disposition (RFC 6266 filename*).
    let dest = dir.path().join("数据 file.bin");
    assert!(
        Path::new(&dest).exists(),
        "aria2c did not use the UTF-8 name: {:?}",
        std::fs::read_dir(dir.path()).unwrap().collect::<Vec<_>>()
    );
    assert_eq!(sha256_file(&dest), sha256_hex(&data));
}
