//! Helpers shared by the integration tests.
#![allow(
    dead_code,
    reason = "included by several test files, each using a part; not `expect`, since the unused part differs per file"
)]
#![expect(
    unreachable_pub,
    reason = "a private test module; `pub` reads as \"shared with the test files\""
)]

use std::path::Path;
use std::time::Duration;

use nopi::Store;
use nopi::testing::{Faults, FaultyBackend, Ops};
use tiny_q::{Durability, Overflow, QueueOptions, Queues};

/// Options with the given capacity and overflow, buffered pushes.
pub fn options(capacity: u64, overflow: Overflow) -> QueueOptions {
    QueueOptions::builder()
        .capacity(capacity)
        .overflow(overflow)
        .durability(Durability::Buffered)
        .build()
        .expect("valid options")
}

/// Fresh queues over a fresh in-memory store.
pub async fn memory() -> Queues {
    let store = nopi::open("memory:").await.expect("memory store");
    Queues::new(&store).await.expect("queues")
}

/// The store in `dir` (sled) and its queues.
pub async fn sled(dir: &Path) -> (Store, Queues) {
    let store = nopi::open(&format!("sled:{}", dir.display()))
        .await
        .expect("sled store");
    let queues = Queues::new(&store).await.expect("queues");
    (store, queues)
}

/// A memory store whose flushes are counted, take `flush_time`, and fail
/// while the test says so (`faults.fail(Ops::FLUSH)`): the fault-injecting
/// backend of the durability tests.
pub fn faulty_store(flush_time: Duration) -> (Store, Faults) {
    let (store, faults) = FaultyBackend::memory();
    faults.delay(Ops::FLUSH, flush_time);
    (store, faults)
}
