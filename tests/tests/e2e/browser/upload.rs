//! The upload side's browser tests (issue 10 points 3 and 4): per-PATCH checksums through a
//! front that damages a chunk, big files as concatenated parts and then instant, a 503 with
//! `Retry-After`, paste, the prompt on leaving mid-upload, a real folder drop. Scenarios in
//! tests/interop/browser-upload.mjs.

use ferry_tests::pattern;
use http::Method;

use super::front::{Fault, Front};
use super::{one_at_a_time, tools, Run};

#[tokio::test]
async fn upload_checksum_on_every_patch_and_a_damaged_chunk_is_sent_again() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let data = run.fixture("sum.bin", &pattern(24 << 20, 11));
    let front = Front::start(run.srv.addr, Fault::FlipByte(1 << 20)).await;
    run.scenario("checksum", serde_json::json!({ "url": front.url() }))
        .await;
    let patches: Vec<_> = front
        .seen()
        .into_iter()
        .filter(|(m, _, _)| m == Method::PATCH)
        .collect();
    assert!(patches.iter().all(|(_, summed, _)| *summed), "{patches:?}");
    assert_eq!(
        patches[0].2, 460,
        "the damaged chunk is refused: {patches:?}"
    );
    assert!(patches[1..].iter().all(|p| p.2 == 204), "{patches:?}");
    // Without the checksum ferryd would have kept the damaged byte.
    run.assert_served("/sum.bin", &data).await;
}

#[tokio::test]
async fn big_file_goes_as_parts_then_the_same_bytes_are_instant() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let data = pattern(100 << 20, 12);
    run.fixture("big.bin", &data);
    run.fixture("copy.bin", &data);
    run.scenario(
        "parts_then_instant",
        serde_json::json!({ "size": data.len() }),
    )
    .await;
    run.assert_served("/big.bin", &data).await;
    run.assert_served("/copy.bin", &data).await;
}

#[tokio::test]
async fn a_503_with_retry_after_is_honoured() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let data = run.fixture("ra.bin", &pattern(4 << 20, 13));
    let front = Front::start(run.srv.addr, Fault::Busy).await;
    run.scenario("retry_after", serde_json::json!({ "url": front.url() }))
        .await;
    let statuses: Vec<_> = front
        .seen()
        .into_iter()
        .filter(|(m, _, _)| m == Method::PATCH)
        .map(|p| p.2)
        .collect();
    assert_eq!(statuses.first(), Some(&503), "{statuses:?}");
    run.assert_served("/ra.bin", &data).await;
}

#[tokio::test]
async fn a_pasted_file_uploads() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    run.scenario("paste", serde_json::json!({})).await;
    run.assert_served("/pasted.txt", b"pasted bytes").await;
}

#[tokio::test]
async fn leaving_mid_upload_asks_first() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let data = run.fixture("p.bin", &pattern(12 << 20, 14));
    run.scenario("leave", serde_json::json!({})).await;
    run.assert_served("/p.bin", &data).await;
}

#[tokio::test]
async fn a_dropped_folder_is_walked_to_the_end() {
    let Some(_) = tools() else { return };
    let _one = one_at_a_time().await;
    let run = Run::start().await;
    let mut files = vec![
        ("tree/a.txt".to_string(), run.fixture("tree/a.txt", b"a")),
        (
            "tree/sub/deeper/c.bin".to_string(),
            run.fixture("tree/sub/deeper/c.bin", &pattern(70_000, 15)),
        ),
    ];
    // More than the 100 entries Chromium hands out per readEntries call.
    for i in 0..105 {
        let rel = format!("tree/many/f{i:03}.txt");
        let data = run.fixture(&rel, "x".repeat(i + 1).as_bytes());
        if i % 50 == 0 || i == 104 {
            files.push((rel, data));
        }
    }
    let rels = run
        .scenario("folder_drop", serde_json::json!({ "count": 107 }))
        .await;
    let rels = rels.as_array().unwrap();
    assert!(
        rels.iter()
            .any(|r| r[0] == "tree/many/f104.txt" && r[1] == "tree/many"),
        "{rels:?}"
    );
    for (rel, data) in files {
        run.assert_served(&format!("/{rel}"), &data).await;
    }
}
