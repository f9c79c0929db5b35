//! Changes made through one manager reach another manager on the same store
//! within the staleness bound: on memory (one store shared in-process), sled
//! (one directory opened twice) and the real PostgreSQL (two connection pools).
//!
//! The bound is tested as the guarantee it is, not as a speed: a check that
//! starts `max_staleness` after a change committed must reflect it, on any
//! machine, because such a check re-reads the version key itself when the
//! background refresh is older than the bound.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]
mod support;

use std::time::Duration;

use aucheck::{AuthManager, DenyReason};
use nopi::Store;
use support::{PgSchema, allowed, allowed_in, builder, refusal, user};

const BOUND: Duration = Duration::from_millis(150);

async fn manager(store: &Store) -> AuthManager {
    builder(store)
        .max_staleness(BOUND)
        .group("members", ["group.read"])
        .group("mods", ["group.read", "group.kick"])
        .build()
        .await
        .expect("build")
}

/// Wait out the bound after a change: every check starting now must reflect it.
async fn wait_bound() {
    tokio::time::sleep(BOUND + Duration::from_millis(1)).await;
}

async fn cross_manager_suite(a: AuthManager, b: AuthManager) {
    user(&a, "alice", Some("members")).await;
    user(&a, "bob", Some("members")).await;
    // b loads both from the store and caches them.
    assert!(allowed(&b, "alice", "group.read").await);
    assert!(!allowed(&b, "alice", "group.kick").await);
    assert!(!allowed(&b, "bob", "group.kick").await);

    // A move through a: visible to a at once, to b within the bound.
    a.by("root").assign("alice", "mods").await.unwrap();
    assert!(allowed(&a, "alice", "group.kick").await);
    wait_bound().await;
    assert!(
        allowed(&b, "alice", "group.kick").await,
        "b sees alice moved"
    );

    // A group change through b, picked up by a's explicit refresh.
    b.by("root")
        .set_group_permissions("members", ["group.read", "group.post"])
        .await
        .unwrap();
    a.refresh().await.unwrap();
    assert!(allowed(&a, "bob", "group.post").await);

    // Copy on write through a.
    a.by("root").grant("bob", "user.ban").await.unwrap();
    wait_bound().await;
    assert!(allowed(&b, "bob", "user.ban").await, "b sees bob's grant");
    assert!(!allowed(&b, "alice", "user.ban").await);

    // A scoped role through b.
    assert!(!allowed_in(&a, "bob", "group.kick", "group/rust").await);
    b.by("root")
        .set_role("bob", "group/rust", "admin")
        .await
        .unwrap();
    wait_bound().await;
    assert!(
        allowed_in(&a, "bob", "group.kick", "group/rust").await,
        "a sees bob's role"
    );

    // Deleting a group through a moves alice for b too.
    a.by("root")
        .delete_group("mods", aucheck::DeleteRule::move_to("members"))
        .await
        .unwrap();
    wait_bound().await;
    assert!(
        !allowed(&b, "alice", "group.kick").await,
        "b sees mods deleted"
    );
    assert!(allowed(&b, "alice", "group.post").await);

    // Deleting a user through b.
    b.by("root").delete_user("bob").await.unwrap();
    wait_bound().await;
    assert_eq!(
        refusal(&a, "bob", "group.read").await,
        Some(DenyReason::UnknownUser)
    );
    assert!(!allowed_in(&a, "bob", "group.kick", "group/rust").await);
}

#[tokio::test]
async fn memory_managers_sharing_a_store() {
    let store = Store::memory();
    let a = manager(&store).await;
    let b = manager(&store).await;
    cross_manager_suite(a, b).await;
}

#[tokio::test]
async fn sled_managers_on_one_directory() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled:{}", dir.path().join("db").display());
    let a = manager(&nopi::open(&url).await.unwrap()).await;
    let b = manager(&nopi::open(&url).await.unwrap()).await;
    cross_manager_suite(a, b).await;
}

#[tokio::test]
async fn postgres_managers_with_their_own_pools() {
    let schema = PgSchema::new();
    let a = manager(&schema.open().await).await;
    let b = manager(&schema.open().await).await;
    cross_manager_suite(a, b).await;
}

#[tokio::test]
async fn postgres_concurrent_changes_from_two_managers_are_serialized() {
    let schema = PgSchema::new();
    let a = manager(&schema.open().await).await;
    let b = manager(&schema.open().await).await;
    for i in 0..10 {
        user(&a, &format!("u{i}"), None).await;
    }
    // Both managers grant to the same users at once: every grant lands.
    let grant_all = |auth: AuthManager, permission: &'static str| async move {
        for i in 0..10 {
            auth.by("root")
                .grant(&format!("u{i}"), permission)
                .await
                .unwrap();
        }
    };
    let (ra, rb) = tokio::join!(
        tokio::spawn(grant_all(a.clone(), "group.post")),
        tokio::spawn(grant_all(b.clone(), "group.kick"))
    );
    ra.unwrap();
    rb.unwrap();
    a.refresh().await.unwrap();
    b.refresh().await.unwrap();
    for i in 0..10 {
        let name = format!("u{i}");
        for auth in [&a, &b] {
            assert!(allowed(auth, &name, "group.post").await, "{name}");
            assert!(allowed(auth, &name, "group.kick").await, "{name}");
        }
    }
}

#[tokio::test]
async fn a_manager_that_missed_more_than_the_change_log_starts_over() {
    let store = Store::memory();
    let a = manager(&store).await;
    // b does not refresh by itself during this test.
    let b = builder(&store)
        .max_staleness(Duration::from_secs(3600))
        .build()
        .await
        .unwrap();
    user(&a, "alice", Some("members")).await;
    assert!(!allowed(&b, "alice", "group.post").await); // cached in b
    // More changes than the change log keeps, none touching alice...
    for i in 0..1100 {
        let perms: &[&str] = if i % 2 == 0 {
            &["group.kick"]
        } else {
            &["group.read"]
        };
        a.by("root")
            .set_group_permissions("mods", perms)
            .await
            .unwrap();
    }
    // ...and one that does.
    a.by("root")
        .set_group_permissions("members", ["group.post"])
        .await
        .unwrap();
    b.refresh().await.unwrap();
    assert!(allowed(&b, "alice", "group.post").await);
}
