//! The `Broker` conformance suite, run unchanged against every implementation:
//! `LocalBroker` (in memory) and `AmqpBroker` on the real RabbitMQ (each test
//! in its own namespace, deleted afterwards). Every `async fn <case>(f:
//! Fixture)` must be listed in `conformance!` below; `case_list_is_complete`
//! fails on one left out.
#![expect(
    clippy::unwrap_used,
    reason = "test code: the cases are plain functions called by `#[test]`s, a failed unwrap is a failed test"
)]

mod support;

use futures_util::StreamExt;
use rmq_core::{Envelope, Error, HistoryQuery, Presence, PresenceEvent, RoomId, To, UserId};
use support::{Fixture, assert_silent, recv, recv_text};

fn text(from: &UserId, to: To, body: &str) -> Envelope {
    Envelope::builder(from.clone(), to)
        .content_type("text/plain")
        .from_ip("127.0.0.1".parse().unwrap())
        .body(body)
        .build()
}

async fn room_fanout_reaches_exactly_the_members(f: Fixture) {
    let (a, b, c) = (f.user("a").await, f.user("b").await, f.user("c").await);
    let room = f.room("rust").await;
    f.broker.join(&room, &a).await.unwrap();
    f.broker.join(&room, &b).await.unwrap();
    f.broker.join(&room, &b).await.unwrap(); // idempotent
    let (mut sa, mut sb, mut sc) = (
        f.broker.subscribe(&a).await.unwrap(),
        f.broker.subscribe(&b).await.unwrap(),
        f.broker.subscribe(&c).await.unwrap(),
    );
    let sent = text(&a, To::Room(room.clone()), "hello room");
    f.broker.publish(&sent).await.unwrap();
    for sub in [&mut sa, &mut sb] {
        let d = recv(sub).await;
        assert_eq!(d.envelope(), &sent, "the envelope arrives unchanged");
        assert!(!d.redelivered());
        d.ack().await.unwrap();
        assert_silent(sub).await; // exactly once
    }
    assert_silent(&mut sc).await;
}

async fn ids_in_other_scripts_route_and_keep_history(f: Fixture) {
    // Names such as `张三` become parts of queue names and routing keys.
    let (zhang, li) = (f.user("张三").await, f.user("李四").await);
    let room = f.room("中文群").await;
    f.broker.join(&room, &zhang).await.unwrap();
    f.broker.join(&room, &li).await.unwrap();
    let (mut sz, mut sl) = (
        f.broker.subscribe(&zhang).await.unwrap(),
        f.broker.subscribe(&li).await.unwrap(),
    );
    f.broker
        .publish(&text(&zhang, To::Room(room.clone()), "大家好"))
        .await
        .unwrap();
    for sub in [&mut sz, &mut sl] {
        assert_eq!(recv_text(sub).await, "大家好");
    }
    f.broker
        .publish(&text(&li, To::User(zhang.clone()), "你好"))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut sz).await, "你好");
    assert_silent(&mut sl).await;
    let h = f
        .broker
        .history(&room, HistoryQuery::last(10))
        .await
        .unwrap();
    assert_eq!(h.len(), 1);
    assert_eq!(h[0].body, "大家好".as_bytes());
}

async fn leaving_stops_delivery(f: Fixture) {
    let (a, b) = (f.user("a").await, f.user("b").await);
    let room = f.room("r").await;
    f.broker.join(&room, &a).await.unwrap();
    f.broker.join(&room, &b).await.unwrap();
    f.broker.leave(&room, &b).await.unwrap();
    f.broker.leave(&room, &b).await.unwrap(); // idempotent
    let (mut sa, mut sb) = (
        f.broker.subscribe(&a).await.unwrap(),
        f.broker.subscribe(&b).await.unwrap(),
    );
    f.broker
        .publish(&text(&a, To::Room(room.clone()), "after leave"))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut sa).await, "after leave");
    assert_silent(&mut sb).await;
}

async fn direct_messages_reach_only_the_target(f: Fixture) {
    let (a, b, c) = (f.user("a").await, f.user("b").await, f.user("c").await);
    let room = f.room("g").await;
    f.broker.join(&room, &b).await.unwrap();
    f.broker.join(&room, &c).await.unwrap();
    let (mut sa, mut sb, mut sc) = (
        f.broker.subscribe(&a).await.unwrap(),
        f.broker.subscribe(&b).await.unwrap(),
        f.broker.subscribe(&c).await.unwrap(),
    );
    f.broker
        .publish(&text(&a, To::User(b.clone()), "to b"))
        .await
        .unwrap();
    let in_room = To::UserInRoom {
        user: b.clone(),
        room: room.clone(),
    };
    f.broker
        .publish(&text(&a, in_room.clone(), "to b in g"))
        .await
        .unwrap();
    let d = recv(&mut sb).await;
    assert_eq!(d.envelope().body, b"to b");
    assert_eq!(d.envelope().to, To::User(b.clone()));
    d.ack().await.unwrap();
    let d = recv(&mut sb).await;
    assert_eq!(d.envelope().to, in_room);
    d.ack().await.unwrap();
    assert_silent(&mut sa).await;
    assert_silent(&mut sc).await;
    // A private message inside a room is not room history.
    assert!(
        f.broker
            .history(&room, HistoryQuery::last(10))
            .await
            .unwrap()
            .is_empty()
    );
}

async fn offline_messages_wait_and_arrive_in_order(f: Fixture) {
    let (a, b) = (f.user("a").await, f.user("b").await);
    let room = f.room("r").await;
    f.broker.join(&room, &b).await.unwrap();
    for i in 0..20 {
        let to = if i % 2 == 0 {
            To::User(b.clone())
        } else {
            To::Room(room.clone())
        };
        f.broker
            .publish(&text(&a, to, &format!("m{i}")))
            .await
            .unwrap();
    }
    // b comes online only now.
    let mut sb = f.broker.subscribe(&b).await.unwrap();
    for i in 0..20 {
        assert_eq!(recv_text(&mut sb).await, format!("m{i}"));
    }
    assert_silent(&mut sb).await;
}

async fn an_unacked_delivery_comes_back_after_the_subscriber_drops(f: Fixture) {
    let (a, b) = (f.user("a").await, f.user("b").await);
    f.broker
        .publish(&text(&a, To::User(b.clone()), "one"))
        .await
        .unwrap();
    f.broker
        .publish(&text(&a, To::User(b.clone()), "two"))
        .await
        .unwrap();
    let mut sb = f.broker.subscribe(&b).await.unwrap();
    let first = recv(&mut sb).await;
    let (env, acker) = first.into_parts();
    assert_eq!(env.body, b"one");
    drop(sb); // without acking
    let mut sb = f.broker.subscribe(&b).await.unwrap();
    let again = recv(&mut sb).await;
    assert_eq!(
        again.envelope().id,
        env.id,
        "the unacked message comes first, again"
    );
    assert!(again.redelivered());
    // The old acker belongs to the dropped subscription.
    assert!(matches!(acker.ack().await, Err(Error::DeliveryGone { .. })));
    again.ack().await.unwrap();
    assert_eq!(recv_text(&mut sb).await, "two");
    drop(sb);
    // Everything was acked: nothing comes back.
    let mut sb = f.broker.subscribe(&b).await.unwrap();
    assert_silent(&mut sb).await;
}

async fn nack_requeues_or_drops(f: Fixture) {
    let (a, b) = (f.user("a").await, f.user("b").await);
    let mut sb = f.broker.subscribe(&b).await.unwrap();
    f.broker
        .publish(&text(&a, To::User(b.clone()), "x"))
        .await
        .unwrap();
    let d = recv(&mut sb).await;
    let id = d.envelope().id;
    d.nack(true).await.unwrap();
    let d = recv(&mut sb).await;
    assert_eq!(d.envelope().id, id);
    assert!(d.redelivered());
    d.nack(false).await.unwrap();
    assert_silent(&mut sb).await;
}

async fn everyone_reaches_every_inbox(f: Fixture) {
    let (a, b) = (f.user("a").await, f.user("b").await);
    let (mut sa, mut sb) = (
        f.broker.subscribe(&a).await.unwrap(),
        f.broker.subscribe(&b).await.unwrap(),
    );
    f.broker
        .publish(&text(&a, To::Everyone, "all"))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut sa).await, "all");
    assert_eq!(recv_text(&mut sb).await, "all");
}

async fn history_returns_the_last_n_in_order(f: Fixture) {
    let a = f.user("a").await;
    let room = f.room("h").await;
    let mut sent = Vec::new();
    for i in 0..30 {
        let env = text(&a, To::Room(room.clone()), &format!("h{i}"));
        f.broker.publish(&env).await.unwrap();
        sent.push(env);
    }
    let bodies = |envs: Vec<Envelope>| -> Vec<String> {
        envs.into_iter()
            .map(|e| String::from_utf8(e.body).unwrap())
            .collect()
    };
    let expect =
        |range: std::ops::Range<usize>| -> Vec<String> { range.map(|i| format!("h{i}")).collect() };
    let h = &f.broker;
    assert_eq!(
        bodies(h.history(&room, HistoryQuery::last(10)).await.unwrap()),
        expect(20..30)
    );
    assert_eq!(
        bodies(h.history(&room, HistoryQuery::last(100)).await.unwrap()),
        expect(0..30)
    );
    assert_eq!(
        h.history(&room, HistoryQuery::last(10)).await.unwrap()[9],
        sent[29]
    );
    assert_eq!(
        bodies(
            h.history(&room, HistoryQuery::after(sent[19].id, 5))
                .await
                .unwrap()
        ),
        expect(20..25)
    );
    assert_eq!(
        bodies(
            h.history(&room, HistoryQuery::after(sent[27].id, 5))
                .await
                .unwrap()
        ),
        expect(28..30)
    );
    assert_eq!(
        bodies(
            h.history(&room, HistoryQuery::before(sent[20].id, 5))
                .await
                .unwrap()
        ),
        expect(15..20)
    );
    assert_eq!(
        bodies(
            h.history(&room, HistoryQuery::before(sent[3].id, 5))
                .await
                .unwrap()
        ),
        expect(0..3)
    );
    assert!(
        h.history(&room, HistoryQuery::last(0))
            .await
            .unwrap()
            .is_empty()
    );
    let empty = f.room("empty").await;
    assert!(
        h.history(&empty, HistoryQuery::last(10))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        h.history(&room, HistoryQuery::last(1_000_000)).await,
        Err(Error::HistoryTooLarge { .. })
    ));
}

async fn unknown_rooms_and_users_are_errors(f: Fixture) {
    let a = f.user("a").await;
    let room = f.room("exists").await;
    let ghost_room = RoomId::new("ghost").unwrap();
    let ghost = UserId::new("ghost").unwrap();
    let b = &f.broker;
    assert!(matches!(
        b.publish(&text(&a, To::Room(ghost_room.clone()), "x")).await,
        Err(Error::UnknownRoom(r)) if r == ghost_room
    ));
    assert!(matches!(
        b.publish(&text(&a, To::User(ghost.clone()), "x")).await,
        Err(Error::UnknownUser(u)) if u == ghost
    ));
    assert!(matches!(
        b.join(&ghost_room, &a).await,
        Err(Error::UnknownRoom(_))
    ));
    assert!(matches!(
        b.join(&room, &ghost).await,
        Err(Error::UnknownUser(_))
    ));
    assert!(matches!(
        b.subscribe(&ghost).await,
        Err(Error::UnknownUser(_))
    ));
    assert!(matches!(
        b.history(&ghost_room, HistoryQuery::last(5)).await,
        Err(Error::UnknownRoom(_))
    ));
    // Leaving what one is not in is fine.
    b.leave(&ghost_room, &a).await.unwrap();
    b.leave(&room, &a).await.unwrap();
    // The broker still works after those refusals.
    b.join(&room, &a).await.unwrap();
    let mut sa = b.subscribe(&a).await.unwrap();
    b.publish(&text(&a, To::Room(room), "still fine"))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut sa).await, "still fine");
}

async fn oversized_bodies_are_refused(f: Fixture) {
    let a = f.user("a").await;
    let big = Envelope::new(a.clone(), To::User(a.clone()), vec![0u8; 64 * 1024 + 1]);
    assert!(matches!(
        f.broker.publish(&big).await,
        Err(Error::BodyTooLarge {
            size: 65537,
            limit: 65536
        })
    ));
    let fits = Envelope::new(a.clone(), To::User(a.clone()), vec![7u8; 64 * 1024]);
    f.broker.publish(&fits).await.unwrap();
    let mut sa = f.broker.subscribe(&a).await.unwrap();
    let d = recv(&mut sa).await;
    assert_eq!(d.envelope().body.len(), 64 * 1024);
    d.ack().await.unwrap();
}

async fn deleting_rooms_and_inboxes(f: Fixture) {
    let (a, b) = (f.user("a").await, f.user("b").await);
    let room = f.room("doomed").await;
    f.broker.join(&room, &b).await.unwrap();
    f.broker
        .publish(&text(&a, To::Room(room.clone()), "before"))
        .await
        .unwrap();
    f.broker.delete_room(&room).await.unwrap();
    f.broker.delete_room(&room).await.unwrap(); // idempotent
    assert!(matches!(
        f.broker
            .publish(&text(&a, To::Room(room.clone()), "after"))
            .await,
        Err(Error::UnknownRoom(_))
    ));
    assert!(matches!(
        f.broker.history(&room, HistoryQuery::last(5)).await,
        Err(Error::UnknownRoom(_))
    ));
    // A re-created room starts empty, without the old members.
    let room = f.room("doomed").await;
    assert!(
        f.broker
            .history(&room, HistoryQuery::last(5))
            .await
            .unwrap()
            .is_empty()
    );
    let mut sb = f.broker.subscribe(&b).await.unwrap();
    assert_eq!(recv_text(&mut sb).await, "before");
    f.broker
        .publish(&text(&a, To::Room(room.clone()), "new room"))
        .await
        .unwrap();
    assert_silent(&mut sb).await;
    drop(sb);
    f.broker.delete_inbox(&b).await.unwrap();
    f.broker.delete_inbox(&b).await.unwrap(); // idempotent
    assert!(matches!(
        f.broker.subscribe(&b).await,
        Err(Error::UnknownUser(_))
    ));
    assert!(matches!(
        f.broker
            .publish(&text(&a, To::User(b.clone()), "gone"))
            .await,
        Err(Error::UnknownUser(_))
    ));
}

async fn deleting_an_inbox_ends_its_subscription(f: Fixture) {
    let b = f.user("b").await;
    let mut sb = f.broker.subscribe(&b).await.unwrap();
    f.broker
        .publish(&text(&b, To::User(b.clone()), "x"))
        .await
        .unwrap();
    assert_eq!(recv_text(&mut sb).await, "x");
    f.broker.delete_inbox(&b).await.unwrap();
    match tokio::time::timeout(support::ARRIVE, sb.recv()).await {
        Ok(Some(Err(Error::UnknownUser(u)))) => assert_eq!(u, b),
        other => panic!("expected the subscription to fail with UnknownUser, got {other:?}"),
    }
    assert!(matches!(
        tokio::time::timeout(support::ARRIVE, sb.recv()).await,
        Ok(None)
    ));
}

async fn presence_reaches_every_subscriber(f: Fixture) {
    let mut p1 = f.broker.subscribe_presence().await.unwrap();
    let mut p2 = f.broker.subscribe_presence().await.unwrap();
    let alice = UserId::new("alice").unwrap();
    f.broker
        .publish_presence(&Presence::new(alice.clone(), true))
        .await
        .unwrap();
    f.broker
        .publish_presence(&Presence::new(alice.clone(), false))
        .await
        .unwrap();
    for p in [&mut p1, &mut p2] {
        let mut got = Vec::new();
        while got.len() < 2 {
            match tokio::time::timeout(support::ARRIVE, p.next()).await {
                Ok(Some(PresenceEvent::Changed(ev))) => got.push((ev.user, ev.online)),
                Ok(Some(other)) => panic!("unexpected presence event {other:?}"),
                Ok(None) | Err(_) => panic!("presence event missing; got {got:?}"),
            }
        }
        assert_eq!(got, [(alice.clone(), true), (alice.clone(), false)]);
    }
}

async fn prefetch_bounds_unacked_deliveries(f: Fixture) {
    // 100 waiting messages, default prefetch 64: holding every delivery
    // unacked stops the flow at the prefetch; acking resumes it.
    let (a, b) = (f.user("a").await, f.user("b").await);
    for i in 0..100 {
        f.broker
            .publish(&text(&a, To::User(b.clone()), &format!("p{i}")))
            .await
            .unwrap();
    }
    let mut sb = f.broker.subscribe(&b).await.unwrap();
    let mut held = Vec::new();
    for _ in 0..64 {
        held.push(recv(&mut sb).await);
    }
    assert_silent(&mut sb).await;
    for d in held {
        d.ack().await.unwrap();
    }
    for i in 64..100 {
        assert_eq!(recv_text(&mut sb).await, format!("p{i}"));
    }
}

macro_rules! conformance {
    ($backend:ident, $kind:expr) => {
        mod $backend {
            use super::*;
            conformance!(@tests $kind;
                room_fanout_reaches_exactly_the_members,
                ids_in_other_scripts_route_and_keep_history,
                leaving_stops_delivery,
                direct_messages_reach_only_the_target,
                offline_messages_wait_and_arrive_in_order,
                an_unacked_delivery_comes_back_after_the_subscriber_drops,
                nack_requeues_or_drops,
                everyone_reaches_every_inbox,
                history_returns_the_last_n_in_order,
                unknown_rooms_and_users_are_errors,
                oversized_bodies_are_refused,
                deleting_rooms_and_inboxes,
                deleting_an_inbox_ends_its_subscription,
                presence_reaches_every_subscriber,
                prefetch_bounds_unacked_deliveries,
            );
        }
    };
    (@tests $kind:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                support::run($kind, super::$name).await;
            }
        )*

        /// Every case of this file is in the list above: one left out fails here.
        #[test]
        fn case_list_is_complete() {
            testkit::cases::assert_all_listed(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conformance.rs")),
                "Fixture",
                &[$(stringify!($name)),*],
            );
        }
    };
}

conformance!(local, support::Backend::Local);
conformance!(amqp, support::Backend::Amqp);
