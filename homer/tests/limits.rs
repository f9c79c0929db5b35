//! Limits: slow readers, max connections, idle timeout, rate limit,
//! graceful shutdown. The server stays up through all of them.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use homer::{CloseReason, ConnId, Homer, Push};
use serde_json::json;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Closed = Arc<Mutex<Vec<(ConnId, CloseReason)>>>;

fn record_closes(homer: &Homer) -> Closed {
    let closed: Closed = Arc::default();
    let c = closed.clone();
    homer.on_close(move |ctx, reason| {
        let c = c.clone();
        async move { c.lock().unwrap().push((ctx.conn_id(), reason)) }
    });
    closed
}

async fn wait_closed(closed: &Closed, id: ConnId) -> CloseReason {
    within(async {
        loop {
            if let Some((_, r)) = closed.lock().unwrap().iter().find(|(c, _)| *c == id) {
                return r.clone();
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

#[tokio::test]
async fn slow_reader_is_disconnected_while_others_keep_receiving() {
    let s = Server::start(Homer::builder().outbound_queue(8)).await;
    let closed = record_closes(&s.homer);
    // The slow reader subscribes, then never reads again.
    let mut slow = s.lines().await;
    let slow_id = slow.call(1, "login", json!({"user": "slow"})).await["content"]["conn"]
        .as_u64()
        .unwrap();
    slow.call(2, "join", json!({"topic": "feed"})).await;
    let mut ws = s.ws().await;
    ws.call(1, "join", json!({"topic": "feed"})).await;
    let mut lines = s.lines().await;
    lines.call(1, "join", json!({"topic": "feed"})).await;

    let big = "x".repeat(64 * 1024);
    let mut published = 0;
    let mut slow_gone = false;
    // Loopback socket buffers absorb some megabytes; past them the slow
    // reader's queue of 8 fills and it is dropped. 2000 × 64 KiB = 125 MiB
    // would be far beyond any buffer.
    while published < 2000 {
        s.homer.publish(
            "feed",
            Push::new("message", json!({"n": published, "pad": big})),
        );
        published += 1;
        assert_eq!(ws.recv().await.unwrap()["content"]["n"], published - 1);
        assert_eq!(lines.recv().await.unwrap()["content"]["n"], published - 1);
        if s.homer
            .hub()
            .connection(ConnId::from_raw(slow_id))
            .is_none()
        {
            slow_gone = true;
            break;
        }
    }
    assert!(
        slow_gone,
        "slow reader still connected after {published} pushes"
    );
    let reason = wait_closed(&closed, ConnId::from_raw(slow_id)).await;
    assert_eq!(reason, CloseReason::SlowReader { capacity: 8 });
    // The others still receive.
    s.homer
        .publish("feed", Push::new("message", json!({"n": "after"})));
    assert_eq!(ws.recv().await.unwrap()["content"]["n"], "after");
    assert_eq!(lines.recv().await.unwrap()["content"]["n"], "after");
    assert_eq!(s.homer.hub().subscriber_count("feed"), 2);
    drop(slow);
}

#[tokio::test]
async fn max_connections_refuses_the_extra_socket_cleanly() {
    let s = Server::start(Homer::builder().max_connections(2)).await;
    let mut a = s.lines().await;
    let mut b = s.prefixed().await;
    assert_eq!(a.call(1, "echo", json!(1)).await["status"], 200);
    assert_eq!(b.call(1, "echo", json!(1)).await["status"], 200);
    // The third socket (any listener) is closed at once.
    for addr in [s.lines, s.http] {
        let mut extra = tokio::net::TcpStream::connect(addr).await.unwrap();
        let _ = extra.write_all(b"{\"id\":1,\"api\":\"echo\"}\n").await;
        let mut buf = [0u8; 64];
        let n = within(extra.read(&mut buf)).await.unwrap_or(0);
        assert_eq!(n, 0, "extra connection got {:?}", &buf[..n]);
    }
    // Freeing one makes room again.
    drop(a);
    s.wait_connections(1).await;
    let mut c = within(async {
        loop {
            let mut c = s.lines().await;
            c.send(&call(1, "echo", json!("room"))).await;
            if let Some(r) = c.recv().await {
                return (c, r);
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(c.1["content"], "room");
    assert_eq!(b.call(2, "echo", json!(2)).await["status"], 200);
    c.0.call(2, "echo", json!(2)).await;
}

#[tokio::test]
async fn connections_that_send_nothing_are_closed_at_the_first_message_timeout() {
    let s = Server::start(
        Homer::builder()
            .first_message_timeout(Duration::from_millis(300))
            .idle_timeout(Duration::from_secs(60)),
    )
    .await;
    let closed = record_closes(&s.homer);
    let mut silent = s.lines().await;
    let mut talker = s.prefixed().await;
    assert_eq!(talker.call(1, "echo", json!(1)).await["status"], 200);
    let notice = silent.recv().await.unwrap();
    assert_eq!(notice["push"], "close");
    assert!(
        notice["content"]["reason"]
            .as_str()
            .unwrap()
            .contains("sent nothing within 300 ms"),
        "{notice}"
    );
    assert_eq!(silent.recv().await, None);
    // A WebSocket that only answers pings is silent too.
    let mut ws = s.ws().await;
    let (_, reason) = ws.recv_close().await.unwrap();
    assert!(reason.contains("sent nothing"), "{reason}");
    // One that spoke stays, past the first-message timeout.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(talker.call(2, "echo", json!(2)).await["status"], 200);
    let silents = closed
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, r)| matches!(r, CloseReason::Silent(_)))
        .count();
    assert_eq!(silents, 2);
}

#[tokio::test]
async fn idle_connections_are_closed_with_a_reason() {
    let s = Server::start(Homer::builder().idle_timeout(Duration::from_millis(400))).await;
    let closed = record_closes(&s.homer);
    let mut lines = s.lines().await;
    let id = ConnId::from_raw(
        lines.call(1, "login", json!({"user": "idle"})).await["content"]["conn"]
            .as_u64()
            .unwrap(),
    );
    assert_eq!(lines.recv().await.unwrap()["push"], "welcome");
    // Half a line, then silence: still idle.
    lines.send_raw(b"{\"id\":2,").await;
    let notice = lines.recv().await.unwrap();
    assert_eq!(notice["push"], "close");
    assert!(
        notice["content"]["reason"]
            .as_str()
            .unwrap()
            .contains("idle"),
        "{notice}"
    );
    assert_eq!(lines.recv().await, None);
    assert!(matches!(
        wait_closed(&closed, id).await,
        CloseReason::Idle(_)
    ));

    // One that never sent a frame is closed for that (the first-message
    // timeout is capped by the idle timeout).
    let mut ws = s.ws().await;
    let (code, reason) = ws.recv_close().await.unwrap();
    assert_eq!(code, 1000);
    assert!(reason.contains("sent nothing within 400 ms"), "{reason}");
    // Activity keeps a connection open past the timeout.
    let mut busy = s.prefixed().await;
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(busy.call(i, "echo", json!(i)).await["status"], 200);
    }
}

#[tokio::test]
async fn rate_limit_answers_429_and_recovers() {
    let s = Server::start(Homer::builder().rate_limit(1, 5)).await;
    let mut c = s.lines().await;
    for i in 0..8 {
        c.send(&call(i, "echo", json!(i))).await;
    }
    let mut statuses = vec![];
    for _ in 0..8 {
        let r = c.recv().await.unwrap();
        statuses.push((r["id"].as_u64().unwrap(), r["status"].as_u64().unwrap()));
    }
    statuses.sort();
    let ok = statuses.iter().filter(|(_, s)| *s == 200).count();
    let limited = statuses.iter().filter(|(_, s)| *s == 429).count();
    assert_eq!((ok, limited), (5, 3), "{statuses:?}");
    // The connection stays open and the bucket refills.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(c.call(99, "echo", json!(1)).await["status"], 200);

    // HTTP without a session is limited per client IP.
    let mut http = s.http().await;
    let mut codes = vec![];
    for _ in 0..7 {
        codes.push(http.post("echo", &[], &json!(1)).await.status);
    }
    assert_eq!(codes.iter().filter(|c| **c == 429).count(), 2, "{codes:?}");
    let r = http.post("echo", &[], &json!(1)).await;
    assert_eq!(r.json()["error"]["code"], "rate_limited");
}

#[tokio::test]
async fn graceful_shutdown_finishes_calls_then_closes_with_a_reason() {
    let s = Server::default().await;
    let closed = record_closes(&s.homer);
    let mut ws = s.ws().await;
    let mut lines = s.lines().await;
    lines.call(1, "echo", json!(0)).await;
    ws.send(&call(1, "sleep", json!({"ms": 300}))).await;
    s.wait_connections(2).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let homer = s.homer.clone();
    let shutdown = tokio::spawn(async move { homer.shutdown(Duration::from_secs(5)).await });
    // The call in flight still gets its reply, then the close frame.
    assert_eq!(ws.recv().await.unwrap()["content"], json!({"slept": 300}));
    let (code, reason) = ws.recv_close().await.unwrap();
    assert_eq!((code, reason.as_str()), (1001, "server shutting down"));
    let notice = lines.recv().await.unwrap();
    assert_eq!(
        notice,
        json!({"push": "close", "content": {"reason": "server shutting down"}})
    );
    within(shutdown).await.unwrap();
    assert_eq!(closed.lock().unwrap().len(), 2);
    assert!(
        closed
            .lock()
            .unwrap()
            .iter()
            .all(|(_, r)| *r == CloseReason::Shutdown)
    );
    // No more listeners.
    assert!(matches!(
        s.homer.listen_http("127.0.0.1:0").await,
        Err(homer::Error::ShuttingDown)
    ));
    let refused = match tokio::net::TcpStream::connect(s.lines).await {
        Err(_) => true,
        Ok(mut c) => {
            let mut b = [0u8; 8];
            matches!(within(c.read(&mut b)).await, Ok(0) | Err(_))
        }
    };
    assert!(refused);
}

#[tokio::test]
async fn a_websocket_peer_that_answers_no_pings_is_closed() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let s = Server::start(
        Homer::builder()
            .sse_keepalive(Duration::from_millis(100))
            .idle_timeout(Duration::from_secs(60)),
    )
    .await;
    let closed = record_closes(&s.homer);
    let url = format!("ws://{}/ws", s.http);
    // Both call once; then one keeps reading (tungstenite answers pings
    // while it is polled), the other never reads again (no pongs).
    let (mut gone, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    let (mut alive, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    for ws in [&mut gone, &mut alive] {
        ws.send(Message::text(r#"{"id":1,"api":"echo","params":1}"#))
            .await
            .unwrap();
        ws.next().await.unwrap().unwrap();
    }
    let reader = tokio::spawn(async move {
        let mut pings = 0;
        while let Some(Ok(m)) = alive.next().await {
            if m.is_ping() {
                pings += 1;
                if pings == 10 {
                    return alive;
                }
            }
        }
        panic!("the reading peer was closed");
    });
    let reason = within(async {
        loop {
            if let Some((_, r)) = closed.lock().unwrap().first().cloned() {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(matches!(reason, CloseReason::DeadPeer(_)), "{reason:?}");
    assert!(
        reason.to_string().contains("answered no ping for 300 ms"),
        "{reason}"
    );
    let mut alive = within(reader).await.unwrap();
    // After ten pings the reader is still served.
    alive
        .send(Message::text(r#"{"id":2,"api":"echo","params":2}"#))
        .await
        .unwrap();
    loop {
        if let Message::Text(t) = alive.next().await.unwrap().unwrap() {
            assert!(t.contains("\"status\":200"), "{t}");
            break;
        }
    }
    assert_eq!(
        closed.lock().unwrap().len(),
        1,
        "only the silent peer was closed"
    );
    drop(gone);
}

/// JSON lines, with its own idle timeout.
struct Patient(homer::JsonLines, Duration);

impl homer::Protocol for Patient {
    fn name(&self) -> &'static str {
        "patient"
    }
    fn decode(
        &mut self,
        src: &mut bytes::BytesMut,
    ) -> Result<Option<homer::Decoded>, homer::ProtocolError> {
        self.0.decode(src)
    }
    fn encode_reply(
        &mut self,
        reply: &homer::Reply,
        dst: &mut bytes::BytesMut,
    ) -> Result<(), homer::ProtocolError> {
        self.0.encode_reply(reply, dst)
    }
    fn encode_push(
        &mut self,
        push: &Push,
        dst: &mut bytes::BytesMut,
    ) -> Result<(), homer::ProtocolError> {
        self.0.encode_push(push, dst)
    }
    fn idle_timeout(&self) -> Option<Duration> {
        Some(self.1)
    }
}

#[tokio::test]
async fn a_protocol_may_keep_its_own_idle_timeout() {
    let homer = Homer::builder()
        .idle_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let closed = record_closes(&homer);
    let patient = |_: &homer::Limits| Patient(homer::JsonLines::new(1024), Duration::from_secs(3));
    let quick =
        |_: &homer::Limits| Patient(homer::JsonLines::new(1024), Duration::from_millis(100));
    let mut slow = homer::testing::Client::over(homer::testing::connect(&homer, patient).unwrap());
    let mut fast = homer::testing::Client::over(homer::testing::connect(&homer, quick).unwrap());
    // Both speak once (past the first-message timeout), then fall silent.
    for c in [&mut slow, &mut fast] {
        c.send_raw("{\"id\":1,\"api\":\"nothing\"}").await;
        assert_eq!(c.read().await["status"], 404);
    }
    assert!(
        fast.closed().await,
        "100 ms of silence closes the quick one"
    );
    // The patient one outlives the server's 200 ms.
    tokio::time::sleep(Duration::from_millis(600)).await;
    slow.send_raw("{\"id\":2,\"api\":\"nothing\"}").await;
    assert_eq!(slow.read().await["status"], 404, "still open after 600 ms");
    let reasons: Vec<CloseReason> = closed
        .lock()
        .unwrap()
        .iter()
        .map(|(_, r)| r.clone())
        .collect();
    assert!(
        matches!(reasons.as_slice(), [CloseReason::Idle(d)] if *d == Duration::from_millis(100)),
        "{reasons:?}"
    );
}
