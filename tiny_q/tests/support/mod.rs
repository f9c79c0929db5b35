//! Helpers shared by the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use nopi::backend::{Backend, TreeBackend, memory::MemoryBackend};
use nopi::{Limits, Store};
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
/// while `fail` is set: the fault-injecting backend of the durability tests.
#[derive(Clone, Default)]
pub struct Faults {
    pub flushes: Arc<AtomicU64>,
    pub fail: Arc<AtomicBool>,
}

impl Faults {
    pub fn store(&self, flush_time: Duration) -> Store {
        let backend = Instrumented {
            inner: Arc::new(MemoryBackend::new()),
            faults: self.clone(),
            flush_time,
        };
        Store::from_backend(Arc::new(backend), Limits::default())
    }

    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::SeqCst)
    }

    async fn flush(&self, flush_time: Duration) -> nopi::Result<()> {
        self.flushes.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(flush_time).await;
        if self.fail.load(Ordering::SeqCst) {
            return Err(nopi::Error::Unavailable {
                backend: "instrumented",
                source: "injected flush failure".into(),
            });
        }
        Ok(())
    }
}

struct Instrumented {
    inner: Arc<MemoryBackend>,
    faults: Faults,
    flush_time: Duration,
}

#[async_trait]
impl Backend for Instrumented {
    fn name(&self) -> &'static str {
        "instrumented"
    }

    async fn open_tree(&self, name: &str) -> nopi::Result<Arc<dyn TreeBackend>> {
        Ok(Arc::new(InstrumentedTree {
            inner: self.inner.open_tree(name).await?,
            faults: self.faults.clone(),
            flush_time: self.flush_time,
        }))
    }

    async fn tree_names(&self) -> nopi::Result<Vec<String>> {
        self.inner.tree_names().await
    }

    async fn drop_tree(&self, name: &str) -> nopi::Result<bool> {
        self.inner.drop_tree(name).await
    }

    async fn flush(&self) -> nopi::Result<()> {
        self.faults.flush(self.flush_time).await
    }
}

struct InstrumentedTree {
    inner: Arc<dyn TreeBackend>,
    faults: Faults,
    flush_time: Duration,
}

#[async_trait]
impl TreeBackend for InstrumentedTree {
    async fn get(&self, key: &[u8]) -> nopi::Result<Option<Vec<u8>>> {
        self.inner.get(key).await
    }

    async fn insert(&self, key: &[u8], value: &[u8]) -> nopi::Result<()> {
        self.inner.insert(key, value).await
    }

    async fn remove(&self, key: &[u8]) -> nopi::Result<Option<Vec<u8>>> {
        self.inner.remove(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> nopi::Result<Result<(), nopi::CasConflict>> {
        self.inner.compare_and_swap(key, expected, new).await
    }

    async fn scan(&self, scan: &nopi::Scan) -> nopi::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan(scan).await
    }

    async fn apply(&self, batch: nopi::Batch) -> nopi::Result<()> {
        self.inner.apply(batch).await
    }

    async fn len(&self) -> nopi::Result<usize> {
        self.inner.len().await
    }

    async fn flush(&self) -> nopi::Result<()> {
        self.faults.flush(self.flush_time).await
    }
}
