//! Three S3 requests object_store 0.14 does not offer, which concatenation, instant upload
//! and several instances need: `UploadPartCopy` of a byte range (`x-amz-copy-source-range`,
//! optionally only from the version with a given ETag, `x-amz-copy-source-if-match`),
//! `CompleteMultipartUpload` with `If-None-Match: *` that tells a taken name from a failure
//! and returns the new ETag, and `CompleteMultipartUpload` of parts whose numbers skip
//! (object_store numbers them 1, 2, 3 by position; an upload written by several instances in
//! turn skips the numbers an interrupted writer reserved, see `upload`, and S3 only asks
//! that they ascend), and `ListMultipartUploads` (object_store cannot list the multipart
//! uploads in progress; the reaper looks for orphaned ones, see `orphans`).
//!
//! Each is presigned by object_store's own signer (SigV4 query authentication, the copy and
//! condition headers bound into the signature, so S3 refuses the request if one is altered
//! or dropped) and sent with ferryd's HTTP client. S3 may answer a copy or a completion with
//! `200 OK` and an `<Error>` body; that is an error here too.

use std::ops::Range;
use std::time::Duration;

use object_store::multipart::PartId;
use object_store::path::Path as Key;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer as _};

use super::{from_s3, S3Store};
use crate::store::StoreError;

/// How long a presigned request is valid: it is sent at once.
const VALID: Duration = Duration::from_secs(15 * 60);

/// Largest range one `UploadPartCopy` copies (S3's limit on a part).
pub const MAX_COPY: u64 = 5 << 30;

/// Smallest part of a multipart upload but the last (S3's limit).
pub const MIN_S3_PART: u64 = 5 << 20;

/// Longest error text kept from an S3 answer.
const MAX_ERROR_TEXT: usize = 300;

/// How long a presigned request may wait for S3's answer, or for the next bytes of it, before
/// it fails. S3 answers a long part copy or completion at once and sends whitespace while it
/// works; a server that says nothing until a 5 GiB part copy is done (MinIO) needs minutes
/// at disk speed. Without a limit, a server that stops answering held the publish (and its
/// upload's lock) forever.
pub(super) const IDLE: Duration = Duration::from_secs(300);

/// What a completion with `If-None-Match: *` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Completed {
    /// The object exists now, with this ETag.
    Done(String),
    /// Another object has the name (412), or another conditional write of it is under way
    /// (409): nothing was written; the multipart upload is still open.
    Taken,
}

/// Percent-encoding of a key in `x-amz-copy-source` (object_store's own set for paths:
/// everything but unreserved characters and `/`).
const PATH_SET: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');

fn io(e: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> StoreError {
    StoreError::Io(std::io::Error::other(e))
}

/// A failed presigned request as a store error, without its URL: the URL carries the
/// signature and the access key id, and the error reaches the log.
fn sent(e: reqwest::Error) -> StoreError {
    io(e.without_url())
}

/// The client that sends the presigned requests: a connection within 10 s, S3's answer
/// within `idle` of the request and each later read within `idle` of the one before.
pub(super) fn client(idle: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .read_timeout(idle)
        .build()
}

fn value(v: &str) -> Result<HeaderValue, StoreError> {
    HeaderValue::from_str(v).map_err(io)
}

/// The text of the first `<tag>` element of an S3 XML answer, unescaped.
pub(super) fn xml_text(body: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let start = body.find(&open)? + open.len();
    let end = start + body[start..].find(&format!("</{tag}>"))?;
    let raw = &body[start..end];
    Some(
        raw.replace("&quot;", "\"")
            .replace("&#34;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&amp;", "&"),
    )
}

/// The XML body of a `CompleteMultipartUpload` (part `i` has number `i + 1`).
pub(super) fn complete_body(parts: &[PartId]) -> String {
    let numbered: Vec<(usize, &str)> = parts
        .iter()
        .enumerate()
        .map(|(i, p)| (i + 1, p.content_id.as_str()))
        .collect();
    numbered_body(&numbered)
}

/// The XML body of a `CompleteMultipartUpload` of `parts` (part number, ETag), in order.
fn numbered_body(parts: &[(usize, &str)]) -> String {
    let mut xml = String::from("<CompleteMultipartUpload>");
    for (n, etag) in parts {
        let etag = etag
            .replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;");
        xml.push_str(&format!(
            "<Part><PartNumber>{n}</PartNumber><ETag>{etag}</ETag></Part>"
        ));
    }
    xml.push_str("</CompleteMultipartUpload>");
    xml
}

/// An S3 error answer as a store error (the status and S3's code, never the whole body).
fn failed(what: &str, status: reqwest::StatusCode, body: &str) -> StoreError {
    let code = xml_text(body, "Code").unwrap_or_default();
    let mut msg = format!("S3 {what}: {status} {code}");
    // At a character boundary: the code is S3's text, and `truncate` inside a character panics.
    let mut end = msg.len().min(MAX_ERROR_TEXT);
    while !msg.is_char_boundary(end) {
        end -= 1;
    }
    msg.truncate(end);
    io(msg)
}

impl S3Store {
    /// Sends a presigned request: `method` on `key` with `query` and `headers` bound to the
    /// signature. Returns the status and the body.
    async fn presigned(
        &self,
        method: Method,
        key: &Key,
        query: &[(&str, String)],
        headers: &[(&'static str, String)],
        body: String,
    ) -> Result<(reqwest::StatusCode, String), StoreError> {
        let mut opts = SignedUrlOptions::default().with_query(query.iter().cloned());
        for (name, v) in headers {
            opts = opts.with_signed_header(HeaderName::from_static(name), value(v)?);
        }
        let url = self
            .s3
            .signed_url_opts(method.clone(), key, VALID, &opts)
            .await
            .map_err(from_s3)?;
        let resp = self
            .http
            .request(method, url.as_str())
            .headers(opts.signed_headers.clone())
            .body(body)
            .send()
            .await
            .map_err(sent)?;
        let status = resp.status();
        let text = resp.text().await.map_err(sent)?;
        Ok((status, text))
    }

    /// The `x-amz-copy-source` of `src`: bucket and key, percent-encoded.
    fn copy_source(&self, src: &Key) -> String {
        let key = percent_encoding::utf8_percent_encode(src.as_ref(), PATH_SET);
        format!("{}/{key}", self.bucket)
    }

    /// Copies bytes `range` (not empty) of object `src` as part `idx` (numbered `idx + 1`) of
    /// the multipart upload `upload` of `dst`, inside S3. With `if_match`, only from the
    /// version of `src` with that ETag. A missing source, or one that is not that version,
    /// is [`StoreError::NotFound`].
    pub(super) async fn copy_part(
        &self,
        dst: &Key,
        upload: &str,
        idx: usize,
        src: &Key,
        range: Range<u64>,
        if_match: Option<&str>,
    ) -> Result<PartId, StoreError> {
        if range.is_empty() {
            return Err(io("a part copy of no bytes"));
        }
        let query = [
            ("partNumber", (idx + 1).to_string()),
            ("uploadId", upload.to_owned()),
        ];
        // S3's ranges are inclusive: the one place the half-open range becomes one.
        let mut headers = vec![
            ("x-amz-copy-source", self.copy_source(src)),
            (
                "x-amz-copy-source-range",
                format!("bytes={}-{}", range.start, range.end - 1),
            ),
        ];
        if let Some(tag) = if_match {
            headers.push(("x-amz-copy-source-if-match", tag.to_owned()));
        }
        let (status, body) = self
            .presigned(Method::PUT, dst, &query, &headers, String::new())
            .await?;
        match status.as_u16() {
            200 if !body.contains("<Error>") => {}
            404 | 412 => return Err(StoreError::NotFound),
            _ => return Err(failed("part copy", status, &body)),
        }
        let etag = xml_text(&body, "ETag").ok_or_else(|| io("S3 part copy without ETag"))?;
        Ok(PartId { content_id: etag })
    }

    /// Completes the multipart upload `upload` of `dst` from `parts` only if no object has the
    /// name `dst` (`If-None-Match: *`). [`Completed::Taken`] leaves the upload open (abort it
    /// or complete it elsewhere).
    pub(super) async fn complete_no_clobber(
        &self,
        dst: &Key,
        upload: &str,
        parts: &[PartId],
    ) -> Result<Completed, StoreError> {
        let query = [("uploadId", upload.to_owned())];
        let headers = [("if-none-match", "*".to_owned())];
        let (status, body) = self
            .presigned(Method::POST, dst, &query, &headers, complete_body(parts))
            .await?;
        match status.as_u16() {
            200 if !body.contains("<Error>") => {
                let etag =
                    xml_text(&body, "ETag").ok_or_else(|| io("S3 completion without ETag"))?;
                Ok(Completed::Done(etag))
            }
            409 | 412 => Ok(Completed::Taken),
            _ => Err(failed("multipart completion", status, &body)),
        }
    }
}

/// A multipart upload in progress, as `ListMultipartUploads` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenMultipart {
    /// Its object key (the whole key, the store's prefix included).
    pub key: String,
    pub upload_id: String,
}

/// The uploads of one `ListMultipartUploadsResult` page, in order (pure). An `<Upload>`
/// without a key or an upload id is skipped (there is nothing to abort).
fn uploads_in(body: &str) -> Vec<OpenMultipart> {
    let mut out = Vec::new();
    let mut rest = body;
    while let Some(at) = rest.find("<Upload>") {
        let after = &rest[at + "<Upload>".len()..];
        let end = after.find("</Upload>").unwrap_or(after.len());
        let one = &after[..end];
        if let (Some(key), Some(upload_id)) = (xml_text(one, "Key"), xml_text(one, "UploadId")) {
            out.push(OpenMultipart { key, upload_id });
        }
        rest = &after[end..];
    }
    out
}

impl S3Store {
    /// Every multipart upload in progress whose key starts with `prefix` (all pages of S3's
    /// `ListMultipartUploads`, which object_store does not offer).
    pub async fn list_multipart(&self, prefix: &str) -> Result<Vec<OpenMultipart>, StoreError> {
        let mut out = Vec::new();
        let mut after: Option<(String, String)> = None;
        loop {
            let mut query = vec![("uploads", String::new()), ("prefix", prefix.to_owned())];
            if let Some((key, id)) = &after {
                query.push(("key-marker", key.clone()));
                query.push(("upload-id-marker", id.clone()));
            }
            let (status, body) = self
                .presigned(Method::GET, &Key::from(""), &query, &[], String::new())
                .await?;
            if status != reqwest::StatusCode::OK || body.contains("<Error>") {
                return Err(failed("multipart upload listing", status, &body));
            }
            out.extend(uploads_in(&body));
            let next = (
                xml_text(&body, "NextKeyMarker"),
                xml_text(&body, "NextUploadIdMarker"),
            );
            match next {
                (Some(k), Some(u)) if xml_text(&body, "IsTruncated").as_deref() == Some("true") => {
                    // A server that repeats its marker would be asked forever.
                    if after.as_ref() == Some(&(k.clone(), u.clone())) {
                        return Err(io("S3 multipart upload listing does not move on"));
                    }
                    after = Some((k, u));
                }
                _ => return Ok(out),
            }
        }
    }
}

impl S3Store {
    /// Completes the multipart upload `upload` of `dst` from `parts` (S3 part number, ETag),
    /// whose numbers ascend but may skip.
    pub(super) async fn complete_numbered(
        &self,
        dst: &Key,
        upload: &str,
        parts: &[(usize, String)],
    ) -> Result<(), StoreError> {
        let query = [("uploadId", upload.to_owned())];
        let numbered: Vec<(usize, &str)> = parts.iter().map(|(n, e)| (*n, e.as_str())).collect();
        let (status, body) = self
            .presigned(Method::POST, dst, &query, &[], numbered_body(&numbered))
            .await?;
        match status.as_u16() {
            200 if !body.contains("<Error>") => Ok(()),
            _ => Err(failed("multipart completion", status, &body)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Review of 57408dd: the kept S3 error code was cut with `String::truncate` at a byte
    // count, which panics inside a multi-byte character of the code S3 sent.
    #[test]
    fn a_long_error_code_is_cut_between_characters() {
        for pad in 0..4 {
            let code = format!("{}{}", "x".repeat(pad), "é".repeat(200));
            let body = format!("<Error><Code>{code}</Code></Error>");
            let e = failed(
                "part copy",
                reqwest::StatusCode::INTERNAL_SERVER_ERROR,
                &body,
            );
            let text = e.to_string();
            assert!(text.starts_with("S3 part copy: 500"), "{text}");
            assert!(text.len() <= MAX_ERROR_TEXT, "{} bytes", text.len());
        }
    }

    /// A store whose S3 endpoint is `addr`, with a presigning client that gives up after
    /// `idle` of silence.
    fn store_at(addr: std::net::SocketAddr, idle: Duration) -> S3Store {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut s = S3Store::new(&super::super::S3Options {
            bucket: "b".into(),
            endpoint: Some(format!("http://{addr}")),
            region: Some("us-east-1".into()),
            credentials: Some(("AKIDFERRYTEST".into(), "secret".into())),
            ..Default::default()
        })
        .unwrap();
        s.http = client(idle).unwrap();
        s
    }

    async fn copy(s: &S3Store) -> Result<PartId, StoreError> {
        let (dst, src) = (Key::from("dst"), Key::from("src"));
        s.copy_part(&dst, "up", 0, &src, 0..10, Some("\"t\"")).await
    }

    // Review of 57408dd: a presigned request that failed logged its URL, signature and access
    // key id included (reqwest's error names the URL), and one that S3 never answered waited
    // forever while holding the upload's lock.
    #[tokio::test]
    async fn a_failed_presigned_request_names_no_signature_and_a_silent_s3_times_out() {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                held.push(conn); // read nothing, answer nothing
            }
        });
        let refused = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        for (what, addr) in [("silent", addr), ("refused", refused)] {
            let s = store_at(addr, Duration::from_millis(300));
            let r = tokio::time::timeout(Duration::from_secs(60), copy(&s))
                .await
                .unwrap_or_else(|_| panic!("{what}: no answer, no error"));
            let Err(e) = r else {
                panic!("{what}: a copy succeeded")
            };
            let text = format!("{e} {e:?}");
            for secret in ["Signature", "AKIDFERRYTEST", "X-Amz"] {
                assert!(!text.contains(secret), "{what}: {text}");
            }
        }
    }

    #[test]
    fn xml_text_reads_and_unescapes_the_first_element() {
        let body = "<CopyPartResult><LastModified>x</LastModified>\
                    <ETag>&quot;9b2cf535f27731c974343645a3985328&quot;</ETag></CopyPartResult>";
        assert_eq!(
            xml_text(body, "ETag").unwrap(),
            "\"9b2cf535f27731c974343645a3985328\""
        );
        assert_eq!(xml_text("<a><ETag>\"t\"</ETag>", "ETag").unwrap(), "\"t\"");
        assert!(xml_text("<ETag>unterminated", "ETag").is_none());
        assert!(xml_text("", "Code").is_none());
    }

    #[test]
    fn completion_numbers_parts_from_one_and_escapes_etags() {
        let parts = [
            PartId {
                content_id: "\"a\"".into(),
            },
            PartId {
                content_id: "b<&".into(),
            },
        ];
        assert_eq!(
            complete_body(&parts),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part>\
             <Part><PartNumber>2</PartNumber><ETag>b&lt;&amp;</ETag></Part></CompleteMultipartUpload>"
        );
    }

    // Issue 11 point 6(c): the multipart uploads of a `ListMultipartUploads` page (an
    // `<UploadId>` or `<UploadIdMarker>` is not an `<Upload>`; keys come XML-escaped).
    #[test]
    fn a_multipart_listing_page_names_each_upload() {
        let body = "<ListMultipartUploadsResult><Bucket>b</Bucket><KeyMarker></KeyMarker>\
                    <UploadIdMarker></UploadIdMarker><IsTruncated>false</IsTruncated>\
                    <Upload><Key>p/.ferry/uploads/a.bin</Key><UploadId>u1</UploadId>\
                    <Initiated>2010-11-10T20:48:33.000Z</Initiated></Upload>\
                    <Upload><Key>p/x &amp; y</Key><UploadId>u2</UploadId></Upload>\
                    <Upload><Key>no id</Key></Upload></ListMultipartUploadsResult>";
        let open = |key: &str, id: &str| OpenMultipart {
            key: key.into(),
            upload_id: id.into(),
        };
        assert_eq!(
            uploads_in(body),
            [open("p/.ferry/uploads/a.bin", "u1"), open("p/x & y", "u2")]
        );
        assert!(uploads_in("<ListMultipartUploadsResult/>").is_empty());
    }

    #[test]
    fn a_completion_may_skip_part_numbers() {
        assert_eq!(
            numbered_body(&[(1, "\"a\""), (4, "\"b\"")]),
            "<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"a\"</ETag></Part>\
             <Part><PartNumber>4</PartNumber><ETag>\"b\"</ETag></Part></CompleteMultipartUpload>"
        );
    }
}
