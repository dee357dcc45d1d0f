//! Unit tests of the fs upload capability: durable offsets, cut-off of unsynced bytes,
//! no-clobber publish, concatenation and the verified content index.

use super::*;
use crate::store::Store;
use bytes::Bytes;
use sha2::{Digest, Sha256};

/// A temporary directory holding the served root `www/` and, beside it, the default state
/// directory `.www.ferry/`.
struct Dir(tempfile::TempDir);

impl Dir {
    /// The served root.
    fn path(&self) -> std::path::PathBuf {
        self.0.path().join("www")
    }
}

fn store() -> (Dir, FsStore) {
    let dir = Dir(tempfile::tempdir().unwrap());
    fs::create_dir(dir.path()).unwrap();
    let s = FsStore::new(&dir.path(), crate::store::fs::FsOptions::default()).unwrap();
    (dir, s)
}

async fn new_upload(s: &FsStore, len: Option<u64>, concat: Concat) -> UploadInfo {
    let mut info = UploadInfo::new(&UploadId::random().unwrap(), len, None, concat);
    s.create(&mut info).await.unwrap();
    info
}

/// The store conformance suite on the directory store.
mod conformance {
    crate::store::conformance::conformance_tests!(Some(super::store()));
}

fn staged_len(s: &FsStore, info: &UploadInfo) -> u64 {
    fs::metadata(data_path(s.state_dir(), &info.id))
        .unwrap()
        .len()
}

#[tokio::test]
async fn offset_is_the_checkpoint_and_unsynced_bytes_are_cut_on_next_append() {
    let (_d, s) = store();
    let mut info = new_upload(&s, Some(1000), Concat::None).await;
    let mut app = s.append(&info).await.unwrap();
    app.write(Bytes::from_static(&[1; 100])).await.unwrap();
    app.checkpoint(&mut info).await.unwrap();
    assert_eq!(info.offset, 100);
    // Bytes written but never checkpointed (as if the process died here).
    app.write(Bytes::from_static(&[9; 50])).await.unwrap();
    app.rollback(150).await.unwrap(); // drains the write without checkpointing
    drop(app);
    let id = UploadId::parse(&info.id).unwrap();
    assert_eq!(
        s.load(&id).await.unwrap().offset,
        100,
        "offset from the durable record"
    );
    assert_eq!(staged_len(&s, &info), 150);
    let app = s.append(&s.load(&id).await.unwrap()).await.unwrap();
    assert_eq!(app.position(), 100);
    assert_eq!(
        staged_len(&s, &info),
        100,
        "garbage past the checkpoint is gone"
    );
}

#[tokio::test]
async fn rollback_discards_a_chunk() {
    let (_d, s) = store();
    let mut info = new_upload(&s, Some(10), Concat::None).await;
    let mut app = s.append(&info).await.unwrap();
    app.write(Bytes::from_static(b"abcde")).await.unwrap();
    app.rollback(0).await.unwrap();
    app.checkpoint(&mut info).await.unwrap();
    assert_eq!(info.offset, 0);
    assert_eq!(staged_len(&s, &info), 0);
}

#[tokio::test]
async fn publish_never_clobbers_and_cuts_bytes_past_the_length() {
    let (d, s) = store();
    fs::create_dir(d.path().join("in")).unwrap();
    fs::write(d.path().join("in/a.txt"), b"keep me").unwrap();
    let mut info = new_upload(&s, Some(3), Concat::None).await;
    fs::write(data_path(s.state_dir(), &info.id), b"newJUNK").unwrap(); // junk past the length
    info.offset = 3;
    let dir = RelPath::from_segments(["in"]).unwrap();
    let path = s.publish(&mut info, &dir, "a.txt").await.unwrap();
    assert_eq!(path.as_str(), "in/a (1).txt");
    assert_eq!(fs::read(d.path().join("in/a.txt")).unwrap(), b"keep me");
    assert_eq!(fs::read(d.path().join("in/a (1).txt")).unwrap(), b"new");
    assert_eq!(
        info.state,
        UploadState::Published {
            path: "in/a (1).txt".into()
        }
    );
    assert!(
        !data_path(s.state_dir(), &info.id).exists(),
        "staging name freed"
    );
    let id = UploadId::parse(&info.id).unwrap();
    assert_eq!(
        s.load(&id).await.unwrap().state,
        info.state,
        "recorded durably"
    );
}

#[tokio::test]
async fn publish_refuses_a_symlinked_directory_leading_out_of_the_root() {
    let (d, s) = store();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), d.path().join("out")).unwrap();
    let mut info = new_upload(&s, Some(0), Concat::None).await;
    let dir = RelPath::from_segments(["out"]).unwrap();
    assert!(matches!(
        s.publish(&mut info, &dir, "x").await,
        Err(StoreError::Forbidden)
    ));
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0);
}

#[tokio::test]
async fn concatenate_joins_complete_parts_in_order() {
    let (_d, s) = store();
    let mut parts = Vec::new();
    for chunk in [&b"hello "[..], b"world"] {
        let mut p = new_upload(&s, Some(chunk.len() as u64), Concat::Partial).await;
        let mut app = s.append(&p).await.unwrap();
        app.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        app.checkpoint(&mut p).await.unwrap();
        parts.push(p);
    }
    let mut fin = new_upload(&s, None, Concat::Final { parts: vec![] }).await;
    s.concatenate(&mut fin, &parts).await.unwrap();
    assert_eq!((fin.length, fin.offset), (Some(11), 11));
    assert_eq!(
        fs::read(data_path(s.state_dir(), &fin.id)).unwrap(),
        b"hello world"
    );
    parts[1].offset = 0; // an incomplete part is refused
    assert!(s.concatenate(&mut fin, &parts).await.is_err());
}

/// Appends `data` to `info` and checkpoints it.
async fn send(s: &FsStore, info: &mut UploadInfo, data: &[u8]) {
    let mut app = s.append(info).await.unwrap();
    app.write(Bytes::copy_from_slice(data)).await.unwrap();
    app.checkpoint(info).await.unwrap();
}

#[tokio::test]
async fn placed_parts_write_into_the_final_data_and_concatenate_without_copying() {
    let (_d, s) = store();
    let mut a = new_upload(&s, Some(6), Concat::Partial).await;
    let mut b = new_upload(&s, Some(5), Concat::Partial).await;
    let mut c = new_upload(&s, Some(3), Concat::Partial).await;
    send(&s, &mut a, b"hel").await; // received before the final upload existed
    send(&s, &mut c, b"!!!").await; // complete: stays where it is, copied at the end
    let fin_parts = [&a, &b, &c].map(|p| p.id.clone()).to_vec();
    let mut fin = new_upload(&s, Some(14), Concat::Final { parts: fin_parts }).await;
    s.place(&mut a, &fin, 0).await.unwrap();
    s.place(&mut b, &fin, 6).await.unwrap();
    assert!(
        !data_path(s.state_dir(), &a.id).exists(),
        "the part's own data is gone"
    );
    let id_a = UploadId::parse(&a.id).unwrap();
    assert_eq!(s.load(&id_a).await.unwrap(), a, "the placement is durable");
    // A placed part's unsynced bytes are dropped by the offset, never by truncating the
    // shared file (which would cut its neighbours).
    let mut app = s.append(&b).await.unwrap();
    app.write(Bytes::from_static(b"XX")).await.unwrap();
    app.rollback(0).await.unwrap();
    drop(app);
    send(&s, &mut b, b"world").await;
    send(&s, &mut a, b"lo ").await;
    assert_eq!(staged_len(&s, &fin), 14);
    s.concatenate(&mut fin, &[a.clone(), b.clone(), c.clone()])
        .await
        .unwrap();
    assert_eq!((fin.length, fin.offset), (Some(14), 14));
    assert_eq!(
        fs::read(data_path(s.state_dir(), &fin.id)).unwrap(),
        b"hello world!!!"
    );
    // The final's data gone (published, terminated or expired): the placed part has no
    // bytes left and reads as terminated; an unplaced part is unaffected.
    fs::remove_file(data_path(s.state_dir(), &fin.id)).unwrap();
    assert_eq!(s.load(&id_a).await.unwrap().state, UploadState::Terminated);
    let id_c = UploadId::parse(&c.id).unwrap();
    assert_eq!(s.load(&id_c).await.unwrap().state, UploadState::Active);
}

#[tokio::test]
async fn a_part_that_does_not_fit_is_not_placed() {
    let (_d, s) = store();
    let mut a = new_upload(&s, Some(10), Concat::Partial).await;
    let fin = new_upload(&s, Some(12), Concat::Final { parts: vec![] }).await;
    assert!(s.place(&mut a, &fin, 5).await.is_err());
    assert_eq!(a.placement, None);
    assert!(data_path(s.state_dir(), &a.id).exists());
}

#[tokio::test]
async fn index_is_trusted_only_while_the_file_is_unchanged() {
    let (d, s) = store();
    fs::write(d.path().join("f.bin"), b"content").unwrap();
    let sha = hex::encode(Sha256::digest(b"content"));
    let found = crate::index::tests::until(|| s.index_find_now(&sha, 7));
    assert_eq!(found.as_str(), "f.bin");
    assert!(s.index_has_length(7).await.unwrap());
    assert!(!s.index_has_length(8).await.unwrap());
    let upper = s.index_find(&sha.to_uppercase(), 7).await.unwrap();
    assert_eq!(upper.as_ref().map(|f| f.path.as_str()), Some("f.bin"));
    assert!(
        s.index_find(&sha, 8).await.unwrap().is_none(),
        "size must match"
    );
    assert!(s.index_find("../../etc/passwd", 7).await.unwrap().is_none());
    fs::write(d.path().join("f.bin"), b"CONTENT").unwrap(); // same size and inode ...
    let f = File::options()
        .write(true)
        .open(d.path().join("f.bin"))
        .unwrap();
    f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap(); // ... another mtime
                                                                // Not trusted from the moment the file changed, whether or not the indexer saw it yet.
    assert!(s.index_find(&sha, 7).await.unwrap().is_none());
    // The old entry no longer counts for its length; the indexer (inotify) may already have
    // hashed the new 7 bytes, and then only that new entry may answer (this assertion used to
    // demand `false` outright, which failed whenever the indexer was quick).
    if s.index_has_length(7).await.unwrap() {
        let new_sha = hex::encode(Sha256::digest(b"CONTENT"));
        let new = s.index_find(&new_sha, 7).await.unwrap();
        assert_eq!(new.as_ref().map(|f| f.path.as_str()), Some("f.bin"));
    }
}

/// Regression (issue 12's notes): instant upload checked the indexed file in `index_find`,
/// then `publish_copy` opened the path again; a file renamed over that path in between was
/// published in place of the content the client's digest named. The swap is made here
/// exactly in that window, so the test is deterministic: the copy must be the checked file.
#[tokio::test]
async fn instant_publish_copies_the_file_that_was_checked_not_one_renamed_over_it() {
    let (d, s) = store();
    let (good, evil) = (b"checked content".to_vec(), b"swapped content".to_vec());
    fs::write(d.path().join("src.bin"), &good).unwrap();
    let sha = hex::encode(Sha256::digest(&good));
    crate::index::tests::until(|| s.index_find_now(&sha, good.len() as u64));
    let found = s
        .index_find(&sha, good.len() as u64)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.path.as_str(), "src.bin");
    // Between the check and the copy: another file of the same size takes the name.
    fs::write(d.path().join("evil.tmp"), &evil).unwrap();
    fs::rename(d.path().join("evil.tmp"), d.path().join("src.bin")).unwrap();
    let mut info = new_upload(&s, Some(good.len() as u64), Concat::None).await;
    info.offset = good.len() as u64;
    let path = s
        .publish_copy(&mut info, &found, &RelPath::root(), "copy.bin")
        .await
        .unwrap();
    assert_eq!(path.as_str(), "copy.bin");
    assert_eq!(fs::read(d.path().join("copy.bin")).unwrap(), good);
    assert_eq!(fs::read(d.path().join("src.bin")).unwrap(), evil);
}

impl FsStore {
    fn index_find_now(&self, sha: &str, len: u64) -> Option<RelPath> {
        let mut raw = [0u8; 32];
        hex::decode_to_slice(sha, &mut raw).ok()?;
        self.index()?.find(&raw, len).map(|(path, _)| path)
    }
}

#[tokio::test]
async fn discard_leaves_a_tombstone_purge_forgets_it_and_staging_stays_hidden() {
    let (d, s) = store();
    assert_eq!(
        s.state_dir(),
        d.0.path().canonicalize().unwrap().join(".www.ferry")
    );
    let mut info = new_upload(&s, Some(5), Concat::None).await;
    s.discard(&mut info, UploadState::Terminated).await.unwrap();
    let id = UploadId::parse(&info.id).unwrap();
    assert_eq!(s.load(&id).await.unwrap().state, UploadState::Terminated);
    assert!(!data_path(s.state_dir(), &info.id).exists());
    assert_eq!(s.list_uploads().await.unwrap().len(), 1);
    s.purge(&id).await.unwrap();
    assert!(matches!(s.load(&id).await, Err(StoreError::NotFound)));
    let listing = s.list_root_names().await;
    assert!(listing.is_empty(), "{listing:?}");
}

impl FsStore {
    async fn list_root_names(&self) -> Vec<String> {
        use futures_util::TryStreamExt as _;
        let batches: Vec<Vec<crate::store::Entry>> = Store::list(self, &RelPath::root())
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        batches.into_iter().flatten().map(|e| e.name).collect()
    }
}

#[tokio::test]
async fn publish_again_after_a_crash_before_the_record_reuses_its_own_link() {
    let (d, s) = store();
    let mut info = new_upload(&s, Some(2), Concat::None).await;
    fs::write(data_path(s.state_dir(), &info.id), b"ok").unwrap();
    info.offset = 2;
    // The link of an earlier attempt exists, but the record still says Active.
    fs::hard_link(data_path(s.state_dir(), &info.id), d.path().join("n.txt")).unwrap();
    let path = s
        .publish(&mut info, &RelPath::root(), "n.txt")
        .await
        .unwrap();
    assert_eq!(path.as_str(), "n.txt", "no duplicate 'n (1).txt'");
    assert!(!d.path().join("n (1).txt").exists());
}

#[tokio::test]
async fn background_checkpoints_are_recorded_in_order_before_the_final_one() {
    let (_d, s) = store();
    let mut info = new_upload(&s, Some(300), Concat::None).await;
    let id = UploadId::parse(&info.id).unwrap();
    let mut app = s.append(&info).await.unwrap();
    app.write(Bytes::from_static(&[1; 100])).await.unwrap();
    app.checkpoint_behind(&info).await.unwrap();
    app.write(Bytes::from_static(&[2; 100])).await.unwrap();
    app.checkpoint_behind(&info).await.unwrap(); // skipped or queued after the first
    app.write(Bytes::from_static(&[3; 100])).await.unwrap();
    app.checkpoint(&mut info).await.unwrap();
    assert_eq!(info.offset, 300);
    assert_eq!(
        s.load(&id).await.unwrap().offset,
        300,
        "the final record is the last one"
    );
    let data = fs::read(data_path(s.state_dir(), &info.id)).unwrap();
    assert_eq!(
        (&data[..100], &data[200..]),
        (&[1u8; 100][..], &[3u8; 100][..])
    );
}
