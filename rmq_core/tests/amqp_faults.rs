//! Connection losses on the real RabbitMQ: the server closes the broker's
//! connection (`rabbitmqctl close_connection`) while it publishes and
//! consumes; the broker reconnects, resumes its consumers and resends what
//! was not confirmed.
#![expect(clippy::print_stderr, reason = "a fault test reports what it injected")]
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]

mod support;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use rmq_core::{AmqpBroker, Broker, Envelope, Presence, PresenceEvent, To, UserId};
use support::{Backend, recv, recv_text, run};
use uuid::Uuid;

/// Cut every connection of `broker` from the server side; how many were cut.
async fn cut(broker: &AmqpBroker) -> usize {
    let ns = broker.namespace().to_owned();
    tokio::task::spawn_blocking(move || support::close_connections_matching(&ns))
        .await
        .unwrap()
}

async fn wait_reconnected(broker: &AmqpBroker, at_least: u64) {
    for _ in 0..400 {
        if broker.reconnections() >= at_least && broker.is_connected() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the broker did not reconnect (reconnections = {})",
        broker.reconnections()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_after_a_lost_connection_are_delivered_and_consumers_resume() {
    run(Backend::Amqp, |f| async move {
        let broker = f.amqp();
        let alice = UserId::new("alice").unwrap();
        let bob = f.user("bob").await;
        let room = f.room("r").await;
        broker.join(&room, &bob).await.unwrap();
        let mut sb = broker.subscribe(&bob).await.unwrap();
        let mut presence = broker.subscribe_presence().await.unwrap();
        let to_bob = |text: &str| Envelope::new(alice.clone(), To::User(bob.clone()), text);
        broker.publish(&to_bob("before")).await.unwrap();
        assert_eq!(recv_text(&mut sb).await, "before");

        assert_eq!(cut(&broker).await, 1, "the broker has one connection");
        // Published while the connection is down or being re-established:
        // each publish waits for the new connection and its confirm.
        broker.publish(&to_bob("during")).await.unwrap();
        let in_room = Envelope::new(alice.clone(), To::Room(room.clone()), "room after");
        broker.publish(&in_room).await.unwrap();
        wait_reconnected(&broker, 1).await;
        broker.publish(&to_bob("after")).await.unwrap();

        // The same subscription resumed on the new connection.
        assert_eq!(recv_text(&mut sb).await, "during");
        assert_eq!(recv_text(&mut sb).await, "room after");
        assert_eq!(recv_text(&mut sb).await, "after");

        // The presence stream reports that it may have missed events once it
        // is bound again; what is announced after that arrives.
        match tokio::time::timeout(support::ARRIVE, presence.next()).await {
            Ok(Some(PresenceEvent::Lagged)) => {}
            other => panic!("a reconnection is reported as Lagged, got {other:?}"),
        }
        broker
            .publish_presence(&Presence::new(alice.clone(), true))
            .await
            .unwrap();
        match tokio::time::timeout(support::ARRIVE, presence.next()).await {
            Ok(Some(PresenceEvent::Changed(p))) => assert_eq!(p.user, alice),
            other => panic!("presence did not resume: {other:?}"),
        }

        // Topology operations work on the new connection.
        broker.leave(&room, &bob).await.unwrap();
        broker.publish(&in_room).await.unwrap();
        broker.publish(&to_bob("last")).await.unwrap();
        assert_eq!(recv_text(&mut sb).await, "last");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_confirmed_message_is_delivered_across_connection_losses() {
    const TOTAL: usize = 600;
    const IN_FLIGHT: usize = 32;
    run(Backend::Amqp, |f| async move {
        let broker = f.amqp();
        let alice = UserId::new("alice").unwrap();
        let bob = f.user("bob").await;

        // The consumer counts what it gets and acks in batches of 16, like a
        // client acking a screenful: a connection lost before the ack of a
        // batch makes it come again (duplicates, which clients drop by id).
        let received: Arc<Mutex<HashMap<Uuid, usize>>> = Arc::default();
        let mut sb = broker.subscribe(&bob).await.unwrap();
        let consumer = {
            let received = received.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                loop {
                    let d = recv(&mut sb).await;
                    *received
                        .lock()
                        .unwrap()
                        .entry(d.envelope().id)
                        .or_default() += 1;
                    held.push(d);
                    if held.len() == 16 {
                        for d in held.drain(..) {
                            let _ = d.ack().await;
                        }
                    }
                }
            })
        };

        // The publisher keeps IN_FLIGHT confirmed publishes going.
        let confirmed: Arc<Mutex<HashSet<Uuid>>> = Arc::default();
        let publisher = {
            let (broker, confirmed) = (broker.clone(), confirmed.clone());
            let (alice, bob) = (alice.clone(), bob.clone());
            tokio::spawn(async move {
                futures_util::stream::iter(0..TOTAL)
                    .map(|i| {
                        let env = Envelope::new(alice.clone(), To::User(bob.clone()), format!("m{i}"));
                        let (broker, confirmed) = (broker.clone(), confirmed.clone());
                        async move {
                            broker
                                .publish(&env)
                                .await
                                .expect("a publish is resent until confirmed");
                            confirmed.lock().unwrap().insert(env.id);
                        }
                    })
                    .buffer_unordered(IN_FLIGHT)
                    .collect::<Vec<()>>()
                    .await;
            })
        };

        // Cut the connection twice in the middle of the stream.
        for (n, threshold) in [(1, TOTAL / 4), (2, TOTAL / 2)] {
            while confirmed.lock().unwrap().len() < threshold {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            assert_eq!(cut(&broker).await, 1);
            wait_reconnected(&broker, n).await;
        }
        publisher.await.unwrap();
        let confirmed = confirmed.lock().unwrap().clone();
        assert_eq!(confirmed.len(), TOTAL);

        // Every confirmed message arrives.
        let mut missing = TOTAL;
        for _ in 0..400 {
            missing = {
                let got = received.lock().unwrap();
                confirmed.iter().filter(|id| !got.contains_key(id)).count()
            };
            if missing == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        consumer.abort();
        let got = received.lock().unwrap().clone();
        let duplicates: usize = got.values().map(|n| n - 1).sum();
        eprintln!(
            "fault test: {TOTAL} confirmed, {} distinct received, {duplicates} duplicates, {} reconnections",
            got.len(),
            broker.reconnections()
        );
        assert_eq!(missing, 0, "confirmed messages were lost");
        assert!(
            got.keys().all(|id| confirmed.contains(id)),
            "nothing unknown arrives"
        );
        assert!(broker.reconnections() >= 2);
    })
    .await;
}
