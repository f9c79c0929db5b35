//! The loop every stream connection (TCP with a protocol, WebSocket) runs:
//! read calls, run them, write replies and queued pushes, enforce limits.

use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use tokio::time::{Instant, sleep};

use crate::connection::{CloseReason, Connection, Outbound};
use crate::error::{ApiError, ProtocolError};
use crate::message::{Push, Reply};
use crate::outbox::{Receiver, Signal};
use crate::protocol::Decoded;
use crate::registry::BoxFuture;
use crate::server::Homer;

/// What a wire yields.
#[derive(Debug)]
pub(crate) enum Inbound {
    Frame(Decoded),
    /// Input that carries no call (a WebSocket ping): the peer is alive.
    KeepAlive,
}

/// What the driver writes to a wire.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Reply(Reply),
    Push(Arc<Push>),
    Close(CloseReason),
    Ping,
}

/// Pushes written per wake-up before flushing.
const BATCH: usize = 64;

/// Time allowed for the close notice on a connection being closed.
const CLOSE_WRITE: Duration = Duration::from_secs(1);

/// Feeds or flushes unless the connection is killed meanwhile.
async fn guarded<F>(kill: &Signal, fut: F) -> Result<(), CloseReason>
where
    F: Future<Output = Result<(), ProtocolError>>,
{
    tokio::select! {
        biased;
        () = kill.cancelled() => Err(CloseReason::Io("connection dropped".into())),
        r = fut => r.map_err(|e| CloseReason::Io(e.to_string())),
    }
}

async fn next_call(calls: &mut Option<FuturesUnordered<CallFuture>>) -> Option<(Reply, Vec<Push>)> {
    match calls {
        Some(c) => c.next().await,
        None => std::future::pending().await,
    }
}

fn close_reason_of(e: ProtocolError) -> CloseReason {
    match e {
        e @ ProtocolError::FrameTooLarge { .. } => CloseReason::TooLarge(e.to_string()),
        ProtocolError::Io(e) => CloseReason::Io(e.to_string()),
        e => CloseReason::Protocol(e.to_string()),
    }
}

type CallFuture = BoxFuture<(Reply, Vec<Push>)>;

/// Runs one connection to its end, then unregisters it and runs the close
/// hook. `ping` sends keep-alive pings at that interval (WebSocket).
pub(crate) async fn drive<W>(
    homer: Homer,
    conn: Connection,
    mut rx: Receiver,
    mut wire: W,
    ping: Option<Duration>,
    idle_timeout: Duration,
) where
    W: Stream<Item = Result<Inbound, ProtocolError>>
        + Sink<Outgoing, Error = ProtocolError>
        + Unpin
        + Send,
{
    let limits = homer.limits().clone();
    let kill = &conn.inner.kill;
    let shutdown = homer.shutdown_token().clone();
    // Made on the first call: an idle connection holds no call set.
    let mut calls: Option<FuturesUnordered<CallFuture>> = None;
    let in_flight =
        |c: &Option<FuturesUnordered<CallFuture>>| c.as_ref().map_or(0, FuturesUnordered::len);
    // Until the first frame, the first-message timeout (if shorter) runs.
    let first = limits.first_message_timeout.min(idle_timeout);
    let mut heard = false;
    // Pings sent since the peer last sent anything (a pong counts).
    let mut unanswered = 0u32;
    let idle = sleep(first);
    tokio::pin!(idle);
    // Without pings the timer is never armed (its branch is disabled).
    let ping_every = ping.unwrap_or(idle_timeout);
    let ping_timer = sleep(ping_every);
    tokio::pin!(ping_timer);
    let mut reading = true;

    let reason: CloseReason = 'conn: loop {
        if !reading && in_flight(&calls) == 0 {
            break conn.reason().unwrap_or(CloseReason::PeerClosed);
        }
        tokio::select! {
            biased;
            () = kill.cancelled() => {
                break conn.reason().unwrap_or(CloseReason::Io("connection dropped".into()));
            }
            msg = rx.recv() => {
                let Some(Outbound::Push(push)) = msg else {
                    break conn.reason().unwrap_or_else(|| CloseReason::Closed("closed".into()));
                };
                if let Err(r) = guarded(kill, wire.feed(Outgoing::Push(push))).await {
                    break r;
                }
                let mut close = false;
                for _ in 0..BATCH {
                    match rx.try_recv() {
                        Ok(Outbound::Push(push)) => {
                            if let Err(r) = guarded(kill, wire.feed(Outgoing::Push(push))).await {
                                break 'conn r;
                            }
                        }
                        Ok(Outbound::Close) => {
                            close = true;
                            break;
                        }
                        Err(_) => break,
                    }
                }
                if let Err(r) = guarded(kill, wire.flush()).await {
                    break r;
                }
                if close {
                    break conn.reason().unwrap_or_else(|| CloseReason::Closed("closed".into()));
                }
            }
            _ = shutdown.cancelled(), if reading => {
                reading = false;
                conn.set_reason(CloseReason::Shutdown);
            }
            Some((reply, after)) = next_call(&mut calls), if in_flight(&calls) > 0 => {
                if let Err(r) = guarded(kill, wire.feed(Outgoing::Reply(reply))).await {
                    break r;
                }
                for push in after {
                    if let Err(r) = guarded(kill, wire.feed(Outgoing::Push(Arc::new(push)))).await {
                        break 'conn r;
                    }
                }
                if let Err(r) = guarded(kill, wire.flush()).await {
                    break r;
                }
            }
            item = wire.next(), if reading && in_flight(&calls) < limits.max_in_flight => {
                heard |= matches!(item, Some(Ok(Inbound::Frame(_))));
                unanswered = 0;
                if heard {
                    idle.as_mut().reset(Instant::now() + idle_timeout);
                }
                match item {
                    None => {
                        reading = false;
                        conn.set_reason(CloseReason::PeerClosed);
                    }
                    Some(Err(e)) => break close_reason_of(e),
                    Some(Ok(Inbound::KeepAlive)) => {}
                    Some(Ok(Inbound::Frame(Decoded::Reply(reply)))) => {
                        if let Err(r) = guarded(kill, wire.send(Outgoing::Reply(reply))).await {
                            break r;
                        }
                    }
                    Some(Ok(Inbound::Frame(Decoded::Call(call)))) => {
                        if !conn.allow_call(std::time::Instant::now()) {
                            let limit = conn.rate_limit().unwrap_or_default();
                            let refused = ApiError::rate_limited(limit.per_second, limit.burst);
                            homer.observe_refused((conn.transport(), conn.protocol()), &call.api, &refused);
                            let reply = Reply::error(call.id, Some(call.api), refused);
                            if let Err(r) = guarded(kill, wire.send(Outgoing::Reply(reply))).await {
                                break r;
                            }
                        } else {
                            let (ctx, state) = homer.call_context(&conn, &call.api);
                            let fut = homer.dispatch(ctx, call);
                            calls.get_or_insert_with(FuturesUnordered::new).push(Box::pin(async move {
                                let reply = fut.await;
                                (reply, state.take_after_reply())
                            }));
                        }
                    }
                }
            }
            () = &mut idle, if reading => {
                break if heard {
                    CloseReason::Idle(idle_timeout)
                } else {
                    CloseReason::Silent(first)
                };
            }
            () = &mut ping_timer, if reading && ping.is_some() => {
                if unanswered >= crate::connection::UNANSWERED_PINGS {
                    break CloseReason::DeadPeer(ping_every);
                }
                unanswered += 1;
                ping_timer.as_mut().reset(Instant::now() + ping_every);
                if let Err(r) = guarded(kill, wire.send(Outgoing::Ping)).await {
                    break r;
                }
            }
        }
    };

    conn.set_reason(reason);
    let reason = conn.reason().unwrap_or(CloseReason::PeerClosed);
    tracing::debug!(%reason, "closing");
    if !kill.is_cancelled() && !matches!(reason, CloseReason::Io(_)) {
        let _ = tokio::time::timeout(CLOSE_WRITE, async {
            wire.send(Outgoing::Close(reason.clone())).await?;
            wire.close().await
        })
        .await;
    }
    drop(wire);
    drop(calls);
    homer.finish(&conn, reason).await;
}
