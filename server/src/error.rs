//! The crate's error type and the one function that turns any error into a response
//! (tusd's `sendError`). A 5xx body never carries internal text: the detail goes to the log.

use http::{header, HeaderValue, Response, StatusCode};

use crate::body::{self, Body};
use crate::path::PathError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A client error with the status to answer and a reason the client can act on.
    #[error("{1}")]
    Client(StatusCode, String),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error("not found")]
    NotFound,
    #[error("method not allowed")]
    MethodNotAllowed,
    /// tus core: a PATCH at another offset than the upload's. Answered 409 with the current
    /// `Upload-Offset`, so the client resumes without a HEAD (the spec leaves the header out;
    /// clients of tusd-compatible servers read it).
    #[error("expected Upload-Offset {expected}, got {got}")]
    OffsetMismatch { expected: u64, got: u64 },
    /// A server-wide limit is reached for now: 503 with `Retry-After` and this reason (the
    /// one 5xx whose text is shown: it says which limit, nothing internal).
    #[error("{0}")]
    Busy(String),
    /// What was asked for is being done (a complete upload being published): 503 with a
    /// short `Retry-After` and this reason.
    #[error("{0}")]
    Pending(String),
    #[error("internal error: {0}")]
    Internal(#[source] std::io::Error),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn client(status: StatusCode, reason: impl Into<String>) -> Self {
        Error::Client(status, reason.into())
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self::client(StatusCode::BAD_REQUEST, reason)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Error::Client(s, _) => *s,
            Error::Path(_) => StatusCode::BAD_REQUEST,
            Error::NotFound => StatusCode::NOT_FOUND,
            Error::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Error::OffsetMismatch { .. } => StatusCode::CONFLICT,
            Error::Busy(_) | Error::Pending(_) => StatusCode::SERVICE_UNAVAILABLE,
            Error::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            // A forbidden path answers 404 like a missing one: its existence is not revealed.
            StoreError::NotFound | StoreError::Forbidden => Error::NotFound,
            // Another request took the upload over while this one worked on it (a client that
            // reconnected): what this one had committed stays, the client asks HEAD and resumes.
            StoreError::Conflict => Error::client(
                StatusCode::CONFLICT,
                "the upload was changed by another request meanwhile; ask HEAD for its offset",
            ),
            StoreError::Io(e) => Error::Internal(e),
        }
    }
}

impl From<std::io::Error> for Error {
    fn from(e: std::io::Error) -> Self {
        Error::Internal(e)
    }
}

/// The single place where errors become responses.
pub fn error_response(err: &Error) -> Response<Body> {
    let status = err.status();
    let text = if status.is_server_error() && !matches!(err, Error::Busy(_) | Error::Pending(_)) {
        crate::metrics::INTERNAL_ERRORS.inc();
        tracing::error!(error = %err, "request failed");
        status
            .canonical_reason()
            .unwrap_or("error")
            .to_ascii_lowercase()
    } else {
        tracing::debug!(error = %err, %status, "request refused");
        err.to_string()
    };
    let mut resp = Response::new(body::full(format!("{text}\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if status == StatusCode::UNAUTHORIZED {
        h.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static(crate::auth::CHALLENGE),
        );
    }
    if let Error::OffsetMismatch { expected, .. } = err {
        h.insert(
            ferry_proto::tus::UPLOAD_OFFSET,
            HeaderValue::from(*expected),
        );
    }
    if let Error::Busy(_) = err {
        h.insert(
            header::RETRY_AFTER,
            HeaderValue::from(crate::tus::limits::RETRY_AFTER_SECS),
        );
    }
    if let Error::Pending(_) = err {
        h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if status == StatusCode::METHOD_NOT_ALLOWED {
        h.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
    }
    resp
}
