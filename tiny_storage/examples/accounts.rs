//! User accounts in a sled directory: a model with defaults, validators and
//! an index; sign-up, log-in, profile updates and look-ups.
//!
//! ```sh
//! cargo run -p tiny_storage --example accounts
//! ```
#![expect(clippy::print_stdout, reason = "an example shows its results")]

use tiny_storage::{Attribute, Error, NewUser, UserModel, Users, Validator};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let model = UserModel::builder()
        .user_name("name")
        .password("password")
        .number("number")
        .created("created")
        .attribute(
            Attribute::text("nickname")
                .default_with(|user| user.get("name").cloned())
                .validate(Validator::length(1..=32)),
        )
        .attribute(
            Attribute::text("email")
                .validate(Validator::email())
                .unique(),
        )
        .attribute(Attribute::text("city").indexed())
        .build()?;

    let dir = tempfile::tempdir()?;
    let store = nopi::open(&format!("sled:{}", dir.path().display())).await?;
    let users = Users::open(&store, model).await?;

    // Sign-up: the password is hashed with argon2id, never stored in clear.
    for (name, email, city) in [
        ("alice", "alice@example.com", "Lyon"),
        ("bob", "bob@example.com", "Lyon"),
        ("carol", "carol@example.com", "Oslo"),
    ] {
        let user = users
            .create(
                NewUser::new(name)
                    .password(format!("{name}'s long passphrase"))
                    .set("email", email)
                    .set("city", city),
            )
            .await?;
        println!(
            "created {} as number {}",
            user.name(),
            user.number().unwrap_or_default()
        );
    }
    let taken = users
        .create(NewUser::new("alice").password("another one"))
        .await;
    assert!(matches!(taken, Err(Error::NameTaken { .. })));
    println!("a second alice is refused");

    // Log-in by name or by number; a wrong password and an unknown user
    // give the same error.
    let alice = users
        .verify("alice", "password", "alice's long passphrase")
        .await?;
    println!(
        "alice logged in; her nickname defaults to {:?}",
        alice.text("nickname")
    );
    let by_number = users
        .verify(2u64, "password", "bob's long passphrase")
        .await?;
    println!("number 2 logged in: {}", by_number.name());
    let wrong = users
        .verify("alice", "password", "guess")
        .await
        .expect_err("\"guess\" is not alice's password");
    let unknown = users
        .verify("mallory", "password", "guess")
        .await
        .expect_err("there is no user mallory");
    assert_eq!(wrong.to_string(), unknown.to_string());
    println!("wrong password and unknown user look alike: {wrong}");

    // Updates are validated.
    let alice = users.update("alice", "nickname", "Al").await?;
    assert_eq!(alice.text("nickname"), Some("Al"));
    assert!(
        users
            .update("alice", "email", "not an address")
            .await
            .is_err()
    );
    println!("nickname changed to Al; a malformed email is refused");

    // Indexed look-ups and pages.
    let lyon: Vec<String> = users
        .find_by("city", "Lyon")
        .await?
        .iter()
        .map(|u| u.name().to_owned())
        .collect();
    println!("in Lyon: {lyon:?}");
    assert_eq!(lyon, ["alice", "bob"]);
    assert!(users.delete("carol").await?);
    let names: Vec<String> = users
        .list(None, 10)
        .await?
        .iter()
        .map(|u| u.name().to_owned())
        .collect();
    println!("after deleting carol: {names:?}");
    assert_eq!(names, ["alice", "bob"]);
    Ok(())
}

#[test]
fn runs() {
    main().expect("the example runs");
}
