//! Servers and clients shared by the benchmarks: homer, and the baselines
//! it is measured against (a bare hyper server answering the same JSON, and
//! a minimal tokio-tungstenite + `tokio::sync::broadcast` server).
#![allow(
    dead_code,
    reason = "included by several benches, each using a part; not `expect`, since the unused part differs per bench"
)]
#![expect(
    unreachable_pub,
    reason = "a private bench module; `pub` reads as \"shared with the benches\""
)]
#![expect(
    clippy::unwrap_used,
    reason = "bench code: a failed unwrap stops the run, which is what it should do"
)]

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use homer::{ApiError, Context, Homer, Push};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

/// The request body both HTTP servers echo.
pub const HTTP_BODY: &str = r#"{"to":{"group":"rust"},"text":"hello, world","client_id":"c-42"}"#;

/// homer with the APIs the benchmarks call, limits opened up for load.
pub fn homer() -> Homer {
    let homer = Homer::builder()
        .no_rate_limit()
        .max_connections(100_000)
        .max_connections_per_ip(100_000)
        .no_connection_rate_per_ip()
        .outbound_queue(1024)
        .build()
        .expect("valid settings");
    homer.api("echo", |_ctx: Context, p: Value| async move {
        Ok::<_, ApiError>(p)
    });
    homer.api("join", |ctx: Context, topic: String| async move {
        ctx.subscribe(&topic);
        Ok::<_, ApiError>(())
    });
    homer.api("say", |ctx: Context, p: Value| async move {
        ctx.homer().publish("all", Push::new("message", p));
        Ok::<_, ApiError>(())
    });
    homer
}

pub async fn start_homer() -> (Homer, SocketAddr) {
    let homer = homer();
    let addr = homer.listen_http("127.0.0.1:0").await.unwrap();
    (homer, addr)
}

/// A bare hyper server answering `POST` with the same native reply homer
/// gives: `{"id":null,"status":200,"content":<body>}`.
pub async fn start_bare_hyper() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = service_fn(|req: Request<Incoming>| async move {
                    let body = req
                        .into_body()
                        .collect()
                        .await
                        .map(|c| c.to_bytes())
                        .unwrap_or_default();
                    let content: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    let out =
                        serde_json::to_vec(&json!({"id": null, "status": 200, "content": content}))
                            .unwrap();
                    let res = Response::builder()
                        .header("content-type", "application/json")
                        .body(Full::new(Bytes::from(out)))
                        .unwrap();
                    Ok::<_, Infallible>(res)
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The WebSocket config both WebSocket servers use (homer's own choice of
/// small buffers, so memory is compared like for like).
pub fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(8 * 1024)
        .max_message_size(Some(64 * 1024))
        .max_frame_size(Some(64 * 1024))
}

/// A minimal broadcast server: every text message from any client goes to
/// every client through a `tokio::sync::broadcast` channel.
pub async fn start_baseline_ws() -> (SocketAddr, broadcast::Sender<Utf8Bytes>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, _) = broadcast::channel::<Utf8Bytes>(1024);
    let tx2 = tx.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let tx = tx2.clone();
            tokio::spawn(async move {
                let Ok(mut ws) =
                    tokio_tungstenite::accept_async_with_config(stream, Some(ws_config())).await
                else {
                    return;
                };
                let mut rx = tx.subscribe();
                loop {
                    tokio::select! {
                        m = rx.recv() => match m {
                            Ok(text) => {
                                if ws.send(Message::Text(text)).await.is_err() { break; }
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => break,
                        },
                        m = ws.next() => match m {
                            Some(Ok(Message::Text(t))) => { let _ = tx.send(t); }
                            Some(Ok(_)) => {}
                            _ => break,
                        },
                    }
                }
            });
        }
    });
    (addr, tx)
}

/// One keep-alive HTTP/1.1 client connection.
pub struct HttpClient {
    send: SendRequest<Full<Bytes>>,
}

impl HttpClient {
    pub async fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Self { send }
    }

    /// POSTs `body` to `path`; returns the response body's length.
    pub async fn post(&mut self, path: &str, body: &'static str) -> usize {
        let req = Request::post(path)
            .header("host", "bench")
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let res = self.send.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        res.into_body().collect().await.unwrap().to_bytes().len()
    }
}

pub async fn ws_connect(addr: SocketAddr) -> WebSocketStream<TcpStream> {
    let stream = TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (ws, _) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .unwrap();
    ws
}

/// Joins topic `all` on homer and waits for the reply.
pub async fn homer_join(ws: &mut WebSocketStream<TcpStream>) {
    ws.send(Message::text(r#"{"id":1,"api":"join","params":"all"}"#))
        .await
        .unwrap();
    loop {
        if let Some(Ok(Message::Text(t))) = ws.next().await {
            assert!(t.contains("\"status\":200"), "{t}");
            return;
        }
    }
}
