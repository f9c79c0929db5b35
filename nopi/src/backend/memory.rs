//! An in-process backend: a `BTreeMap` per tree behind a lock. Nothing survives
//! the process; for tests and for data that is rebuilt at start.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock, RwLockReadGuard, RwLockWriteGuard};

use async_trait::async_trait;

use super::{Backend, TreeBackend};
use crate::batch::Op;
use crate::error::DisplayKey;
use crate::{Batch, CasConflict, Error, Result, Scan};

/// The `memory:` backend.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    trees: Mutex<HashMap<String, Arc<MemoryTree>>>,
}

impl MemoryBackend {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn trees(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<MemoryTree>>> {
        // A panic while holding this lock cannot leave the map half-updated:
        // every critical section is a single insert, remove or read.
        self.trees.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl Backend for MemoryBackend {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn open_tree(&self, name: &str) -> Result<Arc<dyn TreeBackend>> {
        let tree = self.trees().entry(name.to_owned()).or_default().clone();
        Ok(tree)
    }

    async fn tree_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self.trees().keys().cloned().collect();
        names.sort();
        Ok(names)
    }

    async fn drop_tree(&self, name: &str) -> Result<bool> {
        let dropped = self.trees().remove(name);
        if let Some(tree) = &dropped {
            // Handles still held elsewhere see an empty tree, as on other backends.
            tree.write().clear();
        }
        Ok(dropped.is_some())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// One tree of the memory backend.
#[derive(Debug, Default)]
pub struct MemoryTree {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl MemoryTree {
    // Writers never leave the map inconsistent mid-operation (each mutation is
    // a single BTreeMap call, batches are checked before the first write), so a
    // poisoned lock still guards a valid map.
    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<Vec<u8>, Vec<u8>>> {
        self.map.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl TreeBackend for MemoryTree {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.read().get(key).cloned())
    }

    async fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.write().insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    async fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.write().remove(key))
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>> {
        let mut map = self.write();
        let current = map.get(key).map(Vec::as_slice);
        if current != expected {
            return Ok(Err(CasConflict {
                current: current.map(<[u8]>::to_vec),
            }));
        }
        match new {
            Some(v) => map.insert(key.to_vec(), v.to_vec()),
            None => map.remove(key),
        };
        Ok(Ok(()))
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if scan.is_empty_range() {
            return Ok(Vec::new());
        }
        let map = self.read();
        let range = map.range::<[u8], _>((scan.lower(), scan.upper()));
        let limit = scan.max_entries().unwrap_or(usize::MAX);
        let pair = |(k, v): (&Vec<u8>, &Vec<u8>)| (k.clone(), v.clone());
        Ok(if scan.is_reverse() {
            range.rev().take(limit).map(pair).collect()
        } else {
            range.take(limit).map(pair).collect()
        })
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        let mut map = self.write();
        for (key, expected) in &batch.expects {
            if map.get(key) != expected.as_ref() {
                return Err(Error::Conflict {
                    key: DisplayKey::new(key),
                });
            }
        }
        for op in batch.ops {
            match op {
                Op::Put(k, v) => map.insert(k, v),
                Op::Remove(k) => map.remove(&k),
            };
        }
        Ok(())
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.read().len())
    }

    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}
