//! What an S3 that fails a publish leaves behind, held there by [`RefusingS3`] (issue 11;
//! review rev2 finding 2 and the instant upload's copy).
//!
//! Concatenation while a final upload is concatenated but not yet published: an S3 final
//! upload's data is its parts' objects until its publish copies them, so those objects must
//! outlive a part's termination, expiry or retirement until the final upload is published,
//! terminated or expired; then they go, and nothing is left under `.ferry/` once everything
//! has expired.
//!
//! A copy to a served name that fails half-way (an instant upload's) leaves its multipart
//! upload recorded, so the upload's expiry aborts it.

use std::sync::Arc;

use ferry_tests::s3::{
    expire_upload_record, expire_upload_records, names_under, open_multipart_uploads, RefusingS3,
};
use ferry_tests::{client, pattern, TestServer};
use ferryd::tus::Tus;
use reqwest::Method;

use crate::tus::{cfg, create, create_partial, h, head, location, meta, patch, tus, TOKEN};

/// A tus server on S3 (`--single-instance`) that talks to S3 through `front`, and its tus
/// endpoint (for reaper passes).
async fn server_via(front: &RefusingS3) -> (TestServer, Arc<Tus>) {
    crate::s3::s3_tus_server_at(cfg(), Some(front.url.clone())).await
}

async fn create_final(srv: &TestServer, parts: &[&str], name: &str) -> String {
    let r = tus(srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{}", parts.join(" ")))
        .header("upload-metadata", meta(name))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    location(srv, &r)
}

fn id(loc: &str) -> &str {
    loc.trim_start_matches("/files/")
}

/// HEAD of a final upload whose publish S3 refuses: concatenated, not published.
async fn assert_unpublished(srv: &TestServer, fin: &str) {
    let r = head(srv, fin).await;
    assert!(
        r.status().is_server_error(),
        "publish refused: {}",
        r.status()
    );
}

/// HEAD until the final upload reports `len` bytes (published), then its file.
async fn published_bytes(srv: &TestServer, fin: &str, name: &str, len: usize) -> Vec<u8> {
    let r = head(srv, fin).await;
    assert_eq!(r.status(), 200, "{fin}");
    assert_eq!(h(&r, "upload-offset"), len.to_string(), "{fin}");
    let got = client()
        .get(srv.url(&format!("/{name}")))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "GET /{name}");
    got.bytes().await.unwrap().to_vec()
}

/// Expires every record and runs a reaper pass, twice (the first turns uploads still active
/// into tombstones, the second forgets them), and checks nothing is left of the uploads: no
/// staging, no record, no marker of a waiting final upload.
async fn nothing_left_after_expiry(srv: &TestServer, tus: &Tus) {
    let opts = srv.s3.as_ref().unwrap();
    for _ in 0..2 {
        expire_upload_records(opts).await;
        tus.reap_once().await.unwrap();
    }
    for dir in [".ferry/uploads", ".ferry/finals"] {
        let left = names_under(opts, dir).await;
        assert!(left.is_empty(), "left under {dir}: {left:?}");
    }
}

/// The staging objects (not records) of upload `loc`.
async fn staging_of(srv: &TestServer, loc: &str) -> Vec<String> {
    let prefix = format!(".ferry/uploads/{}.", id(loc));
    names_under(srv.s3.as_ref().unwrap(), ".ferry/uploads")
        .await
        .into_iter()
        .filter(|n| n.starts_with(&prefix) && !n.ends_with(".info"))
        .collect()
}

// A part terminated by its client, and a part that expired, while their final upload was
// concatenated but its publish failed: both are gone for clients (410), but the final
// upload's next publish still has their bytes, and publishes them byte-identical. Before,
// the termination and the expiry deleted the objects the final upload was made of.
#[tokio::test]
async fn parts_terminated_or_expired_before_their_final_upload_is_published_keep_its_data() {
    if !ferry_tests::s3::available() {
        return;
    }
    let front = RefusingS3::start().await;
    let (srv, tus_) = server_via(&front).await;
    let data = pattern((9 << 20) + 30_000, 21); // a: a part object and a tail; b: a tail
    let (a, b) = (
        create_partial(&srv, 9 << 20).await,
        create_partial(&srv, 30_000).await,
    );
    let split = data.len() - 30_000;
    assert_eq!(patch(&srv, &a, 0, &data[..split]).await.status(), 204);
    let fin = create_final(&srv, &[&a, &b], "kept.bin").await;
    front.refuse("");
    // b's completion concatenates the final upload (now or in this HEAD); S3 refuses the
    // publish.
    assert_eq!(patch(&srv, &b, 0, &data[split..]).await.status(), 204);
    assert_unpublished(&srv, &fin).await;
    // The client terminates b, and a expires (its deadline moved to the past: the expiry
    // is a day) and is reaped.
    let r = tus(&srv, Method::DELETE, &b).send().await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(head(&srv, &b).await.status(), 410);
    expire_upload_record(srv.s3.as_ref().unwrap(), id(&a)).await;
    tus_.reap_once().await.unwrap();
    assert_eq!(head(&srv, &a).await.status(), 410);
    front.allow();
    let got = published_bytes(&srv, &fin, "kept.bin", data.len()).await;
    assert!(got == data, "published bytes differ");
    // The final upload let go: the parts' objects are gone now, before their tombstones.
    for part in [&a, &b] {
        assert_eq!(staging_of(&srv, part).await, Vec::<String>::new(), "{part}");
    }
    nothing_left_after_expiry(&srv, &tus_).await;
}

// Two final uploads name one part, sent for both (concatenation-unfinished); S3 refuses to
// publish the second. Whichever is concatenated first, the first one's publish retires the
// part while the second is concatenated but not published (or not yet concatenated): the
// part's objects must stay until the second is published, byte-identical.
#[tokio::test]
async fn a_part_retired_by_one_final_upload_keeps_its_data_for_another_not_yet_published() {
    if !ferry_tests::s3::available() {
        return;
    }
    let front = RefusingS3::start().await;
    let (srv, tus_) = server_via(&front).await;
    let data = pattern(50_000, 23);
    let (p, q) = (
        create_partial(&srv, 20_000).await,
        create_partial(&srv, 30_000).await,
    );
    let first = create_final(&srv, &[&p], "one.bin").await;
    let second = create_final(&srv, &[&p, &q], "two.bin").await;
    front.refuse("two.bin");
    assert_eq!(patch(&srv, &q, 0, &data[20_000..]).await.status(), 204);
    assert_eq!(patch(&srv, &p, 0, &data[..20_000]).await.status(), 204);
    let got = published_bytes(&srv, &first, "one.bin", 20_000).await;
    assert!(got == data[..20_000], "one: bytes differ");
    assert_unpublished(&srv, &second).await;
    front.allow();
    let got = published_bytes(&srv, &second, "two.bin", 50_000).await;
    assert!(got == data, "two: bytes differ");
    nothing_left_after_expiry(&srv, &tus_).await;
}

// Review rev3: a final upload lives past its own deadline while its parts stream (the
// group's deadline), but its concatenation recorded that old deadline, and the publish's
// claim keeps it: while the publish copied (or after a crash cut it), the record read as
// expired, and a reaper on another instance sharing the bucket (its lock is in-process)
// expired the final upload under the publish, aborting its copy: 410 for an upload whose
// every byte had arrived. Concatenation records a new deadline, as a PATCH does.
#[tokio::test]
async fn a_final_upload_concatenated_after_its_own_deadline_is_not_due_while_it_publishes() {
    if !ferry_tests::s3::available() {
        return;
    }
    let front = RefusingS3::start().await;
    let (srv, tus_) = server_via(&front).await;
    let opts = srv.s3.as_ref().unwrap();
    let data = pattern(50_000, 25);
    let (a, b) = (
        create_partial(&srv, 20_000).await,
        create_partial(&srv, 30_000).await,
    );
    let fin = create_final(&srv, &[&a, &b], "late.bin").await;
    // The parts stream longer than the expiry: the final upload's own deadline passes, and
    // the reaper keeps it for its parts.
    expire_upload_record(opts, id(&fin)).await;
    tus_.reap_once().await.unwrap();
    assert_eq!(head(&srv, &fin).await.status(), 200, "kept for its parts");
    front.hold("late.bin");
    assert_eq!(patch(&srv, &a, 0, &data[..20_000]).await.status(), 204);
    assert_eq!(patch(&srv, &b, 0, &data[20_000..]).await.status(), 204);
    // b's completion concatenates the final upload in the background and publishes it:
    // held at its copy's start.
    front.until_held().await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let deadline = ferry_tests::s3::upload_record_expires_ms(opts, id(&fin)).await;
    assert!(
        deadline.is_some_and(|d| d > now),
        "due while it publishes: deadline {deadline:?}, now {now}"
    );
    front.release();
    let got = published_bytes(&srv, &fin, "late.bin", data.len()).await;
    assert!(got == data, "published bytes differ");
    nothing_left_after_expiry(&srv, &tus_).await;
}

// An instant upload's copy (a multipart upload at the served name, filled by part copies
// inside S3) that S3 fails half-way, its abort failing too: the copy's multipart upload was
// recorded nowhere, so it stayed open at the served name for good (the reaper's sweep only
// looks under `.ferry/uploads/`; only a lifecycle rule would end it). Now it is recorded in
// the upload's record before it is filled, and the upload's expiry aborts it.
#[tokio::test]
async fn an_instant_upload_copy_that_fails_half_way_is_aborted_when_the_upload_expires() {
    if !ferry_tests::s3::available() {
        return;
    }
    let front = RefusingS3::start().await;
    let (srv, tus_) = server_via(&front).await;
    let opts = srv.s3.as_ref().unwrap();
    let data = pattern(3 << 20, 24);
    let len = data.len() as u64;
    let one = create(&srv, len, &meta("one.bin")).await;
    assert_eq!(patch(&srv, &one, 0, &data).await.status(), 204);
    assert!(
        ferry_tests::s3::instant_candidate(&srv.url("/files/"), Some(TOKEN), len).await,
        "one.bin never reached the index"
    );
    front.break_copies("two.bin");
    let r = ferry_tests::create_instant(&srv.url("/files/"), Some(TOKEN), "two.bin", &data).await;
    assert!(r.status().is_server_error(), "copy broken: {}", r.status());
    front.allow();
    let at_two = || async {
        open_multipart_uploads(opts)
            .await
            .into_iter()
            .filter(|m| m.key.ends_with("/two.bin"))
            .count()
    };
    assert_eq!(
        at_two().await,
        1,
        "the broken copy's multipart upload is open"
    );
    nothing_left_after_expiry(&srv, &tus_).await;
    assert_eq!(at_two().await, 0, "aborted when its upload expired");
    let got = client().head(srv.url("/two.bin")).send().await.unwrap();
    assert_eq!(got.status(), 404, "nothing published");
}

// Credentials that may not touch ferryd's own state (S3 answers 403 AccessDenied under
// `.ferry/`): the client gets a server error, not the 404 that says its upload is gone (and
// the operator a logged error); once S3 lets ferryd in again the upload goes on from its
// offset and is published whole.
#[tokio::test]
async fn s3_refusing_ferryds_own_state_is_a_server_error_not_a_missing_upload() {
    if !ferry_tests::s3::available() {
        return;
    }
    let front = RefusingS3::start().await;
    let (srv, _tus) = server_via(&front).await;
    let data = pattern(3 << 20, 29);
    let loc = create(&srv, data.len() as u64, &meta("denied.bin")).await;
    assert_eq!(patch(&srv, &loc, 0, &data[..1 << 20]).await.status(), 204);
    front.deny("/.ferry/");
    let r = head(&srv, &loc).await;
    assert_eq!(r.status(), 500, "HEAD while S3 denies the record");
    let r = patch(&srv, &loc, 1 << 20, &data[1 << 20..]).await;
    assert_eq!(r.status(), 500, "PATCH while S3 denies the record");
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-length", "5")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500, "creation while S3 denies the records");
    front.allow();
    let r = head(&srv, &loc).await;
    assert_eq!(r.status(), 200);
    assert_eq!(h(&r, "upload-offset"), (1u64 << 20).to_string());
    assert_eq!(
        patch(&srv, &loc, 1 << 20, &data[1 << 20..]).await.status(),
        204
    );
    let got = published_bytes(&srv, &loc, "denied.bin", data.len()).await;
    assert!(got == data, "published bytes differ");
}
