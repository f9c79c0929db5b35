//! Fixtures: managers over fresh stores (memory, sled, a PostgreSQL schema,
//! a fault-injecting memory store), and one-line check helpers.
#![allow(
    dead_code,
    reason = "included by several test files, each using a part; not `expect`, since the unused part differs per file"
)]
#![expect(
    unreachable_pub,
    reason = "a private test module; `pub` reads as \"shared with the test files\""
)]

use std::sync::Arc;
use std::time::Duration;

use aucheck::{AuthManager, AuthManagerBuilder, DenyReason, Member};
use nopi::Store;
use nopi::backend::memory::MemoryBackend;
use nopi::testing::{Faults, FaultyBackend};
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

/// A memory store whose operations fail on command (`nopi::testing::Faults`).
pub fn faulty_store() -> (Store, Faults) {
    FaultyBackend::memory()
}

/// A memory store whose operations fail on command, allowing batches of at
/// most `max_batch_ops` operations.
pub fn faulty_store_with_batches(max_batch_ops: usize) -> (Store, Faults) {
    let mut limits = nopi::Limits::default();
    limits.max_batch_ops = max_batch_ops;
    FaultyBackend::new(Arc::new(MemoryBackend::new())).into_store(limits)
}
