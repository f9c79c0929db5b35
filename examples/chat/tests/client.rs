//! End to end: the real `chat-client` binary (in `--script` mode, and once
//! interactively under tmux) against the real `chat-server` binary.
#![expect(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test"
)]
#![expect(
    clippy::print_stderr,
    reason = "each process's output goes to the test log, as in tests/support"
)]

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use support::{Client as Raw, Server, process};
use testkit::free_port;

/// How long a test waits for one event.
const EVENT_WAIT: Duration = Duration::from_secs(30);

/// A `chat-client --script` process: lines in, JSON events out.
struct Script {
    name: String,
    child: Child,
    stdin: Option<ChildStdin>,
    events: mpsc::UnboundedReceiver<Value>,
    /// Every event received so far, in order.
    log: Vec<Value>,
}

impl Script {
    async fn start(server: &str, user: &str, data: &Path, extra: &[&str]) -> Script {
        let mut child = Command::new(env!("CARGO_BIN_EXE_chat-client"))
            .args(["--script", "--server", server, "--user", user, "--data-dir"])
            .arg(data)
            .args(extra)
            .env_remove("CHAT_PASSWORD")
            .env_remove("CHAT_SERVER")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start chat-client");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, events) = mpsc::unbounded_channel();
        let tag = user.to_owned();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[{tag}] {line}");
                let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("{tag} printed a line that is not JSON ({e}): {line}")
                });
                if tx.send(event).is_err() {
                    break;
                }
            }
        });
        Script {
            name: user.to_owned(),
            stdin: child.stdin.take(),
            child,
            events,
            log: Vec::new(),
        }
    }

    /// Type one line.
    async fn line(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .expect("write to chat-client");
        stdin.flush().await.expect("flush");
    }

    /// The next event that satisfies `pred` (earlier ones stay in the log).
    async fn wait_for(&mut self, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let found = tokio::time::timeout(EVENT_WAIT, async {
            loop {
                let event = self.events.recv().await?;
                self.log.push(event.clone());
                if pred(&event) {
                    return Some(event);
                }
            }
        })
        .await;
        match found {
            Ok(Some(e)) => e,
            Ok(None) => panic!(
                "{}: exited before {what}; events: {:#?}",
                self.name, self.log
            ),
            Err(_) => panic!(
                "{}: no {what} within {EVENT_WAIT:?}; events: {:#?}",
                self.name, self.log
            ),
        }
    }

    async fn event(&mut self, kind: &str) -> Value {
        self.wait_for(kind, |e| e["event"] == kind).await
    }

    async fn message(&mut self, text: &str) -> Value {
        self.wait_for(&format!("message {text:?}"), |e| {
            e["event"] == "message" && e["text"] == text
        })
        .await
    }

    /// `/channels` as `{channel: unread}`, with the current channel.
    async fn channels(&mut self) -> (Value, String) {
        self.line("/channels").await;
        let e = self.event("channels").await;
        let mut map = serde_json::Map::new();
        for c in e["channels"].as_array().expect("a list") {
            map.insert(
                c["channel"].as_str().expect("a name").to_owned(),
                c["unread"].clone(),
            );
        }
        (
            Value::Object(map),
            e["current"].as_str().unwrap_or_default().to_owned(),
        )
    }

    /// Close stdin and wait for the exit; every event of the run.
    async fn finish(mut self) -> (ExitStatus, Vec<Value>) {
        drop(self.stdin.take());
        let status = tokio::time::timeout(EVENT_WAIT, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "{} did not exit within {EVENT_WAIT:?} after its input ended",
                    self.name
                )
            })
            .expect("wait for chat-client");
        while let Some(e) = self.events.recv().await {
            self.log.push(e);
        }
        (status, self.log)
    }
}

fn of_kind<'a>(events: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    events.iter().filter(move |e| e["event"] == kind)
}

fn texts(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .expect("messages")
        .iter()
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn ws(server: &Server) -> String {
    format!("ws://{}/ws", server.http)
}

fn tcp(addr: SocketAddr) -> String {
    format!("tcp://{addr}")
}

/// Log `name` in over raw TCP (password `pw-<name>`, as `Script` users have).
async fn raw_login(addr: SocketAddr, name: &str) -> Raw {
    let mut c = Raw::tcp(addr).await;
    c.ok(
        "user.login",
        json!({"name": name, "password": format!("pw-{name}")}),
    )
    .await;
    c
}

fn pw(name: &str) -> String {
    format!("pw-{name}")
}

#[tokio::test]
async fn two_clients_exchange_lobby_group_and_private_messages() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut alice = Script::start(
        &ws(&server),
        "alice",
        &dir.path().join("alice"),
        &["--register", "--password", &pw("alice")],
    )
    .await;
    let login = alice.event("login").await;
    assert_eq!(
        (login["name"].clone(), login["resumed"].clone()),
        (json!("alice"), json!(false))
    );
    let mut bob = Script::start(
        &tcp(server.tcp),
        "bob",
        &dir.path().join("bob"),
        &["--register", "--password", &pw("bob")],
    )
    .await;
    bob.event("login").await;

    // The lobby, WebSocket to TCP, with an emoticon expanded on display.
    alice.line("hello lobby :)").await;
    let m = bob.message("hello lobby :)").await;
    assert_eq!(m["channel"], "#lobby");
    assert_eq!(m["from"], "alice");
    assert_eq!(m["display"], "hello lobby ☺");
    assert_eq!(m["unread"], false, "the lobby is bob's current channel");
    let sent = alice.event("sent").await;
    assert_eq!(
        sent["id"], m["id"],
        "the id the server gave alice is the one bob sees"
    );

    // A group: only after joining; the command switches the channel.
    alice.line("/group create rust Rustaceans").await;
    alice
        .wait_for("group created", |e| {
            e["event"] == "ok" && e["command"] == "group create"
        })
        .await;
    bob.line("/group join rust").await;
    bob.wait_for("group joined", |e| {
        e["event"] == "ok" && e["command"] == "group join"
    })
    .await;
    alice
        .wait_for("bob joined", |e| {
            e["event"] == "group" && e["user"] == "bob" && e["action"] == "joined"
        })
        .await;
    bob.line("rust is fun <3").await;
    let m = alice.message("rust is fun <3").await;
    assert_eq!(
        (m["channel"].clone(), m["display"].clone()),
        (json!("#rust"), json!("rust is fun ♥"))
    );

    // Private: a channel of its own, unread while bob looks at #rust.
    alice.line("/msg bob psst").await;
    let m = bob.message("psst").await;
    assert_eq!(
        (
            m["channel"].clone(),
            m["unread"].clone(),
            m["private"].clone()
        ),
        (json!("@alice"), json!(true), json!(false))
    );
    alice.line("/join #lobby").await;
    alice.line("lobby again").await;
    assert_eq!(bob.message("lobby again").await["unread"], true);

    let (unread, current) = bob.channels().await;
    assert_eq!(current, "#rust");
    assert_eq!(unread, json!({"#lobby": 1, "#rust": 0, "@alice": 1}));
    bob.line("/join @alice").await;
    bob.line("private reply").await;
    let m = alice.message("private reply").await;
    assert_eq!(
        (m["channel"].clone(), m["to"].clone()),
        (json!("@bob"), json!({"user": "alice"}))
    );
    let (unread, current) = bob.channels().await;
    assert_eq!(
        (unread, current.as_str()),
        (json!({"#lobby": 1, "#rust": 0, "@alice": 0}), "@alice")
    );

    // Errors are events too, and do not end the client.
    bob.line("/group join no-such-group").await;
    let e = bob.wait_for("an error", |e| e["event"] == "error").await;
    assert_eq!(
        (e["command"].clone(), e["status"].clone()),
        (json!("group join"), json!(404))
    );
    bob.line("/frobnicate").await;
    assert_eq!(bob.event("error").await["code"], "bad_command");

    for client in [alice, bob] {
        let name = client.name.clone();
        let (status, events) = client.finish().await;
        assert!(
            status.success(),
            "{name} exits 0 at the end of its input: {status}"
        );
        let ids: Vec<String> = of_kind(&events, "message")
            .map(|m| m["id"].to_string())
            .collect();
        let unique: std::collections::HashSet<&String> = ids.iter().collect();
        assert_eq!(
            ids.len(),
            unique.len(),
            "{name} shows each message once: {ids:?}"
        );
    }
}

#[tokio::test]
async fn a_restarted_client_shows_stored_history_and_unread_counts_then_fetches_only_whats_new() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let bob_dir = dir.path().join("bob");
    let mut alice = Script::start(
        &ws(&server),
        "alice",
        &dir.path().join("alice"),
        &["--register", "--password", &pw("alice")],
    )
    .await;
    alice.event("login").await;
    let mut bob = Script::start(
        &tcp(server.tcp),
        "bob",
        &bob_dir,
        &["--register", "--password", &pw("bob")],
    )
    .await;
    bob.event("login").await;

    alice.line("/group create book").await;
    alice.event("ok").await;
    bob.line("/group join book").await;
    bob.event("ok").await;
    bob.line("/join #lobby").await;
    bob.wait_for("back in the lobby", |e| {
        e["event"] == "channel" && e["channel"] == "#lobby"
    })
    .await;
    alice.line("/join #lobby").await;
    alice.line("welcome to the lobby").await;
    bob.message("welcome to the lobby").await;
    alice.line("/join #book").await;
    alice.line("chapter one").await;
    alice.line("/msg bob a secret :shrug:").await;
    let one = bob.message("chapter one").await;
    let secret = bob.message("a secret :shrug:").await;
    assert_eq!(
        (one["unread"].clone(), secret["unread"].clone()),
        (json!(true), json!(true))
    );
    let (_, events) = alice.finish().await;
    assert_eq!(of_kind(&events, "sent").count(), 3);
    let (status, events) = bob.finish().await;
    assert!(status.success());
    let acked: Vec<Value> = of_kind(&events, "acked")
        .flat_map(|e| e["ids"].as_array().cloned().unwrap_or_default())
        .collect();
    for m in [&one, &secret] {
        assert!(
            acked.contains(&m["id"]),
            "bob acked {} before exiting: {acked:?}",
            m["text"]
        );
    }

    // The server goes away; bob starts again on the same data directory,
    // with no password: history and unread counts come from tiny_q.
    let mut server = server;
    server.stop().await;
    let mut bob = Script::start(&tcp(server.tcp), "bob", &bob_dir, &[]).await;
    bob.wait_for("offline", |e| {
        e["event"] == "connection" && e["state"] == "offline"
    })
    .await;
    let (unread, current) = bob.channels().await;
    assert_eq!(current, "#lobby");
    assert_eq!(unread, json!({"#lobby": 0, "#book": 1, "@alice": 1}));
    bob.line("/history").await;
    let h = bob.event("history").await;
    assert_eq!(
        (h["channel"].clone(), h["source"].clone()),
        (json!("#lobby"), json!("local"))
    );
    assert_eq!(texts(&h["messages"]), ["welcome to the lobby"]);
    bob.line("/join @alice").await;
    bob.line("/history").await;
    let h = bob.event("history").await;
    assert_eq!(texts(&h["messages"]), ["a secret :shrug:"]);
    assert_eq!(h["messages"][0]["display"], "a secret ¯\\_(ツ)_/¯");
    bob.line("/emoticons off").await;
    bob.line("/history").await;
    assert_eq!(
        bob.event("history").await["messages"][0]["display"],
        "a secret :shrug:"
    );
    let (unread, _) = bob.channels().await;
    assert_eq!(
        unread,
        json!({"#lobby": 0, "#book": 1, "@alice": 0}),
        "reading @alice cleared it, on disk"
    );
    let (status, events) = bob.finish().await;
    assert!(
        status.success(),
        "offline at the end of input is not a failure"
    );
    assert_eq!(
        of_kind(&events, "message").count(),
        0,
        "nothing came from a server"
    );
    assert_eq!(of_kind(&events, "login").count(), 0);

    // The server is back (new ports); alice writes while bob is away.
    let server = server.restart().await;
    let mut raw = raw_login(server.tcp, "alice").await;
    raw.ok(
        "chat.send",
        json!({"to": {"group": "book"}, "text": "chapter two"}),
    )
    .await;
    drop(raw);

    let mut bob = Script::start(&tcp(server.tcp), "bob", &bob_dir, &["--linger-ms", "3000"]).await;
    let login = bob.event("login").await;
    assert_eq!(login["resumed"], true, "the saved session token was used");
    let two = bob.message("chapter two").await;
    assert_eq!(
        (two["channel"].clone(), two["unread"].clone()),
        (json!("#book"), json!(true))
    );
    let (unread, _) = bob.channels().await;
    assert_eq!(unread, json!({"#lobby": 0, "#book": 2, "@alice": 0}));
    bob.line("/join #book").await;
    bob.line("/history").await;
    let h = bob
        .wait_for("local history", |e| {
            e["event"] == "history" && e["source"] == "local"
        })
        .await;
    assert_eq!(texts(&h["messages"]), ["chapter one", "chapter two"]);
    let (status, events) = bob.finish().await;
    assert!(status.success());
    let shown: Vec<String> = of_kind(&events, "message")
        .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(
        shown,
        ["chapter two"],
        "only what is new is fetched and shown"
    );
}

/// A chat-server on fixed loopback ports, so that a client can reconnect to
/// the same address after a restart.
struct FixedServer {
    child: Option<Child>,
    http: SocketAddr,
    tcp: SocketAddr,
    store: PathBuf,
    _dir: tempfile::TempDir,
}

impl FixedServer {
    async fn start() -> FixedServer {
        let dir = tempfile::tempdir().unwrap();
        let mut s = FixedServer {
            child: None,
            http: free_port(),
            tcp: free_port(),
            store: dir.path().join("data"),
            _dir: dir,
        };
        s.spawn().await;
        s
    }

    async fn spawn(&mut self) {
        let mut cmd = process::command();
        cmd.arg("--store")
            .arg(format!("sled:{}", self.store.display()))
            .args(["--http", &self.http.to_string()])
            .args(["--tcp", &self.tcp.to_string()])
            .args(["--msgid-json", "off", "--type-data", "off"])
            .args(["--token-json", "off", "--thrift", "off", "--log", "info"]);
        let (child, _) = process::start(cmd, |line| eprintln!("[server] {line}")).await;
        self.child = Some(child);
    }

    async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            process::interrupt(&mut child).await;
        }
    }
}

#[tokio::test]
async fn reconnects_after_the_server_restarts_resumes_and_drops_redelivered_duplicates() {
    let mut server = FixedServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // Acks are held back for minutes: what bob received before the restart
    // is still unacked, so the server delivers it again afterwards.
    let mut bob = Script::start(
        &tcp(server.tcp),
        "bob",
        &dir.path().join("bob"),
        &[
            "--register",
            "--password",
            &pw("bob"),
            "--ack-delay-ms",
            "600000",
            "--max-backoff-ms",
            "1000",
        ],
    )
    .await;
    bob.event("login").await;
    let mut alice = Raw::tcp(server.tcp).await;
    alice
        .ok(
            "user.register",
            json!({"name": "alice", "password": pw("alice")}),
        )
        .await;
    alice
        .ok(
            "user.login",
            json!({"name": "alice", "password": pw("alice")}),
        )
        .await;
    let sent = alice
        .ok(
            "chat.send",
            json!({"to": {"user": "bob"}, "text": "before the restart"}),
        )
        .await;
    let first = bob.message("before the restart").await;
    assert_eq!(first["id"], sent["id"]);
    drop(alice);

    server.stop().await;
    let offline = bob
        .wait_for("offline", |e| {
            e["event"] == "connection" && e["state"] == "offline"
        })
        .await;
    assert!(
        offline["retry_in_ms"].as_u64().is_some_and(|ms| ms <= 1200),
        "{offline}"
    );
    server.spawn().await;

    let login = bob.event("login").await;
    assert_eq!(
        login["resumed"], true,
        "resumed with the saved token after the restart"
    );
    let dup = bob.event("duplicate").await;
    assert_eq!(
        (dup["id"].clone(), dup["channel"].clone()),
        (first["id"].clone(), json!("@alice"))
    );

    let mut alice = raw_login(server.tcp, "alice").await;
    alice
        .ok(
            "chat.send",
            json!({"to": {"user": "bob"}, "text": "after the restart"}),
        )
        .await;
    let second = bob.message("after the restart").await;
    bob.line("/join @alice").await;
    bob.line("/history").await;
    let h = bob.event("history").await;
    assert_eq!(
        texts(&h["messages"]),
        ["before the restart", "after the restart"]
    );

    let (status, events) = bob.finish().await;
    assert!(status.success());
    let shown: Vec<&Value> = of_kind(&events, "message").map(|m| &m["id"]).collect();
    assert_eq!(
        shown,
        [&first["id"], &second["id"]],
        "the redelivered message is not shown again"
    );
    let acked: Vec<Value> = of_kind(&events, "acked")
        .flat_map(|e| e["ids"].as_array().cloned().unwrap_or_default())
        .collect();
    assert!(
        acked.contains(&first["id"]) && acked.contains(&second["id"]),
        "everything stored is acked at exit: {acked:?}"
    );

    // Acked means delivered to the terminal's device: a fresh login of that
    // device gets nothing again (another device would: nothing was read).
    let mut check = Raw::tcp(server.tcp).await;
    check
        .ok(
            "user.login",
            json!({"name": "bob", "password": pw("bob"), "device": "terminal"}),
        )
        .await;
    check.no_push("message", Duration::from_millis(500)).await;
    server.stop().await;
}

/// Run tmux on a private socket.
fn tmux(socket: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("tmux")
        .args(["-L", socket])
        .args(args)
        .env("TERM", "xterm-256color")
        .output()
        .unwrap_or_else(|e| panic!("tmux is needed for this test (apt-get install tmux): {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn screen_with(socket: &str, what: &str) -> String {
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        let screen = tmux(socket, &["capture-pane", "-p", "-t", "main"]);
        if screen.contains(what) {
            return screen;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the screen never showed {what:?}:\n{screen}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn interactive_screen_under_tmux_keeps_the_input_line_while_messages_arrive() {
    let server = Server::start().await;
    let dir = tempfile::tempdir().unwrap();
    let socket = format!("chat-client-test-{}", std::process::id());
    let _tmux = TmuxServer(socket.clone());
    // The shell records the client's exit status: tmux 3.3 sometimes misses
    // the SIGCHLD of a pane's process and never learns it.
    let status_file = dir.path().join("status");
    let command = format!(
        "{} --server tcp://{} --user carol --password pw-carol --register --data-dir {}; echo $? > {}",
        env!("CARGO_BIN_EXE_chat-client"),
        server.tcp,
        dir.path().join("carol").display(),
        status_file.display()
    );
    tmux(
        &socket,
        &[
            "new-session",
            "-d",
            "-s",
            "main",
            "-x",
            "100",
            "-y",
            "20",
            &command,
        ],
    );
    tmux(
        &socket,
        &["set-option", "-t", "main", "remain-on-exit", "on"],
    );
    let screen = screen_with(&socket, "● online").await;
    assert!(
        screen.contains("channels") && screen.contains("› #lobby"),
        "{screen}"
    );

    tmux(
        &socket,
        &["send-keys", "-t", "main", "-l", "typing in progress"],
    );
    screen_with(&socket, "> typing in progress").await;
    // The other user's name is in her own language: wide characters in the
    // message list and the channel list.
    let mut alice = Raw::tcp(server.tcp).await;
    alice
        .ok(
            "user.register",
            json!({"name": "张三", "password": pw("张三")}),
        )
        .await;
    alice
        .ok(
            "user.login",
            json!({"name": "张三", "password": pw("张三")}),
        )
        .await;
    alice
        .ok(
            "chat.send",
            json!({"to": {"group": "lobby"}, "text": "ping from alice :)"}),
        )
        .await;
    alice
        .ok(
            "chat.send",
            json!({"to": {"user": "carol"}, "text": "private ping"}),
        )
        .await;
    let screen = screen_with(&socket, "张三: ping from alice ☺").await;
    let screen = if screen.contains("@张三") {
        screen
    } else {
        screen_with(&socket, "@张三").await
    };
    let lines: Vec<&str> = screen.lines().collect();
    let input = lines
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .copied()
        .unwrap_or_default();
    assert_eq!(
        input.trim_end(),
        "> typing in progress",
        "the input line survived:\n{screen}"
    );
    assert!(
        screen.contains("@张三") && screen.contains("(1)"),
        "unread count in the channel list:\n{screen}"
    );
    let cursor = tmux(
        &socket,
        &[
            "display-message",
            "-p",
            "-t",
            "main",
            "#{cursor_x},#{cursor_y}",
        ],
    );
    assert_eq!(
        cursor.trim(),
        format!("{},{}", "> typing in progress".len(), 19),
        "the cursor stays at the end of the input"
    );

    tmux(&socket, &["send-keys", "-t", "main", "Enter"]);
    alice.message("typing in progress").await;
    screen_with(&socket, "carol: typing in progress").await;

    tmux(&socket, &["send-keys", "-t", "main", "-l", "/quit"]);
    tmux(&socket, &["send-keys", "-t", "main", "Enter"]);
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    let status = loop {
        match std::fs::read_to_string(&status_file) {
            Ok(s) if s.ends_with('\n') => break s,
            _ => {}
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "chat-client did not exit on /quit"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(status.trim(), "0", "exit status");
    // tmux may still be drawing the client's last output: give it time to
    // show the screen from before the client (the alternate screen left).
    let deadline = tokio::time::Instant::now() + EVENT_WAIT;
    loop {
        let after = tmux(&socket, &["capture-pane", "-p", "-t", "main"]);
        if !after.contains("› #lobby") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the alternate screen was left on exit:\n{after}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A tmux server of a test's own, killed when dropped (even on failure).
struct TmuxServer(String);

impl Drop for TmuxServer {
    fn drop(&mut self) {
        let _ = std::process::Command::new("tmux")
            .args(["-L", &self.0, "kill-server"])
            .stderr(std::process::Stdio::null())
            .status();
    }
}
