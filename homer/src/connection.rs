//! [`Connection`]: one client, on any transport.

use std::collections::HashSet;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

use crate::error::PushError;
use crate::hub::HubInner;
use crate::limits::RateLimit;
use crate::message::Push;
use crate::outbox::{Outbox, Receiver, Signal, TrySendError};
use crate::rate::TokenBucket;
use crate::session::Session;
use crate::transport_http::HttpRequest;

/// A connection's id, unique within one server for its lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub(crate) u64);

impl ConnId {
    /// The number.
    pub fn get(self) -> u64 {
        self.0
    }

    /// The id with this number (as returned by [`get`](Self::get)), to look
    /// a connection up after storing its number.
    pub fn from_raw(n: u64) -> Self {
        Self(n)
    }
}

impl fmt::Display for ConnId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// How a connection reached the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// An HTTP session: `POST /api/...` calls, pushes over `GET /events` or
    /// long-poll, tied together by a session key.
    Http,
    /// A WebSocket at `GET /ws`.
    WebSocket,
    /// A TCP listener with a [`Protocol`](crate::Protocol).
    Tcp,
    /// An in-memory pipe (`homer::testing`, feature `testing`), served like
    /// a TCP connection.
    Memory,
}

impl Transport {
    /// A short lower-case name: `http`, `websocket`, `tcp` or `memory` (for
    /// logs and metric labels).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Http => "http",
            Transport::WebSocket => "websocket",
            Transport::Tcp => "tcp",
            Transport::Memory => "memory",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How many pings in a row a WebSocket peer may leave unanswered before it
/// is closed as [`CloseReason::DeadPeer`].
pub(crate) const UNANSWERED_PINGS: u32 = 3;

/// Why a connection ended; given to the close hook.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed the connection.
    PeerClosed,
    /// The application closed it, with this reason.
    Closed(String),
    /// Nothing arrived for longer than the idle timeout (for an HTTP
    /// session: no request and no event stream).
    Idle(Duration),
    /// The connection sent nothing within the first-message timeout.
    Silent(Duration),
    /// A WebSocket peer answered none of the last pings (their interval
    /// given): it is gone, or not reading.
    DeadPeer(Duration),
    /// Its outbound queue filled up: it read too slowly.
    SlowReader {
        /// The queue's capacity, in messages.
        capacity: usize,
    },
    /// A request frame was larger than the limit and could not be skipped.
    TooLarge(String),
    /// The peer broke the protocol.
    Protocol(String),
    /// Reading or writing the socket failed.
    Io(String),
    /// The server shut down.
    Shutdown,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PeerClosed => f.write_str("peer closed the connection"),
            Self::Closed(r) => write!(f, "closed by the server: {r}"),
            Self::Idle(d) => write!(f, "idle for longer than the {}s idle timeout", d.as_secs()),
            Self::DeadPeer(d) => write!(
                f,
                "answered no ping for {} ms",
                (*d * UNANSWERED_PINGS).as_millis()
            ),
            Self::Silent(d) => write!(f, "sent nothing within {} ms of connecting", d.as_millis()),
            Self::SlowReader { capacity } => write!(
                f,
                "slow reader: outbound queue of {capacity} messages is full"
            ),
            Self::TooLarge(e) => write!(f, "too large: {e}"),
            Self::Protocol(e) => write!(f, "protocol error: {e}"),
            Self::Io(e) => write!(f, "i/o error: {e}"),
            Self::Shutdown => f.write_str("server shutting down"),
        }
    }
}

/// What a connection's queue carries to its writer.
#[derive(Debug)]
pub(crate) enum Outbound {
    Push(Arc<Push>),
    /// Close after writing what was queued before; the reason is in
    /// [`ConnInner::reason`].
    Close,
}

pub(crate) struct ConnInner {
    pub(crate) id: ConnId,
    pub(crate) peer: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) protocol: &'static str,
    pub(crate) outbox: Outbox,
    pub(crate) capacity: usize,
    /// Hard stop: the writer gives up at once.
    pub(crate) kill: Signal,
    /// A close was requested.
    pub(crate) closing: Signal,
    reason: Mutex<Option<CloseReason>>,
    /// Unregistered from the hub: no new subscription is taken.
    pub(crate) finished: AtomicBool,
    /// The open hook ran (or is running): the close hook will run.
    pub(crate) opened: AtomicBool,
    session: Session,
    pub(crate) topics: Mutex<HashSet<Arc<str>>>,
    rate: Option<(RateLimit, Mutex<TokenBucket>)>,
    pub(crate) hub: Weak<HubInner>,
    pub(crate) http: Option<Arc<HttpRequest>>,
}

/// A handle to one connection: its identity, its session state, its topics,
/// and a way to push to it or close it. Cheap to clone.
///
/// Handlers reach their own connection through
/// [`Context`](crate::Context); any connection can be looked up by id with
/// [`Hub::connection`](crate::Hub::connection).
#[derive(Clone)]
pub struct Connection {
    pub(crate) inner: Arc<ConnInner>,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.inner.id)
            .field("peer", &self.inner.peer)
            .field("transport", &self.inner.transport)
            .field("protocol", &self.inner.protocol)
            .finish_non_exhaustive()
    }
}

pub(crate) struct NewConn {
    pub(crate) id: ConnId,
    pub(crate) peer: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) protocol: &'static str,
    pub(crate) capacity: usize,
    pub(crate) rate: Option<RateLimit>,
    pub(crate) hub: Weak<HubInner>,
    pub(crate) http: Option<Arc<HttpRequest>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Connection {
    pub(crate) fn new(n: NewConn) -> (Self, Receiver) {
        let inner = ConnInner {
            id: n.id,
            peer: n.peer,
            transport: n.transport,
            protocol: n.protocol,
            outbox: Outbox::new(n.capacity.max(1)),
            capacity: n.capacity.max(1),
            kill: Signal::default(),
            closing: Signal::default(),
            reason: Mutex::new(None),
            finished: AtomicBool::new(false),
            opened: AtomicBool::new(false),
            session: Session::default(),
            topics: Mutex::new(HashSet::new()),
            rate: n.rate.map(|r| (r, Mutex::new(TokenBucket::new(r)))),
            hub: n.hub,
            http: n.http,
        };
        let inner = Arc::new(inner);
        let rx = Receiver::new(inner.clone());
        (Self { inner }, rx)
    }

    /// The id.
    pub fn id(&self) -> ConnId {
        self.inner.id
    }

    /// The peer's address (IP and port).
    pub fn peer_addr(&self) -> SocketAddr {
        self.inner.peer
    }

    /// The peer's IP address, without the port.
    pub fn peer_ip(&self) -> IpAddr {
        self.inner.peer.ip()
    }

    /// The transport.
    pub fn transport(&self) -> Transport {
        self.inner.transport
    }

    /// The wire protocol's name: `http`, `websocket`, or the TCP
    /// [`Protocol::name`](crate::Protocol::name) (`json-lines`,
    /// `length-prefixed`, ...).
    pub fn protocol(&self) -> &'static str {
        self.inner.protocol
    }

    /// State the application attached to this connection.
    pub fn session(&self) -> &Session {
        &self.inner.session
    }

    /// The HTTP request that opened this connection (the WebSocket upgrade),
    /// if any.
    pub fn http(&self) -> Option<&HttpRequest> {
        self.inner.http.as_deref()
    }

    /// Subscribes to `topic`; returns false if the connection is closed.
    pub fn subscribe(&self, topic: &str) -> bool {
        match self.inner.hub.upgrade() {
            Some(hub) => hub.subscribe(self, topic),
            None => false,
        }
    }

    /// Unsubscribes from `topic`; returns whether it was subscribed.
    pub fn unsubscribe(&self, topic: &str) -> bool {
        match self.inner.hub.upgrade() {
            Some(hub) => hub.unsubscribe(self, topic),
            None => false,
        }
    }

    /// The topics this connection is subscribed to.
    pub fn topics(&self) -> Vec<String> {
        let mut t: Vec<String> = lock(&self.inner.topics)
            .iter()
            .map(|t| t.to_string())
            .collect();
        t.sort();
        t
    }

    /// How many messages (pushes, a close notice) wait in this connection's
    /// outbound queue, at most its capacity
    /// ([`HomerBuilder::outbound_queue`](crate::HomerBuilder::outbound_queue)).
    pub fn queued(&self) -> usize {
        self.inner.outbox.len()
    }

    /// Queues `push` for this connection only. A full queue disconnects the
    /// connection as a slow reader.
    pub fn push(&self, push: Push) -> Result<(), PushError> {
        self.send_push(Arc::new(push))
    }

    /// Queues a push shared with other connections: an application that
    /// fans one event out to many connections itself builds the push once,
    /// and its wire encoding is computed once for all of them, as
    /// [`Hub::publish`](crate::Hub::publish) does. A full queue disconnects
    /// the connection as a slow reader.
    pub fn push_shared(&self, push: Arc<Push>) -> Result<(), PushError> {
        self.send_push(push)
    }

    pub(crate) fn send_push(&self, push: Arc<Push>) -> Result<(), PushError> {
        if self.inner.closing.is_cancelled() {
            return Err(PushError::Closed(self.inner.id));
        }
        match self.inner.outbox.try_send(Outbound::Push(push)) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full) => {
                self.disconnect(CloseReason::SlowReader {
                    capacity: self.inner.capacity,
                });
                Err(PushError::QueueFull {
                    conn: self.inner.id,
                    capacity: self.inner.capacity,
                })
            }
            Err(TrySendError::Closed) => Err(PushError::Closed(self.inner.id)),
        }
    }

    /// Closes the connection after what is already queued for it has been
    /// written (so a push sent just before, such as a "session replaced"
    /// notice, arrives first). The close hook gets
    /// [`CloseReason::Closed`] with `reason`.
    pub fn close(&self, reason: impl Into<String>) {
        self.close_with(CloseReason::Closed(reason.into()));
    }

    pub(crate) fn close_with(&self, reason: CloseReason) {
        self.set_reason(reason);
        self.inner.closing.cancel();
        match self.inner.outbox.try_send(Outbound::Close) {
            Ok(()) | Err(TrySendError::Closed) => {}
            Err(TrySendError::Full) => self.inner.kill.cancel(),
        }
    }

    /// Drops the connection at once, without writing what is queued.
    pub(crate) fn disconnect(&self, reason: CloseReason) {
        self.set_reason(reason);
        self.inner.closing.cancel();
        self.inner.kill.cancel();
    }

    /// Whether a close was requested or the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.inner.closing.is_cancelled() || self.inner.finished.load(Ordering::Acquire)
    }

    /// Records `reason` unless one was recorded already (the first wins).
    pub(crate) fn set_reason(&self, reason: CloseReason) {
        let mut r = lock(&self.inner.reason);
        if r.is_none() {
            *r = Some(reason);
        }
    }

    pub(crate) fn reason(&self) -> Option<CloseReason> {
        lock(&self.inner.reason).clone()
    }

    /// Takes a rate-limit token; true when the call may proceed.
    pub(crate) fn allow_call(&self, now: Instant) -> bool {
        match &self.inner.rate {
            None => true,
            Some((limit, bucket)) => lock(bucket).try_take(*limit, now),
        }
    }

    pub(crate) fn rate_limit(&self) -> Option<RateLimit> {
        self.inner.rate.as_ref().map(|(l, _)| *l)
    }
}
