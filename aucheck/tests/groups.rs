//! Shared groups: creation, changes, and deletion by each rule.
mod support;

use aucheck::{DeleteRule, Error};
use nopi::Store;
use nopi::testing::Ops;
use support::{allowed, builder, expect, faulty_store_with_batches, manager, user};

#[tokio::test]
async fn duplicate_names_and_undeclared_permissions_are_refused() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("members", ["group.read"]).await.unwrap();
    assert!(matches!(
        root.create_group("members", ["group.post"]).await,
        Err(Error::GroupExists(name)) if name == "members"
    ));
    assert!(matches!(
        root.create_group("others", ["group.read", "no.such"]).await,
        Err(Error::UnknownPermission(p)) if p == "no.such"
    ));
    assert!(matches!(
        root.create_group("bad name", ["group.read"]).await,
        Err(Error::InvalidName { .. })
    ));
    let uuid = uuid::Uuid::new_v4().to_string();
    assert!(matches!(
        root.create_group(&uuid, ["group.read"]).await,
        Err(Error::InvalidName { .. })
    ));
    // The refused creations left nothing behind.
    let groups = auth.groups(None, 100).await.unwrap();
    let names: Vec<_> = groups.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["members"]);
    assert_eq!(groups[0].permissions, ["group.read"]);
}

#[tokio::test]
async fn initial_groups_are_created_once_and_then_left_alone() {
    let store = Store::memory();
    let first = builder(&store)
        .group("members", ["group.read"])
        .build()
        .await
        .unwrap();
    first
        .by("root")
        .set_group_permissions("members", ["group.read", "group.post"])
        .await
        .unwrap();
    drop(first);
    let second = builder(&store)
        .group("members", ["group.read"])
        .build()
        .await
        .unwrap();
    let group = second.group("members").await.unwrap().unwrap();
    assert_eq!(group.permissions, ["group.read", "group.post"]);
}

#[tokio::test]
async fn changing_a_group_changes_its_members_at_once() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("members", ["group.read"]).await.unwrap();
    user(&auth, "alice", Some("members")).await;
    user(&auth, "bob", Some("members")).await;
    expect(
        &auth,
        &[("alice", "group.post", false), ("bob", "group.read", true)],
    )
    .await;

    root.set_group_permissions("members", ["group.post"])
        .await
        .unwrap();
    expect(
        &auth,
        &[
            ("alice", "group.post", true),
            ("alice", "group.read", false),
            ("bob", "group.post", true),
        ],
    )
    .await;
    assert!(matches!(
        root.set_group_permissions("nobody", ["group.post"]).await,
        Err(Error::UnknownGroup(_))
    ));
}

#[tokio::test]
async fn the_wildcard_holds_permissions_declared_later() {
    let store = Store::memory();
    let auth = builder(&store)
        .group("admins", ["*"])
        .build()
        .await
        .unwrap();
    user(&auth, "root", Some("admins")).await;
    for p in support::PERMISSIONS {
        assert!(allowed(&auth, "root", p).await, "{p}");
    }
    drop(auth);
    let more = builder(&store)
        .permission("group.archive")
        .build()
        .await
        .unwrap();
    assert!(allowed(&more, "root", "group.archive").await);
    assert_eq!(
        more.group("admins").await.unwrap().unwrap().permissions,
        ["*"]
    );
}

#[tokio::test]
async fn deleting_moves_users_to_a_named_group() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("readers", ["group.read"]).await.unwrap();
    root.create_group("posters", ["group.post"]).await.unwrap();
    user(&auth, "alice", Some("readers")).await;
    user(&auth, "bob", Some("readers")).await;
    user(&auth, "carol", Some("posters")).await;

    let moved = root
        .delete_group("readers", DeleteRule::move_to("posters"))
        .await
        .unwrap();
    assert_eq!(moved, 2);
    assert!(auth.group("readers").await.unwrap().is_none());
    expect(
        &auth,
        &[
            ("alice", "group.read", false),
            ("alice", "group.post", true),
            ("bob", "group.post", true),
            ("carol", "group.post", true),
        ],
    )
    .await;
    let members = auth.group_members("posters", None, 10).await.unwrap();
    assert_eq!(members, ["alice", "bob", "carol"]);
    assert_eq!(
        auth.member("alice").await.unwrap().unwrap().group,
        "posters"
    );
}

#[tokio::test]
async fn deleting_into_personal_groups_keeps_everyones_permissions() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("mods", ["group.read", "group.kick"])
        .await
        .unwrap();
    let alice = user(&auth, "alice", Some("mods")).await;
    user(&auth, "bob", Some("mods")).await;

    assert_eq!(
        root.delete_group("mods", DeleteRule::Personal)
            .await
            .unwrap(),
        2
    );
    expect(
        &auth,
        &[
            ("alice", "group.kick", true),
            ("alice", "group.read", true),
            ("alice", "group.post", false),
            ("bob", "group.kick", true),
        ],
    )
    .await;
    let member = auth.member("alice").await.unwrap().unwrap();
    assert!(member.personal);
    assert_eq!(member.group, alice.id.to_string());
    let personal = auth.group(&member.group).await.unwrap().unwrap();
    assert_eq!(personal.personal_of.as_deref(), Some("alice"));
    // Personal copies are independent: revoking from one leaves the other.
    root.revoke("alice", "group.kick").await.unwrap();
    expect(
        &auth,
        &[("alice", "group.kick", false), ("bob", "group.kick", true)],
    )
    .await;
}

#[tokio::test]
async fn deletion_rules_are_checked_before_anything_moves() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("a", ["group.read"]).await.unwrap();
    user(&auth, "alice", Some("a")).await;
    assert!(matches!(
        root.delete_group("a", DeleteRule::move_to("a")).await,
        Err(Error::MoveToSelf(_))
    ));
    assert!(matches!(
        root.delete_group("a", DeleteRule::move_to("missing")).await,
        Err(Error::UnknownGroup(g)) if g == "missing"
    ));
    assert!(matches!(
        root.delete_group("missing", DeleteRule::Personal).await,
        Err(Error::UnknownGroup(_))
    ));
    // Personal groups are not deleted directly.
    let bob = user(&auth, "bob", None).await;
    assert!(matches!(
        root.delete_group(&bob.group, DeleteRule::move_to("a"))
            .await,
        Err(Error::InvalidName { .. })
    ));
    assert!(!auth.group("a").await.unwrap().unwrap().deleting);
    assert!(allowed(&auth, "alice", "group.read").await);
}

#[tokio::test]
async fn large_groups_are_deleted_in_pages() {
    // A small batch limit makes pages of 8 users.
    let store = Store::builder("memory:")
        .max_batch_ops(40)
        .open()
        .await
        .unwrap();
    let auth = builder(&store).build().await.unwrap();
    let root = auth.by("root");
    root.create_group("big", ["group.read"]).await.unwrap();
    root.create_group("small", ["group.post"]).await.unwrap();
    for i in 0..30 {
        user(&auth, &format!("u{i:02}"), Some("big")).await;
    }
    assert_eq!(
        root.delete_group("big", DeleteRule::move_to("small"))
            .await
            .unwrap(),
        30
    );
    for i in 0..30 {
        let name = format!("u{i:02}");
        assert!(allowed(&auth, &name, "group.post").await, "{name}");
        assert!(!allowed(&auth, &name, "group.read").await, "{name}");
    }
    assert_eq!(
        auth.group_members("small", None, 100).await.unwrap().len(),
        30
    );
    // Listing pages through members in name order.
    let page = auth.group_members("small", Some("u09"), 3).await.unwrap();
    assert_eq!(page, ["u10", "u11", "u12"]);
}

#[tokio::test]
async fn an_interrupted_deletion_is_finished_by_calling_again() {
    // Small batches: pages of 8 users.
    let (store, faults) = faulty_store_with_batches(40);
    let auth = builder(&store).build().await.unwrap();
    let root = auth.by("root");
    root.create_group("big", ["group.read"]).await.unwrap();
    root.create_group("other", ["group.post"]).await.unwrap();
    for i in 0..20 {
        user(&auth, &format!("u{i:02}"), Some("big")).await;
    }

    // The mark, one page and its audit entries go through, then the store fails.
    faults.fail_after(Ops::WRITES, 3);
    let err = root
        .delete_group("big", DeleteRule::move_to("other"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(ref e) if e.is_unavailable()),
        "{err}"
    );
    faults.heal();

    let group = auth.group("big").await.unwrap().unwrap();
    assert!(group.deleting);
    // No new members while deleting; the remaining ones keep their permissions.
    user(&auth, "late", Some("other")).await;
    assert!(matches!(
        root.assign("late", "big").await,
        Err(Error::GroupDeleting(_))
    ));
    let moved_first = 8;
    let still_in_big = auth.group_members("big", None, 100).await.unwrap();
    assert_eq!(still_in_big.len(), 20 - moved_first);
    for name in &still_in_big {
        assert!(allowed(&auth, name, "group.read").await);
    }

    let moved = root
        .delete_group("big", DeleteRule::move_to("other"))
        .await
        .unwrap();
    assert_eq!(moved, 12);
    assert!(auth.group("big").await.unwrap().is_none());
    for i in 0..20 {
        assert!(allowed(&auth, &format!("u{i:02}"), "group.post").await);
    }
}
