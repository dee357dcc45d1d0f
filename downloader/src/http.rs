//! The one HTTP client builder of `ferry get` and `ferry put` (issue 9 §7): the shared flags
//! ([`SharedArgs`]) become one `reqwest::Client` — user agent, extra headers, bearer token,
//! connect timeout, HTTP/1.1 unless asked otherwise.
//!
//! Headers set here go with every request the client makes. On a redirect to another origin
//! (scheme, host or port) reqwest drops `Authorization`, `Cookie` and `Proxy-Authorization`
//! before following it (reqwest `redirect::remove_sensitive_headers`), which is curl's rule.

use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use reqwest::Client;

use crate::auth::redact;
use crate::cli::shared::SharedArgs;
use crate::error::Error;

/// Idle connections kept per host: `-x` and `-j` go up to 64 each.
const IDLE_PER_HOST: usize = 64;

/// Installs the ring crypto provider for rustls (once per process).
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Builds the client for `shared`. `http2` allows HTTP/2; otherwise every connection is
/// HTTP/1.1, so that `-x` connections are really separate connections.
pub fn client(shared: &SharedArgs, http2: bool) -> Result<Client, Error> {
    install_crypto_provider();
    let mut builder = Client::builder()
        .user_agent(user_agent(shared))
        .default_headers(default_headers(shared)?)
        .connect_timeout(shared.timeout)
        .pool_max_idle_per_host(IDLE_PER_HOST)
        .tcp_nodelay(true);
    if !http2 {
        builder = builder.http1_only();
    }
    builder = tls(builder, shared)?;
    if let Some(proxy) = &shared.proxy {
        let p = reqwest::Proxy::all(proxy.as_str())
            .map_err(|e| Error::Usage(format!("invalid --proxy {:?}: {e}", redact(proxy))))?;
        builder = builder.proxy(p.no_proxy(reqwest::NoProxy::from_env()));
    }
    builder
        .build()
        .map_err(|e| Error::Usage(format!("cannot set up the HTTP client: {e}")))
}

/// `--ca-cert` adds roots to the system's; `--insecure` turns verification off (warned).
fn tls(
    mut builder: reqwest::ClientBuilder,
    shared: &SharedArgs,
) -> Result<reqwest::ClientBuilder, Error> {
    if let Some(path) = &shared.ca_cert {
        let bad = |why: String| Error::Usage(format!("--ca-cert {}: {why}", path.display()));
        let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| bad(e.to_string()))?;
        if certs.is_empty() {
            return Err(bad(
                "expected PEM certificates (-----BEGIN CERTIFICATE-----)".into(),
            ));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    if shared.insecure {
        tracing::warn!(
            "--insecure: TLS certificates are not verified; anyone on the path can read and change this transfer"
        );
        builder = builder.tls_danger_accept_invalid_certs(true);
    }
    Ok(builder)
}

fn user_agent(shared: &SharedArgs) -> String {
    shared
        .user_agent
        .clone()
        .unwrap_or_else(|| format!("ferry/{}", env!("CARGO_PKG_VERSION")))
}

fn default_headers(shared: &SharedArgs) -> Result<HeaderMap, Error> {
    let mut headers = HeaderMap::new();
    for (name, value) in &shared.headers {
        headers.append(name.clone(), value.clone());
    }
    if let Some(token) = shared.bearer() {
        let mut value = HeaderValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Error::Usage("invalid --token: expected printable ASCII".into()))?;
        value.set_sensitive(true);
        headers.insert(AUTHORIZATION, value);
    }
    Ok(headers)
}
