//! In-memory connections (`homer::testing`): the same server behaviour as a
//! TCP listener's (calls, pushes, topics, hooks, limits, shutdown), with no
//! socket.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use homer::testing::{Client, ConnectError, connect_from};
use homer::{ApiError, CloseReason, Context, Homer, Push, Transport, json_lines};
use serde_json::{Value, json};
use tokio::sync::mpsc;

fn homer() -> Homer {
    let homer = Homer::builder().max_connections(2).build().unwrap();
    homer.api("join", |ctx: Context, topic: String| async move {
        ctx.subscribe(&topic);
        Ok::<_, ApiError>(json!({
            "transport": ctx.transport().as_str(),
            "peer": ctx.peer_addr().to_string(),
        }))
    });
    homer.api("fail", |_ctx: Context, _: Value| async move {
        Err::<Value, _>(ApiError::forbidden("not_yours", "no"))
    });
    homer
}

#[tokio::test]
async fn calls_topics_and_errors_work_as_over_a_socket() {
    let homer = homer();
    let mut alice = Client::connect(&homer).unwrap();
    let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
    let mut bob = Client::over(connect_from(&homer, json_lines(), peer).unwrap());

    let joined = alice.call("join", json!("room")).await.unwrap();
    assert_eq!(joined["transport"], "memory");
    assert_eq!(Transport::Memory.as_str(), "memory");
    assert_eq!(
        bob.call("join", json!("room")).await.unwrap()["peer"],
        "10.1.2.3:5555"
    );

    assert_eq!(
        homer.publish("room", Push::new("message", json!({"text": "hi"}))),
        2
    );
    for client in [&mut alice, &mut bob] {
        assert_eq!(
            client.push().await,
            ("message".into(), json!({"text": "hi"}))
        );
    }
    let (status, error) = alice.call("fail", json!(null)).await.unwrap_err();
    assert_eq!((status, error["code"].as_str()), (403, Some("not_yours")));
    let (status, _) = alice.call("missing", json!(null)).await.unwrap_err();
    assert_eq!(status, 404);
    // Garbage gets the protocol's own answer, and the connection stays.
    alice.send_raw("{not json").await;
    assert_eq!(alice.read().await["status"], 400);
    assert!(alice.call("join", json!("other")).await.is_ok());
}

#[tokio::test]
async fn limits_hooks_and_shutdown_apply() {
    let homer = homer();
    let (closed_tx, mut closed) = mpsc::unbounded_channel();
    let opened = Arc::new(AtomicUsize::new(0));
    {
        let opened = opened.clone();
        homer.on_open(move |_ctx| {
            opened.fetch_add(1, Ordering::SeqCst);
            async {}
        });
    }
    homer.on_close(move |_ctx, reason: CloseReason| {
        let _ = closed_tx.send(reason);
        async {}
    });

    let mut first = Client::connect(&homer).unwrap();
    let second = Client::connect(&homer).unwrap();
    first.call("join", json!("t")).await.unwrap();
    assert_eq!(opened.load(Ordering::SeqCst), 2);
    assert_eq!(
        Client::connect(&homer).unwrap_err(),
        ConnectError::Refused(homer::Refusal::Full),
        "max_connections counts in-memory connections"
    );

    drop(second);
    let reason = tokio::time::timeout(Duration::from_secs(5), closed.recv())
        .await
        .expect("the close hook ran")
        .unwrap();
    assert_eq!(reason, CloseReason::PeerClosed);
    // The slot is free again once the connection task ended.
    let mut third = None;
    for _ in 0..100 {
        if let Ok(c) = Client::connect(&homer) {
            third = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(third.is_some(), "a freed slot can be used");

    homer.shutdown(Duration::from_secs(1)).await;
    assert_eq!(
        Client::connect(&homer).unwrap_err(),
        ConnectError::ShuttingDown
    );
}
