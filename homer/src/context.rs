//! [`Context`]: what a handler knows about the call and its connection.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use cookie::Cookie;

use crate::connection::{ConnId, Connection, Transport};
use crate::error::PushError;
use crate::hub::Hub;
use crate::message::Push;
use crate::server::Homer;
use crate::session::Session;
use crate::transport_http::{HttpCall, HttpRequest};

pub(crate) struct CallState {
    pub(crate) api: Option<String>,
    pub(crate) http: Option<HttpCall>,
    pub(crate) after_reply: Mutex<Vec<Push>>,
}

impl CallState {
    pub(crate) fn new(api: Option<String>, http: Option<HttpCall>) -> Arc<Self> {
        Arc::new(Self {
            api,
            http,
            after_reply: Mutex::new(Vec::new()),
        })
    }

    pub(crate) fn take_after_reply(&self) -> Vec<Push> {
        std::mem::take(
            &mut *self
                .after_reply
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// What a handler (or hook) gets: the connection it runs for, the server,
/// and for HTTP the request and a way to shape the response.
///
/// Cheap to clone; every method is also reachable through
/// [`connection`](Self::connection).
#[derive(Clone)]
pub struct Context {
    pub(crate) conn: Connection,
    pub(crate) homer: Homer,
    pub(crate) call: Option<Arc<CallState>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("conn", &self.conn)
            .field("api", &self.api())
            .finish_non_exhaustive()
    }
}

impl Context {
    pub(crate) fn new(conn: Connection, homer: Homer, call: Option<Arc<CallState>>) -> Self {
        Self { conn, homer, call }
    }

    /// The connection this call came from.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The connection's id.
    pub fn conn_id(&self) -> ConnId {
        self.conn.id()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> SocketAddr {
        self.conn.peer_addr()
    }

    /// The peer's IP, without the port (the `ip` of a chat message).
    pub fn peer_ip(&self) -> IpAddr {
        self.conn.peer_ip()
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.conn.transport()
    }

    /// The connection's session state (the logged-in user, ...).
    pub fn session(&self) -> &Session {
        self.conn.session()
    }

    /// The API being called; `None` in hooks.
    pub fn api(&self) -> Option<&str> {
        self.call.as_ref().and_then(|c| c.api.as_deref())
    }

    /// Subscribes this connection to `topic`.
    pub fn subscribe(&self, topic: &str) -> bool {
        self.conn.subscribe(topic)
    }

    /// Unsubscribes this connection from `topic`.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        self.conn.unsubscribe(topic)
    }

    /// Pushes to this connection only, at once (possibly before the reply).
    pub fn push(&self, push: Push) -> Result<(), PushError> {
        self.conn.push(push)
    }

    /// Pushes to this connection right after the reply to this call is
    /// written: "offline messages follow the login reply". Outside a call it
    /// pushes at once.
    pub fn push_after_reply(&self, push: Push) -> Result<(), PushError> {
        match &self.call {
            Some(call) => {
                call.after_reply
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(push);
                Ok(())
            }
            None => self.conn.push(push),
        }
    }

    /// Closes this connection after its reply and what is queued (see
    /// [`Connection::close`]).
    pub fn close(&self, reason: impl Into<String>) {
        self.conn.close(reason)
    }

    /// The server: register APIs, publish.
    pub fn homer(&self) -> &Homer {
        &self.homer
    }

    /// The hub: publish, look up and close other connections.
    pub fn hub(&self) -> &Hub {
        self.homer.hub()
    }

    /// The HTTP request of this call, or the WebSocket upgrade request of
    /// this connection; `None` on TCP.
    pub fn http(&self) -> Option<&HttpRequest> {
        match self.call.as_ref().and_then(|c| c.http.as_ref()) {
            Some(h) => Some(&h.request),
            None => self.conn.http(),
        }
    }

    /// The request's cookie `name` (HTTP and WebSocket).
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.http().and_then(|h| h.cookie(name))
    }

    /// The request's `Authorization: Bearer` token (HTTP and WebSocket).
    pub fn bearer_token(&self) -> Option<&str> {
        self.http().and_then(HttpRequest::bearer_token)
    }

    /// Adds a `Set-Cookie` header to this call's HTTP response; false (and
    /// nothing happens) when the call did not come over HTTP.
    pub fn set_cookie(&self, cookie: Cookie<'static>) -> bool {
        match self.call.as_ref().and_then(|c| c.http.as_ref()) {
            Some(h) => {
                h.set_cookies
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(cookie.to_string());
                true
            }
            None => false,
        }
    }

    /// Ties this HTTP call's connection to `key` (the session token the
    /// application just issued, also set as the session cookie or handed out
    /// as a bearer token): later requests, `GET /events` streams and
    /// long-polls carrying the key share this connection — its session
    /// state, its topics and its pushes. Call it in the login handler.
    ///
    /// Returns false when the call did not come over HTTP or the session
    /// limit is reached. Calling it again with a new key re-keys the session.
    pub fn set_session_key(&self, key: impl Into<String>) -> bool {
        match self.call.as_ref().and_then(|c| c.http.as_ref()) {
            Some(h) => crate::transport_http::session::bind(&self.homer, &self.conn, h, key.into()),
            None => false,
        }
    }
}
