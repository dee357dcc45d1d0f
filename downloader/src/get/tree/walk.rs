//! The tree walk: reads the start directory's listing, then each subdirectory's, breadth
//! first, and collects the files. Each listing is asked for as JSON (ferryd answers with its
//! JSON listing, which carries exact sizes); servers that send HTML get their links read by
//! [`super::listing::parse_html`]. Every link goes through [`Scope::member`].
//!
//! Bounds against a hostile or looping server (a symlink to `..` serves an endless tree):
//! each directory URL is read once, at most [`MAX_DEPTH`] levels, [`MAX_ENTRIES`] files,
//! listings of at most [`MAX_LISTING_BYTES`].

use std::collections::{HashSet, VecDeque};

use http::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Client, Url};

use super::listing::{parse_html, parse_json, Link};
use super::scope::{RelPath, Scope, Skip};
use crate::error::{Error, Result};
use crate::get::WorkerOptions;
use crate::retry::Retries;

pub const MAX_DEPTH: usize = 64;
pub const MAX_ENTRIES: usize = 1_000_000;
pub const MAX_LISTING_BYTES: usize = 64 << 20;

/// ferryd answers JSON to this; nginx, Apache, Caddy and python send HTML whatever it says.
const ACCEPT_LISTING: &str = "application/json, text/html;q=0.9, */*;q=0.5";

/// A file of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteFile {
    pub url: Url,
    pub rel: RelPath,
    /// The exact size when the listing gave it (ferryd's JSON).
    pub size: Option<u64>,
}

/// What the walk found.
#[derive(Debug, Default)]
pub struct Tree {
    pub files: Vec<RemoteFile>,
    /// Subdirectories whose listing could not be read, with the reason.
    pub failed_dirs: Vec<String>,
    /// Links below the start whose path is unsafe to write (reported, never followed).
    pub refused: Vec<String>,
}

/// Walks the tree below `scope`. Fails only when the start listing cannot be read; a
/// subdirectory that fails is recorded in [`Tree::failed_dirs`] and the walk goes on.
pub async fn walk(client: &Client, scope: &Scope, opts: &WorkerOptions) -> Result<Tree> {
    let mut tree = Tree::default();
    let mut seen: HashSet<Url> = HashSet::from([scope.root().clone()]);
    let mut queue: VecDeque<(Url, usize)> = VecDeque::from([(scope.root().clone(), 0)]);
    while let Some((dir, depth)) = queue.pop_front() {
        let (base, links) = match fetch_listing(client, &dir, opts).await {
            Ok(found) => found,
            Err(e) if depth == 0 => return Err(e),
            Err(e) => {
                tree.failed_dirs.push(e.to_string());
                continue;
            }
        };
        for link in links {
            match scope.member(&base, &link.href, link.dir) {
                Ok(m) if m.dir => {
                    if depth + 1 < MAX_DEPTH && seen.insert(m.url.clone()) {
                        queue.push_back((m.url, depth + 1));
                    }
                }
                Ok(m) => {
                    if tree.files.len() >= MAX_ENTRIES {
                        return Err(protocol(&dir, format!("more than {MAX_ENTRIES} files")));
                    }
                    if seen.insert(m.url.clone()) {
                        tree.files.push(RemoteFile {
                            url: m.url,
                            rel: m.rel,
                            size: link.size,
                        });
                    }
                }
                Err(Skip::Unsafe(why)) => tree.refused.push(format!("{}: {why}", link.href)),
                Err(Skip::Outside) => {}
            }
        }
    }
    tree.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(tree)
}

/// One listing, retried like every request (backoff, `Retry-After`, `--max-tries`). Returns
/// the URL it was read from after redirects (links are relative to it) and its links.
pub async fn fetch_listing(
    client: &Client,
    url: &Url,
    opts: &WorkerOptions,
) -> Result<(Url, Vec<Link>)> {
    let mut retries = Retries::new(opts.backoff);
    loop {
        match fetch_once(client, url, opts).await {
            Err(e) if e.is_retryable() && retries.failures() + 1 < opts.max_tries => {
                let after = match &e {
                    Error::Status { retry_after, .. } => *retry_after,
                    _ => None,
                };
                let wait = retries.failed(after);
                tracing::info!("listing {url}: {e}; retrying in {wait:?}");
                tokio::time::sleep(wait).await;
            }
            other => return other,
        }
    }
}

async fn fetch_once(client: &Client, url: &Url, opts: &WorkerOptions) -> Result<(Url, Vec<Link>)> {
    let network = |source| Error::Network {
        url: url.to_string(),
        source,
    };
    let stalled = || Error::Stalled {
        url: url.to_string(),
        after: opts.timeout,
    };
    let send = opts
        .auth
        .apply(client.get(url.clone()), url.as_str())
        .header(ACCEPT, ACCEPT_LISTING)
        .send();
    let mut resp = tokio::time::timeout(opts.timeout, send)
        .await
        .map_err(|_| stalled())?
        .map_err(network)?;
    let status = resp.status();
    if !status.is_success() {
        return Err(Error::Status {
            url: url.to_string(),
            status: status.as_u16(),
            retry_after: None,
        });
    }
    let base = resp.url().clone();
    let ctype = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let json = ctype.starts_with("application/json");
    if !json && !ctype.starts_with("text/html") {
        let msg =
            format!("expected a directory listing (HTML or JSON), got Content-Type {ctype:?}");
        return Err(Error::Usage(format!("{url}: {msg}")));
    }
    let mut body = Vec::new();
    while let Some(chunk) = tokio::time::timeout(opts.timeout, resp.chunk())
        .await
        .map_err(|_| stalled())?
        .map_err(network)?
    {
        if body.len() + chunk.len() > MAX_LISTING_BYTES {
            return Err(protocol(
                url,
                format!("listing larger than {MAX_LISTING_BYTES} bytes"),
            ));
        }
        body.extend_from_slice(&chunk);
    }
    let links = if json {
        parse_json(&body).map_err(|msg| protocol(url, msg))?
    } else {
        parse_html(&String::from_utf8_lossy(&body))
    };
    Ok((base, links))
}

fn protocol(url: &Url, msg: String) -> Error {
    Error::Protocol {
        url: url.to_string(),
        msg,
    }
}
