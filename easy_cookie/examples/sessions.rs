//! Logins that really end: a signed "remember me" cookie, then server-side
//! sessions in a sled directory with rotation, logout and "log out
//! everywhere". Tokens are secrets: the example prints only their length.
//!
//! ```sh
//! cargo run -p easy_cookie --example sessions
//! ```
#![expect(clippy::print_stdout, reason = "an example shows its results")]

use easy_cookie::{CookieFactory, Key, KeyRing, Protection, SessionError, Sessions, Ttl};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, PartialEq, Serialize, Deserialize)]
struct Prefs {
    theme: String,
    rooms: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // One key ring for the process; in production load it from configuration
    // with `Key::from_base64`, and keep older keys to verify old cookies.
    let keys = KeyRing::new(Key::generate()?);

    // Stateless: a signed cookie carrying a small value, checked on return.
    let remember = CookieFactory::<String>::builder(keys.clone())
        .purpose("remember-me")
        .protection(Protection::Signed)
        .ttl(Ttl::days(30))
        .build()?;
    let cookie = remember.issue(&"alice".to_owned())?;
    println!(
        "remember-me cookie of {} bytes checks as {:?}",
        cookie.len(),
        remember.check(&cookie)?
    );
    let mut forged = cookie.clone();
    forged.replace_range(..1, if forged.starts_with('A') { "B" } else { "A" });
    assert!(
        remember
            .check(&forged)
            .expect_err("a changed first byte breaks the MAC")
            .is_unknown()
    );
    println!("a tampered cookie is unknown");

    // Stateful: sessions in the store, revocable at once.
    let dir = tempfile::tempdir()?;
    let store = nopi::open(&format!("sled:{}", dir.path().display())).await?;
    let sessions: Sessions<Prefs> = Sessions::builder(keys).build(store.tree("sessions").await?)?;

    let phone = sessions.start("alice", Prefs::default()).await?;
    let laptop = sessions
        .start(
            "alice",
            Prefs {
                theme: "dark".into(),
                rooms: vec![],
            },
        )
        .await?;
    println!(
        "alice logged in twice: {} sessions",
        sessions.sessions_of("alice").await?.len()
    );
    let header = sessions.set_cookie(&phone).to_string();
    assert!(header.starts_with("session=") && header.contains("HttpOnly"));

    // Every request: token in, session out; its data can change.
    let session = sessions.get(&phone.token).await?;
    println!("the phone's token belongs to {}", session.user);
    sessions
        .update(&phone.token, |prefs| prefs.rooms.push("rust".into()))
        .await?;
    assert_eq!(sessions.get(&phone.token).await?.data.rooms, ["rust"]);

    // Privilege change: a new token; the old one is dead at once.
    let phone = {
        let rotated = sessions.rotate(&phone.token).await?;
        assert!(matches!(
            sessions.get(&phone.token).await,
            Err(SessionError::Unknown { .. })
        ));
        rotated
    };
    println!("rotated: the old phone token is refused");

    // Logout, and "log out everywhere".
    assert!(sessions.revoke(&phone.token).await?);
    assert_eq!(sessions.revoke_all("alice").await?, 1);
    assert!(sessions.get(&laptop.token).await.is_err());
    println!(
        "after logout everywhere: {} sessions",
        sessions.sessions_of("alice").await?.len()
    );
    Ok(())
}

#[test]
fn runs() {
    main().expect("the example runs");
}
