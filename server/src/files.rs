//! GET and HEAD of stored files and directories (RFC 9110 §9.3.1-9.3.2, §13, §14).

use std::sync::Arc;

use ferry_proto::disposition::Disposition;
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
use crate::store::{FileHandle, Object, Store};

pub mod digest;
mod headers;
use headers::{put, valid, FileHeaders};

/// Query flags the file handler understands: `?download` and `?json`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Query {
    pub download: bool,
    pub json: bool,
}

impl Query {
    pub fn parse(q: Option<&str>) -> Self {
        let mut out = Query::default();
        let Some(q) = q else {
            return out;
        };
        for pair in q.split('&') {
            match pair.split('=').next().unwrap_or("") {
                "download" => out.download = true,
                "json" => out.json = true,
                _ => {}
            }
        }
        out
    }
}

pub async fn serve(
    store: &dyn Store,
    req: &mut Parts,
    page: listing::Page<'_>,
) -> Result<Response<Body>> {
    let path = RelPath::from_uri_path(req.uri.path())?;
    let query = Query::parse(req.uri.query());
    let object = match store.open_now(&path) {
        Some(opened) => opened?,
        None => store.open(&path).await?,
    };
    match object {
        Object::Dir(_) if !req.uri.path().ends_with('/') => Ok(redirect_to_slash(req)),
        Object::Dir(_) => {
            let entries = store.list(&path).await?;
            Ok(listing::respond(
                &path,
                entries,
                wants_json(&req.headers, query),
                &req.method,
                page,
            ))
        }
        Object::File(file) => {
            let name = path.file_name().unwrap_or("download");
            let disposition = if query.download {
                Disposition::Attachment
            } else {
                Disposition::Inline
            };
            let plan = plan(file.as_ref(), &req.method, &req.headers);
            let want = digest::wanted(&req.headers);
            let body = body_for(&file, &plan, &req.method).await?;
            // The request's header map, emptied, carries the response: hyper hands each
            // response's map back for parsing the next request, so a keep-alive connection
            // serving files allocates no header maps at all.
            let mut map = std::mem::take(&mut req.headers);
            map.clear();
            let how = How {
                disposition,
                method: &req.method,
                digest: want,
            };
            Ok(respond(&file, name, how, plan, body, map))
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
    let plan = plan(file.as_ref(), method, headers);
    let body = body_for(&file, &plan, method).await?;
    let map = HeaderMap::with_capacity(RESPONSE_HEADERS);
    let how = How {
        disposition,
        method,
        digest: digest::wanted(headers),
    };
    Ok(respond(&file, name, how, plan, body, map))
}

/// What the request asks of the response beyond the plan.
struct How<'a> {
    disposition: Disposition,
    method: &'a Method,
    /// `Repr-Digest` may go out (see [`digest::wanted`]).
    digest: bool,
}

/// Room for every header a file response carries, so its map is allocated once, not grown.
const RESPONSE_HEADERS: usize = 11;

/// What the request's headers ask of the file, decided in the RFC 9110 §13.2.2 order:
/// preconditions first, then `Range`.
enum Plan {
    /// A 304 or 412.
    Bare(StatusCode),
    Send(RangeOutcome),
}

fn plan(file: &dyn FileHandle, method: &Method, headers: &HeaderMap) -> Plan {
    let meta = file.meta();
    let validators = Validators {
        etag: &meta.etag,
        last_modified: meta.modified,
    };
    let honor_range = match conditional::evaluate(method, headers, validators) {
        Precondition::Failed => return Plan::Bare(StatusCode::PRECONDITION_FAILED),
        Precondition::NotModified => return Plan::Bare(StatusCode::NOT_MODIFIED),
        Precondition::Proceed { honor_range } => honor_range,
    };
    // RFC 9110 §14.2 defines Range for GET; HEAD answers with the headers GET would carry.
    Plan::Send(match headers.get(header::RANGE).map(|v| v.to_str()) {
        Some(Ok(spec)) if honor_range => range::resolve(spec, meta.len),
        _ => RangeOutcome::Full,
    })
}

/// The body `plan` calls for, read before any header is built: a small one now, in one
/// buffer that goes out with the head; a larger one streamed. HEAD reads nothing, nor do
/// 304/412/416 answers; a multipart body is built with its headers ([`multi`]). Only this
/// step may wait, so a response's headers are never kept in a future (#13: moving a request's
/// future, with everything it keeps, was a tenth of a small GET's work).
async fn body_for(file: &Arc<dyn FileHandle>, plan: &Plan, method: &Method) -> Result<Body> {
    let range = match plan {
        Plan::Send(RangeOutcome::Full) => ByteRange::new(0, file.meta().len),
        Plan::Send(RangeOutcome::Single(r)) => Some(*r),
        _ => None,
    };
    match range {
        Some(r) if method != Method::HEAD => {
            if r.len() > SMALL_BODY {
                return Ok(body::stream(file.clone().read(r)));
            }
            let bytes = match file.read_now(r) {
                Some(read) => read?,
                None => file.clone().read_bytes(r).await?,
            };
            Ok(body::full(bytes))
        }
        _ => Ok(body::empty()),
    }
}

/// The response `plan` calls for, with `body` (from [`body_for`]) and its headers in `map`
/// (empty).
fn respond(
    file: &Arc<dyn FileHandle>,
    name: &str,
    how: How<'_>,
    plan: Plan,
    body: Body,
    map: HeaderMap,
) -> Response<Body> {
    let method = how.method;
    let fixed = FileHeaders::of(file.as_ref(), name);
    let len = file.meta().len;
    let outcome = match plan {
        Plan::Bare(status) => return bare(status, &fixed, map),
        Plan::Send(outcome) => outcome,
    };
    let mut resp = match outcome {
        RangeOutcome::Full => {
            let mut resp = response(body, map);
            content_length(&mut resp, method, len);
            resp
        }
        RangeOutcome::Single(r) => partial(body, r, len, method, map),
        RangeOutcome::Multi(ranges) => multi(file, &ranges, name, &fixed, map),
        RangeOutcome::Unsatisfiable => {
            let mut resp = response(body, map);
            *resp.status_mut() = StatusCode::RANGE_NOT_SATISFIABLE;
            let h = resp.headers_mut();
            set(h, header::CONTENT_RANGE, unsatisfied_content_range(len));
            h.insert(header::CONTENT_LENGTH, HeaderValue::from(0u64));
            resp
        }
    };
    let h = resp.headers_mut();
    fixed.validators(h);
    if how.digest && resp.status() != StatusCode::RANGE_NOT_SATISFIABLE {
        // RFC 9530 §3: the digest of the whole representation, on 200 and 206 alike.
        fixed.repr_digest(file.as_ref(), resp.headers_mut());
    }
    let status = resp.status();
    let h = resp.headers_mut();
    if status != StatusCode::PARTIAL_CONTENT {
        // A 206 is itself the answer to a range: nginx leaves `Accept-Ranges` out of it, and
        // so does ferryd (RFC 9110 §14.3 makes it optional), a header less per small GET.
        h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    if !h.contains_key(header::CONTENT_TYPE) {
        put(h, header::CONTENT_TYPE, &fixed.content_type);
    }
    put(
        h,
        header::CONTENT_DISPOSITION,
        fixed.disposition(how.disposition),
    );
    if method == Method::HEAD {
        *resp.body_mut() = body::empty();
    }
    resp
}

/// A 206 `multipart/byteranges` response; each part is labelled with the file's type.
fn multi(
    file: &Arc<dyn FileHandle>,
    ranges: &[ByteRange],
    name: &str,
    fixed: &FileHeaders,
    map: HeaderMap,
) -> Response<Body> {
    let part_type = match fixed.content_type.as_ref().map(|v| v.to_str()) {
        Some(Ok(t)) => t.to_owned(),
        _ => content_type(name),
    };
    let boundary = format!("{:016x}", fastrand_u64());
    let m = multipart::multipart(file.clone(), ranges, &part_type, &boundary);
    let mut resp = response(body::stream(m.body), map);
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(m.content_length));
    set(h, header::CONTENT_TYPE, m.content_type);
    resp
}

/// Responses up to this size are read before the head is sent.
const SMALL_BODY: u64 = 64 * 1024;

fn partial(body: Body, r: ByteRange, len: u64, method: &Method, map: HeaderMap) -> Response<Body> {
    let mut resp = response(body, map);
    *resp.status_mut() = StatusCode::PARTIAL_CONTENT;
    content_length(&mut resp, method, r.len());
    // Digits and separators only: always a valid value.
    if let Ok(v) = HeaderValue::from_bytes(r.content_range_text(len).as_bytes()) {
        resp.headers_mut().insert(header::CONTENT_RANGE, v);
    }
    resp
}

/// `Content-Length: len`, unless hyper writes it: for a GET whose body is one buffer of
/// exactly `len` bytes, hyper (HTTP/1.1 and HTTP/2 alike) sends the body's exact size as
/// `Content-Length` when the response has none, straight into its output buffer, where
/// inserting it here costs an allocation and a header-map insert per response. A HEAD
/// (empty body) or a streamed body (no exact size) gets the header here.
fn content_length(resp: &mut Response<Body>, method: &Method, len: u64) {
    use http_body::Body as _;
    if method == Method::HEAD || resp.body().size_hint().exact() != Some(len) {
        resp.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

/// A response with headers in `map` (empty, allocated already).
fn response(body: Body, map: HeaderMap) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.headers_mut() = map;
    resp
}

/// A 304 or 412: validators, no body (RFC 9110 §15.4.5 lists what a 304 carries).
fn bare(status: StatusCode, fixed: &FileHeaders, map: HeaderMap) -> Response<Body> {
    let mut resp = response(body::empty(), map);
    *resp.status_mut() = status;
    fixed.validators(resp.headers_mut());
    resp
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
    if let Some(v) = valid(name.clone(), value) {
        h.insert(name, v);
    }
}

fn fastrand_u64() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    // The response reuses the request's header map (emptied): nothing of the request may
    // show through.
    #[tokio::test]
    async fn response_headers_carry_nothing_of_the_request() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("f.txt"), b"hello").unwrap();
        let state = tempfile::tempdir().unwrap();
        let opts = crate::store::fs::FsOptions {
            state_dir: Some(state.path().to_path_buf()),
            index: None,
            ..Default::default()
        };
        let store = crate::store::fs::FsStore::new(dir.path(), opts).unwrap();
        let (mut parts, ()) = http::Request::get("/f.txt")
            .header(header::RANGE, "bytes=1-2")
            .header("x-probe", "1")
            .header(header::HOST, "x")
            .body(())
            .unwrap()
            .into_parts();
        let resp = serve(&store, &mut parts, Default::default()).await.unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT);
        let mut names: Vec<&str> = resp.headers().keys().map(|k| k.as_str()).collect();
        names.sort_unstable();
        // No content-length: hyper writes it from the body's exact length (see
        // `content_length`; e2e tests read it on the wire).
        assert_eq!(
            names,
            [
                "content-disposition",
                "content-range",
                "content-type",
                "etag",
                "last-modified"
            ]
        );
        assert_eq!(resp.headers()[header::CONTENT_RANGE], "bytes 1-2/5");
    }

    async fn get(store: &dyn Store, want: Option<&str>, range: &str) -> Response<Body> {
        let mut req = http::Request::get("/f.txt").header(header::RANGE, range);
        if let Some(w) = want {
            req = req.header(ferry_proto::headers::WANT_REPR_DIGEST, w);
        }
        let (mut parts, ()) = req.body(()).unwrap().into_parts();
        serve(store, &mut parts, Default::default()).await.unwrap()
    }

    // RFC 9530 §3: the digest of the whole file, on 200 and 206; §4: only if wanted.
    #[tokio::test]
    async fn repr_digest_follows_the_index_and_want_repr_digest() {
        use ferry_proto::headers::REPR_DIGEST;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f.txt");
        std::fs::write(&p, b"hello").unwrap();
        let f = std::fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(5))
            .unwrap();
        let state = tempfile::tempdir().unwrap();
        let opts = crate::store::fs::FsOptions {
            state_dir: Some(state.path().to_path_buf()),
            ..Default::default()
        };
        let store = crate::store::fs::FsStore::new(dir.path(), opts).unwrap();
        let ix = store.index().unwrap().clone();
        crate::index::tests::until(|| ix.stats().ready.then_some(()));
        let sha = "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:";
        for (want, range, expect) in [
            (None, "bytes=1-2", Some(sha)),
            (None, "bytes=0-", Some(sha)),
            (Some("sha-256=3, sha-512=9"), "bytes=x", Some(sha)),
            (Some("sha-512=9"), "bytes=1-2", None),
            (Some("sha-256=0"), "bytes=1-2", None),
            (None, "bytes=9-", None), // 416
        ] {
            let resp = get(&store, want, range).await;
            let got = resp
                .headers()
                .get(&REPR_DIGEST)
                .map(|v| v.to_str().unwrap());
            assert_eq!(got, expect, "{want:?} {range}");
        }
    }
}
