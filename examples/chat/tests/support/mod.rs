//! Drive the real `chat-server` binary over its real transports.
#![allow(
    dead_code,
    reason = "every test file includes this module and uses a different part of it"
)]
#![allow(
    clippy::print_stderr,
    reason = "the server's log is echoed to stderr, where the test runner shows it on failure; \
              not `expect`: a test file that starts no server prints nothing"
)]

pub(crate) mod browser;
pub(crate) mod cluster;
pub(crate) mod legacy;
pub(crate) mod process;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::process::Child;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// How long a test waits for anything before failing.
pub(crate) const WAIT: Duration = Duration::from_secs(10);

/// Echo a line of a server's log to stderr, where the test runner shows it
/// on failure.
pub(crate) fn echo(line: &str) {
    eprintln!("[server] {line}");
}

/// A running `chat-server` process with its own data directory.
pub(crate) struct Server {
    child: Child,
    pub(crate) http: SocketAddr,
    pub(crate) tcp: SocketAddr,
    pub(crate) msgid_json: Option<SocketAddr>,
    pub(crate) type_data: Option<SocketAddr>,
    pub(crate) token_json: Option<SocketAddr>,
    pub(crate) thrift: Option<SocketAddr>,
    data: PathBuf,
    args: Vec<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Server {
    /// Start a server on free loopback ports with an empty store.
    pub(crate) async fn start() -> Server {
        Self::start_with(&[]).await
    }

    /// Start one with extra flags.
    pub(crate) async fn start_with(args: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("temp dir");
        let data = dir.path().join("data");
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let mut s = Self::spawn(&data, &args).await;
        s._dir = Some(dir);
        s
    }

    async fn spawn(data: &Path, args: &[String]) -> Server {
        let mut cmd = process::command();
        cmd.arg("--store")
            .arg(format!("sled:{}", data.display()))
            .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(["--msgid-json", "127.0.0.1:0", "--type-data", "127.0.0.1:0"])
            .args(["--token-json", "127.0.0.1:0"])
            .args(["--thrift", "127.0.0.1:0"])
            .args(["--log", "info"])
            .args(args);
        let (child, addrs) = process::start(cmd, echo).await;
        Server {
            child,
            http: addrs.http,
            tcp: addrs.tcp,
            msgid_json: addrs.msgid_json,
            type_data: addrs.type_data,
            token_json: addrs.token_json,
            thrift: addrs.thrift,
            data: data.to_owned(),
            args: args.to_vec(),
            _dir: None,
        }
    }

    /// Stop the server with SIGKILL-free shutdown (Ctrl-C) and start it again
    /// on the same data (on new ports).
    pub(crate) async fn restart(mut self) -> Server {
        self.stop().await;
        let dir = self._dir.take();
        let mut s = Self::spawn(&self.data, &self.args).await;
        s._dir = dir;
        s
    }

    /// Kill the server (SIGKILL: no shutdown at all) and start it again on
    /// the same data and flags (on new ports).
    pub(crate) async fn crash_and_restart(mut self) -> Server {
        let _ = self.child.kill().await;
        let dir = self._dir.take();
        let mut s = Self::spawn(&self.data, &self.args).await;
        s._dir = dir;
        s
    }

    /// Ask the server to shut down (SIGINT, like Ctrl-C) and wait for it.
    pub(crate) async fn stop(&mut self) {
        process::interrupt(&mut self.child).await;
    }

    /// Send the server `signal` (`TERM`, `INT`, ...) and return at once.
    pub(crate) fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the server is running");
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid.to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// Wait up to `wait` for the server to exit; its status, or `None` if
    /// it still runs.
    pub(crate) async fn exited(&mut self, wait: Duration) -> Option<std::process::ExitStatus> {
        tokio::time::timeout(wait, self.child.wait())
            .await
            .ok()
            .and_then(Result::ok)
    }

    pub(crate) async fn tcp(&self) -> Client {
        Client::tcp(self.tcp).await
    }

    pub(crate) async fn ws(&self) -> Client {
        Client::ws(self.http).await
    }

    /// Register `name` (password `pw-<name>`) and log in, over `client`.
    pub(crate) async fn user(&self, mut client: Client, name: &str) -> Client {
        client
            .ok(
                "user.register",
                json!({"name": name, "password": format!("pw-{name}")}),
            )
            .await;
        let reply = client
            .ok(
                "user.login",
                json!({"name": name, "password": format!("pw-{name}")}),
            )
            .await;
        client.token = reply["token"].as_str().map(str::to_owned);
        client
    }
}

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

enum Link {
    Tcp {
        read: tokio::io::Lines<BufReader<OwnedReadHalf>>,
        write: OwnedWriteHalf,
    },
    Ws(Box<Ws>),
}

/// A native-protocol client over TCP (JSON lines) or WebSocket.
pub(crate) struct Client {
    link: Link,
    next_id: u64,
    pushes: VecDeque<Value>,
    pub(crate) token: Option<String>,
}

impl Client {
    pub(crate) async fn tcp(addr: SocketAddr) -> Client {
        Client::over_tcp(TcpStream::connect(addr).await.expect("connect tcp"))
    }

    /// A native client on a connected socket (one bound to a chosen source
    /// address, say).
    pub(crate) fn over_tcp(stream: TcpStream) -> Client {
        let (r, w) = stream.into_split();
        Client {
            link: Link::Tcp {
                read: BufReader::new(r).lines(),
                write: w,
            },
            next_id: 1,
            pushes: VecDeque::new(),
            token: None,
        }
    }

    pub(crate) async fn ws(http: SocketAddr) -> Client {
        let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{http}/ws"))
            .await
            .expect("connect websocket");
        Client {
            link: Link::Ws(Box::new(ws)),
            next_id: 1,
            pushes: VecDeque::new(),
            token: None,
        }
    }

    pub(crate) async fn send_raw(&mut self, text: &str) {
        match &mut self.link {
            Link::Tcp { write, .. } => {
                write.write_all(text.as_bytes()).await.expect("write");
                write.write_all(b"\n").await.expect("write");
            }
            Link::Ws(ws) => ws
                .send(WsMessage::text(text.to_owned()))
                .await
                .expect("ws send"),
        }
    }

    /// The next frame, or `None` when the server closed the connection.
    pub(crate) async fn recv(&mut self) -> Option<Value> {
        let next = tokio::time::timeout(WAIT, async {
            match &mut self.link {
                Link::Tcp { read, .. } => read.next_line().await.ok().flatten(),
                Link::Ws(ws) => loop {
                    match ws.next().await {
                        Some(Ok(WsMessage::Text(t))) => break Some(t.to_string()),
                        Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => break None,
                        Some(Ok(_)) => continue,
                    }
                },
            }
        })
        .await
        .expect("a frame from the server within 10 s")?;
        Some(serde_json::from_str(&next).expect("the server sends JSON"))
    }

    /// Call `api` and return the whole reply (pushes meanwhile are kept).
    pub(crate) async fn call(&mut self, api: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_raw(&json!({"id": id, "api": api, "params": params}).to_string())
            .await;
        self.reply(json!(id)).await
    }

    /// Wait for the reply with this id.
    pub(crate) async fn reply(&mut self, id: Value) -> Value {
        loop {
            let frame = self
                .recv()
                .await
                .expect("connection open while waiting for a reply");
            if frame.get("push").is_some() {
                self.pushes.push_back(frame);
            } else if frame["id"] == id {
                return frame;
            }
        }
    }

    /// Call `api`, assert status 200, return the content.
    pub(crate) async fn ok(&mut self, api: &str, params: Value) -> Value {
        let reply = self.call(api, params.clone()).await;
        assert_eq!(reply["status"], 200, "{api} {params} -> {reply}");
        reply["content"].clone()
    }

    /// The texts of group `group`'s history (`chat.history`), oldest first.
    pub(crate) async fn history_texts(&mut self, group: &str) -> Vec<String> {
        let history = self
            .ok("chat.history", json!({"to": {"group": group}}))
            .await;
        history["messages"]
            .as_array()
            .unwrap_or_else(|| panic!("no messages in {history}"))
            .iter()
            .filter_map(|m| m["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// Call `api`, assert the status, return the error object.
    pub(crate) async fn err(&mut self, api: &str, params: Value, status: u16) -> Value {
        let reply = self.call(api, params.clone()).await;
        assert_eq!(reply["status"], status, "{api} {params} -> {reply}");
        reply["error"].clone()
    }

    /// The next push of `kind` (others are kept for later).
    pub(crate) async fn push(&mut self, kind: &str) -> Value {
        if let Some(i) = self.pushes.iter().position(|p| p["push"] == kind) {
            return self.pushes.remove(i).expect("indexed")["content"].clone();
        }
        loop {
            let frame = self
                .recv()
                .await
                .unwrap_or_else(|| panic!("connection closed while waiting for a {kind} push"));
            if frame["push"] == kind {
                return frame["content"].clone();
            }
            if frame.get("push").is_some() {
                self.pushes.push_back(frame);
            }
        }
    }

    /// The next `message` push whose text is `text`.
    pub(crate) async fn message(&mut self, text: &str) -> Value {
        loop {
            let m = self.push("message").await;
            if m["text"] == text {
                return m;
            }
        }
    }

    /// Assert that no push of `kind` arrives within `wait`.
    pub(crate) async fn no_push(&mut self, kind: &str, wait: Duration) {
        assert!(
            !self.pushes.iter().any(|p| p["push"] == kind),
            "unexpected {kind} push: {:?}",
            self.pushes
        );
        let got = tokio::time::timeout(wait, async {
            loop {
                let frame = self.recv().await?;
                if frame["push"] == kind {
                    return Some(frame);
                }
            }
        })
        .await;
        if let Ok(Some(frame)) = got {
            panic!("unexpected {kind} push: {frame}");
        }
    }

    /// True when the server closes the connection (within the wait).
    pub(crate) async fn closed(&mut self) -> bool {
        loop {
            match self.recv().await {
                None => return true,
                Some(f) if f.get("push").is_some() => self.pushes.push_back(f),
                Some(_) => {}
            }
        }
    }
}

/// One HTTP/1.1 request; returns (status, headers, body).
pub(crate) async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect http");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.expect("write request");
    let mut raw = Vec::new();
    tokio::time::timeout(WAIT, s.read_to_end(&mut raw))
        .await
        .expect("response in time")
        .expect("read response");
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_owned(), body.to_owned())
}

/// `POST /api/<api>` with a bearer token; returns (status, reply JSON, headers).
pub(crate) async fn http_call(
    addr: SocketAddr,
    api: &str,
    params: Value,
    token: Option<&str>,
) -> (u16, Value, String) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let (status, head, body) = http(
        addr,
        "POST",
        &format!("/api/{api}"),
        &headers,
        &params.to_string(),
    )
    .await;
    let body = dechunk(&head, &body);
    (
        status,
        serde_json::from_str(&body).unwrap_or(Value::Null),
        head,
    )
}

fn dechunk(head: &str, body: &str) -> String {
    if !head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return body.to_owned();
    }
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, after)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&after[..n.min(after.len())]);
        rest = after.get(n + 2..).unwrap_or("");
    }
    out
}

/// A Server-Sent Events stream (`GET /events`) read as HTTP/1.0, so the
/// body is not chunked.
pub(crate) struct Sse {
    lines: tokio::io::Lines<BufReader<TcpStream>>,
}

impl Sse {
    pub(crate) async fn open(addr: SocketAddr, token: &str) -> Sse {
        let mut s = TcpStream::connect(addr).await.expect("connect sse");
        let req = format!(
            "GET /events HTTP/1.0\r\nhost: {addr}\r\naccept: text/event-stream\r\nauthorization: Bearer {token}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.expect("write");
        let mut lines = BufReader::new(s).lines();
        let status = lines.next_line().await.expect("read").expect("status line");
        assert!(status.contains(" 200"), "GET /events: {status}");
        Sse { lines }
    }

    /// The next pushed object of `kind`.
    pub(crate) async fn push(&mut self, kind: &str) -> Value {
        tokio::time::timeout(WAIT, async {
            loop {
                let line = self
                    .lines
                    .next_line()
                    .await
                    .expect("read")
                    .expect("stream open");
                if let Some(data) = line.strip_prefix("data:") {
                    let v: Value = serde_json::from_str(data.trim()).expect("json data");
                    if v["push"] == kind {
                        return v["content"].clone();
                    }
                }
            }
        })
        .await
        .expect("an event within 10 s")
    }
}
