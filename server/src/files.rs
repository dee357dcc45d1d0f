//! GET and HEAD of stored files and directories (RFC 9110 §9.3.1-9.3.2, §13, §14).

use std::sync::Arc;

use ferry_proto::disposition::{content_disposition, Disposition};
use ferry_proto::range::unsatisfied_content_range;
use ferry_proto::ByteRange;
use http::request::Parts;
use http::{header, HeaderMap, HeaderValue, Method, Response, StatusCode};

use crate::body::{self, Body};
use crate::conditional::{self, Precondition, Validators};
use crate::error::Result;
use crate::listing;
use crate::multipart;
use crate::path::RelPath;
use crate::range::{self, RangeOutcome};
use crate::store::{fs::http_date, FileHandle, Meta, Object, Store};

/// Query flags the file handler understands: `?download` and `?json`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Query {
    pub download: bool,
    pub json: bool,
}

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let mut out = Query::default();
        for pair in q.unwrap_or("").split('&') {
            match pair.split('=').next().unwrap_or("") {
                "download" => out.download = true,
                "json" => out.json = true,
                _ => {}
            }
        }
        out
    }
}

pub async fn serve(store: &dyn Store, req: &Parts) -> Result<Response<Body>> {
    let path = RelPath::from_uri_path(req.uri.path())?;
    let query = Query::parse(req.uri.query());
    match store.open(&path).await? {
        Object::Dir(_) if !req.uri.path().ends_with('/') => Ok(redirect_to_slash(req)),
        Object::Dir(_) => {
            let entries = store.list(&path).await?;
            Ok(listing::respond(
                &path,
                &entries,
                wants_json(&req.headers, query),
                &req.method,
            ))
        }
        Object::File(file) => {
            let name = path.file_name().unwrap_or("download");
            let disposition = if query.download {
                Disposition::Attachment
            } else {
                Disposition::Inline
            };
            serve_file(file, name, disposition, &req.method, &req.headers).await
        }
    }
}

/// Serves one opened file, honouring preconditions and `Range`.
pub async fn serve_file(
    file: Arc<dyn FileHandle>,
    name: &str,
    disposition: Disposition,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Response<Body>> {
    let meta = file.meta().clone();
    let validators = Validators {
        etag: &meta.etag,
        last_modified: meta.modified,
    };
    let honor_range = match conditional::evaluate(method, headers, validators) {
        Precondition::Failed => return Ok(bare(StatusCode::PRECONDITION_FAILED, &meta)),
        Precondition::NotModified => return Ok(bare(StatusCode::NOT_MODIFIED, &meta)),
        Precondition::Proceed { honor_range } => honor_range,
    };
    // RFC 9110 §14.2 defines Range for GET; HEAD answers with the headers GET would carry.
    let outcome = match headers.get(header::RANGE).map(|v| v.to_str()) {
        Some(Ok(spec)) if honor_range => range::resolve(spec, meta.len),
        _ => RangeOutcome::Full,
    };
    let content_type = content_type(name);
    let mut resp = match outcome {
        RangeOutcome::Full => whole(&file, meta.len, method).await?,
        RangeOutcome::Single(r) => partial(&file, r, meta.len, method).await?,
        RangeOutcome::Multi(ranges) => {
            let boundary = format!("{:016x}", fastrand_u64());
            let m = multipart::multipart(file.clone(), &ranges, &content_type, &boundary);
            let mut resp = Response::new(body::stream(m.body));
            *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
            set(
                resp.headers_mut(),
                header::CONTENT_LENGTH,
                m.content_length.to_string(),
            );
            set(resp.headers_mut(), header::CONTENT_TYPE, m.content_type);
            resp
        }
        RangeOutcome::Unsatisfiable => {
            let mut resp = Response::new(body::empty());
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            set(
                resp.headers_mut(),
                header::CONTENT_RANGE,
                unsatisfied_content_range(meta.len),
            );
            set(resp.headers_mut(), header::CONTENT_LENGTH, "0".into());
            resp
        }
    };
    let h = resp.headers_mut();
    validator_headers(h, &meta);
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if !h.contains_key(header::CONTENT_TYPE) {
        set(h, header::CONTENT_TYPE, content_type);
    }
    set(
        h,
        header::CONTENT_DISPOSITION,
        content_disposition(disposition, name),
    );
    if method == Method::HEAD {
        *resp.body_mut() = body::empty();
    }
    Ok(resp)
}

/// The body for `range`: small ones are read now and sent as one buffer with the head, larger
/// ones streamed. HEAD reads nothing.
async fn range_body(
    file: &Arc<dyn FileHandle>,
    range: Option<ByteRange>,
    method: &Method,
) -> Result<Body> {
    match range {
        Some(r) if method != Method::HEAD => {
            if r.len() <= SMALL_BODY {
                Ok(body::full(file.clone().read_bytes(r).await?))
            } else {
                Ok(body::stream(file.clone().read(r)))
            }
        }
        _ => Ok(body::empty()),
    }
}

/// Responses up to this size are read before the head is sent.
const SMALL_BODY: u64 = 64 * 1024;

async fn whole(file: &Arc<dyn FileHandle>, len: u64, method: &Method) -> Result<Response<Body>> {
    let mut resp = Response::new(range_body(file, ByteRange::new(0, len), method).await?);
    set(resp.headers_mut(), header::CONTENT_LENGTH, len.to_string());
    Ok(resp)
}

async fn partial(
    file: &Arc<dyn FileHandle>,
    r: ByteRange,
    len: u64,
    method: &Method,
) -> Result<Response<Body>> {
    let mut resp = Response::new(range_body(file, Some(r), method).await?);
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    set(
        resp.headers_mut(),
        header::CONTENT_LENGTH,
        r.len().to_string(),
    );
    set(
        resp.headers_mut(),
        header::CONTENT_RANGE,
        r.content_range(len),
    );
    Ok(resp)
}

/// A 304 or 412: validators, no body (RFC 9110 §15.4.5 lists what a 304 carries).
fn bare(status: StatusCode, meta: &Meta) -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = status;
    validator_headers(resp.headers_mut(), meta);
    resp
}

fn validator_headers(h: &mut HeaderMap, meta: &Meta) {
    set(h, header::ETAG, meta.etag.clone());
    set(h, header::LAST_MODIFIED, http_date(meta.modified));
}

/// `Content-Type` from the extension; text types are declared UTF-8.
pub fn content_type(name: &str) -> String {
    let mime = mime_guess::from_path(name).first_or_octet_stream();
    let textual = mime.type_() == mime_guess::mime::TEXT
        || matches!(
            mime.subtype().as_str(),
            "javascript" | "json" | "xml" | "svg+xml"
        );
    if textual && mime.get_param("charset").is_none() {
        format!("{mime}; charset=utf-8")
    } else {
        mime.to_string()
    }
}

fn wants_json(headers: &HeaderMap, query: Query) -> bool {
    query.json
        || headers
            .get(header::ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|a| a.contains("application/json"))
}

fn redirect_to_slash(req: &Parts) -> Response<Body> {
    let mut location = format!("{}/", req.uri.path());
    if let Some(q) = req.uri.query() {
        location.push('?');
        location.push_str(q);
    }
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
    set(resp.headers_mut(), header::LOCATION, location);
    resp
}

/// The answer to `OPTIONS` on a file path.
pub fn options() -> Response<Body> {
    let mut resp = Response::new(body::empty());
    *resp.status_mut() = StatusCode::NO_CONTENT;
    resp.headers_mut().insert(
        header::ALLOW,
        HeaderValue::from_static("GET, HEAD, OPTIONS"),
    );
    resp
}

/// Inserts a header value we built ourselves. Values made from file names pass through
/// `content_disposition` or percent-encoding first, so they are always valid; anything that
/// still is not valid is dropped rather than sent.
pub fn set(h: &mut HeaderMap, name: header::HeaderName, value: String) {
    match HeaderValue::try_from(value) {
        Ok(v) => {
            h.insert(name, v);
        }
        Err(_) => tracing::warn!(%name, "dropped an invalid header value"),
    }
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}
