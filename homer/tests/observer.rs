//! The observer: connection events in pairs with the right transport and
//! protocol, and one event per answered call, refused ones included.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homer::{CallEvent, CloseReason, Connection, Homer, Observer};
use serde_json::json;
use support::*;

/// What the observer saw: open connections by (transport, protocol), and
/// calls.
#[derive(Default)]
struct Seen {
    open: Mutex<BTreeMap<(String, String), i64>>,
    closed: Mutex<Vec<CloseReason>>,
    calls: Mutex<Vec<Reported>>,
}

impl Observer for Seen {
    fn connection_opened(&self, conn: &Connection) {
        let key = (conn.transport().to_string(), conn.protocol().to_owned());
        *self.open.lock().unwrap().entry(key).or_default() += 1;
    }

    fn connection_closed(&self, conn: &Connection, reason: &CloseReason) {
        let key = (conn.transport().to_string(), conn.protocol().to_owned());
        *self.open.lock().unwrap().entry(key).or_default() -= 1;
        self.closed.lock().unwrap().push(reason.clone());
    }

    fn call_answered(&self, call: &CallEvent<'_>) {
        self.calls.lock().unwrap().push((
            call.api.to_owned(),
            call.handled,
            call.transport.to_string(),
            call.status,
            call.code.map(str::to_owned),
        ));
    }
}

impl Seen {
    fn open(&self) -> BTreeMap<(String, String), i64> {
        let mut m = self.open.lock().unwrap().clone();
        m.retain(|_, n| *n != 0);
        m
    }

    fn calls(&self) -> Vec<Reported> {
        self.calls.lock().unwrap().clone()
    }

    async fn wait_calls(&self, n: usize) {
        within(async {
            while self.calls.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }

    async fn wait_open(&self, expected: &[(&str, &str, i64)]) {
        let expected: BTreeMap<(String, String), i64> = expected
            .iter()
            .map(|(t, p, n)| ((t.to_string(), p.to_string()), *n))
            .collect();
        within(async {
            while self.open() != expected {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await;
    }
}

/// A reported call: (api, handled, transport, status, code).
type Reported = (String, bool, String, u16, Option<String>);

fn call_of(api: &str, handled: bool, transport: &str, status: u16, code: Option<&str>) -> Reported {
    (
        api.to_owned(),
        handled,
        transport.to_owned(),
        status,
        code.map(str::to_owned),
    )
}

#[tokio::test]
async fn connections_are_reported_opened_and_closed_in_pairs_by_transport() {
    let seen = Arc::new(Seen::default());
    let s = Server::start(Homer::builder().observer(seen.clone())).await;

    let mut lines = s.lines().await;
    let mut prefixed = s.prefixed().await;
    let mut ws = s.ws().await;
    // Make sure each is accepted (and opened) before counting.
    lines.call(1, "echo", json!(1)).await;
    prefixed.call(1, "echo", json!(1)).await;
    ws.call(1, "echo", json!(1)).await;
    // An HTTP session is a connection once it has a key.
    let mut http = s.http().await;
    assert_eq!(
        http.post("login", &[], &json!({"user": "ann"}))
            .await
            .status,
        200
    );
    seen.wait_open(&[
        ("http", "http", 1),
        ("tcp", "json-lines", 1),
        ("tcp", "length-prefixed", 1),
        ("websocket", "websocket", 1),
    ])
    .await;

    drop(lines);
    drop(ws);
    seen.wait_open(&[("http", "http", 1), ("tcp", "length-prefixed", 1)])
        .await;
    s.homer.shutdown(Duration::from_secs(1)).await;
    drop(prefixed);
    seen.wait_open(&[]).await;
    let closed = seen.closed.lock().unwrap().clone();
    assert_eq!(closed.len(), 4, "{closed:?}");
    assert!(closed.contains(&CloseReason::Shutdown), "{closed:?}");
}

#[tokio::test]
async fn every_answered_call_is_reported_with_its_status() {
    let seen = Arc::new(Seen::default());
    let s = Server::start(Homer::builder().observer(seen.clone()).rate_limit(1, 2)).await;

    let mut c = s.lines().await;
    assert_eq!(c.call(1, "echo", json!("hi")).await["status"], 200);
    assert_eq!(c.call(2, "no.such.api", json!({})).await["status"], 404);
    // The burst of 2 is spent: the third call is refused by the rate limit.
    assert_eq!(c.call(3, "echo", json!("hi")).await["status"], 429);
    seen.wait_calls(3).await;
    assert_eq!(
        seen.calls(),
        vec![
            call_of("echo", true, "tcp", 200, None),
            call_of("no.such.api", false, "tcp", 404, Some("unknown_api")),
            call_of("echo", false, "tcp", 429, Some("rate_limited")),
        ]
    );

    // HTTP: a handler that panics (500), a body that is not JSON (400,
    // refused before any handler ran).
    let mut http = s.http().await;
    assert_eq!(http.post("panic", &[], &json!(null)).await.status, 500);
    let res = http.fetch("POST", "/api/echo", &[], "{not json").await;
    assert_eq!(res.status, 400);
    seen.wait_calls(5).await;
    assert_eq!(
        seen.calls()[3..],
        [
            call_of("panic", true, "http", 500, Some("internal")),
            call_of("echo", false, "http", 400, Some("malformed_json")),
        ]
    );
    s.homer.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_panicking_observer_does_not_break_the_server() {
    struct Bad;
    impl Observer for Bad {
        fn call_answered(&self, _call: &CallEvent<'_>) {
            panic!("observer bug");
        }
        fn connection_opened(&self, _conn: &Connection) {
            panic!("observer bug");
        }
    }
    let s = Server::start(Homer::builder().observer(Bad)).await;
    let mut c = s.lines().await;
    assert_eq!(c.call(1, "echo", json!(1)).await["status"], 200);
    assert_eq!(c.call(2, "echo", json!(2)).await["content"], 2);
    s.homer.shutdown(Duration::from_secs(1)).await;
}
