//! Test support (feature `testing`): connections without sockets, a native
//! client, and one conformance check for any [`Protocol`].
//!
//! - [`connect`] opens an in-memory connection to a [`Homer`] speaking any
//!   protocol: the same connection task, limits, hooks and pushes as a TCP
//!   listener's, over a [`tokio::io::duplex`] pipe instead of a socket.
//!   [`connect_http`] does the same for an HTTP listener's connection.
//! - [`Client`] speaks the native JSON-lines protocol over it (or over any
//!   byte stream): [`call`](Client::call), [`push`](Client::push),
//!   [`try_push`](Client::try_push) (nothing pushed for a while),
//!   [`closed`](Client::closed).
//! - [`check_protocol`] runs the checks every decoder must pass: any bytes,
//!   cut anywhere, never panic and never buffer past the limit; valid frames
//!   decode the same whatever the read boundaries.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use homer::testing::Client;
//! use homer::{ApiError, Context, Homer, Push};
//! use serde_json::{Value, json};
//!
//! let homer = Homer::builder().build().unwrap();
//! homer.api("echo", |ctx: Context, params: Value| async move {
//!     ctx.push(Push::new("echoed", params.clone())).ok();
//!     Ok::<_, ApiError>(params)
//! });
//! let mut client = Client::connect(&homer).expect("a connection slot");
//! assert_eq!(client.call("echo", json!({"x": 1})).await, Ok(json!({"x": 1})));
//! assert_eq!(client.push().await, ("echoed".into(), json!({"x": 1})));
//! let (status, error) = client.call("nope", json!(null)).await.unwrap_err();
//! assert_eq!((status, error["code"].as_str()), (404, Some("unknown_api")));
//! # }
//! ```

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::BytesMut;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, DuplexStream};

use crate::connection::Transport;
use crate::protocol::{Decoded, MakeProtocol, Protocol};
use crate::{ApiError, Homer, Push, Refusal, Reply, json_lines};

/// The address in-memory connections come from unless one is given.
pub const TEST_PEER: SocketAddr = SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);

/// How many bytes an in-memory connection buffers in each direction.
const PIPE: usize = 64 * 1024;

/// Why [`connect`] opened no connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The server refused it, as it would a socket (its limit of
    /// connections, or the peer address's).
    #[error("refused: {0}")]
    Refused(Refusal),
    /// The server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
}

/// Open an in-memory connection to `homer` speaking the protocol `make`
/// makes, from [`TEST_PEER`]; returns the client's end of the pipe.
pub fn connect<M: MakeProtocol>(homer: &Homer, make: M) -> Result<DuplexStream, ConnectError> {
    connect_from(homer, make, TEST_PEER)
}

/// [`connect`] from a given peer address (for per-address behaviour).
pub fn connect_from<M: MakeProtocol>(
    homer: &Homer,
    make: M,
    peer: SocketAddr,
) -> Result<DuplexStream, ConnectError> {
    if homer.is_shutting_down() {
        return Err(ConnectError::ShuttingDown);
    }
    let permit = homer.admit(peer).map_err(ConnectError::Refused)?;
    let (client, server) = tokio::io::duplex(PIPE);
    let protocol = make.make(homer.limits());
    homer.spawn(crate::tcp::serve_connection(
        homer.clone(),
        server,
        peer,
        permit,
        protocol,
        Transport::Memory,
        None,
    ));
    Ok(client)
}

/// Open an in-memory HTTP/1.1 connection to `homer` from `peer`, served as a
/// socket of [`listen_http`](Homer::listen_http) would be: API calls,
/// `/events`, WebSocket upgrades, routes and static files. Returns the
/// client's end of the pipe: write a request, read the response.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tokio::io::{AsyncReadExt, AsyncWriteExt};
///
/// let homer = homer::Homer::builder().build()?;
/// homer.http_get("/healthz", |_| async { homer::HttpResponse::text(200, "ok") });
/// let mut http = homer::testing::connect_http(&homer, homer::testing::TEST_PEER)?;
/// http.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await?;
/// let mut response = String::new();
/// http.read_to_string(&mut response).await?;
/// assert!(response.starts_with("HTTP/1.1 200 OK") && response.ends_with("ok"));
/// # Ok(())
/// # }
/// ```
pub fn connect_http(homer: &Homer, peer: SocketAddr) -> Result<DuplexStream, ConnectError> {
    if homer.is_shutting_down() {
        return Err(ConnectError::ShuttingDown);
    }
    let permit = homer.admit(peer).map_err(ConnectError::Refused)?;
    let (client, server) = tokio::io::duplex(PIPE);
    homer.spawn(crate::transport_http::serve_connection(
        homer.clone(),
        server,
        peer,
        permit,
    ));
    Ok(client)
}

/// A native-protocol client (JSON lines): one call at a time, pushes kept
/// in arrival order until asked for.
pub struct Client<S = DuplexStream> {
    io: BufReader<S>,
    next_id: u64,
    pushes: std::collections::VecDeque<(String, Value)>,
    timeout: Duration,
    /// What was read of a line a timeout cut.
    partial: Vec<u8>,
}

impl<S> fmt::Debug for Client<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("next_id", &self.next_id)
            .field("pushes", &self.pushes.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// An in-memory connection to `homer` with the native protocol.
    pub fn connect(homer: &Homer) -> Result<Self, ConnectError> {
        Ok(Self::over(connect(homer, json_lines())?))
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> Client<S> {
    /// A client over any byte stream (a `TcpStream` to a `json_lines`
    /// listener, say).
    pub fn over(io: S) -> Self {
        Client {
            io: BufReader::new(io),
            next_id: 1,
            pushes: Default::default(),
            timeout: Duration::from_secs(10),
            partial: Vec::new(),
        }
    }

    /// How long [`call`](Self::call) and [`push`](Self::push) wait before
    /// they panic (default 10 s).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Call `api`; `Ok(content)` for a 200, `Err((status, error))` otherwise
    /// (`error` is `{"code", "message"}`).
    /// Pushes that arrive meanwhile are kept for [`push`](Self::push).
    ///
    /// Panics if the connection closes or nothing answers in time: a test
    /// helper, it fails the test with what it saw.
    pub async fn call(&mut self, api: &str, params: Value) -> Result<Value, (u16, Value)> {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(&json!({"id": id, "api": api, "params": params}).to_string())
            .await;
        loop {
            let msg = self.read().await;
            if msg.get("push").is_some() {
                self.keep_push(msg);
                continue;
            }
            if msg["id"] != json!(id) {
                panic!("a reply to call {id} ({api}) was expected, got {msg}");
            }
            let status = msg["status"].as_u64().and_then(|s| u16::try_from(s).ok());
            return match status {
                Some(200) => Ok(msg["content"].clone()),
                Some(status) => Err((status, msg["error"].clone())),
                None => panic!("a reply without a status: {msg}"),
            };
        }
    }

    /// The next push: `(kind, content)`.
    pub async fn push(&mut self) -> (String, Value) {
        if let Some(p) = self.pushes.pop_front() {
            return p;
        }
        let msg = self.read().await;
        if msg.get("push").is_none() {
            panic!("a push was expected, got {msg}");
        }
        self.keep_push(msg);
        self.pushes.pop_front().unwrap_or_default()
    }

    /// The next push if one arrives within `within`, else `None`: for
    /// checking that nothing is pushed.
    pub async fn try_push(&mut self, within: Duration) -> Option<(String, Value)> {
        if let Some(p) = self.pushes.pop_front() {
            return Some(p);
        }
        let msg = self.next(within).await?;
        if msg.get("push").is_none() {
            panic!("a push was expected, got {msg}");
        }
        self.keep_push(msg);
        self.pushes.pop_front()
    }

    /// Whether the server closes the connection within the timeout,
    /// skipping what it writes before.
    pub async fn closed(&mut self) -> bool {
        let deadline = tokio::time::Instant::now() + self.timeout;
        loop {
            self.partial.clear();
            let read =
                tokio::time::timeout_at(deadline, self.io.read_until(b'\n', &mut self.partial));
            match read.await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => continue,
            }
        }
    }

    /// Write one raw line (a newline is added).
    pub async fn send_raw(&mut self, line: &str) {
        let io = self.io.get_mut();
        let written = async {
            io.write_all(line.as_bytes()).await?;
            io.write_all(b"\n").await?;
            io.flush().await
        };
        if let Err(e) = written.await {
            panic!("writing to the connection failed: {e}");
        }
    }

    /// Read the next JSON object the server wrote.
    pub async fn read(&mut self) -> Value {
        let timeout = self.timeout;
        match self.next(timeout).await {
            Some(msg) => msg,
            None => panic!("nothing arrived within {timeout:?}"),
        }
    }

    /// The next JSON object, if one arrives within `within`. A line cut by
    /// the timeout is kept for the next read.
    async fn next(&mut self, within: Duration) -> Option<Value> {
        // `read_until` keeps what it read when the timeout cancels it.
        let read = tokio::time::timeout(within, self.io.read_until(b'\n', &mut self.partial));
        match read.await {
            Err(_) => None,
            Ok(Err(e)) => panic!("reading from the connection failed: {e}"),
            Ok(Ok(0)) => panic!("the server closed the connection"),
            Ok(Ok(_)) => {
                let line = std::mem::take(&mut self.partial);
                Some(serde_json::from_slice(&line).unwrap_or_else(|e| {
                    let line = String::from_utf8_lossy(&line);
                    panic!("the server wrote a line that is not JSON ({e}): {line}")
                }))
            }
        }
    }

    fn keep_push(&mut self, msg: Value) {
        let kind = msg["push"].as_str().unwrap_or_default().to_owned();
        self.pushes.push_back((kind, msg["content"].clone()));
    }
}

/// The checks every [`Protocol`] decoder must pass, with `make` making a
/// fresh decoder and `sample` a stream of frames that decodes without an
/// error (at least one frame; replies such as a 400 for a bad line count):
///
/// 1. `sample` decodes to the same frames however it is cut into reads
///    (every single cut, and random sets of cuts);
/// 2. any bytes, in any chunks, and `sample` with bytes flipped or cut
///    short, never panic, and between frames the decoder buffers at most
///    `max_buffered` bytes;
/// 3. a decoder makes progress: it never yields more than two frames in a
///    row without consuming bytes (a notice such as a 413 may come before
///    the bytes it is about are skipped; more would be a busy loop);
/// 4. encoding replies, errors, pushes and a close never panics.
///
/// Panics with the failing input, as an assertion does.
///
/// ```
/// homer::testing::check_protocol(
///     || homer::JsonLines::new(64),
///     b"{\"id\":1,\"api\":\"a\"}\n{\"id\":2,\"api\":\"b\",\"params\":[1]}\n",
///     64 + 256,
/// );
/// ```
pub fn check_protocol<P, F>(make: F, sample: &[u8], max_buffered: usize)
where
    P: Protocol,
    F: Fn() -> P,
{
    let whole = decode_chunks(&make, &[sample], max_buffered)
        .unwrap_or_else(|e| panic!("the sample does not decode: {e}"));
    assert!(!whole.is_empty(), "the sample holds no frame");

    for cut in 0..=sample.len() {
        let (a, b) = sample.split_at(cut);
        let got = decode_chunks(&make, &[a, b], max_buffered)
            .unwrap_or_else(|e| panic!("the sample cut at {cut} fails: {e}"));
        assert_eq!(
            got, whole,
            "the sample cut at byte {cut} decodes differently"
        );
    }

    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    let len = sample.len();
    let cuts = proptest::collection::vec(0..=len, 0..8);
    runner
        .run(&cuts, |mut cuts| {
            cuts.sort_unstable();
            let mut chunks = Vec::with_capacity(cuts.len() + 1);
            let mut at = 0;
            for c in cuts {
                chunks.push(&sample[at..c]);
                at = c;
            }
            chunks.push(&sample[at..]);
            let got = decode_chunks(&make, &chunks, max_buffered).map_err(TestCaseError::fail)?;
            prop_assert_eq!(got, whole.clone());
            Ok(())
        })
        .unwrap_or_else(|e| panic!("read boundaries change what the sample decodes to: {e}"));

    let garbage = proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..256), 0..12);
    runner
        .run(&garbage, |chunks| {
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            survive(&make, &chunks, max_buffered).map_err(TestCaseError::fail)
        })
        .unwrap_or_else(|e| panic!("arbitrary bytes break the decoder: {e}"));

    let mutated = (any::<proptest::sample::Index>(), any::<u8>(), 0..=len);
    runner
        .run(&mutated, |(at, byte, keep)| {
            let mut bytes = sample.to_vec();
            if !bytes.is_empty() {
                let i = at.index(bytes.len());
                bytes[i] ^= byte.max(1);
            }
            bytes.truncate(keep);
            survive(&make, &[&bytes], max_buffered).map_err(TestCaseError::fail)
        })
        .unwrap_or_else(|e| panic!("a damaged sample breaks the decoder: {e}"));

    let mut p = make();
    let mut out = BytesMut::new();
    let replies = [
        Reply::ok(json!(1), Some("a".into()), json!({"x": [1, "é", null]})),
        Reply::ok(json!(null), None, Value::Null),
        Reply::error(
            json!("s"),
            Some("a".into()),
            ApiError::bad_request("bad", "no"),
        ),
        Reply::error(json!(2), None, ApiError::too_large(10, 5)),
    ];
    for reply in &replies {
        let _ = p.encode_reply(reply, &mut out);
    }
    let _ = p.encode_push(&Push::new("message", json!({"text": "hi 你好"})), &mut out);
    let _ = p.encode_push(&Push::new("", Value::Null), &mut out);
    let _ = p.encode_close("shutdown", &mut out);
}

/// How a feed of chunks ended.
enum Fed {
    /// Every frame (their `Debug` form), through the end of the stream.
    Frames(Vec<String>),
    /// The decoder refused the input (the connection would close).
    Refused(String),
}

/// Decode `bytes` in one read with a fresh decoder from `make`: each frame
/// as the call's id (`Decoded::Call`) or the reply's status
/// (`Decoded::Reply`), for a protocol's own tests of what a sample means.
///
/// ```
/// let got = homer::testing::ids_and_statuses(
///     || homer::JsonLines::new(64),
///     b"{\"id\":1,\"api\":\"a\"}\n{nope\n",
/// );
/// assert_eq!(got, ["1", "400"]);
/// ```
pub fn ids_and_statuses<P: Protocol>(make: impl Fn() -> P, bytes: &[u8]) -> Vec<String> {
    let mut p = make();
    let mut buf = BytesMut::from(bytes);
    let mut got = Vec::new();
    while let Ok(Some(frame)) = p.decode(&mut buf) {
        got.push(match frame {
            Decoded::Call(c) => c.id.to_string(),
            Decoded::Reply(r) => r.status().to_string(),
        });
    }
    got
}

/// Decode `chunks` as successive reads, then the end of the stream. `Err`
/// for what no decoder may do: buffer past `max_buffered`, or stall.
fn feed<P: Protocol>(
    make: &impl Fn() -> P,
    chunks: &[&[u8]],
    max_buffered: usize,
) -> Result<Fed, String> {
    let mut p = make();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut stalls = 0;
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            let before = buf.len();
            match p.decode(&mut buf) {
                Ok(Some(frame)) => {
                    check_progress(before, buf.len(), &mut stalls)?;
                    frames.push(summary(&frame));
                }
                Ok(None) => {
                    stalls = 0;
                    break;
                }
                Err(e) => return Ok(Fed::Refused(format!("decode failed: {e}"))),
            }
        }
        check_bound(buf.len(), max_buffered)?;
    }
    for _ in 0..1_000_000 {
        match p.decode_eof(&mut buf) {
            Ok(Some(frame)) => frames.push(summary(&frame)),
            Ok(None) => return Ok(Fed::Frames(frames)),
            Err(e) => return Ok(Fed::Refused(format!("decode at the end failed: {e}"))),
        }
    }
    Err("decode_eof never ends".into())
}

/// The frames of valid input, or why not.
fn decode_chunks<P: Protocol>(
    make: &impl Fn() -> P,
    chunks: &[&[u8]],
    max_buffered: usize,
) -> Result<Vec<String>, String> {
    match feed(make, chunks, max_buffered)? {
        Fed::Frames(frames) => Ok(frames),
        Fed::Refused(why) => Err(why),
    }
}

/// Any input: refusing it is fine, panics, unbounded buffering and stalls
/// are not.
fn survive<P: Protocol>(
    make: &impl Fn() -> P,
    chunks: &[&[u8]],
    max_buffered: usize,
) -> Result<(), String> {
    feed(make, chunks, max_buffered).map(drop)
}

/// A frame that consumed nothing is a stall; three in a row could be forever.
fn check_progress(before: usize, after: usize, stalls: &mut u32) -> Result<(), String> {
    if after < before {
        *stalls = 0;
        return Ok(());
    }
    *stalls += 1;
    if *stalls > 2 {
        return Err(format!(
            "{stalls} frames in a row were decoded without consuming bytes ({before} buffered)"
        ));
    }
    Ok(())
}

fn check_bound(buffered: usize, max: usize) -> Result<(), String> {
    if buffered > max {
        return Err(format!(
            "{buffered} bytes buffered, more than the {max} allowed"
        ));
    }
    Ok(())
}

fn summary(frame: &Decoded) -> String {
    format!("{frame:?}")
}
