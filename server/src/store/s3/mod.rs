//! The S3-compatible backend (`--store s3://bucket/prefix`), through `object_store`: AWS S3,
//! MinIO, Garage, Ceph RGW, R2. Downloads, and tus uploads into S3 multipart uploads
//! ([`upload`]): shared by several ferryd instances on one bucket, each upload locked by a
//! lease in its record ([`lease`]), where the server honours conditional writes; with
//! `--single-instance` (only this ferryd writes under the prefix) by a lock in memory.
//!
//! Layout: the served tree is the bucket's keys under `prefix/`, `/` being the directory
//! separator (a "directory" is a common prefix of a delimiter listing). The top-level
//! `prefix/.ferry/` is reserved for the backend's own state (upload staging, records) and,
//! like the directory store's state, never served or listed (see [`super::visibility`]).
//!
//! Reads: [`read::S3File`] asks S3 for exactly the bytes of each range (a ranged GET with
//! `If-Match` on the ETag the response announced), so a response never mixes two versions of
//! an object, and streams the body as the client takes it (memory per response is what the
//! HTTP client buffers, not the range).
//!
//! Listings: [`list`] reads a delimiter listing a page at a time and streams it, folders
//! first, never holding a whole prefix.
//!
//! Uploads ([`upload`]) offer concatenation (`concat`: the final upload's parts copied inside
//! S3) and a content index in the bucket for instant upload (`index`); both use the S3
//! requests object_store lacks, presigned and sent by ferryd (`raw`).
//!
//! [`S3Store::probe_conditional_writes`] (in `probe`) tells whether the server honours
//! `If-None-Match` / `If-Match` on writes, which several instances writing upload records
//! under one prefix need (issue 11 point 4); `app` asks it at start.

mod concat;
mod copy;
mod index;
mod lease;
mod list;
mod orphans;
mod probe;
mod raw;
mod read;
mod recent;
pub mod upload;

pub use probe::ConditionalWrites;
pub use raw::OpenMultipart;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey, S3CopyIfNotExists};
use object_store::path::Path as Key;
use object_store::{ClientOptions, ObjectMeta, ObjectStore, ObjectStoreExt as _};

use super::visibility::{Visibility, RESERVED};
use super::{BoxFuture, EntryStream, Meta, Object, Store, StoreError};
use crate::path::RelPath;

/// Where the objects are and how to reach them. Credentials come from the standard `AWS_*`
/// environment variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_REGION`, `AWS_ENDPOINT_URL`, …); the fields here win over them.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    pub bucket: String,
    /// Key prefix of the served tree, without leading or trailing `/`; empty: the bucket.
    pub prefix: String,
    /// `--s3-endpoint`: e.g. `http://127.0.0.1:9000` for MinIO; `http://` is allowed then.
    pub endpoint: Option<String>,
    /// `--s3-region` (default: `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// `--s3-virtual-hosted`: `bucket.host/key` instead of path-style `host/bucket/key`
    /// (path-style is what MinIO, Garage and most S3-compatible servers expect).
    pub virtual_hosted: bool,
    /// `--allow-hidden`: serve and list names starting with `.`.
    pub allow_hidden: bool,
    /// Access key id and secret, instead of the environment's (for embedding and tests;
    /// ferryd itself takes them from `AWS_*` like every S3 tool).
    pub credentials: Option<(String, String)>,
    /// `--single-instance`: only this ferryd writes under the prefix, so uploads are taken
    /// with a lock in this process's memory. Without it uploads are locked by a lease in
    /// their record, which needs a server that honours conditional writes.
    pub single_instance: bool,
    /// The largest upload (`--max-upload-size`), which sizes the parts of S3 multipart
    /// uploads ([`upload::part_size`]).
    pub max_upload_size: Option<u64>,
    /// Keys per listing request (S3's `max-keys`; `None`: the server's default, 1000 on
    /// S3). Tests set a small page to list many pages of a small directory.
    pub list_page: Option<usize>,
    /// `--no-index`: no content index (published uploads are not read back and hashed, no
    /// instant upload).
    pub no_index: bool,
}

impl S3Options {
    /// The S3 client these options describe (no request is made).
    pub fn client(&self) -> Result<Arc<dyn ObjectStore>, object_store::Error> {
        Ok(Arc::new(self.amazon()?))
    }

    /// The client with S3's own interfaces (multipart uploads). A copy that must not replace
    /// its target is a multipart copy completed with `If-None-Match: *`.
    fn amazon(&self) -> Result<AmazonS3, object_store::Error> {
        self.builder().build()
    }

    fn builder(&self) -> AmazonS3Builder {
        let mut b = from_env(client_options())
            .with_bucket_name(&self.bucket)
            .with_virtual_hosted_style_request(self.virtual_hosted)
            .with_copy_if_not_exists(S3CopyIfNotExists::Multipart);
        if let Some(e) = &self.endpoint {
            b = b.with_endpoint(e).with_allow_http(e.starts_with("http://"));
        }
        if let Some(r) = &self.region {
            b = b.with_region(r);
        }
        if let Some((id, secret)) = &self.credentials {
            b = b.with_access_key_id(id).with_secret_access_key(secret);
        }
        b
    }

    /// `s3://bucket/prefix`, for the start-up line.
    pub fn url(&self) -> String {
        match self.prefix.as_str() {
            "" => format!("s3://{}/", self.bucket),
            p => format!("s3://{}/{p}/", self.bucket),
        }
    }
}

/// How the S3 client waits: no limit on a whole request, and S3's answer, or its next bytes,
/// within [`raw::IDLE`]. object_store's default, 30 s for a whole request, cut every GET
/// whose body took longer (a large file to a slow client): object_store asks again for the
/// rest, but only within 3 minutes of the first try, so a download lasting longer than that
/// failed (300 MiB at 1 MiB/s through ferryd on moto: cut after 205 s and 221 MB).
fn client_options() -> ClientOptions {
    ClientOptions::new()
        .with_timeout_disabled()
        .with_read_timeout(raw::IDLE)
}

/// [`AmazonS3Builder::from_env`] on top of `client`: the `AWS_*` variables still win.
fn from_env(client: ClientOptions) -> AmazonS3Builder {
    let mut b = AmazonS3Builder::new().with_client_options(client);
    for (key, value) in std::env::vars_os() {
        let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
            continue;
        };
        if key.starts_with("AWS_") {
            if let Ok(k) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                b = b.with_config(k, value);
            }
        }
    }
    b
}

#[derive(Clone)]
pub struct S3Store {
    client: Arc<dyn ObjectStore>,
    /// The same client, for the multipart interface and presigning ([`raw`]).
    s3: AmazonS3,
    /// Sends the presigned requests of [`raw`].
    http: reqwest::Client,
    bucket: String,
    prefix: String,
    vis: Visibility,
    single_instance: bool,
    /// Several instances may take uploads under the prefix (the server honours conditional
    /// writes, see [`S3Store::share_uploads`]): uploads are locked by a lease in their record.
    shared: bool,
    /// Size of every part of an upload but the last.
    part: usize,
    /// Keys per listing request ([`S3Options::list_page`]).
    list_page: Option<usize>,
    /// Whether the content index is kept (not `--no-index`).
    index: bool,
    /// Published uploads being read back for the content index at once (see [`index`]).
    hashing: Arc<tokio::sync::Semaphore>,
    /// Request bodies taken into memory at once ([`upload::RECEIVING`]).
    receiving: Arc<tokio::sync::Semaphore>,
    /// When the reaper first listed each multipart upload in progress ([`orphans`]).
    first_seen: orphans::FirstSeen,
    /// The digests of published objects read from the bucket ([`index`]).
    digests: Arc<index::Digests>,
    /// How this instance learnt the digests of the uploads it published ([`index`]).
    indexed: Arc<index::Counts>,
    /// Parts on their way to S3 at once ([`upload::SENDING`]).
    sending: Arc<tokio::sync::Semaphore>,
    /// The upload records read or written last ([`recent`]).
    recent: Arc<recent::Recent>,
}

impl S3Store {
    pub fn new(opts: &S3Options) -> Result<Self, object_store::Error> {
        let s3 = opts.amazon()?;
        // reqwest is built without a default TLS provider: name ferryd's (idempotent).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = raw::client(raw::IDLE).map_err(|e| object_store::Error::Generic {
            store: "S3",
            source: Box::new(e),
        })?;
        Ok(Self {
            client: Arc::new(s3.clone()),
            s3,
            http,
            bucket: opts.bucket.clone(),
            prefix: opts.prefix.clone(),
            vis: Visibility {
                allow_hidden: opts.allow_hidden,
            },
            single_instance: opts.single_instance,
            shared: false,
            part: upload::part_size(opts.max_upload_size),
            list_page: opts.list_page,
            index: !opts.no_index,
            hashing: Arc::new(tokio::sync::Semaphore::new(index::HASHING_AT_ONCE)),
            receiving: Arc::new(tokio::sync::Semaphore::new(upload::RECEIVING)),
            first_seen: orphans::FirstSeen::default(),
            digests: Arc::default(),
            indexed: Arc::default(),
            sending: Arc::new(tokio::sync::Semaphore::new(upload::SENDING)),
            recent: Arc::default(),
        })
    }

    /// Lets several ferryd instances take uploads under the prefix, each upload locked by a
    /// lease kept in its record ([`lease`]). Only for a server that honours conditional
    /// writes ([`S3Store::probe_conditional_writes`]): the lease and every record change are
    /// compare-and-swaps. Without it (and without `--single-instance`) the store takes no
    /// uploads.
    pub fn share_uploads(&mut self) {
        self.shared = true;
    }

    /// The object key of a request path (the prefix's own key for the root). A name S3 keys
    /// cannot carry (a control character) is `None`: nothing can be stored under it.
    fn key(&self, path: &RelPath) -> Option<Key> {
        let rel = path.as_str().trim_matches('/');
        let full = match (self.prefix.as_str(), rel) {
            ("", r) => r.to_owned(),
            (p, "") => p.to_owned(),
            (p, r) => format!("{p}/{r}"),
        };
        Key::parse(full).ok()
    }

    /// Whether any object lies under `dir/` (S3 has no directories, only common prefixes).
    async fn is_dir(&self, dir: &Key) -> Result<bool, StoreError> {
        let mut objects = self.client.list(Some(dir));
        match objects.next().await {
            Some(Ok(_)) => Ok(true),
            Some(Err(e)) => Err(from_s3(e)),
            None => Ok(false),
        }
    }
}

/// Directories carry no metadata in S3; a listing shows them without size or date.
fn dir_meta() -> Meta {
    Meta {
        len: 0,
        modified: UNIX_EPOCH,
        etag: "\"dir\"".into(),
    }
}

/// The object's metadata as a response announces it. The ETag is S3's, which is strong (an
/// MD5 of the content, or of the parts' MD5s for a multipart upload): kept as it is, quoted
/// if a server sent it bare. A server that sends none gets one from size and date.
fn meta_of(m: &ObjectMeta) -> Meta {
    let modified: SystemTime = m.last_modified.into();
    let etag = match m.e_tag.as_deref().map(|t| t.trim_start_matches("W/")) {
        Some(t) if t.starts_with('"') && t.ends_with('"') && t.len() >= 2 => t.to_owned(),
        Some(t) if !t.is_empty() && !t.contains('"') => format!("\"{t}\""),
        _ => {
            let nanos = modified
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0);
            format!("\"{:x}-{nanos:x}\"", m.size)
        }
    };
    Meta {
        len: m.size,
        modified,
        etag,
    }
}

/// S3's answer as the store's error: a missing key is NotFound, a refused served key
/// Forbidden (a 404: S3 answers 403 for a missing key too when the credentials may not list
/// the bucket), anything else an I/O error (a 500 whose body says nothing of it, logged).
/// A refused key of ferryd's own state (`.ferry/`: records, parts, the index) is such an
/// error too: the credentials lack a permission ferryd needs, which the operator must see, and
/// a 404 would tell a tus client its upload is gone.
pub(crate) fn from_s3(e: object_store::Error) -> StoreError {
    match e {
        object_store::Error::NotFound { .. } => StoreError::NotFound,
        object_store::Error::PermissionDenied { ref path, .. } if !is_state(path) => {
            StoreError::Forbidden
        }
        e => StoreError::Io(std::io::Error::other(e)),
    }
}

/// Whether `key` (a bucket key, prefix included) is under a `.ferry/` segment.
fn is_state(key: &str) -> bool {
    key.split('/').any(|seg| seg == RESERVED)
}

impl Store for S3Store {
    fn open<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<Object, StoreError>> {
        Box::pin(async move {
            if !self.vis.serves_path(path) {
                return Err(StoreError::NotFound);
            }
            let key = self.key(path).ok_or(StoreError::NotFound)?;
            if path.is_root() {
                return Ok(Object::Dir(dir_meta()));
            }
            // The digest (`Repr-Digest`) is asked for at once with the HEAD, so it costs no
            // time, at most a small GET (see `index::Digests`); it counts only for the version
            // the HEAD saw.
            let digest = async {
                match self.index {
                    true => self.digest_of(path).await,
                    false => None,
                }
            };
            let (head, digest) = tokio::join!(self.client.head(&key), digest);
            match head {
                Ok(m) => {
                    let meta = meta_of(&m);
                    let sha = match digest {
                        Some((etag, sha)) if m.e_tag.as_deref() == Some(etag.as_str()) => Some(sha),
                        Some(_) => {
                            self.digest_stale(path);
                            None
                        }
                        None => None,
                    };
                    let file = read::S3File::new(self.client.clone(), key, meta).with_sha256(sha);
                    Ok(Object::File(Arc::new(file)))
                }
                Err(object_store::Error::NotFound { .. }) if self.is_dir(&key).await? => {
                    Ok(Object::Dir(dir_meta()))
                }
                Err(e) => Err(from_s3(e)),
            }
        })
    }

    /// Uploads with `--single-instance` (see [`S3Options::single_instance`]), or shared by
    /// several instances on a server that honours conditional writes
    /// ([`S3Store::share_uploads`]).
    fn uploads(&self) -> Option<&dyn super::upload::UploadStore> {
        (self.single_instance || self.shared).then_some(self as &dyn super::upload::UploadStore)
    }

    /// A delimiter listing, a page at a time, streamed (see [`list`]).
    fn list<'a>(&'a self, path: &'a RelPath) -> BoxFuture<'a, Result<EntryStream, StoreError>> {
        Box::pin(async move {
            if !self.vis.serves_path(path) {
                return Err(StoreError::NotFound);
            }
            let key = self.key(path).ok_or(StoreError::NotFound)?;
            let mut walk = list::Walk::new(self.s3.clone(), key, self.vis, self.list_page);
            if !walk.exists().await? && !path.is_root() {
                return Err(StoreError::NotFound);
            }
            Ok(walk.stream())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(e_tag: Option<&str>) -> ObjectMeta {
        ObjectMeta {
            location: Key::from("a"),
            last_modified: SystemTime::UNIX_EPOCH.into(),
            size: 5,
            e_tag: e_tag.map(str::to_owned),
            version: None,
        }
    }

    #[test]
    fn a_refused_key_of_ferryds_state_is_a_server_error_a_refused_served_key_a_404() {
        let denied = |path: &str| object_store::Error::PermissionDenied {
            path: path.to_owned(),
            source: "403 AccessDenied".into(),
        };
        for state in [
            "www/.ferry/uploads/ab.info",
            ".ferry/index/5/ab",
            "a/b/.ferry/x",
        ] {
            assert!(
                matches!(from_s3(denied(state)), StoreError::Io(_)),
                "{state}"
            );
        }
        for served in ["www/a.bin", "www/.ferryx/a", "www/x.ferry", "a.ferry/b"] {
            assert!(
                matches!(from_s3(denied(served)), StoreError::Forbidden),
                "{served}"
            );
        }
    }

    // RFC 9110 §8.8.3: an entity tag is a quoted string; S3's are strong.
    #[test]
    fn s3_etags_become_strong_quoted_tags() {
        assert_eq!(meta_of(&object(Some("\"abc\""))).etag, "\"abc\"");
        assert_eq!(meta_of(&object(Some("abc-3"))).etag, "\"abc-3\"");
        assert_eq!(meta_of(&object(Some("W/\"abc\""))).etag, "\"abc\"");
        assert_eq!(meta_of(&object(None)).etag, "\"5-0\"");
        assert_eq!(meta_of(&object(Some("\""))).etag, "\"5-0\"");
    }

    // Review: object_store's 30 s limit on a whole request cut long downloads from S3 (see
    // `client_options`).
    #[test]
    fn s3_requests_have_no_total_timeout_but_an_idle_one() {
        use object_store::ClientConfigKey as C;
        let b = S3Options::default().builder();
        let get = |k| b.get_config_value(&AmazonS3ConfigKey::Client(k));
        assert_eq!(get(C::Timeout), None);
        assert_eq!(get(C::ReadTimeout).as_deref(), Some("5m"));
    }

    #[test]
    fn keys_join_the_prefix_and_refuse_what_s3_cannot_store() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let store = |prefix: &str| {
            S3Store::new(&S3Options {
                bucket: "b".into(),
                prefix: prefix.into(),
                ..S3Options::default()
            })
            .unwrap()
        };
        let p = |s: &str| RelPath::from_uri_path(s).unwrap();
        assert_eq!(store("").key(&p("/a/b.txt")).unwrap().as_ref(), "a/b.txt");
        assert_eq!(store("x/y").key(&p("/a")).unwrap().as_ref(), "x/y/a");
        assert_eq!(store("x").key(&p("/")).unwrap().as_ref(), "x");
        assert_eq!(
            store("").key(&p("/报告 #1.pdf")).unwrap().as_ref(),
            "报告 #1.pdf"
        );
        assert!(store("").key(&p("/a%01b")).is_none());
    }
}
