//! TLS certificates that change without a restart (what Caddy and `nginx -s reload` do for
//! certbot's renewals): the rustls config asks a [`CertStore`] for the certificate at each
//! handshake, so new connections get the current one and established connections keep the
//! one they started with. The store reloads on [`CertStore::reload`] (SIGHUP) and when the
//! files' modification times change ([`CertStore::spawn_watch`], polling). A new pair that
//! does not load, or whose key does not match the certificate, is logged and the old pair
//! stays in use.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

pub struct CertStore {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
    /// Modification times of (cert, key) when last loaded.
    seen: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl std::fmt::Debug for CertStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertStore")
            .field("cert", &self.cert)
            .finish()
    }
}

impl CertStore {
    /// Loads the pair; fails if it does not load (at start there is no old pair to keep).
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Arc<Self>> {
        let seen = mtimes(cert, key);
        let ck = load_pair(cert, key)?;
        Ok(Arc::new(Self {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            current: RwLock::new(Arc::new(ck)),
            seen: Mutex::new(seen),
        }))
    }

    /// Loads the files again. On error the current pair stays and the error is returned
    /// (and logged).
    pub fn reload(&self) -> anyhow::Result<()> {
        let seen = mtimes(&self.cert, &self.key);
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = seen;
        match load_pair(&self.cert, &self.key) {
            Ok(ck) => {
                *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
                Ok(())
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "TLS certificate reload failed; keeping the old one");
                Err(e)
            }
        }
    }

    /// Reloads if either file's modification time changed since the last load.
    pub fn reload_if_changed(&self) {
        let now = mtimes(&self.cert, &self.key);
        let changed = *self.seen.lock().unwrap_or_else(|p| p.into_inner()) != now;
        if changed {
            let _ = self.reload();
        }
    }

    /// Polls the files every `every` and reloads when they change.
    pub fn spawn_watch(self: &Arc<Self>, every: Duration) -> tokio::task::JoinHandle<()> {
        let me = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match me.upgrade() {
                    Some(s) => s.reload_if_changed(),
                    None => return,
                }
            }
        })
    }

    /// A rustls server config that takes its certificate from this store, offering h2 and
    /// http/1.1 by ALPN.
    pub fn server_config(self: &Arc<Self>) -> anyhow::Result<Arc<rustls::ServerConfig>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(cfg))
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

fn mtimes(cert: &Path, key: &Path) -> (Option<SystemTime>, Option<SystemTime>) {
    let m = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    (m(cert), m(key))
}

/// Reads and checks a PEM chain and key: parsable, non-empty, and the key matches the leaf.
fn load_pair(cert: &Path, key: &Path) -> anyhow::Result<CertifiedKey> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("reading certificate {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parsing certificate {}", cert.display()))?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in {}", cert.display());
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading private key {}", key.display()))?;
    let provider = rustls::crypto::ring::default_provider();
    let ck = CertifiedKey::from_der(certs, key, &provider)
        .context("the private key does not match the certificate")?;
    Ok(ck)
}
