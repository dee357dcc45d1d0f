//! The header values a file response carries whatever the request: validators, type and
//! disposition, built once per opened file.

use std::borrow::Cow;
use std::sync::OnceLock;

use ferry_proto::disposition::{content_disposition, Disposition};
use ferry_proto::headers::REPR_DIGEST;
use http::{header, HeaderMap, HeaderValue};

use super::content_type;
use crate::http::http_date;
use crate::store::{FileHandle, Meta};

/// The header values of a file that do not depend on the request: validators, type and
/// disposition. Building them (a MIME lookup, an HTTP-date, percent-encoding, header-value
/// checks) cost more than the rest of a small ranged GET, so they are kept in the handle's
/// [`Memo`](crate::store::Memo) and reused for as long as the store reuses the handle, i.e.
/// while the file is unchanged. An invalid value is `None` and is not sent (see [`super::set`]).
#[derive(Clone)]
pub(super) struct FileHeaders {
    /// The name the type and disposition were derived from.
    name: Box<str>,
    etag: Option<HeaderValue>,
    last_modified: Option<HeaderValue>,
    pub(super) content_type: Option<HeaderValue>,
    inline: Option<HeaderValue>,
    attachment: Option<HeaderValue>,
    /// `Repr-Digest`, once the store knows the file's digest (it may learn it after the
    /// handle was opened: the indexer runs in the background).
    repr_digest: OnceLock<HeaderValue>,
}

impl FileHeaders {
    fn new(meta: &Meta, name: &str) -> Self {
        Self {
            name: name.into(),
            etag: valid(header::ETAG, meta.etag.clone()),
            last_modified: valid(header::LAST_MODIFIED, http_date(meta.modified)),
            content_type: valid(header::CONTENT_TYPE, content_type(name)),
            inline: valid(
                header::CONTENT_DISPOSITION,
                content_disposition(Disposition::Inline, name),
            ),
            attachment: valid(
                header::CONTENT_DISPOSITION,
                content_disposition(Disposition::Attachment, name),
            ),
            repr_digest: OnceLock::new(),
        }
    }

    /// The values for `file` served as `name`: the memoized ones, or fresh ones if the handle
    /// has no memo or its memo was made for another name (a tus GET names the file by its
    /// upload metadata).
    pub(super) fn of<'a>(file: &'a dyn FileHandle, name: &str) -> Cow<'a, FileHeaders> {
        if let Some(memo) = file.memo() {
            let kept = memo.get_or_init(|| Box::new(FileHeaders::new(file.meta(), name)));
            if let Some(kept) = kept.downcast_ref::<FileHeaders>() {
                if &*kept.name == name {
                    return Cow::Borrowed(kept);
                }
            }
        }
        Cow::Owned(FileHeaders::new(file.meta(), name))
    }

    pub(super) fn disposition(&self, kind: Disposition) -> &Option<HeaderValue> {
        match kind {
            Disposition::Inline => &self.inline,
            Disposition::Attachment => &self.attachment,
        }
    }

    /// Adds `Repr-Digest` if the file's digest is known. The handle stands for one unchanged
    /// version of the file, so a digest once found stays right for it.
    pub(super) fn repr_digest(&self, file: &dyn FileHandle, h: &mut HeaderMap) {
        let v = match self.repr_digest.get() {
            Some(v) => v,
            None => {
                let Some(v) = file.sha256().as_ref().and_then(super::digest::repr_digest) else {
                    return;
                };
                self.repr_digest.get_or_init(|| v)
            }
        };
        h.insert(REPR_DIGEST, v.clone());
    }

    pub(super) fn validators(&self, h: &mut HeaderMap) {
        put(h, header::ETAG, &self.etag);
        put(h, header::LAST_MODIFIED, &self.last_modified);
    }
}

/// `value` as a header value, or `None` (logged) if it is not a valid one.
pub(super) fn valid(name: header::HeaderName, value: String) -> Option<HeaderValue> {
    let v = HeaderValue::try_from(value).ok();
    if v.is_none() {
        tracing::warn!(%name, "dropped an invalid header value");
    }
    v
}

/// Inserts a value kept by [`FileHeaders`]; an invalid one was already logged when it was made.
pub(super) fn put(h: &mut HeaderMap, name: header::HeaderName, value: &Option<HeaderValue>) {
    if let Some(v) = value {
        h.insert(name, v.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{ByteStream, Memo};
    use ferry_proto::ByteRange;
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    struct Handle {
        meta: Meta,
        memo: Option<Memo>,
    }

    impl FileHandle for Handle {
        fn meta(&self) -> &Meta {
            &self.meta
        }
        fn memo(&self) -> Option<&Memo> {
            self.memo.as_ref()
        }
        fn read(self: Arc<Self>, _: ByteRange) -> ByteStream {
            Box::pin(futures_util::stream::empty())
        }
    }

    fn handle(memo: bool) -> Handle {
        Handle {
            meta: Meta {
                len: 10,
                modified: UNIX_EPOCH + Duration::from_secs(784_111_777),
                etag: "\"a-b-c\"".into(),
            },
            memo: memo.then(Memo::new),
        }
    }

    fn text(v: &Option<HeaderValue>) -> &str {
        v.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("<none>")
    }

    #[test]
    fn header_values_are_kept_per_handle_and_name() {
        let file = handle(true);
        let first = FileHeaders::of(&file, "报告.txt");
        assert!(matches!(first, Cow::Borrowed(_)));
        assert_eq!(text(&first.etag), "\"a-b-c\"");
        assert_eq!(text(&first.last_modified), "Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(text(&first.content_type), "text/plain; charset=utf-8");
        assert_eq!(
            text(&first.attachment),
            "attachment; filename=\"__.txt\"; filename*=UTF-8''%E6%8A%A5%E5%91%8A.txt"
        );
        let again = FileHeaders::of(&file, "报告.txt");
        assert!(std::ptr::eq(&*first, &*again), "built once per handle");
        // Another name for the same handle (a tus GET) gets its own values, not the kept ones.
        let other = FileHeaders::of(&file, "b.json");
        assert!(matches!(other, Cow::Owned(_)));
        assert_eq!(text(&other.content_type), "application/json; charset=utf-8");
        assert_eq!(text(&other.inline), "inline; filename=\"b.json\"");
        assert_eq!(text(&other.etag), "\"a-b-c\"");
    }

    #[test]
    fn handles_without_memo_build_values_every_time() {
        let file = handle(false);
        let v = FileHeaders::of(&file, "x.bin");
        assert!(matches!(v, Cow::Owned(_)));
        assert_eq!(text(&v.content_type), "application/octet-stream");
    }
}
