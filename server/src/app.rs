//! One [`Config`], one builder: `main` and the tests make the [`App`] the same way
//! (mini-redis, static-web-server's `Server::new(Settings)`). Flags become a `Config` in
//! `main`; everything that follows from it (which store, whether the tus endpoint runs, the
//! read token both sides check) is decided here, once.
//!
//! Process-wide services stay in `main`: signals, the TLS certificate watcher, the access-log
//! writer, the metrics listener and the hook sender attach to the built app.

use std::path::PathBuf;
use std::sync::Arc;

use crate::forwarded::Frontend;
use crate::listing::Page;
use crate::observe::Observe;
use crate::store::fs::{FsOptions, FsStore};
use crate::store::Store;
use crate::tus::{SetupError, Tus, TusConfig};

/// Where the served files live (`ROOT` or `--store URL`).
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// A local directory (the default).
    Fs { root: PathBuf, opts: FsOptions },
    /// An S3-compatible bucket (`--store s3://bucket/prefix`).
    #[cfg(feature = "s3")]
    S3(crate::store::s3::S3Options),
}

/// Everything the app is built from.
#[derive(Clone)]
pub struct Config {
    pub store: StoreConfig,
    /// The tus endpoint; `None`: no uploads.
    pub tus: Option<TusConfig>,
    /// Bearer token for every read (`--read-token`), files and uploads alike.
    pub read_token: Option<String>,
    /// How clients reach ferryd (`--public-url`, `--behind-proxy`).
    pub frontend: Frontend,
    /// Access log, metrics and rate limits (all off by default).
    pub observe: Observe,
}

impl Config {
    /// Serves the directory `root` with default options, downloads only.
    pub fn fs(root: impl Into<PathBuf>, opts: FsOptions) -> Self {
        Self {
            store: StoreConfig::Fs {
                root: root.into(),
                opts,
            },
            tus: None,
            read_token: None,
            frontend: Frontend::default(),
            observe: Observe::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot serve {}: {source}", path.display())]
    Fs {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Tus(#[from] SetupError),
    #[cfg(feature = "s3")]
    #[error("cannot use {url}: {source}")]
    S3 {
        url: String,
        source: object_store::Error,
    },
    #[cfg(feature = "s3")]
    #[error("cannot ask {url} whether it honours conditional writes: {source}")]
    Probe {
        url: String,
        source: crate::store::StoreError,
    },
}

/// Everything a request handler needs: the store and the per-feature settings.
pub struct App {
    pub store: Arc<dyn Store>,
    /// The tus endpoint, when uploads are enabled.
    pub tus: Option<Arc<Tus>>,
    /// Bearer token required for GET/HEAD of files (`--read-token`); `None` means public.
    pub read_token: Option<String>,
    /// Access log, metrics and rate limits (all off by default).
    pub observe: Observe,
    /// How clients reach ferryd (`--public-url`, `--behind-proxy`).
    pub frontend: Frontend,
    /// What is served, for the start-up line (a canonical path or a store URL).
    pub serving: String,
    /// The store's local state directory, if it has one (the hook queue lives there).
    pub state_dir: Option<PathBuf>,
    /// The tus base path, when uploads were asked for but the store cannot take them.
    pub refused_uploads: Option<String>,
}

/// Why an upload is refused on a store without the upload capability (also logged at start).
pub const UPLOADS_REFUSED: &str = "uploads are off: the S3 server ignores conditional writes \
     (a second create with If-None-Match: * succeeded), which several ferryd instances on one \
     bucket need; start ferryd with --single-instance if it is the only one writing under the \
     prefix";

impl App {
    /// An app around an opened store with every feature off (tests of the bare file server).
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self {
            store,
            tus: None,
            read_token: None,
            observe: Observe::default(),
            frontend: Frontend::default(),
            serving: String::new(),
            state_dir: None,
            refused_uploads: None,
        }
    }

    /// Opens the store and starts the tus endpoint (with its reaper) as `cfg` says. Call it
    /// inside a tokio runtime: the reaper is spawned on it. An S3 store that is to take
    /// uploads without `--single-instance` is asked first whether it honours conditional
    /// writes (issue 11 point 4).
    pub async fn build(mut cfg: Config) -> Result<Self, BuildError> {
        #[cfg(feature = "s3")]
        if let (StoreConfig::S3(o), Some(t)) = (&mut cfg.store, &mut cfg.tus) {
            // An S3 multipart upload has at most 10,000 parts: the parts are sized for the
            // largest upload, and without --max-upload-size the largest upload is what 10,000
            // parts of the smallest size hold (advertised as Tus-Max-Size, 413 past it).
            use crate::store::s3::upload::{MAX_PARTS, MIN_PART};
            let max = *t.max_size.get_or_insert(MIN_PART as u64 * MAX_PARTS);
            o.max_upload_size = Some(max);
        }
        let (store, serving, state_dir) = open_store(&cfg.store, cfg.tus.is_some()).await?;
        let mut refused_uploads = None;
        let tus = match cfg.tus {
            // A store without the upload capability (S3 on a server that ignores conditional
            // writes, without --single-instance) serves downloads; uploads are refused with a
            // reason, not a 404.
            Some(t) if store.uploads().is_none() => {
                refused_uploads = Some(t.base);
                None
            }
            Some(mut t) => {
                t.read_token = cfg.read_token.clone();
                let tus = Arc::new(Tus::new(store.clone(), t)?);
                tus.spawn_reaper();
                Some(tus)
            }
            None => None,
        };
        Ok(Self {
            store,
            tus,
            read_token: cfg.read_token,
            observe: cfg.observe,
            frontend: cfg.frontend,
            serving,
            state_dir,
            refused_uploads,
        })
    }

    /// Refuses an upload request (POST, PATCH, DELETE under the tus base) when uploads were
    /// asked for but the store cannot take them: 403 with the reason, so a tus client stops
    /// instead of retrying.
    pub(crate) fn check_uploads(
        &self,
        method: &http::Method,
        path: &str,
    ) -> crate::error::Result<()> {
        let Some(base) = self.refused_uploads.as_deref() else {
            return Ok(());
        };
        let under = path.starts_with(base) || path == base.trim_end_matches('/');
        if under
            && matches!(
                *method,
                http::Method::POST | http::Method::PATCH | http::Method::DELETE
            )
        {
            return Err(crate::error::Error::client(
                http::StatusCode::FORBIDDEN,
                UPLOADS_REFUSED,
            ));
        }
        Ok(())
    }

    /// The origins allowed by `--cors-origin` (kept with the tus settings).
    pub(crate) fn cors_origins(&self) -> Option<&[String]> {
        self.tus
            .as_ref()
            .map(|t| t.config().cors_origins.as_slice())
    }

    /// What the listing page needs to know: where uploads go and whether they need a token.
    pub(crate) fn page(&self) -> Page<'_> {
        Page {
            tus_base: self.tus.as_ref().map(|t| t.config().base.as_str()),
            upload_token: self
                .tus
                .as_ref()
                .is_some_and(|t| t.config().upload_token.is_some()),
        }
    }
}

/// The store, what it serves (for the start-up line) and its local state directory.
type Opened = (Arc<dyn Store>, String, Option<PathBuf>);

async fn open_store(cfg: &StoreConfig, uploads: bool) -> Result<Opened, BuildError> {
    #[cfg(not(feature = "s3"))]
    let _ = uploads;
    match cfg {
        StoreConfig::Fs { root, opts } => {
            let store = FsStore::new(root, opts.clone()).map_err(|source| BuildError::Fs {
                path: root.clone(),
                source,
            })?;
            let serving = store.root().display().to_string();
            let state = Some(store.state_dir().to_path_buf());
            Ok((Arc::new(store), serving, state))
        }
        #[cfg(feature = "s3")]
        StoreConfig::S3(opts) => {
            use crate::store::s3::ConditionalWrites;
            let mut store =
                crate::store::s3::S3Store::new(opts).map_err(|source| BuildError::S3 {
                    url: opts.url(),
                    source,
                })?;
            // Several instances may share the bucket only where every record change is a
            // compare-and-swap the server enforces.
            if uploads && !opts.single_instance {
                let found =
                    store
                        .probe_conditional_writes()
                        .await
                        .map_err(|source| BuildError::Probe {
                            url: opts.url(),
                            source,
                        })?;
                if found == ConditionalWrites::Honoured {
                    store.share_uploads();
                }
            }
            Ok((Arc::new(store), opts.url(), None))
        }
    }
}
