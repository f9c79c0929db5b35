//! A server with runtime API registration, multi-topic push over SSE,
//! WebSocket and TCP, and pluggable wire protocols.
//!
//! Register async handlers by name with [`Homer::api`] — typed params in,
//! a serialisable value or an [`ApiError`] out — at any time, also while the
//! server runs. Every transport reaches the same registry and the same
//! [`Hub`]: `POST /api/<name>` over HTTP/1.1, a WebSocket at `GET /ws`, and
//! TCP listeners speaking any [`Protocol`] (built in: [`JsonLines`] and
//! [`LengthPrefixed`], both carrying the native JSON format). Connections
//! subscribe to any number of topics; [`Homer::publish`] reaches every
//! subscriber on every transport, HTTP clients included through Server-Sent
//! Events at `GET /events` or long-poll at `GET /poll`. Every size, count and
//! time is limited, with safe defaults ([`Limits`]) that
//! [`HomerBuilder::build`] checks: a setting that cannot work (a zero
//! limit, a timeout under 10 ms) is refused with a [`BuildError`], never
//! raised silently. Bad input gets an error reply or a clean close, and a
//! reader that falls behind is disconnected instead of growing the
//! server's memory.
//!
//! The native format (PROTOCOL.md §1):
//!
//! ```text
//! request  {"id":7,"api":"chat.send","params":{...}}
//! reply    {"id":7,"status":200,"content":{...}}
//!          {"id":7,"status":403,"error":{"code":"not_member","message":"..."}}
//! push     {"push":"message","content":{...}}
//! ```
//!
//! # Example
//!
//! Register an API, call it over HTTP and over a JSON-lines TCP connection,
//! and push to the topic the TCP connection joined:
//!
//! ```
//! use homer::{ApiError, Context, Homer, Push};
//! use serde::Deserialize;
//! use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
//! use tokio::net::TcpStream;
//!
//! #[derive(Deserialize)]
//! struct Join {
//!     room: String,
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let homer = Homer::builder().build()?;
//! homer.api("room.join", |ctx: Context, p: Join| async move {
//!     ctx.subscribe(&format!("room:{}", p.room));
//!     Ok::<_, ApiError>(serde_json::json!({ "joined": p.room }))
//! });
//! let http = homer.listen_http("127.0.0.1:0").await?;
//! let tcp = homer.listen_tcp("127.0.0.1:0", homer::json_lines()).await?;
//!
//! // Over HTTP: the body is the params, the response the reply.
//! let mut s = TcpStream::connect(http).await?;
//! let body = r#"{"room":"rust"}"#;
//! let head = format!(
//!     "POST /api/room.join HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n",
//!     body.len()
//! );
//! s.write_all(format!("{head}{body}").as_bytes()).await?;
//! let mut response = String::new();
//! s.read_to_string(&mut response).await?;
//! assert!(response.starts_with("HTTP/1.1 200 OK"));
//! assert!(response.ends_with(r#"{"id":null,"status":200,"content":{"joined":"rust"}}"#));
//!
//! // Over TCP, one JSON object per line; then a push to the joined topic.
//! let (r, mut w) = TcpStream::connect(tcp).await?.into_split();
//! let mut lines = BufReader::new(r).lines();
//! w.write_all(b"{\"id\":1,\"api\":\"room.join\",\"params\":{\"room\":\"rust\"}}\n").await?;
//! assert_eq!(
//!     lines.next_line().await?.as_deref(),
//!     Some(r#"{"id":1,"status":200,"content":{"joined":"rust"}}"#)
//! );
//! let delivered = homer.publish("room:rust", Push::new("message", serde_json::json!({"text": "hi"})));
//! assert_eq!(delivered, 1);
//! assert_eq!(
//!     lines.next_line().await?.as_deref(),
//!     Some(r#"{"push":"message","content":{"text":"hi"}}"#)
//! );
//!
//! homer.shutdown(std::time::Duration::from_secs(1)).await;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```
//!
//! # HTTP sessions
//!
//! HTTP calls, `GET /events` and `GET /poll` of one client share a virtual
//! connection (an HTTP session) found by the request's `Authorization:
//! Bearer` token or, failing that, its session cookie
//! ([`HomerBuilder::session_cookie`], default `session`):
//!
//! 1. the login handler issues a token, calls [`Context::set_session_key`]
//!    with it and [`Context::set_cookie`] to hand it to a browser, sets the
//!    session state and subscribes to the user's topics — exactly as it does
//!    on a WebSocket;
//! 2. later requests with that key run on the same connection (same
//!    [`Session`], same topics), and `GET /events` streams its pushes, so the
//!    event stream carries exactly what a WebSocket of that session would;
//! 3. a key the server does not know (after a restart, or a token minted on
//!    another node) goes to the [`Homer::session_resolver`] hook, which may
//!    restore the session; the same hook restores a WebSocket's session
//!    from its upgrade request's cookie or bearer token.
//!
//! A session with no request and no event stream for the idle timeout
//! expires and its close hook runs.
//!
//! # Observing
//!
//! An [`Observer`] installed with [`HomerBuilder::observer`] hears of every
//! connection opened and closed and every call answered (its API, status,
//! transport and time), to keep metrics; homer itself depends on no
//! metrics crate.
//!
//! # Who may connect, TLS
//!
//! Every listener admits a socket only within
//! [`max_connections`](Limits::max_connections),
//! [`max_connections_per_ip`](Limits::max_connections_per_ip) and
//! [`connection_rate_per_ip`](Limits::connection_rate_per_ip); a refused
//! one is closed before any handshake and reported to
//! [`Observer::connection_refused`]. Behind a load balancer, name it in
//! [`HomerBuilder::trusted_proxies`]: its `X-Forwarded-For` (HTTP) and, with
//! [`HomerBuilder::proxy_protocol`], its PROXY protocol header (TCP) name
//! the client, who is then the peer and is limited. A connection that sends
//! nothing within [`first_message_timeout`](Limits::first_message_timeout),
//! or a WebSocket that answers no pings, is closed. [`Tls`] puts any
//! listener behind rustls: [`Homer::listen_https`] (https, wss) and
//! [`Homer::listen_tcp_tls`]. [`KeyedLimiter`] gives applications the same
//! token buckets per user or per address.
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | *(none)* | — | everything is always built: HTTP, SSE, long-poll, WebSocket, TCP |
//! | `testing` | no | [`testing`]: in-memory connections (the TCP connection task over a pipe), a native [`testing::Client`], and [`testing::check_protocol`], the conformance check for any [`Protocol`] |

mod admission;
mod connection;
mod context;
mod driver;
mod error;
mod hub;
mod limits;
mod message;
mod observer;
mod outbox;
mod protocol;
mod rate;
mod registry;
mod server;
mod session;
mod tcp;
#[cfg(feature = "testing")]
pub mod testing;
mod tls;
mod transport_http;

pub use admission::Refusal;
pub use connection::{CloseReason, ConnId, Connection, Transport};
pub use context::Context;
pub use error::{ApiError, BuildError, Error, ProtocolError, PushError};
pub use hub::Hub;
pub use limits::{Limits, RateLimit};
pub use message::{Call, Push, Reply};
pub use observer::{CallEvent, Observer};
pub use protocol::{
    Decoded, JsonLines, LengthPrefixed, MakeProtocol, Protocol, json_lines, length_prefixed, native,
};
pub use rate::KeyedLimiter;
pub use registry::Handler;
pub use server::{Homer, HomerBuilder};
pub use session::Session;
pub use tls::{Tls, TlsError};
pub use transport_http::{HttpRequest, HttpResponse};

/// The `cookie` crate, for [`Context::set_cookie`].
pub use cookie;
/// The `http` crate, for [`HttpRequest`]'s types.
pub use hyper::http;
