//! End-to-end: the token-json protocol (PROTOCOL.md §5) of the C++
//! "cluster-chat-server" against the real `chat-server` binary, with a
//! native WebSocket user and a msgid-json user on the other side.
//!
//! The client here is a transcript of the repository's own terminal client
//! (`xqt1234/cluster-chat-server`, `src/client/`, the token version of
//! commit 40c135cc for `clientService.cpp`, 5e4f7545 for `showUI.cpp`,
//! 41bf412e for `clientNet.cpp`):
//!
//! - what it sends is `ClientService::buildRequest` (clientService.cpp):
//!   `{"msgid", "version":"1.0", "token": m_token, "data": obj}`, written by
//!   nlohmann's `dump()` (compact, keys sorted), one `::send` per request
//!   (`ClientNet::send`, clientNet.cpp lines 33-45); the `data` of each
//!   request is the one of `showUI::showStart` (1004 `{"device":"pc",
//!   "token"}`), `showUI::showLogin` (1000 `{"userid","password"}`),
//!   `showUI::showRegister` (1100 `{"username","password"}`) and of
//!   `ClientService::addFriend` (2000 `{"friendid"}`), `createGroup` (3000
//!   `{"groupname","groupdesc"}`), `joinGroup` (3100 `{"groupid"}`),
//!   `chatOne` (4000 `{"toid","userid","msg"}`), `chatGroup` (4100
//!   `{"groupid","msg"}`) and `sendHeart` (5002, `data` null);
//! - what it reads is one `::recv` of at most 1024 bytes per message
//!   (`ClientNet::recvmsg`, clientNet.cpp lines 47-64), parsed as one JSON
//!   object (`ClientService::checkValid`): `msgid` 5001 is an error (`code`,
//!   `message`); a login's answer is read by `ClientService::setState`
//!   (`data.userinfo.userid/username`, `data.friends[].userid/username/state`,
//!   `data.groups[].groupid/groupname/groupdesc`, `data.offlinemsg[]`: for
//!   4001 `item.data.msg` and `item.data.value("userid", "")` — a string —,
//!   for 4101 `item.msg`, and `data.token`); a registration's by
//!   `sendregister` (`data.userid`, `data.username`); the rest by the
//!   `handle_MSG_*_ACK` functions (2001 `friendid/friendname/msg`, 4001
//!   `msg/fromid`, 4101 `msg/groupid`, 3001 and 3101
//!   `groupid/groupname/groupdesc/msg`).

mod support;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use support::{Server, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long "nothing more arrives" is watched.
const QUIET: Duration = Duration::from_millis(400);

/// nlohmann's `dump()`: compact, object keys sorted (it keeps objects in a
/// `std::map`).
fn dump(v: &Value) -> String {
    match v {
        Value::Object(o) => {
            let mut keys: Vec<&String> = o.keys().collect();
            keys.sort();
            let fields: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{}:{}", Value::String(k.clone()), dump(&o[k])))
                .collect();
            format!("{{{}}}", fields.join(","))
        }
        Value::Array(a) => format!("[{}]", a.iter().map(dump).collect::<Vec<_>>().join(",")),
        other => other.to_string(),
    }
}

/// The repository's client, as far as the wire goes.
struct TokenClient {
    stream: TcpStream,
    /// `m_token`: empty until a login or read from the token file.
    token: String,
    kept: VecDeque<Value>,
}

impl TokenClient {
    async fn connect(addr: SocketAddr) -> TokenClient {
        let stream = TcpStream::connect(addr).await.expect("connect token-json");
        stream.set_nodelay(true).expect("nodelay");
        TokenClient {
            stream,
            token: String::new(),
            kept: VecDeque::new(),
        }
    }

    /// `buildRequest(data, msgid)` and `ClientNet::send`: the exact bytes.
    async fn send(&mut self, msgid: u64, data: Value) {
        let request = json!({"msgid": msgid, "version": "1.0", "token": self.token, "data": data});
        self.send_raw(dump(&request).as_bytes()).await;
    }

    async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Write, ignoring a server that closed meanwhile.
    async fn send_until_closed(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// `ClientNet::recvmsg` and `checkValid`: one read of at most 1024 bytes
    /// must be exactly one JSON object. `None` once closed.
    async fn recv(&mut self) -> Option<Value> {
        if let Some(v) = self.kept.pop_front() {
            return Some(v);
        }
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
            .await
            .expect("a token-json object within 10 s")
            .unwrap_or(0);
        if n == 0 {
            return None;
        }
        // `json::parse(std::string(buf, n))`: nlohmann's parser takes a NUL
        // for the end of the input, so the object ends at the first NUL; it
        // fails on anything but NULs after it.
        let read = &buf[..n];
        let end = read.iter().position(|b| *b == 0).unwrap_or(n);
        assert!(
            read[end..].iter().all(|b| *b == 0),
            "the client would fail on what follows the object: {:?}",
            String::from_utf8_lossy(read)
        );
        let read = &read[..end];
        let v: Value = serde_json::from_slice(read).unwrap_or_else(|e| {
            panic!(
                "the client parses each read as one object ({e}): {:?}",
                String::from_utf8_lossy(read)
            )
        });
        assert!(v["msgid"].is_u64(), "checkValid wants a msgid: {v}");
        assert!(v["timestamp"].is_u64(), "every answer has a timestamp: {v}");
        Some(v)
    }

    /// The next object with `msgid` for which `pred` holds (others kept).
    async fn expect_where(&mut self, msgid: u64, pred: impl Fn(&Value) -> bool) -> Value {
        if let Some(i) = self
            .kept
            .iter()
            .position(|v| v["msgid"] == msgid && pred(v))
        {
            return self.kept.remove(i).expect("indexed");
        }
        loop {
            let v = self
                .recv_fresh()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for msgid {msgid}"));
            if v["msgid"] == msgid && pred(&v) {
                return v;
            }
            self.kept.push_back(v);
        }
    }

    async fn recv_fresh(&mut self) -> Option<Value> {
        let kept = std::mem::take(&mut self.kept);
        let v = self.recv().await;
        self.kept = kept;
        v
    }

    /// The next object's `data`, which must have `msgid`.
    async fn expect(&mut self, msgid: u64) -> Value {
        let v = self.expect_where(msgid, |_| true).await;
        assert_eq!(
            (v["code"].as_u64(), v["message"].as_str()),
            (Some(0), Some("OK")),
            "{v}"
        );
        v["data"].clone()
    }

    /// The next error (5001): its `code`.
    async fn error(&mut self) -> u64 {
        let v = self.expect_where(5001, |_| true).await;
        assert_eq!(v["data"], json!({}), "{v}");
        assert!(v["message"].is_string(), "{v}");
        v["code"].as_u64().expect("an error code")
    }

    /// A live private message (4001) with this text.
    async fn private(&mut self, msg: &str) -> Value {
        self.expect_where(4001, |v| v["data"]["msg"] == msg).await["data"].clone()
    }

    /// A live group message (4101) with this text.
    async fn group(&mut self, msg: &str) -> Value {
        self.expect_where(4101, |v| v["data"]["msg"] == msg).await["data"].clone()
    }

    async fn nothing(&mut self, wait: Duration) {
        assert!(self.kept.is_empty(), "unexpected objects: {:?}", self.kept);
        let mut buf = [0u8; 1024];
        if let Ok(r) = tokio::time::timeout(wait, self.stream.read(&mut buf)).await {
            let n = r.unwrap_or(0);
            panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n]));
        }
    }

    /// True when the server closes the connection without writing anything.
    async fn closed_silently(&mut self) -> bool {
        let mut buf = [0u8; 1024];
        let n = tokio::time::timeout(WAIT, self.stream.read(&mut buf))
            .await
            .expect("closed within 10 s")
            .unwrap_or(0);
        assert_eq!(n, 0, "{:?}", String::from_utf8_lossy(&buf[..n]));
        true
    }

    /// `showUI::showRegister` and `sendregister`: the new number.
    async fn register(&mut self, name: &str, password: &str) -> u64 {
        self.send(1100, json!({"username": name, "password": password}))
            .await;
        let data = self.expect(1001).await;
        assert_eq!(data["username"], name, "{data}");
        assert!(
            data["token"].as_str().is_some_and(|t| !t.is_empty()),
            "{data}"
        );
        data["userid"].as_u64().expect("userid")
    }

    /// `showUI::showLogin` and `sendlogin`/`setState`: the answer's `data`;
    /// the token is kept (`Token::saveToken`).
    async fn login(&mut self, number: u64, password: &str) -> Value {
        self.send(1000, json!({"userid": number, "password": password}))
            .await;
        let data = self.expect(1001).await;
        self.token = data["token"].as_str().expect("a token").to_owned();
        data
    }

    /// `showUI::showStart`: a token login with a token from the file.
    async fn token_login(&mut self, token: &str) -> Value {
        self.token = token.to_owned();
        self.send(1004, json!({"device": "pc", "token": token}))
            .await;
        let v = self.expect_where(1001, |_| true).await;
        v["data"].clone()
    }
}

impl Server {
    async fn token_json(&self) -> TokenClient {
        TokenClient::connect(self.token_json.expect("token-json enabled")).await
    }
}

#[tokio::test]
async fn the_clients_transcript_against_native_and_msgid_json_users() {
    let server = Server::start().await;
    let mut ann = server.native("ann", 501).await;
    let _cat = server.native("cat", 502).await;
    let mut bob = server.msgid().await;
    let b = bob.register("bob", "pw-bob").await;
    assert_eq!(bob.login(b, "pw-bob").await["errno"], 0);

    // showStart: no token file yet, so the token login fails (1005) and the
    // client offers login and registration.
    let mut gus = server.token_json().await;
    gus.send(1004, json!({"device": "pc", "token": ""})).await;
    assert_eq!(gus.error().await, 1005);

    // 1100 register → 1001 (sic) with userid, username, token.
    let g = gus.register("gus", "pw-gus").await;
    gus.send(1100, json!({"username": "gus", "password": "x"}))
        .await;
    assert_eq!(gus.error().await, 1006, "the name is taken");

    // 1000 login → 1001; a wrong password or number → 1001 user does not exist.
    gus.send(1000, json!({"userid": g, "password": "nope"}))
        .await;
    assert_eq!(gus.error().await, 1001);
    gus.send(1000, json!({"userid": 9999, "password": "nope"}))
        .await;
    assert_eq!(gus.error().await, 1001);
    let data = gus.login(g, "pw-gus").await;
    assert_eq!(data["userinfo"], json!({"userid": g, "username": "gus"}));
    assert_eq!(
        (&data["friends"], &data["groups"], &data["offlinemsg"]),
        (&json!([]), &json!([]), &json!([]))
    );
    let gus_token = gus.token.clone();

    // 2000 add friend → 2001 to both; the friend's list shows it.
    gus.send(2000, json!({"friendid": 501})).await;
    let added = gus.expect(2001).await;
    assert_eq!(
        (&added["friendid"], &added["friendname"]),
        (&json!(501), &json!("ann"))
    );
    assert!(added["msg"].is_string());
    let friends = ann.ok("friend.list", json!({})).await;
    assert!(friends.to_string().contains("\"gus\""), "{friends}");
    gus.send(2000, json!({"friendid": 501})).await;
    assert_eq!(gus.error().await, 2001, "already a friend");
    gus.send(2000, json!({"friendid": 9999})).await;
    assert_eq!(gus.error().await, 1001);
    gus.send(2000, json!({"friendid": b})).await;
    assert_eq!(gus.expect(2001).await["friendname"], "bob");

    // 4000 private chat → the native user; the sender is stamped by the
    // server (the client's `userid` is ignored) and gets no answer.
    gus.send(
        4000,
        json!({"toid": 501, "userid": 12345, "msg": "gus to ann"}),
    )
    .await;
    let got = ann.message("gus to ann").await;
    assert_eq!(
        (&got["from"], &got["to"], &got["ip"]),
        (&json!("gus"), &json!({"user": "ann"}), &json!("127.0.0.1"))
    );
    gus.nothing(QUIET).await;
    // ... and back: 4001 {msg, msgid: 4001, fromid}.
    ann.ok(
        "chat.send",
        json!({"to": {"user": "gus"}, "text": "ann to gus"}),
    )
    .await;
    assert_eq!(
        gus.private("ann to gus").await,
        json!({"msg": "ann to gus", "msgid": 4001, "fromid": 501})
    );
    // With the msgid-json user, both ways.
    gus.send(4000, json!({"toid": b, "userid": g, "msg": "gus to bob"}))
        .await;
    let got = bob.chat(6, "gus to bob").await;
    assert_eq!((&got["id"], &got["name"]), (&json!(g), &json!("gus")));
    bob.send(
        json!({"msgid": 6, "id": b, "name": "bob", "toid": g, "msg": "bob to gus", "time": "t"}),
    )
    .await;
    assert_eq!(gus.private("bob to gus").await["fromid"], b);
    // Only to friends (2003), only to users (1001).
    gus.send(4000, json!({"toid": 502, "userid": g, "msg": "hi cat"}))
        .await;
    assert_eq!(gus.error().await, 2003);
    gus.send(4000, json!({"toid": 9999, "userid": g, "msg": "hi"}))
        .await;
    assert_eq!(gus.error().await, 1001);

    // 3000 create group → 3001 with its number.
    gus.send(3000, json!({"groupname": "rust", "groupdesc": "crabs"}))
        .await;
    let created = gus.expect(3001).await;
    let r = created["groupid"].as_u64().expect("a group number");
    assert!(r > 0, "0 is the lobby");
    assert_eq!(
        (&created["groupname"], &created["groupdesc"]),
        (&json!("rust"), &json!("crabs"))
    );
    ann.ok("group.join", json!({"name": "rust"})).await;
    bob.send(json!({"msgid": 9, "id": b, "groupid": r})).await;

    // 3100 join group → 3101, from a second client of the repository's.
    let mut dan = server.token_json().await;
    let d = dan.register("dan", "pw-dan").await;
    dan.login(d, "pw-dan").await;
    // Between two of them, the friend is told too (2001 with the adder).
    dan.send(2000, json!({"friendid": g})).await;
    assert_eq!(dan.expect(2001).await["friendname"], "gus");
    let told = gus.expect(2001).await;
    assert_eq!(
        (&told["friendid"], &told["friendname"]),
        (&json!(d), &json!("dan"))
    );
    dan.send(3100, json!({"groupid": 9999})).await;
    assert_eq!(dan.error().await, 3001);
    dan.send(3100, json!({"groupid": r})).await;
    let joined = dan.expect(3101).await;
    assert_eq!(
        (
            &joined["groupid"],
            &joined["groupname"],
            &joined["groupdesc"]
        ),
        (&json!(r), &json!("rust"), &json!("crabs"))
    );
    let members = ann.ok("group.members", json!({"name": "rust"})).await;
    for name in ["gus", "ann", "bob", "dan"] {
        assert!(
            members.to_string().contains(&format!("\"{name}\"")),
            "{members}"
        );
    }

    // 4100 group chat → every other member, whatever its protocol.
    gus.send(4100, json!({"groupid": r, "msg": "gus to rust"}))
        .await;
    assert_eq!(
        ann.message("gus to rust").await["to"],
        json!({"group": "rust"})
    );
    assert_eq!(bob.chat(10, "gus to rust").await["groupid"], r);
    assert_eq!(
        dan.group("gus to rust").await,
        json!({"msg": "gus to rust", "msgid": 4101, "groupid": r, "userid": g})
    );
    gus.nothing(QUIET).await;
    ann.ok(
        "chat.send",
        json!({"to": {"group": "rust"}, "text": "ann to rust"}),
    )
    .await;
    assert_eq!(
        gus.group("ann to rust").await,
        json!({"msg": "ann to rust", "msgid": 4101, "groupid": r, "userid": 501})
    );
    assert_eq!(dan.group("ann to rust").await["userid"], 501);

    // 5002 heartbeat → 5003.
    gus.send(5002, Value::Null).await;
    assert_eq!(gus.expect(5003).await, json!({}));

    // A missing token → 1005; another user's → 1004; neither disconnects.
    gus.token = String::new();
    gus.send(4000, json!({"toid": 501, "userid": g, "msg": "no token"}))
        .await;
    assert_eq!(gus.error().await, 1005);
    gus.token = dan.token.clone();
    gus.send(
        4000,
        json!({"toid": 501, "userid": g, "msg": "dan's token"}),
    )
    .await;
    assert_eq!(gus.error().await, 1004);
    gus.token = "forged.token".to_owned();
    gus.send(5002, Value::Null).await;
    assert_eq!(gus.error().await, 1005);
    gus.token = gus_token.clone();
    gus.send(5002, Value::Null).await;
    assert_eq!(gus.expect(5003).await, json!({}));

    // Offline messages at login: gus goes away; ann, bob and the group
    // write; the token login (the client's start screen) carries them in
    // `offlinemsg`, where the client's setState reads them.
    drop(gus);
    tokio::time::sleep(Duration::from_millis(300)).await;
    ann.ok(
        "chat.send",
        json!({"to": {"user": "gus"}, "text": "while away 1"}),
    )
    .await;
    bob.send(
        json!({"msgid": 6, "id": b, "name": "bob", "toid": g, "msg": "while away 2", "time": "t"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    ann.ok(
        "chat.send",
        json!({"to": {"group": "rust"}, "text": "while away 3"}),
    )
    .await;
    let mut gus = server.token_json().await;
    let data = gus.token_login(&gus_token).await;
    assert_eq!(data["userinfo"], json!({"userid": g, "username": "gus"}));
    assert!(
        data.get("token").is_none(),
        "a token login answers without one: {data}"
    );
    let mut friends = data["friends"].as_array().expect("friends").clone();
    friends.sort_by_key(|f| f["userid"].as_u64());
    assert!(b < d && d < 501, "numbers in registration order");
    assert_eq!(
        friends,
        [
            json!({"userid": b, "username": "bob", "state": "online"}),
            json!({"userid": d, "username": "dan", "state": "online"}),
            json!({"userid": 501, "username": "ann", "state": "online"}),
        ]
    );
    assert_eq!(
        data["groups"],
        json!([{"groupid": r, "groupname": "rust", "groupdesc": "crabs"}])
    );
    let offline = data["offlinemsg"].as_array().expect("offlinemsg");
    // setState: 4001 → "好友" + data.userid (a string) + "离线消息:" + data.msg;
    // 4101 → "群组离线消息:" + msg.
    let shown: Vec<String> = offline
        .iter()
        .map(|item| match item["msgid"].as_u64() {
            Some(4001) => format!(
                "好友{}离线消息:{}",
                item["data"]["userid"].as_str().expect("userid is a string"),
                item["data"]["msg"].as_str().expect("msg")
            ),
            Some(4101) => format!("群组离线消息:{}", item["msg"].as_str().expect("msg")),
            other => panic!("an offline entry of msgid {other:?}: {item}"),
        })
        .collect();
    assert_eq!(
        shown,
        [
            "好友501离线消息:while away 1".to_owned(),
            format!("好友{b}离线消息:while away 2"),
            "群组离线消息:while away 3".to_owned(),
        ]
    );
    gus.nothing(QUIET).await;
    // The session goes on with the same token.
    gus.send(4000, json!({"toid": 501, "userid": g, "msg": "back"}))
        .await;
    // ann got it, and none of the refused ones before it.
    loop {
        let m = ann.push("message").await;
        assert!(
            !["no token", "dan's token"].contains(&m["text"].as_str().unwrap_or_default()),
            "a refused message was sent: {m}"
        );
        if m["text"] == "back" {
            assert_eq!(m["from"], "gus");
            break;
        }
    }
}

#[tokio::test]
async fn an_expired_token_gets_1005_and_the_connection_stays() {
    let server = Server::start_with(&["--session-idle-secs", "1"]).await;
    let mut gus = server.token_json().await;
    let g = gus.register("gus", "pw-gus").await;
    gus.login(g, "pw-gus").await;
    gus.send(5002, Value::Null).await;
    assert_eq!(gus.expect(5003).await, json!({}));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    gus.send(5002, Value::Null).await;
    assert_eq!(gus.error().await, 1005);
    // A token login with it fails the same way; a password login gives a
    // new token that works.
    let old = gus.token.clone();
    gus.send(1004, json!({"device": "pc", "token": old})).await;
    assert_eq!(gus.error().await, 1005);
    gus.login(g, "pw-gus").await;
    assert_ne!(gus.token, old);
    gus.send(5002, Value::Null).await;
    assert_eq!(gus.expect(5003).await, json!({}));
}

#[tokio::test]
async fn bad_input_gets_the_protocols_error_or_a_clean_close() {
    let server = Server::start().await;
    let mut gus = server.token_json().await;
    let g = gus.register("gus", "pw-gus").await;
    gus.login(g, "pw-gus").await;

    // A NUL inside a string, JSON that is not: error 100, then on as before.
    gus.send_raw(b"{\"msgid\":4000,\"data\":{\"msg\":\"a\0b\"}}")
        .await;
    assert_eq!(gus.error().await, 100);
    gus.send_raw(b"{\"msgid\":1000,}").await;
    assert_eq!(gus.error().await, 100);
    // No msgid, an unknown one (103); no data object (4003); wrong types (102).
    gus.send_raw(br#"{"data":{}}"#).await;
    assert_eq!(gus.error().await, 103);
    gus.send(1002, json!({})).await;
    assert_eq!(gus.error().await, 103);
    gus.send(4000, json!("hello")).await;
    assert_eq!(gus.error().await, 4003);
    gus.send(4000, json!({"toid": "501", "msg": 1})).await;
    assert_eq!(gus.error().await, 102);
    // One request split over two writes, then two in one write: all
    // answered, each answer in its own 1024-byte record, so the client's
    // reads get one each even when both are waiting.
    let hb = dump(&json!({"msgid": 5002, "version": "1.0", "token": gus.token, "data": null}));
    let (a, b) = hb.as_bytes().split_at(hb.len() / 2);
    gus.send_raw(a).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    gus.send_raw(b).await;
    assert_eq!(gus.expect(5003).await, json!({}));
    gus.send_raw(format!("{hb}{hb}").as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(100)).await; // both wait
    for _ in 0..2 {
        let v = gus.recv().await.expect("an answer");
        assert_eq!(v["msgid"], 5003, "{v}");
    }

    // Garbage where an object must start: closed, nothing written.
    let mut other = server.token_json().await;
    other.send_raw(b"GET / HTTP/1.1\r\n\r\n").await;
    assert!(other.closed_silently().await);
    // JSON that never closes: closed once past the 64 KiB frame limit.
    let mut endless = server.token_json().await;
    endless
        .send_raw(b"{\"msgid\":4000,\"data\":{\"msg\":\"")
        .await;
    let chunk = vec![b'x'; 16 * 1024];
    for _ in 0..5 {
        endless.send_until_closed(&chunk).await;
    }
    assert!(endless.closed_silently().await);

    // Nothing of that touched the logged-in connection.
    gus.send(5002, Value::Null).await;
    assert_eq!(gus.expect(5003).await, json!({}));
}

/// The cluster: token-json through nginx's stream port 9998 reaches native
/// users on other nodes both ways, and a token issued on one node logs in on
/// another (the session key is shared through the store).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_json_through_nginx_and_a_token_login_on_another_node() {
    let c = support::cluster::Cluster::start().await;
    let mut ann = support::cluster::native(c.nodes[0].tcp, "ann", Some(701)).await;
    let mut gus = TokenClient::connect(c.token_json).await;
    let g = gus.register("gus", "pw-gus").await;
    gus.login(g, "pw-gus").await;
    gus.send(2000, json!({"friendid": 701})).await;
    assert_eq!(gus.expect(2001).await["friendname"], "ann");
    gus.send(4000, json!({"toid": 701, "userid": g, "msg": "gus to ann"}))
        .await;
    let got = ann.message("gus to ann").await;
    assert_eq!(got["from"], "gus");
    ann.ok(
        "chat.send",
        json!({"to": {"user": "gus"}, "text": "ann to gus"}),
    )
    .await;
    assert_eq!(gus.private("ann to gus").await["fromid"], 701);

    // The same token on node 3 directly: the newer connection takes over.
    let token = gus.token.clone();
    let mut again = TokenClient::connect(c.nodes[2].token_json).await;
    let data = again.token_login(&token).await;
    assert_eq!(data["userinfo"], json!({"userid": g, "username": "gus"}));
    ann.ok(
        "chat.send",
        json!({"to": {"user": "gus"}, "text": "to node 3"}),
    )
    .await;
    assert_eq!(again.private("to node 3").await["fromid"], 701);
    again.send(5002, Value::Null).await;
    assert_eq!(again.expect(5003).await, json!({}));
}
