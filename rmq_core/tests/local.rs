//! `LocalBroker` behaviour beyond the conformance suite: state survives a
//! restart on a sled store.
mod support;

use std::time::Duration;

use rmq_core::{Broker, Envelope, HistoryQuery, LocalBroker, RoomId, To, UserId};
use support::{assert_silent, recv, recv_text};

/// Open the broker in `dir`, retrying while the previous instance's sled
/// lock is still being released by its background tasks.
async fn open(dir: &std::path::Path) -> LocalBroker {
    let url = format!("sled:{}", dir.display());
    let mut last = None;
    for _ in 0..50 {
        match LocalBroker::open(&url).await {
            Ok(b) => return b,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("cannot reopen the store: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inboxes_unacked_deliveries_rooms_and_history_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (alice, bob) = (UserId::new("alice").unwrap(), UserId::new("bob").unwrap());
    let room = RoomId::new("rust").unwrap();
    let first_id;
    {
        let broker = open(dir.path()).await;
        broker.ensure_inbox(&alice).await.unwrap();
        broker.ensure_inbox(&bob).await.unwrap();
        broker.create_room(&room).await.unwrap();
        broker.join(&room, &bob).await.unwrap();
        for i in 0..3 {
            let env = Envelope::new(alice.clone(), To::Room(room.clone()), format!("r{i}"));
            broker.publish(&env).await.unwrap();
        }
        broker
            .publish(&Envelope::new(
                alice.clone(),
                To::User(bob.clone()),
                "direct",
            ))
            .await
            .unwrap();
        // bob reads the first message but never acks it; the process "dies".
        let mut sb = broker.subscribe(&bob).await.unwrap();
        let d = recv(&mut sb).await;
        first_id = d.envelope().id;
        std::mem::forget(d);
        drop(sb);
        drop(broker);
    }
    let broker = open(dir.path()).await;
    assert_eq!(broker.inbox_len(&bob).await.unwrap(), 4);
    let mut sb = broker.subscribe(&bob).await.unwrap();
    let d = recv(&mut sb).await;
    assert_eq!(
        d.envelope().id,
        first_id,
        "the unacked message comes back first"
    );
    d.ack().await.unwrap();
    for expected in ["r1", "r2", "direct"] {
        assert_eq!(recv_text(&mut sb).await, expected);
    }
    // Rooms and memberships were kept.
    broker
        .publish(&Envelope::new(alice.clone(), To::Room(room.clone()), "r3"))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut sb).await, "r3");
    assert_silent(&mut sb).await;
    let history = broker.history(&room, HistoryQuery::last(10)).await.unwrap();
    let bodies: Vec<&[u8]> = history.iter().map(|e| e.body.as_slice()).collect();
    assert_eq!(bodies, [&b"r0"[..], b"r1", b"r2", b"r3"]);
}

#[tokio::test]
async fn history_is_capped() {
    let broker = LocalBroker::builder(nopi::Store::memory())
        .history_cap(10)
        .build()
        .await
        .unwrap();
    let alice = UserId::new("alice").unwrap();
    let room = RoomId::new("r").unwrap();
    broker.create_room(&room).await.unwrap();
    for i in 0..100 {
        let env = Envelope::new(alice.clone(), To::Room(room.clone()), format!("{i}"));
        broker.publish(&env).await.unwrap();
    }
    let all = broker
        .history(&room, HistoryQuery::last(1000))
        .await
        .unwrap();
    assert!((10..=11).contains(&all.len()), "{} kept", all.len());
    assert_eq!(all.last().unwrap().body, b"99");
}

#[tokio::test]
async fn inboxes_are_capped_dropping_the_oldest() {
    let broker = LocalBroker::builder(nopi::Store::memory())
        .inbox_capacity(5)
        .build()
        .await
        .unwrap();
    let bob = UserId::new("bob").unwrap();
    broker.ensure_inbox(&bob).await.unwrap();
    for i in 0..8 {
        let env = Envelope::new(bob.clone(), To::User(bob.clone()), format!("{i}"));
        broker.publish(&env).await.unwrap();
    }
    let mut sb = broker.subscribe(&bob).await.unwrap();
    for expected in ["3", "4", "5", "6", "7"] {
        assert_eq!(recv_text(&mut sb).await, expected);
    }
    assert_silent(&mut sb).await;
}

#[tokio::test]
async fn close_ends_subscriptions_and_presence_and_refuses_new_ones() {
    let broker = LocalBroker::builder(nopi::Store::memory())
        .build()
        .await
        .unwrap();
    let bob = UserId::new("bob").unwrap();
    broker.ensure_inbox(&bob).await.unwrap();
    let mut sub = broker.subscribe(&bob).await.unwrap();
    let mut presence = broker.subscribe_presence().await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), broker.close()).await;
    assert!(
        closed.is_ok(),
        "close waits for the subscription tasks only"
    );
    let ended = tokio::time::timeout(Duration::from_secs(5), sub.recv()).await;
    assert!(matches!(ended, Ok(None)), "the subscription ended");
    let ended = tokio::time::timeout(Duration::from_secs(5), presence.recv()).await;
    assert!(matches!(ended, Ok(None)), "the presence stream ended");
    assert!(matches!(
        broker.subscribe(&bob).await,
        Err(rmq_core::Error::Closed)
    ));
    // What waited in the inbox stays there.
    broker
        .publish(&Envelope::new(bob.clone(), To::User(bob.clone()), "kept"))
        .await
        .unwrap();
    assert_eq!(broker.inbox_len(&bob).await.unwrap(), 1);
}
