//! Conversation logs, each figure against a baseline measured in the same run:
//!
//! - appending to a room of 100,000 members against a room of 10, and the
//!   stored bytes per message of each;
//! - reading 1,000 entries after a cursor against a plain nopi range scan of
//!   the same keys and values on the same sled database;
//! - unread counts of a user in 1,000 conversations (one `list` call);
//! - with `DATABASE_URL` set, the catch-up again on PostgreSQL (the
//!   cluster's store), against one nopi range query there.
//!
//! `cargo bench -p rmq_core --bench conversations`
#![expect(clippy::print_stdout, reason = "a bench prints its results")]
#![expect(
    clippy::unwrap_used,
    reason = "bench code: a failed unwrap stops the run, which is what it should do"
)]

use std::time::{Duration, Instant};

use nopi::{Scan, Store};
use rmq_core::conversation::{Conversations, ListQuery, LogQuery, Retention};
use rmq_core::{ConversationId, Envelope, RoomId, To, UserId};

fn user(i: usize) -> UserId {
    UserId::new(format!("u{i}")).unwrap()
}

async fn room_with(log: &Conversations, name: &str, members: usize) -> RoomId {
    let room = RoomId::new(name).unwrap();
    log.create_room(&room, Retention::All).await.unwrap();
    for i in 0..members {
        log.join(&room, &user(i)).await.unwrap();
    }
    room
}

/// Median time of one append, over `n` appends.
async fn append_median(log: &Conversations, room: &RoomId, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for k in 0..n {
        let env = Envelope::new(
            user(0),
            To::Room(room.clone()),
            format!("message {k:06} of the benchmark"),
        );
        let t = Instant::now();
        log.append(&env).await.unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    times[n / 2]
}

async fn entry_bytes(store: &Store, c: &ConversationId) -> usize {
    let tree = store.tree("rmq.log").await.unwrap();
    let rows = tree
        .scan(Scan::prefix(format!("e/{c}/")).limit(1_000_000))
        .await
        .unwrap();
    rows.iter().map(|(k, v)| k.len() + v.len()).sum()
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = nopi::open(&format!("sled:{}", dir.path().join("db").display()))
            .await
            .unwrap();
        // Setup without waiting for flushes; the measured appends are durable.
        let setup = Conversations::builder(&store).durable(false).build().await.unwrap();
        let t = Instant::now();
        let big = room_with(&setup, "big", 100_000).await;
        println!("setup: 100,000 joins in {:.1} s", t.elapsed().as_secs_f64());
        let small = room_with(&setup, "small", 10).await;
        store.flush().await.unwrap();
        let log = Conversations::builder(&store).build().await.unwrap();

        // 1. Append latency and bytes per message, 100,000 members against 10.
        let n = 400;
        let mut small_t = Vec::new();
        let mut big_t = Vec::new();
        for _ in 0..3 {
            small_t.push(append_median(&log, &small, n).await);
            big_t.push(append_median(&log, &big, n).await);
        }
        let (small_t, big_t) = (*small_t.iter().min().unwrap(), *big_t.iter().min().unwrap());
        let (cs, cb) = (ConversationId::room(small.clone()), ConversationId::room(big.clone()));
        let (bs, bb) = (entry_bytes(&store, &cs).await, entry_bytes(&store, &cb).await);
        println!(
            "append, median: 10 members {:.1} µs, 100,000 members {:.1} µs, ratio {:.2} (target <= 1.5)",
            small_t.as_secs_f64() * 1e6,
            big_t.as_secs_f64() * 1e6,
            big_t.as_secs_f64() / small_t.as_secs_f64()
        );
        println!(
            "stored entry bytes per message: 10 members {}, 100,000 members {}",
            bs / (3 * n),
            bb / (3 * n)
        );

        // 2. Catch-up: 1,000 entries after a cursor, against a raw range scan
        // of the same keys and values in the same sled database.
        let (ours, raw) = catch_up_vs_scan(&store, &log, &cb, &user(0)).await;
        println!(
            "catch-up of 1,000 on sled: ours {:.2} ms, raw scan {:.2} ms, throughput ratio {:.2} (target >= 0.8)",
            ours.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3,
            raw.as_secs_f64() / ours.as_secs_f64()
        );

        // 3. Unread counts for a user in 1,000 conversations.
        let busy = UserId::new("busy").unwrap();
        for i in 0..1000 {
            let room = RoomId::new(format!("c{i:04}")).unwrap();
            setup.create_room(&room, Retention::All).await.unwrap();
            setup.join(&room, &busy).await.unwrap();
            setup
                .append(&Envelope::new(busy.clone(), To::Room(room.clone()), "hi"))
                .await
                .unwrap();
        }
        store.flush().await.unwrap();
        let mut counts = Duration::MAX;
        let mut with_last = Duration::MAX;
        for _ in 0..10 {
            let t = Instant::now();
            let list = log.list(&busy, ListQuery::first(1000).without_last()).await.unwrap();
            counts = counts.min(t.elapsed());
            assert_eq!(list.len(), 1000);
            let t = Instant::now();
            let list = log.list(&busy, ListQuery::first(1000)).await.unwrap();
            with_last = with_last.min(t.elapsed());
            assert!(list.iter().all(|s| s.last.is_some()));
        }
        println!(
            "unread counts in 1,000 conversations: {:.2} ms; with last messages {:.2} ms (target < 5 ms)",
            counts.as_secs_f64() * 1e3,
            with_last.as_secs_f64() * 1e3
        );

        // 4. The cluster's shape: the same catch-up on PostgreSQL.
        if std::env::var_os("DATABASE_URL").is_none() {
            println!("catch-up on PostgreSQL: skipped (set DATABASE_URL to measure it)");
            return;
        }
        let temp = nopi::testing::TempStore::postgres();
        let pg = temp.open().await.unwrap();
        let log = Conversations::builder(&pg).durable(false).build().await.unwrap();
        let room = room_with(&log, "pg", 1).await;
        for k in 0..1100 {
            let env = Envelope::new(user(0), To::Room(room.clone()), format!("message {k:06} of the benchmark"));
            log.append(&env).await.unwrap();
        }
        let c = ConversationId::room(room);
        let (ours, raw) = catch_up_vs_scan(&pg, &log, &c, &user(0)).await;
        println!(
            "catch-up of 1,000 on PostgreSQL: ours {:.2} ms, raw scan {:.2} ms (one query), throughput ratio {:.2} (target >= 0.8)",
            ours.as_secs_f64() * 1e3,
            raw.as_secs_f64() * 1e3,
            raw.as_secs_f64() / ours.as_secs_f64()
        );
    });
}

/// Best of 20: `read` of 1,000 entries after seq 0, and a nopi range scan of
/// the same 1,000 keys and values.
async fn catch_up_vs_scan(
    store: &Store,
    log: &Conversations,
    c: &ConversationId,
    reader: &UserId,
) -> (Duration, Duration) {
    let mut from = format!("e/{c}/").into_bytes();
    from.extend_from_slice(&1u64.to_be_bytes());
    let raw_tree = store.tree("rmq.log").await.unwrap();
    let mut ours = Duration::MAX;
    let mut raw = Duration::MAX;
    for _ in 0..20 {
        let t = Instant::now();
        let page = log.read(c, reader, LogQuery::after(0, 1000)).await.unwrap();
        ours = ours.min(t.elapsed());
        assert_eq!(page.entries.len(), 1000);
        let t = Instant::now();
        let rows = raw_tree
            .scan(Scan::range(from.clone()..).limit(1000))
            .await
            .unwrap();
        raw = raw.min(t.elapsed());
        assert_eq!(rows.len(), 1000);
    }
    (ours, raw)
}
