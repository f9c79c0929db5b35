//! Opening stores by URL, and the limits every store enforces.

use std::fmt;
use std::sync::Arc;

use crate::backend::{Backend, memory::MemoryBackend};
use crate::{Error, Result, Tree};

/// Size and count limits checked before anything reaches the engine.
///
/// The defaults suit every backend: PostgreSQL cannot index keys much larger
/// than 2 KiB, so keys are capped at 1 KiB everywhere, and the same data can
/// move between backends without tripping a limit that only one of them has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest key, in bytes. Default 1024.
    pub max_key_size: usize,
    /// Largest value, in bytes. Default 16 MiB.
    pub max_value_size: usize,
    /// Most operations (writes plus expectations) in one batch. Default 10 000.
    pub max_batch_ops: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_key_size: 1024,
            max_value_size: 16 << 20,
            max_batch_ops: 10_000,
        }
    }
}

/// Longest tree name, in bytes.
pub const MAX_TREE_NAME: usize = 128;

/// A handle to an open store. Cheap to clone; every clone shares the engine.
///
/// Open one with [`open`](crate::open) or [`Store::builder`].
#[derive(Clone)]
pub struct Store {
    backend: Arc<dyn Backend>,
    limits: Limits,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend.name())
            .field("limits", &self.limits)
            .finish()
    }
}

impl Store {
    /// A builder for a store at `url`, to set limits before opening.
    pub fn builder(url: impl Into<String>) -> StoreBuilder {
        StoreBuilder {
            url: url.into(),
            limits: Limits::default(),
            pool_size: 16,
        }
    }

    /// A new, empty in-memory store (the same as `open("memory:")`).
    pub fn memory() -> Self {
        Self::from_backend(Arc::new(MemoryBackend::new()), Limits::default())
    }

    /// A store over any engine implementing [`Backend`].
    pub fn from_backend(backend: Arc<dyn Backend>, limits: Limits) -> Self {
        Store { backend, limits }
    }

    /// The engine behind this handle (for `testing::FaultyBackend::wrap`).
    #[cfg(feature = "testing")]
    pub(crate) fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The backend's name: `memory`, `sled` or `postgres`.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// The limits this store enforces.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Open the tree `name`, creating it empty if needed.
    ///
    /// Names are 1 to 128 bytes of `[A-Za-z0-9_.:/-]` and may not start with
    /// `__` (reserved for engines).
    pub async fn tree(&self, name: &str) -> Result<Tree> {
        validate_tree_name(name)?;
        let inner = self.backend.open_tree(name).await?;
        Ok(Tree::new(name, inner, self.limits))
    }

    /// The names of every tree, sorted.
    pub async fn tree_names(&self) -> Result<Vec<String>> {
        self.backend.tree_names().await
    }

    /// Delete the tree `name` and all its entries; `false` if there was none.
    ///
    /// Handles to the dropped tree that are still held must not be used again:
    /// what they see is up to the engine.
    pub async fn drop_tree(&self, name: &str) -> Result<bool> {
        validate_tree_name(name)?;
        self.backend.drop_tree(name).await
    }

    /// Make every write that returned before this call durable.
    pub async fn flush(&self) -> Result<()> {
        self.backend.flush().await
    }
}

/// Sets a store's limits before opening it. See [`Store::builder`].
///
/// Every setting is checked by [`open`](Self::open): one that cannot work (a
/// zero limit) is refused with [`Error::InvalidSetting`] before any engine
/// is touched.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> nopi::Result<()> {
/// let store = nopi::Store::builder("memory:").max_key_size(512).open().await?;
/// assert_eq!(store.limits().max_key_size, 512);
///
/// let err = nopi::Store::builder("memory:").max_batch_ops(0).open().await.unwrap_err();
/// assert_eq!(err.to_string(), "invalid max_batch_ops: expected at least 1, got 0");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open` is called"]
pub struct StoreBuilder {
    url: String,
    limits: Limits,
    pool_size: usize,
}

impl StoreBuilder {
    /// Largest key in bytes (default 1024; at least 1).
    pub fn max_key_size(mut self, bytes: usize) -> Self {
        self.limits.max_key_size = bytes;
        self
    }

    /// Largest value in bytes (default 16 MiB; at least 1).
    pub fn max_value_size(mut self, bytes: usize) -> Self {
        self.limits.max_value_size = bytes;
        self
    }

    /// Most operations in one batch (default 10 000; at least 1).
    pub fn max_batch_ops(mut self, ops: usize) -> Self {
        self.limits.max_batch_ops = ops;
        self
    }

    /// Connections in the pool of a PostgreSQL store (default 16; at least
    /// 1, whatever the backend; unused by other backends).
    pub fn pool_size(mut self, connections: usize) -> Self {
        self.pool_size = connections;
        self
    }

    /// Every setting within its range, or the first that is not.
    fn check(&self) -> Result<()> {
        for (setting, n) in [
            ("max_key_size", self.limits.max_key_size),
            ("max_value_size", self.limits.max_value_size),
            ("max_batch_ops", self.limits.max_batch_ops),
            ("pool_size", self.pool_size),
        ] {
            if n == 0 {
                return Err(Error::InvalidSetting {
                    setting,
                    expected: "at least 1",
                    actual: n.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Open the store.
    ///
    /// | URL | backend |
    /// |---|---|
    /// | `memory:` | a new in-memory store |
    /// | `sled:<path>` | sled in directory `<path>` (feature `sled`) |
    /// | `postgres://...`, `postgresql://...` | PostgreSQL (feature `postgres`); an optional `schema=<name>` query parameter keeps the store's tables in that schema |
    ///
    /// A setting out of its range is [`Error::InvalidSetting`].
    pub async fn open(self) -> Result<Store> {
        self.check()?;
        let url = self.url.as_str();
        let bad = |reason: &str| Error::BadUrl {
            url: crate::redact_url(url),
            reason: reason.to_owned(),
        };
        let backend: Arc<dyn Backend> = if url == "memory:" {
            Arc::new(MemoryBackend::new())
        } else if let Some(path) = url.strip_prefix("sled:") {
            if path.is_empty() {
                return Err(bad("expected a directory after `sled:`"));
            }
            #[cfg(feature = "sled")]
            {
                Arc::new(crate::backend::sled::SledBackend::open(path).await?)
            }
            #[cfg(not(feature = "sled"))]
            return Err(bad("nopi was built without the `sled` feature"));
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                Arc::new(
                    crate::backend::postgres::PostgresBackend::open(url, self.pool_size).await?,
                )
            }
            #[cfg(not(feature = "postgres"))]
            return Err(bad("nopi was built without the `postgres` feature"));
        } else {
            return Err(bad(
                "expected `memory:`, `sled:<path>` or `postgres://user@host/db`",
            ));
        };
        Ok(Store::from_backend(backend, self.limits))
    }
}

pub(crate) fn validate_tree_name(name: &str) -> Result<()> {
    let bad = |reason| {
        Err(Error::InvalidTreeName {
            name: name.chars().take(MAX_TREE_NAME + 8).collect(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("a tree name cannot be empty");
    }
    if name.len() > MAX_TREE_NAME {
        return bad("a tree name is at most 128 bytes");
    }
    if name.starts_with("__") {
        return bad("names starting with `__` are reserved");
    }
    // Non-ASCII letters are welcome (trees are often named after users or
    // rooms, whose names may be `张三`); every backend stores the name as a
    // value, never as an identifier.
    let allowed = |c: char| {
        c.is_ascii_alphanumeric()
            || "_.:/-".contains(c)
            || (!c.is_ascii() && !c.is_control() && !c.is_whitespace())
    };
    if !name.chars().all(allowed) {
        return bad(
            "a tree name may only contain A-Z, a-z, 0-9, `_.:/-` and non-ASCII characters \
             other than controls and white space",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn refused(builder: StoreBuilder) -> String {
        builder.open().await.map(drop).unwrap_err().to_string()
    }

    #[tokio::test]
    async fn zero_limits_are_refused() {
        let b = || Store::builder("memory:");
        assert_eq!(
            refused(b().max_key_size(0)).await,
            "invalid max_key_size: expected at least 1, got 0"
        );
        assert_eq!(
            refused(b().max_value_size(0)).await,
            "invalid max_value_size: expected at least 1, got 0"
        );
        assert_eq!(
            refused(b().max_batch_ops(0)).await,
            "invalid max_batch_ops: expected at least 1, got 0"
        );
    }

    #[tokio::test]
    async fn a_zero_pool_is_refused_before_any_engine_is_reached() {
        // Nothing listens there: the setting is refused first.
        let err = Store::builder("postgres://nobody@127.0.0.1:1/none")
            .pool_size(0)
            .open()
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::InvalidSetting {
                    setting: "pool_size",
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(
            refused(Store::builder("memory:").pool_size(0)).await,
            "invalid pool_size: expected at least 1, got 0"
        );
    }

    #[tokio::test]
    async fn the_smallest_allowed_limits_open() {
        let store = Store::builder("memory:")
            .max_key_size(1)
            .max_value_size(1)
            .max_batch_ops(1)
            .pool_size(1)
            .open()
            .await
            .unwrap();
        assert_eq!(store.limits().max_batch_ops, 1);
    }
}
