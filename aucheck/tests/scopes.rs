//! Scoped roles: a permission on a resource, such as `group.kick` on `group/rust`.
mod support;

use aucheck::{Error, MAX_ROLES_PER_USER};
use support::{allowed, allowed_in, manager, user};

/// `(user, permission, scope, expected)` in one line each.
async fn expect_in(auth: &aucheck::AuthManager, cases: &[(&str, &str, &str, bool)]) {
    for &(user, permission, scope, expected) in cases {
        assert_eq!(
            allowed_in(auth, user, permission, scope).await,
            expected,
            "check_in({user:?}, {permission:?}, {scope:?})"
        );
    }
}

#[tokio::test]
async fn owners_and_admins_may_kick_in_their_group_only() {
    let auth = manager().await;
    let root = auth.by("root");
    for name in ["olga", "adam", "mona", "stranger"] {
        user(&auth, name, None).await;
    }
    assert_eq!(
        root.set_role("olga", "group/rust", "owner").await.unwrap(),
        None
    );
    root.set_role("adam", "group/rust", "admin").await.unwrap();
    root.set_role("mona", "group/rust", "member").await.unwrap();
    root.set_role("mona", "group/go", "owner").await.unwrap();

    expect_in(
        &auth,
        &[
            ("olga", "group.kick", "group/rust", true),
            ("olga", "group.delete", "group/rust", true),
            ("adam", "group.kick", "group/rust", true),
            ("adam", "group.delete", "group/rust", false),
            ("mona", "group.kick", "group/rust", false),
            ("mona", "group.post", "group/rust", true),
            ("mona", "group.kick", "group/go", true),
            ("olga", "group.kick", "group/go", false),
            ("stranger", "group.read", "group/rust", false),
            ("olga", "group.kick", "group/rus", false),
            ("olga", "group.kick", "group/rust2", false),
            ("olga", "no.such", "group/rust", false),
        ],
    )
    .await;
    // A role on a scope grants nothing globally.
    assert!(!allowed(&auth, "olga", "group.kick").await);

    let members = auth.scope_members("group/rust", None, 10).await.unwrap();
    assert_eq!(
        members,
        [
            ("adam".to_owned(), "admin".to_owned()),
            ("mona".to_owned(), "member".to_owned()),
            ("olga".to_owned(), "owner".to_owned()),
        ]
    );
    assert_eq!(
        auth.roles_of("mona").await.unwrap(),
        [
            ("group/go".to_owned(), "owner".to_owned()),
            ("group/rust".to_owned(), "member".to_owned()),
        ]
    );
}

#[tokio::test]
async fn a_global_admin_holds_every_permission_on_every_scope() {
    let auth = manager().await;
    auth.by("root").create_group("admins", ["*"]).await.unwrap();
    user(&auth, "root", Some("admins")).await;
    user(&auth, "olga", None).await;
    auth.by("root")
        .set_role("olga", "group/rust", "owner")
        .await
        .unwrap();
    let huge = "s".repeat(100_000);
    expect_in(
        &auth,
        &[
            ("root", "group.kick", "group/rust", true),
            ("root", "group.delete", "anything at all", true),
            ("root", "group.delete", &huge, true),
            ("root", "no.such", "group/rust", false),
            ("olga", "group.kick", &huge, false),
        ],
    )
    .await;
}

#[tokio::test]
async fn roles_change_and_go_away() {
    let auth = manager().await;
    let root = auth.by("root");
    user(&auth, "adam", None).await;
    root.set_role("adam", "group/rust", "admin").await.unwrap();
    // Promotion replaces the role and returns the old one.
    assert_eq!(
        root.set_role("adam", "group/rust", "owner").await.unwrap(),
        Some("admin".to_owned())
    );
    assert!(allowed_in(&auth, "adam", "group.delete", "group/rust").await);
    assert_eq!(
        auth.role_of("adam", "group/rust").await.unwrap().as_deref(),
        Some("owner")
    );
    assert_eq!(
        root.remove_role("adam", "group/rust").await.unwrap(),
        Some("owner".to_owned())
    );
    assert_eq!(root.remove_role("adam", "group/rust").await.unwrap(), None);
    assert!(!allowed_in(&auth, "adam", "group.post", "group/rust").await);
    assert!(
        auth.scope_members("group/rust", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn removing_a_scope_removes_every_role_on_it() {
    let auth = manager().await;
    let root = auth.by("root");
    for i in 0..300 {
        let name = format!("u{i:03}");
        user(&auth, &name, None).await;
        root.set_role(&name, "group/doomed", "member")
            .await
            .unwrap();
    }
    root.set_role("u000", "group/kept", "owner").await.unwrap();

    assert_eq!(root.remove_scope("group/doomed").await.unwrap(), 300);
    assert!(
        auth.scope_members("group/doomed", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(!allowed_in(&auth, "u150", "group.post", "group/doomed").await);
    assert!(allowed_in(&auth, "u000", "group.kick", "group/kept").await);
    assert_eq!(auth.roles_of("u000").await.unwrap().len(), 1);
    assert_eq!(root.remove_scope("group/doomed").await.unwrap(), 0);
}

#[tokio::test]
async fn bad_roles_users_and_scopes_are_refused() {
    let auth = manager().await;
    let root = auth.by("root");
    user(&auth, "adam", None).await;
    assert!(matches!(
        root.set_role("adam", "group/rust", "emperor").await,
        Err(Error::UnknownRole(_))
    ));
    assert!(matches!(
        root.set_role("nobody", "group/rust", "owner").await,
        Err(Error::UnknownUser(_))
    ));
    assert!(matches!(
        root.set_role("adam", "bad\0scope", "owner").await,
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        root.set_role("adam", &"s".repeat(aucheck::MAX_SCOPE + 1), "owner")
            .await,
        Err(Error::InvalidName { .. })
    ));
    assert!(matches!(
        auth.by("").set_role("adam", "group/rust", "owner").await,
        Err(Error::InvalidName { .. })
    ));
}

#[tokio::test]
async fn a_user_holds_roles_on_a_bounded_number_of_scopes() {
    let auth = manager().await;
    let root = auth.by("root");
    user(&auth, "busy", None).await;
    for i in 0..MAX_ROLES_PER_USER {
        root.set_role("busy", &format!("group/{i:04}"), "member")
            .await
            .unwrap();
    }
    let over = root.set_role("busy", "group/one-more", "member").await;
    assert!(
        matches!(over, Err(Error::TooMany { count, limit, .. }) if count == limit + 1),
        "{over:?}"
    );
    // Changing an existing role is still allowed at the limit.
    root.set_role("busy", "group/0001", "owner").await.unwrap();
    assert!(allowed_in(&auth, "busy", "group.kick", "group/0001").await);
    assert!(allowed_in(&auth, "busy", "group.post", "group/0999").await);
    // Deleting the user removes every role, in pages.
    assert!(root.delete_user("busy").await.unwrap());
    assert!(
        auth.scope_members("group/0500", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
}
