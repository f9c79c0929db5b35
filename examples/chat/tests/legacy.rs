//! End-to-end: the legacy protocols (PROTOCOL.md §2 msgid-json, §3
//! type-data) against the real `chat-server` binary, with native WebSocket
//! users on the same server.

mod support;

use std::time::Duration;

use serde_json::{Value, json};
use support::Server;
use support::legacy::{MsgidClient, TypeDataClient};

/// How long "nothing more arrives" is watched.
const QUIET: Duration = Duration::from_millis(400);

/// The `time` msgid-json clients get for a server time stamp (UTC).
fn time_of(ts: u64) -> String {
    let secs = ts / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The JSON objects inside an array of JSON-encoded strings.
fn decoded(strings: &Value) -> Vec<Value> {
    strings
        .as_array()
        .expect("an array")
        .iter()
        .map(|s| serde_json::from_str(s.as_str().expect("a JSON string")).expect("JSON inside"))
        .collect()
}

/// A `time` of the form `YYYY-MM-DD HH:MM:SS`.
fn is_time(v: &Value) -> bool {
    let s = v.as_str().unwrap_or_default();
    s.len() == 19
        && s.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            10 => b == b' ',
            13 | 16 => b == b':',
            _ => b.is_ascii_digit(),
        })
}

#[tokio::test]
async fn msgid_json_every_message() {
    let server = Server::start().await;
    let mut gus = server.msgid().await;
    let mut ann = server.msgid().await;

    // 4 REG_MSG → 5 REG_MSG_ACK; a taken name gets errno 1.
    let g = gus.register("gus", "pw-gus").await;
    let a = ann.register("ann", "pw-ann").await;
    assert_ne!(g, a);
    gus.send(json!({"msgid": 4, "name": "gus", "password": "other"}))
        .await;
    assert_eq!(gus.expect(5).await, json!({"msgid": 5, "errno": 1}));

    // 1 LOGIN_MSG → 2 LOGIN_MSG_ACK, failing and succeeding.
    assert_eq!(
        gus.login(g, "nope").await,
        json!({"msgid": 2, "errno": 1, "errmsg": "id or password is invalid!"})
    );
    assert_eq!(
        gus.login(9999, "nope").await,
        json!({"msgid": 2, "errno": 1, "errmsg": "id or password is invalid!"})
    );
    assert_eq!(
        gus.login(g, "pw-gus").await,
        json!({"msgid": 2, "errno": 0, "id": g, "name": "gus", "offlinemsg": [], "friends": [], "groups": []})
    );
    assert_eq!(ann.login(a, "pw-ann").await["errno"], 0);

    // 7 ADD_FRIEND_MSG and 8 CREATE_GROUP_MSG have no answer...
    gus.send(json!({"msgid": 7, "id": g, "friendid": a})).await;
    gus.send(json!({"msgid": 8, "id": g, "groupname": "rust", "groupdesc": "crabs"}))
        .await;
    gus.nothing(QUIET).await;
    // ... and show in the next login's ack, as JSON strings.
    let ack = gus.login(g, "pw-gus").await;
    assert_eq!(ack["errno"], 0, "{ack}");
    assert_eq!(
        decoded(&ack["friends"]),
        [json!({"id": a, "name": "ann", "state": "online"})]
    );
    let groups = decoded(&ack["groups"]);
    assert_eq!(groups.len(), 1, "the lobby is not listed: {groups:?}");
    let rust = groups[0]["id"].as_u64().expect("a group number");
    assert!(rust > 0, "0 is the lobby");
    assert_eq!(groups[0]["groupname"], "rust");
    assert_eq!(groups[0]["groupdesc"], "crabs");
    assert_eq!(
        decoded(&groups[0]["users"]),
        [json!({"id": g, "name": "gus", "state": "online", "role": "creator"})]
    );

    // 9 ADD_GROUP_MSG: ann joins by number (her next ack shows it).
    ann.send(json!({"msgid": 9, "id": a, "groupid": rust}))
        .await;
    let ack = ann.login(a, "pw-ann").await;
    let groups = decoded(&ack["groups"]);
    assert_eq!(groups[0]["id"], rust);
    let mut users = decoded(&groups[0]["users"]);
    users.sort_by_key(|u| u["id"].as_u64());
    let mut expected = vec![
        json!({"id": g, "name": "gus", "state": "online", "role": "creator"}),
        json!({"id": a, "name": "ann", "state": "online", "role": "normal"}),
    ];
    expected.sort_by_key(|u| u["id"].as_u64());
    assert_eq!(users, expected);

    // 10 GROUP_CHAT_MSG reaches every other member, in the same shape.
    let text = "hello {rust} \"crabs\" [ok]";
    gus.send(json!({"msgid": 10, "id": g, "name": "gus", "groupid": rust, "msg": text, "time": "whenever"}))
        .await;
    let got = ann.chat(10, text).await;
    assert_eq!(got["id"], g);
    assert_eq!(got["name"], "gus");
    assert_eq!(got["groupid"], rust);
    assert!(is_time(&got["time"]), "{got}");
    assert_eq!(got.as_object().map(|o| o.len()), Some(6), "{got}");

    // 6 ONE_CHAT_MSG, the same shape delivered to toid.
    ann.send(
        json!({"msgid": 6, "id": a, "name": "ann", "toid": g, "msg": "hi gus", "time": "whenever"}),
    )
    .await;
    let got = gus.chat(6, "hi gus").await;
    assert_eq!(
        (&got["id"], &got["name"], &got["toid"]),
        (&json!(a), &json!("ann"), &json!(g))
    );
    assert!(is_time(&got["time"]), "{got}");
    assert_eq!(got.as_object().map(|o| o.len()), Some(6), "{got}");
    // The sender of a group message does not get it back.
    gus.nothing(QUIET).await;

    // 3 LOGINOUT_MSG: no answer, the connection stays, gus is offline.
    gus.send(json!({"msgid": 3, "id": g})).await;
    assert_eq!(
        gus.login(g, "wrong").await["errno"],
        1,
        "answered after the logout"
    );
    let ack = ann.login(a, "pw-ann").await;
    let users = decoded(&decoded(&ack["groups"])[0]["users"]);
    let gus_entry = users.iter().find(|u| u["id"] == g).expect("gus listed");
    assert_eq!(gus_entry["state"], "offline");
    assert_eq!(
        gus.login(g, "pw-gus").await["errno"],
        0,
        "log in again on the same connection"
    );
}

#[tokio::test]
async fn msgid_json_type_data_and_native_users_talk_in_every_direction() {
    let server = Server::start().await;
    let mut nat = server.native("nat", 500).await;
    let mut tom = server.type_data().await;
    assert_eq!(
        tom.register(600, "tom", "pw-tom").await,
        json!({"code": 200, "error": ""})
    );
    assert_eq!(tom.login(600, "pw-tom").await["code"], 200);
    let mut mia = server.msgid().await;
    let m = mia.register("mia", "pw-mia").await;
    assert_eq!(mia.login(m, "pw-mia").await["errno"], 0);

    // msgid-json → native: a private message to the native user's number.
    mia.send(
        json!({"msgid": 6, "id": m, "name": "mia", "toid": 500, "msg": "mia to nat", "time": "t"}),
    )
    .await;
    let got = nat.message("mia to nat").await;
    assert_eq!(
        (&got["from"], &got["to"], &got["ip"]),
        (&json!("mia"), &json!({"user": "nat"}), &json!("127.0.0.1"))
    );

    // native → msgid-json: msgid 6 with id, name and time filled.
    let sent = nat
        .ok(
            "chat.send",
            json!({"to": {"user": "mia"}, "text": "nat to mia"}),
        )
        .await;
    let got = mia.chat(6, "nat to mia").await;
    let time = time_of(sent["ts"].as_u64().expect("ts"));
    assert_eq!(
        got,
        json!({"msgid": 6, "id": 500, "name": "nat", "toid": m, "msg": "nat to mia", "time": time})
    );

    // msgid-json → type-data: a private message arrives prefixed.
    mia.send(
        json!({"msgid": 6, "id": m, "name": "mia", "toid": 600, "msg": "mia to tom", "time": "t"}),
    )
    .await;
    assert_eq!(
        tom.sms("(private) mia to tom").await,
        json!({"content": "(private) mia to tom", "userId": m, "userPwd": "", "userName": "mia", "userStatus": 0, "sex": ""})
    );

    // type-data → the lobby → msgid-json (group 0) and native.
    tom.send(
        "SmsMes",
        json!({"content": "tom to all", "userId": 600, "userPwd": "", "userName": "tom", "userStatus": 0, "sex": ""}),
    )
    .await;
    let got = mia.chat(10, "tom to all").await;
    assert_eq!(
        (&got["id"], &got["name"], &got["groupid"]),
        (&json!(600), &json!("tom"), &json!(0))
    );
    let got = nat.message("tom to all").await;
    assert_eq!(
        (&got["from"], &got["to"]),
        (&json!("tom"), &json!({"group": "lobby"}))
    );

    // native → type-data, private and lobby.
    nat.ok(
        "chat.send",
        json!({"to": {"user": "tom"}, "text": "nat to tom"}),
    )
    .await;
    let got = tom.sms("(private) nat to tom").await;
    assert_eq!(
        (&got["userId"], &got["userName"]),
        (&json!(500), &json!("nat"))
    );
    nat.ok(
        "chat.send",
        json!({"to": {"group": "lobby"}, "text": "nat to all"}),
    )
    .await;
    assert_eq!(tom.sms("nat to all").await["userId"], 500);
    assert_eq!(mia.chat(10, "nat to all").await["groupid"], 0);

    // msgid-json → the lobby (group 0) → type-data and native.
    mia.send(json!({"msgid": 10, "id": m, "name": "mia", "groupid": 0, "msg": "mia to all", "time": "t"}))
        .await;
    assert_eq!(tom.sms("mia to all").await["userName"], "mia");
    assert_eq!(nat.message("mia to all").await["from"], "mia");

    // Legacy senders do not get their own lobby messages back.
    mia.nothing(QUIET).await;
}

#[tokio::test]
async fn group_chat_across_protocols() {
    let server = Server::start().await;
    let mut nat = server.native("nat", 500).await;
    let mut mia = server.msgid().await;
    let m = mia.register("mia", "pw-mia").await;
    mia.login(m, "pw-mia").await;
    mia.send(json!({"msgid": 8, "id": m, "groupname": "rust", "groupdesc": "crabs"}))
        .await;
    let ack = mia.login(m, "pw-mia").await;
    let rust = decoded(&ack["groups"])[0]["id"]
        .as_u64()
        .expect("group number");
    nat.ok("group.join", json!({"name": "rust"})).await;
    // tom's account joins through the native API, then uses type-data.
    let mut tom = server.type_data().await;
    assert_eq!(tom.register(600, "tom", "pw-tom").await["code"], 200);
    let mut tom_native = server.ws().await;
    tom_native
        .ok("user.login", json!({"number": 600, "password": "pw-tom"}))
        .await;
    tom_native.ok("group.join", json!({"name": "rust"})).await;
    tom_native.ok("user.logout", json!({})).await;
    assert_eq!(tom.login(600, "pw-tom").await["code"], 200);

    // msgid-json → the group: native and type-data members get it.
    mia.send(json!({"msgid": 10, "id": m, "name": "mia", "groupid": rust, "msg": "from mia", "time": "t"}))
        .await;
    let got = nat.message("from mia").await;
    assert_eq!(got["to"], json!({"group": "rust"}));
    assert_eq!(tom.sms("(rust) from mia").await["userId"], m);

    // native → the group: msgid 10 with the group's number, "(rust) " for type-data.
    let sent = nat
        .ok(
            "chat.send",
            json!({"to": {"group": "rust"}, "text": "from nat"}),
        )
        .await;
    assert_eq!(
        mia.chat(10, "from nat").await,
        json!({"msgid": 10, "id": 500, "name": "nat", "groupid": rust, "msg": "from nat", "time": time_of(sent["ts"].as_u64().unwrap())})
    );
    assert_eq!(tom.sms("(rust) from nat").await["userName"], "nat");

    // A private message inside the group is private for legacy clients.
    nat.ok(
        "chat.send",
        json!({"to": {"user": "mia", "group": "rust"}, "text": "psst"}),
    )
    .await;
    assert_eq!(mia.chat(6, "psst").await["toid"], m);

    // Not a member: nothing is sent (and msgid-json has no answer for it).
    let mut out = server.msgid().await;
    let o = out.register("outsider", "pw-o").await;
    out.login(o, "pw-o").await;
    out.send(json!({"msgid": 10, "id": o, "name": "outsider", "groupid": rust, "msg": "let me in", "time": "t"}))
        .await;
    out.nothing(QUIET).await;
    mia.send(json!({"msgid": 10, "id": m, "name": "mia", "groupid": rust, "msg": "after the outsider", "time": "t"}))
        .await;
    assert_eq!(nat.message("after the outsider").await["from"], "mia");
    assert_eq!(
        nat.history_texts("rust").await,
        ["from mia", "from nat", "after the outsider"],
        "the outsider's message was never stored"
    );
}

#[tokio::test]
async fn names_in_the_users_own_language_on_every_protocol() {
    let server = Server::start().await;
    // 张三 on msgid-json creates 中文群; 李四 (native) joins it; 地鼠 is on
    // type-data.
    let mut zhang = server.msgid().await;
    let z = zhang.register("张三", "pw-张三").await;
    zhang.login(z, "pw-张三").await;
    zhang
        .send(json!({"msgid": 8, "id": z, "groupname": "中文群", "groupdesc": "大家"}))
        .await;
    let ack = zhang.login(z, "pw-张三").await;
    let group = &decoded(&ack["groups"])[0];
    assert_eq!(group["groupname"], "中文群", "{ack}");
    let number = group["id"].as_u64().expect("group number");
    let mut li = server.native("李四", 800).await;
    li.ok("group.join", json!({"name": "中文群"})).await;
    let mut gopher = server.type_data().await;
    assert_eq!(gopher.register(801, "地鼠", "pw-地鼠").await["code"], 200);
    assert_eq!(gopher.login(801, "pw-地鼠").await["code"], 200);

    zhang
        .send(json!({"msgid": 10, "id": z, "name": "x", "groupid": number, "msg": "大家好", "time": "t"}))
        .await;
    let got = li.message("大家好").await;
    assert_eq!(
        (&got["from"], &got["to"]),
        (&json!("张三"), &json!({"group": "中文群"}))
    );
    li.ok(
        "chat.send",
        json!({"to": {"group": "中文群"}, "text": "你好，张三"}),
    )
    .await;
    assert_eq!(zhang.chat(10, "你好，张三").await["name"], "李四");
    gopher.send("SmsMes", json!({"content": "地鼠来了", "userId": 801, "userPwd": "", "userName": "x", "userStatus": 0, "sex": ""})).await;
    assert_eq!(zhang.chat(10, "地鼠来了").await["name"], "地鼠");
    assert_eq!(li.message("地鼠来了").await["from"], "地鼠");
    li.ok(
        "chat.send",
        json!({"to": {"group": "lobby"}, "text": "欢迎"}),
    )
    .await;
    assert_eq!(gopher.sms("欢迎").await["userName"], "李四");
    // Refused on every protocol alike: an invisible character.
    let mut bad = server.msgid().await;
    bad.send(json!({"msgid": 4, "name": "张\u{200d}三", "password": "pw"}))
        .await;
    assert_ne!(bad.expect(5).await["errno"], 0);
    assert_eq!(
        gopher.register(802, "地\u{200b}鼠", "pw").await["code"],
        506
    );
}

/// Reads like the muduo course's own client (`readTaskHandler` and the
/// login in `main`): one `recv(fd, buffer, 1024, 0)` per object, then
/// `json::parse(buffer)` of the buffer as a C string. What follows the first
/// NUL of a read is lost to it, and a read that does not parse crashes it.
/// It reads more slowly than the server writes.
struct MuduoReader {
    stream: tokio::net::TcpStream,
}

impl MuduoReader {
    const SLOW: Duration = Duration::from_millis(3);

    async fn connect(server: &Server) -> MuduoReader {
        let addr = server.msgid_json.expect("msgid-json listener");
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        MuduoReader { stream }
    }

    /// `js.dump()` and its NUL (`send(fd, s.c_str(), strlen(s.c_str()) + 1, 0)`).
    async fn send(&mut self, object: Value) {
        use tokio::io::AsyncWriteExt;
        let mut bytes = object.to_string().into_bytes();
        bytes.push(0);
        self.stream.write_all(&bytes).await.expect("send");
    }

    async fn read(&mut self) -> Value {
        use tokio::io::AsyncReadExt;
        tokio::time::sleep(Self::SLOW).await;
        let mut buffer = [0u8; 1024];
        let n = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buffer))
            .await
            .expect("an object within 10 s")
            .expect("recv");
        assert!(n > 0, "the server closed the connection");
        let read = &buffer[..n];
        let end = read.iter().position(|b| *b == 0).unwrap_or_else(|| {
            panic!("no NUL in a read of {n} bytes: the client reads past its buffer")
        });
        assert!(
            read[end..].iter().all(|b| *b == 0),
            "the client would lose what follows the NUL: {:?}",
            String::from_utf8_lossy(read)
        );
        serde_json::from_slice(&read[..end]).unwrap_or_else(|e| {
            panic!(
                "the client would crash ({e}): {:?}",
                String::from_utf8_lossy(read)
            )
        })
    }

    /// The texts of the next chat objects (msgid 6 or 10) until `want` bytes
    /// of text have come, each part checked to come from `from`.
    async fn text_of(&mut self, want: usize, from: &str) -> String {
        let mut text = String::new();
        while text.len() < want {
            let v = self.read().await;
            assert_eq!(v["name"], from, "{v}");
            text.push_str(v["msg"].as_str().expect("msg"));
        }
        text
    }
}

#[tokio::test]
async fn a_client_that_reads_1024_bytes_and_parses_each_read_gets_every_message() {
    let server = Server::start_with(&["--send-rate", "1000", "--send-burst", "1000"]).await;
    let mut nat = server.native("nat", 500).await;
    let mut mu = MuduoReader::connect(&server).await;
    mu.send(json!({"msgid": 4, "name": "mu", "password": "pw-mu"}))
        .await;
    let id = mu.read().await["id"].as_u64().expect("the new number");

    // 20 waiting at login: in the answer while it has room, then one per read.
    for i in 0..20 {
        nat.ok(
            "chat.send",
            json!({"to": {"user": "mu"}, "text": format!("waiting {i:02} {}", "w".repeat(80))}),
        )
        .await;
    }
    mu.send(json!({"msgid": 1, "id": id, "password": "pw-mu"}))
        .await;
    let ack = mu.read().await;
    assert_eq!(
        (&ack["msgid"], &ack["errno"]),
        (&json!(2), &json!(0)),
        "{ack}"
    );
    let mut waiting: Vec<String> = decoded(&ack["offlinemsg"])
        .iter()
        .map(|m| m["msg"].as_str().expect("msg").to_owned())
        .collect();
    while waiting.len() < 20 {
        waiting.push(mu.read().await["msg"].as_str().expect("msg").to_owned());
    }
    let expected: Vec<String> = (0..20)
        .map(|i| format!("waiting {i:02} {}", "w".repeat(80)))
        .collect();
    assert_eq!(waiting, expected, "all 20, in order, once");

    // 5 bursts of 50, written faster than the client reads.
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        for _ in 0..250 {
            let v = mu.read().await;
            got.push(v["msg"].as_str().expect("msg").to_owned());
        }
        (mu, got)
    });
    let mut sent = Vec::new();
    for burst in 0..5 {
        for i in 0..50 {
            let text = format!("burst {burst} message {i:02}");
            nat.ok("chat.send", json!({"to": {"user": "mu"}, "text": text}))
                .await;
            sent.push(text);
        }
        // Within the connection's call rate (100 a second, bursts of 200).
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let (mut mu, got) = reader.await.expect("the reader");
    assert_eq!(got, sent, "every message of the bursts, in order");

    // Texts whose object would not fit a read come in parts, nothing cut.
    for text in [
        "x".repeat(1000),
        format!("{}!", "界".repeat(333)),
        "\"quoted\"\n".repeat(100),
    ] {
        nat.ok("chat.send", json!({"to": {"user": "mu"}, "text": text}))
            .await;
        assert_eq!(mu.text_of(text.len(), "nat").await, text);
        nat.ok("chat.send", json!({"to": {"group": "lobby"}, "text": text}))
            .await;
        assert_eq!(mu.text_of(text.len(), "nat").await, text, "in the lobby");
    }
}

#[tokio::test]
async fn offline_messages_come_in_the_login_ack_and_overflow_as_objects() {
    let server = Server::start().await;
    let mut nat = server.native("nat", 500).await;
    let mut mia = server.msgid().await;
    let m = mia.register("mia", "pw-mia").await;
    mia.login(m, "pw-mia").await;
    mia.send(json!({"msgid": 8, "id": m, "groupname": "rust", "groupdesc": ""}))
        .await;
    let rust = decoded(&mia.login(m, "pw-mia").await["groups"])[0]["id"]
        .as_u64()
        .unwrap();
    nat.ok("group.join", json!({"name": "rust"})).await;
    // Log out; a failing login on the same connection confirms it is done.
    mia.send(json!({"msgid": 3, "id": m})).await;
    assert_eq!(mia.login(m, "wrong").await["errno"], 1);

    let s1 = nat
        .ok(
            "chat.send",
            json!({"to": {"user": "mia"}, "text": "offline 1"}),
        )
        .await;
    let s2 = nat
        .ok(
            "chat.send",
            json!({"to": {"group": "rust"}, "text": "offline 2"}),
        )
        .await;
    let s3 = nat
        .ok(
            "chat.send",
            json!({"to": {"group": "lobby"}, "text": "offline 3"}),
        )
        .await;
    let ts = |s: &Value| time_of(s["ts"].as_u64().unwrap());

    // The first object after the login is its ack, carrying them all.
    let mut mia = server.msgid().await;
    mia.send(json!({"msgid": 1, "id": m, "password": "pw-mia"}))
        .await;
    let raw = mia.recv_raw().await.expect("the ack");
    assert!(raw.len() < 1024, "{} bytes", raw.len());
    let ack: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(ack["msgid"], 2);
    assert_eq!(ack["errno"], 0);
    assert_eq!(
        decoded(&ack["offlinemsg"]),
        [
            json!({"msgid": 6, "id": 500, "name": "nat", "toid": m, "msg": "offline 1", "time": ts(&s1)}),
            json!({"msgid": 10, "id": 500, "name": "nat", "groupid": rust, "msg": "offline 2", "time": ts(&s2)}),
            json!({"msgid": 10, "id": 500, "name": "nat", "groupid": 0, "msg": "offline 3", "time": ts(&s3)}),
        ]
    );
    mia.nothing(QUIET).await;

    // Written counts as delivered: the next login has none.
    mia.send(json!({"msgid": 3, "id": m})).await;
    assert_eq!(mia.login(m, "wrong").await["errno"], 1);
    let mut again = server.msgid().await;
    assert_eq!(again.login(m, "pw-mia").await["offlinemsg"], json!([]));
    again.send(json!({"msgid": 3, "id": m})).await;
    assert_eq!(again.login(m, "wrong").await["errno"], 1);

    // More than fits in 1024 bytes: the rest follow as separate objects, in order.
    let texts: Vec<String> = (0..12)
        .map(|i| format!("long {i:02} {}", "x".repeat(150)))
        .collect();
    for t in &texts {
        nat.ok("chat.send", json!({"to": {"user": "mia"}, "text": t}))
            .await;
    }
    let mut mia = server.msgid().await;
    mia.send(json!({"msgid": 1, "id": m, "password": "pw-mia"}))
        .await;
    let raw = mia.recv_raw().await.expect("the ack");
    assert!(
        raw.len() < 1024,
        "the ack and its NUL fit one 1024-byte read: {} bytes",
        raw.len()
    );
    let ack: Value = serde_json::from_slice(&raw).unwrap();
    assert_eq!(ack["msgid"], 2);
    let carried = decoded(&ack["offlinemsg"]);
    assert!(
        !carried.is_empty() && carried.len() < texts.len(),
        "{} carried",
        carried.len()
    );
    let mut got: Vec<Value> = carried;
    while got.len() < texts.len() {
        let raw = mia.recv_raw().await.expect("an offline message");
        assert!(raw.len() < 1024);
        got.push(serde_json::from_slice(&raw).unwrap());
    }
    let got_texts: Vec<&str> = got.iter().map(|o| o["msg"].as_str().unwrap()).collect();
    assert_eq!(
        got_texts,
        texts.iter().map(String::as_str).collect::<Vec<_>>()
    );
    assert!(
        got.iter()
            .all(|o| o["msgid"] == 6 && o["id"] == 500 && o["toid"] == m)
    );
    mia.nothing(QUIET).await;
}

#[tokio::test]
async fn type_data_register_login_status_and_lobby() {
    let server = Server::start().await;
    let mut tom = server.type_data().await;
    // RegisterMes with a client-chosen number; 505 when taken, 506 otherwise.
    assert_eq!(
        tom.register(600, "tom", "pw-tom").await,
        json!({"code": 200, "error": ""})
    );
    assert_eq!(tom.register(600, "tim", "pw").await["code"], 505);
    assert_eq!(
        tom.register(601, "tom", "pw").await["code"],
        506,
        "name taken"
    );
    assert_eq!(tom.register(602, "not a name!", "pw").await["code"], 506);
    // LoginMes: 500 no such user, 403 wrong password.
    let no_user = tom.login(999, "pw").await;
    assert_eq!(
        (&no_user["code"], &no_user["UsersId"]),
        (&json!(500), &json!([]))
    );
    assert_eq!(tom.login(600, "nope").await["code"], 403);

    let mut nat = server.native("nat", 500).await;
    let ok = tom.login(600, "pw-tom").await;
    assert_eq!((&ok["code"], &ok["error"]), (&json!(200), &json!("")));
    let mut online: Vec<u64> = ok["UsersId"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .collect();
    online.sort_unstable();
    assert_eq!(online, [500, 600], "the numbers of the users online");

    // NotifyUserStatusMes on every login and logout (native or legacy).
    let mut ann = server.native("ann", 700).await;
    assert_eq!(
        tom.expect_where("NotifyUserStatusMes", |d| d["userId"] == 700)
            .await,
        json!({"userId": 700, "status": 0})
    );
    ann.ok("user.logout", json!({})).await;
    assert_eq!(
        tom.expect_where("NotifyUserStatusMes", |d| d["userId"] == 700)
            .await,
        json!({"userId": 700, "status": 1})
    );
    let mut mia = server.msgid().await;
    let m = mia.register("mia", "pw-mia").await;
    mia.login(m, "pw-mia").await;
    assert_eq!(
        tom.expect_where("NotifyUserStatusMes", |d| d["userId"] == m)
            .await["status"],
        0
    );
    drop(mia);
    assert_eq!(
        tom.expect_where("NotifyUserStatusMes", |d| d["userId"] == m)
            .await["status"],
        1
    );

    // SmsMes to and from the lobby.
    tom.send("SmsMes", json!({"content": "hello lobby", "userId": 600, "userPwd": "", "userName": "tom", "userStatus": 0, "sex": ""}))
        .await;
    assert_eq!(
        nat.message("hello lobby").await["to"],
        json!({"group": "lobby"})
    );
    nat.ok(
        "chat.send",
        json!({"to": {"group": "lobby"}, "text": "hello tom"}),
    )
    .await;
    assert_eq!(
        tom.sms("hello tom").await,
        json!({"content": "hello tom", "userId": 500, "userPwd": "", "userName": "nat", "userStatus": 0, "sex": ""})
    );
    // Its own status and its own lobby message are not sent back.
    while let Ok(Some((kind, data))) = tokio::time::timeout(QUIET, tom.recv()).await {
        assert!(
            kind != "SmsMes" || data["content"] != "hello lobby",
            "own message echoed"
        );
        assert!(
            data["userId"] != 600 || kind != "NotifyUserStatusMes",
            "own status: {data}"
        );
    }
}

#[tokio::test]
async fn registrations_through_any_protocol_are_visible_to_all() {
    let server = Server::start().await;
    // Registered over msgid-json.
    let mut mia = server.msgid().await;
    let m = mia.register("mia", "pw-mia").await;
    let mut ws = server.ws().await;
    assert_eq!(
        ws.ok("user.login", json!({"name": "mia", "password": "pw-mia"}))
            .await["number"],
        m
    );
    assert_eq!(
        server.type_data().await.login(m, "pw-mia").await["code"],
        200
    );
    // Registered over type-data.
    let mut tom = server.type_data().await;
    assert_eq!(tom.register(777, "tom", "pw-tom").await["code"], 200);
    let ack = server.msgid().await.login(777, "pw-tom").await;
    assert_eq!((&ack["errno"], &ack["name"]), (&json!(0), &json!("tom")));
    assert_eq!(
        server
            .ws()
            .await
            .ok("user.login", json!({"number": 777, "password": "pw-tom"}))
            .await["name"],
        "tom"
    );
    // Registered natively.
    server
        .ws()
        .await
        .ok(
            "user.register",
            json!({"name": "nat", "password": "pw-nat", "number": 500}),
        )
        .await;
    assert_eq!(
        server.msgid().await.login(500, "pw-nat").await["name"],
        "nat"
    );
    assert_eq!(
        server.type_data().await.login(500, "pw-nat").await["code"],
        200
    );
}

#[tokio::test]
async fn msgid_json_framing_on_the_wire() {
    let server = Server::start().await;
    let mut nat = server.native("nat", 500).await;
    server
        .ws()
        .await
        .ok(
            "user.register",
            json!({"name": "gus", "password": "pw-gus", "number": 4242}),
        )
        .await;

    // A login and two messages back to back in one write, whitespace and
    // NULs between, one without its NUL: they run in order.
    let tricky = "first {\"}\" ][ \\ 你好";
    let mut gus = server.msgid().await;
    let mut burst = json!({"msgid": 1, "id": 4242, "password": "pw-gus"})
        .to_string()
        .into_bytes();
    burst.extend_from_slice(b"\0 \r\n\t ");
    burst.extend_from_slice(
        json!({"msgid": 6, "id": 4242, "toid": 500, "msg": tricky})
            .to_string()
            .as_bytes(),
    );
    burst.extend_from_slice(
        json!({"msgid": 6, "id": 4242, "toid": 500, "msg": "second"})
            .to_string()
            .as_bytes(),
    );
    burst.extend_from_slice(b"\0\0\n");
    gus.send_raw(&burst).await;
    assert_eq!(gus.expect(2).await["errno"], 0);
    assert_eq!(nat.message(tricky).await["from"], "gus");
    nat.message("second").await;

    // One object written byte by byte.
    let slow = json!({"msgid": 6, "id": 4242, "toid": 500, "msg": "byte {by} \"byte\""})
        .to_string()
        + "\0";
    for b in slow.as_bytes() {
        gus.send_raw(&[*b]).await;
    }
    nat.message("byte {by} \"byte\"").await;

    // Unknown msgids and known ones of the wrong shape are ignored.
    gus.send(json!({"msgid": 99, "x": 1})).await;
    gus.send(json!({"msgid": 6, "toid": "not a number", "msg": "x"}))
        .await;
    gus.send(json!({"hello": "no msgid"})).await;
    gus.send(json!({"msgid": 6, "id": 4242, "toid": 500, "msg": "after the junk"}))
        .await;
    nat.message("after the junk").await;

    // Garbage closes that connection cleanly; others go on.
    let mut bad = server.msgid().await;
    bad.send_raw(b"hello there\0").await;
    assert!(bad.closed().await);
    let mut bad = server.msgid().await;
    bad.send_raw(b"{\"msgid\":1,,}\0").await;
    assert!(bad.closed().await);
    // An object over the frame limit (64 KiB) is refused before it ends.
    let mut big = server.msgid().await;
    let mut huge = b"{\"msgid\":6,\"msg\":\"".to_vec();
    huge.extend(std::iter::repeat_n(b'x', 70 * 1024));
    big.send_raw(&huge).await;
    assert!(big.closed().await);
    gus.send(json!({"msgid": 6, "id": 4242, "toid": 500, "msg": "still here"}))
        .await;
    nat.message("still here").await;
}

#[tokio::test]
async fn type_data_bad_input() {
    let server = Server::start().await;
    let mut nat = server.native("nat", 500).await;
    let mut tom = server.type_data().await;
    tom.register(600, "tom", "pw-tom").await;
    assert_eq!(tom.login(600, "pw-tom").await["code"], 200);

    // A length over the frame limit is refused without reading further.
    let mut huge = server.type_data().await;
    huge.send_raw(&[0xff, 0xff, 0xff, 0xff]).await;
    assert!(huge.closed().await);
    let mut over = server.type_data().await;
    over.send_raw(&(64 * 1024 + 1u32).to_be_bytes()).await;
    assert!(over.closed().await);
    // A body that is not {"type","data"} closes too.
    let mut garbage = server.type_data().await;
    garbage.send_raw(&[0, 0, 0, 9]).await;
    garbage.send_raw(b"not json!").await;
    assert!(garbage.closed().await);

    // Unknown types and malformed SmsMes are ignored; the connection stays.
    tom.send("NoSuchMes", json!({"x": 1})).await;
    tom.send("SmsMes", json!({"text": "wrong field"})).await;
    // Two packets in one write, the second cut in the middle.
    let packet = |content: &str| {
        let body =
            json!({"type": "SmsMes", "data": json!({"content": content}).to_string()}).to_string();
        let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(body.as_bytes());
        out
    };
    let both = [packet("one"), packet("two")].concat();
    let cut = both.len() - 5;
    tom.send_raw(&both[..cut]).await;
    nat.message("one").await;
    tom.send_raw(&both[cut..]).await;
    nat.message("two").await;
    assert_eq!(
        TypeDataClient::connect(server.type_data.unwrap())
            .await
            .login(600, "nope")
            .await["code"],
        403
    );
}

#[tokio::test]
async fn legacy_apis_are_not_reachable_natively_and_the_newer_login_wins() {
    let server = Server::start().await;
    let mut ws = server.ws().await;
    for api in [
        "legacy.login",
        "legacy.send",
        "legacy.register",
        "legacy.logout",
    ] {
        let e = ws
            .err(api, json!({"number": 1, "password": "x"}), 404)
            .await;
        assert_eq!(e["code"], "unknown_api", "{api}: {e}");
    }

    // errno 2 is never sent: a newer login closes the older connection.
    let mut first = server.msgid().await;
    let m = first.register("mia", "pw-mia").await;
    assert_eq!(first.login(m, "pw-mia").await["errno"], 0);
    let mut second = MsgidClient::connect(server.msgid_json.unwrap()).await;
    assert_eq!(second.login(m, "pw-mia").await["errno"], 0);
    assert!(first.closed().await);
    let mut nat = server.native("nat", 500).await;
    second
        .send(json!({"msgid": 6, "id": m, "toid": 500, "msg": "newest wins"}))
        .await;
    nat.message("newest wins").await;
}
