//! What a user of tiny_q checks: the catalog, push and pop, leases, waiting,
//! limits, restarts and group commit.

mod support;

use std::sync::Arc;
use std::time::Duration;

use nopi::testing::Ops;
use serde::{Deserialize, Serialize};
use support::{faulty_store, memory, options, sled};
use tiny_q::{Durability, Error, Overflow, Position, QueueOptions, Queues};

fn bytes(items: &[&str]) -> Vec<Vec<u8>> {
    items.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[tokio::test]
async fn catalog_create_open_list_destroy() {
    let queues = memory().await;
    assert!(queues.list().await.unwrap().is_empty());
    let b = queues.create("b", QueueOptions::default()).await.unwrap();
    queues
        .create("a", options(3, Overflow::DropOldest))
        .await
        .unwrap();
    assert_eq!(queues.list().await.unwrap(), ["a", "b"]);

    let again = queues
        .create("a", QueueOptions::default())
        .await
        .unwrap_err();
    assert!(
        matches!(again, Error::AlreadyExists { ref queue } if queue == "a"),
        "{again}"
    );
    let a = queues.open("a").await.unwrap();
    assert_eq!(
        a.options().capacity(),
        3,
        "options are stored with the queue"
    );
    let a2 = queues
        .open_or_create("a", QueueOptions::default())
        .await
        .unwrap();
    assert_eq!(a2.options().overflow(), Overflow::DropOldest);
    let missing = queues.open("nope").await.unwrap_err();
    assert_eq!(missing.to_string(), r#"no queue named "nope""#);

    b.push("x").await.unwrap();
    assert!(queues.destroy("b").await.unwrap());
    assert!(
        !queues.destroy("b").await.unwrap(),
        "destroying twice is false"
    );
    assert_eq!(queues.list().await.unwrap(), ["a"]);
    let err = b.push("y").await.unwrap_err();
    assert_eq!(err.to_string(), r#"queue "b" was destroyed"#);
    assert!(matches!(b.pop().await, Err(Error::Destroyed { .. })));
    assert!(matches!(b.len().await, Err(Error::Destroyed { .. })));

    let reborn = queues.create("b", QueueOptions::default()).await.unwrap();
    assert_eq!(
        reborn.len().await.unwrap(),
        0,
        "a re-created queue starts empty"
    );
    assert!(
        matches!(b.pop().await, Err(Error::Destroyed { .. })),
        "old handles stay dead"
    );
}

#[tokio::test]
async fn bad_names_and_sizes_are_typed_errors() {
    let queues = memory().await;
    for name in ["", &"x".repeat(201), "tab\there"] {
        let err = queues
            .create(name, QueueOptions::default())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }), "{name:?}: {err}");
        assert!(matches!(
            queues.open(name).await,
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            queues.destroy(name).await,
            Err(Error::InvalidName { .. })
        ));
    }

    let store = nopi::open("memory:").await.unwrap();
    let small = Queues::builder(&store)
        .max_item_size(8)
        .build()
        .await
        .unwrap();
    let q = small
        .create("q", options(10, Overflow::Reject))
        .await
        .unwrap();
    q.push("12345678").await.unwrap();
    let err = q.push("123456789").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"item of 9 bytes for queue "q" exceeds the 8-byte limit"#
    );
    let err = q.push_batch(["ok", "123456789"]).await.unwrap_err();
    assert!(matches!(err, Error::ItemTooLarge { size: 9, .. }));
    assert_eq!(q.len().await.unwrap(), 1, "a refused batch writes nothing");

    let typed = q.typed::<String>();
    let err = typed.push(&"a long string".to_owned()).await.unwrap_err();
    assert!(matches!(err, Error::ItemTooLarge { size: 15, .. }), "{err}");

    let err = Queues::builder(&store)
        .max_item_size(0)
        .build()
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        Error::InvalidOption {
            option: "max item size",
            ..
        }
    ));
    let err = Queues::builder(&store)
        .max_item_size(16 << 20)
        .build()
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("invalid max item size: expected 1 to 16777211 bytes"),
        "{err}"
    );

    let limited = Queues::builder(&store)
        .tree("limited")
        .max_batch_items(2)
        .build()
        .await
        .unwrap();
    let q = limited.create("q", QueueOptions::default()).await.unwrap();
    let err = q.push_batch(["a", "b", "c"]).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"batch of 3 items for queue "q" exceeds the 2-item limit"#
    );
}

#[tokio::test]
async fn push_pop_peek_are_fifo() {
    let queues = memory().await;
    let q = queues
        .create("q", options(100, Overflow::Reject))
        .await
        .unwrap();
    assert_eq!(q.pop().await.unwrap(), None);
    assert_eq!(q.push("a").await.unwrap(), Position::new(0));
    let positions = q.push_batch(["b", "c", "d"]).await.unwrap();
    assert_eq!(
        positions,
        [Position::new(1), Position::new(2), Position::new(3)]
    );
    assert!(
        q.push_batch(Vec::<Vec<u8>>::new())
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.peek(2).await.unwrap(), bytes(&["a", "b"]));
    assert_eq!(q.peek(10).await.unwrap(), bytes(&["a", "b", "c", "d"]));
    assert_eq!(q.len().await.unwrap(), 4);
    assert_eq!(q.pop().await.unwrap().unwrap(), b"a");
    assert_eq!(q.pop().await.unwrap().unwrap(), b"b");
    q.push("e").await.unwrap();
    assert_eq!(q.peek(10).await.unwrap(), bytes(&["c", "d", "e"]));
    let handle = queues.open("q").await.unwrap();
    assert_eq!(
        handle.pop().await.unwrap().unwrap(),
        b"c",
        "handles share the queue"
    );
    assert_eq!(q.len().await.unwrap(), 2);
}

#[tokio::test]
async fn capacity_reject_or_drop_oldest() {
    let queues = memory().await;
    let strict = queues
        .create("strict", options(2, Overflow::Reject))
        .await
        .unwrap();
    strict.push_batch(["1", "2"]).await.unwrap();
    let err = strict.push("3").await.unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"queue "strict" is full: 2 of 2 items stored, cannot add 1"#
    );
    assert_eq!(strict.peek(5).await.unwrap(), bytes(&["1", "2"]));

    let ring = queues
        .create("ring", options(3, Overflow::DropOldest))
        .await
        .unwrap();
    ring.push_batch(["1", "2", "3"]).await.unwrap();
    let leased = ring.lease().await.unwrap().unwrap();
    assert_eq!(leased.item(), b"1");
    ring.push("4").await.unwrap();
    ring.push_batch(["5", "6"]).await.unwrap();
    assert_eq!(ring.peek(10).await.unwrap(), bytes(&["4", "5", "6"]));
    assert_eq!(ring.len().await.unwrap(), 3);
    assert!(
        !leased.ack().await.unwrap(),
        "the leased item was dropped as the oldest"
    );
    let err = ring.push_batch(["a", "b", "c", "d"]).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::Full {
                adding: 4,
                capacity: 3,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn leases_are_acked_released_and_counted() {
    let queues = memory().await;
    let q = queues
        .create("q", options(10, Overflow::Reject))
        .await
        .unwrap();
    q.push_batch(["a", "b", "c"]).await.unwrap();
    let a = q.lease().await.unwrap().unwrap();
    let b = q.lease().await.unwrap().unwrap();
    assert_eq!(
        (a.item().as_slice(), b.item().as_slice()),
        (&b"a"[..], &b"b"[..])
    );
    assert_eq!(q.in_flight().await.unwrap(), 2);
    assert_eq!(q.len().await.unwrap(), 3, "leased items count until acked");
    assert_eq!(q.peek(10).await.unwrap(), bytes(&["c"]));
    assert_eq!(
        q.pop().await.unwrap().unwrap(),
        b"c",
        "pop skips leased items"
    );

    assert!(a.release().await.unwrap());
    assert!(!a.release().await.unwrap());
    assert_eq!(q.peek(10).await.unwrap(), bytes(&["a"]));
    assert!(b.ack().await.unwrap());
    assert!(!b.ack().await.unwrap(), "a second ack is a no-op");
    assert!(!q.ack(b.position()).await.unwrap());
    let again = q.lease().await.unwrap().unwrap();
    assert_eq!(again.item(), b"a", "a released item comes back first");
    assert!(again.ack().await.unwrap());
    assert!(q.is_empty().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn an_expired_lease_is_handed_out_again_in_order() {
    let queues = memory().await;
    let opts = QueueOptions::builder()
        .lease_timeout(Duration::from_secs(10))
        .durability(Durability::Buffered)
        .build()
        .unwrap();
    let q = queues.create("q", opts).await.unwrap();
    q.push_batch(["a", "b"]).await.unwrap();
    let first = q.lease().await.unwrap().unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    let second = q.lease().await.unwrap().unwrap();
    assert_eq!(second.item(), b"b");
    assert!(q.lease().await.unwrap().is_none());

    // lease_wait sleeps until the first lease expires, then gets "a" again.
    let again = q
        .lease_wait(Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again.item(), b"a");
    assert_eq!(again.position(), first.position());
    assert!(
        !first.release().await.unwrap(),
        "the expired lease no longer holds it"
    );
    assert!(
        first.ack().await.unwrap(),
        "a late ack still removes the item"
    );
    assert!(!again.ack().await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn pop_wait_wakes_on_push_and_times_out() {
    let queues = memory().await;
    let q = queues
        .create("q", options(10, Overflow::Reject))
        .await
        .unwrap();
    assert_eq!(q.pop_wait(Duration::from_millis(50)).await.unwrap(), None);

    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.pop_wait(Duration::from_secs(3600)).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pusher = queues.open("q").await.unwrap();
    pusher.push("hello").await.unwrap();
    // Time is paused: had the push not woken it, the waiter would have slept
    // the whole hour (auto-advanced) and returned None.
    let got = waiter.await.unwrap().unwrap();
    assert_eq!(got.as_deref(), Some(&b"hello"[..]));
}

#[tokio::test(start_paused = true)]
async fn destroy_wakes_waiters_with_an_error() {
    let queues = memory().await;
    let q = queues
        .create("q", options(10, Overflow::Reject))
        .await
        .unwrap();
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.lease_wait(Duration::from_secs(3600)).await })
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    queues.destroy("q").await.unwrap();
    assert!(matches!(
        waiter.await.unwrap(),
        Err(Error::Destroyed { .. })
    ));
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Envelope {
    id: u32,
    body: String,
}

#[tokio::test]
async fn typed_items_round_trip_and_bad_ones_stay_until_discarded() {
    let queues = memory().await;
    let raw = queues
        .create("q", options(10, Overflow::Reject))
        .await
        .unwrap();
    let typed = raw.typed::<Envelope>();
    let e = |id| Envelope {
        id,
        body: format!("m{id}"),
    };
    typed.push(&e(1)).await.unwrap();
    raw.push("not json").await.unwrap();
    typed.push_batch(&[e(3), e(4)]).await.unwrap();

    assert_eq!(typed.pop().await.unwrap(), Some(e(1)));
    let err = typed.pop().await.unwrap_err();
    assert!(
        err.to_string()
            .starts_with(r#"item at position 1 of queue "q" does not decode"#),
        "{err}"
    );
    assert!(
        typed.lease().await.is_err(),
        "the bad item blocks the queue"
    );
    assert!(typed.peek(3).await.is_err());
    assert_eq!(typed.len().await.unwrap(), 3, "nothing was lost");
    assert!(raw.discard(err.position().unwrap()).await.unwrap());

    assert_eq!(typed.peek(5).await.unwrap(), [e(3), e(4)]);
    let lease = typed.lease().await.unwrap().unwrap();
    assert_eq!(lease.item(), &e(3));
    lease.ack().await.unwrap();
    assert_eq!(
        typed.pop_wait(Duration::from_secs(1)).await.unwrap(),
        Some(e(4))
    );
}

#[tokio::test]
async fn items_and_unacked_leases_survive_a_restart_in_order() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (_store, queues) = sled(dir.path()).await;
        let q = queues
            .create("inbox", QueueOptions::default())
            .await
            .unwrap();
        q.push_batch(["1", "2", "3", "4", "5"]).await.unwrap();
        assert_eq!(q.pop().await.unwrap().unwrap(), b"1");
        let two = q.lease().await.unwrap().unwrap();
        let three = q.lease().await.unwrap().unwrap();
        assert!(three.ack().await.unwrap());
        let _four = q.lease().await.unwrap().unwrap();
        assert_eq!(two.item(), b"2");
        queues.flush().await.unwrap();
        let other = queues
            .create("other", options(5, Overflow::DropOldest))
            .await
            .unwrap();
        other.push("x").await.unwrap();
        queues
            .create("gone", QueueOptions::default())
            .await
            .unwrap()
            .push("y")
            .await
            .unwrap();
        queues.destroy("gone").await.unwrap();
        queues.flush().await.unwrap();
    }
    let (_store, queues) = sled(dir.path()).await;
    assert_eq!(queues.list().await.unwrap(), ["inbox", "other"]);
    let q = queues.open("inbox").await.unwrap();
    assert_eq!(q.len().await.unwrap(), 3);
    assert_eq!(
        q.peek(10).await.unwrap(),
        bytes(&["2", "4", "5"]),
        "unacked leases come back in place"
    );
    let other = queues.open("other").await.unwrap();
    assert_eq!(other.options().capacity(), 5);
    assert_eq!(other.pop().await.unwrap().unwrap(), b"x");
    q.push("6").await.unwrap();
    assert_eq!(q.peek(10).await.unwrap(), bytes(&["2", "4", "5", "6"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_durable_pushes_share_flushes() {
    let (store, faults) = faulty_store(Duration::from_millis(20));
    let queues = Queues::new(&store).await.unwrap();
    let q = queues.create("q", QueueOptions::default()).await.unwrap();
    let before = faults.count(Ops::FLUSH);
    let producers = 64;
    let per_producer = 5;
    let mut tasks = Vec::new();
    for p in 0..producers {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_producer {
                q.push(format!("{p}-{i}")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let flushes = faults.count(Ops::FLUSH) - before;
    let pushes = producers * per_producer;
    assert_eq!(q.len().await.unwrap(), pushes);
    // Each producer waits for its flush before its next push, so at least
    // `per_producer` flushes happen; without group commit there would be 320.
    assert!(flushes >= per_producer, "{flushes} flushes");
    assert!(
        flushes * 8 <= pushes,
        "{flushes} flushes for {pushes} durable pushes"
    );
}

#[tokio::test]
async fn buffered_pushes_never_flush_and_a_failed_flush_is_reported() {
    let (store, faults) = faulty_store(Duration::ZERO);
    let queues = Queues::new(&store).await.unwrap();
    let buffered = queues
        .create("b", options(10, Overflow::Reject))
        .await
        .unwrap();
    let durable = queues.create("d", QueueOptions::default()).await.unwrap();
    buffered.push_batch(["1", "2"]).await.unwrap();
    buffered.push("3").await.unwrap();
    assert_eq!(faults.count(Ops::FLUSH), 0);
    durable.push("x").await.unwrap();
    assert_eq!(faults.count(Ops::FLUSH), 1);

    faults.fail(Ops::FLUSH);
    let err = durable.push("y").await.unwrap_err();
    assert!(matches!(err, Error::Flush { .. }), "{err}");
    assert!(err.is_unavailable());
    assert!(
        err.to_string()
            .starts_with(r#"durability flush of queue tree "tiny_q" failed"#),
        "{err}"
    );
    assert!(queues.flush().await.is_err());
    faults.heal();
    queues.flush().await.unwrap();
    assert_eq!(
        durable.peek(5).await.unwrap(),
        bytes(&["x", "y"]),
        "the item was written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_producers_one_consumer_lose_nothing() {
    let queues = memory().await;
    let q = queues
        .create("inbox", options(100_000, Overflow::Reject))
        .await
        .unwrap();
    let producers = 8u32;
    let per_producer = 200u32;
    let consumer = {
        let q = q.clone();
        tokio::spawn(async move {
            let mut got = Vec::new();
            while got.len() < (producers * per_producer) as usize {
                let lease = q
                    .lease_wait(Duration::from_secs(30))
                    .await
                    .unwrap()
                    .expect("an item in time");
                let text = String::from_utf8(lease.item().clone()).unwrap();
                assert!(lease.ack().await.unwrap());
                got.push(text);
            }
            got
        })
    };
    let mut tasks = Vec::new();
    for p in 0..producers {
        let q = q.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..per_producer {
                q.push(format!("{p}:{i}")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let got = consumer.await.unwrap();
    for p in 0..producers {
        let mine: Vec<u32> = got
            .iter()
            .filter_map(|s| s.split_once(':'))
            .filter(|(who, _)| *who == p.to_string())
            .map(|(_, i)| i.parse().unwrap())
            .collect();
        assert_eq!(
            mine,
            (0..per_producer).collect::<Vec<_>>(),
            "producer {p} in order, once each"
        );
    }
    assert!(q.is_empty().await.unwrap());
}

#[tokio::test]
async fn a_tree_with_foreign_data_is_refused() {
    let store = nopi::open("memory:").await.unwrap();
    store
        .tree("mine")
        .await
        .unwrap()
        .insert("k", "v")
        .await
        .unwrap();
    let err = Queues::builder(&store)
        .tree("mine")
        .build()
        .await
        .unwrap_err();
    assert!(matches!(err, Error::UnsupportedLayout { .. }), "{err}");
    // Queues in different trees are independent.
    let a = Queues::builder(&store).tree("qa").build().await.unwrap();
    let b = Queues::builder(&store).tree("qb").build().await.unwrap();
    a.create("x", QueueOptions::default()).await.unwrap();
    assert!(b.list().await.unwrap().is_empty());
    assert_eq!(a.tree_name(), "qa");
}

#[test]
fn handles_are_send_sync_and_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<Queues>();
    check::<tiny_q::Queue>();
    check::<tiny_q::TypedQueue<Envelope>>();
    fn send_sync<T: Send + Sync>() {}
    send_sync::<tiny_q::Lease>();
    send_sync::<Arc<Error>>();
}
