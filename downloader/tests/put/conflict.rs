//! 409 on PATCH (tus core offset mismatch): ferryd's carries the `Upload-Offset` it holds, and
//! `ferry put` goes on from there without a HEAD; a bare 409 (tusd's) still costs one.

use std::sync::atomic::Ordering;

use crate::support::Scratch;
use crate::tus_server::{Config, TusServer};

/// The first PATCH is stored and answered 409 anyway, so the server is one chunk ahead of the
/// client: the offset in the 409 (or, for a bare 409, the HEAD) must be followed, not the
/// client's own. Six chunks of 100 KiB, each sent once.
async fn run(carries_offset: bool) -> (usize, usize) {
    let server = TusServer::start(Config::full()).await;
    server
        .conflict_offset
        .store(carries_offset, Ordering::SeqCst);
    server.stored_conflicts.store(1, Ordering::SeqCst);
    let s = Scratch::new(600 * 1024, 11);
    let location = s
        .put(&server.endpoint(), &["--chunk-size", "100K"])
        .await
        .unwrap();
    assert_eq!(server.content(&location).as_deref(), Some(&s.data[..]));
    (
        server.patches.load(Ordering::SeqCst),
        server.heads.load(Ordering::SeqCst),
    )
}

#[tokio::test]
async fn conflict_with_upload_offset_goes_on_from_it_without_a_head() {
    let (patches, heads) = run(true).await;
    assert_eq!(patches, 6, "a chunk was sent again");
    assert_eq!(
        heads, 0,
        "asked with a HEAD although the 409 said the offset"
    );
}

#[tokio::test]
async fn bare_conflict_falls_back_to_a_head() {
    let (patches, heads) = run(false).await;
    assert_eq!(patches, 6, "a chunk was sent again");
    assert_eq!(heads, 1);
}
