//! The audit log: every change and denial, newest first.
mod support;

use std::time::{Duration, SystemTime};

use aucheck::{AuditAction, DeleteRule};
use nopi::Store;
use support::{builder, manager, user};

#[tokio::test]
async fn every_change_and_denial_is_logged_newest_first() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("members", ["group.read"]).await.unwrap();
    user(&auth, "alice", Some("members")).await;
    root.grant("alice", "user.ban").await.unwrap();
    root.revoke("alice", "user.ban").await.unwrap();
    auth.by("mod")
        .set_role("alice", "group/rust", "admin")
        .await
        .unwrap();
    // Two identical denials in a row: one entry counting both.
    let _ = auth.check_in("alice", "group.delete", "group/rust").await;
    let _ = auth.check_in("alice", "group.delete", "group/rust").await;
    root.create_group("spare", ["group.read"]).await.unwrap();
    root.set_group_permissions("spare", ["group.post"])
        .await
        .unwrap();
    root.delete_group("spare", DeleteRule::Personal)
        .await
        .unwrap();

    let log = auth.audit().newest(100).await.unwrap();
    let personal = auth.member("alice").await.unwrap().unwrap().group;
    let seen: Vec<(&str, &str, &AuditAction)> = log
        .iter()
        .map(|e| (e.actor.as_str(), e.subject.as_str(), &e.action))
        .collect();
    let expected: Vec<(&str, &str, AuditAction)> = vec![
        (
            "root",
            "spare",
            AuditAction::GroupDeleted {
                rule: "personal groups".into(),
                moved: 0,
            },
        ),
        (
            "root",
            "spare",
            AuditAction::GroupChanged {
                permissions: vec!["group.post".into()],
            },
        ),
        (
            "root",
            "spare",
            AuditAction::GroupCreated {
                permissions: vec!["group.read".into()],
            },
        ),
        (
            "alice",
            "alice",
            AuditAction::Denied {
                permission: "group.delete".into(),
                scope: Some("group/rust".into()),
                reason: "not granted".into(),
                count: 2,
            },
        ),
        (
            "mod",
            "alice",
            AuditAction::RoleSet {
                scope: "group/rust".into(),
                role: "admin".into(),
            },
        ),
        (
            "root",
            "alice",
            AuditAction::Revoked {
                permission: "user.ban".into(),
                group: personal.clone(),
            },
        ),
        (
            "root",
            "alice",
            AuditAction::Granted {
                permission: "user.ban".into(),
                group: personal.clone(),
            },
        ),
        (
            "root",
            "alice",
            AuditAction::UserCreated {
                group: "members".into(),
            },
        ),
        (
            "root",
            "members",
            AuditAction::GroupCreated {
                permissions: vec!["group.read".into()],
            },
        ),
    ];
    let expected: Vec<(&str, &str, &AuditAction)> =
        expected.iter().map(|(a, s, x)| (*a, *s, x)).collect();
    assert_eq!(seen, expected);
    for pair in log.windows(2) {
        assert!(pair[0].id > pair[1].id && pair[0].at >= pair[1].at);
    }
    let now = SystemTime::now();
    assert!(
        log.iter()
            .all(|e| e.at <= now && e.at > now - Duration::from_secs(60))
    );
}

#[tokio::test]
async fn the_log_pages_backwards_and_prunes() {
    let auth = manager().await;
    for i in 0..25 {
        auth.by("root")
            .create_group(&format!("g{i:02}"), ["group.read"])
            .await
            .unwrap();
    }
    let log = auth.audit();
    let first = log.newest(10).await.unwrap();
    let second = log.before(first[9].id, 10).await.unwrap();
    let third = log.before(second[9].id, 10).await.unwrap();
    let subjects: Vec<String> = [first, second, third]
        .concat()
        .into_iter()
        .map(|e| e.subject)
        .collect();
    let expected: Vec<String> = (0..25).rev().map(|i| format!("g{i:02}")).collect();
    assert_eq!(subjects, expected);

    assert_eq!(log.prune_before(SystemTime::UNIX_EPOCH).await.unwrap(), 0);
    let later = SystemTime::now() + Duration::from_secs(1);
    assert_eq!(log.prune_before(later).await.unwrap(), 25);
    assert!(log.newest(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn denials_can_be_left_out() {
    let auth = builder(&Store::memory())
        .audit_denials(false)
        .build()
        .await
        .unwrap();
    assert!(auth.check("nobody", "group.read").await.is_err());
    assert!(auth.audit().newest(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn denials_reach_the_log_without_reading_through_the_same_manager() {
    let store = Store::memory();
    let checker = builder(&store).build().await.unwrap();
    let reader = builder(&store).build().await.unwrap();
    assert!(checker.check("mallory", "user.admin").await.is_err());
    // The checker's background task writes its queue; another manager sees it.
    support::eventually(Duration::from_secs(10), "denial logged", || async {
        reader
            .audit()
            .newest(1)
            .await
            .unwrap()
            .first()
            .is_some_and(|e| e.subject == "mallory")
    })
    .await;
}
