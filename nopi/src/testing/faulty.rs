//! A fault-injecting backend: any engine, with failures and delays a test
//! switches on and off while it runs.

use std::fmt;
use std::ops::BitOr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;

use crate::backend::{Backend, TreeBackend, memory::MemoryBackend};
use crate::{Batch, CasConflict, Error, Limits, Result, Scan, Store};

/// A set of backend operations, for [`Faults`] to fail, delay or count.
///
/// Combine them with `|`: `Ops::APPLY | Ops::FLUSH`. Store-level and
/// tree-level flushes are both [`Ops::FLUSH`]; `is_empty` is a
/// [`Ops::SCAN`] (it scans for one entry).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ops(u16);

impl Ops {
    /// [`TreeBackend::get`].
    pub const GET: Ops = Ops(1 << 0);
    /// [`TreeBackend::insert`].
    pub const INSERT: Ops = Ops(1 << 1);
    /// [`TreeBackend::remove`].
    pub const REMOVE: Ops = Ops(1 << 2);
    /// [`TreeBackend::compare_and_swap`].
    pub const CAS: Ops = Ops(1 << 3);
    /// [`TreeBackend::scan`] (and `is_empty`).
    pub const SCAN: Ops = Ops(1 << 4);
    /// [`TreeBackend::apply`]: a batch.
    pub const APPLY: Ops = Ops(1 << 5);
    /// [`TreeBackend::len`].
    pub const LEN: Ops = Ops(1 << 6);
    /// [`Backend::flush`] and [`TreeBackend::flush`].
    pub const FLUSH: Ops = Ops(1 << 7);
    /// [`Backend::open_tree`].
    pub const OPEN_TREE: Ops = Ops(1 << 8);
    /// [`Backend::tree_names`].
    pub const TREE_NAMES: Ops = Ops(1 << 9);
    /// [`Backend::drop_tree`].
    pub const DROP_TREE: Ops = Ops(1 << 10);

    /// Every operation that changes a tree's entries: insert, remove,
    /// compare-and-swap and apply.
    pub const WRITES: Ops = Ops(Self::INSERT.0 | Self::REMOVE.0 | Self::CAS.0 | Self::APPLY.0);
    /// Every operation that only reads entries: get, scan and len.
    pub const READS: Ops = Ops(Self::GET.0 | Self::SCAN.0 | Self::LEN.0);
    /// Every operation: the store is down.
    pub const ALL: Ops = Ops((1 << 11) - 1);

    const NAMES: [&'static str; 11] = [
        "get",
        "insert",
        "remove",
        "compare_and_swap",
        "scan",
        "apply",
        "len",
        "flush",
        "open_tree",
        "tree_names",
        "drop_tree",
    ];

    /// True when every operation of `other` is in `self`.
    pub fn contains(self, other: Ops) -> bool {
        self.0 & other.0 == other.0
    }

    fn intersects(self, other: Ops) -> bool {
        self.0 & other.0 != 0
    }

    fn index(self) -> usize {
        self.0.trailing_zeros() as usize
    }
}

impl BitOr for Ops {
    type Output = Ops;
    fn bitor(self, rhs: Ops) -> Ops {
        Ops(self.0 | rhs.0)
    }
}

impl fmt::Debug for Ops {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = (0..Self::NAMES.len())
            .filter(|i| self.0 & (1 << i) != 0)
            .map(|i| Self::NAMES[i])
            .collect();
        write!(f, "Ops({})", names.join(" | "))
    }
}

/// How a fault rule treats the operations it matches.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// Fail every one.
    Always,
    /// Fail this many more, then let them through.
    Next(u64),
    /// Let this many more through, then fail every one.
    After(u64),
}

#[derive(Debug, Default)]
struct State {
    rules: Vec<(Ops, Rule)>,
    /// The delay of each operation, by [`Ops::index`].
    delays: [Duration; Ops::NAMES.len()],
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    counts: [AtomicU64; Ops::NAMES.len()],
}

/// The switches of a [`FaultyBackend`]: cheap to clone, shared by every
/// store and tree handle over it, usable from the test while operations run.
///
/// An operation first counts itself, then waits for the
/// [`delay`](Self::delay) set for it, then goes through the rules in the
/// order they were added until one fails it (with
/// [`Error::Unavailable`](crate::Error::Unavailable), as a lost engine
/// does); a rule that lets it through counts it against its allowance.
/// Only an operation that no rule fails reaches the wrapped engine.
#[derive(Clone, Default)]
pub struct Faults(Arc<Shared>);

impl fmt::Debug for Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Faults").field(&*self.state()).finish()
    }
}

impl Faults {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // A test that panicked while holding it has failed already.
        self.0.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Fail every operation in `ops` from now on, until [`heal`](Self::heal).
    pub fn fail(&self, ops: Ops) {
        self.state().rules.push((ops, Rule::Always));
    }

    /// Fail the next `n` operations in `ops`, then let them through again.
    pub fn fail_next(&self, ops: Ops, n: u64) {
        self.state().rules.push((ops, Rule::Next(n)));
    }

    /// Let `n` more operations in `ops` through, then fail every one of them
    /// until [`heal`](Self::heal).
    pub fn fail_after(&self, ops: Ops, n: u64) {
        self.state().rules.push((ops, Rule::After(n)));
    }

    /// Make every operation in `ops` wait `delay` before it runs (or fails),
    /// replacing their earlier delay; `Duration::ZERO` removes it.
    pub fn delay(&self, ops: Ops, delay: Duration) {
        let mut state = self.state();
        for (i, d) in state.delays.iter_mut().enumerate() {
            if ops.0 & (1 << i) != 0 {
                *d = delay;
            }
        }
    }

    /// Remove every failure rule: every operation reaches the engine again.
    /// Delays stay.
    pub fn heal(&self) {
        self.state().rules.clear();
    }

    /// How many operations in `ops` were attempted, failed ones included.
    pub fn count(&self, ops: Ops) -> u64 {
        (0..Ops::NAMES.len())
            .filter(|i| ops.0 & (1 << i) != 0)
            .map(|i| self.0.counts[i].load(Ordering::SeqCst))
            .sum()
    }

    /// Count `op`, wait out its delay, and decide whether it fails.
    async fn check(&self, op: Ops) -> Result<()> {
        self.0.counts[op.index()].fetch_add(1, Ordering::SeqCst);
        let delay = self.state().delays[op.index()];
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let mut state = self.state();
        for (ops, rule) in &mut state.rules {
            if !ops.intersects(op) {
                continue;
            }
            let fails = match rule {
                Rule::Always | Rule::After(0) => true,
                Rule::Next(0) => false,
                Rule::Next(n) => {
                    *n -= 1;
                    true
                }
                Rule::After(n) => {
                    *n -= 1;
                    false
                }
            };
            if fails {
                let name = Ops::NAMES[op.index()];
                return Err(Error::Unavailable {
                    backend: FaultyBackend::NAME,
                    source: format!("injected fault: {name} failed").into(),
                });
            }
        }
        Ok(())
    }
}

/// Any engine, with failures and delays injected on command: the
/// fault-injecting backend of crash, outage and durability tests.
///
/// Wrap an open store with [`wrap`](Self::wrap) (or start from
/// [`memory`](Self::memory)); the [`Faults`] handle that comes with it
/// switches failures on and off while the test runs, and counts operations.
///
/// ```
/// use std::time::Duration;
/// use nopi::testing::{FaultyBackend, Ops};
/// use nopi::Batch;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let (store, faults) = FaultyBackend::wrap(&nopi::open("memory:").await?);
/// let tree = store.tree("t").await?;
///
/// faults.fail_next(Ops::APPLY, 1); // the next batch fails ...
/// let err = tree.apply(Batch::new().put("k", "v")).await.unwrap_err();
/// assert!(err.is_unavailable());
/// assert_eq!(tree.get("k").await?, None, "nothing was written");
/// tree.apply(Batch::new().put("k", "v")).await?; // ... and the one after passes
///
/// faults.delay(Ops::FLUSH, Duration::from_millis(5)); // slow flushes
/// faults.fail(Ops::ALL); // the store is down
/// assert!(tree.get("k").await.unwrap_err().is_unavailable());
/// assert!(store.flush().await.unwrap_err().is_unavailable());
/// faults.heal(); // and back
/// assert_eq!(tree.get("k").await?.as_deref(), Some(&b"v"[..]));
///
/// assert_eq!(faults.count(Ops::APPLY), 2);
/// assert_eq!(faults.count(Ops::FLUSH), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// # }
/// ```
pub struct FaultyBackend {
    inner: Arc<dyn Backend>,
    faults: Faults,
}

impl fmt::Debug for FaultyBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyBackend")
            .field("inner", &self.inner.name())
            .field("faults", &self.faults)
            .finish()
    }
}

impl FaultyBackend {
    /// The backend name this one reports, in [`Error::Unavailable`] too.
    pub const NAME: &'static str = "faulty";

    /// `inner`, with no faults yet.
    pub fn new(inner: Arc<dyn Backend>) -> Self {
        FaultyBackend {
            inner,
            faults: Faults::default(),
        }
    }

    /// The switches of this backend.
    pub fn faults(&self) -> Faults {
        self.faults.clone()
    }

    /// A store over the engine of `store`, with its limits, and the switches
    /// of its faults. Both stores see the same data; only operations through
    /// the returned one are faulty.
    pub fn wrap(store: &Store) -> (Store, Faults) {
        Self::new(store.backend().clone()).into_store(store.limits())
    }

    /// A new in-memory store with faults, and its switches.
    pub fn memory() -> (Store, Faults) {
        Self::new(Arc::new(MemoryBackend::new())).into_store(Limits::default())
    }

    /// A store over this backend with `limits`, and the switches of its faults.
    pub fn into_store(self, limits: Limits) -> (Store, Faults) {
        let faults = self.faults();
        (Store::from_backend(Arc::new(self), limits), faults)
    }
}

#[async_trait]
impl Backend for FaultyBackend {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    async fn open_tree(&self, name: &str) -> Result<Arc<dyn TreeBackend>> {
        self.faults.check(Ops::OPEN_TREE).await?;
        Ok(Arc::new(FaultyTree {
            inner: self.inner.open_tree(name).await?,
            faults: self.faults.clone(),
        }))
    }

    async fn tree_names(&self) -> Result<Vec<String>> {
        self.faults.check(Ops::TREE_NAMES).await?;
        self.inner.tree_names().await
    }

    async fn drop_tree(&self, name: &str) -> Result<bool> {
        self.faults.check(Ops::DROP_TREE).await?;
        self.inner.drop_tree(name).await
    }

    async fn flush(&self) -> Result<()> {
        self.faults.check(Ops::FLUSH).await?;
        self.inner.flush().await
    }
}

struct FaultyTree {
    inner: Arc<dyn TreeBackend>,
    faults: Faults,
}

#[async_trait]
impl TreeBackend for FaultyTree {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.faults.check(Ops::GET).await?;
        self.inner.get(key).await
    }

    async fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.faults.check(Ops::INSERT).await?;
        self.inner.insert(key, value).await
    }

    async fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.faults.check(Ops::REMOVE).await?;
        self.inner.remove(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>> {
        self.faults.check(Ops::CAS).await?;
        self.inner.compare_and_swap(key, expected, new).await
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.faults.check(Ops::SCAN).await?;
        self.inner.scan(scan).await
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        self.faults.check(Ops::APPLY).await?;
        self.inner.apply(batch).await
    }

    async fn len(&self) -> Result<usize> {
        self.faults.check(Ops::LEN).await?;
        self.inner.len().await
    }

    // `is_empty` keeps the default: a scan of one entry, failed as a scan.

    async fn flush(&self) -> Result<()> {
        self.faults.check(Ops::FLUSH).await?;
        self.inner.flush().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whether each of `n` batches through `tree` succeeded.
    async fn applies(tree: &crate::Tree, n: usize) -> Vec<bool> {
        let mut out = Vec::new();
        for i in 0..n {
            out.push(tree.apply(Batch::new().put([i as u8], "v")).await.is_ok());
        }
        out
    }

    #[tokio::test]
    async fn fail_next_fails_that_many_then_heals_by_itself() {
        let (store, faults) = FaultyBackend::memory();
        let tree = store.tree("t").await.unwrap();
        faults.fail_next(Ops::APPLY, 2);
        assert_eq!(applies(&tree, 4).await, [false, false, true, true]);
        assert_eq!(tree.len().await.unwrap(), 2, "failed batches wrote nothing");
        assert_eq!(faults.count(Ops::APPLY), 4);
    }

    #[tokio::test]
    async fn fail_after_lets_that_many_through_then_fails_until_healed() {
        let (store, faults) = FaultyBackend::memory();
        let tree = store.tree("t").await.unwrap();
        faults.fail_after(Ops::WRITES, 2);
        assert_eq!(applies(&tree, 4).await, [true, true, false, false]);
        assert!(tree.insert("k", "v").await.unwrap_err().is_unavailable());
        assert!(tree.get("k").await.is_ok(), "reads are not writes");
        faults.heal();
        assert_eq!(applies(&tree, 2).await, [true, true]);
    }

    #[tokio::test]
    async fn fail_matches_only_its_kinds_and_names_the_operation() {
        let (store, faults) = FaultyBackend::memory();
        let tree = store.tree("t").await.unwrap();
        tree.insert("k", "v").await.unwrap();
        faults.fail(Ops::GET | Ops::FLUSH);
        let err = tree.get("k").await.unwrap_err();
        assert!(err.is_unavailable());
        assert_eq!(
            err.to_string(),
            "faulty store unavailable: injected fault: get failed"
        );
        assert!(tree.flush().await.unwrap_err().is_unavailable());
        assert!(store.flush().await.unwrap_err().is_unavailable());
        assert_eq!(tree.scan(Scan::all()).await.unwrap().len(), 1);
        tree.insert("k2", "v").await.unwrap();
        faults.heal();
        assert_eq!(tree.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    }

    #[tokio::test]
    async fn all_takes_the_whole_store_down() {
        let (store, faults) = FaultyBackend::memory();
        store
            .tree("t")
            .await
            .unwrap()
            .insert("k", "v")
            .await
            .unwrap();
        faults.fail(Ops::ALL);
        assert!(store.tree("t").await.unwrap_err().is_unavailable());
        assert!(store.tree_names().await.unwrap_err().is_unavailable());
        assert!(store.drop_tree("t").await.unwrap_err().is_unavailable());
        faults.heal();
        assert_eq!(store.tree_names().await.unwrap(), ["t"]);
    }

    #[tokio::test]
    async fn wrap_shares_the_data_and_keeps_the_limits() {
        let plain = Store::builder("memory:")
            .max_batch_ops(3)
            .open()
            .await
            .unwrap();
        let (faulty, faults) = FaultyBackend::wrap(&plain);
        assert_eq!(faulty.limits().max_batch_ops, 3);
        assert_eq!(faulty.backend_name(), "faulty");
        faulty
            .tree("t")
            .await
            .unwrap()
            .insert("k", "v")
            .await
            .unwrap();
        faults.fail(Ops::ALL);
        let seen = plain.tree("t").await.unwrap().get("k").await.unwrap();
        assert_eq!(
            seen.as_deref(),
            Some(&b"v"[..]),
            "the plain store is not faulty"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn delays_apply_to_their_kinds_and_can_be_removed() {
        let (store, faults) = FaultyBackend::memory();
        let tree = store.tree("t").await.unwrap();
        faults.delay(Ops::FLUSH, Duration::from_secs(3));
        let start = tokio::time::Instant::now();
        tree.insert("k", "v").await.unwrap();
        assert_eq!(start.elapsed(), Duration::ZERO);
        tree.flush().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(3));
        faults.fail(Ops::FLUSH);
        assert!(
            store.flush().await.is_err(),
            "a delayed operation can still fail"
        );
        assert_eq!(start.elapsed(), Duration::from_secs(6));
        faults.delay(Ops::FLUSH, Duration::ZERO);
        faults.heal();
        store.flush().await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_secs(6));
        assert_eq!(faults.count(Ops::FLUSH), 3);
        assert_eq!(faults.count(Ops::WRITES), 1);
    }

    #[test]
    fn ops_combine_and_print_their_names() {
        assert!(Ops::ALL.contains(Ops::WRITES | Ops::READS | Ops::FLUSH));
        assert!(!Ops::WRITES.contains(Ops::GET));
        assert_eq!(format!("{:?}", Ops::GET | Ops::FLUSH), "Ops(get | flush)");
    }
}
