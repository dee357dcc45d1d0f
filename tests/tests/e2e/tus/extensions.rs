//! tus checksum (header and trailer), expiration and concatenation.

use std::time::Duration;

use ferry_tests::{client, pattern, poll, Backend, TestServer};
use ferryd::tus::TusConfig;
use reqwest::Method;

use super::*;

#[tokio::test]
async fn checksum_400_unknown_460_mismatch_keeps_offset_then_match_succeeds() {
    let (srv, _) = server().await;
    let loc = create(&srv, 5, &meta("h.txt")).await;
    let send = |sum: &'static str| {
        tus(&srv, Method::PATCH, &loc)
            .header("content-type", OCTETS)
            .header("upload-offset", "0")
            .header("upload-checksum", sum)
            .body("hello")
            .send()
    };
    assert_eq!(send("blake3 AAAA").await.unwrap().status(), 400);
    let r = send("sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=").await.unwrap();
    assert_eq!(r.status().as_u16(), 460);
    assert_eq!(
        h(&head(&srv, &loc).await, "upload-offset"),
        "0",
        "chunk discarded"
    );
    let r = send("sha1 qvTGHdzF6KLavt4PO0gs2a6pQ00=").await.unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(
        std::fs::read(srv.root.path().join("h.txt")).unwrap(),
        b"hello"
    );
}

#[tokio::test]
async fn checksum_trailer_is_verified() {
    let (srv, _) = server().await;
    for (digest, status, offset) in [
        ("crc32 AAAAAA==", "460", "0"),
        ("crc32 NhCmhg==", "204", "5"),
    ] {
        let loc = create(&srv, 5, &meta("t.txt")).await;
        let head_text = format!(
            "PATCH {loc} HTTP/1.1\r\nHost: x\r\nTus-Resumable: 1.0.0\r\nAuthorization: Bearer {TOKEN}\r\n\
             Content-Type: {OCTETS}\r\nUpload-Offset: 0\r\nTransfer-Encoding: chunked\r\n\
             Trailer: Upload-Checksum\r\nConnection: close\r\n\r\n"
        );
        let body = format!("5\r\nhello\r\n0\r\nUpload-Checksum: {digest}\r\n\r\n");
        let reply = raw(&srv, &head_text, body.as_bytes()).await;
        assert!(
            reply.starts_with(&format!("HTTP/1.1 {status}")),
            "{digest}: {reply}"
        );
        assert_eq!(h(&head(&srv, &loc).await, "upload-offset"), offset);
    }
}

#[tokio::test]
async fn expired_upload_is_410_and_the_reaper_frees_it() {
    let (srv, tus_) = TestServer::start_tus(TusConfig {
        expiry: Duration::from_millis(3000),
        ..cfg()
    })
    .await;
    let loc = create(&srv, 10, &meta("e.bin")).await;
    assert_eq!(patch(&srv, &loc, 0, b"12").await.status(), 204);
    let done = create(&srv, 2, &meta("done.bin")).await;
    assert_eq!(patch(&srv, &done, 0, b"ok").await.status(), 204);
    tokio::time::sleep(Duration::from_millis(3100)).await; // real time: expiry is wall-clock based
    assert_eq!(head(&srv, &loc).await.status(), 410);
    tus_.reap_once().await.unwrap();
    // A published upload's record is forgotten too; its file stays in the served tree.
    assert_eq!(head(&srv, &done).await.status(), 404);
    assert_eq!(
        std::fs::read(srv.root.path().join("done.bin")).unwrap(),
        b"ok"
    );
    let id = loc.trim_start_matches("/files/");
    assert!(
        !srv.state.path().join(format!("uploads/{id}.bin")).exists(),
        "space freed"
    );
    assert_eq!(patch(&srv, &loc, 2, b"3").await.status(), 410);
}

#[tokio::test]
async fn concatenation_final_is_403_for_patch_and_unfinished_parts_complete_later() {
    let (srv, _) = server().await;
    let data = pattern(50_000, 3);
    let (a, b) = (
        create_partial(&srv, 20_000).await,
        create_partial(&srv, 30_000).await,
    );
    assert_eq!(patch(&srv, &a, 0, &data[..20_000]).await.status(), 204);
    assert_eq!(h(&head(&srv, &a).await, "upload-concat"), "partial");
    // concatenation-unfinished: b is still empty.
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{a} {}", srv.url(&b)))
        .header("upload-metadata", meta("joined.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let fin = location(&srv, &r);
    let hd = head(&srv, &fin).await;
    assert_eq!(
        h(&hd, "upload-concat"),
        format!("final;{} {}", srv.url(&a), srv.url(&b))
    );
    assert_eq!(
        h(&hd, "upload-offset"),
        "",
        "no offset before concatenation"
    );
    assert_eq!(patch(&srv, &fin, 0, b"x").await.status(), 403);
    assert_eq!(patch(&srv, &b, 0, &data[20_000..]).await.status(), 204);
    // The last part's completion concatenates the waiting final upload in the background:
    // the file appears without anyone asking for the final upload (bounded poll).
    let published = poll(|| async {
        let r = client().head(srv.url("/joined.bin")).send().await.unwrap();
        (r.status() == 200).then_some(())
    })
    .await;
    assert!(
        published.is_some(),
        "final upload concatenated once its last part completed"
    );
    let hd = head(&srv, &fin).await;
    assert_eq!(
        (h(&hd, "upload-offset"), h(&hd, "upload-length")),
        ("50000".into(), "50000".into())
    );
    let got = client()
        .get(srv.url("/joined.bin"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data);
    // A final upload naming something that is not a partial upload.
    let plain = create(&srv, 1, &meta("p")).await;
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{plain}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn creation_with_upload_and_a_bad_checksum_still_gives_the_location() {
    let (srv, _) = server().await;
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-length", "5")
        .header("upload-metadata", meta("cs.txt"))
        .header("content-type", OCTETS)
        .header("upload-checksum", "md5 AAAAAAAAAAAAAAAAAAAAAA==")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(
        h(&r, "upload-offset"),
        "0",
        "the refused chunk does not count"
    );
    let loc = location(&srv, &r);
    assert_eq!(patch(&srv, &loc, 0, b"hello").await.status(), 204);
    assert_eq!(
        std::fs::read(srv.root.path().join("cs.txt")).unwrap(),
        b"hello"
    );
}

#[tokio::test]
async fn a_final_upload_created_early_takes_its_parts_bytes_in_place() {
    let (srv, _) = server().await;
    let data = pattern(50_000, 4);
    let (a, b) = (
        create_partial(&srv, 20_000).await,
        create_partial(&srv, 30_000).await,
    );
    assert_eq!(patch(&srv, &a, 0, &data[..5_000]).await.status(), 204);
    let staged = |loc: &str| {
        let id = loc.trim_start_matches("/files/");
        srv.state.path().join(format!("uploads/{id}.bin"))
    };
    assert!(staged(&a).exists() && staged(&b).exists());
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{a} {b}"))
        .header("upload-metadata", meta("in-place.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let fin = location(&srv, &r);
    // Both parts now write into the final upload's data: their own data is gone.
    assert!(!staged(&a).exists() && !staged(&b).exists());
    assert_eq!(h(&head(&srv, &a).await, "upload-offset"), "5000");
    assert_eq!(
        patch(&srv, &b, 0, &data[20_000..35_000]).await.status(),
        204
    );
    assert_eq!(patch(&srv, &b, 15_000, &data[35_000..]).await.status(), 204);
    assert_eq!(
        patch(&srv, &a, 5_000, &data[5_000..20_000]).await.status(),
        204
    );
    let hd = poll(|| async {
        let hd = head(&srv, &fin).await;
        (h(&hd, "upload-offset") == "50000").then_some(hd)
    })
    .await
    .expect("the final upload completes with its last part");
    assert_eq!(published(&srv, &hd), "/in-place.bin");
    assert_eq!(
        std::fs::read(srv.root.path().join("in-place.bin")).unwrap(),
        data
    );
    // The parts' bytes went into the published file: the parts are retired (410) and
    // cannot form another final upload.
    assert_eq!(head(&srv, &a).await.status(), 410);
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{a} {b}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!staged(&fin).exists(), "staging holds nothing more");
}

// Regression: the final upload (created first) expired one expiry after its creation while
// its parts still streamed, and the reaper deleted the data they were placed in. On S3,
// where parts are not placed, part a (complete first) expired while b still streamed.
async fn an_early_final_upload_and_its_parts_live_while_any_part_is_written(backend: Backend) {
    parts_live_while_any_part_is_written(backend, 5_000).await
}

// The same for a part complete before the final upload was created (tus-js-client's order
// for all but the last part): it expired on its own deadline while the other part still
// streamed, and the final upload could never be concatenated (400 for a part gone).
async fn a_complete_part_lives_while_its_final_upload_waits_for_another(backend: Backend) {
    parts_live_while_any_part_is_written(backend, 20_000).await
}

/// Part a (20,000 bytes, `a_first` of them sent before the final upload is created) and
/// part b (30,000, sent in chunks over more than the 3 s expiry), then the rest of a.
async fn parts_live_while_any_part_is_written(backend: Backend, a_first: usize) {
    let (srv, _tus) = TestServer::start_tus_on(
        backend,
        TusConfig {
            expiry: Duration::from_millis(3000),
            ..cfg()
        },
    )
    .await;
    let data = pattern(50_000, 5);
    let (a, b) = (
        create_partial(&srv, 20_000).await,
        create_partial(&srv, 30_000).await,
    );
    assert_eq!(patch(&srv, &a, 0, &data[..a_first]).await.status(), 204);
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{a} {b}"))
        .header("upload-metadata", meta("long.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // b keeps streaming for more than 3.5 s (real time: expiry is wall-clock based); a and
    // the final upload are not written to in that time. The reaper runs every 750 ms. The
    // expiry is 3 s, not 1 s: on a loaded 2-core machine one tus request can take 0.5 s.
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(350)).await;
        let at = 20_000 + i * 2_500;
        let r = patch(&srv, &b, (i * 2_500) as u64, &data[at..at + 2_500]).await;
        assert_eq!(r.status(), 204, "part b, chunk {i}");
    }
    let still = head(&srv, &a).await;
    assert_eq!(still.status(), 200, "part a lives while b is written");
    assert_eq!(h(&still, "upload-offset"), a_first.to_string());
    if a_first < 20_000 {
        let r = patch(&srv, &a, a_first as u64, &data[a_first..20_000]).await;
        assert_eq!(r.status(), 204);
    }
    assert_eq!(patch(&srv, &b, 25_000, &data[45_000..]).await.status(), 204);
    let fin = location(&srv, &r);
    let done =
        poll(|| async { (h(&head(&srv, &fin).await, "upload-offset") == "50000").then_some(()) })
            .await;
    assert!(done.is_some(), "the final upload completes");
    assert_eq!(download(&srv, "/long.bin").await, data);
}

async fn download(srv: &TestServer, path: &str) -> Vec<u8> {
    let r = client().get(srv.url(path)).send().await.unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.bytes().await.unwrap().to_vec()
}

// Issue 11: a part sent for a final upload created before it was complete
// (concatenation-unfinished) belongs to that final upload: once it is published, the part is
// terminated and its data freed at once, on S3 (where concatenation copied it) as on disk
// (where its bytes were placed in the final upload's data), instead of a day later when it
// expires. A part complete before the final upload was created stays usable for another final
// upload until it expires, as tusd keeps parts.
async fn parts_sent_for_an_early_final_upload_are_retired_once_it_is_published(backend: Backend) {
    let (srv, _tus) = TestServer::start_tus_on(backend, cfg()).await;
    let data = pattern(50_000, 6);
    let (a, b) = (
        create_partial(&srv, 20_000).await,
        create_partial(&srv, 30_000).await,
    );
    assert_eq!(patch(&srv, &a, 0, &data[..20_000]).await.status(), 204);
    assert_eq!(
        patch(&srv, &b, 0, &data[20_000..25_000]).await.status(),
        204
    );
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{a} {b}"))
        .header("upload-metadata", meta("early.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(patch(&srv, &b, 5_000, &data[25_000..]).await.status(), 204);
    let fin = location(&srv, &r);
    let done =
        poll(|| async { (h(&head(&srv, &fin).await, "upload-offset") == "50000").then_some(()) })
            .await;
    assert!(done.is_some(), "the final upload completes");
    assert_eq!(download(&srv, "/early.bin").await, data);
    assert_eq!(head(&srv, &b).await.status(), 410, "b was sent for it");
    let still = head(&srv, &a).await;
    assert!(
        still.status().is_success(),
        "a was complete before: {}",
        still.status()
    );
    let id = |loc: &str| loc.trim_start_matches("/files/").to_owned();
    let staged: Vec<String> = match &srv.s3 {
        Some(opts) => ferry_tests::s3::names_under(opts, ".ferry/uploads").await,
        None => std::fs::read_dir(srv.state.path().join("uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
    };
    let of_b: Vec<&String> = staged
        .iter()
        .filter(|n| n.contains(&id(&b)) && !n.ends_with(".info"))
        .collect();
    assert!(of_b.is_empty(), "b's data is freed: {of_b:?}");
    // a joins another final upload.
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{a}"))
        .header("upload-metadata", meta("again.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let again = location(&srv, &r);
    let done =
        poll(|| async { (h(&head(&srv, &again).await, "upload-offset") == "20000").then_some(()) })
            .await;
    assert!(done.is_some(), "the second final upload completes");
    assert_eq!(download(&srv, "/again.bin").await, &data[..20_000]);
}

// A part sent for two final uploads created early (concatenation-unfinished). The first one
// published retired it although the second still had to be concatenated from it (on S3 its
// objects were deleted; on disk, where it was placed into the first one's data, its bytes
// left with that published file), and the second failed for good (400). Now the part stays
// while another final upload waits for it (on disk with its own copy of its bytes), and the
// last one retires it.
async fn a_part_two_early_final_uploads_wait_for_is_retired_by_the_last(backend: Backend) {
    let (srv, _tus) = TestServer::start_tus_on(backend, cfg()).await;
    let data = pattern(50_000, 22);
    let (p, q) = (
        create_partial(&srv, 20_000).await,
        create_partial(&srv, 30_000).await,
    );
    let create_final = |parts: String, name: &'static str| {
        tus(&srv, Method::POST, "/files/")
            .header("upload-concat", format!("final;{parts}"))
            .header("upload-metadata", meta(name))
            .send()
    };
    let first = create_final(p.clone(), "first.bin").await.unwrap();
    assert_eq!(first.status(), 201);
    let second = create_final(format!("{p} {q}"), "second.bin")
        .await
        .unwrap();
    assert_eq!(second.status(), 201);
    let (first, second) = (location(&srv, &first), location(&srv, &second));
    assert_eq!(patch(&srv, &p, 0, &data[..20_000]).await.status(), 204);
    // An uploader's HEAD finishes the final upload (or waits for the finisher) first.
    assert_eq!(h(&head(&srv, &first).await, "upload-offset"), "20000");
    assert_eq!(download(&srv, "/first.bin").await, &data[..20_000]);
    assert_eq!(head(&srv, &p).await.status(), 200, "the second waits for p");
    assert_eq!(patch(&srv, &q, 0, &data[20_000..]).await.status(), 204);
    assert_eq!(h(&head(&srv, &second).await, "upload-offset"), "50000");
    assert_eq!(download(&srv, "/second.bin").await, data);
    let staged: Vec<String> = match &srv.s3 {
        Some(opts) => ferry_tests::s3::names_under(opts, ".ferry/uploads").await,
        None => std::fs::read_dir(srv.state.path().join("uploads"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
    };
    for part in [&p, &q] {
        assert_eq!(head(&srv, part).await.status(), 410, "{part} retired");
        let id = part.trim_start_matches("/files/");
        let data: Vec<&String> = staged
            .iter()
            .filter(|n| n.contains(id) && !n.ends_with(".info"))
            .collect();
        assert!(data.is_empty(), "{part}'s data is freed: {data:?}");
    }
}

ferry_tests::backends!(
    an_early_final_upload_and_its_parts_live_while_any_part_is_written,
    a_complete_part_lives_while_its_final_upload_waits_for_another,
    parts_sent_for_an_early_final_upload_are_retired_once_it_is_published,
    a_part_two_early_final_uploads_wait_for_is_retired_by_the_last,
);

#[tokio::test]
async fn a_placed_part_left_active_by_a_crash_is_still_reaped() {
    // ferryd retires placed parts right after publishing their final upload; a crash in
    // between leaves a part recorded as active whose bytes went with the published file.
    // The store reports it terminated, and the reaper must clear it like any tombstone.
    let (srv, tus_) = TestServer::start_tus(TusConfig {
        expiry: Duration::from_millis(3000),
        ..cfg()
    })
    .await;
    let a = create_partial(&srv, 3).await;
    let r = tus(&srv, Method::POST, "/files/")
        .header("upload-concat", format!("final;{a}"))
        .header("upload-metadata", meta("crash.bin"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let fin = location(&srv, &r);
    assert_eq!(patch(&srv, &a, 0, b"abc").await.status(), 204);
    let published =
        poll(|| async { (h(&head(&srv, &fin).await, "upload-offset") == "3").then_some(()) }).await;
    assert!(published.is_some(), "the final upload completes");
    let info = srv
        .state
        .path()
        .join(format!("uploads/{}.info", a.trim_start_matches("/files/")));
    let record = std::fs::read_to_string(&info).unwrap();
    assert!(record.contains("\"terminated\""), "{record}");
    std::fs::write(&info, record.replace("\"terminated\"", "\"active\"")).unwrap();
    assert_eq!(head(&srv, &a).await.status(), 410, "no bytes left: gone");
    tokio::time::sleep(Duration::from_millis(3100)).await; // wall-clock expiry
    tus_.reap_once().await.unwrap();
    assert!(!info.exists(), "the stale part record is cleared");
}
