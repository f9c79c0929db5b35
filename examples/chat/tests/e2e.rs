//! End-to-end: the real `chat-server` binary driven over WebSocket, TCP and
//! HTTP + Server-Sent Events. The API's behaviour is tested in process
//! (`api.rs`); these tests are about the transports, the process (start,
//! restart, logs, health) and what survives a restart.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Server, Sse, http_call};

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
async fn devices_of_one_user_on_websocket_tcp_and_sse_are_all_live() {
    let server = Server::start().await;
    let mut alice = server.user(server.ws().await, "alice").await;
    // bob's devices: a WebSocket, a TCP connection and HTTP calls with SSE.
    let mut web = server.user(server.ws().await, "bob").await;
    let mut tcp = server.tcp().await;
    let login = json!({"name": "bob", "password": "pw-bob", "device": "terminal"});
    assert_eq!(tcp.ok("user.login", login).await["device"], "terminal");
    let (status, reply, _) = http_call(
        server.http,
        "user.login",
        json!({"name": "bob", "password": "pw-bob", "device": "curl"}),
        None,
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let token = reply["content"]["token"].as_str().unwrap().to_owned();
    let mut sse = Sse::open(server.http, &token).await;

    // Every device receives.
    let sent = alice
        .ok(
            "chat.send",
            json!({"to": {"user": "bob"}, "text": "to every device"}),
        )
        .await;
    web.message("to every device").await;
    tcp.message("to every device").await;
    assert_eq!(sse.push("message").await["text"], "to every device");

    // Reading on the terminal clears the badge on the others; alice sees it.
    tcp.ok(
        "chat.read",
        json!({"to": {"user": "alice"}, "seq": sent["seq"]}),
    )
    .await;
    let cleared = json!({"to": {"user": "alice"}, "read": sent["seq"], "unread": 0});
    assert_eq!(web.push("read").await, cleared);
    assert_eq!(sse.push("read").await, cleared);
    let receipt = alice.push("receipt").await;
    assert_eq!(
        (receipt["user"].clone(), receipt["seq"].clone()),
        (json!("bob"), sent["seq"].clone())
    );

    // An edit, a reaction and a delete reach every device live.
    alice
        .ok(
            "chat.edit",
            json!({"to": {"user": "bob"}, "seq": sent["seq"], "text": "edited"}),
        )
        .await;
    assert_eq!(web.push("edit").await["text"], "edited");
    assert_eq!(tcp.push("edit").await["text"], "edited");
    assert_eq!(sse.push("edit").await["text"], "edited");
    web.ok(
        "chat.react",
        json!({"to": {"user": "alice"}, "seq": sent["seq"], "reaction": "👍"}),
    )
    .await;
    assert_eq!(alice.push("react").await["reaction"], "👍");
    assert_eq!(sse.push("react").await["user"], "bob");
    alice
        .ok(
            "chat.delete",
            json!({"to": {"user": "bob"}, "seq": sent["seq"]}),
        )
        .await;
    assert_eq!(tcp.push("delete").await["by"], "alice");
    assert_eq!(sse.push("delete").await["seq"], sent["seq"]);

    // A device that was away catches up from its own cursor: the terminal
    // read up to the first message (reading counts as delivered), so a new
    // connection of it gets exactly what came while it was away.
    drop(tcp);
    alice
        .ok(
            "chat.send",
            json!({"to": {"user": "bob"}, "text": "while away"}),
        )
        .await;
    web.message("while away").await;
    let mut tcp = server.tcp().await;
    let login = json!({"name": "bob", "password": "pw-bob", "device": "terminal"});
    tcp.ok("user.login", login).await;
    let first = tcp.push("message").await;
    assert_eq!(first["text"], "while away", "{first}");
    tcp.no_push("message", Duration::from_millis(300)).await;
}

#[tokio::test]
async fn the_start_log_and_start_error_show_no_store_password() {
    // A PostgreSQL URL with a password, on a port nothing listens on: the
    // server logs its start line, then fails to open the store and says so.
    let mut cmd = support::process::command();
    cmd.args(["--store", "postgres://chat:hunter2@127.0.0.1:1/chat"])
        .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
        .args(["--msgid-json", "off", "--type-data", "off"])
        .args(["--token-json", "off", "--thrift", "off", "--log", "info"])
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
        .args(["--msgid-json", "off", "--type-data", "off"])
        .args(["--token-json", "off", "--thrift", "off", "--log", "info"]);
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
            &[
                "http",
                "msgid_json",
                "tcp",
                "thrift",
                "token_json",
                "type_data",
            ][..],
        ),
        ("off", &["http", "tcp"][..]),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = support::process::command();
        cmd.arg("--store")
            .arg(format!("sled:{}", dir.path().join("data").display()))
            .args(["--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"])
            .args(["--msgid-json", legacy, "--type-data", legacy])
            .args(["--token-json", legacy])
            .args(["--thrift", legacy])
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
