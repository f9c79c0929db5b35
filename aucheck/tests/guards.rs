//! Guards and the registry of guarded functions.
mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use aucheck::{CallError, Caller, DenyReason, Error, Registry};
use support::{manager, user};

#[tokio::test]
async fn a_guard_runs_its_function_only_for_permitted_callers() {
    let auth = manager().await;
    auth.by("root")
        .create_group("mods", ["user.ban"])
        .await
        .unwrap();
    user(&auth, "mod", Some("mods")).await;
    user(&auth, "pleb", None).await;
    let runs = Arc::new(AtomicUsize::new(0));
    let ban = auth
        .guard("user.ban", {
            let runs = runs.clone();
            move |caller: Caller, target: &'static str| {
                let runs = runs.clone();
                async move {
                    runs.fetch_add(1, Ordering::SeqCst);
                    format!("{} banned {target}", caller.user)
                }
            }
        })
        .unwrap();
    assert_eq!(ban.permission(), "user.ban");
    assert_eq!(ban.call("mod", "troll").await.unwrap(), "mod banned troll");
    let refused = ban.call("pleb", "mod").await.unwrap_err();
    assert_eq!(refused.reason, DenyReason::NotGranted);
    assert!(ban.call("ghost", "mod").await.is_err());
    assert_eq!(runs.load(Ordering::SeqCst), 1, "refused calls never run");

    assert!(matches!(
        auth.guard("no.such", |_: Caller, _: ()| async {}),
        Err(Error::UnknownPermission(_))
    ));
}

#[tokio::test]
async fn a_scoped_guard_checks_the_role_on_that_scope() {
    let auth = manager().await;
    user(&auth, "olga", None).await;
    auth.by("root")
        .set_role("olga", "group/rust", "owner")
        .await
        .unwrap();
    let kick = auth
        .guard("group.kick", |caller: Caller, who: String| async move {
            (caller.scope, who)
        })
        .unwrap();
    let (scope, who) = kick
        .call_in("olga", "group/rust", "bob".to_owned())
        .await
        .unwrap();
    assert_eq!(
        (scope.as_deref(), who.as_str()),
        (Some("group/rust"), "bob")
    );
    assert!(
        kick.call_in("olga", "group/go", "bob".to_owned())
            .await
            .is_err()
    );
    assert!(kick.call("olga", "bob".to_owned()).await.is_err());
}

#[tokio::test]
async fn the_registry_calls_functions_by_name() {
    let auth = manager().await;
    auth.by("root")
        .create_group("members", ["group.create"])
        .await
        .unwrap();
    user(&auth, "bob", Some("members")).await;
    user(&auth, "olga", None).await;
    auth.by("root")
        .set_role("olga", "group/rust", "owner")
        .await
        .unwrap();

    let mut api: Registry<serde_json::Value, serde_json::Value> = Registry::new(&auth);
    api.register(
        "group.create",
        "group.create",
        |caller, params| async move {
            serde_json::json!({"created": params["name"], "by": caller.user})
        },
    )
    .unwrap()
    .register("group.kick", "group.kick", |caller, params| async move {
        serde_json::json!({"kicked": params["user"], "from": caller.scope})
    })
    .unwrap();
    assert_eq!(api.names(), ["group.create", "group.kick"]);
    assert_eq!(api.permission_of("group.kick"), Some("group.kick"));

    let created = api
        .call("group.create", "bob", serde_json::json!({"name": "rust"}))
        .await
        .unwrap();
    assert_eq!(created, serde_json::json!({"created": "rust", "by": "bob"}));
    let kicked = api
        .call_in(
            "group.kick",
            "olga",
            "group/rust",
            serde_json::json!({"user": "bob"}),
        )
        .await
        .unwrap();
    assert_eq!(kicked["from"], "group/rust");
    assert!(matches!(
        api.call_in("group.kick", "bob", "group/rust", serde_json::json!({}))
            .await,
        Err(CallError::NotAuthorized(_))
    ));
    assert!(matches!(
        api.call("group.nuke", "olga", serde_json::json!({})).await,
        Err(CallError::NoSuchFunction(name)) if name == "group.nuke"
    ));
    assert!(matches!(
        api.register("x", "no.such", |_, v| async move { v }),
        Err(Error::UnknownPermission(_))
    ));
    assert!(api.unregister("group.create"));
    assert!(!api.unregister("group.create"));
    assert!(matches!(
        api.call("group.create", "bob", serde_json::json!({})).await,
        Err(CallError::NoSuchFunction(_))
    ));

    // Registry calls can run on spawned tasks.
    let api = Arc::new(api);
    let task = tokio::spawn({
        let api = api.clone();
        async move {
            api.call_in("group.kick", "olga", "group/rust", serde_json::json!({}))
                .await
        }
    });
    assert!(task.await.unwrap().is_ok());
}
