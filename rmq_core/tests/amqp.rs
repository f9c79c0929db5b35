//! `AmqpBroker` behaviour beyond the conformance suite, on the real RabbitMQ.
mod support;

use std::time::Duration;

use futures_util::StreamExt;
use lapin::options::{BasicGetOptions, BasicPublishOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rmq_core::{
    AmqpBroker, Broker, Envelope, Error, HistoryQuery, Presence, PresenceEvent, QueueType, To,
};
use support::{Backend, Fixture, amqp_broker_in, amqp_url, recv, recv_text, run, run_on};

async fn raw_connection() -> Connection {
    Connection::connect(&amqp_url(), ConnectionProperties::default())
        .await
        .expect("RabbitMQ must be reachable (see AMQP_URL)")
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let err = AmqpBroker::builder("amqp://guest:s3cret@127.0.0.1:1/%2f")
        .connect_timeout(Duration::from_secs(3))
        .connect()
        .await
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Connect { .. }), "{err:?}");
    assert!(
        text.starts_with("cannot connect to the AMQP server at amqp://guest:***@127.0.0.1:1/%2f"),
        "{text}"
    );
    assert!(!text.contains("s3cret"));
}

#[tokio::test]
async fn a_bad_namespace_is_refused_before_connecting() {
    let err = AmqpBroker::builder(amqp_url())
        .namespace("im.#")
        .connect()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Name(_)), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_rooms_inboxes_and_presence() {
    run(Backend::Amqp, |f| async move {
        let node1 = f.amqp();
        let node2 = amqp_broker_in(node1.namespace()).await;
        let (alice, bob) = (f.user("alice").await, f.user("bob").await);
        let room = f.room("lobby").await;
        node2.join(&room, &alice).await.unwrap();
        node1.join(&room, &bob).await.unwrap();
        let mut presence = node2.subscribe_presence().await.unwrap();

        // alice is connected to node 1, bob to node 2.
        let mut sa = node1.subscribe(&alice).await.unwrap();
        let mut sb = node2.subscribe(&bob).await.unwrap();
        node1
            .publish_presence(&Presence::new(alice.clone(), true))
            .await
            .unwrap();
        node1
            .publish(&Envelope::new(
                alice.clone(),
                To::Room(room.clone()),
                "hi all",
            ))
            .await
            .unwrap();
        node2
            .publish(&Envelope::new(
                bob.clone(),
                To::User(alice.clone()),
                "hi alice",
            ))
            .await
            .unwrap();
        assert_eq!(recv_text(&mut sb).await, "hi all");
        assert_eq!(recv_text(&mut sa).await, "hi all");
        assert_eq!(recv_text(&mut sa).await, "hi alice");
        match tokio::time::timeout(support::ARRIVE, presence.next()).await {
            Ok(Some(PresenceEvent::Changed(p))) => {
                assert_eq!((p.user, p.online), (alice.clone(), true))
            }
            other => panic!("expected alice's presence on node 2, got {other:?}"),
        }
        // Either node reads the same history.
        let h1 = node1.history(&room, HistoryQuery::last(5)).await.unwrap();
        let h2 = node2.history(&room, HistoryQuery::last(5)).await.unwrap();
        assert_eq!(h1, h2);
        assert_eq!(h1.len(), 1);
        drop((sa, sb, presence));
        node2.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_dead_lettered_and_consumption_goes_on() {
    run(Backend::Amqp, |f| async move {
        let ns = f.amqp().namespace().to_owned();
        let bob = f.user("bob").await;
        let conn = raw_connection().await;
        let ch = conn.create_channel().await.unwrap();
        for garbage in [&b"not an envelope"[..], b"IM\x01\xff\xff\xff\xff", b""] {
            ch.basic_publish(
                "".into(),
                format!("{ns}.inbox.bob").into(),
                BasicPublishOptions::default(),
                garbage,
                BasicProperties::default(),
            )
            .await
            .unwrap();
        }
        f.broker
            .publish(&Envelope::new(bob.clone(), To::User(bob.clone()), "valid"))
            .await
            .unwrap();
        let mut sb = f.broker.subscribe(&bob).await.unwrap();
        assert_eq!(recv_text(&mut sb).await, "valid");
        // The three bad messages went to the dead-letter queue.
        let mut dead = 0;
        for _ in 0..100 {
            let got = ch
                .basic_get(
                    format!("{ns}.dead").into(),
                    BasicGetOptions { no_ack: true },
                )
                .await
                .unwrap();
            match got {
                Some(_) => dead += 1,
                None if dead >= 3 => break,
                None => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        assert_eq!(dead, 3);
        conn.close(200, "bye".into()).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_inboxes_work() {
    let fixture = Fixture::amqp_with(|b| b.inbox_queue_type(QueueType::Quorum)).await;
    run_on(fixture, |f| async move {
        let ns = f.amqp().namespace().to_owned();
        let bob = f.user("bob").await;
        f.broker
            .publish(&Envelope::new(bob.clone(), To::User(bob.clone()), "q"))
            .await
            .unwrap();
        let mut sb = f.broker.subscribe(&bob).await.unwrap();
        let d = recv(&mut sb).await;
        assert_eq!(d.envelope().body, b"q");
        d.nack(true).await.unwrap();
        let d = recv(&mut sb).await;
        assert!(d.redelivered());
        d.ack().await.unwrap();
        // It really is a quorum queue: declaring it again with the same
        // arguments succeeds as quorum and is refused as classic.
        let conn = raw_connection().await;
        let declare = |kind: &'static str| {
            let (conn, ns) = (&conn, ns.clone());
            async move {
                let mut args = FieldTable::default();
                args.insert("x-queue-type".into(), AMQPValue::LongString(kind.into()));
                args.insert(
                    "x-dead-letter-exchange".into(),
                    AMQPValue::LongString(format!("{ns}.dead").into()),
                );
                args.insert("x-max-length".into(), AMQPValue::LongLongInt(10_000));
                args.insert(
                    "x-overflow".into(),
                    AMQPValue::LongString("drop-head".into()),
                );
                let ch = conn.create_channel().await.unwrap();
                ch.queue_declare(
                    format!("{ns}.inbox.bob").into(),
                    QueueDeclareOptions::durable(),
                    args,
                )
                .await
            }
        };
        declare("quorum").await.expect("same declaration as quorum");
        assert!(
            declare("classic").await.is_err(),
            "a quorum queue cannot be re-declared classic"
        );
        let _ = conn.close(200, "bye".into()).await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_reads_are_consistent_while_the_room_is_busy() {
    run(Backend::Amqp, |f| async move {
        let alice = f.user("alice").await;
        let room = f.room("busy").await;
        let publisher = {
            let broker = f.broker.clone();
            let (alice, room) = (alice.clone(), room.clone());
            tokio::spawn(async move {
                for i in 0..300u32 {
                    let body = i.to_be_bytes().to_vec();
                    let env = Envelope::new(alice.clone(), To::Room(room.clone()), body);
                    broker.publish(&env).await.unwrap();
                }
            })
        };
        let mut reads = 0;
        while !publisher.is_finished() || reads < 3 {
            let page = f
                .broker
                .history(&room, HistoryQuery::last(20))
                .await
                .unwrap();
            let numbers: Vec<u32> = page
                .iter()
                .map(|e| u32::from_be_bytes(e.body.clone().try_into().unwrap()))
                .collect();
            // Always a contiguous run: the newest messages at the time of the read.
            assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
            assert!(
                numbers.len() == 20 || numbers.first() == Some(&0),
                "{numbers:?}"
            );
            reads += 1;
        }
        publisher.await.unwrap();
        let all = f
            .broker
            .history(&room, HistoryQuery::last(1000))
            .await
            .unwrap();
        assert_eq!(all.len(), 300, "probes are never returned");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_follows_the_design_names() {
    run(Backend::Amqp, |f| async move {
        let ns = f.amqp().namespace().to_owned();
        let bob = f.user("bob").await;
        f.room("rust").await;
        let conn = raw_connection().await;
        let passive = QueueDeclareOptions::durable().passive();
        for queue in [
            format!("{ns}.inbox.bob"),
            format!("{ns}.history.rust"),
            format!("{ns}.dead"),
        ] {
            let ch = conn.create_channel().await.unwrap();
            ch.queue_declare(queue.clone().into(), passive, FieldTable::default())
                .await
                .unwrap_or_else(|e| panic!("queue {queue} missing: {e}"));
        }
        // A direct message published by hand with the documented routing key arrives.
        let ch = conn.create_channel().await.unwrap();
        let env = Envelope::new(bob.clone(), To::User(bob.clone()), "by hand");
        ch.basic_publish(
            format!("{ns}.direct").into(),
            "user.bob".into(),
            BasicPublishOptions::default(),
            &env.encode(),
            BasicProperties::default(),
        )
        .await
        .unwrap();
        let mut sb = f.broker.subscribe(&bob).await.unwrap();
        assert_eq!(recv_text(&mut sb).await, "by hand");
        conn.close(200, "bye".into()).await.unwrap();
    })
    .await;
}
