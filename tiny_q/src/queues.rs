//! The set of queues in one tree: catalog, handles, group commit.

use std::collections::HashMap;
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use nopi::{Batch, Scan, Store, Tree};

use crate::options::StoredMeta;
use crate::queue::{SCAN_ENTRIES, Shared, next_scan_limit};
use crate::{Error, Queue, QueueOptions, Result, frame, keys};
use nopi::GroupCommit;

/// Longest queue name, in bytes.
pub const MAX_QUEUE_NAME: usize = 200;

/// The tree [`Queues::new`] uses.
pub const DEFAULT_TREE: &str = "tiny_q";

/// Default for [`QueuesBuilder::max_item_size`]: 1 MiB.
pub const DEFAULT_MAX_ITEM_SIZE: usize = 1 << 20;

/// What every queue of one [`Queues`] shares.
pub(crate) struct Inner {
    pub(crate) tree: Tree,
    pub(crate) tree_name: String,
    pub(crate) max_item_size: usize,
    pub(crate) max_batch_items: usize,
    pub(crate) commit: GroupCommit,
    /// Queue states in use, so that every handle to one queue shares one.
    registry: Mutex<Registry>,
    /// Serializes create, open-from-disk and destroy.
    catalog: tokio::sync::Mutex<()>,
}

#[derive(Default)]
struct Registry {
    open: HashMap<String, Weak<Shared>>,
    prune_at: usize,
}

impl Inner {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        // Each critical section is one map operation: a poisoned lock still
        // guards a valid map.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn live(&self, name: &str) -> Option<Arc<Shared>> {
        self.registry().open.get(name).and_then(Weak::upgrade)
    }

    /// Make every write that returned before this call durable, sharing the
    /// flush with concurrent callers.
    pub(crate) async fn sync(&self) -> Result<()> {
        self.commit
            .sync(|| self.tree.flush())
            .await
            .map_err(|source| Error::Flush {
                tree: self.tree_name.clone(),
                source,
            })
    }
}

/// Named, persistent FIFO queues in one tree of a [`nopi::Store`].
///
/// Cheap to clone, `Send` and `Sync`: every clone shares the queues, their
/// in-memory state and the group commit. Use one `Queues` per tree and
/// process: two `Queues` values over the same tree of the same store (or
/// anything else writing that tree) would each think they own its items.
///
/// See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct Queues {
    inner: Arc<Inner>,
}

impl fmt::Debug for Queues {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queues")
            .field("tree", &self.inner.tree_name)
            .finish_non_exhaustive()
    }
}

impl Queues {
    /// The queues in tree [`DEFAULT_TREE`] of `store`, with default limits.
    pub async fn new(store: &Store) -> Result<Queues> {
        Self::builder(store).build().await
    }

    /// A builder to choose the tree and limits.
    pub fn builder(store: &Store) -> QueuesBuilder {
        let max_value = store.limits().max_value_size.saturating_sub(frame::HEADER);
        QueuesBuilder {
            store: store.clone(),
            tree: DEFAULT_TREE.to_owned(),
            max_item_size: DEFAULT_MAX_ITEM_SIZE.min(max_value),
            max_batch_items: None,
        }
    }

    /// The name of the tree holding these queues.
    pub fn tree_name(&self) -> &str {
        &self.inner.tree_name
    }

    /// Create the queue `name`; [`Error::AlreadyExists`] if there is one.
    pub async fn create(&self, name: &str, options: QueueOptions) -> Result<Queue> {
        check_name(name)?;
        let options = options.validate()?;
        let _catalog = self.inner.catalog.lock().await;
        self.create_locked(name, options).await
    }

    /// Open the existing queue `name`; [`Error::NotFound`] if there is none.
    pub async fn open(&self, name: &str) -> Result<Queue> {
        check_name(name)?;
        if let Some(shared) = self.inner.live(name) {
            return Ok(Queue::new(shared));
        }
        let _catalog = self.inner.catalog.lock().await;
        match self.open_locked(name).await? {
            Some(queue) => Ok(queue),
            None => Err(Error::NotFound {
                queue: name.to_owned(),
            }),
        }
    }

    /// Open the queue `name`, creating it with `options` if there is none.
    /// An existing queue keeps the options it was created with.
    pub async fn open_or_create(&self, name: &str, options: QueueOptions) -> Result<Queue> {
        check_name(name)?;
        let options = options.validate()?;
        if let Some(shared) = self.inner.live(name) {
            return Ok(Queue::new(shared));
        }
        let _catalog = self.inner.catalog.lock().await;
        match self.open_locked(name).await? {
            Some(queue) => Ok(queue),
            None => self.create_locked(name, options).await,
        }
    }

    /// The names of every queue, sorted by their UTF-8 bytes.
    pub async fn list(&self) -> Result<Vec<String>> {
        let inner = &self.inner;
        let entries = inner
            .tree
            .scan(Scan::prefix([keys::CATALOG]))
            .await
            .map_err(Error::store(&inner.tree_name))?;
        entries
            .into_iter()
            .map(|(k, _)| {
                String::from_utf8(k[1..].to_vec()).map_err(|_| Error::CorruptQueue {
                    queue: k[1..].escape_ascii().to_string(),
                    reason: "its name is not UTF-8".into(),
                })
            })
            .collect()
    }

    /// Delete the queue `name` and its items; `false` if there was none.
    ///
    /// Handles to it that are still held fail with [`Error::Destroyed`] from
    /// then on, and waiting [`pop_wait`](Queue::pop_wait)s return that error.
    /// The catalog entry goes first, in one atomic write, so a crash midway
    /// leaves no half-destroyed queue: the remaining items are removed by the
    /// next [`Queues::new`].
    pub async fn destroy(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let inner = &self.inner;
        let _catalog = inner.catalog.lock().await;
        let catalog_key = keys::catalog(name);
        let Some(raw) = inner
            .tree
            .get(&catalog_key)
            .await
            .map_err(Error::storage(name))?
        else {
            return Ok(false);
        };
        let meta = decode_meta(name, &raw)?;
        let live = inner.registry().open.remove(name).and_then(|w| w.upgrade());
        // Hold the live state while the catalog entry goes, so that no push
        // lands under the dead id once the purge has begun.
        let mut slot = match &live {
            Some(shared) => Some(shared.lock_slot().await),
            None => None,
        };
        let batch = Batch::new()
            .expect(&catalog_key, Some(&raw))
            .remove(&catalog_key)
            .put(keys::tombstone(meta.id), name);
        if let Err(e) = inner.tree.apply(batch).await {
            if let Some(shared) = &live {
                inner
                    .registry()
                    .open
                    .insert(name.to_owned(), Arc::downgrade(shared));
            }
            return Err(Error::Storage {
                queue: name.to_owned(),
                source: e,
            });
        }
        if let Some(slot) = &mut slot {
            slot.destroy();
        }
        drop(slot);
        if let Some(shared) = &live {
            shared.notify_all();
        }
        purge(&inner.tree, meta.id, inner.max_batch_items * 2)
            .await
            .map_err(Error::storage(name))?;
        Ok(true)
    }

    /// Make every write to these queues that returned before this call
    /// durable (pushes of [`Durability::Buffered`](crate::Durability::Buffered)
    /// queues, pops, acks), sharing the flush with concurrent durable pushes.
    pub async fn flush(&self) -> Result<()> {
        self.inner.sync().await
    }

    async fn open_locked(&self, name: &str) -> Result<Option<Queue>> {
        if let Some(shared) = self.inner.live(name) {
            return Ok(Some(Queue::new(shared)));
        }
        let raw = self
            .inner
            .tree
            .get(keys::catalog(name))
            .await
            .map_err(Error::storage(name))?;
        let Some(raw) = raw else { return Ok(None) };
        let meta = decode_meta(name, &raw)?;
        let options = meta.options().map_err(|e| Error::CorruptQueue {
            queue: name.to_owned(),
            reason: format!("stored options are out of range: {e}"),
        })?;
        Ok(Some(self.register(name, meta.id, options)))
    }

    async fn create_locked(&self, name: &str, options: QueueOptions) -> Result<Queue> {
        let inner = &self.inner;
        let catalog_key = keys::catalog(name);
        let storage = |e| Error::Storage {
            queue: name.to_owned(),
            source: e,
        };
        if inner
            .tree
            .get(&catalog_key)
            .await
            .map_err(storage)?
            .is_some()
        {
            return Err(Error::AlreadyExists {
                queue: name.to_owned(),
            });
        }
        let counter = inner.tree.get(keys::NEXT_ID).await.map_err(storage)?;
        let id = match &counter {
            None => 1,
            Some(raw) => match <[u8; 8]>::try_from(raw.as_slice()) {
                Ok(bytes) => u64::from_be_bytes(bytes),
                Err(_) => {
                    return Err(Error::CorruptQueue {
                        queue: name.to_owned(),
                        reason: format!(
                            "the queue id counter holds {} bytes, expected 8",
                            raw.len()
                        ),
                    });
                }
            },
        };
        let next = id.checked_add(1).ok_or_else(|| Error::CorruptQueue {
            queue: name.to_owned(),
            reason: "queue ids are exhausted".into(),
        })?;
        let meta = serde_json::to_vec(&options.to_stored(id)).map_err(|source| Error::Encode {
            queue: name.to_owned(),
            source,
        })?;
        let batch = Batch::new()
            .expect(keys::NEXT_ID, counter.as_deref())
            .expect_absent(&catalog_key)
            .put(keys::NEXT_ID, next.to_be_bytes())
            .put(&catalog_key, meta);
        inner.tree.apply(batch).await.map_err(storage)?;
        Ok(self.register(name, id, options))
    }

    /// The handle for queue `name` (id `id`), sharing the state of any live one.
    fn register(&self, name: &str, id: u64, options: QueueOptions) -> Queue {
        let mut registry = self.inner.registry();
        if let Some(shared) = registry.open.get(name).and_then(Weak::upgrade)
            && shared.id == id
        {
            return Queue::new(shared);
        }
        let shared = Arc::new(Shared::new(
            self.inner.clone(),
            name.to_owned(),
            id,
            options,
        ));
        if registry.open.len() >= registry.prune_at {
            registry.open.retain(|_, w| w.strong_count() > 0);
            registry.prune_at = (registry.open.len() * 2).max(64);
        }
        registry
            .open
            .insert(name.to_owned(), Arc::downgrade(&shared));
        Queue::new(shared)
    }
}

/// Chooses the tree and limits of a [`Queues`]; see [`Queues::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct QueuesBuilder {
    store: Store,
    tree: String,
    max_item_size: usize,
    max_batch_items: Option<usize>,
}

impl QueuesBuilder {
    /// The tree holding the queues (default [`DEFAULT_TREE`]). Separate trees
    /// are separate sets of queues.
    pub fn tree(mut self, name: impl Into<String>) -> Self {
        self.tree = name.into();
        self
    }

    /// Largest item in bytes (default 1 MiB, at most the store's value limit
    /// minus 5 bytes of framing). Typed items count once serialized.
    pub fn max_item_size(mut self, bytes: usize) -> Self {
        self.max_item_size = bytes;
        self
    }

    /// Most items in one [`push_batch`](Queue::push_batch) (default and
    /// maximum: half the store's batch limit, since a full
    /// [`Overflow::DropOldest`](crate::Overflow::DropOldest) queue also
    /// removes one item per item pushed).
    pub fn max_batch_items(mut self, items: usize) -> Self {
        self.max_batch_items = Some(items);
        self
    }

    /// Open the tree, check its layout, and finish removing the items of
    /// queues destroyed before a crash.
    pub async fn build(self) -> Result<Queues> {
        let limits = self.store.limits();
        let max_value = limits.max_value_size.saturating_sub(frame::HEADER);
        if !(1..=max_value).contains(&self.max_item_size) {
            return Err(Error::option(
                "max item size",
                format!("1 to {max_value} bytes (the store's value limit minus the 5-byte header)"),
                self.max_item_size,
            ));
        }
        let batch_limit = limits.max_batch_ops / 2;
        let max_batch_items = self.max_batch_items.unwrap_or(batch_limit);
        if !(1..=batch_limit).contains(&max_batch_items) {
            return Err(Error::option(
                "max batch items",
                format!("1 to {batch_limit} (half the store's batch limit)"),
                max_batch_items,
            ));
        }
        let name = self.tree;
        let tree = self.store.tree(&name).await.map_err(Error::store(&name))?;
        check_layout(&tree, &name).await?;
        let tombstones = tree
            .scan(Scan::prefix([keys::TOMBSTONE]))
            .await
            .map_err(Error::store(&name))?;
        for (key, value) in tombstones {
            let queue = String::from_utf8_lossy(&value).into_owned();
            let Some(id) = keys::parse_tombstone(&key) else {
                return Err(Error::CorruptQueue {
                    queue,
                    reason: format!("malformed tombstone key {}", key.escape_ascii()),
                });
            };
            purge(&tree, id, limits.max_batch_ops)
                .await
                .map_err(Error::storage(&queue))?;
        }
        Ok(Queues {
            inner: Arc::new(Inner {
                tree,
                tree_name: name,
                max_item_size: self.max_item_size,
                max_batch_items,
                commit: GroupCommit::default(),
                registry: Mutex::new(Registry::default()),
                catalog: tokio::sync::Mutex::new(()),
            }),
        })
    }
}

/// Check (or, in an empty tree, write) the layout marker.
async fn check_layout(tree: &Tree, name: &str) -> Result<()> {
    let fail = Error::store(name);
    match tree.get(keys::LAYOUT).await.map_err(fail)? {
        Some(v) if v == [keys::LAYOUT_VERSION] => Ok(()),
        Some(v) => Err(Error::UnsupportedLayout {
            tree: name.to_owned(),
            found: format!("\"{}\"", v.escape_ascii()),
            expected: keys::LAYOUT_VERSION,
        }),
        None => {
            if !tree.is_empty().await.map_err(Error::store(name))? {
                return Err(Error::UnsupportedLayout {
                    tree: name.to_owned(),
                    found: "none (the tree holds data tiny_q did not write)".into(),
                    expected: keys::LAYOUT_VERSION,
                });
            }
            tree.insert(keys::LAYOUT, [keys::LAYOUT_VERSION])
                .await
                .map_err(Error::store(name))
        }
    }
}

/// Remove every item of queue `id`, then its tombstone.
async fn purge(tree: &Tree, id: u64, max_batch_ops: usize) -> nopi::Result<()> {
    let mut limit = *SCAN_ENTRIES.start();
    loop {
        let range = keys::item_range(id, Bound::Unbounded, None);
        let chunk = tree.scan(Scan::range(range).limit(limit)).await?;
        if chunk.is_empty() {
            break;
        }
        let bytes = chunk.iter().map(|(k, v)| k.len() + v.len()).sum();
        let mut batch = Batch::new();
        for (k, _) in &chunk {
            batch.push_remove(k);
        }
        tree.apply(batch).await?;
        limit = next_scan_limit(chunk.len(), bytes).min(max_batch_ops.max(1));
    }
    tree.remove(keys::tombstone(id)).await.map(drop)
}

fn decode_meta(name: &str, raw: &[u8]) -> Result<StoredMeta> {
    serde_json::from_slice(raw).map_err(|e| Error::CorruptQueue {
        queue: name.to_owned(),
        reason: format!("catalog entry is not valid metadata: {e}"),
    })
}

/// Names are 1 to [`MAX_QUEUE_NAME`] bytes of UTF-8 without control characters.
fn check_name(name: &str) -> Result<()> {
    let bad = |reason: String| {
        let shown: String = name.chars().take(64).collect();
        Err(Error::InvalidName {
            name: if shown.len() < name.len() {
                format!("{shown}...")
            } else {
                shown
            },
            reason,
        })
    };
    if name.is_empty() || name.len() > MAX_QUEUE_NAME {
        return bad(format!(
            "expected 1 to {MAX_QUEUE_NAME} bytes, got {}",
            name.len()
        ));
    }
    if let Some((at, c)) = name.char_indices().find(|(_, c)| c.is_control()) {
        return bad(format!(
            "expected no control characters, got {:?} at byte {at}",
            c
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, expected: &str) {
        assert_eq!(
            check_name(name).map_err(|e| e.to_string()),
            Err(expected.to_owned())
        );
    }

    #[test]
    fn bad_names_are_refused_with_the_reason() {
        check(
            "",
            r#"invalid queue name "": expected 1 to 200 bytes, got 0"#,
        );
        check(
            &"x".repeat(201),
            &format!(
                r#"invalid queue name "{}...": expected 1 to 200 bytes, got 201"#,
                "x".repeat(64)
            ),
        );
        check(
            "a\nb",
            r#"invalid queue name "a\nb": expected no control characters, got '\n' at byte 1"#,
        );
        assert!(check_name("inbox/ユーザー 7").is_ok());
        assert!(check_name(&"x".repeat(200)).is_ok());
    }
}
