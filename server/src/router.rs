//! Request dispatch: the tus endpoint (when enabled) or the file handler. Every error from
//! either goes through [`error_response`] here, and only here.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use std::sync::Arc;

use http::{header, HeaderValue, Method, Request, Response};
use hyper::body::Incoming;

use crate::body::Body;
use crate::error::{error_response, Error, Result};
use crate::files;
use crate::store::Store;

/// Everything a request handler needs: the store and the per-feature settings.
pub struct App {
    pub store: Arc<dyn Store>,
}

impl App {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    // A bug must cost one request a 500, not the connection: panics are caught here.
    let mut resp = match AssertUnwindSafe(dispatch(&app, req)).catch_unwind().await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => error_response(&e),
        Err(_) => error_response(&Error::Internal(std::io::Error::other("handler panicked"))),
    };
    resp.headers_mut().insert(
        header::SERVER,
        HeaderValue::from_static(concat!("ferryd/", env!("CARGO_PKG_VERSION"))),
    );
    Ok(resp)
}

async fn dispatch(app: &App, req: Request<Incoming>) -> Result<Response<Body>> {
    let (parts, _body) = req.into_parts();
    match parts.method {
        Method::GET | Method::HEAD => files::serve(app.store.as_ref(), &parts).await,
        Method::OPTIONS => Ok(files::options()),
        _ => Err(Error::MethodNotAllowed),
    }
}
