//! The browser UI: the listing page's stylesheet and scripts and the vendored libraries they
//! use, compiled into the binary (`include_bytes!`) and served under one reserved prefix,
//! [`prefix()`] = `/.ferry-ui/<hash>/`, where `<hash>` is derived from the assets' bytes.
//!
//! The prefix is reserved: the router asks this module before the file handler, so a path
//! under `/.ferry-ui/` never reaches ROOT, even with `--allow-hidden` (a `ROOT/.ferry-ui` is
//! shadowed and left out of the root listing). Because the hash changes whenever an asset
//! does, responses are `Cache-Control: immutable` for a year. Each asset is an in-memory
//! [`FileHandle`], served by the same code as a file (preconditions, strong ETag, `Range`);
//! there is no second range implementation. The total is small (185 kB, 61 kB gzip), so
//! nothing is precompressed.
//!
//! Every UI response and every listing carries [`CSP`] and `X-Content-Type-Options: nosniff`.

mod assets;

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use ferry_proto::disposition::Disposition;
use ferry_proto::ByteRange;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Response};
use sha2::{Digest, Sha256};

use crate::body::Body;
use crate::error::{Error, Result};
use crate::files;
use crate::store::{ByteStream, FileHandle, Meta};

/// The reserved top-level path segment; nothing under it is ever looked up in ROOT.
pub const RESERVED: &str = ".ferry-ui";

/// `default-src 'self'` for everything; `'wasm-unsafe-eval'` lets hash-wasm compile its
/// SHA-256 WebAssembly (CSP Level 3 §6.7.5.1); no inline script or style anywhere.
pub const CSP: &str = "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; \
worker-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
frame-ancestors 'none'; form-action 'self'";

/// One embedded asset: its bytes and the metadata a file response needs.
pub struct Asset {
    name: &'static str,
    bytes: Bytes,
    meta: Meta,
}

impl FileHandle for Asset {
    fn meta(&self) -> &Meta {
        &self.meta
    }

    fn read(self: Arc<Self>, range: ByteRange) -> ByteStream {
        let slice = usize::try_from(range.start)
            .ok()
            .zip(usize::try_from(range.end).ok())
            .and_then(|(s, e)| self.bytes.get(s..e).map(|_| self.bytes.slice(s..e)));
        let item = slice.ok_or_else(|| std::io::Error::other("range outside the asset"));
        Box::pin(futures_util::stream::once(async move { item }))
    }
}

struct Ui {
    prefix: String,
    assets: Vec<Arc<Asset>>,
}

fn ui() -> &'static Ui {
    static UI: OnceLock<Ui> = OnceLock::new();
    UI.get_or_init(|| {
        let started = std::time::SystemTime::now();
        let mut all = Sha256::new();
        let assets = assets::ALL
            .iter()
            .map(|(name, data)| {
                let digest = Sha256::digest(data);
                all.update(digest);
                Arc::new(Asset {
                    name,
                    bytes: Bytes::from_static(data),
                    meta: Meta {
                        len: data.len() as u64,
                        modified: started,
                        etag: format!("\"{}\"", hex::encode(&digest[..16])),
                    },
                })
            })
            .collect();
        let version = hex::encode(&all.finalize()[..6]);
        Ui {
            prefix: format!("/{RESERVED}/{version}/"),
            assets,
        }
    })
}

/// `/.ferry-ui/<hash>/`: where the page loads its assets from.
pub fn prefix() -> &'static str {
    &ui().prefix
}

/// Whether `path` lies under the reserved prefix (any version).
pub fn owns(path: &str) -> bool {
    path.strip_prefix('/')
        .and_then(|p| p.strip_prefix(RESERVED))
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// Serves an asset (GET/HEAD; other methods 405). A path of another version, or an unknown
/// name, is 404: an old page must not get new code under an immutable URL.
pub async fn serve(req: &Parts) -> Result<Response<Body>> {
    if req.method != Method::GET && req.method != Method::HEAD {
        return Err(Error::MethodNotAllowed);
    }
    let name = req
        .uri
        .path()
        .strip_prefix(prefix())
        .ok_or(Error::NotFound)?;
    let asset = ui()
        .assets
        .iter()
        .find(|a| a.name == name)
        .ok_or(Error::NotFound)?;
    let file: Arc<dyn FileHandle> = asset.clone();
    let mut resp =
        files::serve_file(file, name, Disposition::Inline, &req.method, &req.headers).await?;
    let h = resp.headers_mut();
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    h.remove(header::CONTENT_DISPOSITION);
    secure(h);
    Ok(resp)
}

/// Whether a request is a browser navigation that should get a page rather than a bare error:
/// a GET that accepts HTML.
pub fn wants_page(req: &Parts) -> bool {
    req.method == Method::GET
        && req
            .headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("text/html"))
}

/// The 401 a browser gets under `--read-token` without the token: a small page whose script
/// (`login.js`) takes the token from the fragment (`#read-token=…`) or a form, stores it in
/// the [`crate::auth::READ_COOKIE`] cookie and reloads. Without JavaScript the form cannot set
/// the cookie; such readers use `Authorization: Bearer` (curl, wget, rclone).
pub fn login_page() -> Response<Body> {
    let ui = prefix();
    let html = format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n\
<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
<meta name=\"color-scheme\" content=\"light dark\">\n<title>Read token needed</title>\n\
<link rel=\"icon\" href=\"data:,\">\n<link rel=\"stylesheet\" href=\"{ui}ferry.css\">\n\
<script type=\"module\" src=\"{ui}login.js\"></script>\n</head>\n<body>\n<main>\n\
<h1 id=\"title\">Read token needed</h1>\n\
<p id=\"why\">This server needs a read token to show its files.</p>\n\
<form id=\"login\"><label for=\"read-token\" id=\"label\">Read token</label>\n\
<input type=\"password\" id=\"read-token\" autocomplete=\"current-password\" required>\n\
<label><input type=\"checkbox\" id=\"remember\"> <span id=\"remember-label\">Remember on this device</span></label>\n\
<button type=\"submit\" class=\"primary\" id=\"open\">Open</button></form>\n\
<p class=\"alert\" role=\"alert\" id=\"login-error\"></p>\n\
<noscript><p>Without JavaScript, send the token as <code>Authorization: Bearer</code>.</p></noscript>\n\
</main>\n</body></html>\n"
    );
    let mut resp = Response::new(crate::body::full(html));
    *resp.status_mut() = http::StatusCode::UNAUTHORIZED;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(crate::auth::CHALLENGE),
    );
    secure(h);
    resp
}

/// Adds the page's security headers: [`CSP`] and `nosniff`.
pub fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_is_reserved_and_versioned() {
        assert!(prefix().starts_with("/.ferry-ui/"));
        assert!(prefix().ends_with('/'));
        assert_eq!(prefix().len(), "/.ferry-ui/".len() + 12 + 1);
        assert!(owns("/.ferry-ui/"));
        assert!(owns("/.ferry-ui"));
        assert!(owns("/.ferry-ui/0000/x.js"));
        assert!(!owns("/.ferry-uix"));
        assert!(!owns("/a/.ferry-ui/"));
    }

    #[test]
    fn every_asset_has_a_type_and_a_distinct_etag() {
        let ui = ui();
        for a in &ui.assets {
            assert!(
                !files::content_type(a.name).starts_with("application/octet-stream"),
                "{}",
                a.name
            );
        }
        let mut tags: Vec<_> = ui.assets.iter().map(|a| &a.meta.etag).collect();
        tags.sort();
        tags.dedup();
        assert_eq!(tags.len(), ui.assets.len());
    }
}
