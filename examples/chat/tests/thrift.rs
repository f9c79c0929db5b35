//! End-to-end: the Python Thrift chat room's real client stack (PROTOCOL.md
//! §4) against the real `chat-server` binary, with native WebSocket users on
//! the other side.
//!
//! The Python client is generated from the chat room's IDL
//! (`tests/thrift/chatserver.thrift`) with Debian's `thrift --gen py` into a
//! temporary directory, and driven by `tests/thrift/client.py` on Debian's
//! python3-thrift (`TSocket` + `TBufferedTransport` + `TBinaryProtocol`, the
//! client's own stack), which builds requests as the chat room's client does.
//! `scripts/test` installs `thrift-compiler` and `python3-thrift`.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Client, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::TcpStream;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Debian's Python, where python3-thrift installs (the PATH may have another).
const PYTHON: &str = "/usr/bin/python3";
/// The address the client puts in its requests (`socket.gethostbyname(...)`):
/// the server must show the peer's real one instead.
const CLAIMED_IP: &str = "10.9.8.7";
/// How long "nothing more arrives" is watched.
const QUIET: Duration = Duration::from_millis(700);

/// Thrift chat room clients in one Python process.
struct Py {
    _child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
    _generated: tempfile::TempDir,
}

fn thrift_missing() -> ! {
    panic!(
        "the Thrift test needs Debian's thrift-compiler and python3-thrift. Install them:\n    \
         sudo apt-get install -y thrift-compiler python3-thrift"
    )
}

impl Py {
    async fn start(addr: SocketAddr) -> Py {
        let generated = tempfile::tempdir().expect("temp dir");
        let idl = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/thrift/chatserver.thrift"
        );
        let out = Command::new("thrift")
            .args(["--gen", "py", "-out"])
            .arg(generated.path())
            .arg(idl)
            .output()
            .await
            .unwrap_or_else(|_| thrift_missing());
        assert!(
            out.status.success(),
            "thrift --gen py failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let has_lib = Command::new(PYTHON)
            .args(["-c", "import thrift.transport.TSocket"])
            .status()
            .await
            .is_ok_and(|s| s.success());
        if !has_lib {
            thrift_missing();
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/thrift/client.py");
        let mut child = Command::new(PYTHON)
            .arg(script)
            .arg(generated.path())
            .arg(addr.ip().to_string())
            .arg(addr.port().to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("start the Python client");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        Py {
            _child: child,
            stdin,
            stdout,
            _generated: generated,
        }
    }

    async fn send(&mut self, cmd: Value) -> Value {
        let line = format!("{cmd}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the Python client");
        let answer = tokio::time::timeout(Duration::from_secs(30), self.stdout.next_line())
            .await
            .unwrap_or_else(|_| panic!("no answer from the Python client to {cmd} within 30 s"))
            .expect("read the Python client")
            .unwrap_or_else(|| panic!("the Python client exited at {cmd}"));
        serde_json::from_str(&answer).expect("the Python client answers JSON")
    }

    async fn connect(&mut self, who: &str) {
        let got = self.send(json!({"op": "connect", "as": who})).await;
        assert_eq!(got, json!({"ok": true}), "connect {who}");
    }

    async fn close(&mut self, who: &str) {
        let got = self.send(json!({"op": "close", "as": who})).await;
        assert_eq!(got, json!({"ok": true}), "close {who}");
    }

    /// Call `method` on connection `who` (also the `uid`); the whole answer.
    async fn call(&mut self, who: &str, method: &str, data: Value) -> Value {
        self.send(json!({"op": "call", "as": who, "method": method, "uid": who, "ip": CLAIMED_IP, "data": data}))
            .await
    }

    /// A method whose reply is `{"status","content"}`: that, parsed.
    async fn reply(&mut self, who: &str, method: &str, data: Value) -> Value {
        let got = self.call(who, method, data.clone()).await;
        let s = got["result"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} {data}: {got}"));
        serde_json::from_str(s).unwrap_or_else(|e| panic!("{method}: {s:?} is not JSON: {e}"))
    }

    /// A chat method with the typed `text` wrapped as the client wraps it.
    async fn say(&mut self, who: &str, method: &str, data: Value, text: &str) -> Value {
        let cmd = json!({"op": "call", "as": who, "method": method, "uid": who, "ip": CLAIMED_IP, "data": data, "text": text});
        let got = self.send(cmd).await;
        serde_json::from_str(got["result"].as_str().unwrap_or_else(|| panic!("{got}")))
            .expect("a JSON reply")
    }

    /// The client's receive loop (`recv` every 0.5 s) until a message comes.
    async fn poll(&mut self, who: &str) -> String {
        let cmd = json!({"op": "poll", "as": who, "uid": who, "ip": CLAIMED_IP, "data": {}, "delay": 0.5, "timeout": 10});
        let got = self.send(cmd).await;
        let line = got["result"].as_str().unwrap_or_else(|| panic!("{got}"));
        assert!(!line.is_empty(), "{who}: nothing arrived within 10 s");
        line.to_owned()
    }

    /// One `recv`: what it returns, and how long it took.
    async fn recv_once(&mut self, who: &str) -> (String, Duration) {
        let start = Instant::now();
        let got = self.call(who, "recv", json!({})).await;
        let line = got["result"].as_str().unwrap_or_else(|| panic!("{got}"));
        (line.to_owned(), start.elapsed())
    }

    /// Assert nothing waits for `who`: `recv` answers `""`, at once.
    async fn nothing(&mut self, who: &str) {
        tokio::time::sleep(QUIET).await;
        let (line, took) = self.recv_once(who).await;
        assert_eq!(line, "", "{who} has a message waiting");
        assert!(took < Duration::from_secs(1), "recv took {took:?}");
    }

    /// Register (`pw-<who>`) and log in on a new connection `who`.
    async fn user(&mut self, who: &str) {
        self.connect(who).await;
        let pw = json!({"password": format!("pw-{who}")});
        assert_eq!(
            self.reply(who, "regist", pw.clone()).await,
            json!({"status": 200, "content": "注册成功！"})
        );
        assert_eq!(
            self.reply(who, "login", pw).await,
            json!({"status": 200, "content": "登录成功！"})
        );
    }
}

/// A delivered line `"{ip}:{sender} == {time}  ->  {text}"`, split; `time`
/// checked to be `YYYY-MM-DD HH:MM:SS.cc`.
fn parts(line: &str) -> (String, String, String) {
    let (ip, rest) = line.split_once(':').unwrap_or_else(|| panic!("{line:?}"));
    let (from, rest) = rest
        .split_once(" == ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let (time, text) = rest
        .split_once("  ->  ")
        .unwrap_or_else(|| panic!("{line:?}"));
    let time_ok = time.len() == 22
        && time.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            19 => b == b'.',
            _ => b.is_ascii_digit(),
        });
    assert!(time_ok, "time {time:?} in {line:?}");
    (ip.to_owned(), from.to_owned(), text.to_owned())
}

/// The line `who` gets next: from `from` (at the server's view of its
/// address, 127.0.0.1) with `text`.
async fn expect_line(py: &mut Py, who: &str, from: &str, text: &str) {
    let line = py.poll(who).await;
    assert_eq!(
        parts(&line),
        ("127.0.0.1".to_owned(), from.to_owned(), text.to_owned()),
        "{who} got {line:?}"
    );
}

fn ok(content: &str) -> Value {
    json!({"status": 200, "content": content})
}

/// 400 with the original's words, then `: <the reason>`.
fn failed(v: &Value, words: &str) {
    assert_eq!(v["status"], 400, "{v}");
    let content = v["content"].as_str().unwrap_or_default();
    assert!(
        content.starts_with(&format!("{words}: ")),
        "{content:?} should be {words:?} and a reason"
    );
}

async fn native(server: &Server, name: &str) -> Client {
    server.user(server.ws().await, name).await
}

#[tokio::test]
async fn the_python_client_registers_logs_in_chats_in_the_lobby_and_in_groups_with_native_users() {
    let server = Server::start().await;
    let mut py = Py::start(server.thrift.expect("thrift enabled")).await;

    // regist and login: taken names and wrong passwords are refused.
    py.user("gus").await;
    let again = py.reply("gus", "regist", json!({"password": "x"})).await;
    failed(&again, "注册失败！");
    py.connect("eve").await;
    assert_eq!(
        py.reply("eve", "login", json!({"password": "pw-gus"}))
            .await,
        json!({"status": 400, "content": "登录失败！"})
    );
    // Not logged in: the chat calls say so.
    let early = py.say("eve", "chat_default_group", json!({}), "hi").await;
    failed(&early, "消息发送失败");
    let mut nat = native(&server, "nat").await;

    // The lobby, both ways. Native users see the typed text, the real
    // sender and the real address, not the client's line.
    let sent = py
        .say("gus", "chat_default_group", json!({}), "hello, lobby 你好")
        .await;
    assert_eq!(sent, ok("消息发送成功"));
    let m = nat.message("hello, lobby 你好").await;
    assert_eq!(
        (&m["from"], &m["to"], &m["ip"]),
        (
            &json!("gus"),
            &json!({"group": "lobby"}),
            &json!("127.0.0.1")
        )
    );
    // The sender gets its own lobby message too, as from the original server.
    expect_line(&mut py, "gus", "gus", "hello, lobby 你好").await;
    nat.ok(
        "chat.send",
        json!({"to": {"group": "lobby"}, "text": "hi from the web"}),
    )
    .await;
    expect_line(&mut py, "gus", "nat", "hi from the web").await;
    py.nothing("gus").await;

    // show_default_group_mem: every user, as Python prints dict keys.
    assert_eq!(
        py.reply("gus", "show_default_group_mem", json!({})).await,
        ok("dict_keys(['gus', 'nat'])")
    );

    // Groups: create, search, join.
    let rust = json!({"group_name": "rust"});
    assert_eq!(
        py.reply("gus", "create_group", rust.clone()).await,
        ok("创建成功")
    );
    assert_eq!(
        py.reply("gus", "create_group", rust.clone()).await,
        json!({"status": 400, "content": "该群已存在"})
    );
    assert_eq!(
        py.reply("gus", "search_group", rust.clone()).await,
        ok("rust")
    );
    let none = py
        .reply("gus", "search_group", json!({"group_name": "nope"}))
        .await;
    failed(&none, "不存在这个群");
    py.user("ann").await;
    assert_eq!(
        py.reply("ann", "add_group", rust.clone()).await,
        ok("添加成功")
    );
    failed(
        &py.reply("ann", "add_group", rust.clone()).await,
        "添加失败",
    );
    // A native user joins the same group, and sees the thrift users in it.
    nat.ok("group.join", json!({"name": "rust"})).await;
    let members = nat.ok("group.members", json!({"name": "rust"})).await;
    let mut names: Vec<&str> = members["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m["name"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ann", "gus", "nat"]);
    // show_groups: {name: {members}}, as Python prints the original's dict.
    let groups = py.reply("gus", "show_groups", json!({})).await;
    let shown = groups["content"].as_str().expect("content");
    assert!(
        shown.starts_with("{'rust': {") && shown.ends_with("}}"),
        "{shown}"
    );
    for n in ["'gus'", "'ann'", "'nat'"] {
        assert!(shown.contains(n), "{shown}");
    }

    // Group chat: members only, both ways.
    let in_rust = json!({"group_name": "rust"});
    assert_eq!(
        py.say("gus", "chat_group", in_rust.clone(), "crabs!").await,
        ok("消息发送成功")
    );
    let m = nat.message("crabs!").await;
    assert_eq!(
        (&m["from"], &m["to"], &m["ip"]),
        (
            &json!("gus"),
            &json!({"group": "rust"}),
            &json!("127.0.0.1")
        )
    );
    expect_line(&mut py, "ann", "gus", "crabs!").await;
    expect_line(&mut py, "gus", "gus", "crabs!").await;
    nat.ok(
        "chat.send",
        json!({"to": {"group": "rust"}, "text": "from the web"}),
    )
    .await;
    expect_line(&mut py, "ann", "nat", "from the web").await;
    expect_line(&mut py, "gus", "nat", "from the web").await;
    py.user("bob").await;
    failed(
        &py.say("bob", "chat_group", in_rust.clone(), "let me in")
            .await,
        "消息发送失败",
    );

    // Whispers inside a group: to a native user, from one, and to someone
    // who is not in the group.
    let to_nat = json!({"group_name": "rust", "ruid": "nat"});
    assert_eq!(
        py.say("gus", "chat_with_single", to_nat, "psst, nat").await,
        ok("消息发送成功")
    );
    let m = nat.message("psst, nat").await;
    assert_eq!(
        (&m["from"], &m["to"]),
        (&json!("gus"), &json!({"user": "nat", "group": "rust"}))
    );
    nat.ok(
        "chat.send",
        json!({"to": {"user": "ann", "group": "rust"}, "text": "psst, ann"}),
    )
    .await;
    expect_line(&mut py, "ann", "nat", "psst, ann").await;
    let to_bob = json!({"group_name": "rust", "ruid": "bob"});
    failed(
        &py.say("gus", "chat_with_single", to_bob, "hi bob").await,
        "联系不到他",
    );
    // Only the whispered-to got the whispers.
    py.nothing("gus").await;
    py.nothing("bob").await;
    py.nothing("ann").await;

    // The IDL's unimplemented method: an application exception, at once,
    // and the connection goes on.
    let start = Instant::now();
    assert_eq!(
        py.call("gus", "show_group_mem", json!({"group_name": "rust"}))
            .await,
        json!({"exception": {"type": 1, "message": "Unknown function show_group_mem"}})
    );
    assert!(start.elapsed() < Duration::from_secs(2));
    assert_eq!(
        py.reply("gus", "search_group", rust).await,
        ok("rust"),
        "the connection still works"
    );
}

#[tokio::test]
async fn messages_wait_for_recv_across_a_pause_and_a_reconnection() {
    let server = Server::start().await;
    let mut py = Py::start(server.thrift.expect("thrift enabled")).await;
    py.user("gus").await;
    let mut nat = native(&server, "nat").await;

    // A pause in polling: what arrives meanwhile waits, in order.
    for i in 0..5 {
        nat.ok(
            "chat.send",
            json!({"to": {"user": "gus"}, "text": format!("while you were away {i}")}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for i in 0..5 {
        expect_line(&mut py, "gus", "nat", &format!("while you were away {i}")).await;
    }
    py.nothing("gus").await;

    // Messages still waiting when the connection ends are not lost: they
    // come to the next login.
    for i in 0..3 {
        nat.ok(
            "chat.send",
            json!({"to": {"user": "gus"}, "text": format!("unread {i}")}),
        )
        .await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    py.close("gus").await;
    // And so do those sent while the user is away.
    nat.ok(
        "chat.send",
        json!({"to": {"user": "gus"}, "text": "while offline"}),
    )
    .await;
    py.connect("gus").await;
    assert_eq!(
        py.reply("gus", "login", json!({"password": "pw-gus"}))
            .await,
        ok("登录成功！")
    );
    for i in 0..3 {
        expect_line(&mut py, "gus", "nat", &format!("unread {i}")).await;
    }
    expect_line(&mut py, "gus", "nat", "while offline").await;
    py.nothing("gus").await;

    // A user typed as a number logs in by the account's number.
    let numbered = nat
        .ok(
            "user.register",
            json!({"name": "num", "password": "pw-num", "number": 4242}),
        )
        .await;
    assert_eq!(numbered["number"], 4242);
    py.connect("4242").await;
    assert_eq!(
        py.reply("4242", "login", json!({"password": "pw-num"}))
            .await,
        ok("登录成功！")
    );
    nat.ok(
        "chat.send",
        json!({"to": {"user": "num"}, "text": "to a number"}),
    )
    .await;
    expect_line(&mut py, "4242", "nat", "to a number").await;
}

/// Read until the server closes the connection; what it wrote before.
async fn until_closed(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut got))
        .await
        .expect("the server closes within 10 s")
        .expect("a clean close");
    got
}

#[tokio::test]
async fn bad_input_closes_the_connection_and_nothing_else() {
    let server = Server::start().await;
    let addr = server.thrift.expect("thrift enabled");
    let mut py = Py::start(addr).await;
    py.user("gus").await;

    let call = |version: [u8; 4], name: &[u8], field: &[u8]| {
        let mut out = version.to_vec();
        out.extend(u32::try_from(name.len()).unwrap().to_be_bytes());
        out.extend(name);
        out.extend(7u32.to_be_bytes());
        out.extend(field);
        out
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec()),
        (
            "a wrong version word",
            call([0x80, 0x02, 0, 1], b"recv", &[0]),
        ),
        (
            "the framed transport",
            [&[0, 0, 0, 17][..], &call([0x80, 1, 0, 1], b"recv", &[0])].concat(),
        ),
        (
            "a string over the limit",
            call([0x80, 1, 0, 1], b"login", &[11, 0, 1, 0x7f, 0, 0, 0]),
        ),
        (
            "a method name over the limit",
            call([0x80, 1, 0, 1], &[b'x'; 65], &[0]),
        ),
    ];
    for (what, bytes) in cases {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(&bytes).await.expect("write");
        assert_eq!(
            until_closed(&mut s).await,
            b"",
            "{what}: closed, nothing written"
        );
    }
    // A truncated call: the server waits for the rest, and closes when the
    // client does.
    let mut s = TcpStream::connect(addr).await.expect("connect");
    s.write_all(&call(
        [0x80, 1, 0, 1],
        b"login",
        &[11, 0, 1, 0, 0, 1, 0, b'{'],
    ))
    .await
    .expect("write");
    s.shutdown().await.expect("half-close");
    assert_eq!(until_closed(&mut s).await, b"");

    // The well-behaved client never noticed.
    assert_eq!(
        py.reply("gus", "search_group", json!({"group_name": "nope"}))
            .await["status"],
        400
    );
}
