//! The model's schema is stored with the data: reopening a sled store with
//! the same model works, a compatible change is accepted and existing users
//! read the new defaults, an incompatible one is reported.

mod support;

use support::{chat_model, chat_model_builder, fast_users, open_sled};
use tiny_storage::{Attribute, Error, NewUser, SchemaChange, UserModel, Validator};

#[tokio::test]
async fn data_and_schema_survive_a_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open_sled(&dir).await;
        let users = fast_users(&store, chat_model()).await;
        users
            .create(NewUser::new("alice").password("secret-1"))
            .await
            .expect("create");
        store.flush().await.expect("flush");
    }
    let store = open_sled(&dir).await;
    let users = fast_users(&store, chat_model()).await;
    let alice = users
        .get("alice")
        .await
        .expect("get")
        .expect("alice survived");
    assert_eq!(alice.number(), Some(10_000));
    assert!(users.verify("alice", "password", "secret-1").await.is_ok());
    // Numbering continues where it stopped.
    let bob = users
        .create(NewUser::new("bob").password("secret-1"))
        .await
        .expect("create");
    assert_eq!(bob.number(), Some(10_001));
}

#[tokio::test]
async fn incompatible_model_is_reported_on_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open_sled(&dir).await;
        let users = fast_users(&store, chat_model()).await;
        users
            .create(NewUser::new("alice").password("secret-1"))
            .await
            .expect("create");
        store.flush().await.expect("flush");
    }
    let store = open_sled(&dir).await;
    let changed = UserModel::builder()
        .user_name("name")
        .password("password")
        .created("created")
        .attribute(Attribute::int("nickname"))
        .attribute(Attribute::text("email"))
        .attribute(Attribute::int("level"))
        .attribute(Attribute::text("phone").required())
        .build()
        .expect("model");
    let e = tiny_storage::Users::open(&store, changed)
        .await
        .expect_err("schema changed");
    let Error::SchemaMismatch { tree, changes } = &e else {
        panic!("expected a schema mismatch, got {e:?}");
    };
    assert_eq!(tree, "users");
    assert_eq!(
        changes,
        &[
            SchemaChange::Removed {
                attr: "number".into()
            },
            SchemaChange::KindChanged {
                attr: "nickname".into(),
                stored: "text".into(),
                model: "int".into()
            },
            SchemaChange::AddedRequired {
                attr: "phone".into()
            },
        ]
    );
    assert_eq!(
        e.to_string(),
        "user model does not match the schema stored in tree users: attribute \"number\" was \
         removed; attribute \"nickname\" changed from text to int; attribute \"phone\" was added \
         as required without a default"
    );
    // The refused open changed nothing: the original model still opens.
    let users = fast_users(&store, chat_model()).await;
    assert!(users.get("alice").await.expect("get").is_some());
}

#[tokio::test]
async fn compatible_additions_give_existing_users_the_default() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open_sled(&dir).await;
        let users = fast_users(&store, chat_model()).await;
        users
            .create(NewUser::new("alice").password("secret-1"))
            .await
            .expect("create");
        store.flush().await.expect("flush");
    }
    let store = open_sled(&dir).await;
    let grown = chat_model_builder()
        .attribute(Attribute::bool("verified").required().default(false))
        .attribute(
            Attribute::text("display")
                .default_with(|u| u.text("nickname").map(|n| format!("@{n}").into()))
                .validate(Validator::non_empty()),
        )
        .attribute(Attribute::text("bio"))
        .build()
        .expect("model");
    let users = fast_users(&store, grown.clone()).await;
    let alice = users.get("alice").await.expect("get").expect("alice");
    assert_eq!(alice.bool("verified"), Some(false), "fixed default on read");
    assert_eq!(
        alice.text("display"),
        Some("@alice"),
        "computed default on read"
    );
    assert_eq!(alice.get("bio"), None);
    let alice = users
        .update("alice", "verified", true)
        .await
        .expect("update");
    assert_eq!(alice.bool("verified"), Some(true));
    store.flush().await.expect("flush");
    drop(users);
    drop(store);

    // The grown schema is now the stored one: going back to the old model
    // would drop attributes, and is refused.
    let store = open_sled(&dir).await;
    let e = tiny_storage::Users::open(&store, chat_model())
        .await
        .expect_err("attributes were removed");
    assert!(matches!(e, Error::SchemaMismatch { .. }), "{e:?}");
    assert!(
        fast_users(&store, grown)
            .await
            .get("alice")
            .await
            .expect("get")
            .is_some()
    );
}

#[tokio::test]
async fn separate_trees_hold_separate_models() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_sled(&dir).await;
    let _chat = fast_users(&store, chat_model()).await;
    let other = UserModel::builder()
        .user_name("login")
        .build()
        .expect("model");
    let admins = tiny_storage::Users::builder(&store, other)
        .tree("admins")
        .open()
        .await
        .expect("another tree, another schema");
    admins.create(NewUser::new("root")).await.expect("create");
    assert!(admins.get("root").await.expect("get").is_some());
}
