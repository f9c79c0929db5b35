//! Checks: deny by default, the cache, and failing closed.
mod support;

use std::time::Duration;

use aucheck::DenyReason;
use nopi::Store;
use nopi::testing::Ops;
use support::{allowed, builder, faulty_store, manager, refusal, user};

#[tokio::test]
async fn everything_unknown_is_refused() {
    let auth = manager().await;
    auth.by("root").create_group("admins", ["*"]).await.unwrap();
    user(&auth, "root", Some("admins")).await;
    let long = "x".repeat(100_000);
    let cases: &[(&str, &str, DenyReason)] = &[
        ("root", "no.such", DenyReason::UnknownPermission),
        ("root", "", DenyReason::UnknownPermission),
        ("root", "*", DenyReason::UnknownPermission),
        ("root", &long, DenyReason::UnknownPermission),
        ("mallory", "group.read", DenyReason::UnknownUser),
        ("", "group.read", DenyReason::UnknownUser),
        ("ro\0ot", "group.read", DenyReason::UnknownUser),
        (&long, "group.read", DenyReason::UnknownUser),
    ];
    for (user, permission, reason) in cases {
        let err = auth.check(user, permission).await.unwrap_err();
        assert_eq!(&err.reason, reason, "check({user:.20?}, {permission:.20?})");
        assert!(
            err.to_string().len() < 600,
            "the message echoes a bounded input"
        );
    }
    // The same name twice: the second answer comes from the cache and agrees.
    assert_eq!(
        refusal(&auth, "mallory", "group.read").await,
        Some(DenyReason::UnknownUser)
    );
    // A user who is created later is not stuck as unknown.
    user(&auth, "mallory", Some("admins")).await;
    assert!(allowed(&auth, "mallory", "group.read").await);
}

#[tokio::test]
async fn a_user_in_no_group_with_no_grants_holds_nothing() {
    let auth = manager().await;
    user(&auth, "nobody", None).await;
    for p in support::PERMISSIONS {
        assert_eq!(
            refusal(&auth, "nobody", p).await,
            Some(DenyReason::NotGranted),
            "{p}"
        );
    }
}

#[tokio::test]
async fn a_tiny_cache_still_answers_right() {
    let auth = builder(&Store::memory())
        .cache_capacity(1)
        .group("a", ["group.read"])
        .group("b", ["group.post"])
        .build()
        .await
        .unwrap();
    for i in 0..10 {
        user(
            &auth,
            &format!("u{i}"),
            Some(if i % 2 == 0 { "a" } else { "b" }),
        )
        .await;
    }
    for round in 0..3 {
        for i in 0..10 {
            let name = format!("u{i}");
            assert_eq!(
                allowed(&auth, &name, "group.read").await,
                i % 2 == 0,
                "{round}"
            );
            assert_eq!(
                allowed(&auth, &name, "group.post").await,
                i % 2 == 1,
                "{round}"
            );
        }
    }
}

#[tokio::test]
async fn checks_fail_closed_when_the_store_is_unreachable_past_the_bound() {
    let (store, faults) = faulty_store();
    let auth = builder(&store)
        .max_staleness(Duration::from_millis(50))
        .group("members", ["group.read"])
        .build()
        .await
        .unwrap();
    user(&auth, "alice", Some("members")).await;
    assert!(allowed(&auth, "alice", "group.read").await); // cached now

    faults.fail(Ops::ALL);
    // Once the last successful refresh is older than the bound, the cached
    // grant is no longer trusted.
    support::eventually(Duration::from_secs(10), "checks refused", || async {
        matches!(
            refusal(&auth, "alice", "group.read").await,
            Some(DenyReason::Unavailable(_))
        )
    })
    .await;
    assert!(auth.refresh().await.is_err());

    faults.heal();
    assert!(allowed(&auth, "alice", "group.read").await);
}

#[tokio::test]
async fn concurrent_checks_and_changes_agree_in_the_end() {
    let auth = builder(&Store::memory())
        .group("a", ["group.read"])
        .group("b", ["group.post"])
        .build()
        .await
        .unwrap();
    for i in 0..20 {
        user(&auth, &format!("u{i}"), Some("a")).await;
    }
    let checker = {
        let auth = auth.clone();
        tokio::spawn(async move {
            for _ in 0..50 {
                for i in 0..20 {
                    let _ = auth.check(&format!("u{i}"), "group.read").await;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    for i in 0..20 {
        auth.by("root").assign(&format!("u{i}"), "b").await.unwrap();
        tokio::task::yield_now().await;
    }
    checker.await.unwrap();
    for i in 0..20 {
        let name = format!("u{i}");
        assert!(!allowed(&auth, &name, "group.read").await, "{name}");
        assert!(allowed(&auth, &name, "group.post").await, "{name}");
    }
}
