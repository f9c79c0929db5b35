//! HTTP sessions: virtual connections that tie HTTP calls, `GET /events`
//! and long-polls of one client together by a session key.
//!
//! ```text
//!  POST /api/user.login ──► handler: ctx.set_session_key(token)
//!        (no key yet)                 ctx.set_cookie(session=token)
//!                                     ctx.subscribe("user:alice")
//!                                          │
//!                    key ──► HttpSession { conn, queue } ◄── hub.publish
//!                                          │
//!  GET /events  (cookie or bearer = key) ──┘  pushes as `data:` lines
//!  POST /api/x  (same key) ── runs on the same conn: same session state
//! ```
//!
//! A key the server does not know is handed to the session resolver (if
//! any), which may restore the session (after a restart, say). A session
//! with no request and no event stream for the idle timeout expires; its
//! close hook runs as for any connection.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use futures_util::FutureExt;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Request, Response, StatusCode};
use tokio::sync::{OwnedMutexGuard, watch};

use super::{Body, HttpCall, HttpRequest, error_response, full};
use crate::connection::{CloseReason, Connection, Outbound, Transport};
use crate::error::ApiError;
use crate::message::Push;
use crate::outbox::{Receiver, TryRecvError};
use crate::server::Homer;

/// Pushes put in one SSE chunk or one long-poll answer at most.
const MAX_BATCH: usize = 256;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[derive(Default)]
pub(crate) struct Sessions {
    by_key: Mutex<HashMap<String, Arc<HttpSession>>>,
}

impl Sessions {
    fn get(&self, key: &str) -> Option<Arc<HttpSession>> {
        lock(&self.by_key).get(key).cloned()
    }

    /// Removes `key` if it still maps to `s`.
    fn remove_if(&self, key: &str, s: &Arc<HttpSession>) {
        let mut map = lock(&self.by_key);
        if map.get(key).is_some_and(|x| Arc::ptr_eq(x, s)) {
            map.remove(key);
        }
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.by_key).len()
    }

    /// Drops every session (at shutdown), and what their connections'
    /// sessions hold.
    pub(crate) fn clear(&self) {
        let all = std::mem::take(&mut *lock(&self.by_key));
        drop(all);
    }
}

pub(crate) struct HttpSession {
    pub(crate) conn: Connection,
    key: Mutex<String>,
    rx: Arc<tokio::sync::Mutex<Receiver>>,
    /// Bumped by each new reader; an older reader seeing it change stops.
    generation: watch::Sender<u64>,
    last_seen: Mutex<Instant>,
    readers: AtomicUsize,
    ready: tokio::sync::OnceCell<bool>,
}

impl HttpSession {
    fn new(conn: Connection, key: String, rx: Receiver) -> Arc<Self> {
        Arc::new(Self {
            conn,
            key: Mutex::new(key),
            rx: Arc::new(tokio::sync::Mutex::new(rx)),
            generation: watch::Sender::new(0),
            last_seen: Mutex::new(Instant::now()),
            readers: AtomicUsize::new(0),
            ready: tokio::sync::OnceCell::new(),
        })
    }

    fn touch(&self) {
        *lock(&self.last_seen) = Instant::now();
    }

    fn last_seen(&self) -> Instant {
        *lock(&self.last_seen)
    }

    fn key(&self) -> String {
        lock(&self.key).clone()
    }
}

/// The request's session key: its bearer token, else its session cookie.
pub(crate) fn session_key(homer: &Homer, request: &HttpRequest) -> Option<String> {
    request
        .bearer_token()
        .or_else(|| request.cookie(&homer.inner.session_cookie))
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
}

/// The live session for the request's key, restoring it through the
/// resolver when the key is unknown.
pub(crate) async fn resolve(
    homer: &Homer,
    peer: SocketAddr,
    request: &HttpRequest,
) -> Option<Arc<HttpSession>> {
    let key = session_key(homer, request)?;
    let sessions = &homer.inner.http.sessions;
    let s = match sessions.get(&key) {
        Some(s) => s,
        None => {
            homer.resolver()?;
            if homer.is_shutting_down() {
                return None;
            }
            let mut map = lock(&sessions.by_key);
            match map.get(&key) {
                Some(s) => s.clone(),
                None => {
                    if map.len() >= homer.limits().max_sessions {
                        tracing::warn!(
                            limit = homer.limits().max_sessions,
                            "session limit reached; request runs without a session"
                        );
                        return None;
                    }
                    let (conn, rx) = homer.new_connection(peer, Transport::Http, "http", None);
                    let s = HttpSession::new(conn, key.clone(), rx);
                    map.insert(key.clone(), s.clone());
                    s
                }
            }
        }
    };
    let ok = *s.ready.get_or_init(|| restore(homer, &s, key)).await;
    if !ok || s.conn.is_closed() {
        return None;
    }
    s.touch();
    Some(s)
}

async fn restore(homer: &Homer, s: &Arc<HttpSession>, key: String) -> bool {
    let Some(resolver) = homer.resolver() else {
        return false;
    };
    homer.hub().register(&s.conn);
    let ctx = homer.hook_context(&s.conn);
    match AssertUnwindSafe(resolver(ctx, key.clone()))
        .catch_unwind()
        .await
    {
        Ok(Ok(())) => {
            tracing::debug!(conn = %s.conn.id(), "http session restored");
            homer.mark_opened(&s.conn).await;
            homer.spawn(session_task(homer.clone(), s.clone()));
            true
        }
        outcome => {
            if let Ok(Err(e)) = outcome {
                tracing::debug!(error = %e, "session key rejected");
            }
            homer.inner.http.sessions.remove_if(&key, s);
            homer.hub().unregister(&s.conn);
            s.conn.inner.closing.cancel();
            false
        }
    }
}

/// [`Context::set_session_key`](crate::Context::set_session_key).
pub(crate) fn bind(homer: &Homer, conn: &Connection, h: &HttpCall, key: String) -> bool {
    let sessions = &homer.inner.http.sessions;
    let current = lock(&h.session).clone();
    if let Some(s) = current {
        let mut map = lock(&sessions.by_key);
        let old_key = std::mem::replace(&mut *lock(&s.key), key.clone());
        if map.get(&old_key).is_some_and(|x| Arc::ptr_eq(x, &s)) {
            map.remove(&old_key);
        }
        if let Some(other) = map.insert(key, s.clone())
            && !Arc::ptr_eq(&other, &s)
        {
            other.conn.close("session key taken over");
        }
        return true;
    }
    let mut slot = lock(&h.anon_rx);
    let Some(rx) = slot.take() else {
        return false;
    };
    let mut map = lock(&sessions.by_key);
    if map.len() >= homer.limits().max_sessions {
        *slot = Some(rx);
        return false;
    }
    let s = HttpSession::new(conn.clone(), key.clone(), rx);
    let _ = s.ready.set(true);
    if let Some(other) = map.insert(key, s.clone()) {
        other.conn.close("session key taken over");
    }
    drop(map);
    drop(slot);
    *lock(&h.session) = Some(s.clone());
    homer.hub().register(conn);
    let open = homer.mark_opened(conn);
    let h2 = homer.clone();
    homer.spawn(async move {
        open.await;
        session_task(h2, s).await;
    });
    true
}

/// Watches one session until it is closed, expires or the server stops.
async fn session_task(homer: Homer, s: Arc<HttpSession>) {
    let idle = homer.limits().idle_timeout;
    let closing = &s.conn.inner.closing;
    let shutdown = homer.shutdown_token().clone();
    let reason = loop {
        let deadline = tokio::time::Instant::from_std(s.last_seen() + idle);
        tokio::select! {
            _ = closing.cancelled() => {
                break s.conn.reason().unwrap_or_else(|| CloseReason::Closed("closed".into()));
            }
            _ = shutdown.cancelled() => break CloseReason::Shutdown,
            () = tokio::time::sleep_until(deadline) => {
                if s.readers.load(Ordering::Acquire) > 0 {
                    s.touch();
                } else if s.last_seen().elapsed() >= idle {
                    break CloseReason::Idle(idle);
                }
            }
        }
    };
    // Let attached streams drain what is queued, then end.
    s.conn.close_with(reason.clone());
    homer.inner.http.sessions.remove_if(&s.key(), &s);
    homer.finish(&s.conn, reason).await;
}

enum Next {
    Push(Arc<Push>),
    End,
}

/// One event stream or long-poll reading a session's queue. A newer reader
/// takes over from an older one.
struct Reader {
    s: Arc<HttpSession>,
    generation: u64,
    gen_rx: watch::Receiver<u64>,
    guard: Option<OwnedMutexGuard<Receiver>>,
    ended: bool,
}

impl Reader {
    fn new(s: Arc<HttpSession>) -> Self {
        let mut generation = 0;
        s.generation.send_modify(|g| {
            *g += 1;
            generation = *g;
        });
        let gen_rx = s.generation.subscribe();
        s.readers.fetch_add(1, Ordering::AcqRel);
        s.touch();
        Self {
            s,
            generation,
            gen_rx,
            guard: None,
            ended: false,
        }
    }

    async fn taken_over(gen_rx: &mut watch::Receiver<u64>, mine: u64) {
        loop {
            if *gen_rx.borrow_and_update() != mine {
                return;
            }
            if gen_rx.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits for the queue; false if the reader was taken over or the
    /// session dropped meanwhile.
    async fn attach(&mut self) -> bool {
        if self.guard.is_some() {
            return true;
        }
        let s = self.s.clone();
        tokio::select! {
            biased;
            () = s.conn.inner.kill.cancelled() => false,
            () = Self::taken_over(&mut self.gen_rx, self.generation) => false,
            g = self.s.rx.clone().lock_owned() => {
                self.guard = Some(g);
                true
            }
        }
    }

    async fn next(&mut self) -> Next {
        if self.ended || !self.attach().await {
            return Next::End;
        }
        let s = self.s.clone();
        let Some(guard) = self.guard.as_mut() else {
            return Next::End;
        };
        tokio::select! {
            biased;
            () = s.conn.inner.kill.cancelled() => Next::End,
            () = Self::taken_over(&mut self.gen_rx, self.generation) => Next::End,
            msg = guard.recv() => match msg {
                Some(Outbound::Push(p)) => Next::Push(p),
                Some(Outbound::Close) | None => {
                    self.ended = true;
                    Next::End
                }
            },
        }
    }

    fn try_next(&mut self) -> Option<Arc<Push>> {
        let guard = self.guard.as_mut()?;
        match guard.try_recv() {
            Ok(Outbound::Push(p)) => Some(p),
            Ok(Outbound::Close) => {
                self.ended = true;
                None
            }
            Err(TryRecvError::Empty) => None,
        }
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.s.readers.fetch_sub(1, Ordering::AcqRel);
        self.s.touch();
    }
}

fn no_session() -> Response<Body> {
    error_response(ApiError::unauthorized(
        "no_session",
        "no session: log in first, then send the session cookie or a bearer token",
    ))
}

fn put_event(buf: &mut BytesMut, push: &Push) {
    buf.put_slice(b"data: ");
    buf.put_slice(push.native_json().as_bytes());
    buf.put_slice(b"\n\n");
}

/// `GET /events`: the session's pushes as Server-Sent Events, one `data:`
/// line of native push JSON each.
pub(crate) async fn events(
    homer: Homer,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let request = HttpRequest::from_parts(req.method(), req.uri(), req.headers());
    let Some(s) = resolve(&homer, peer, &request).await else {
        return no_session();
    };
    let keepalive = homer.limits().sse_keepalive;
    let ticker = tokio::time::interval_at(tokio::time::Instant::now() + keepalive, keepalive);
    let reader = Reader::new(s);
    let stream = futures_util::stream::unfold(
        (reader, ticker, true),
        |(mut reader, mut ticker, first)| async move {
            if first {
                if !reader.attach().await {
                    return None;
                }
                let hello = Frame::data(Bytes::from_static(b": connected\n\n"));
                return Some((Ok(hello), (reader, ticker, false)));
            }
            let chunk = tokio::select! {
                n = reader.next() => match n {
                    Next::Push(p) => {
                        let mut buf = BytesMut::new();
                        put_event(&mut buf, &p);
                        for _ in 0..MAX_BATCH {
                            let Some(p) = reader.try_next() else { break };
                            put_event(&mut buf, &p);
                        }
                        buf.freeze()
                    }
                    Next::End => return None,
                },
                _ = ticker.tick() => Bytes::from_static(b": keepalive\n\n"),
            };
            reader.s.touch();
            Some((Ok(Frame::data(chunk)), (reader, ticker, false)))
        },
    );
    let mut res = Response::new(StreamBody::new(stream).boxed_unsync());
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    res
}

/// `GET /poll?wait=<seconds>`: waits for the session's next pushes (up to
/// `wait`, capped by the long-poll limit) and answers them as a JSON array
/// of native push objects; `[]` when none came.
pub(crate) async fn poll(homer: Homer, peer: SocketAddr, req: Request<Incoming>) -> Response<Body> {
    let request = HttpRequest::from_parts(req.method(), req.uri(), req.headers());
    let Some(s) = resolve(&homer, peer, &request).await else {
        return no_session();
    };
    let max = homer.limits().long_poll_wait;
    let wait = request
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|kv| kv.strip_prefix("wait="))
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|w| w.is_finite() && *w >= 0.0)
        .map_or(max, |w| Duration::from_secs_f64(w.min(max.as_secs_f64())));
    let mut reader = Reader::new(s);
    let mut pushes = Vec::new();
    if let Ok(Next::Push(p)) = tokio::time::timeout(wait, reader.next()).await {
        pushes.push(p);
        while pushes.len() < MAX_BATCH {
            let Some(p) = reader.try_next() else { break };
            pushes.push(p);
        }
    }
    let mut body = Vec::with_capacity(
        2 + pushes
            .iter()
            .map(|p| p.native_json().len() + 1)
            .sum::<usize>(),
    );
    body.push(b'[');
    for (i, p) in pushes.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(p.native_json().as_bytes());
    }
    body.push(b']');
    let mut res = full(StatusCode::OK, "application/json", body);
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}
