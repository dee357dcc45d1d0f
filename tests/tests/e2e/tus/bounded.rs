//! Bounded work per request (issue 8 point 3): a final upload naming a part twice, or parts
//! whose lengths add up past u64, is refused; finishing a part reaches the final uploads
//! waiting for it without reading every upload record.

use std::os::unix::fs::OpenOptionsExt as _;

use ferry_tests::{client, poll, TestServer};
use reqwest::Method;

use super::*;

async fn fin(srv: &TestServer, parts: &str) -> reqwest::Response {
    tus(srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{parts}"))
        .header("upload-metadata", meta("joined.bin"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_final_upload_naming_a_part_twice_is_400() {
    let (srv, _) = server().await;
    let a = create_partial(&srv, 3).await;
    assert_eq!(patch(&srv, &a, 0, b"abc").await.status(), 204);
    let r = fin(&srv, &format!("{a} {a}")).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("twice"));
}

#[tokio::test]
async fn parts_whose_lengths_add_up_past_u64_are_413() {
    // Regression: the lengths wrapped (2^63 + 2^63 + 9 = 9) and the final upload of length
    // 9 was published; in a debug build the addition panicked (500).
    let (srv, _) = TestServer::start_tus(TusConfig {
        max_size: None,
        ..cfg()
    })
    .await;
    let half = 1u64 << 63;
    let (a, b) = (
        create_partial(&srv, half).await,
        create_partial(&srv, half + 9).await,
    );
    let r = fin(&srv, &format!("{a} {b}")).await;
    assert_eq!(r.status(), 413, "{:?}", r.text().await);
}

#[tokio::test]
async fn a_finished_part_reaches_its_final_upload_without_reading_other_records() {
    // Regression: completing a part read every upload record to find the final uploads
    // naming it (30k records: seconds of CPU per part). A record that cannot be read without
    // blocking (a FIFO) stands for "expensive": reading it never returns.
    let (srv, _) = server().await;
    let (a, b) = (create_partial(&srv, 2).await, create_partial(&srv, 3).await);
    let r = fin(&srv, &format!("{a} {b}")).await;
    assert_eq!(r.status(), 201);
    let fifo = srv
        .state
        .path()
        .join("uploads/ffffffffffffffffffffffffffffffff.info");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status();
    assert!(made.unwrap().success());
    assert_eq!(patch(&srv, &a, 0, b"ab").await.status(), 204);
    assert_eq!(patch(&srv, &b, 0, b"cde").await.status(), 204);
    // Nobody asks for the final upload: its last part's completion publishes it.
    let published = poll(|| async {
        let r = client().get(srv.url("/joined.bin")).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
    // Let any reader blocked on the FIFO (the reaper lists every record) go, then check.
    for _ in 0..20 {
        let w = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(libc_o_nonblock())
            .open(&fifo);
        drop(w);
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let _ = std::fs::remove_file(&fifo);
    assert!(published.is_some(), "the final upload was never finished");
}

/// `O_NONBLOCK` on Linux (no libc in this crate): opening a FIFO's write end then fails at
/// once when no reader waits, instead of blocking.
fn libc_o_nonblock() -> i32 {
    0o4000
}
