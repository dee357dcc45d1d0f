//! Tools that read the HTML listing, used as they are: `wget -r -np` mirrors the tree (each
//! file once: there is no second `?download` link) and rclone's http backend copies it.

use std::path::Path;
use std::process::Command;

use ferry_tests::{pattern, sha256_file, sha256_hex, tool, TestServer};

const TREE: &[(&str, usize)] = &[
    ("top.txt", 10),
    ("报告 #1.pdf", 70_000),
    ("a b/c.bin", 300_000),
    ("a b/deep/d & e.txt", 5),
    ("a b/deep/deeper/f.txt", 1),
];

async fn serve_tree() -> TestServer {
    let srv = TestServer::start().await;
    for (i, (rel, len)) in TREE.iter().enumerate() {
        srv.put_file(&format!("pub/{rel}"), &pattern(*len, i as u64));
    }
    srv.put_file("outside.txt", b"not below pub/");
    srv
}

async fn run(mut cmd: Command) {
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every file of TREE is under `dir` with the right bytes, and nothing else is.
fn assert_mirrored(dir: &Path) {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.push(p.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    found.sort();
    let mut want: Vec<String> = TREE.iter().map(|(r, _)| r.to_string()).collect();
    want.sort();
    assert_eq!(found, want);
    for (i, (rel, len)) in TREE.iter().enumerate() {
        assert_eq!(
            sha256_file(&dir.join(rel)),
            sha256_hex(&pattern(*len, i as u64)),
            "{rel}"
        );
    }
}

#[tokio::test]
async fn wget_recursive_mirrors_each_file_once() {
    let Some(wget) = tool("wget") else { return };
    let srv = serve_tree().await;
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(wget);
    cmd.current_dir(out.path())
        .args([
            "-q",
            "-r",
            "-np",
            "-nH",
            "--cut-dirs=1",
            "-R",
            "index.html*",
        ])
        // The page's stylesheet and scripts live under the reserved prefix, not in the tree.
        .args(["-X", "/.ferry-ui", "--restrict-file-names=nocontrol"])
        .arg(srv.url("/pub/"));
    run(cmd).await;
    assert_mirrored(out.path());
}

#[tokio::test]
async fn rclone_http_backend_copies_the_tree() {
    let Some(rclone) = tool("rclone") else { return };
    let srv = serve_tree().await;
    let out = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(rclone);
    cmd.args(["copy", "--config", "/dev/null", "--http-url"])
        .arg(srv.url("/pub/"))
        .arg(":http:")
        .arg(out.path());
    run(cmd).await;
    assert_mirrored(out.path());
}
