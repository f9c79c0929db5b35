//! Plain `GET` routes an application adds at run time (health checks,
//! readiness probes, anything that is not a native API call): an exact path,
//! an async function of the request, a status, a content type and a body.

use std::collections::HashMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, PoisonError, RwLock};

use bytes::Bytes;
use futures_util::FutureExt;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};

use super::{Body, HttpRequest, full};
use crate::registry::BoxFuture;

/// The response of a route added with [`Homer::http_get`](crate::Homer::http_get).
#[derive(Debug, Clone)]
#[must_use = "a response does nothing until a route returns it"]
pub struct HttpResponse {
    status: u16,
    content_type: &'static str,
    body: Bytes,
}

impl HttpResponse {
    /// A response of `status` (an invalid status is sent as 500) with `body`
    /// of `content_type`.
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Bytes>) -> Self {
        Self {
            status,
            content_type,
            body: body.into(),
        }
    }

    /// A plain-text response.
    pub fn text(status: u16, body: impl Into<Bytes>) -> Self {
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    /// A JSON response of `value`.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self::new(status, "application/json", value.to_string())
    }

    /// The status.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    fn into_response(self, head: bool) -> Response<Body> {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = if head { Bytes::new() } else { self.body };
        let mut res = full(status, self.content_type, body);
        // A probe must see the state of now, never a cached one.
        res.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }
}

type Route = Arc<dyn Fn(Arc<HttpRequest>) -> BoxFuture<HttpResponse> + Send + Sync>;

/// Exact paths to route functions, changeable while the server runs.
#[derive(Default)]
pub(crate) struct Routes {
    map: RwLock<HashMap<String, Route>>,
}

impl Routes {
    pub(crate) fn insert<F, Fut>(&self, path: String, f: F) -> bool
    where
        F: Fn(Arc<HttpRequest>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = HttpResponse> + Send + 'static,
    {
        let route: Route = Arc::new(move |req| Box::pin(f(req)));
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(path, route)
            .is_some()
    }

    pub(crate) fn remove(&self, path: &str) -> bool {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(path)
            .is_some()
    }

    /// Drops every route (at shutdown).
    pub(crate) fn clear(&self) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn get(&self, path: &str) -> Option<Route> {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(path)
            .cloned()
    }

    /// The response of the route at `req`'s path, if there is one: `GET`
    /// and `HEAD` run it, other methods get 405.
    pub(crate) async fn serve<B>(&self, req: &Request<B>) -> Option<Response<Body>> {
        let route = self.get(req.uri().path())?;
        let method = req.method().clone();
        if method != Method::GET && method != Method::HEAD {
            let mut res = super::error_response(crate::error::ApiError::new(
                405,
                "method_not_allowed",
                format!(
                    "method {method} is not allowed on {}: expected GET or HEAD",
                    crate::error::truncate(req.uri().path(), 256)
                ),
            ));
            res.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return Some(res);
        }
        let request = HttpRequest::from_parts(req.method(), req.uri(), req.headers());
        let path = request.path().to_owned();
        let response = match AssertUnwindSafe(route(Arc::new(request)))
            .catch_unwind()
            .await
        {
            Ok(r) => r,
            Err(_) => {
                tracing::error!(%path, "http route panicked");
                HttpResponse::text(500, "internal error")
            }
        };
        Some(response.into_response(method == Method::HEAD))
    }
}
