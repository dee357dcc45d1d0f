//! Against @tus/server + @tus/file-store (npm), which has no concatenation and no checksum:
//! `-x` falls back to one stream; resume survives killing the server and the client.

use std::process::Stdio;
use std::time::Duration;

use crate::support::{succeeded, NodeTus, Scratch};

#[tokio::test]
async fn single_stream_upload_with_x4_falls_back_and_matches() {
    let Some(node) = NodeTus::start() else { return };
    let s = Scratch::new((2 << 20) + 99, 31);
    let location = s
        .put(&node.endpoint, &["-x", "4", "--chunk-size", "512K"])
        .await
        .unwrap();
    assert_eq!(node.content(&location), s.data);
}

#[tokio::test]
async fn server_restart_and_client_kill_then_resume() {
    let Some(node) = NodeTus::start() else { return };
    let s = Scratch::new(24 << 20, 32);
    let flags = ["-q", "--chunk-size", "256K", "--max-tries", "30"];
    // Kill the client once it has created the upload and sent some bytes.
    let mut child = s
        .command(&node.endpoint, &flags)
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let node_store = node.store.path().to_path_buf();
    let sent = |dir: &std::path::Path| -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| !e.file_name().to_string_lossy().ends_with(".json"))
            .map(|e| e.metadata().unwrap().len())
            .sum()
    };
    for _ in 0..2000 {
        if sent(&node_store) > 1 << 20 || child.try_wait().unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(s.entries() == 1, "the killed run left its resume entry");
    // Restart node while a new run is uploading; the run retries and finishes.
    let child = s
        .command(&node.endpoint, &flags)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(150)).await;
    let stored = sent(&node_store);
    assert!(
        stored < s.data.len() as u64,
        "the upload finished before the restart"
    );
    let node = node.restart();
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let location = succeeded(&out);
    assert_eq!(node.content(&location), s.data);
}
