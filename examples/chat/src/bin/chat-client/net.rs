//! The connection to the server: WebSocket (`ws://host:port/ws`, one JSON
//! object per text frame) or native TCP (`tcp://host:port`, one JSON object
//! per line), reconnected with exponential backoff and jitter.
//!
//! The network task knows nothing about the protocol's meaning: it hands
//! every frame up as a [`NetEvent`] and writes what it is given. Each
//! connection has a generation number; frames queued for an older connection
//! are dropped, so a request never reaches a server that did not see the
//! login it depends on.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// Largest frame accepted from the server. Its own pushes are far smaller
/// (a message is at most a few KiB); a bigger frame ends the connection.
pub(crate) const MAX_FRAME: usize = 1 << 20;
/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The first reconnection delay.
pub(crate) const MIN_BACKOFF: Duration = Duration::from_millis(500);

/// Where the server is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// `ws://host:port/path`.
    Ws(String),
    /// `host:port` of the native TCP listener.
    Tcp(String),
}

impl FromStr for Endpoint {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("ws://") {
            if rest.is_empty() || rest.starts_with('/') {
                return Err(format!("`{s}` has no host: expected ws://host:port/ws"));
            }
            let url = if rest.contains('/') {
                s.to_owned()
            } else {
                format!("{s}/ws")
            };
            Ok(Endpoint::Ws(url))
        } else if let Some(rest) = s.strip_prefix("tcp://") {
            let addr = rest.trim_end_matches('/');
            if !addr.contains(':') || addr.contains('/') {
                return Err(format!("`{s}` is not tcp://host:port"));
            }
            Ok(Endpoint::Tcp(addr.to_owned()))
        } else if s.starts_with("wss://") {
            Err(format!(
                "`{s}`: wss:// is not supported by this build; use ws:// (or a TLS-terminating tunnel)"
            ))
        } else {
            Err(format!(
                "`{s}` is not a server address: expected ws://host:port/ws or tcp://host:port"
            ))
        }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Ws(url) => f.write_str(url),
            Endpoint::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

impl Endpoint {
    /// A directory name for this server's local data: `host_port`.
    pub(crate) fn dir_name(&self) -> String {
        let authority = match self {
            Endpoint::Ws(url) => {
                let rest = url.trim_start_matches("ws://");
                rest.split('/').next().unwrap_or(rest)
            }
            Endpoint::Tcp(addr) => addr.as_str(),
        };
        authority
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    }
}

/// What the network task reports.
#[derive(Debug)]
pub(crate) enum NetEvent {
    /// Trying to connect.
    Connecting,
    /// Connection number `epoch` is up; nothing is logged in on it yet.
    Connected { epoch: u64 },
    /// A JSON object from the server on connection `epoch`.
    Frame { epoch: u64, value: Value },
    /// The server sent something that is not JSON; the connection stays.
    Garbage { epoch: u64, reason: String },
    /// The connection is gone (or could not be made). `retry_in`: when the
    /// next attempt starts; `None` if the task was told to stop.
    Closed {
        reason: String,
        retry_in: Option<Duration>,
    },
}

/// What the network task is told.
#[derive(Debug)]
pub(crate) enum NetCmd {
    /// Write `text` if connection `epoch` is still the current one.
    Send { epoch: u64, text: String },
    /// The session is established: start the next backoff from the minimum.
    Online,
    /// Close the connection and do not reconnect until [`NetCmd::Reconnect`].
    Stop,
    /// Connect again now (closing the current connection, if any).
    Reconnect,
}

/// Start the network task: commands in, events out. The task ends when the
/// command sender is dropped.
pub(crate) fn spawn(
    endpoint: Endpoint,
    max_backoff: Duration,
) -> (
    mpsc::UnboundedSender<NetCmd>,
    mpsc::UnboundedReceiver<NetEvent>,
) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    tokio::spawn(run(endpoint, max_backoff.max(MIN_BACKOFF), cmd_rx, ev_tx));
    (cmd_tx, ev_rx)
}

/// How a connection ended, as far as the loop is concerned.
enum End {
    Lost(String),
    Stop,
    Reconnect,
    Shutdown,
}

async fn run(
    endpoint: Endpoint,
    max_backoff: Duration,
    mut cmds: mpsc::UnboundedReceiver<NetCmd>,
    events: mpsc::UnboundedSender<NetEvent>,
) {
    let mut backoff = MIN_BACKOFF;
    let mut epoch = 0u64;
    let mut stopped = false;
    loop {
        if stopped {
            // Wait to be told to reconnect; drop anything else.
            loop {
                match cmds.recv().await {
                    Some(NetCmd::Reconnect) => break,
                    Some(_) => continue,
                    None => return,
                }
            }
            stopped = false;
            backoff = MIN_BACKOFF;
        }
        epoch += 1;
        if events.send(NetEvent::Connecting).is_err() {
            return;
        }
        let end = match tokio::time::timeout(CONNECT_TIMEOUT, Link::connect(&endpoint)).await {
            Err(_) => End::Lost(format!(
                "no answer from {endpoint} within {} s",
                CONNECT_TIMEOUT.as_secs()
            )),
            Ok(Err(e)) => End::Lost(e),
            Ok(Ok(link)) => {
                if events.send(NetEvent::Connected { epoch }).is_err() {
                    return;
                }
                serve(link, epoch, &mut cmds, &events, &mut backoff).await
            }
        };
        match end {
            End::Shutdown => return,
            End::Stop => {
                stopped = true;
                let closed = NetEvent::Closed {
                    reason: "disconnected".into(),
                    retry_in: None,
                };
                if events.send(closed).is_err() {
                    return;
                }
            }
            End::Reconnect => backoff = MIN_BACKOFF,
            End::Lost(reason) => {
                let delay = jitter(backoff);
                let closed = NetEvent::Closed {
                    reason,
                    retry_in: Some(delay),
                };
                if events.send(closed).is_err() {
                    return;
                }
                backoff = (backoff * 2).min(max_backoff);
                let sleep = tokio::time::sleep(delay);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        () = &mut sleep => break,
                        cmd = cmds.recv() => match cmd {
                            None => return,
                            Some(NetCmd::Stop) => { stopped = true; break }
                            Some(NetCmd::Reconnect) => { backoff = MIN_BACKOFF; break }
                            Some(_) => {} // for a connection that is gone
                        },
                    }
                }
            }
        }
    }
}

/// `base` ± 20 %, so that many clients of a restarted server do not all come
/// back in the same millisecond.
fn jitter(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.8 + f64::from(nanos % 1000) / 2500.0; // 0.8 ..= 1.2
    base.mul_f64(factor)
}

/// Pump one connection until it ends.
async fn serve(
    link: Link,
    epoch: u64,
    cmds: &mut mpsc::UnboundedReceiver<NetCmd>,
    events: &mpsc::UnboundedSender<NetEvent>,
    backoff: &mut Duration,
) -> End {
    let (mut writer, reader) = link.split();
    let (done_tx, mut done_rx) = tokio::sync::oneshot::channel::<String>();
    let reading = tokio::spawn(read_frames(reader, epoch, events.clone(), done_tx));
    let end = loop {
        tokio::select! {
            reason = &mut done_rx => break End::Lost(reason.unwrap_or_else(|_| "connection closed".into())),
            cmd = cmds.recv() => match cmd {
                None => break End::Shutdown,
                Some(NetCmd::Send { epoch: g, text }) if g == epoch => {
                    if let Err(e) = writer.send(text).await {
                        break End::Lost(e);
                    }
                }
                Some(NetCmd::Send { .. }) => {} // meant for an older connection
                Some(NetCmd::Online) => *backoff = MIN_BACKOFF,
                Some(NetCmd::Stop) => break End::Stop,
                Some(NetCmd::Reconnect) => break End::Reconnect,
            },
        }
    };
    reading.abort();
    writer.close().await;
    end
}

async fn read_frames(
    mut reader: Reader,
    epoch: u64,
    events: mpsc::UnboundedSender<NetEvent>,
    done: tokio::sync::oneshot::Sender<String>,
) {
    let reason = loop {
        match reader.next().await {
            Ok(Some(text)) => {
                let event = match serde_json::from_str::<Value>(&text) {
                    Ok(value) if value.is_object() => NetEvent::Frame { epoch, value },
                    Ok(_) => NetEvent::Garbage {
                        epoch,
                        reason: "a frame that is not a JSON object".into(),
                    },
                    Err(e) => NetEvent::Garbage {
                        epoch,
                        reason: format!("a frame that is not JSON: {e}"),
                    },
                };
                if events.send(event).is_err() {
                    return;
                }
            }
            Ok(None) => break "the server closed the connection".to_owned(),
            Err(e) => break e,
        }
    };
    let _ = done.send(reason);
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

/// One open connection.
enum Link {
    Tcp(TcpStream),
    Ws(Box<Ws>),
}

enum Writer {
    Tcp(tokio::net::tcp::OwnedWriteHalf),
    Ws(futures_util::stream::SplitSink<Ws, WsMessage>),
}

enum Reader {
    Tcp {
        lines: BufReader<tokio::net::tcp::OwnedReadHalf>,
        buf: Vec<u8>,
    },
    Ws(futures_util::stream::SplitStream<Ws>),
}

impl Link {
    async fn connect(endpoint: &Endpoint) -> Result<Link, String> {
        match endpoint {
            Endpoint::Tcp(addr) => {
                let stream = TcpStream::connect(addr.as_str())
                    .await
                    .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
                let _ = stream.set_nodelay(true);
                Ok(Link::Tcp(stream))
            }
            Endpoint::Ws(url) => {
                let config = WebSocketConfig::default()
                    .max_message_size(Some(MAX_FRAME))
                    .max_frame_size(Some(MAX_FRAME));
                let (ws, _) =
                    tokio_tungstenite::connect_async_with_config(url.as_str(), Some(config), true)
                        .await
                        .map_err(|e| format!("cannot connect to {endpoint}: {e}"))?;
                Ok(Link::Ws(Box::new(ws)))
            }
        }
    }

    fn split(self) -> (Writer, Reader) {
        match self {
            Link::Tcp(stream) => {
                let (r, w) = stream.into_split();
                (
                    Writer::Tcp(w),
                    Reader::Tcp {
                        lines: BufReader::new(r),
                        buf: Vec::new(),
                    },
                )
            }
            Link::Ws(ws) => {
                let (sink, stream) = (*ws).split();
                (Writer::Ws(sink), Reader::Ws(stream))
            }
        }
    }
}

impl Writer {
    async fn send(&mut self, text: String) -> Result<(), String> {
        match self {
            Writer::Tcp(w) => {
                let mut line = text.into_bytes();
                line.push(b'\n');
                w.write_all(&line)
                    .await
                    .map_err(|e| format!("write failed: {e}"))
            }
            Writer::Ws(sink) => sink
                .send(WsMessage::text(text))
                .await
                .map_err(|e| format!("write failed: {e}")),
        }
    }

    async fn close(&mut self) {
        match self {
            Writer::Tcp(w) => {
                let _ = w.shutdown().await;
            }
            Writer::Ws(sink) => {
                let _ = tokio::time::timeout(Duration::from_secs(1), sink.close()).await;
            }
        }
    }
}

impl Reader {
    /// The next frame's text; `None` at a clean end.
    async fn next(&mut self) -> Result<Option<String>, String> {
        match self {
            Reader::Tcp { lines, buf } => {
                buf.clear();
                let limit = u64::try_from(MAX_FRAME + 1).unwrap_or(u64::MAX);
                let n = (&mut *lines)
                    .take(limit)
                    .read_until(b'\n', buf)
                    .await
                    .map_err(|e| format!("read failed: {e}"))?;
                if n == 0 {
                    return Ok(None);
                }
                if buf.last() != Some(&b'\n') {
                    if buf.len() > MAX_FRAME {
                        return Err(format!("the server sent a line over {MAX_FRAME} bytes"));
                    }
                    return Ok(None); // closed in the middle of a line
                }
                buf.pop();
                if buf.last() == Some(&b'\r') {
                    buf.pop();
                }
                Ok(Some(String::from_utf8_lossy(buf).into_owned()))
            }
            Reader::Ws(stream) => loop {
                match stream.next().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(format!("websocket: {e}")),
                    Some(Ok(WsMessage::Text(t))) => return Ok(Some(t.as_str().to_owned())),
                    Some(Ok(WsMessage::Binary(b))) => {
                        return Ok(Some(String::from_utf8_lossy(&b).into_owned()));
                    }
                    Some(Ok(WsMessage::Close(_))) => return Ok(None),
                    Some(Ok(_)) => {} // ping, pong: tungstenite answers pings itself
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_addresses() {
        assert_eq!(
            "ws://127.0.0.1:8080/ws".parse(),
            Ok(Endpoint::Ws("ws://127.0.0.1:8080/ws".into()))
        );
        assert_eq!(
            "ws://localhost:8080".parse(),
            Ok(Endpoint::Ws("ws://localhost:8080/ws".into()))
        );
        assert_eq!(
            "tcp://127.0.0.1:7000".parse(),
            Ok(Endpoint::Tcp("127.0.0.1:7000".into()))
        );
        assert!("tcp://127.0.0.1".parse::<Endpoint>().is_err());
        assert!(
            "wss://example.org/ws"
                .parse::<Endpoint>()
                .unwrap_err()
                .contains("not supported")
        );
        assert!(
            "127.0.0.1:7000"
                .parse::<Endpoint>()
                .unwrap_err()
                .contains("expected ws://")
        );
        assert!("ws:///ws".parse::<Endpoint>().is_err());
    }

    #[test]
    fn data_directory_names() {
        assert_eq!(
            "ws://127.0.0.1:8080/ws"
                .parse::<Endpoint>()
                .unwrap()
                .dir_name(),
            "127.0.0.1_8080"
        );
        assert_eq!(
            "tcp://chat.example.org:7000"
                .parse::<Endpoint>()
                .unwrap()
                .dir_name(),
            "chat.example.org_7000"
        );
        assert_eq!(
            "tcp://[::1]:7000".parse::<Endpoint>().unwrap().dir_name(),
            "___1__7000"
        );
    }

    #[test]
    fn jitter_stays_within_a_fifth() {
        for _ in 0..100 {
            let d = jitter(Duration::from_secs(10));
            assert!(
                d >= Duration::from_secs(8) && d <= Duration::from_secs(12),
                "{d:?}"
            );
        }
    }

    #[tokio::test]
    async fn tcp_frames_are_lines_and_overlong_lines_end_the_connection() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            s.write_all(b"{\"push\":\"a\"}\r\nnot json\n")
                .await
                .unwrap();
            s.write_all(&vec![b'x'; MAX_FRAME + 10]).await.unwrap();
        });
        let (cmds, mut events) = spawn(Endpoint::Tcp(addr.to_string()), Duration::from_secs(60));
        assert!(matches!(events.recv().await, Some(NetEvent::Connecting)));
        assert!(matches!(
            events.recv().await,
            Some(NetEvent::Connected { epoch: 1 })
        ));
        match events.recv().await {
            Some(NetEvent::Frame { value, .. }) => assert_eq!(value["push"], "a"),
            other => panic!("expected a frame, got {other:?}"),
        }
        assert!(matches!(
            events.recv().await,
            Some(NetEvent::Garbage { .. })
        ));
        match events.recv().await {
            Some(NetEvent::Closed { reason, retry_in }) => {
                assert!(reason.contains("over"), "{reason}");
                assert!(retry_in.is_some());
            }
            other => panic!("expected closed, got {other:?}"),
        }
        cmds.send(NetCmd::Stop).unwrap();
        server.await.unwrap();
    }
}
