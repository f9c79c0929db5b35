//! The `sled:<path>` backend: an embedded, crash-safe engine in one directory.
//!
//! sled operations complete in memory and never wait on the disk (its log is
//! written in the background and made durable by `flush`), so they are called
//! directly on the async task: moving each onto a blocking thread would cost
//! more than the operation. Opening (which may replay the log) and flushing
//! (which waits for the disk) do not block the runtime.
//!
//! Flushes run one at a time per database, as a blocking `flush` on a
//! blocking thread: concurrent `flush_async` calls can deadlock sled 0.34
//! (spacejam/sled#1308).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, Weak};

use async_trait::async_trait;
use sled::transaction::{ConflictableTransactionError, TransactionError};

use super::{Backend, TreeBackend};
use crate::batch::Op;
use crate::error::DisplayKey;
use crate::{Batch, CasConflict, Error, Result, Scan};

const NAME: &str = "sled";

fn fail(e: sled::Error) -> Error {
    Error::backend(NAME, e)
}

/// Databases open in this process, by canonical path.
///
/// sled locks its directory, so a second `sled::open` of the same path in one
/// process fails. Opening the same `sled:<path>` twice hands out the database
/// already open instead; it closes when the last store and tree using it drop.
fn open_dbs() -> &'static Mutex<HashMap<PathBuf, Weak<Shared>>> {
    static OPEN: OnceLock<Mutex<HashMap<PathBuf, Weak<Shared>>>> = OnceLock::new();
    OPEN.get_or_init(Default::default)
}

/// One open database and the gate its flushes pass one at a time.
#[derive(Debug)]
struct Shared {
    db: sled::Db,
    flushing: tokio::sync::Mutex<()>,
}

impl Shared {
    fn new(db: sled::Db) -> Arc<Self> {
        Arc::new(Shared {
            db,
            flushing: tokio::sync::Mutex::new(()),
        })
    }

    async fn flush(&self) -> Result<()> {
        let _one_at_a_time = self.flushing.lock().await;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| Error::backend(NAME, e))?
            .map_err(fail)
            .map(drop)
    }
}

fn open_shared(path: &Path) -> Result<Arc<Shared>> {
    let io = |e: std::io::Error| fail(sled::Error::Io(e));
    std::fs::create_dir_all(path).map_err(io)?;
    let path = path.canonicalize().map_err(io)?;
    // Held across the open so two tasks opening one path cannot race.
    let mut open = open_dbs().lock().unwrap_or_else(|e| e.into_inner());
    open.retain(|_, db| db.strong_count() > 0);
    if let Some(db) = open.get(&path).and_then(Weak::upgrade) {
        return Ok(db);
    }
    let db = Shared::new(open_retrying(&path)?);
    open.insert(path, Arc::downgrade(&db));
    Ok(db)
}

/// sled releases its directory lock from a background thread shortly after
/// the last handle drops, so an immediate reopen can find it still held:
/// retry that one error for a bounded time.
fn open_retrying(path: &Path) -> Result<sled::Db> {
    const PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);
    let start = std::time::Instant::now();
    loop {
        match sled::Config::new().path(path).open() {
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && start.elapsed() < PATIENCE =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other.map_err(fail),
        }
    }
}

/// The sled backend.
#[derive(Debug, Clone)]
pub struct SledBackend {
    db: Arc<Shared>,
}

impl SledBackend {
    /// Open (or create) the database in directory `path`, or share the one this
    /// process already has open there.
    pub async fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_owned();
        let db = tokio::task::spawn_blocking(move || open_shared(&path))
            .await
            .map_err(|e| Error::backend(NAME, e))??;
        Ok(SledBackend { db })
    }

    /// Wrap an already open sled database.
    pub fn from_db(db: sled::Db) -> Self {
        SledBackend {
            db: Shared::new(db),
        }
    }
}

#[async_trait]
impl Backend for SledBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    async fn open_tree(&self, name: &str) -> Result<Arc<dyn TreeBackend>> {
        let tree = self.db.db.open_tree(name).map_err(fail)?;
        Ok(Arc::new(SledTree {
            tree,
            db: self.db.clone(),
        }))
    }

    async fn tree_names(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .db
            .db
            .tree_names()
            .into_iter()
            .filter_map(|n| String::from_utf8(n.to_vec()).ok())
            // sled's own default tree; nopi never hands out names starting with `__`.
            .filter(|n| !n.starts_with("__"))
            .collect();
        names.sort();
        Ok(names)
    }

    async fn drop_tree(&self, name: &str) -> Result<bool> {
        self.db.db.drop_tree(name).map_err(fail)
    }

    async fn flush(&self) -> Result<()> {
        self.db.flush().await
    }
}

/// One tree of the sled backend.
#[derive(Debug)]
pub struct SledTree {
    tree: sled::Tree,
    /// Keeps the database registered as open while this tree is in use, and
    /// flushes it (a sled tree's flush is its database's).
    db: Arc<Shared>,
}

#[async_trait]
impl TreeBackend for SledTree {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.get(key).map_err(fail)?.map(|v| v.to_vec()))
    }

    async fn insert(&self, key: &[u8], value: &[u8]) -> Result<()> {
        self.tree.insert(key, value).map_err(fail).map(drop)
    }

    async fn remove(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree.remove(key).map_err(fail)?.map(|v| v.to_vec()))
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> Result<Result<(), CasConflict>> {
        Ok(self
            .tree
            .compare_and_swap(key, expected, new)
            .map_err(fail)?
            .map_err(|e| CasConflict {
                current: e.current.map(|v| v.to_vec()),
            }))
    }

    async fn scan(&self, scan: &Scan) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if scan.is_empty_range() {
            return Ok(Vec::new());
        }
        let range = self.tree.range::<&[u8], _>((scan.lower(), scan.upper()));
        let limit = scan.max_entries().unwrap_or(usize::MAX);
        let pair = |r: sled::Result<(sled::IVec, sled::IVec)>| {
            r.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(fail)
        };
        if scan.is_reverse() {
            range.rev().take(limit).map(pair).collect()
        } else {
            range.take(limit).map(pair).collect()
        }
    }

    async fn apply(&self, batch: Batch) -> Result<()> {
        if batch.expects.is_empty() {
            let mut writes = sled::Batch::default();
            for op in batch.ops {
                match op {
                    Op::Put(k, v) => writes.insert(k, v),
                    Op::Remove(k) => writes.remove(k),
                }
            }
            return self.tree.apply_batch(writes).map_err(fail);
        }
        let outcome = self.tree.transaction(|tx| {
            for (key, expected) in &batch.expects {
                let current = tx.get(key)?;
                if current.as_deref() != expected.as_deref() {
                    return Err(ConflictableTransactionError::Abort(key.clone()));
                }
            }
            for op in &batch.ops {
                match op {
                    Op::Put(k, v) => {
                        tx.insert(k.as_slice(), v.as_slice())?;
                    }
                    Op::Remove(k) => {
                        tx.remove(k.as_slice())?;
                    }
                }
            }
            Ok(())
        });
        match outcome {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(key)) => Err(Error::Conflict {
                key: DisplayKey(key),
            }),
            Err(TransactionError::Storage(e)) => Err(fail(e)),
        }
    }

    async fn len(&self) -> Result<usize> {
        Ok(self.tree.len())
    }

    async fn flush(&self) -> Result<()> {
        self.db.flush().await
    }
}
