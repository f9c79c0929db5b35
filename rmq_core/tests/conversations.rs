//! The conversation-log conformance suite, run unchanged on both shapes, each
//! with two nodes sharing one store and one fan-out:
//!
//! - `local`: a sled store and an [`InProcessFanout`];
//! - `amqp`: the real PostgreSQL (a fresh schema) and the real RabbitMQ
//!   (two `AmqpBroker` connections in a fresh namespace).
//!
//! Every `async fn <case>(n: Nodes)` must be listed in `conformance!` below;
//! `case_list_is_complete` fails on one left out.
#![expect(
    clippy::unwrap_used,
    reason = "test code: the cases are plain functions called by `#[test]`s, a failed unwrap is a failed test"
)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use nopi::testing::TempStore;
use rmq_core::conversation::{
    Conversations, Event, FeedItem, FeedSink, InProcessFanout, ListQuery, LogQuery, Retention,
};
use rmq_core::{AmqpBroker, ConversationId, DeviceId, Envelope, Error, RoomId, To, UserId};
use support::{ARRIVE, SILENCE, amqp_conversations, unique_namespace};

/// Two nodes on one store and one fan-out.
struct Nodes {
    a: Conversations,
    b: Conversations,
    /// The store both nodes use, for a third node that hears no fan-out.
    store: nopi::Store,
    amqp: Vec<AmqpBroker>,
    _store: TempStore,
}

#[derive(Clone, Copy, Debug)]
enum Shape {
    Local,
    Amqp,
}

impl Nodes {
    async fn new(shape: Shape) -> Nodes {
        match shape {
            Shape::Local => {
                let temp = TempStore::sled().unwrap();
                let store = temp.open().await.unwrap();
                let fanout = InProcessFanout::new();
                let node = || {
                    Conversations::builder(&store)
                        .fanout(Arc::new(fanout.clone()))
                        .build()
                };
                let (a, b) = (node().await.unwrap(), node().await.unwrap());
                Nodes {
                    a,
                    b,
                    store,
                    amqp: Vec::new(),
                    _store: temp,
                }
            }
            Shape::Amqp => {
                let temp = TempStore::postgres();
                let ns = unique_namespace();
                let (a, ba) = amqp_conversations(&temp, &ns).await;
                let (b, bb) = amqp_conversations(&temp, &ns).await;
                Nodes {
                    a,
                    b,
                    store: temp.open().await.unwrap(),
                    amqp: vec![ba, bb],
                    _store: temp,
                }
            }
        }
    }
}

fn user(name: &str) -> UserId {
    UserId::new(name).unwrap()
}

fn device(name: &str) -> DeviceId {
    DeviceId::new(name).unwrap()
}

/// A room with members, on node `a`.
async fn room(log: &Conversations, name: &str, members: &[&UserId]) -> (RoomId, ConversationId) {
    let room = RoomId::new(name).unwrap();
    log.create_room(&room, Retention::All).await.unwrap();
    for m in members {
        log.join(&room, m).await.unwrap();
    }
    (room.clone(), ConversationId::room(room))
}

fn text(from: &UserId, to: To, body: &str) -> Envelope {
    Envelope::builder(from.clone(), to)
        .content_type("text/plain")
        .body(body)
        .build()
}

fn body_of(event: &Event) -> String {
    match event {
        Event::Message(env) => String::from_utf8_lossy(&env.body).into_owned(),
        other => format!("{other:?}"),
    }
}

async fn next_entry(
    feed: &mut rmq_core::conversation::Feed,
) -> Arc<rmq_core::conversation::LogEntry> {
    match tokio::time::timeout(ARRIVE, feed.next()).await {
        Ok(Ok(FeedItem::Entry(e))) => e,
        Ok(Ok(other)) => panic!("expected an entry, got {other:?}"),
        Ok(Err(e)) => panic!("feed failed: {e}"),
        Err(_) => panic!(
            "nothing reached the feed of {} within {ARRIVE:?}",
            feed.reader()
        ),
    }
}

async fn assert_feed_silent(feed: &mut rmq_core::conversation::Feed) {
    if let Ok(item) = tokio::time::timeout(SILENCE, feed.next()).await {
        panic!(
            "the feed of {} unexpectedly yielded {item:?}",
            feed.reader()
        );
    }
}

async fn seqs_are_gapless_under_concurrent_appends_on_two_nodes(n: Nodes) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (r, c) = room(&n.a, "race", &[&alice, &bob]).await;
    let mut tasks = Vec::new();
    for (i, node) in [n.a.clone(), n.b.clone(), n.a.clone(), n.b.clone()]
        .into_iter()
        .enumerate()
    {
        let (r, from) = (
            r.clone(),
            if i % 2 == 0 {
                alice.clone()
            } else {
                bob.clone()
            },
        );
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for k in 0..25 {
                let sent = node
                    .append(&text(&from, To::Room(r.clone()), &format!("{i}-{k}")))
                    .await
                    .unwrap();
                seqs.push(sent.seq);
            }
            seqs
        }));
    }
    let mut returned = BTreeSet::new();
    for t in tasks {
        for seq in t.await.unwrap() {
            assert!(returned.insert(seq), "seq {seq} returned twice");
        }
    }
    assert_eq!(
        returned,
        (1..=100).collect::<BTreeSet<_>>(),
        "gapless from 1"
    );
    let mut seen = Vec::new();
    let mut after = 0;
    loop {
        let page =
            n.b.read(&c, &alice, LogQuery::after(after, 30))
                .await
                .unwrap();
        assert_eq!(page.head, 100);
        let Some(last) = page.entries.last() else {
            break;
        };
        after = last.seq;
        seen.extend(page.entries.iter().map(|e| (e.seq, body_of(&e.event))));
    }
    assert_eq!(
        seen.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
    let bodies: BTreeSet<_> = seen.into_iter().map(|s| s.1).collect();
    assert_eq!(bodies.len(), 100, "every message stored once");
}

async fn live_entries_reach_each_watcher_once_on_the_other_node(n: Nodes) {
    let (alice, bob, carol, dave) = (user("alice"), user("bob"), user("carol"), user("dave"));
    let (r, c) = room(&n.a, "live", &[&alice, &bob, &carol, &dave]).await;
    let (_, other) = room(&n.a, "other", &[&alice, &dave]).await;
    let mut bob_feed = n.b.feed(&bob);
    let mut carol_feed = n.b.feed(&carol);
    let mut dave_feed = n.b.feed(&dave);
    bob_feed.watch(&c, 0).await.unwrap();
    carol_feed.watch(&c, 0).await.unwrap();
    dave_feed.watch(&other, 0).await.unwrap();
    for i in 1..=10 {
        let sent =
            n.a.append(&text(&alice, To::Room(r.clone()), &format!("m{i}")))
                .await
                .unwrap();
        assert!(sent.live, "published live");
    }
    for feed in [&mut bob_feed, &mut carol_feed] {
        for i in 1..=10u64 {
            let e = next_entry(feed).await;
            assert_eq!((e.seq, body_of(&e.event)), (i, format!("m{i}")));
        }
        assert_feed_silent(feed).await;
    }
    assert_feed_silent(&mut dave_feed).await; // watches another conversation only
}

async fn a_device_catches_up_from_its_cursor_then_follows_live(n: Nodes) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (r, c) = room(&n.a, "catchup", &[&alice, &bob]).await;
    let phone = device("phone");
    for i in 1..=5 {
        n.a.append(&text(&alice, To::Room(r.clone()), &format!("m{i}")))
            .await
            .unwrap();
    }
    n.a.mark_delivered(&bob, &phone, &c, 3).await.unwrap();
    n.a.mark_delivered(&bob, &phone, &c, 2).await.unwrap(); // backwards: ignored
    assert_eq!(n.b.cursor(&bob, &phone, &c).await.unwrap().delivered, 3);
    let mut feed = n.b.feed(&bob);
    assert_eq!(feed.watch_all(&phone).await.unwrap(), 1);
    assert_eq!(next_entry(&mut feed).await.seq, 4);
    assert_eq!(next_entry(&mut feed).await.seq, 5);
    n.a.append(&text(&alice, To::Room(r.clone()), "m6"))
        .await
        .unwrap();
    let live = next_entry(&mut feed).await;
    assert_eq!((live.seq, body_of(&live.event)), (6, "m6".into()));
    assert_feed_silent(&mut feed).await;
}

/// A [`FeedSink`] that keeps what it is given; it refuses once `limit`
/// items arrived (a receiver that went away).
struct Collect {
    items: std::sync::Mutex<Vec<FeedItem>>,
    limit: usize,
}

impl Collect {
    fn new(limit: usize) -> Arc<Collect> {
        Arc::new(Collect {
            items: std::sync::Mutex::default(),
            limit,
        })
    }

    fn seqs(&self) -> Vec<u64> {
        let items = self.items.lock().unwrap();
        items
            .iter()
            .map(|i| match i {
                FeedItem::Entry(e) => e.seq,
                other => panic!("expected entries only, got {other:?}"),
            })
            .collect()
    }

    async fn wait_for(&self, n: usize) -> Vec<u64> {
        let deadline = tokio::time::Instant::now() + ARRIVE;
        while self.items.lock().unwrap().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "only {:?} of {n} items within {ARRIVE:?}",
                self.seqs()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        self.seqs()
    }
}

impl FeedSink for Collect {
    fn deliver(&self, item: FeedItem) -> bool {
        let mut items = self.items.lock().unwrap();
        if items.len() >= self.limit {
            return false;
        }
        items.push(item);
        true
    }
}

async fn push_feeds_deliver_each_seq_once_through_catch_up_live_and_gaps(n: Nodes) {
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let (r, c) = room(&n.a, "push", &[&alice, &bob, &carol]).await;
    let phone = device("phone");
    for i in 1..=3 {
        n.a.append(&text(&alice, To::Room(r.clone()), &format!("m{i}")))
            .await
            .unwrap();
    }
    n.a.mark_delivered(&bob, &phone, &c, 1).await.unwrap();

    // Catch-up from the device's cursor while appends go on live.
    let bob_sink = Collect::new(usize::MAX);
    let bob_feed = n.b.push_feed(&bob, bob_sink.clone());
    let carol_sink = Collect::new(2);
    let carol_feed = n.b.push_feed(&carol, carol_sink.clone());
    carol_feed.watch(&c, 0).await.unwrap();
    let writer = {
        let (a, alice, r) = (n.a.clone(), alice.clone(), r.clone());
        tokio::spawn(async move {
            for i in 4..=23 {
                a.append(&text(&alice, To::Room(r.clone()), &format!("m{i}")))
                    .await
                    .unwrap();
            }
        })
    };
    assert_eq!(bob_feed.watch_all(&phone).await.unwrap(), 1);
    writer.await.unwrap();
    assert_eq!(bob_sink.wait_for(22).await, (2..=23).collect::<Vec<_>>());

    // A node that hears no fan-out appends: the next live entry shows a gap,
    // and the feed reads what it missed from the log.
    let deaf = Conversations::builder(&n.store).build().await.unwrap();
    for i in 24..=26 {
        deaf.append(&text(&alice, To::Room(r.clone()), &format!("m{i}")))
            .await
            .unwrap();
    }
    n.a.append(&text(&alice, To::Room(r.clone()), "m27"))
        .await
        .unwrap();
    assert_eq!(bob_sink.wait_for(26).await, (2..=27).collect::<Vec<_>>());
    assert_eq!(
        bob_feed.positions(),
        [(c.clone(), 27)],
        "the feed knows where it is"
    );

    // A sink that refuses stops its feed; an unwatched conversation is quiet.
    assert_eq!(carol_sink.wait_for(2).await, [1, 2]);
    bob_feed.unwatch(&c);
    n.a.append(&text(&alice, To::Room(r.clone()), "m28"))
        .await
        .unwrap();
    tokio::time::sleep(SILENCE).await;
    assert_eq!(bob_sink.seqs().len(), 26, "nothing after unwatch");
    assert_eq!(carol_sink.seqs(), [1, 2], "nothing after the sink refused");

    // Bad input: a conversation the reader is not in, a cursor past the head.
    let (_, elsewhere) = room(&n.a, "elsewhere", &[&alice]).await;
    assert!(matches!(
        bob_feed.watch(&elsewhere, 0).await,
        Err(Error::NotMember { .. })
    ));
    assert!(matches!(
        bob_feed.watch(&c, 99).await,
        Err(Error::BeyondHead { seq: 99, .. })
    ));
    assert!(
        bob_feed.positions().is_empty(),
        "a refused watch changes nothing"
    );
}

async fn unread_counts_follow_reads_on_any_device(n: Nodes) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (r, c) = room(&n.a, "unread", &[&alice, &bob]).await;
    let (phone, laptop) = (device("phone"), device("laptop"));
    for i in 1..=3 {
        n.a.append(&text(&alice, To::Room(r.clone()), &format!("m{i}")))
            .await
            .unwrap();
    }
    n.a.edit(&c, &alice, 3, b"m3!".to_vec()).await.unwrap(); // an event: not unread
    let bob_list = n.b.list(&bob, ListQuery::default()).await.unwrap();
    assert_eq!(bob_list.len(), 1);
    assert_eq!(
        (bob_list[0].head, bob_list[0].unread, bob_list[0].read),
        (4, 3, 0)
    );
    let last = bob_list[0].last.as_ref().expect("last message");
    assert_eq!((last.seq, last.body()), (3, &b"m3!"[..]));
    let alice_list =
        n.a.list(&alice, ListQuery::default().without_last())
            .await
            .unwrap();
    assert_eq!(
        alice_list[0].unread, 0,
        "the sender has read what they sent"
    );
    assert!(alice_list[0].last.is_none());

    let state = n.b.mark_read(&bob, &phone, &c, 2).await.unwrap();
    assert_eq!((state.read, state.unread), (2, 1));
    // The laptop reads less: the user's position does not go back.
    let state = n.a.mark_read(&bob, &laptop, &c, 1).await.unwrap();
    assert_eq!((state.read, state.unread), (2, 1));
    assert_eq!(
        n.a.list(&bob, ListQuery::default()).await.unwrap()[0].unread,
        1
    );
    assert_eq!(n.a.cursor(&bob, &phone, &c).await.unwrap().read, 2);
    assert_eq!(n.a.cursor(&bob, &laptop, &c).await.unwrap().read, 1);
    let state = n.a.mark_read(&bob, &laptop, &c, 4).await.unwrap();
    assert_eq!((state.read, state.unread), (4, 0));
    assert_eq!(
        n.b.list(&bob, ListQuery::default()).await.unwrap()[0].unread,
        0
    );
}

async fn direct_conversations_belong_to_their_pair_only(n: Nodes) {
    let (alice, bob, carol) = (user("alice"), user("bob"), user("carol"));
    let group = RoomId::new("g").unwrap();
    n.a.append(&text(&alice, To::User(bob.clone()), "psst"))
        .await
        .unwrap();
    let whisper = Envelope::builder(
        bob.clone(),
        To::UserInRoom {
            user: alice.clone(),
            room: group.clone(),
        },
    )
    .body("in the group")
    .build();
    let sent = n.b.append(&whisper).await.unwrap();
    let dm = ConversationId::direct(&alice, &bob);
    assert_eq!((sent.conversation.clone(), sent.seq), (dm.clone(), 2));
    for who in [&alice, &bob] {
        let list = n.a.list(who, ListQuery::default()).await.unwrap();
        assert_eq!(
            list.iter().map(|s| &s.conversation).collect::<Vec<_>>(),
            [&dm]
        );
    }
    let page = n.a.read(&dm, &bob, LogQuery::last(10)).await.unwrap();
    let Event::Message(env) = &page.entries[1].event else {
        panic!()
    };
    assert_eq!(
        env.to,
        To::UserInRoom {
            user: alice.clone(),
            room: group
        },
        "the group tag is kept"
    );
    assert!(matches!(
        n.a.read(&dm, &carol, LogQuery::last(10)).await,
        Err(Error::NotMember { .. })
    ));
    assert!(matches!(
        n.a.mark_read(&carol, &device("x"), &dm, 1).await,
        Err(Error::NotMember { .. })
    ));
    assert!(
        n.a.list(&carol, ListQuery::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(n.a.members(&dm, None, 10).await.unwrap(), [alice, bob]);
}

async fn edits_deletes_and_reactions_fold_into_history_and_travel_live(n: Nodes) {
    let (alice, bob) = (user("alice"), user("bob"));
    let (r, c) = room(&n.a, "events", &[&alice, &bob]).await;
    let mut feed = n.b.feed(&bob);
    feed.watch(&c, 0).await.unwrap();
    n.a.append(&text(&alice, To::Room(r.clone()), "helo"))
        .await
        .unwrap();
    n.a.append(&text(&bob, To::Room(r.clone()), "second"))
        .await
        .unwrap();

    let err = n.a.edit(&c, &bob, 1, b"hijack".to_vec()).await.unwrap_err();
    assert!(matches!(err, Error::NotSender { seq: 1, .. }), "{err}");
    assert_eq!(
        n.a.edit(&c, &alice, 1, b"hello".to_vec())
            .await
            .unwrap()
            .seq,
        3
    );
    let (sent, now) = n.b.react(&c, &bob, 1, "👍").await.unwrap();
    assert_eq!((sent.seq, now.as_deref()), (4, Some("👍")));
    n.a.react(&c, &alice, 1, "👍").await.unwrap();
    let (_, now) = n.a.react(&c, &alice, 1, "👍").await.unwrap(); // toggled off
    assert_eq!(now, None);
    n.a.react(&c, &alice, 1, "🎉").await.unwrap();
    n.b.delete_message(&c, &bob, 2).await.unwrap();

    let history = n.b.messages(&c, &bob, LogQuery::last(50)).await.unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].body(), b"hello");
    assert_eq!(history[0].edited.as_ref().map(|e| e.seq), Some(3));
    assert_eq!(
        history[0]
            .reactions
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect::<Vec<_>>(),
        [("🎉", 1), ("👍", 1)]
    );
    assert!(history[1].deleted.is_some());
    assert!(
        history[1].body().is_empty() && history[1].envelope.body.is_empty(),
        "redacted in the store"
    );

    // The log carries every event, in order, live as in history.
    let mut live = Vec::new();
    for _ in 0..8 {
        live.push(next_entry(&mut feed).await);
    }
    assert_eq!(
        live.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    assert!(matches!(live[2].event, Event::Edit { target: 1, .. }));
    assert!(
        matches!(&live[3].event, Event::React { target: 1, reaction: Some(r), .. } if r == "👍")
    );
    assert!(matches!(live[5].event, Event::React { reaction: None, .. }));
    assert!(matches!(live[7].event, Event::Delete { target: 2, .. }));

    // Events on what cannot take them change nothing.
    let head = n.a.read(&c, &alice, LogQuery::last(1)).await.unwrap().head;
    let refused = [
        n.a.edit(&c, &bob, 2, b"x".to_vec()).await.unwrap_err(),
        n.a.react(&c, &alice, 2, "👍").await.unwrap_err(),
        n.a.react(&c, &alice, 99, "👍").await.unwrap_err(),
        n.a.react(&c, &alice, 3, "👍").await.unwrap_err(), // an event, not a message
        n.a.react(&c, &alice, 1, &"x".repeat(65)).await.unwrap_err(),
        n.a.react(&c, &alice, 1, "").await.unwrap_err(),
        n.a.react(&c, &alice, 1, "a\u{7}").await.unwrap_err(),
        n.a.delete_message(&c, &alice, 2).await.unwrap_err(),
    ];
    assert!(
        matches!(refused[0], Error::MessageDeleted { seq: 2, .. }),
        "{}",
        refused[0]
    );
    assert!(matches!(refused[1], Error::MessageDeleted { .. }));
    assert!(
        matches!(refused[2], Error::NoSuchMessage { seq: 99, .. }),
        "{}",
        refused[2]
    );
    assert!(matches!(refused[3], Error::NoSuchMessage { seq: 3, .. }));
    for e in &refused[4..7] {
        assert!(matches!(e, Error::InvalidReaction { .. }), "{e}");
    }
    assert!(
        refused[4]
            .to_string()
            .contains("65 bytes exceeds the 64-byte limit")
    );
    assert!(matches!(refused[7], Error::MessageDeleted { .. }));
    assert_eq!(
        n.a.read(&c, &alice, LogQuery::last(1)).await.unwrap().head,
        head
    );

    // A delete erases the body from every entry that held it: the message
    // and each of its edits.
    n.a.edit(&c, &alice, 1, b"hello, again".to_vec())
        .await
        .unwrap();
    n.b.delete_message(&c, &alice, 1).await.unwrap();
    let log = n.b.read(&c, &bob, LogQuery::after(0, 100)).await.unwrap();
    let edits: Vec<_> = log
        .entries
        .iter()
        .filter_map(|e| match &e.event {
            Event::Edit { body, .. } => Some(body.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(edits, [Vec::<u8>::new(), Vec::new()], "both edits erased");
    assert!(matches!(&log.entries[0].event, Event::Message(m) if m.body.is_empty()));
}

async fn bad_input_gets_typed_errors_and_changes_nothing(n: Nodes) {
    let (alice, bob, eve) = (user("alice"), user("bob"), user("eve"));
    let (r, c) = room(&n.a, "strict", &[&alice, &bob]).await;
    n.a.append(&text(&alice, To::Room(r.clone()), "one"))
        .await
        .unwrap();
    let nowhere = RoomId::new("nowhere").unwrap();
    let err =
        n.a.append(&text(&alice, To::Room(nowhere.clone()), "x"))
            .await
            .unwrap_err();
    assert_eq!(err.to_string(), "conversation r:nowhere does not exist");
    let err =
        n.a.append(&text(&eve, To::Room(r.clone()), "x"))
            .await
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "user eve is not a member of conversation r:strict"
    );
    let err =
        n.a.read(&c, &alice, LogQuery::after(5, 10))
            .await
            .unwrap_err();
    assert_eq!(
        err.to_string(),
        "seq 5 is beyond the head 1 of conversation r:strict"
    );
    let err = n.a.mark_read(&bob, &device("p"), &c, 2).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::BeyondHead {
                seq: 2,
                head: 1,
                ..
            }
        ),
        "{err}"
    );
    let err =
        n.a.read(&c, &alice, LogQuery::last(1001))
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            Error::HistoryTooLarge {
                requested: 1001,
                limit: 1000
            }
        ),
        "{err}"
    );
    let big = Envelope::new(
        alice.clone(),
        To::Room(r.clone()),
        vec![b'x'; 64 * 1024 + 1],
    );
    assert!(matches!(
        n.a.append(&big).await,
        Err(Error::BodyTooLarge { .. })
    ));
    let err =
        n.a.append(&text(&alice, To::Everyone, "x"))
            .await
            .unwrap_err();
    assert!(matches!(err, Error::InvalidEnvelope { .. }), "{err}");
    let err =
        n.a.edit(&c, &alice, 1, vec![b'x'; 64 * 1024 + 1])
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            Error::BodyTooLarge {
                size: 65537,
                limit: 65536
            }
        ),
        "an oversized edit: {err}"
    );
    let mut feed = n.b.feed(&eve);
    assert!(matches!(
        feed.watch(&c, 0).await,
        Err(Error::NotMember { .. })
    ));
    let mut feed = n.b.feed(&bob);
    assert!(matches!(
        feed.watch(&c, 7).await,
        Err(Error::BeyondHead { .. })
    ));
    // Nothing changed.
    let page = n.b.read(&c, &bob, LogQuery::after(0, 10)).await.unwrap();
    assert_eq!((page.head, page.entries.len()), (1, 1));
    assert_eq!(
        n.b.list(&bob, ListQuery::default()).await.unwrap()[0].read,
        0
    );
    assert!(
        n.a.read(&ConversationId::room(nowhere), &alice, LogQuery::last(1))
            .await
            .is_err()
    );
}

async fn retention_trims_and_readers_are_told(n: Nodes) {
    let alice = user("alice");
    let r = RoomId::new("short").unwrap();
    n.a.create_room(&r, Retention::Last(10)).await.unwrap();
    n.a.join(&r, &alice).await.unwrap();
    let c = ConversationId::room(r.clone());
    let mut behind = n.b.feed(&alice);
    behind.watch(&c, 0).await.unwrap();
    for i in 1..=130 {
        n.a.append(&text(&alice, To::Room(r.clone()), &format!("m{i}")))
            .await
            .unwrap();
    }
    // Trimmed at seq 128: the newest 10 then were 119..=128.
    let page = n.b.read(&c, &alice, LogQuery::last(1000)).await.unwrap();
    assert_eq!((page.first, page.head), (119, 130));
    assert_eq!(page.entries.len(), 12);
    let err =
        n.b.read(&c, &alice, LogQuery::after(5, 10))
            .await
            .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Trimmed {
                after: 5,
                first: 119,
                ..
            }
        ),
        "{err}"
    );
    // A feed that fell behind hears of it, then goes on from the first kept
    // (it may first yield what it read before the trims).
    let mut told = false;
    let mut last = 0;
    while last < 130 {
        match tokio::time::timeout(ARRIVE, behind.next())
            .await
            .expect("feed")
            .unwrap()
        {
            FeedItem::Trimmed { first, .. } => {
                told = true;
                last = first - 1;
            }
            FeedItem::Entry(e) => {
                assert_eq!(e.seq, last + 1, "in order, no gap except the trimmed one");
                last = e.seq;
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(told, "the feed was told of the trim");
    // Unread counts still hold after trimming.
    let s = &n.b.list(&alice, ListQuery::default()).await.unwrap()[0];
    assert_eq!((s.head, s.unread), (130, 0));
}

async fn lists_page_and_members_leave(n: Nodes) {
    let (alice, bob) = (user("alice"), user("bob"));
    for name in ["r1", "r2", "r3", "r4", "r5"] {
        room(&n.a, name, &[&alice, &bob]).await;
    }
    let first = n.b.list(&alice, ListQuery::first(2)).await.unwrap();
    let rest =
        n.b.list(&alice, ListQuery::after(first[1].conversation.clone(), 10))
            .await
            .unwrap();
    let all: Vec<_> = first
        .iter()
        .chain(&rest)
        .map(|s| s.conversation.key())
        .collect();
    assert_eq!(all, ["r:r1", "r:r2", "r:r3", "r:r4", "r:r5"]);
    let r3 = RoomId::new("r3").unwrap();
    let c3 = ConversationId::room(r3.clone());
    assert_eq!(
        n.a.members(&c3, None, 10).await.unwrap(),
        [alice.clone(), bob.clone()]
    );
    n.a.leave(&r3, &bob).await.unwrap();
    n.a.leave(&r3, &bob).await.unwrap(); // idempotent
    assert_eq!(
        n.a.members(&c3, None, 10).await.unwrap(),
        std::slice::from_ref(&alice)
    );
    assert!(!n.b.is_member(&c3, &bob).await.unwrap());
    assert_eq!(n.b.list(&bob, ListQuery::default()).await.unwrap().len(), 4);
    assert!(matches!(
        n.a.append(&text(&bob, To::Room(r3), "x")).await,
        Err(Error::NotMember { .. })
    ));
}

async fn run<F, Fut>(shape: Shape, test: F)
where
    F: FnOnce(Nodes) -> Fut,
    Fut: Future<Output = ()>,
{
    use futures_util::FutureExt;
    let nodes = Nodes::new(shape).await;
    let brokers = nodes.amqp.clone();
    let outcome = std::panic::AssertUnwindSafe(test(nodes))
        .catch_unwind()
        .await;
    if let Some(first) = brokers.first() {
        let _ = first.delete_namespace().await;
    }
    for broker in &brokers {
        broker.close().await;
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

macro_rules! conformance {
    ($shape:ident, $kind:expr) => {
        mod $shape {
            use super::*;
            conformance!(@tests $kind;
                seqs_are_gapless_under_concurrent_appends_on_two_nodes,
                live_entries_reach_each_watcher_once_on_the_other_node,
                a_device_catches_up_from_its_cursor_then_follows_live,
                push_feeds_deliver_each_seq_once_through_catch_up_live_and_gaps,
                unread_counts_follow_reads_on_any_device,
                direct_conversations_belong_to_their_pair_only,
                edits_deletes_and_reactions_fold_into_history_and_travel_live,
                bad_input_gets_typed_errors_and_changes_nothing,
                retention_trims_and_readers_are_told,
                lists_page_and_members_leave,
            );
        }
    };
    (@tests $kind:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                tokio::time::timeout(Duration::from_secs(120), run($kind, super::$name))
                    .await
                    .expect("the case finished within 120 s");
            }
        )*

        /// Every case of this file is in the list above: one left out fails here.
        #[test]
        fn case_list_is_complete() {
            testkit::cases::assert_all_listed(
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/conversations.rs")),
                "Nodes",
                &[$(stringify!($name)),*],
            );
        }
    };
}

conformance!(local, Shape::Local);
conformance!(amqp, Shape::Amqp);

/// The edit limit keeps the work of a delete bounded; past it an edit is
/// refused and changes nothing.
#[tokio::test]
async fn edits_past_the_limit_are_refused() {
    let store = nopi::open("memory:").await.unwrap();
    let log = Conversations::builder(&store)
        .max_edits(2)
        .build()
        .await
        .unwrap();
    let alice = user("alice");
    let (r, c) = room(&log, "edits", &[&alice]).await;
    log.append(&text(&alice, To::Room(r), "v0")).await.unwrap();
    log.edit(&c, &alice, 1, b"v1".to_vec()).await.unwrap();
    log.edit(&c, &alice, 1, b"v2".to_vec()).await.unwrap();
    let err = log.edit(&c, &alice, 1, b"v3".to_vec()).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::TooManyEdits {
                seq: 1,
                limit: 2,
                ..
            }
        ),
        "{err}"
    );
    let folded = log
        .messages(&c, &alice, LogQuery::after(0, 10))
        .await
        .unwrap();
    assert_eq!(folded.len(), 1);
    assert_eq!(folded[0].body(), b"v2");
    assert_eq!(
        log.read(&c, &alice, LogQuery::last(1)).await.unwrap().head,
        3
    );
    assert!(matches!(
        Conversations::builder(&store).max_edits(0).build().await,
        Err(Error::InvalidConfig {
            setting: "max_edits",
            ..
        })
    ));
}

/// Trimming a message removes its reactions from the store too.
#[tokio::test]
async fn trimmed_messages_leave_no_reactions_behind() {
    let store = nopi::open("memory:").await.unwrap();
    let log = Conversations::builder(&store).build().await.unwrap();
    let (alice, bob) = (user("alice"), user("bob"));
    let (r, c) = room(&log, "trim", &[&alice, &bob]).await;
    log.append(&text(&alice, To::Room(r.clone()), "old"))
        .await
        .unwrap();
    log.react(&c, &alice, 1, "👍").await.unwrap();
    log.react(&c, &bob, 1, "🎉").await.unwrap();
    log.append(&text(&alice, To::Room(r.clone()), "new"))
        .await
        .unwrap();
    log.react(&c, &bob, 4, "👍").await.unwrap();
    log.set_retention(&c, Retention::Last(2)).await.unwrap();
    assert_eq!(log.trim(&c).await.unwrap(), 3);
    let tree = store.tree("rmq.log").await.unwrap();
    let left = tree
        .scan(nopi::Scan::prefix(format!("x/{c}/")).limit(100))
        .await
        .unwrap();
    assert_eq!(
        left.len(),
        1,
        "only the reaction to the kept message is left"
    );
    let kept = log.messages(&c, &bob, LogQuery::last(10)).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].reactions.get("👍"), Some(&1));
}

/// A feed watches at most `max_watched` conversations, push feeds too.
#[tokio::test]
async fn feeds_watch_at_most_the_limit() {
    let store = nopi::open("memory:").await.unwrap();
    let log = Conversations::builder(&store)
        .max_watched(2)
        .build()
        .await
        .unwrap();
    let alice = user("alice");
    let mut rooms = Vec::new();
    for name in ["w1", "w2", "w3"] {
        rooms.push(room(&log, name, &[&alice]).await.1);
    }
    let mut feed = log.feed(&alice);
    let push = log.push_feed(&alice, Collect::new(usize::MAX));
    for c in &rooms[..2] {
        feed.watch(c, 0).await.unwrap();
        push.watch(c, 0).await.unwrap();
        feed.watch(c, 0).await.unwrap(); // again: no change, no refusal
    }
    for err in [
        feed.watch(&rooms[2], 0).await.unwrap_err(),
        push.watch(&rooms[2], 0).await.unwrap_err(),
    ] {
        assert!(
            matches!(err, Error::TooManyWatched { limit: 2, .. }),
            "{err}"
        );
    }
    assert_eq!(feed.positions().count(), 2);
    assert_eq!(push.positions().len(), 2);
    feed.unwatch(&rooms[0]);
    feed.watch(&rooms[2], 0).await.unwrap();
}
