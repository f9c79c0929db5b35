//! The guide's server over its real TCP listener: register, log in, join a
//! room, send; the other user gets the message as a push, also after being
//! offline; logout ends the session. And docs/guide.md quotes the code
//! verbatim, in under 150 lines.

use homer::testing::Client;
use serde_json::json;
use tokio::net::{TcpStream, ToSocketAddrs};

async fn client(addr: impl ToSocketAddrs) -> Client<TcpStream> {
    Client::over(
        TcpStream::connect(addr)
            .await
            .expect("the listener accepts"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_users_talk_in_a_room() {
    let dir = tempfile::tempdir().unwrap();
    let store = nopi::open(&format!("sled:{}", dir.path().display()))
        .await
        .unwrap();
    let homer = guide::chat_server(&store).await.unwrap();
    let addr = homer
        .listen_tcp("127.0.0.1:0", homer::json_lines())
        .await
        .unwrap();
    let (mut alice, mut bob) = (client(addr).await, client(addr).await);

    for (c, name) in [(&mut alice, "alice"), (&mut bob, "bob")] {
        let who = json!({"name": name, "password": format!("{name}'s passphrase")});
        assert_eq!(
            c.call("user.register", who.clone()).await,
            Ok(json!({"name": name}))
        );
        let (status, _) = c
            .call("room.join", json!({"room": "lobby"}))
            .await
            .unwrap_err();
        assert_eq!(status, 401, "joining needs a login");
        c.call("user.login", who).await.unwrap();
        c.call("room.join", json!({"room": "lobby"})).await.unwrap();
    }
    let wrong = json!({"name": "bob", "password": "guess"});
    assert_eq!(alice.call("user.login", wrong).await.unwrap_err().0, 401);
    let taken = json!({"name": "bob", "password": "another"});
    assert_eq!(alice.call("user.register", taken).await.unwrap_err().0, 400);

    // alice says hello; bob (and alice herself, a member) get it as a push.
    let say = json!({"room": "lobby", "text": "hello bob", "from": "mallory"});
    let sent = alice.call("chat.send", say).await.unwrap();
    let (kind, message) = bob.push().await;
    assert_eq!(kind, "message");
    assert_eq!(message["from"], "alice", "the server sets from");
    assert_eq!(
        (&message["room"], &message["text"]),
        (&json!("lobby"), &json!("hello bob"))
    );
    assert_eq!(message["id"], sent["id"]);
    assert_eq!(alice.push().await.1["text"], "hello bob");

    // bob goes offline; the message waits; his token resumes on a new connection.
    let token = bob.call("user.logout", json!({"token": "x"})).await;
    assert!(token.is_err(), "a malformed token is refused");
    let login = json!({"name": "bob", "password": "bob's passphrase"});
    let token = bob.call("user.login", login).await.unwrap()["token"].clone();
    drop(bob);
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    alice
        .call(
            "chat.send",
            json!({"room": "lobby", "text": "are you there?"}),
        )
        .await
        .unwrap();
    let mut bob = client(addr).await;
    assert_eq!(
        bob.call("user.resume", json!({"token": token})).await,
        Ok(json!({"name": "bob"}))
    );
    assert_eq!(bob.push().await.1["text"], "are you there?");

    // Logout kills the token.
    bob.call("user.logout", json!({"token": token}))
        .await
        .unwrap();
    let mut again = client(addr).await;
    assert_eq!(
        again
            .call("user.resume", json!({"token": token}))
            .await
            .unwrap_err()
            .0,
        401
    );
    homer.shutdown(std::time::Duration::from_secs(1)).await;
}

#[test]
fn the_guide_quotes_the_code_verbatim_in_under_150_lines() {
    let guide = include_str!("../../../docs/guide.md");
    let mut lines = 0;
    for (file, code) in [
        ("src/lib.rs", include_str!("../src/lib.rs")),
        ("src/main.rs", include_str!("../src/main.rs")),
    ] {
        let quoted = format!("```rust\n{code}```");
        assert!(
            guide.contains(&quoted),
            "docs/guide.md must quote examples/guide/{file} verbatim"
        );
        lines += code.lines().count();
    }
    assert!(lines < 150, "the guide's server is {lines} lines");
}
