//! Accounts end to end, on every backend: create, read, update, delete,
//! defaults, validators, uniqueness under concurrency, numbers, verification
//! and listing.

mod support;

use std::collections::BTreeSet;

use nopi::Store;
use support::{chat_model, fast_users};
use tiny_storage::{Attribute, Error, NewUser, Secret, UserModel, Validator, Value};

on_every_backend!(
    create_get_update_delete,
    defaults_fixed_and_computed_from_other_attributes,
    builtin_validators_refuse_with_clear_errors,
    custom_validator_closure,
    duplicate_name_is_refused,
    names_are_stored_and_found_in_nfc,
    names_stored_by_an_older_version_are_folded_on_open,
    duplicate_number_is_refused,
    concurrent_creation_of_one_name_has_exactly_one_winner,
    concurrent_automatic_numbers_are_unique,
    a_chosen_free_number_is_kept_and_skipped_by_auto_numbering,
    verify_password_right_wrong_and_unknown_user,
    verify_other_attributes,
    password_update_rehashes,
    list_pages_with_a_cursor,
    inputs_with_a_password_print_it_redacted,
    unique_and_indexed_attributes,
);

async fn create_get_update_delete(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    let before = std::time::SystemTime::now();
    let alice = users
        .create(
            NewUser::new("alice")
                .password("open sesame")
                .set("email", "alice@example.com"),
        )
        .await
        .expect("create alice");
    assert_eq!(alice.name(), "alice");
    assert_eq!(alice.number(), Some(10_000));
    assert_eq!(alice.text("email"), Some("alice@example.com"));
    assert_eq!(
        alice.get("password"),
        None,
        "the password is never returned"
    );
    let created = alice.created_at().expect("creation time");
    assert!(created >= before - std::time::Duration::from_secs(1));

    let got = users
        .get("alice")
        .await
        .expect("get")
        .expect("alice exists");
    assert_eq!(got, alice);
    assert_eq!(
        users.get_by_number(10_000).await.expect("get").as_ref(),
        Some(&alice)
    );
    assert_eq!(users.get("bob").await.expect("get"), None);
    assert_eq!(users.get_by_number(4).await.expect("get"), None);
    assert_eq!(users.get("").await.expect("get"), None);
    assert_eq!(users.get(&"x".repeat(5000)).await.expect("get"), None);

    let updated = users
        .update("alice", "nickname", "Ally")
        .await
        .expect("update nickname");
    assert_eq!(updated.text("nickname"), Some("Ally"));
    let cleared = users
        .update("alice", "email", Value::Null)
        .await
        .expect("clear email");
    assert_eq!(cleared.get("email"), None);
    assert_eq!(
        users
            .get("alice")
            .await
            .expect("get")
            .expect("alice")
            .text("nickname"),
        Some("Ally")
    );
    assert!(matches!(
        users.update("alice", "name", "alicia").await,
        Err(Error::ReadOnly { attr }) if attr == "name"
    ));
    assert!(matches!(
        users.update("alice", "created", 0).await,
        Err(Error::ReadOnly { .. })
    ));
    assert!(matches!(
        users.update("alice", "password", Value::Null).await,
        Err(Error::Missing { attr }) if attr == "password"
    ));
    let e = users
        .update("nobody", "nickname", "N")
        .await
        .expect_err("no such user");
    assert_eq!(e.to_string(), "no user named \"nobody\"");
    let e = users
        .update("alice", "shoe_size", 42)
        .await
        .expect_err("unknown attribute");
    assert_eq!(
        e.to_string(),
        "unknown attribute \"shoe_size\": the model has no attribute of that name"
    );

    assert!(users.delete("alice").await.expect("delete"));
    assert!(!users.delete("alice").await.expect("delete again"));
    assert_eq!(users.get("alice").await.expect("get"), None);
    assert_eq!(users.get_by_number(10_000).await.expect("get"), None);
    // The name is free again.
    users
        .create(NewUser::new("alice").password("open sesame"))
        .await
        .expect("re-create alice");
}

async fn defaults_fixed_and_computed_from_other_attributes(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    let bob = users
        .create(NewUser::new("bob").password("secret-1"))
        .await
        .expect("create");
    assert_eq!(bob.text("nickname"), Some("bob"), "computed from the name");
    assert_eq!(bob.int("level"), Some(1), "fixed default");
    assert_eq!(bob.get("email"), None, "optional without default");

    let carol = users
        .create(
            NewUser::new("carol")
                .password("secret-1")
                .set("nickname", "Caz")
                .set("level", 7),
        )
        .await
        .expect("create");
    assert_eq!(carol.text("nickname"), Some("Caz"), "a given value wins");
    assert_eq!(carol.int("level"), Some(7));

    // A computed default sees earlier computed defaults too.
    let model = UserModel::builder()
        .user_name("name")
        .attribute(Attribute::text("first").default_with(|u| {
            u.text("name")
                .map(|n| Value::from(n.split('.').next().unwrap_or(n)))
        }))
        .attribute(
            Attribute::text("greeting")
                .default_with(|u| u.text("first").map(|f| Value::from(format!("hi {f}")))),
        )
        .build()
        .expect("model");
    let greeters = tiny_storage::Users::builder(store, model)
        .tree("greeters")
        .open()
        .await
        .expect("open");
    let dan = greeters
        .create(NewUser::new("dan.smith"))
        .await
        .expect("create");
    assert_eq!(dan.text("first"), Some("dan"));
    assert_eq!(dan.text("greeting"), Some("hi dan"));
}

async fn builtin_validators_refuse_with_clear_errors(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    let refuse = |u: NewUser| {
        let users = users.clone();
        async move {
            users
                .create(u)
                .await
                .expect_err("must be refused")
                .to_string()
        }
    };
    assert_eq!(
        refuse(NewUser::new("al").password("secret-1")).await,
        "attribute \"name\" breaks rule length: expected at least 3 characters, got 2"
    );
    assert_eq!(
        refuse(NewUser::new("al ice").password("secret-1")).await,
        "attribute \"name\" breaks rule name: a name is 1 to 32 letters, digits, `_`, `-` \
         and `.` (at most 64 bytes)"
    );
    assert_eq!(
        refuse(NewUser::new("alice").password("short")).await,
        "attribute \"password\" breaks rule length: expected at least 6 characters, got 5"
    );
    assert_eq!(
        refuse(
            NewUser::new("alice")
                .password("secret-1")
                .set("email", "alice.example.com")
        )
        .await,
        "attribute \"email\" breaks rule email: expected an e-mail address like name@example.com"
    );
    assert_eq!(
        refuse(
            NewUser::new("alice")
                .password("secret-1")
                .set("nickname", "   ")
        )
        .await,
        "attribute \"nickname\" breaks rule non-empty: expected at least one non-whitespace \
         character"
    );
    assert_eq!(
        refuse(NewUser::new("alice").password("secret-1").set("level", 100)).await,
        "attribute \"level\" breaks rule range: expected 0 to 99, got 100"
    );
    assert_eq!(
        refuse(
            NewUser::new("alice")
                .password("secret-1")
                .set("level", "high")
        )
        .await,
        "attribute \"level\" expects int, got text"
    );
    assert_eq!(
        refuse(NewUser::new("alice")).await,
        "attribute \"password\" is required but has no value and no default"
    );
    // A 32-character name still makes a valid nickname.
    let long = "a".repeat(32);
    let ok = users
        .create(NewUser::new(long.as_str()).password("secret-1"))
        .await
        .expect("32 characters fit");
    assert_eq!(ok.text("nickname"), Some(long.as_str()));
    // Updates are validated the same way.
    users
        .create(NewUser::new("alice").password("secret-1"))
        .await
        .expect("create");
    let e = users
        .update("alice", "email", "nope")
        .await
        .expect_err("invalid");
    assert!(matches!(&e, Error::Invalid { attr, rule, .. } if attr == "email" && rule == "email"));
    let e = users
        .update("alice", "nickname", "x".repeat(33))
        .await
        .expect_err("too long");
    assert_eq!(
        e.to_string(),
        "attribute \"nickname\" breaks rule length: expected at most 32 characters, got more than 32"
    );
    // Nothing was stored by the refused update.
    let alice = users.get("alice").await.expect("get").expect("alice");
    assert_eq!(alice.text("nickname"), Some("alice"));
    assert_eq!(alice.get("email"), None);
}

async fn custom_validator_closure(store: &Store) {
    let model = UserModel::builder()
        .user_name("name")
        .attribute(
            Attribute::text("team")
                .required()
                .validate(Validator::custom("known-team", |v| match v.as_text() {
                    Some("red" | "blue") => Ok(()),
                    _ => Err("expected red or blue".to_owned()),
                })),
        )
        .build()
        .expect("model");
    let users = fast_users(store, model).await;
    users
        .create(NewUser::new("ann").set("team", "red"))
        .await
        .expect("red is a team");
    let e = users
        .create(NewUser::new("ben").set("team", "green"))
        .await
        .expect_err("green is not");
    assert_eq!(
        e.to_string(),
        "attribute \"team\" breaks rule known-team: expected red or blue"
    );
    let e = users
        .update("ann", "team", "pink")
        .await
        .expect_err("pink is not");
    assert!(matches!(e, Error::Invalid { rule, .. } if rule == "known-team"));
}

async fn duplicate_name_is_refused(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    users
        .create(NewUser::new("alice").password("secret-1"))
        .await
        .expect("first");
    let e = users
        .create(NewUser::new("alice").password("other-pw").number(77_777))
        .await
        .expect_err("second");
    assert!(matches!(&e, Error::NameTaken { name } if name == "alice"));
    assert_eq!(e.to_string(), "user name \"alice\" is already taken");
    // The refused user's number was not taken.
    assert_eq!(users.get_by_number(77_777).await.expect("get"), None);
    // Names are unique without regard to case, also in other scripts.
    for other in ["Alice", "ALICE"] {
        let e = users
            .create(NewUser::new(other).password("secret-1"))
            .await
            .expect_err("another case is the same name");
        assert!(
            matches!(&e, Error::NameTaken { name } if name == other),
            "{e}"
        );
    }
    users
        .create(NewUser::new("Ελένη").password("secret-1"))
        .await
        .expect("Greek");
    assert!(matches!(
        users
            .create(NewUser::new("ΕΛΈΝΗ").password("secret-1"))
            .await,
        Err(Error::NameTaken { .. })
    ));
    // Lookups are exact: another case does not find the user.
    assert_eq!(users.get("Alice").await.expect("get"), None);
}

async fn names_are_stored_and_found_in_nfc(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    let decomposed = "Jose\u{301}";
    let made = users
        .create(NewUser::new(decomposed).password("secret-1"))
        .await
        .expect("create");
    assert_eq!(made.name(), "José", "stored composed");
    for typed in ["José", decomposed] {
        let found = users.get(typed).await.expect("get").expect("found");
        assert_eq!(found.name(), "José");
        users
            .verify(typed, "password", Secret::from("secret-1"))
            .await
            .expect("verify either form");
    }
    assert!(matches!(
        users
            .create(NewUser::new("José").password("secret-1"))
            .await,
        Err(Error::NameTaken { .. })
    ));
    assert!(users.delete(decomposed).await.expect("delete"));
    assert_eq!(users.get("José").await.expect("get"), None);
}

async fn names_stored_by_an_older_version_are_folded_on_open(store: &Store) {
    // Two users as an older version stored them: documents without the
    // folded name, and two names that differ only in case.
    let raw = store
        .collection::<serde_json::Value>("users")
        .open()
        .await
        .expect("raw");
    for name in ["Bob", "bob"] {
        raw.insert_with_id(name, &serde_json::json!({ "name": name, "number": null }))
            .await
            .expect("old document");
    }
    let users = fast_users(store, chat_model()).await;
    // Both old users stay reachable; a new case of the name is refused.
    for name in ["Bob", "bob"] {
        assert!(users.get(name).await.expect("get").is_some(), "{name}");
    }
    assert!(matches!(
        users.create(NewUser::new("BOB").password("secret-1")).await,
        Err(Error::NameTaken { .. })
    ));
}

async fn duplicate_number_is_refused(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    users
        .create(NewUser::new("alice").password("secret-1").number(4242))
        .await
        .expect("first");
    let e = users
        .create(NewUser::new("bob").password("secret-1").number(4242))
        .await
        .expect_err("second");
    assert!(matches!(e, Error::NumberTaken { number: 4242 }));
    assert_eq!(e.to_string(), "user number 4242 is already taken");
    assert_eq!(
        users.get("bob").await.expect("get"),
        None,
        "nothing written"
    );

    // Changing a number to a taken one is refused too.
    let bob = users
        .create(NewUser::new("bob").password("secret-1"))
        .await
        .expect("bob");
    let e = users
        .update("bob", "number", 4242)
        .await
        .expect_err("taken");
    assert!(matches!(e, Error::NumberTaken { number: 4242 }));
    let moved = users
        .update("bob", "number", 5000)
        .await
        .expect("free number");
    assert_eq!(moved.number(), Some(5000));
    assert_eq!(
        users
            .get_by_number(5000)
            .await
            .expect("get")
            .map(|u| u.name().to_owned()),
        Some("bob".to_owned())
    );
    let old = bob.number().expect("bob had a number");
    assert_eq!(
        users.get_by_number(old).await.expect("get"),
        None,
        "the old number is free"
    );
}

async fn concurrent_creation_of_one_name_has_exactly_one_winner(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let users = users.clone();
            tokio::spawn(async move {
                users
                    .create(
                        NewUser::new("highlander")
                            .password("secret-1")
                            .set("nickname", format!("try {i}")),
                    )
                    .await
            })
        })
        .collect();
    let mut winners = Vec::new();
    let mut taken = 0;
    for t in tasks {
        match t.await.expect("task") {
            Ok(u) => winners.push(u),
            Err(Error::NameTaken { name }) => {
                assert_eq!(name, "highlander");
                taken += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(winners.len(), 1, "exactly one creation wins");
    assert_eq!(taken, 31);
    let stored = users.get("highlander").await.expect("get").expect("stored");
    assert_eq!(stored, winners[0], "the stored user is the winner's");
    assert_eq!(users.list(None, 100).await.expect("list").len(), 1);
}

async fn concurrent_automatic_numbers_are_unique(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    // A chosen number in the middle of the range auto numbering will cover.
    users
        .create(NewUser::new("chooser").password("secret-1").number(10_010))
        .await
        .expect("chosen");
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let users = users.clone();
            tokio::spawn(async move {
                users
                    .create(NewUser::new(format!("user{i:02}")).password("secret-1"))
                    .await
            })
        })
        .collect();
    let mut numbers = BTreeSet::new();
    for t in tasks {
        let u = t.await.expect("task").expect("create");
        assert!(
            numbers.insert(u.number().expect("numbered")),
            "duplicate number"
        );
    }
    assert_eq!(numbers.len(), 32);
    assert!(!numbers.contains(&10_010), "the chosen number is skipped");
    assert!(numbers.iter().all(|&n| (10_000..10_033).contains(&n)));
    for n in &numbers {
        let u = users
            .get_by_number(*n)
            .await
            .expect("get")
            .expect("found by number");
        assert_eq!(u.number(), Some(*n));
    }
}

async fn a_chosen_free_number_is_kept_and_skipped_by_auto_numbering(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    // A legacy client picks its own number.
    let go = users
        .create(NewUser::new("gopher").password("secret-1").number(10_001))
        .await
        .expect("chosen number");
    assert_eq!(go.number(), Some(10_001));
    let a = users
        .create(NewUser::new("auto1").password("secret-1"))
        .await
        .expect("auto");
    let b = users
        .create(NewUser::new("auto2").password("secret-1"))
        .await
        .expect("auto");
    assert_eq!(a.number(), Some(10_000));
    assert_eq!(
        b.number(),
        Some(10_002),
        "10001 was chosen, so it is skipped"
    );
    // A number far away is fine too; an invalid one is refused.
    let far = users
        .create(NewUser::new("far").password("secret-1").number(123_456_789))
        .await
        .expect("far number");
    assert_eq!(far.number(), Some(123_456_789));
    let e = users
        .create(NewUser::new("zero").password("secret-1").number(0))
        .await
        .expect_err("zero");
    assert!(matches!(e, Error::Invalid { attr, rule, .. } if attr == "number" && rule == "range"));
    // Numbers of deleted users are not handed out again automatically.
    users.delete("auto2").await.expect("delete");
    let c = users
        .create(NewUser::new("auto3").password("secret-1"))
        .await
        .expect("auto");
    assert_eq!(c.number(), Some(10_003));
}

async fn verify_password_right_wrong_and_unknown_user(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    users
        .create(NewUser::new("alice").password("open sesame").number(20_000))
        .await
        .expect("create");
    let ok = users
        .verify("alice", "password", "open sesame")
        .await
        .expect("right");
    assert_eq!(ok.name(), "alice");
    let by_number = users
        .verify(20_000u64, "password", Secret::new("open sesame"))
        .await
        .expect("right, by number");
    assert_eq!(by_number.name(), "alice");

    let wrong = users
        .verify("alice", "password", "open sesamE")
        .await
        .expect_err("wrong");
    let unknown = users
        .verify("nobody", "password", "open sesame")
        .await
        .expect_err("unknown");
    let unknown_number = users
        .verify(1u64, "password", "open sesame")
        .await
        .expect_err("unknown");
    let empty = users
        .verify("alice", "password", "")
        .await
        .expect_err("empty");
    let huge = users
        .verify("alice", "password", "x".repeat(100_000))
        .await
        .expect_err("huge");
    for e in [&wrong, &unknown, &unknown_number, &empty, &huge] {
        assert!(matches!(e, Error::BadCredentials), "{e:?}");
        assert_eq!(e.to_string(), "unknown user or wrong credentials");
    }
    // A user without a password never verifies.
    let model = UserModel::builder()
        .user_name("name")
        .attribute(Attribute::password("password").optional())
        .build()
        .expect("model");
    let open = tiny_storage::Users::builder(store, model)
        .tree("guests")
        .password_params(tiny_storage::PasswordParams::insecure_for_tests())
        .open()
        .await
        .expect("open");
    open.create(NewUser::new("guest"))
        .await
        .expect("no password");
    assert!(matches!(
        open.verify("guest", "password", "anything").await,
        Err(Error::BadCredentials)
    ));
    // Asking about an attribute the model lacks is a programming error, not a failed login.
    assert!(matches!(
        users.verify("alice", "pin", "1234").await,
        Err(Error::UnknownAttribute { .. })
    ));
}

async fn verify_other_attributes(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    users
        .create(
            NewUser::new("alice")
                .password("secret-1")
                .set("email", "a@example.com"),
        )
        .await
        .expect("create");
    let u = users
        .verify("alice", "email", "a@example.com")
        .await
        .expect("match");
    assert_eq!(u.name(), "alice");
    assert!(matches!(
        users.verify("alice", "email", "b@example.com").await,
        Err(Error::BadCredentials)
    ));
    assert!(matches!(
        users.verify("bob", "email", "a@example.com").await,
        Err(Error::BadCredentials)
    ));
    assert!(
        users.verify("alice", "level", 1).await.is_ok(),
        "defaults count"
    );
}

async fn password_update_rehashes(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    users
        .create(NewUser::new("alice").password("old password"))
        .await
        .expect("create");
    let e = users
        .update("alice", "password", "new password")
        .await
        .expect_err("plain text refused");
    assert_eq!(
        e.to_string(),
        "attribute \"password\" holds a password: pass it as a Secret, not as text"
    );
    let e = users
        .update("alice", "password", Secret::new("short"))
        .await
        .expect_err("validated");
    assert!(matches!(e, Error::Invalid { rule, .. } if rule == "length"));
    users
        .update("alice", "password", Secret::new("new password"))
        .await
        .expect("update");
    assert!(
        users
            .verify("alice", "password", "new password")
            .await
            .is_ok()
    );
    assert!(matches!(
        users.verify("alice", "password", "old password").await,
        Err(Error::BadCredentials)
    ));
}

async fn list_pages_with_a_cursor(store: &Store) {
    let users = fast_users(store, chat_model()).await;
    for name in ["dave", "alice", "carol", "erin", "bob"] {
        users
            .create(NewUser::new(name).password("secret-1"))
            .await
            .expect("create");
    }
    let names =
        |page: &[tiny_storage::User]| page.iter().map(|u| u.name().to_owned()).collect::<Vec<_>>();
    let first = users.list(None, 2).await.expect("page 1");
    assert_eq!(names(&first), ["alice", "bob"]);
    let second = users.list(Some("bob"), 2).await.expect("page 2");
    assert_eq!(names(&second), ["carol", "dave"]);
    let third = users.list(Some("dave"), 2).await.expect("page 3");
    assert_eq!(names(&third), ["erin"]);
    assert!(
        users
            .list(Some("erin"), 2)
            .await
            .expect("past the end")
            .is_empty()
    );
    assert_eq!(users.list(None, 0).await.expect("empty page").len(), 0);
    let e = users.list(None, 5000).await.expect_err("too large");
    assert_eq!(
        e.to_string(),
        "list limit of 5000 users exceeds the 1000-user page limit"
    );
    assert!(users.list(Some(""), 2).await.is_err());
    // Users come back complete, defaults included.
    assert_eq!(first[0].text("nickname"), Some("alice"));
}

async fn inputs_with_a_password_print_it_redacted(store: &Store) {
    let input = NewUser::new("alice")
        .password("hunter2-plain")
        .set("nickname", "Al")
        .set("password", Secret::new("hunter2-other"));
    for shown in [format!("{input:?}"), format!("{input:#?}")] {
        assert!(shown.contains("REDACTED"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("Al"), "other attributes still show: {shown}");
    }
    let value = Value::from(Secret::new("hunter2-plain"));
    assert!(!format!("{value:?}").contains("hunter2"));

    // Errors never quote a password either.
    let users = fast_users(store, chat_model()).await;
    let e = users
        .create(NewUser::new("alice").password("hunt"))
        .await
        .expect_err("too short");
    assert!(!format!("{e} {e:?}").contains("hunt\""), "{e:?}");
    users
        .create(NewUser::new("alice").password("hunter2-plain"))
        .await
        .expect("create");
    let u = users.get("alice").await.expect("get").expect("alice");
    let shown = format!("{u:?} {}", serde_json::to_string(&u).expect("json"));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        !shown.contains("argon2"),
        "the hash is not returned either: {shown}"
    );
    assert!(!format!("{users:?}").contains("argon2"));
}

async fn unique_and_indexed_attributes(store: &Store) {
    let model = UserModel::builder()
        .user_name("name")
        .number("number")
        .attribute(
            Attribute::text("email")
                .unique()
                .validate(Validator::email()),
        )
        .attribute(Attribute::text("group").indexed().default("lobby"))
        .attribute(Attribute::text("bio"))
        .build()
        .expect("model");
    let users = fast_users(store, model).await;
    users
        .create(NewUser::new("ann").set("email", "ann@example.com"))
        .await
        .expect("ann");
    users
        .create(NewUser::new("ben").set("group", "rust"))
        .await
        .expect("ben, no e-mail");
    users
        .create(NewUser::new("cid").set("group", "rust"))
        .await
        .expect("cid, no e-mail either: users without a value do not collide");

    let e = users
        .create(NewUser::new("dee").set("email", "ann@example.com"))
        .await
        .expect_err("e-mail taken");
    assert!(matches!(&e, Error::ValueTaken { attr } if attr == "email"));
    assert_eq!(
        e.to_string(),
        "attribute \"email\": another user already has this value"
    );
    assert_eq!(
        users.get("dee").await.expect("get"),
        None,
        "nothing written"
    );
    let e = users
        .update("ben", "email", "ann@example.com")
        .await
        .expect_err("e-mail taken");
    assert!(matches!(e, Error::ValueTaken { .. }));
    users
        .update("ben", "email", "ben@example.com")
        .await
        .expect("free e-mail");

    let names = |found: Vec<tiny_storage::User>| {
        found
            .iter()
            .map(|u| u.name().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(
            users
                .find_by("email", "ben@example.com")
                .await
                .expect("find")
        ),
        ["ben"]
    );
    assert_eq!(
        names(users.find_by("group", "rust").await.expect("find")),
        ["ben", "cid"]
    );
    assert_eq!(
        names(users.find_by("group", "lobby").await.expect("find")),
        ["ann"]
    );
    assert_eq!(
        names(users.find_by("name", "cid").await.expect("find")),
        ["cid"]
    );
    assert_eq!(
        names(users.find_by("number", 1).await.expect("find")),
        ["ann"]
    );
    assert!(
        users
            .find_by("group", "none")
            .await
            .expect("find")
            .is_empty()
    );
    let e = users.find_by("bio", "x").await.expect_err("not indexed");
    assert!(matches!(e, Error::NotIndexed { attr } if attr == "bio"));
    let e = users.find_by("group", 3).await.expect_err("wrong type");
    assert_eq!(e.to_string(), "attribute \"group\" expects text, got int");
    // Moving a user updates the index.
    users.update("cid", "group", "go").await.expect("move");
    assert_eq!(
        names(users.find_by("group", "rust").await.expect("find")),
        ["ben"]
    );
    users.delete("ben").await.expect("delete");
    assert!(
        users
            .find_by("group", "rust")
            .await
            .expect("find")
            .is_empty()
    );
    assert!(
        users
            .find_by("email", "ben@example.com")
            .await
            .expect("find")
            .is_empty()
    );
}
