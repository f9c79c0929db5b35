//! Shared helpers: a server with a few test APIs, and real clients for
//! every transport over loopback.
#![allow(
    dead_code,
    reason = "included by several test files, each using a part; not `expect`, since the unused part differs per file"
)]
#![expect(
    unreachable_pub,
    reason = "a private test module; `pub` reads as \"shared with the test files\""
)]
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use homer::{ApiError, Context, Homer, HomerBuilder, Push};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

/// Upper bound for any single wait in a test; generous, never a speed
/// assertion.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn within<F: std::future::Future>(f: F) -> F::Output {
    tokio::time::timeout(WAIT, f).await.expect("timed out")
}

/// The logged-in user, kept in the session.
#[derive(Clone, Debug, PartialEq)]
pub struct User(pub String);

#[derive(Deserialize)]
pub struct Topic {
    pub topic: String,
}

#[derive(Deserialize)]
pub struct Login {
    pub user: String,
}

#[derive(Deserialize)]
pub struct Add {
    pub a: i64,
    pub b: i64,
}

/// Registers the test APIs:
/// - `echo`: returns its params;
/// - `add` `{a,b}`: typed params;
/// - `join` / `leave` `{topic}`: subscribe this connection;
/// - `login` `{user}`: session state, session key `tok-<user>`, cookie, and
///   subscription to `user:<user>`;
/// - `whoami`: the session's user or 401;
/// - `logout`: clears the session;
/// - `sleep` `{ms}`: replies after that long;
/// - `panic`: a handler bug.
pub fn register_apis(homer: &Homer) {
    homer.api("echo", |_ctx: Context, p: Value| async move {
        Ok::<_, ApiError>(p)
    });
    homer.api("add", |_ctx: Context, p: Add| async move {
        Ok::<_, ApiError>(json!({ "sum": p.a + p.b }))
    });
    homer.api("join", |ctx: Context, p: Topic| async move {
        ctx.subscribe(&p.topic);
        Ok::<_, ApiError>(json!({ "topics": ctx.connection().topics() }))
    });
    homer.api("leave", |ctx: Context, p: Topic| async move {
        Ok::<_, ApiError>(json!({ "was": ctx.unsubscribe(&p.topic) }))
    });
    homer.api("login", |ctx: Context, p: Login| async move {
        let token = format!("tok-{}", p.user);
        ctx.session().insert(User(p.user.clone()));
        ctx.subscribe(&format!("user:{}", p.user));
        ctx.set_session_key(token.clone());
        let mut cookie = homer::cookie::Cookie::new("session", token.clone());
        cookie.set_http_only(true);
        cookie.set_path("/");
        ctx.set_cookie(cookie);
        ctx.push_after_reply(Push::new("welcome", json!({ "user": p.user })))
            .map_err(|e| ApiError::internal(e.to_string()))?;
        Ok::<_, ApiError>(json!({ "token": token, "conn": ctx.conn_id().get() }))
    });
    homer.api("whoami", |ctx: Context, _p: ()| async move {
        match ctx.session().get::<User>() {
            Some(User(u)) => Ok(json!({
                "user": u,
                "ip": ctx.peer_ip().to_string(),
                "conn": ctx.conn_id().get(),
                "transport": format!("{:?}", ctx.transport()),
            })),
            None => Err(ApiError::unauthorized("not_logged_in", "log in first")),
        }
    });
    homer.api("logout", |ctx: Context, _p: ()| async move {
        ctx.session().clear();
        Ok::<_, ApiError>(json!({}))
    });
    #[derive(Deserialize)]
    struct Sleep {
        ms: u64,
    }
    homer.api("sleep", |_ctx: Context, p: Sleep| async move {
        tokio::time::sleep(Duration::from_millis(p.ms)).await;
        Ok::<_, ApiError>(json!({ "slept": p.ms }))
    });
    homer.api("panic", |_ctx: Context, _p: ()| async move {
        if true {
            panic!("handler bug");
        }
        Ok::<_, ApiError>(())
    });
}

pub struct Server {
    pub homer: Homer,
    pub http: SocketAddr,
    pub lines: SocketAddr,
    pub prefixed: SocketAddr,
}

impl Server {
    pub async fn start(builder: HomerBuilder) -> Self {
        let homer = builder.build().expect("valid settings");
        register_apis(&homer);
        let http = homer.listen_http("127.0.0.1:0").await.unwrap();
        let lines = homer
            .listen_tcp("127.0.0.1:0", homer::json_lines())
            .await
            .unwrap();
        let prefixed = homer
            .listen_tcp("127.0.0.1:0", homer::length_prefixed())
            .await
            .unwrap();
        Self {
            homer,
            http,
            lines,
            prefixed,
        }
    }

    pub async fn default() -> Self {
        Self::start(Homer::builder()).await
    }

    pub async fn ws(&self) -> Ws {
        Ws::connect(self.http, &[]).await
    }

    pub async fn lines(&self) -> LinesClient {
        LinesClient::connect(self.lines).await
    }

    pub async fn prefixed(&self) -> Prefixed {
        Prefixed::connect(self.prefixed).await
    }

    pub async fn http(&self) -> Http {
        Http::connect(self.http).await
    }

    /// Waits until `n` connections subscribe to `topic`.
    pub async fn wait_subscribers(&self, topic: &str, n: usize) {
        within(async {
            while self.homer.hub().subscriber_count(topic) != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }

    /// Waits until the hub holds `n` connections.
    pub async fn wait_connections(&self, n: usize) {
        within(async {
            while self.homer.hub().connection_count() != n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
    }
}

pub fn call(id: u64, api: &str, params: Value) -> Value {
    json!({ "id": id, "api": api, "params": params })
}

/// A JSON-lines TCP client.
pub struct LinesClient {
    pub lines: Lines<BufReader<OwnedReadHalf>>,
    pub w: OwnedWriteHalf,
}

impl LinesClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let (r, w) = TcpStream::connect(addr).await.unwrap().into_split();
        Self {
            lines: BufReader::new(r).lines(),
            w,
        }
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        self.w.write_all(bytes).await.unwrap();
    }

    pub async fn send(&mut self, v: &Value) {
        let mut line = serde_json::to_vec(v).unwrap();
        line.push(b'\n');
        self.send_raw(&line).await;
    }

    /// The next line as JSON; `None` at end of stream.
    pub async fn recv(&mut self) -> Option<Value> {
        let line = within(self.lines.next_line()).await.ok()??;
        Some(serde_json::from_str(&line).unwrap())
    }

    pub async fn call(&mut self, id: u64, api: &str, params: Value) -> Value {
        self.send(&call(id, api, params)).await;
        self.recv().await.expect("connection closed")
    }
}

/// A 4-byte big-endian length-prefixed TCP client.
pub struct Prefixed {
    pub framed: Framed<TcpStream, LengthDelimitedCodec>,
}

impl Prefixed {
    pub async fn connect(addr: SocketAddr) -> Self {
        let s = TcpStream::connect(addr).await.unwrap();
        Self {
            framed: Framed::new(s, LengthDelimitedCodec::new()),
        }
    }

    pub async fn send(&mut self, v: &Value) {
        self.framed
            .send(Bytes::from(serde_json::to_vec(v).unwrap()))
            .await
            .unwrap();
    }

    pub async fn recv(&mut self) -> Option<Value> {
        let frame = within(self.framed.next()).await?.ok()?;
        Some(serde_json::from_slice(&frame).unwrap())
    }

    pub async fn call(&mut self, id: u64, api: &str, params: Value) -> Value {
        self.send(&call(id, api, params)).await;
        self.recv().await.expect("connection closed")
    }
}

/// A WebSocket client.
pub struct Ws {
    pub ws: WebSocketStream<TcpStream>,
}

impl Ws {
    pub async fn connect(addr: SocketAddr, headers: &[(&str, &str)]) -> Self {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{addr}/ws").into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                hyper::header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let stream = TcpStream::connect(addr).await.unwrap();
        let (ws, _) = tokio_tungstenite::client_async(req, stream).await.unwrap();
        Self { ws }
    }

    pub async fn send(&mut self, v: &Value) {
        self.ws
            .send(Message::text(serde_json::to_string(v).unwrap()))
            .await
            .unwrap();
    }

    /// The next text message as JSON; `None` when the socket closed (the
    /// close frame, if any, is returned by [`Ws::recv_close`]).
    pub async fn recv(&mut self) -> Option<Value> {
        loop {
            match within(self.ws.next()).await? {
                Ok(Message::Text(t)) => return Some(serde_json::from_str(&t).unwrap()),
                Ok(Message::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    /// Reads until the server's close frame: its code and reason.
    pub async fn recv_close(&mut self) -> Option<(u16, String)> {
        loop {
            match within(self.ws.next()).await? {
                Ok(Message::Close(Some(f))) => return Some((f.code.into(), f.reason.to_string())),
                Ok(Message::Close(None)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    }

    pub async fn call(&mut self, id: u64, api: &str, params: Value) -> Value {
        self.send(&call(id, api, params)).await;
        self.recv().await.expect("connection closed")
    }
}

/// An HTTP/1.1 client on one keep-alive connection (hyper's client).
pub struct Http {
    pub send: SendRequest<Full<Bytes>>,
    pub addr: SocketAddr,
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl HttpResponse {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

impl Http {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { send, addr }
    }

    pub async fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> hyper::Response<Incoming> {
        let mut req = hyper::Request::builder()
            .method(method)
            .uri(path)
            .header("host", self.addr.to_string());
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(body.into())).unwrap();
        within(self.send.send_request(req)).await.unwrap()
    }

    pub async fn fetch(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> HttpResponse {
        let res = self.request(method, path, headers, body).await;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let body = within(res.into_body().collect()).await.unwrap().to_bytes();
        HttpResponse {
            status,
            headers,
            body,
        }
    }

    pub async fn post(
        &mut self,
        api: &str,
        headers: &[(&str, &str)],
        params: &Value,
    ) -> HttpResponse {
        self.fetch(
            "POST",
            &format!("/api/{api}"),
            headers,
            serde_json::to_vec(params).unwrap(),
        )
        .await
    }
}

/// A `GET /events` stream, parsed into push objects.
pub struct Sse {
    body: Incoming,
    buf: String,
}

impl Sse {
    /// Opens the stream and waits until the server says it is attached.
    pub async fn open(addr: SocketAddr, headers: &[(&str, &str)]) -> Result<Self, HttpResponse> {
        let mut http = Http::connect(addr).await;
        let res = http.request("GET", "/events", headers, Bytes::new()).await;
        if res.status() != 200 {
            let status = res.status().as_u16();
            let headers = res.headers().clone();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            return Err(HttpResponse {
                status,
                headers,
                body,
            });
        }
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            "text/event-stream"
        );
        let mut sse = Self {
            body: res.into_body(),
            buf: String::new(),
        };
        // The server's first chunk is the ": connected" comment.
        within(async {
            while !sse.buf.contains(": connected\n\n") {
                assert!(sse.fill().await, "stream ended before it was attached");
            }
        })
        .await;
        sse.buf.clear();
        Ok(sse)
    }

    async fn fill(&mut self) -> bool {
        match self.body.frame().await {
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    self.buf.push_str(std::str::from_utf8(&data).unwrap());
                }
                true
            }
            _ => false,
        }
    }

    /// The next `data:` event as JSON; `None` when the stream ended.
    pub async fn recv(&mut self) -> Option<Value> {
        within(async {
            loop {
                while let Some(end) = self.buf.find("\n\n") {
                    let event: String = self.buf.drain(..end + 2).collect();
                    if let Some(data) = event.strip_prefix("data: ") {
                        return Some(serde_json::from_str(data.trim_end()).unwrap());
                    }
                }
                if !self.fill().await {
                    return None;
                }
            }
        })
        .await
    }
}
