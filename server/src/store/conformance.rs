//! The store conformance suite: what every upload store must do, whatever it keeps records
//! and bytes in. Each check takes a fresh, empty store; every backend's tests run all of them
//! through [`conformance_tests!`] (one suite parameterised over the backend, not a copy).

use bytes::Bytes;

use super::upload::{Concat, UploadId, UploadInfo, UploadState, UploadStore};
use super::{Object, Store, StoreError};
use crate::path::RelPath;

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
            concatenation_joins_parts_in_order_and_publishes_only_the_final,
            instant_upload_copies_indexed_content,
            empty_uploads_are_published_without_replacing,
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

/// An upload of `data` (a `concat` role), written in chunks of at most 3 MiB with a
/// checkpoint each, so a store that cuts parts cuts some and keeps a tail.
async fn uploaded(s: &dyn UploadStore, data: &[u8], concat: Concat) -> UploadInfo {
    let mut info = UploadInfo::new(
        &UploadId::random().unwrap(),
        Some(data.len() as u64),
        None,
        concat,
    );
    s.create(&mut info).await.unwrap();
    let mut app = s.append(&info).await.unwrap();
    for chunk in data.chunks(3 << 20) {
        app.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        app.checkpoint(&mut info).await.unwrap();
    }
    app.close().await.unwrap();
    assert!(info.is_complete());
    info
}

/// Deterministic bytes, different for each `seed`.
fn bytes_of(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[(i % 3) + 1] ^ seed)
        .collect()
}

/// The whole content of the served file at `path`.
async fn served(s: &dyn Store, path: &RelPath) -> Vec<u8> {
    let Object::File(f) = s.open(path).await.unwrap() else {
        panic!("{} is not a file", path.as_str())
    };
    let len = f.meta().len;
    let range = ferry_proto::ByteRange::new(0, len).unwrap();
    super::collect(f.read(range), len).await.unwrap().to_vec()
}

/// Issue 11 point 3: concatenation lays the parts end to end, in order, whatever their
/// sizes (on S3: a part cut and a tail that can be copied, a part too small to copy, a
/// part joined with its neighbours); the final is published under its name and the parts
/// are not published as files.
pub(crate) async fn concatenation_joins_parts_in_order_and_publishes_only_the_final<S>(s: &S)
where
    S: Store + UploadStore,
{
    let Some(concat) = s.concatenation() else {
        return;
    };
    let sizes = [(13 << 20) + 3, 1000, 6 << 20, 12 << 20];
    let datas: Vec<Vec<u8>> = (0..sizes.len())
        .map(|i| bytes_of(sizes[i], i as u8 + 1))
        .collect();
    let mut parts = Vec::new();
    for data in &datas {
        parts.push(uploaded(s, data, Concat::Partial).await);
    }
    let ids: Vec<String> = parts.iter().map(|p| p.id.clone()).collect();
    let mut fin = UploadInfo::new(
        &UploadId::random().unwrap(),
        None,
        None,
        Concat::Final { parts: ids },
    );
    for p in &parts {
        concat.note_final(&id(p), &id(&fin)).await.unwrap();
    }
    s.create(&mut fin).await.unwrap();
    assert_eq!(
        concat.finals_of(&id(&parts[1])).await.unwrap(),
        vec![id(&fin)]
    );
    concat.concatenate(&mut fin, &parts).await.unwrap();
    let want: Vec<u8> = datas.concat();
    assert_eq!(fin.length, Some(want.len() as u64));
    assert!(fin.is_complete());
    assert_eq!(s.load(&id(&fin)).await.unwrap(), fin, "recorded complete");
    let path = s
        .publish(&mut fin, &RelPath::root(), "joined.bin")
        .await
        .unwrap();
    assert_eq!(path.as_str(), "joined.bin");
    assert!(served(s, &path).await == want, "joined bytes differ");
    use futures_util::TryStreamExt as _;
    let listed: Vec<Vec<super::Entry>> = s
        .list(&RelPath::root())
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let names: Vec<String> = listed.concat().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["joined.bin"], "only the final is published");
    for p in &parts {
        assert_eq!(s.load(&id(p)).await.unwrap().state, UploadState::Active);
    }
}

/// Instant upload: content published once is found in the content index by length and
/// SHA-256 (the index may fill in the background), and a new upload is published as a copy
/// of it under its own name, complete.
pub(crate) async fn instant_upload_copies_indexed_content<S>(s: &S)
where
    S: Store + UploadStore,
{
    use sha2::{Digest as _, Sha256};
    let Some(index) = s.content_index() else {
        return;
    };
    let data = bytes_of((3 << 20) + 7, 9);
    let len = data.len() as u64;
    let sha = hex::encode(Sha256::digest(&data));
    let mut first = uploaded(s, &data, Concat::None).await;
    let dir = RelPath::from_segments(["in"]).unwrap();
    s.publish(&mut first, &dir, "first.bin").await.unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let found = loop {
        if let Some(f) = index.index_find(&sha, len).await.unwrap() {
            break f;
        }
        assert!(std::time::Instant::now() < deadline, "never indexed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(found.path.as_str(), "in/first.bin");
    assert!(index.index_has_length(len).await.unwrap());
    assert!(!index.index_has_length(len + 1).await.unwrap());
    assert!(index.index_find(&sha, len + 1).await.unwrap().is_none());
    let mut second = UploadInfo::new(&UploadId::random().unwrap(), Some(len), None, Concat::None);
    s.create(&mut second).await.unwrap();
    second.offset = len;
    let path = index
        .publish_copy(&mut second, &found, &dir, "second.bin")
        .await
        .unwrap();
    assert_eq!(path.as_str(), "in/second.bin");
    assert!(served(s, &path).await == data, "copied bytes differ");
    let loaded = s.load(&id(&second)).await.unwrap();
    assert!(loaded.is_complete());
    assert_eq!(
        loaded.state,
        UploadState::Published {
            path: path.as_str().into()
        }
    );
}

/// An empty upload is published as an empty file, and a second one under the same name gets
/// the next free name (on S3: the empty object is created with `If-None-Match`, no copy).
pub(crate) async fn empty_uploads_are_published_without_replacing<S>(s: &S)
where
    S: Store + UploadStore,
{
    let mut paths = Vec::new();
    for _ in 0..2 {
        let mut info = uploaded(s, b"", Concat::None).await;
        paths.push(
            s.publish(&mut info, &RelPath::root(), "empty")
                .await
                .unwrap(),
        );
    }
    let names: Vec<&str> = paths.iter().map(|p| p.as_str()).collect();
    assert_eq!(names, ["empty", "empty (1)"]);
    for p in &paths {
        let Object::File(f) = s.open(p).await.unwrap() else {
            panic!("{} is not a file", p.as_str())
        };
        assert_eq!(f.meta().len, 0);
    }
}
