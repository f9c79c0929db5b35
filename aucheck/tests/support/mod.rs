//! Fixtures: managers over fresh stores (memory, sled, a PostgreSQL schema,
//! a fault-injecting memory store), and one-line check helpers.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aucheck::{AuthManager, AuthManagerBuilder, DenyReason, Member};
use nopi::backend::memory::MemoryBackend;
use nopi::backend::{Backend, TreeBackend};
use nopi::{Batch, CasConflict, Scan, Store};
use tiny_storage::{NewUser, PasswordParams};

/// The permissions every fixture declares.
pub const PERMISSIONS: &[&str] = &[
    "group.create",
    "group.read",
    "group.post",
    "group.kick",
    "group.delete",
    "user.ban",
    "user.admin",
];

/// A builder with [`PERMISSIONS`], the chat roles owner/admin/member and
/// cheap password hashing.
pub fn builder(store: &Store) -> AuthManagerBuilder {
    AuthManager::builder(store)
        .permissions(PERMISSIONS.iter().copied())
        .role(
            "owner",
            ["group.read", "group.post", "group.kick", "group.delete"],
        )
        .role("admin", ["group.read", "group.post", "group.kick"])
        .role("member", ["group.read", "group.post"])
        .password_params(PasswordParams::insecure_for_tests())
}

/// A manager over a fresh memory store.
pub async fn manager() -> AuthManager {
    builder(&Store::memory()).build().await.expect("build")
}

/// Create `name` (password "pw") in `group` (or a personal group).
pub async fn user(auth: &AuthManager, name: &str, group: Option<&str>) -> Member {
    auth.by("root")
        .create_user(NewUser::new(name).password("pw"), group)
        .await
        .unwrap_or_else(|e| panic!("create user {name}: {e}"))
}

/// True when `user` holds `permission` globally.
pub async fn allowed(auth: &AuthManager, user: &str, permission: &str) -> bool {
    auth.check(user, permission).await.is_ok()
}

/// True when `user` holds `permission` on `scope`.
pub async fn allowed_in(auth: &AuthManager, user: &str, permission: &str, scope: &str) -> bool {
    auth.check_in(user, permission, scope).await.is_ok()
}

/// Assert each `(user, permission, expected)`.
pub async fn expect(auth: &AuthManager, cases: &[(&str, &str, bool)]) {
    for &(user, permission, expected) in cases {
        assert_eq!(
            allowed(auth, user, permission).await,
            expected,
            "check({user:?}, {permission:?})"
        );
    }
}

/// The reason `user` is refused `permission`, or `None` if allowed.
pub async fn refusal(auth: &AuthManager, user: &str, permission: &str) -> Option<DenyReason> {
    auth.check(user, permission).await.err().map(|e| e.reason)
}

/// Wait until `cond` holds, polling; panics after `limit` (a liveness
/// guard, not a timing assertion: the bound under test is far shorter).
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if cond().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{what}: still not true after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ----- PostgreSQL -----

/// A fresh schema in the real PostgreSQL (`nopi::testing`), dropped when
/// this is dropped.
pub struct PgSchema(nopi::testing::TempStore);

impl PgSchema {
    pub fn new() -> Self {
        PgSchema(nopi::testing::TempStore::postgres())
    }

    /// A new store handle on this schema (its own connection pool). Fails the
    /// test, with a hint, if PostgreSQL is unreachable.
    pub async fn open(&self) -> Store {
        self.0
            .builder()
            .pool_size(4)
            .open()
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "cannot open PostgreSQL at {} ({e}); start it or set DATABASE_URL",
                    self.0.url()
                )
            })
    }
}

// ----- fault injection -----

/// Switches for a [`faulty_store`].
#[derive(Debug)]
pub struct Faults {
    /// Batches still allowed before every `apply` fails; negative: never fail.
    applies_left: AtomicI64,
    /// Every read and write fails.
    down: AtomicBool,
}

impl Faults {
    /// Let `n` more batches through, then fail every batch.
    pub fn fail_applies_after(&self, n: i64) {
        self.applies_left.store(n, Ordering::SeqCst);
    }

    /// Make the store unreachable (`true`) or reachable again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Back to normal.
    pub fn heal(&self) {
        self.fail_applies_after(-1);
        self.set_down(false);
    }

    fn check(&self) -> nopi::Result<()> {
        if self.down.load(Ordering::SeqCst) {
            return Err(unavailable());
        }
        Ok(())
    }

    fn check_apply(&self) -> nopi::Result<()> {
        self.check()?;
        let left = self.applies_left.load(Ordering::SeqCst);
        if left == 0 {
            return Err(unavailable());
        }
        if left > 0 {
            self.applies_left.fetch_sub(1, Ordering::SeqCst);
        }
        Ok(())
    }
}

fn unavailable() -> nopi::Error {
    nopi::Error::Unavailable {
        backend: "faulty",
        source: "injected fault".into(),
    }
}

/// A memory store whose operations fail on command.
pub fn faulty_store() -> (Store, Arc<Faults>) {
    faulty_store_with(nopi::Limits::default())
}

/// A memory store whose operations fail on command, allowing batches of at
/// most `max_batch_ops` operations.
pub fn faulty_store_with_batches(max_batch_ops: usize) -> (Store, Arc<Faults>) {
    let mut limits = nopi::Limits::default();
    limits.max_batch_ops = max_batch_ops;
    faulty_store_with(limits)
}

fn faulty_store_with(limits: nopi::Limits) -> (Store, Arc<Faults>) {
    let faults = Arc::new(Faults {
        applies_left: AtomicI64::new(-1),
        down: AtomicBool::new(false),
    });
    let backend = Faulty {
        inner: MemoryBackend::new(),
        faults: faults.clone(),
    };
    (Store::from_backend(Arc::new(backend), limits), faults)
}

struct Faulty {
    inner: MemoryBackend,
    faults: Arc<Faults>,
}

#[async_trait]
impl Backend for Faulty {
    fn name(&self) -> &'static str {
        "faulty"
    }

    async fn open_tree(&self, name: &str) -> nopi::Result<Arc<dyn TreeBackend>> {
        self.faults.check()?;
        let inner = self.inner.open_tree(name).await?;
        Ok(Arc::new(FaultyTree {
            inner,
            faults: self.faults.clone(),
        }))
    }

    async fn tree_names(&self) -> nopi::Result<Vec<String>> {
        self.faults.check()?;
        self.inner.tree_names().await
    }

    async fn drop_tree(&self, name: &str) -> nopi::Result<bool> {
        self.faults.check()?;
        self.inner.drop_tree(name).await
    }

    async fn flush(&self) -> nopi::Result<()> {
        self.faults.check()?;
        self.inner.flush().await
    }
}

struct FaultyTree {
    inner: Arc<dyn TreeBackend>,
    faults: Arc<Faults>,
}

#[async_trait]
impl TreeBackend for FaultyTree {
    async fn get(&self, key: &[u8]) -> nopi::Result<Option<Vec<u8>>> {
        self.faults.check()?;
        self.inner.get(key).await
    }

    async fn insert(&self, key: &[u8], value: &[u8]) -> nopi::Result<()> {
        self.faults.check_apply()?;
        self.inner.insert(key, value).await
    }

    async fn remove(&self, key: &[u8]) -> nopi::Result<Option<Vec<u8>>> {
        self.faults.check_apply()?;
        self.inner.remove(key).await
    }

    async fn compare_and_swap(
        &self,
        key: &[u8],
        expected: Option<&[u8]>,
        new: Option<&[u8]>,
    ) -> nopi::Result<Result<(), CasConflict>> {
        self.faults.check_apply()?;
        self.inner.compare_and_swap(key, expected, new).await
    }

    async fn scan(&self, scan: &Scan) -> nopi::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.faults.check()?;
        self.inner.scan(scan).await
    }

    async fn apply(&self, batch: Batch) -> nopi::Result<()> {
        self.faults.check_apply()?;
        self.inner.apply(batch).await
    }

    async fn len(&self) -> nopi::Result<usize> {
        self.faults.check()?;
        self.inner.len().await
    }

    async fn flush(&self) -> nopi::Result<()> {
        self.faults.check()?;
        self.inner.flush().await
    }
}
