//! Request dispatch: the tus endpoint (when enabled) or the file handler. Every error from
//! either goes through [`error_response`] here, and only here.

use std::convert::Infallible;
use std::future::Future;
use std::ops::Deref;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::task::Poll;

use http::request::Parts;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;

pub use crate::app::App;
use crate::body::Body;
use crate::error::{error_response, Error, Result};
use crate::files;
use crate::forwarded::ConnInfo;
use crate::ui;

/// Answers one request. `app` leads to the app through a handle of the caller's (the server
/// passes each worker's own, see `server::WorkerApp`).
///
/// The request is taken apart before the future is made, and the handler is polled in place:
/// a future that held the whole request, and the handler's future moved through a
/// `catch_unwind` wrapper, were copied (memcpy) several times per request (#13).
pub fn handle<A>(
    app: Arc<A>,
    conn: ConnInfo,
    req: Request<Incoming>,
) -> impl Future<Output = Result<Response<Body>, Infallible>> + Send + 'static
where
    A: Deref<Target = App> + Send + Sync + 'static,
{
    // The client's address as --behind-proxy says to take it (forwarded.rs), worked out only
    // when the access log or metrics are on.
    let tap = app.observe.tap(
        &req,
        || app.frontend.remote(&req).unwrap_or(conn.peer.ip()),
        app.tus.as_ref().map(|t| t.config().base.as_str()),
    );
    let (mut parts, body) = req.into_parts();
    async move {
        let dispatched = dispatch(&app, conn, &mut parts, body);
        let mut dispatched = std::pin::pin!(dispatched);
        // A bug must cost one request a 500, not the connection: panics are caught here, in
        // every poll (a panicked handler is not polled again).
        let caught = std::future::poll_fn(|cx| {
            match std::panic::catch_unwind(AssertUnwindSafe(|| dispatched.as_mut().poll(cx))) {
                Ok(poll) => poll.map(Some),
                Err(_) => Poll::Ready(None),
            }
        })
        .await;
        let mut resp = match caught {
            Some(Ok(r)) => r,
            Some(Err(e)) => error_response(&e),
            None => error_response(&Error::Internal(std::io::Error::other("handler panicked"))),
        };
        resp.headers_mut().insert(
            header::SERVER,
            HeaderValue::from_static(concat!("ferryd/", env!("CARGO_PKG_VERSION"))),
        );
        Ok(match tap {
            Some(tap) => tap.finish(resp),
            None => resp,
        })
    }
}

async fn dispatch(
    app: &App,
    conn: ConnInfo,
    parts: &mut Parts,
    body: Incoming,
) -> Result<Response<Body>> {
    if let Some(max) = conn.refused {
        return Ok(crate::ratelimit::too_many_connections(max));
    }
    crate::host::check(parts.version, &parts.headers)?;
    if let Some(tus) = app.tus.as_ref().filter(|t| t.owns(parts.uri.path())) {
        let parts = std::mem::replace(parts, Request::new(()).into_parts().0);
        let mut req = Request::from_parts(parts, body);
        // The tus code builds absolute URLs from the connection (forwarded.rs); downloads do
        // not need it, and inserting it allocates the extensions map (#13).
        req.extensions_mut().insert(conn);
        let ctx = crate::hooks::request_info(tus.hooks.get().is_some(), &app.frontend, conn, &req);
        // Boxed: the upload path's future is large, and an unboxed one would be moved (memcpy)
        // into every request's future, downloads included (#13: 33k → 21k instructions/GET).
        let upload = Box::pin(tus.handle(req, &app.frontend));
        return Ok(crate::hooks::scope(ctx, upload).await);
    }
    app.check_uploads(&parts.method, parts.uri.path())?;
    let _body = body;
    let Some(origins) = app.cors_origins().filter(|o| !o.is_empty()) else {
        return files_path(app, parts).await;
    };
    // CORS is shared with tus: files and the page's assets answer allowed origins too.
    let origin = parts.headers.get(header::ORIGIN).cloned();
    let preflight = parts.method == Method::OPTIONS
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    let mut resp = files_path(app, parts)
        .await
        .unwrap_or_else(|e| error_response(&e));
    crate::cors::apply(origins, origin.as_ref(), preflight, resp.headers_mut());
    Ok(resp)
}

/// Everything but tus: the page's assets, then (behind the read token) files and listings.
async fn files_path(app: &App, parts: &mut Parts) -> Result<Response<Body>> {
    // The page's assets are public code: a browser needs them to ask for the read token.
    if ui::owns(parts.uri.path()) {
        return ui::serve(parts).await;
    }
    if let Some(token) = app
        .read_token
        .as_deref()
        .filter(|_| parts.method != Method::OPTIONS)
    {
        if !crate::auth::read_ok(&parts.headers, token) {
            if ui::wants_page(parts) {
                return Ok(ui::login_page());
            }
            return Err(Error::client(
                StatusCode::UNAUTHORIZED,
                "expected Authorization: Bearer <read token>",
            ));
        }
    }
    match parts.method {
        Method::GET | Method::HEAD => files::serve(app.store.as_ref(), parts, app.page()).await,
        Method::OPTIONS => Ok(files::options()),
        _ => Err(Error::MethodNotAllowed),
    }
}
