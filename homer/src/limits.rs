//! [`Limits`]: every size, count and time the server enforces.

use std::time::Duration;

/// A per-connection call rate: `per_second` calls on average, bursts of up to
/// `burst`; beyond it calls get 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Calls per second, on average.
    pub per_second: u32,
    /// Calls allowed at once after a quiet period.
    pub burst: u32,
}

impl Default for RateLimit {
    /// 20 calls per second with bursts of 50 (PROTOCOL.md §1).
    fn default() -> Self {
        Self {
            per_second: 20,
            burst: 50,
        }
    }
}

/// The limits a server enforces; set through [`HomerBuilder`](crate::HomerBuilder),
/// whose [`build`](crate::HomerBuilder::build) refuses a value outside the
/// allowed range with a [`BuildError`](crate::BuildError).
///
/// | limit | default | allowed |
/// |---|---|---|
/// | [`max_frame_size`](Self::max_frame_size) (request frame or HTTP body) | 64 KiB | at least 256 bytes |
/// | [`max_connections`](Self::max_connections) (sockets, all listeners) | 10 000 | 1 to 2^61 - 1 |
/// | [`max_connections_per_ip`](Self::max_connections_per_ip) (sockets of one source address) | 1 000 | at least 1 |
/// | [`connection_rate_per_ip`](Self::connection_rate_per_ip) (new sockets of one source address) | 100/s, bursts of 500 | each at least 1, or none |
/// | [`max_sessions`](Self::max_sessions) (HTTP sessions) | 10 000 | at least 1 |
/// | [`idle_timeout`](Self::idle_timeout) | 5 minutes | at least 10 ms |
/// | [`first_message_timeout`](Self::first_message_timeout) (TCP and WebSocket) | 60 s | at least 10 ms |
/// | [`handshake_timeout`](Self::handshake_timeout) (HTTP headers and body, WebSocket upgrade) | 10 s | at least 10 ms |
/// | [`outbound_queue`](Self::outbound_queue) (messages per connection) | 256 | at least 1 |
/// | [`rate_limit`](Self::rate_limit) | 20 calls/s, bursts of 50 | each at least 1, or none |
/// | [`max_in_flight`](Self::max_in_flight) (calls per connection) | 16 | at least 1 |
/// | [`long_poll_wait`](Self::long_poll_wait) (longest long-poll) | 30 s | any |
/// | [`sse_keepalive`](Self::sse_keepalive) (SSE comment and WebSocket ping interval; a WebSocket that answers 3 pings in a row with nothing is closed) | 15 s | at least 10 ms |
/// | [`max_static_file`](Self::max_static_file) | 32 MiB | any |
#[derive(Debug, Clone)]
pub struct Limits {
    pub(crate) max_frame_size: usize,
    pub(crate) max_connections: usize,
    pub(crate) max_connections_per_ip: usize,
    pub(crate) connection_rate_per_ip: Option<RateLimit>,
    pub(crate) max_sessions: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) first_message_timeout: Duration,
    pub(crate) handshake_timeout: Duration,
    pub(crate) outbound_queue: usize,
    pub(crate) rate_limit: Option<RateLimit>,
    pub(crate) max_in_flight: usize,
    pub(crate) long_poll_wait: Duration,
    pub(crate) sse_keepalive: Duration,
    pub(crate) max_static_file: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_frame_size: 64 * 1024,
            max_connections: 10_000,
            max_connections_per_ip: 1_000,
            connection_rate_per_ip: Some(RateLimit {
                per_second: 100,
                burst: 500,
            }),
            max_sessions: 10_000,
            idle_timeout: Duration::from_secs(300),
            first_message_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            outbound_queue: 256,
            rate_limit: Some(RateLimit::default()),
            max_in_flight: 16,
            long_poll_wait: Duration::from_secs(30),
            sse_keepalive: Duration::from_secs(15),
            max_static_file: 32 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Largest request frame (WebSocket message, TCP frame, HTTP body), bytes.
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }
    /// Most sockets open at once over all listeners; more are closed at once.
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }
    /// Most sockets one source address holds at once; more are closed
    /// before any handshake. Trusted proxies count by the client address
    /// their PROXY header names (TCP listeners with the PROXY protocol on),
    /// or not at all.
    pub fn max_connections_per_ip(&self) -> usize {
        self.max_connections_per_ip
    }
    /// How fast one source address may open sockets, if limited; beyond it
    /// they are closed before any handshake.
    pub fn connection_rate_per_ip(&self) -> Option<RateLimit> {
        self.connection_rate_per_ip
    }
    /// Most HTTP sessions (see [`Context::set_session_key`](crate::Context::set_session_key)).
    pub fn max_sessions(&self) -> usize {
        self.max_sessions
    }
    /// A connection that sends nothing for this long is closed; an HTTP
    /// session with no request and no event stream for this long expires.
    pub fn idle_timeout(&self) -> Duration {
        self.idle_timeout
    }
    /// A TCP or WebSocket connection that sends no frame this long after it
    /// opened is closed (pings and pongs do not count), so one that never
    /// logs in does not hold a slot for the whole idle timeout.
    pub fn first_message_timeout(&self) -> Duration {
        self.first_message_timeout
    }
    /// Time allowed for HTTP request headers and body, and for a WebSocket
    /// upgrade.
    pub fn handshake_timeout(&self) -> Duration {
        self.handshake_timeout
    }
    /// Messages queued for one connection before it counts as a slow reader
    /// and is disconnected.
    pub fn outbound_queue(&self) -> usize {
        self.outbound_queue
    }
    /// Per-connection call rate, if limited.
    pub fn rate_limit(&self) -> Option<RateLimit> {
        self.rate_limit
    }
    /// Calls of one connection running at once; past it the connection is
    /// not read until one finishes.
    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }
    /// Longest wait of one long-poll request.
    pub fn long_poll_wait(&self) -> Duration {
        self.long_poll_wait
    }
    /// Interval of SSE keep-alive comments and WebSocket pings.
    pub fn sse_keepalive(&self) -> Duration {
        self.sse_keepalive
    }
    /// Largest static file served, bytes.
    pub fn max_static_file(&self) -> u64 {
        self.max_static_file
    }
}
