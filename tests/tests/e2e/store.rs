//! The store conformance suite, read side (issue 11 point 5): what the serving layer relies on
//! from any [`Store`], run through the trait itself (no HTTP) on the directory store and on
//! S3 alike, one suite parameterised over the backend. The upload side is
//! `ferryd::store::conformance`.

use std::sync::Arc;

use ferry_proto::ByteRange;
use ferry_tests::{backends, pattern, Backend};
use ferryd::path::RelPath;
use ferryd::store::fs::{FsOptions, FsStore};
use ferryd::store::s3::{S3Options, S3Store};
use ferryd::store::{FileHandle, Object, Store, StoreError};

/// A store of `backend` on a fresh, empty root (a temporary directory or a bucket prefix),
/// and the means to put files into it behind its back, as an operator or a sync tool would.
struct Fixture {
    store: Arc<dyn Store>,
    root: tempfile::TempDir,
    _state: tempfile::TempDir,
    s3: Option<S3Options>,
}

impl Fixture {
    fn new(backend: Backend) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default(); // the S3 client's TLS
        let (root, state) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (store, s3): (Arc<dyn Store>, _) = match backend {
            Backend::Fs => {
                let opts = FsOptions {
                    state_dir: Some(state.path().to_path_buf()),
                    index: None,
                    ..FsOptions::default()
                };
                (Arc::new(FsStore::new(root.path(), opts).unwrap()), None)
            }
            Backend::S3 => {
                let opts = ferry_tests::s3::fresh_options(false);
                (Arc::new(S3Store::new(&opts).unwrap()), Some(opts))
            }
        };
        Self {
            store,
            root,
            _state: state,
            s3,
        }
    }

    /// Puts `data` at `rel`, replacing what is there by rename (a new version, never an
    /// in-place rewrite of the old one).
    fn put(&self, rel: &str, data: &[u8]) {
        match &self.s3 {
            Some(o) => ferry_tests::s3::put(o, rel, data),
            None => {
                let p = self.root.path().join(rel);
                std::fs::create_dir_all(p.parent().unwrap()).unwrap();
                let tmp = self.root.path().join(".put.tmp");
                std::fs::write(&tmp, data).unwrap();
                std::fs::rename(&tmp, &p).unwrap();
            }
        }
    }

    async fn open_file(&self, rel: &str) -> Arc<dyn FileHandle> {
        match self.store.open(&path(rel)).await {
            Ok(Object::File(f)) => f,
            Ok(Object::Dir(_)) => panic!("{rel} opened as a directory"),
            Err(e) => panic!("{rel}: {e}"),
        }
    }
}

fn path(rel: &str) -> RelPath {
    RelPath::from_segments(rel.split('/').filter(|s| !s.is_empty())).unwrap()
}

fn range(start: u64, end: u64) -> ByteRange {
    ByteRange::new(start, end).unwrap()
}

backends!(
    open_gives_length_a_strong_etag_and_exact_ranges,
    a_replaced_file_gets_a_new_etag,
    an_opened_handle_never_reads_a_newer_version,
    missing_paths_are_not_found,
    listings_are_sorted_with_kinds_and_without_hidden_entries,
);

async fn open_gives_length_a_strong_etag_and_exact_ranges(backend: Backend) {
    let f = Fixture::new(backend);
    let data = pattern(300_000, 7);
    f.put("a/data.bin", &data);
    let h = f.open_file("a/data.bin").await;
    let meta = h.meta().clone();
    assert_eq!(meta.len, data.len() as u64);
    // RFC 9110 §8.8.3: a strong validator is a quoted string without `W/`.
    assert!(
        meta.etag.len() > 2 && meta.etag.starts_with('"') && meta.etag.ends_with('"'),
        "{}",
        meta.etag
    );
    let len = meta.len;
    for (s, e) in [
        (0, 1),
        (1000, 1010),
        (len - 1, len),
        (0, len),
        (65_530, 200_000),
    ] {
        let got = ferryd::store::collect(h.clone().read(range(s, e)), e - s)
            .await
            .unwrap();
        assert_eq!(&got[..], &data[s as usize..e as usize], "read {s}..{e}");
        let got = h.clone().read_bytes(range(s, e)).await.unwrap();
        assert_eq!(
            &got[..],
            &data[s as usize..e as usize],
            "read_bytes {s}..{e}"
        );
    }
}

async fn a_replaced_file_gets_a_new_etag(backend: Backend) {
    let f = Fixture::new(backend);
    f.put("x.txt", b"first version");
    let before = f.open_file("x.txt").await.meta().etag.clone();
    f.put("x.txt", b"other version"); // same length
    let after = f.open_file("x.txt").await.meta().clone();
    assert_ne!(before, after.etag);
    assert_eq!(after.len, 13);
}

/// A response announces the length and ETag of the version it opened, so it must never send
/// bytes of another: a read through an old handle gives the old bytes or fails.
async fn an_opened_handle_never_reads_a_newer_version(backend: Backend) {
    let f = Fixture::new(backend);
    f.put("v.txt", b"old old old");
    let h = f.open_file("v.txt").await;
    f.put("v.txt", b"new new new");
    match h.read_bytes(range(0, 11)).await {
        Ok(b) => assert_eq!(&b[..], b"old old old"),
        Err(e) => eprintln!("the old version is gone, the read failed: {e}"),
    }
    let now = f.open_file("v.txt").await;
    assert_eq!(
        &now.read_bytes(range(0, 11)).await.unwrap()[..],
        b"new new new"
    );
}

async fn missing_paths_are_not_found(backend: Backend) {
    let f = Fixture::new(backend);
    f.put("d/here.txt", b"x");
    for rel in [
        "nothing.txt",
        "d/nothing.txt",
        "nothing/deeper.txt",
        "d/here.txt/below",
    ] {
        assert!(
            matches!(f.store.open(&path(rel)).await, Err(StoreError::NotFound)),
            "{rel}"
        );
    }
    assert!(matches!(
        f.store.list(&path("nowhere")).await,
        Err(StoreError::NotFound)
    ));
}

async fn listings_are_sorted_with_kinds_and_without_hidden_entries(backend: Backend) {
    let f = Fixture::new(backend);
    for rel in [
        "d/b.txt",
        "d/a.txt",
        "d/sub/c.txt",
        "d/.hidden",
        "d/.dot/e.txt",
    ] {
        f.put(rel, rel.as_bytes());
    }
    assert!(matches!(f.store.open(&path("d")).await, Ok(Object::Dir(_))));
    assert!(matches!(
        f.store.open(&path("d/sub")).await,
        Ok(Object::Dir(_))
    ));
    let entries = listed(f.store.as_ref(), &path("d")).await;
    let got: Vec<(&str, bool)> = entries
        .iter()
        .map(|e| (e.name.as_str(), e.is_dir))
        .collect();
    // Folders first, then by name, as the listing shows them.
    assert_eq!(got, [("sub", true), ("a.txt", false), ("b.txt", false)]);
    let a = entries.iter().find(|e| e.name == "a.txt").unwrap();
    assert_eq!(a.len, "d/a.txt".len() as u64);
    assert_eq!(a.modified, f.open_file("d/a.txt").await.meta().modified);
    for hidden in ["d/.hidden", "d/.dot/e.txt"] {
        assert!(
            matches!(
                f.store.open(&path(hidden)).await,
                Err(StoreError::NotFound | StoreError::Forbidden)
            ),
            "{hidden} is hidden"
        );
    }
    let root: Vec<String> = listed(f.store.as_ref(), &RelPath::root())
        .await
        .into_iter()
        .map(|e| e.name)
        .collect();
    assert_eq!(root, ["d"]);
}

/// Every entry of a listing, its batches joined.
async fn listed(store: &dyn Store, dir: &RelPath) -> Vec<ferryd::store::Entry> {
    use futures_util::TryStreamExt as _;
    let batches: Vec<Vec<_>> = store.list(dir).await.unwrap().try_collect().await.unwrap();
    batches.into_iter().flatten().collect()
}
