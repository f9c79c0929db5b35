//! The HTTP/1.1 transport: `POST /api/<name>`, `GET /events` (Server-Sent
//! Events), `GET /poll` (long-poll), `GET /ws` (WebSocket upgrade), the
//! application's plain `GET` routes, and static files.
//!
//! HTTP calls belong to a *session*: a virtual connection keyed by the
//! request's bearer token or session cookie (see
//! [`Context::set_session_key`](crate::Context::set_session_key) and
//! [`Homer::session_resolver`](crate::Homer::session_resolver)). A request
//! with no known key runs on a one-request connection.

mod files;
mod routes;
pub(crate) mod session;
mod ws;

use std::convert::Infallible;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::admission::Slot;
use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Uri};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::Value;
use tracing::Instrument;

use crate::connection::Transport;
use crate::context::{CallState, Context};
use crate::error::ApiError;
use crate::limits::RateLimit;
use crate::message::{Call, Reply};
use crate::outbox::Receiver;
use crate::rate::KeyedLimiter;
use crate::server::Homer;

pub(crate) use files::Statics;
pub use routes::HttpResponse;
pub(crate) use routes::Routes;
pub(crate) use session::Sessions;

pub(crate) type Body = UnsyncBoxBody<Bytes, Infallible>;

/// Most cookies read from one request.
const MAX_COOKIES: usize = 64;
/// Most client IPs with a rate-limit bucket for requests without a session.
const MAX_IP_BUCKETS: usize = 16_384;

/// The parts of an HTTP request a handler may read: method, path, headers,
/// cookies and bearer token.
///
/// `Debug` redacts cookie values and the `Authorization` header.
pub struct HttpRequest {
    method: Method,
    path: String,
    query: Option<String>,
    headers: HeaderMap,
    cookies: Vec<(String, String)>,
}

impl fmt::Debug for HttpRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.cookies.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("HttpRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("cookies", &names)
            .field(
                "authorization",
                &self.headers.get(header::AUTHORIZATION).map(|_| "REDACTED"),
            )
            .finish_non_exhaustive()
    }
}

impl HttpRequest {
    pub(crate) fn from_parts(method: &Method, uri: &Uri, headers: &HeaderMap) -> Self {
        Self::from_parts_without(method, uri, headers, &[])
    }

    /// As `from_parts`, leaving out the headers named in `skip`.
    pub(crate) fn from_parts_without(
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        skip: &[header::HeaderName],
    ) -> Self {
        let mut cookies = Vec::new();
        for value in headers.get_all(header::COOKIE) {
            let Ok(s) = value.to_str() else { continue };
            for c in cookie::Cookie::split_parse(s).flatten() {
                if cookies.len() < MAX_COOKIES {
                    cookies.push((c.name().to_owned(), c.value().to_owned()));
                }
            }
        }
        // Copy rather than clone: hyper's header values and URI share its
        // read buffer, which a clone kept alive for the connection's life.
        let kept = headers.iter().filter(|(n, _)| !skip.contains(n)).count();
        let mut own = HeaderMap::with_capacity(kept);
        for (name, value) in headers.iter().filter(|(n, _)| !skip.contains(n)) {
            if let (Ok(n), Ok(v)) = (
                header::HeaderName::from_bytes(name.as_str().as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                own.append(n, v);
            }
        }
        Self {
            method: method.clone(),
            path: uri.path().to_owned(),
            query: uri.query().map(str::to_owned),
            headers: own,
            cookies,
        }
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The path, such as `/api/user.login`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The query string, if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// All headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// The header `name` as text, if present and valid.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookies
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every cookie, as name and value.
    pub fn cookies(&self) -> impl Iterator<Item = (&str, &str)> {
        self.cookies.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }

    /// The token of an `Authorization: Bearer <token>` header.
    pub fn bearer_token(&self) -> Option<&str> {
        let v = self.header(header::AUTHORIZATION.as_str())?;
        let (scheme, token) = v.split_once(' ')?;
        let token = token.trim();
        (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
    }
}

/// The HTTP side of one call: what the handler can change in the response.
pub(crate) struct HttpCall {
    pub(crate) request: Arc<HttpRequest>,
    pub(crate) set_cookies: Mutex<Vec<String>>,
    /// The receiver of a one-request connection, until it becomes a session.
    pub(crate) anon_rx: Mutex<Option<Receiver>>,
    /// The session the call runs in, if any.
    pub(crate) session: Mutex<Option<Arc<session::HttpSession>>>,
}

#[derive(Debug, Clone, Copy)]
enum Route {
    Api,
    Events,
    Poll,
    Ws,
}

pub(crate) struct HttpState {
    router: matchit::Router<Route>,
    /// The call rate of HTTP calls without a session, per client address.
    ip_buckets: Option<KeyedLimiter<IpAddr>>,
    pub(crate) sessions: Sessions,
    pub(crate) routes: Routes,
}

impl HttpState {
    pub(crate) fn new(rate: Option<RateLimit>) -> Self {
        let mut router = matchit::Router::new();
        for (path, route) in [
            ("/api/{name}", Route::Api),
            ("/events", Route::Events),
            ("/poll", Route::Poll),
            ("/ws", Route::Ws),
        ] {
            // The paths are constants that do not conflict.
            let _ = router.insert(path, route);
        }
        Self {
            router,
            ip_buckets: rate
                .map(|l| KeyedLimiter::per_second(l.per_second, l.burst).max_keys(MAX_IP_BUCKETS)),
            sessions: Sessions::default(),
            routes: Routes::default(),
        }
    }
}

pub(crate) fn full(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Body> {
    let mut res = Response::new(Full::new(body.into()).boxed_unsync());
    *res.status_mut() = status;
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    res
}

fn status_of(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// A native reply as an HTTP response whose status is the reply's.
pub(crate) fn reply_response(reply: &Reply) -> Response<Body> {
    let mut res = full(
        status_of(reply.status()),
        "application/json",
        reply.to_native_json(),
    );
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

pub(crate) fn error_response(err: ApiError) -> Response<Body> {
    reply_response(&Reply::error(Value::Null, None, err))
}

/// The slot holding the socket's connection permit; a WebSocket upgrade
/// takes it over.
pub(crate) type PermitSlot = Arc<Mutex<Option<Slot>>>;

pub(crate) async fn serve_connection<S>(homer: Homer, stream: S, peer: SocketAddr, permit: Slot)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let slot: PermitSlot = Arc::new(Mutex::new(Some(permit)));
    let span = tracing::info_span!("http", %peer);
    let svc = {
        let homer = homer.clone();
        service_fn(move |req| {
            let homer = homer.clone();
            let slot = slot.clone();
            async move { Ok::<_, Infallible>(handle(homer, peer, slot, req).await) }
        })
    };
    let limits = homer.limits();
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.handshake_timeout)
        .max_buf_size(limits.max_frame_size.max(16 * 1024))
        .keep_alive(true);
    let conn = builder
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    let shutdown = homer.inner.shutdown.clone();
    let hard_stop = homer.inner.hard_stop.clone();
    async move {
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(error = %e, "http connection ended with an error");
                }
            }
            _ = shutdown.cancelled() => {
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = hard_stop.cancelled() => {}
                }
            }
        }
    }
    .instrument(span)
    .await;
}

async fn handle(
    homer: Homer,
    peer: SocketAddr,
    slot: PermitSlot,
    req: Request<Incoming>,
) -> Response<Body> {
    let (peer, proxied) = match forwarded_client(&homer, peer, &req) {
        Some(client) => (client, true),
        None => (peer, false),
    };
    let route = homer
        .inner
        .http
        .router
        .at(req.uri().path())
        .ok()
        .map(|m| (*m.value, m.params.get("name").map(str::to_owned)));
    match route {
        Some((Route::Api, Some(name))) => api(homer, peer, req, name).await,
        Some((Route::Events, _)) if req.method() == Method::GET => {
            session::events(homer, peer, req).await
        }
        Some((Route::Poll, _)) if req.method() == Method::GET => {
            session::poll(homer, peer, req).await
        }
        Some((Route::Ws, _)) => ws::upgrade(homer, peer, proxied, slot, req),
        Some(_) => error_response(ApiError::new(
            405,
            "method_not_allowed",
            format!(
                "method {} is not allowed on {}",
                req.method(),
                req.uri().path()
            ),
        )),
        None => match homer.inner.http.routes.serve(&req).await {
            Some(res) => res,
            None => files::serve(&homer, &req).await,
        },
    }
}

/// The client a trusted proxy forwards for: the right-most address of
/// `X-Forwarded-For` that is not itself a trusted proxy (each proxy appends
/// the address it got the request from, so the left part is the client's
/// own word and not believed). `None` for anyone else, or without the
/// header.
fn forwarded_client(
    homer: &Homer,
    peer: SocketAddr,
    req: &Request<Incoming>,
) -> Option<SocketAddr> {
    let admission = homer.admission();
    if !admission.is_trusted(peer.ip()) {
        return None;
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in req.headers().get_all("x-forwarded-for") {
        let text = value.to_str().ok()?;
        for hop in text.split(',') {
            hops.push(hop.trim().parse().ok()?);
        }
    }
    let client = hops
        .into_iter()
        .rev()
        .find(|ip| !admission.is_trusted(*ip))?;
    Some(SocketAddr::new(client, 0))
}

/// Whether an HTTP call without a session may run now (rate limit per IP).
fn allow_anonymous(homer: &Homer, ip: IpAddr) -> bool {
    homer
        .inner
        .http
        .ip_buckets
        .as_ref()
        .is_none_or(|l| l.allow(&ip).is_ok())
}

/// The response to a call of `name` refused before any handler ran, reported
/// to the observer.
fn refused(homer: &Homer, name: &str, e: ApiError) -> Response<Body> {
    homer.observe_refused((Transport::Http, "http"), name, &e);
    error_response(e)
}

async fn api(
    homer: Homer,
    peer: SocketAddr,
    req: Request<Incoming>,
    name: String,
) -> Response<Body> {
    if req.method() != Method::POST {
        let mut res = refused(
            &homer,
            &name,
            ApiError::new(
                405,
                "method_not_allowed",
                format!(
                    "api \"{}\" must be called with POST, got {}",
                    crate::error::truncate(&name, 128),
                    req.method()
                ),
            ),
        );
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return res;
    }
    let (parts, body) = req.into_parts();
    let request = Arc::new(HttpRequest::from_parts(
        &parts.method,
        &parts.uri,
        &parts.headers,
    ));
    let limits = homer.limits().clone();

    let sess = session::resolve(&homer, peer, &request).await;
    let (conn, anon_rx) = match &sess {
        Some(s) => (s.conn.clone(), None),
        None => {
            let (c, rx) = homer.new_connection(peer, Transport::Http, "http", None);
            (c, Some(rx))
        }
    };
    let allowed = match &sess {
        Some(_) => conn.allow_call(Instant::now()),
        None => allow_anonymous(&homer, peer.ip()),
    };
    let limit = limits.rate_limit.unwrap_or_default();
    if !allowed {
        let e = ApiError::rate_limited(limit.per_second, limit.burst);
        homer.observe_refused((Transport::Http, "http"), &name, &e);
        return reply_response(&Reply::error(Value::Null, Some(name), e));
    }

    // Refuse an announced oversized body unread; cap the rest as it streams.
    let announced = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(len) = announced.filter(|l| *l > limits.max_frame_size) {
        let mut res = refused(
            &homer,
            &name,
            ApiError::too_large(len, limits.max_frame_size),
        );
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return res;
    }
    let collected = tokio::time::timeout(
        limits.handshake_timeout,
        Limited::new(body, limits.max_frame_size).collect(),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            let mut res = refused(
                &homer,
                &name,
                ApiError::too_large(limits.max_frame_size + 1, limits.max_frame_size),
            );
            res.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            return res;
        }
        Ok(Err(e)) => {
            return refused(
                &homer,
                &name,
                ApiError::bad_request("bad_request", format!("cannot read the request body: {e}")),
            );
        }
        Err(_) => {
            return refused(
                &homer,
                &name,
                ApiError::new(
                    408,
                    "timeout",
                    format!(
                        "request body not received within {} ms",
                        limits.handshake_timeout.as_millis()
                    ),
                ),
            );
        }
    };
    let params = if bytes.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(v) => v,
            Err(e) => return refused(&homer, &name, ApiError::malformed_json(e)),
        }
    };

    let http_call = HttpCall {
        request,
        set_cookies: Mutex::new(Vec::new()),
        anon_rx: Mutex::new(anon_rx),
        session: Mutex::new(sess),
    };
    let state = CallState::new(Some(name.clone()), Some(http_call));
    let ctx = Context::new(conn.clone(), homer.clone(), Some(state.clone()));
    let reply = homer
        .dispatch(
            ctx,
            Call {
                id: Value::Null,
                api: name,
                params,
            },
        )
        .await;
    for push in state.take_after_reply() {
        let _ = conn.push(push);
    }
    let mut res = reply_response(&reply);
    if let Some(h) = &state.http {
        let unbound = h
            .anon_rx
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .is_some();
        if unbound {
            // A one-request connection: forget its subscriptions.
            homer.hub().unregister(&conn);
        }
        for c in h
            .set_cookies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
        {
            if let Ok(v) = HeaderValue::try_from(c) {
                res.headers_mut().append(header::SET_COOKIE, v);
            }
        }
    }
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(headers: &[(&str, &str)]) -> HttpRequest {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.append(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        HttpRequest::from_parts(&Method::GET, &Uri::from_static("/x?y=1"), &map)
    }

    #[test]
    fn reads_cookies_and_bearer_tokens() {
        let r = req(&[
            ("cookie", "a=1; session=tok"),
            ("cookie", "b=2"),
            ("authorization", "Bearer  abc "),
        ]);
        assert_eq!(r.cookie("session"), Some("tok"));
        assert_eq!(r.cookie("b"), Some("2"));
        assert_eq!(r.cookie("nope"), None);
        assert_eq!(r.bearer_token(), Some("abc"));
        assert_eq!(r.query(), Some("y=1"));
        assert!(!format!("{r:?}").contains("tok"));
        assert!(!format!("{r:?}").contains("abc"));
        assert_eq!(req(&[("authorization", "Basic abc")]).bearer_token(), None);
        assert_eq!(req(&[("authorization", "Bearer ")]).bearer_token(), None);
    }
}
