//! The store conformance suite: what every upload store must do, whatever it keeps records
//! and bytes in. Each check takes a fresh, empty store; every backend's tests run all of them
//! through [`conformance_tests!`] (one suite parameterised over the backend, not a copy).

use bytes::Bytes;

use super::upload::{Concat, UploadId, UploadInfo, UploadStore};
use super::StoreError;

/// `#[tokio::test]`s named after each check, each on a store from `$fresh` (an expression
/// whose value is `Some((guard, store))`, the guard living as long as the test, e.g. a temp
/// dir; `None` skips, for a backend whose server is missing outside CI).
macro_rules! conformance_tests {
    ($fresh:expr) => {
        $crate::store::conformance::conformance_tests!(@each $fresh;
            creating_twice_is_a_conflict,
            a_stale_record_write_is_a_conflict_and_changes_nothing,
            a_checkpoint_after_another_writer_is_a_conflict_and_keeps_the_record,
            background_checkpoints_chain_revisions,
            the_offset_is_the_last_checkpoint,
        );
    };
    (@each $fresh:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let Some((_guard, s)) = $fresh else { return };
                $crate::store::conformance::$name(&s).await
            }
        )*
    };
}
pub(crate) use conformance_tests;

async fn created(s: &dyn UploadStore, len: Option<u64>) -> UploadInfo {
    let mut info = UploadInfo::new(&UploadId::random().unwrap(), len, None, Concat::None);
    s.create(&mut info).await.unwrap();
    assert!(info.revision.is_some(), "a creation records a revision");
    info
}

fn id(info: &UploadInfo) -> UploadId {
    UploadId::parse(&info.id).unwrap()
}

/// Two creations of one id (two instances that drew the same id, or a retried request):
/// the second loses, the first record stays.
pub(crate) async fn creating_twice_is_a_conflict(s: &dyn UploadStore) {
    let first = created(s, Some(10)).await;
    let mut again = UploadInfo::new(&id(&first), Some(99), None, Concat::None);
    assert!(matches!(
        s.create(&mut again).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(s.load(&id(&first)).await.unwrap(), first);
}

/// Issue 11 point 5: a record written from a stale read fails as a typed conflict; the
/// record keeps what the other writer recorded (no last-writer-wins).
pub(crate) async fn a_stale_record_write_is_a_conflict_and_changes_nothing(s: &dyn UploadStore) {
    let info = created(s, None).await;
    let (mut a, mut b) = (
        s.load(&id(&info)).await.unwrap(),
        s.load(&id(&info)).await.unwrap(),
    );
    a.length = Some(5);
    s.save(&mut a).await.unwrap();
    assert_ne!(a.revision, info.revision, "a write moves the revision on");
    b.length = Some(7);
    let before = b.clone();
    assert!(matches!(s.save(&mut b).await, Err(StoreError::Conflict)));
    assert_eq!(b, before, "a lost swap leaves the caller's record alone");
    assert_eq!(s.load(&id(&info)).await.unwrap(), a);
    // Read again, the same change goes through.
    let mut fresh = s.load(&id(&info)).await.unwrap();
    fresh.metadata = Some("filename YQ==".into());
    s.save(&mut fresh).await.unwrap();
    assert_eq!(s.load(&id(&info)).await.unwrap(), fresh);
}

/// A writer whose upload was taken over (another request recorded the upload since the
/// appender opened) cannot record its offset: its checkpoint is a conflict.
pub(crate) async fn a_checkpoint_after_another_writer_is_a_conflict_and_keeps_the_record(
    s: &dyn UploadStore,
) {
    let mut info = created(s, Some(100)).await;
    let mut app = s.append(&info).await.unwrap();
    app.write(Bytes::from_static(&[1; 10])).await.unwrap();
    app.checkpoint(&mut info).await.unwrap();
    assert_eq!(info.offset, 10);
    let mut other = s.load(&id(&info)).await.unwrap();
    other.metadata = Some("filename Yg==".into());
    s.save(&mut other).await.unwrap();
    app.write(Bytes::from_static(&[2; 10])).await.unwrap();
    let before = info.clone();
    assert!(matches!(
        app.checkpoint(&mut info).await,
        Err(StoreError::Conflict)
    ));
    assert_eq!(info, before, "the loser's offset did not move");
    assert_eq!(s.load(&id(&info)).await.unwrap(), other);
}

/// Background checkpoints and the final one are one chain of swaps: each expects the
/// revision the previous one recorded.
pub(crate) async fn background_checkpoints_chain_revisions(s: &dyn UploadStore) {
    let mut info = created(s, Some(30)).await;
    let mut app = s.append(&info).await.unwrap();
    for n in 0..3u8 {
        app.write(Bytes::from(vec![n; 10])).await.unwrap();
        app.checkpoint_behind(&info).await.unwrap();
    }
    app.checkpoint(&mut info).await.unwrap();
    app.close().await.unwrap();
    assert_eq!(info.offset, 30);
    assert_eq!(s.load(&id(&info)).await.unwrap(), info);
}

/// The offset a store reports is the last checkpoint, never bytes written after it.
pub(crate) async fn the_offset_is_the_last_checkpoint(s: &dyn UploadStore) {
    let mut info = created(s, Some(100)).await;
    let mut app = s.append(&info).await.unwrap();
    app.write(Bytes::from_static(&[1; 40])).await.unwrap();
    app.checkpoint(&mut info).await.unwrap();
    app.write(Bytes::from_static(&[2; 40])).await.unwrap();
    app.close().await.unwrap();
    drop(app);
    let loaded = s.load(&id(&info)).await.unwrap();
    assert_eq!(loaded.offset, 40);
    let app = s.append(&loaded).await.unwrap();
    assert_eq!(
        app.position(),
        40,
        "a new appender starts at the checkpoint"
    );
}
