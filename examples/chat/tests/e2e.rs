//! End-to-end: the real `chat-server` binary driven over WebSocket, TCP and
//! HTTP + Server-Sent Events.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Client, Server, Sse, http_call};

const QUIET: Duration = Duration::from_millis(400);

#[tokio::test]
async fn lobby_message_between_websocket_and_tcp_users() {
    let server = Server::start().await;
    let mut alice = server.user(server.ws().await, "alice").await;
    let mut bob = server.user(server.tcp().await, "bob").await;

    let sent = alice
        .ok(
            "chat.send",
            json!({"to": {"group": "lobby"}, "text": "hello everyone"}),
        )
        .await;
    let got = bob.message("hello everyone").await;
    assert_eq!(got["from"], "alice");
    assert_eq!(got["ip"], "127.0.0.1", "the server stamps the bare address");
    assert_eq!(got["to"], json!({"group": "lobby"}));
    assert_eq!(got["id"], sent["id"]);
    assert_eq!(got["ts"], sent["ts"]);

    // And back, TCP to WebSocket.
    bob.ok(
        "chat.send",
        json!({"to": {"group": "lobby"}, "text": "hi alice"}),
    )
    .await;
    assert_eq!(alice.message("hi alice").await["from"], "bob");

    // Nobody can send as someone else or from elsewhere: `from` and `ip`
    // are accepted (a client may send a whole message object back) and the
    // server's values win.
    let sent = bob
        .ok(
            "chat.send",
            json!({"to": {"group": "lobby"}, "text": "as alice?", "from": "alice", "ip": "10.9.8.7"}),
        )
        .await;
    let got = alice.message("as alice?").await;
    assert_eq!(got["from"], "bob", "the server's from wins");
    assert_eq!(got["ip"], "127.0.0.1", "the server's ip wins");
    assert_eq!(got["id"], sent["id"]);
    // A message object as delivered, sent back whole except its id and ts.
    let mut echo = got.clone();
    echo["text"] = json!("echoed");
    let echo = serde_json::Value::Object(
        echo.as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| !matches!(k.as_str(), "id" | "ts"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    );
    alice.ok("chat.send", echo).await;
    assert_eq!(bob.message("echoed").await["from"], "alice");

    // Other unknown fields are still refused, by name.
    let e = bob
        .err(
            "chat.send",
            json!({"to": {"group": "lobby"}, "text": "x", "sender": "alice"}),
            400,
        )
        .await;
    assert_eq!(e["code"], "bad_params");
    assert!(
        e["message"].as_str().unwrap_or("").contains("sender"),
        "the refusal names the field: {e}"
    );
}

#[tokio::test]
async fn login_by_number_resume_and_logout() {
    let server = Server::start().await;
    let mut a = server.tcp().await;
    let reg = a
        .ok(
            "user.register",
            json!({"name": "carol", "password": "s3cret", "number": 4242}),
        )
        .await;
    assert_eq!(reg, json!({"name": "carol", "number": 4242}));
    let taken = a
        .err(
            "user.register",
            json!({"name": "carol2", "password": "x", "number": 4242}),
            409,
        )
        .await;
    assert_eq!(taken["code"], "number_taken");
    let dup = a
        .err(
            "user.register",
            json!({"name": "carol", "password": "x"}),
            409,
        )
        .await;
    assert_eq!(dup["code"], "name_taken");

    let login = a
        .ok("user.login", json!({"number": 4242, "password": "s3cret"}))
        .await;
    assert_eq!(login["name"], "carol");
    assert_eq!(login["groups"][0]["name"], "lobby");
    let token = login["token"].as_str().unwrap().to_owned();

    // Resume on a new WebSocket with the token: the old connection is replaced.
    let mut b = server.ws().await;
    let resumed = b.ok("user.resume", json!({"token": token})).await;
    assert_eq!(resumed["name"], "carol");
    assert_eq!(a.push("session").await, json!({"event": "replaced"}));
    assert!(a.closed().await, "the replaced connection is closed");

    b.ok("user.logout", json!({})).await;
    let e = b
        .err(
            "chat.send",
            json!({"to": {"group": "lobby"}, "text": "x"}),
            401,
        )
        .await;
    assert_eq!(e["code"], "not_logged_in");
    let mut c = server.tcp().await;
    let gone = c.err("user.resume", json!({"token": token}), 401).await;
    assert_eq!(gone["code"], "bad_token", "logout really logs out");
}

#[tokio::test]
async fn unknown_user_and_wrong_password_look_alike_and_back_off() {
    let server = Server::start().await;
    let mut a = server.user(server.tcp().await, "dave").await;
    let wrong = a
        .err(
            "user.login",
            json!({"name": "dave", "password": "nope"}),
            401,
        )
        .await;
    let unknown = a
        .err(
            "user.login",
            json!({"name": "nobody", "password": "nope"}),
            401,
        )
        .await;
    assert_eq!(wrong, unknown);
    for _ in 0..4 {
        a.err(
            "user.login",
            json!({"name": "dave", "password": "nope"}),
            401,
        )
        .await;
        a.err(
            "user.login",
            json!({"name": "nobody", "password": "nope"}),
            401,
        )
        .await;
    }
    // Past five failures both accounts must wait, alike.
    let w1 = a
        .err(
            "user.login",
            json!({"name": "dave", "password": "pw-dave"}),
            429,
        )
        .await;
    let w2 = a
        .err(
            "user.login",
            json!({"name": "nobody", "password": "nope"}),
            429,
        )
        .await;
    assert_eq!(
        (w1["code"].clone(), w2["code"].clone()),
        (json!("too_many_attempts"), json!("too_many_attempts"))
    );
}

#[tokio::test]
async fn groups_roles_and_membership() {
    let server = Server::start().await;
    let mut alice = server.user(server.ws().await, "alice").await;
    let mut bob = server.user(server.tcp().await, "bob").await;
    let mut carol = server.user(server.ws().await, "carol").await;

    alice
        .ok(
            "group.create",
            json!({"name": "rust", "desc": "Rustaceans"}),
        )
        .await;
    alice
        .err("group.create", json!({"name": "rust"}), 409)
        .await;
    alice
        .err("group.create", json!({"name": "bad name!"}), 400)
        .await;
    bob.ok("group.join", json!({"name": "rust"})).await;
    assert_eq!(
        alice.push("group").await,
        json!({"group": "rust", "user": "bob", "event": "joined"})
    );
    bob.err("group.join", json!({"name": "nope"}), 404).await;

    let found = carol.ok("group.search", json!({"query": "RUS"})).await;
    assert_eq!(
        found["groups"],
        json!([{"name": "rust", "desc": "Rustaceans", "members": 2}])
    );
    let members = carol.ok("group.members", json!({"name": "rust"})).await;
    assert_eq!(
        members["members"],
        json!([{"name": "alice", "role": "owner", "online": true}, {"name": "bob", "role": "member", "online": true}])
    );
    let mine = bob.ok("group.list", json!({})).await;
    assert!(
        mine["groups"]
            .as_array()
            .unwrap()
            .iter()
            .any(|g| g["name"] == "rust" && g["role"] == "member")
    );

    // Only members send, and only members receive.
    let e = carol
        .err(
            "chat.send",
            json!({"to": {"group": "rust"}, "text": "let me in"}),
            403,
        )
        .await;
    assert_eq!(e["code"], "not_member");
    alice
        .ok(
            "chat.send",
            json!({"to": {"group": "rust"}, "text": "members only"}),
        )
        .await;
    assert_eq!(
        bob.message("members only").await["to"],
        json!({"group": "rust"})
    );
    carol.no_push("message", QUIET).await;

    // Only the owner and admins kick.
    bob.err("group.kick", json!({"name": "rust", "user": "alice"}), 403)
        .await;
    carol.ok("group.join", json!({"name": "rust"})).await;
    alice
        .ok(
            "group.role",
            json!({"name": "rust", "user": "carol", "role": "admin"}),
        )
        .await;
    carol
        .err("group.kick", json!({"name": "rust", "user": "alice"}), 403)
        .await;
    carol
        .ok("group.kick", json!({"name": "rust", "user": "bob"}))
        .await;
    loop {
        let event = bob.push("group").await;
        if event["event"] == "kicked" {
            assert_eq!(
                event,
                json!({"group": "rust", "user": "bob", "event": "kicked"})
            );
            break;
        }
    }
    bob.err(
        "chat.send",
        json!({"to": {"group": "rust"}, "text": "still here?"}),
        403,
    )
    .await;

    carol.ok("group.leave", json!({"name": "rust"})).await;
    carol.err("group.leave", json!({"name": "rust"}), 403).await;
    carol
        .err("group.leave", json!({"name": "lobby"}), 400)
        .await;
}

#[tokio::test]
async fn private_messages_to_users_and_inside_groups() {
    let server = Server::start().await;
    let mut alice = server.user(server.ws().await, "alice").await;
    let mut bob = server.user(server.tcp().await, "bob").await;
    let mut carol = server.user(server.tcp().await, "carol").await;

    alice
        .ok("chat.send", json!({"to": {"user": "bob"}, "text": "psst"}))
        .await;
    let m = bob.message("psst").await;
    assert_eq!(
        (m["from"].clone(), m["to"].clone()),
        (json!("alice"), json!({"user": "bob"}))
    );
    alice
        .err(
            "chat.send",
            json!({"to": {"user": "ghost"}, "text": "boo"}),
            404,
        )
        .await;

    alice.ok("group.create", json!({"name": "team"})).await;
    bob.ok("group.join", json!({"name": "team"})).await;
    alice
        .ok(
            "chat.send",
            json!({"to": {"user": "bob", "group": "team"}, "text": "just you"}),
        )
        .await;
    assert_eq!(
        bob.message("just you").await["to"],
        json!({"user": "bob", "group": "team"})
    );
    // Not to a non-member, not from a non-member.
    alice
        .err(
            "chat.send",
            json!({"to": {"user": "carol", "group": "team"}, "text": "x"}),
            404,
        )
        .await;
    carol
        .err(
            "chat.send",
            json!({"to": {"user": "bob", "group": "team"}, "text": "x"}),
            403,
        )
        .await;
    carol.no_push("message", QUIET).await;
}

#[tokio::test]
async fn friends_presence_and_who_is_online() {
    let server = Server::start().await;
    let mut alice = server.user(server.ws().await, "alice").await;
    let mut reg = server.tcp().await;
    reg.ok(
        "user.register",
        json!({"name": "bob", "password": "pw-bob"}),
    )
    .await;

    alice.ok("friend.add", json!({"name": "bob"})).await;
    alice.err("friend.add", json!({"name": "ghost"}), 404).await;
    assert_eq!(
        alice.ok("friend.list", json!({})).await["friends"],
        json!([{"name": "bob", "online": false}])
    );

    let mut bob = server.tcp().await;
    bob.ok("user.login", json!({"name": "bob", "password": "pw-bob"}))
        .await;
    assert_eq!(
        alice.push("presence").await,
        json!({"user": "bob", "online": true})
    );
    assert_eq!(
        alice.ok("friend.list", json!({})).await["friends"],
        json!([{"name": "bob", "online": true}])
    );
    assert_eq!(
        alice.ok("user.online", json!({})).await["users"],
        json!(["alice", "bob"])
    );

    // An abnormal disconnect cleans up presence.
    drop(bob);
    assert_eq!(
        alice.push("presence").await,
        json!({"user": "bob", "online": false})
    );
    assert_eq!(
        alice.ok("user.online", json!({})).await["users"],
        json!(["alice"])
    );

    // Co-members of a group (not the lobby) hear presence too.
    let mut carol = server.user(server.tcp().await, "carol").await;
    alice.no_push("presence", QUIET).await;
    carol.ok("group.create", json!({"name": "g1"})).await;
    alice.ok("group.join", json!({"name": "g1"})).await;
    carol.ok("user.logout", json!({})).await;
    assert_eq!(
        alice.push("presence").await,
        json!({"user": "carol", "online": false})
    );
}

#[tokio::test]
async fn users_of_a_killed_server_are_offline_after_its_restart() {
    // The same node id across the restart, as with a fixed --http address.
    let server = Server::start_with(&["--node-id", "solo"]).await;
    let mut watcher = server.user(server.tcp().await, "watcher").await;
    let bob = server.user(server.tcp().await, "bob").await;
    assert_eq!(
        watcher.ok("user.online", json!({})).await["users"],
        json!(["bob", "watcher"])
    );
    // Give the store time to write bob's online entry to disk.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let server = server.crash_and_restart().await;
    drop((bob, watcher));
    let mut alice = server.user(server.tcp().await, "alice").await;
    assert_eq!(
        alice.ok("user.online", json!({})).await["users"],
        json!(["alice"]),
        "nobody is left online by the killed run"
    );
}

#[tokio::test]
async fn offline_messages_survive_a_restart() {
    let server = Server::start().await;
    let mut alice = server.user(server.ws().await, "alice").await;
    let mut reg = server.tcp().await;
    reg.ok(
        "user.register",
        json!({"name": "bob", "password": "pw-bob"}),
    )
    .await;
    alice.ok("group.create", json!({"name": "club"})).await;
    // bob joins, then goes offline.
    let mut bob = server.tcp().await;
    bob.ok("user.login", json!({"name": "bob", "password": "pw-bob"}))
        .await;
    bob.ok("group.join", json!({"name": "club"})).await;
    bob.ok("user.logout", json!({})).await;
    drop((bob, reg));

    alice
        .ok(
            "chat.send",
            json!({"to": {"user": "bob"}, "text": "while you were out"}),
        )
        .await;
    alice
        .ok(
            "chat.send",
            json!({"to": {"group": "club"}, "text": "club news"}),
        )
        .await;
    drop(alice);

    let server = server.restart().await;
    let mut bob = server.tcp().await;
    bob.ok("user.login", json!({"name": "bob", "password": "pw-bob"}))
        .await;
    assert_eq!(bob.message("while you were out").await["from"], "alice");
    assert_eq!(
        bob.message("club news").await["to"],
        json!({"group": "club"})
    );
}

#[tokio::test]
async fn unacked_messages_come_back_and_acked_ones_do_not() {
    let server = Server::start().await;
    let mut alice = server.user(server.ws().await, "alice").await;
    let mut bob = server.user(server.tcp().await, "bob").await;
    let token = bob.token.clone().unwrap();

    alice
        .ok("chat.send", json!({"to": {"user": "bob"}, "text": "one"}))
        .await;
    let first = bob.message("one").await;
    drop(bob); // no ack

    let mut bob = server.ws().await;
    bob.ok("user.resume", json!({"token": token})).await;
    let again = bob.message("one").await;
    assert_eq!(again["id"], first["id"], "redelivered with the same id");
    bob.ok("chat.ack", json!({"ids": [again["id"]]})).await;
    alice
        .ok("chat.send", json!({"to": {"user": "bob"}, "text": "two"}))
        .await;
    let two = bob.message("two").await;
    bob.ok("chat.ack", json!({"ids": [two["id"], "not-an-id"]}))
        .await;
    drop(bob);

    let mut bob = server.tcp().await;
    bob.ok("user.resume", json!({"token": token})).await;
    bob.no_push("message", QUIET).await;
}

#[tokio::test]
async fn a_repeated_client_id_sends_once() {
    let server = Server::start().await;
    let mut alice = server.user(server.ws().await, "alice").await;
    let mut bob = server.user(server.tcp().await, "bob").await;
    let send = json!({"to": {"user": "bob"}, "text": "exactly once", "client_id": "c-42"});
    let first = alice.ok("chat.send", send.clone()).await;
    let second = alice.ok("chat.send", send).await;
    assert_eq!(first, second, "the first reply is returned");
    bob.message("exactly once").await;
    bob.no_push("message", QUIET).await;
}

#[tokio::test]
async fn http_calls_and_server_sent_events() {
    let server = Server::start().await;
    let mut bob = server.user(server.ws().await, "bob").await;
    let (status, reply, _) = http_call(
        server.http,
        "user.register",
        json!({"name": "alice", "password": "pw-alice"}),
        None,
    )
    .await;
    assert_eq!((status, reply["status"].clone()), (200, json!(200)));
    let (status, reply, head) = http_call(
        server.http,
        "user.login",
        json!({"name": "alice", "password": "pw-alice"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let cookie = head
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a session cookie");
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let token = reply["content"]["token"].as_str().unwrap().to_owned();

    let mut events = Sse::open(server.http, &token).await;
    bob.ok(
        "chat.send",
        json!({"to": {"user": "alice"}, "text": "over sse"}),
    )
    .await;
    let m = events.push("message").await;
    assert_eq!(
        (m["from"].clone(), m["text"].clone()),
        (json!("bob"), json!("over sse"))
    );

    let (status, reply, _) = http_call(
        server.http,
        "chat.send",
        json!({"to": {"user": "bob"}, "text": "over http"}),
        Some(&token),
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(bob.message("over http").await["from"], "alice");
    let (_, reply, _) = http_call(
        server.http,
        "chat.send",
        json!({"to": {"user": "bob"}, "text": "x"}),
        None,
    )
    .await;
    assert_eq!(reply["status"], 401);
}

#[tokio::test]
async fn bad_input_gets_clear_errors_and_the_connection_stays() {
    let server =
        Server::start_with(&["--send-rate", "1", "--send-burst", "3", "--max-text", "100"]).await;
    let mut c = server.tcp().await;
    // Malformed JSON and unknown APIs, logged in or not.
    c.send_raw("{not json").await;
    let r = c.recv().await.unwrap();
    assert_eq!(
        (r["status"].clone(), r["id"].clone()),
        (json!(400), json!(null))
    );
    assert_eq!(
        c.err("no.such.api", json!({}), 404).await["code"],
        "unknown_api"
    );
    assert_eq!(
        c.err(
            "chat.send",
            json!({"to": {"group": "lobby"}, "text": "x"}),
            401
        )
        .await["code"],
        "not_logged_in"
    );
    let mut c = server.user(c, "eve").await;
    assert_eq!(
        c.err("no.such.api", json!({}), 404).await["code"],
        "unknown_api"
    );
    c.err("chat.send", json!({"to": "lobby", "text": "x"}), 400)
        .await;
    c.err("chat.send", json!({"to": {}, "text": "x"}), 400)
        .await;
    c.err(
        "chat.send",
        json!({"to": {"group": "lobby"}, "text": ""}),
        400,
    )
    .await;
    c.err(
        "chat.send",
        json!({"to": {"group": "lobby"}, "text": "x".repeat(101)}),
        413,
    )
    .await;
    c.err("user.register", json!({"name": "", "password": "x"}), 400)
        .await;
    c.err(
        "user.register",
        json!({"name": "12345", "password": "x"}),
        400,
    )
    .await;
    // Someone else's group, someone else's member.
    c.err("group.kick", json!({"name": "lobby", "user": "eve"}), 400)
        .await;
    // Rate limit: a burst of 3, then 429.
    for _ in 0..3 {
        c.ok(
            "chat.send",
            json!({"to": {"group": "lobby"}, "text": "spam"}),
        )
        .await;
    }
    assert_eq!(
        c.err(
            "chat.send",
            json!({"to": {"group": "lobby"}, "text": "spam"}),
            429
        )
        .await["code"],
        "rate_limited"
    );
    // An oversized frame is refused (413, or a clean close), never buffered whole.
    let huge = format!(
        "{{\"id\":1,\"api\":\"chat.send\",\"params\":{{\"text\":\"{}\"}}}}",
        "y".repeat(70_000)
    );
    let mut big = server.tcp().await;
    big.send_raw(&huge).await;
    // A 413 reply, or else a clean close.
    if let Some(r) = big.recv().await {
        assert_eq!(r["status"], 413, "{r}");
    }
    // The server is still up for everyone else.
    assert_eq!(
        c.ok("user.online", json!({})).await["users"],
        json!(["eve"])
    );
}

#[tokio::test]
async fn late_joiners_read_history_oldest_first() {
    let server = Server::start().await;
    let mut alice = server.user(server.ws().await, "alice").await;
    alice.ok("group.create", json!({"name": "book"})).await;
    for i in 1..=5 {
        alice
            .ok(
                "chat.send",
                json!({"to": {"group": "book"}, "text": format!("ch{i}")}),
            )
            .await;
    }
    let mut bob = server.user(server.tcp().await, "bob").await;
    bob.err("chat.history", json!({"to": {"group": "book"}}), 403)
        .await;
    bob.ok("group.join", json!({"name": "book"})).await;
    let h = bob
        .ok("chat.history", json!({"to": {"group": "book"}, "limit": 3}))
        .await;
    let texts: Vec<_> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("ch3"), json!("ch4"), json!("ch5")]);
    let before = h["messages"][0]["id"].clone();
    let older = bob
        .ok(
            "chat.history",
            json!({"to": {"group": "book"}, "before": before, "limit": 10}),
        )
        .await;
    let texts: Vec<_> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].clone())
        .collect();
    assert_eq!(texts, [json!("ch1"), json!("ch2")]);
}

/// A `Client` that is never used keeps the import honest across edits.
#[allow(dead_code)]
fn _uses(_: Client) {}

#[tokio::test]
async fn the_start_log_and_start_error_show_no_store_password() {
    // A PostgreSQL URL with a password, on a port nothing listens on: the
    // server logs its start line, then fails to open the store and says so.
    let mut cmd = support::process::command();
    cmd.args(["--store", "postgres://chat:hunter2@127.0.0.1:1/chat"])
        .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
        .args(["--msgid-json", "off", "--type-data", "off", "--log", "info"])
        .stderr(std::process::Stdio::piped());
    let out = tokio::time::timeout(Duration::from_secs(30), cmd.output())
        .await
        .expect("chat-server exits within 30 s")
        .expect("run chat-server");
    assert!(!out.status.success(), "started on an unreachable store");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let line = |marker: &str| {
        log.lines()
            .find(|l| l.contains(marker))
            .unwrap_or_else(|| panic!("no line with {marker:?} in:\n{log}"))
            .to_owned()
    };
    let redacted = "postgres://chat:***@127.0.0.1:1/chat";
    assert!(line("starting the chat server").contains(redacted), "{log}");
    assert!(line("cannot start").contains(redacted), "{log}");
    assert!(
        !log.contains("hunter2"),
        "the password is in the log:\n{log}"
    );
}

#[tokio::test]
async fn health_and_readiness_of_an_embedded_server() {
    let server = Server::start().await;
    let (status, _, body) = support::http(server.http, "GET", "/healthz", &[], "").await;
    assert_eq!(status, 200, "{body}");
    let (status, head, body) = support::http(server.http, "GET", "/readyz", &[], "").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        json!({"ready": true, "store": "ok", "broker": "ok", "shutting_down": false})
    );
    assert!(
        head.to_ascii_lowercase()
            .contains("cache-control: no-store"),
        "{head}"
    );
    let (status, _, _) = support::http(server.http, "HEAD", "/readyz", &[], "").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn the_built_in_web_client_is_served_from_an_empty_directory() {
    // No --web-dir, started in an empty directory: the web client comes from
    // the binary itself.
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().join("empty");
    std::fs::create_dir(&cwd).unwrap();
    let mut cmd = support::process::command();
    cmd.current_dir(&cwd)
        .arg("--store")
        .arg(format!("sled:{}", dir.path().join("data").display()))
        .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
        .args(["--msgid-json", "off", "--type-data", "off", "--log", "info"]);
    let (_child, addrs) = support::process::start(cmd, support::echo).await;

    let web = concat!(env!("CARGO_MANIFEST_DIR"), "/web");
    let index = std::fs::read_to_string(format!("{web}/index.html")).unwrap();
    let (status, head, body) = support::http(addrs.http, "GET", "/", &[], "").await;
    assert_eq!(status, 200, "{head}");
    assert_eq!(body, index);
    assert!(head.contains("text/html"), "{head}");
    // Every asset the page links to.
    let assets: Vec<&str> = index
        .split(['"', '\''])
        .filter(|s| s.starts_with('/') && s.len() > 1)
        .collect();
    assert!(
        assets.contains(&"/app.js") && assets.contains(&"/style.css"),
        "{assets:?}"
    );
    for asset in assets {
        let (status, head, body) = support::http(addrs.http, "GET", asset, &[], "").await;
        assert_eq!(status, 200, "{asset}: {head}");
        let on_disk = std::fs::read_to_string(format!("{web}{asset}")).unwrap();
        assert_eq!(body, on_disk, "{asset}");
    }
    assert!(
        std::fs::read_dir(&cwd).unwrap().next().is_none(),
        "the server wrote nothing in its working directory"
    );
}

#[tokio::test]
async fn web_dir_overrides_the_built_in_client_and_help_bakes_in_no_path() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("index.html"), "<h1>edited</h1>").unwrap();
    let server = Server::start_with(&["--web-dir", dir.path().to_str().unwrap()]).await;
    let (status, _, body) = support::http(server.http, "GET", "/", &[], "").await;
    assert_eq!((status, body.as_str()), (200, "<h1>edited</h1>"));
    let (status, _, _) = support::http(server.http, "GET", "/app.js", &[], "").await;
    assert_eq!(status, 404, "only the given directory is served");

    // The option has no default: no build machine path in the binary's help.
    let help = std::process::Command::new(env!("CARGO_BIN_EXE_chat-server"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    let option = help
        .split("--web-dir")
        .nth(1)
        .and_then(|rest| rest.split("\n      --").next())
        .unwrap_or_else(|| panic!("--web-dir in the help:\n{help}"));
    assert!(!option.contains("[default"), "{option}");
    assert!(!help.contains(env!("CARGO_MANIFEST_DIR")), "{help}");
}

/// The READY line (docs/chat.md, "Readiness") names every bound listener
/// and only those, with the real ports, and comes once.
#[tokio::test]
async fn the_ready_line_lists_exactly_the_bound_listeners() {
    use std::sync::{Arc, Mutex};
    for (legacy, expected) in [
        (
            "127.0.0.1:0",
            &["http", "msgid_json", "tcp", "type_data"][..],
        ),
        ("off", &["http", "tcp"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = support::process::command();
        cmd.arg("--store")
            .arg(format!("sled:{}", dir.path().join("data").display()))
            .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(["--msgid-json", legacy, "--type-data", legacy])
            // The line does not depend on the log filter.
            .args(["--log", "off"]);
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        let (mut child, ready) = testkit::ready::start(cmd, Duration::from_secs(60), move |l| {
            testkit::lock(&seen).push(l.to_owned());
        })
        .await;
        let names: Vec<&str> = ready.listeners().keys().map(String::as_str).collect();
        assert_eq!(names, expected, "{ready:?}");
        for (name, addr) in ready.listeners() {
            assert_ne!(addr.port(), 0, "{name}");
            tokio::net::TcpStream::connect(addr)
                .await
                .unwrap_or_else(|e| panic!("{name} at {addr} does not accept: {e}"));
        }
        support::process::interrupt(&mut child).await;
        let lines = testkit::lock(&lines).clone();
        let ready_lines = lines.iter().filter(|l| l.starts_with("READY ")).count();
        assert_eq!(ready_lines, 1, "{lines:?}");
    }
}
