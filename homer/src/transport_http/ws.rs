//! `GET /ws`: the native protocol over WebSocket, one JSON object per text
//! (or binary) message.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, PoisonError};
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Bytes;
use futures_util::{FutureExt, Sink, Stream};
use hyper::body::Incoming;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::error::CapacityError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message, Utf8Bytes};
use tracing::Instrument;

use super::{Body, HttpRequest, PermitSlot, error_response, full, session};
use crate::connection::{CloseReason, Transport};
use crate::driver::{Inbound, Outgoing, drive};
use crate::error::{ApiError, ProtocolError};
use crate::protocol::native;
use crate::server::Homer;

fn header_has(req: &Request<Incoming>, name: header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        v.to_str()
            .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

pub(super) fn upgrade(
    homer: Homer,
    peer: SocketAddr,
    proxied: bool,
    slot: PermitSlot,
    mut req: Request<Incoming>,
) -> Response<Body> {
    if req.method() != Method::GET {
        return error_response(ApiError::new(
            405,
            "method_not_allowed",
            format!("/ws takes GET, got {}", req.method()),
        ));
    }
    if !header_has(&req, header::UPGRADE, "websocket")
        || !header_has(&req, header::CONNECTION, "upgrade")
    {
        let mut res = error_response(ApiError::new(
            426,
            "upgrade_required",
            "/ws needs a websocket upgrade (headers Connection: Upgrade and Upgrade: websocket)",
        ));
        res.headers_mut()
            .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        return res;
    }
    let version_ok = req
        .headers()
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v == "13");
    let Some(key) = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .filter(|_| version_ok)
    else {
        return error_response(ApiError::bad_request(
            "bad_upgrade",
            "websocket upgrade needs Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
        ));
    };
    let accept = derive_accept_key(key.as_bytes());
    // Through a trusted proxy, the forwarded client holds a slot of its
    // address for as long as its WebSocket lives, as a direct one does.
    let address = match proxied.then(|| homer.admission().admit(peer.ip())) {
        Some(Err(refusal)) => {
            homer.refused(peer, refusal);
            return error_response(ApiError::new(
                429,
                "too_many_connections",
                refusal.to_string(),
            ));
        }
        Some(Ok(slot)) => Some(slot),
        None => None,
    };
    let Some(mut permit) = slot.lock().unwrap_or_else(PoisonError::into_inner).take() else {
        return error_response(ApiError::new(
            503,
            "unavailable",
            "connection already upgraded",
        ));
    };
    if let Some(address) = address {
        permit.hold_address(address);
    }
    // The handshake headers are of no use after it; not keeping them saves
    // memory on every connection.
    let request = Arc::new(HttpRequest::from_parts_without(
        req.method(),
        req.uri(),
        req.headers(),
        &[
            header::CONNECTION,
            header::UPGRADE,
            header::SEC_WEBSOCKET_KEY,
            header::SEC_WEBSOCKET_VERSION,
            header::SEC_WEBSOCKET_EXTENSIONS,
        ],
    ));
    let on_upgrade = hyper::upgrade::on(&mut req);
    let limits = homer.limits().clone();
    let (conn, rx) = homer.new_connection(
        peer,
        Transport::WebSocket,
        "websocket",
        Some(request.clone()),
    );
    let span = tracing::info_span!("conn", id = %conn.id(), %peer, protocol = "websocket");
    let task_homer = homer.clone();
    homer.spawn(
        async move {
            let homer = task_homer;
            let upgraded = match tokio::time::timeout(limits.handshake_timeout, on_upgrade).await {
                Ok(Ok(u)) => u,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "websocket upgrade failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("websocket upgrade timed out");
                    return;
                }
            };
            let config = WebSocketConfig::default()
                .read_buffer_size(4 * 1024)
                .write_buffer_size(8 * 1024)
                .max_write_buffer_size(16 * 1024 * 1024 + limits.max_frame_size)
                .max_message_size(Some(limits.max_frame_size))
                .max_frame_size(Some(limits.max_frame_size));
            let ws = WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                Some(config),
            )
            .await;
            tracing::debug!("accepted");
            homer.hub().register(&conn);
            if let (Some(key), Some(resolver)) =
                (session::session_key(&homer, &request), homer.resolver())
            {
                let ctx = homer.hook_context(&conn);
                match AssertUnwindSafe(resolver(ctx, key)).catch_unwind().await {
                    Ok(Ok(())) => tracing::debug!("websocket session restored"),
                    Ok(Err(e)) => tracing::debug!(error = %e, "session key rejected"),
                    Err(_) => tracing::error!("session resolver panicked"),
                }
            }
            homer.mark_opened(&conn).await;
            let ping = Some(limits.sse_keepalive);
            drive(
                homer,
                conn,
                rx,
                WsWire {
                    ws,
                    limit: limits.max_frame_size,
                },
                ping,
                limits.idle_timeout,
            )
            .await;
            drop(permit);
        }
        .instrument(span),
    );
    let mut res = full(StatusCode::SWITCHING_PROTOCOLS, "text/plain", Bytes::new());
    let h = res.headers_mut();
    h.remove(header::CONTENT_TYPE);
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    res
}

/// A WebSocket as the driver's wire.
struct WsWire<S> {
    ws: WebSocketStream<S>,
    limit: usize,
}

fn ws_error(e: WsError, limit: usize) -> ProtocolError {
    match e {
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) => {
            ProtocolError::FrameTooLarge { len: size, limit }
        }
        WsError::Io(e) => ProtocolError::Io(e),
        e => ProtocolError::Invalid(e.to_string()),
    }
}

impl<S> Stream for WsWire<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    type Item = Result<Inbound, ProtocolError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Option<Self::Item>> {
        let limit = self.limit;
        loop {
            let msg = match ready!(Pin::new(&mut self.ws).poll_next(cx)) {
                None => return Poll::Ready(None),
                Some(Err(WsError::ConnectionClosed | WsError::AlreadyClosed)) => {
                    return Poll::Ready(None);
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(ws_error(e, limit)))),
                Some(Ok(m)) => m,
            };
            let item = match msg {
                Message::Text(t) => Inbound::Frame(native::decode_request(t.as_bytes())),
                Message::Binary(b) => Inbound::Frame(native::decode_request(&b)),
                Message::Ping(_) | Message::Pong(_) => Inbound::KeepAlive,
                Message::Close(_) | Message::Frame(_) => continue,
            };
            return Poll::Ready(Some(Ok(item)));
        }
    }
}

fn close_frame(reason: &CloseReason) -> CloseFrame {
    let code = match reason {
        CloseReason::Shutdown => CloseCode::Away,
        CloseReason::TooLarge(_) => CloseCode::Size,
        CloseReason::Protocol(_) => CloseCode::Protocol,
        CloseReason::SlowReader { .. } => CloseCode::Policy,
        _ => CloseCode::Normal,
    };
    let text = reason.to_string();
    // A close frame's reason is at most 123 bytes.
    let text = crate::error::truncate(&text, 123).to_owned();
    CloseFrame {
        code,
        reason: Utf8Bytes::from(text),
    }
}

impl<S> Sink<Outgoing> for WsWire<S>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    type Error = ProtocolError;

    fn poll_ready(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), ProtocolError>> {
        let limit = self.limit;
        Pin::new(&mut self.ws)
            .poll_ready(cx)
            .map_err(|e| ws_error(e, limit))
    }

    fn start_send(mut self: Pin<&mut Self>, item: Outgoing) -> Result<(), ProtocolError> {
        let msg = match item {
            Outgoing::Reply(r) => Message::Text(Utf8Bytes::from(r.to_native_json())),
            Outgoing::Push(p) => Message::Text(p.native_utf8().clone()),
            Outgoing::Close(reason) => Message::Close(Some(close_frame(&reason))),
            Outgoing::Ping => Message::Ping(Bytes::new()),
        };
        let limit = self.limit;
        Pin::new(&mut self.ws)
            .start_send(msg)
            .map_err(|e| ws_error(e, limit))
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), ProtocolError>> {
        let limit = self.limit;
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(|e| ws_error(e, limit))
    }

    fn poll_close(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Result<(), ProtocolError>> {
        let limit = self.limit;
        Pin::new(&mut self.ws)
            .poll_close(cx)
            .map_err(|e| ws_error(e, limit))
    }
}
