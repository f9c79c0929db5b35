//! The contract every storage engine implements.
//!
//! [`Store`](crate::Store) and [`Tree`](crate::Tree) are thin facades over these two
//! traits: they check names and sizes, then delegate. A new engine implements
//! [`Backend`] and [`TreeBackend`], passes the conformance suite
//! (`nopi/tests/conformance/`), and is opened with
//! [`Store::from_backend`](crate::Store::from_backend).

use std::sync::Arc;

use async_trait::async_trait;

use crate::{Batch, CasConflict, Result, Scan};

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "sled")]
pub mod sled;

/// A storage engine: a set of named trees.
///
/// Names reaching a backend are already validated (see
/// [`Store::tree`](crate::Store::tree)).
#[async_trait]
pub trait Backend: Send + Sync + 'static {
    /// A short name for errors and logs: `memory`, `sled`, `postgres`.
    fn name(&self) -> &'static str;

    /// Open the tree `name`, creating it empty if it does not exist.
    async fn open_tree(&self, name: &str) -> Result<Arc<dyn TreeBackend>>;

    /// The names of every tree, sorted.
    async fn tree_names(&self) -> Result<Vec<String>>;

    /// Delete the tree `name` and everything in it; `false` if it did not exist.
    async fn drop_tree(&self, name: &str) -> Result<bool>;

    /// Make every write that returned before this call durable.
    async fn flush(&self) -> Result<()>;
}

/// An ordered map from byte keys to byte values.
///
/// Keys and values reaching a backend are within the store's limits, batches
/// within its operation limit.
#[async_trait]
pub trait TreeBackend: Send + Sync + 'static {
    /// The value of `key`.
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Set `key` to `value`.
    async fn insert(&self, key: &[u8], value: &[u8]) -> Result<()>;

    /// Remove `key`, returning the value it held.
    async fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>>;

    /// Set `key` to `new` (`None`: remove it) only if it holds `expected`
    /// (`None`: only if absent), atomically.
    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>>;

    /// The entries within the scan's range, in its order, at most its limit.
    async fn scan(&self, scan: &Scan) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;

    /// Apply the batch atomically: check every expectation, then apply every
    /// write in order; on a failed expectation write nothing and return
    /// [`Error::Conflict`](crate::Error::Conflict).
    async fn apply(&self, batch: Batch) -> Result<()>;

    /// The number of entries.
    async fn len(&self) -> Result<usize>;

    /// True when the tree has no entries.
    async fn is_empty(&self) -> Result<bool> {
        Ok(self.scan(&Scan::all().limit(1)).await?.is_empty())
    }

    /// Make every write to this tree that returned before this call durable.
    async fn flush(&self) -> Result<()>;
}
