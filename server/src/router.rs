//! Request dispatch: the tus endpoint (when enabled) or the file handler. Every error from
//! either goes through [`error_response`] here, and only here.

use std::convert::Infallible;
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
    let mut resp = match dispatch(&app, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    resp.headers_mut()
        .insert(header::SERVER, HeaderValue::from_static(concat!("ferryd/", env!("CARGO_PKG_VERSION"))));
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
