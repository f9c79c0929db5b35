//! Users: creation with or without a group, copy on write, assignment and deletion.
mod support;

use aucheck::{AuthManager, BuildError, Error};
use nopi::Store;
use support::{allowed, builder, expect, manager, user};
use tiny_storage::{Attribute, NewUser, Validator};

#[tokio::test]
async fn a_user_without_a_group_gets_an_empty_personal_group_named_by_their_uuid() {
    let auth = manager().await;
    let alice = user(&auth, "alice", None).await;
    assert!(alice.personal);
    assert_eq!(alice.group, alice.id.hyphenated().to_string());
    let group = auth.group(&alice.group).await.unwrap().unwrap();
    assert_eq!(group.personal_of.as_deref(), Some("alice"));
    assert!(group.permissions.is_empty());
    for p in support::PERMISSIONS {
        assert!(!allowed(&auth, "alice", p).await, "{p}");
    }
    // Personal groups are not listed with the shared ones.
    assert!(auth.groups(None, 10).await.unwrap().is_empty());
    // The user itself is in tiny_storage, password hashed.
    auth.users()
        .verify("alice", "password", "pw")
        .await
        .expect("login");
}

#[tokio::test]
async fn granting_one_user_copies_their_group_and_leaves_the_others_alone() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("members", ["group.read", "group.post"])
        .await
        .unwrap();
    let alice = user(&auth, "alice", Some("members")).await;
    user(&auth, "bob", Some("members")).await;
    assert!(!alice.personal);

    assert!(root.grant("alice", "group.kick").await.unwrap());
    expect(
        &auth,
        &[
            ("alice", "group.kick", true),
            ("alice", "group.read", true), // copied from the group
            ("alice", "group.post", true),
            ("bob", "group.kick", false), // not affected
            ("bob", "group.read", true),
        ],
    )
    .await;
    let member = auth.member("alice").await.unwrap().unwrap();
    assert!(member.personal);
    assert_eq!(member.group, alice.id.to_string());
    assert_eq!(
        auth.group_members("members", None, 10).await.unwrap(),
        ["bob"]
    );

    // A second grant changes the personal group in place.
    assert!(root.grant("alice", "user.ban").await.unwrap());
    assert_eq!(
        auth.member("alice").await.unwrap().unwrap().group,
        member.group
    );
    // Granting what is held changes nothing.
    assert!(!root.grant("alice", "user.ban").await.unwrap());
    // The shared group no longer reaches alice.
    root.set_group_permissions("members", ["group.read"])
        .await
        .unwrap();
    expect(
        &auth,
        &[("alice", "group.post", true), ("bob", "group.post", false)],
    )
    .await;
}

#[tokio::test]
async fn revoking_from_one_user_is_copy_on_write_too() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("admins", ["*"]).await.unwrap();
    user(&auth, "alice", Some("admins")).await;
    user(&auth, "bob", Some("admins")).await;
    assert!(root.revoke("alice", "group.kick").await.unwrap());
    expect(
        &auth,
        &[
            ("alice", "group.kick", false),
            ("alice", "user.admin", true), // the wildcard was expanded, minus one
            ("bob", "group.kick", true),
        ],
    )
    .await;
    assert!(!root.revoke("alice", "group.kick").await.unwrap());
    assert_eq!(
        auth.permissions_of("alice").await.unwrap().len(),
        support::PERMISSIONS.len() - 1
    );
    assert!(matches!(
        root.grant("alice", "no.such").await,
        Err(Error::UnknownPermission(_))
    ));
}

#[tokio::test]
async fn assigning_a_shared_group_drops_the_personal_one() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("members", ["group.read"]).await.unwrap();
    let alice = user(&auth, "alice", None).await;
    root.grant("alice", "user.ban").await.unwrap();

    assert!(root.assign("alice", "members").await.unwrap());
    assert!(!root.assign("alice", "members").await.unwrap());
    expect(
        &auth,
        &[("alice", "user.ban", false), ("alice", "group.read", true)],
    )
    .await;
    assert!(auth.group(&alice.group).await.unwrap().is_none());
    assert!(matches!(
        root.assign("alice", "missing").await,
        Err(Error::UnknownGroup(_))
    ));
    assert!(matches!(
        root.assign("nobody", "members").await,
        Err(Error::UnknownUser(_))
    ));
}

#[tokio::test]
async fn deleting_a_user_removes_their_permissions_roles_and_account() {
    let auth = manager().await;
    let root = auth.by("root");
    root.create_group("members", ["group.read"]).await.unwrap();
    user(&auth, "alice", Some("members")).await;
    root.grant("alice", "user.ban").await.unwrap();
    root.set_role("alice", "group/rust", "owner").await.unwrap();
    let personal = auth.member("alice").await.unwrap().unwrap().group;

    assert!(root.delete_user("alice").await.unwrap());
    assert!(!root.delete_user("alice").await.unwrap());
    assert!(auth.member("alice").await.unwrap().is_none());
    assert!(auth.users().get("alice").await.unwrap().is_none());
    assert!(auth.group(&personal).await.unwrap().is_none());
    assert!(
        auth.scope_members("group/rust", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!allowed(&auth, "alice", "group.read").await);

    // The name can be taken again, with nothing inherited.
    user(&auth, "alice", None).await;
    assert!(!allowed(&auth, "alice", "user.ban").await);
    assert!(!support::allowed_in(&auth, "alice", "group.kick", "group/rust").await);
}

#[tokio::test]
async fn a_failed_creation_leaves_no_user_behind() {
    let auth = manager().await;
    let root = auth.by("root");
    assert!(matches!(
        root.create_user(NewUser::new("alice").password("pw"), Some("missing"))
            .await,
        Err(Error::UnknownGroup(_))
    ));
    assert!(auth.users().get("alice").await.unwrap().is_none());
    user(&auth, "alice", None).await;
    assert!(matches!(
        root.create_user(NewUser::new("alice").password("pw"), None)
            .await,
        Err(Error::Users(tiny_storage::Error::NameTaken { .. }))
    ));
}

#[tokio::test]
async fn attributes_are_validated_by_tiny_storage() {
    let store = Store::memory();
    let auth = builder(&store)
        .attribute(Attribute::text("email").validate(Validator::email()))
        .build()
        .await
        .unwrap();
    let root = auth.by("root");
    let bad = root
        .create_user(
            NewUser::new("alice")
                .password("pw")
                .set("email", "not an address"),
            None,
        )
        .await;
    assert!(
        matches!(bad, Err(Error::Users(tiny_storage::Error::Invalid { .. }))),
        "{bad:?}"
    );
    root.create_user(
        NewUser::new("alice")
            .password("pw")
            .set("email", "alice@example.com"),
        None,
    )
    .await
    .unwrap();
    let stored = auth.users().get("alice").await.unwrap().unwrap();
    assert_eq!(stored.text("email"), Some("alice@example.com"));

    let both = builder(&Store::memory())
        .user_model(
            tiny_storage::UserModel::builder()
                .user_name("name")
                .build()
                .unwrap(),
        )
        .attribute(Attribute::text("email"))
        .build()
        .await;
    assert!(matches!(both, Err(BuildError::ModelAndAttributes { .. })));
}

#[tokio::test]
async fn users_created_in_tiny_storage_directly_are_adopted_on_first_change() {
    let auth = manager().await;
    auth.users()
        .create(NewUser::new("legacy").password("pw"))
        .await
        .unwrap();
    // Unknown to aucheck until adopted: denied.
    assert_eq!(
        support::refusal(&auth, "legacy", "group.read").await,
        Some(aucheck::DenyReason::UnknownUser)
    );
    auth.by("root").grant("legacy", "group.read").await.unwrap();
    assert!(allowed(&auth, "legacy", "group.read").await);
    assert!(auth.member("legacy").await.unwrap().unwrap().personal);
}

#[tokio::test]
async fn a_shared_users_handle_can_be_given() {
    let store = Store::memory();
    let model = tiny_storage::UserModel::builder()
        .user_name("login")
        .build()
        .unwrap();
    let users = tiny_storage::Users::open(&store, model).await.unwrap();
    let auth = AuthManager::builder(&store)
        .permission("chat.post")
        .group("everyone", ["chat.post"])
        .users(users.clone())
        .build()
        .await
        .unwrap();
    auth.by("root")
        .create_user(NewUser::new("dave"), Some("everyone"))
        .await
        .unwrap();
    assert!(users.get("dave").await.unwrap().is_some());
    assert!(allowed(&auth, "dave", "chat.post").await);
}

#[tokio::test]
async fn futures_are_send() {
    fn send<T: Send>(t: T) -> T {
        t
    }
    let auth = manager().await;
    let spawned = tokio::spawn({
        let auth = auth.clone();
        async move {
            send(auth.by("root").create_group("g", ["group.read"])).await?;
            send(user_future(&auth)).await?;
            send(auth.by("root").grant("x", "group.kick")).await?;
            send(
                auth.by("root")
                    .delete_group("g", aucheck::DeleteRule::Personal),
            )
            .await?;
            Ok::<_, Error>(send(auth.check("x", "group.read")).await.is_ok())
        }
    });
    assert!(spawned.await.unwrap().unwrap());
}

async fn user_future(auth: &AuthManager) -> Result<aucheck::Member, Error> {
    auth.by("root")
        .create_user(NewUser::new("x").password("pw"), Some("g"))
        .await
}
