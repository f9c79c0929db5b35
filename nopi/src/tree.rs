//! The tree facade: checks limits, then delegates to the engine.

use std::fmt;
use std::sync::Arc;

use crate::backend::TreeBackend;
use crate::error::DisplayKey;
use crate::{Batch, CasConflict, Error, Limits, Result, Scan};

/// How many times [`Tree::fetch_update`] retries after losing a race.
const MAX_ATTEMPTS: u32 = 1000;

/// An ordered map from byte keys to byte values, stored in a [`Store`](crate::Store).
///
/// Cheap to clone. Keys are ordered as byte strings.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), nopi::Error> {
/// use nopi::Scan;
/// let store = nopi::open("memory:").await?;
/// let log = store.tree("log").await?;
/// for i in 0..5u8 {
///     log.insert([b'e', i], [i]).await?;
/// }
/// let last_two = log.scan(Scan::prefix(b"e").rev().limit(2)).await?;
/// assert_eq!(last_two[0].1, vec![4]);
/// assert_eq!(last_two[1].1, vec![3]);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Tree {
    name: Arc<str>,
    inner: Arc<dyn TreeBackend>,
    limits: Limits,
}

impl fmt::Debug for Tree {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tree").field("name", &self.name).finish()
    }
}

impl Tree {
    pub(crate) fn new(name: &str, inner: Arc<dyn TreeBackend>, limits: Limits) -> Self {
        Tree {
            name: name.into(),
            inner,
            limits,
        }
    }

    /// The tree's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value of `key`, if any.
    pub async fn get(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.inner.get(key).await
    }

    /// True when `key` has a value.
    pub async fn contains_key(&self, key: impl AsRef<[u8]>) -> Result<bool> {
        Ok(self.get(key).await?.is_some())
    }

    /// Set `key` to `value`, replacing any previous value.
    pub async fn insert(&self, key: impl AsRef<[u8]>, value: impl AsRef<[u8]>) -> Result<()> {
        let (key, value) = (key.as_ref(), value.as_ref());
        self.check_entry(key, value)?;
        self.inner.insert(key, value).await
    }

    /// Remove `key`, returning the value it held.
    pub async fn remove(&self, key: impl AsRef<[u8]>) -> Result<Option<Vec<u8>>> {
        let key = key.as_ref();
        self.check_key(key)?;
        self.inner.remove(key).await
    }

    /// Atomically set `key` to `new` (`None`: remove it) if it currently holds
    /// `expected` (`None`: if it is absent).
    ///
    /// The outer `Result` is a storage failure; the inner one says whether the
    /// swap happened and, if not, what the key holds now.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), nopi::Error> {
    /// let store = nopi::open("memory:").await?;
    /// let t = store.tree("locks").await?;
    /// assert!(t.compare_and_swap("owner", None, Some(b"node-1")).await?.is_ok());
    /// let lost = t.compare_and_swap("owner", None, Some(b"node-2")).await?;
    /// assert_eq!(lost.unwrap_err().current.as_deref(), Some(&b"node-1"[..]));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn compare_and_swap(
        &self,
        key: impl AsRef<[u8]>,
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>> {
        let key = key.as_ref();
        self.check_key(key)?;
        if let Some(v) = new {
            self.check_value(key, v)?;
        }
        self.inner.compare_and_swap(key, expected, new).await
    }

    /// Atomically replace the value of `key` by `f(current)` (`None` removes it),
    /// retrying when another writer got there first, and return the new value.
    ///
    /// `f` may run several times; it should be a pure function of its input.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), nopi::Error> {
    /// let store = nopi::open("memory:").await?;
    /// let t = store.tree("counters").await?;
    /// let bump = |old: Option<&[u8]>| {
    ///     let n = old.map_or(0, |b| u64::from_be_bytes(b.try_into().unwrap_or([0; 8])));
    ///     Some((n + 1).to_be_bytes().to_vec())
    /// };
    /// t.fetch_update("visits", bump).await?;
    /// let two = t.fetch_update("visits", bump).await?;
    /// assert_eq!(two, Some(2u64.to_be_bytes().to_vec()));
    /// # Ok(())
    /// # }
    /// ```
    pub async fn fetch_update<F>(&self, key: impl AsRef<[u8]>, mut f: F) -> Result<Option<Vec<u8>>>
    where
        F: FnMut(Option<&[u8]>) -> Option<Vec<u8>> + Send,
    {
        let key = key.as_ref();
        self.check_key(key)?;
        let mut current = self.inner.get(key).await?;
        for _ in 0..MAX_ATTEMPTS {
            let new = f(current.as_deref());
            if let Some(v) = &new {
                self.check_value(key, v)?;
            }
            match self
                .inner
                .compare_and_swap(key, current.as_deref(), new.as_deref())
                .await?
            {
                Ok(()) => return Ok(new),
                Err(conflict) => {
                    current = conflict.current;
                    tokio::task::yield_now().await;
                }
            }
        }
        Err(Error::Contended {
            key: DisplayKey::new(key),
            attempts: MAX_ATTEMPTS,
        })
    }

    /// The entries selected by `scan`, in its order.
    pub async fn scan(&self, scan: Scan) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if scan.max_entries() == Some(0) {
            return Ok(Vec::new());
        }
        self.inner.scan(&scan).await
    }

    /// Apply every write of `batch` atomically, if its expectations hold.
    ///
    /// Returns [`Error::Conflict`] naming the first failed expectation, having
    /// written nothing.
    pub async fn apply(&self, batch: Batch) -> Result<()> {
        if batch.len() > self.limits.max_batch_ops {
            return Err(Error::BatchTooLarge {
                ops: batch.len(),
                limit: self.limits.max_batch_ops,
            });
        }
        for op in &batch.ops {
            match op {
                crate::Op::Put(k, v) => self.check_entry(k, v)?,
                crate::Op::Remove(k) => self.check_key(k)?,
            }
        }
        for (k, v) in &batch.expects {
            self.check_key(k)?;
            if let Some(v) = v {
                self.check_value(k, v)?;
            }
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.inner.apply(batch).await
    }

    /// The number of entries. Engines may count by scanning: avoid on hot paths.
    pub async fn len(&self) -> Result<usize> {
        self.inner.len().await
    }

    /// True when the tree has no entries.
    pub async fn is_empty(&self) -> Result<bool> {
        self.inner.is_empty().await
    }

    /// Make every write to this tree that returned before this call durable.
    pub async fn flush(&self) -> Result<()> {
        self.inner.flush().await
    }

    fn check_key(&self, key: &[u8]) -> Result<()> {
        if key.len() > self.limits.max_key_size {
            return Err(Error::KeyTooLarge {
                size: key.len(),
                limit: self.limits.max_key_size,
            });
        }
        Ok(())
    }

    fn check_value(&self, key: &[u8], value: &[u8]) -> Result<()> {
        if value.len() > self.limits.max_value_size {
            return Err(Error::ValueTooLarge {
                key: DisplayKey::new(key),
                size: value.len(),
                limit: self.limits.max_value_size,
            });
        }
        Ok(())
    }

    fn check_entry(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.check_key(key)?;
        self.check_value(key, value)
    }
}
