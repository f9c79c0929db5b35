//! Clients of the two legacy protocols (PROTOCOL.md §2 and §3), written the
//! way the original clients talk: raw TCP, no help from the server crate.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Client, Server, WAIT};

impl Server {
    /// A msgid-json client connected to this server.
    pub(crate) async fn msgid(&self) -> MsgidClient {
        MsgidClient::connect(self.msgid_json.expect("msgid-json enabled")).await
    }

    /// A type-data client connected to this server.
    pub(crate) async fn type_data(&self) -> TypeDataClient {
        TypeDataClient::connect(self.type_data.expect("type-data enabled")).await
    }

    /// A native WebSocket user registered with `number` (password
    /// `pw-<name>`) and logged in.
    pub(crate) async fn native(&self, name: &str, number: u64) -> Client {
        let mut c = self.ws().await;
        let pw = format!("pw-{name}");
        c.ok(
            "user.register",
            json!({"name": name, "password": pw, "number": number}),
        )
        .await;
        let login = c
            .ok("user.login", json!({"name": name, "password": pw}))
            .await;
        assert_eq!(login["number"], number);
        c.token = login["token"].as_str().map(str::to_owned);
        c
    }
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 4096];
    match stream.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

/// What the muduo client reads at once, and the size of every record the
/// server writes to it.
pub(crate) const RECORD: usize = 1024;

/// A msgid-json client: writes objects ending in NUL, reads the server's
/// 1024-byte records (an object, then NULs), checking that each is one.
pub(crate) struct MsgidClient {
    stream: TcpStream,
    kept: VecDeque<Value>,
}

impl MsgidClient {
    pub(crate) async fn connect(addr: SocketAddr) -> MsgidClient {
        let stream = TcpStream::connect(addr).await.expect("connect msgid-json");
        // Small writes go out as written (a byte-by-byte test means it).
        stream.set_nodelay(true).expect("nodelay");
        MsgidClient {
            stream,
            kept: VecDeque::new(),
        }
    }

    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Send `object` as the muduo client does: the JSON and a NUL.
    pub(crate) async fn send(&mut self, object: Value) {
        let mut bytes = object.to_string().into_bytes();
        bytes.push(0);
        self.send_raw(&bytes).await;
    }

    /// The next object's bytes (the record without its NULs); `None` once
    /// closed.
    pub(crate) async fn recv_raw(&mut self) -> Option<Vec<u8>> {
        let mut record = [0u8; RECORD];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut record))
            .await
            .expect("a msgid-json record within 10 s")
            .ok()?;
        Some(object_of(&record).to_vec())
    }

    /// The next object; `None` once closed.
    pub(crate) async fn recv(&mut self) -> Option<Value> {
        if let Some(v) = self.kept.pop_front() {
            return Some(v);
        }
        let raw = self.recv_raw().await?;
        Some(serde_json::from_slice(&raw).expect("the server writes JSON objects"))
    }

    /// The next object with this msgid for which `pred` holds (others are
    /// kept for later).
    pub(crate) async fn expect_where(
        &mut self,
        msgid: u64,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self
            .kept
            .iter()
            .position(|v| v["msgid"] == msgid && pred(v))
        {
            return self.kept.remove(i).expect("indexed");
        }
        loop {
            let raw = self
                .recv_raw()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for msgid {msgid}"));
            let v: Value = serde_json::from_slice(&raw).expect("JSON");
            if v["msgid"] == msgid && pred(&v) {
                return v;
            }
            self.kept.push_back(v);
        }
    }

    pub(crate) async fn expect(&mut self, msgid: u64) -> Value {
        self.expect_where(msgid, |_| true).await
    }

    /// The chat message (msgid 6 or 10) with this text.
    pub(crate) async fn chat(&mut self, msgid: u64, msg: &str) -> Value {
        self.expect_where(msgid, |v| v["msg"] == msg).await
    }

    /// Assert nothing arrives within `wait`.
    pub(crate) async fn nothing(&mut self, wait: Duration) {
        assert!(self.kept.is_empty(), "unexpected objects: {:?}", self.kept);
        let mut chunk = [0u8; 1024];
        if let Ok(r) = tokio::time::timeout(wait, self.stream.read(&mut chunk)).await {
            let n = r.unwrap_or(0);
            panic!(
                "unexpected bytes: {:?}",
                String::from_utf8_lossy(&chunk[..n])
            );
        }
    }

    /// True when the server closes the connection (other objects skipped).
    pub(crate) async fn closed(&mut self) -> bool {
        while self.recv_raw().await.is_some() {}
        true
    }

    /// REG_MSG; the new number.
    pub(crate) async fn register(&mut self, name: &str, password: &str) -> u64 {
        self.send(json!({"msgid": 4, "name": name, "password": password}))
            .await;
        let ack = self.expect(5).await;
        assert_eq!(ack["errno"], 0, "{ack}");
        ack["id"].as_u64().expect("id")
    }

    /// LOGIN_MSG; the ack (whatever its errno).
    pub(crate) async fn login(&mut self, id: u64, password: &str) -> Value {
        self.send(json!({"msgid": 1, "id": id, "password": password}))
            .await;
        self.expect(2).await
    }
}

/// The object in a record: up to its first NUL, with only NULs after it.
pub(crate) fn object_of(record: &[u8]) -> &[u8] {
    let end = record
        .iter()
        .position(|b| *b == 0)
        .unwrap_or_else(|| panic!("no NUL in a record: {:?}", String::from_utf8_lossy(record)));
    assert!(
        record[end..].iter().all(|b| *b == 0),
        "a record holds more than one object: {:?}",
        String::from_utf8_lossy(record)
    );
    &record[..end]
}

/// A type-data client: 4-byte big-endian length, `{"type","data"}` with
/// `data` a JSON string.
pub(crate) struct TypeDataClient {
    stream: TcpStream,
    buf: Vec<u8>,
    kept: VecDeque<(String, Value)>,
}

impl TypeDataClient {
    pub(crate) async fn connect(addr: SocketAddr) -> TypeDataClient {
        TypeDataClient {
            stream: TcpStream::connect(addr).await.expect("connect type-data"),
            buf: Vec::new(),
            kept: VecDeque::new(),
        }
    }

    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// One packet of `kind` carrying `data`, as the Go client writes it:
    /// the length, then the body, in two writes.
    pub(crate) async fn send(&mut self, kind: &str, data: Value) {
        let body = json!({"type": kind, "data": data.to_string()}).to_string();
        let len = u32::try_from(body.len()).expect("small packet");
        self.send_raw(&len.to_be_bytes()).await;
        self.send_raw(body.as_bytes()).await;
    }

    /// The next packet as (type, data parsed); `None` once closed.
    pub(crate) async fn recv_packet(&mut self) -> Option<(String, Value)> {
        tokio::time::timeout(WAIT, async {
            loop {
                if self.buf.len() >= 4 {
                    let len =
                        u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]])
                            as usize;
                    if self.buf.len() >= 4 + len {
                        let body: Vec<u8> = self.buf.drain(..4 + len).skip(4).collect();
                        let v: Value = serde_json::from_slice(&body).expect("packet body is JSON");
                        let data =
                            serde_json::from_str(v["data"].as_str().expect("data is a string"))
                                .expect("data is JSON");
                        return Some((v["type"].as_str().expect("type").to_owned(), data));
                    }
                }
                if !read_more(&mut self.stream, &mut self.buf).await {
                    return None;
                }
            }
        })
        .await
        .expect("a type-data packet within 10 s")
    }

    /// The next packet; kept ones first.
    pub(crate) async fn recv(&mut self) -> Option<(String, Value)> {
        match self.kept.pop_front() {
            Some(p) => Some(p),
            None => self.recv_packet().await,
        }
    }

    /// The data of the next packet of `kind` for which `pred` holds.
    pub(crate) async fn expect_where(
        &mut self,
        kind: &str,
        pred: impl Fn(&Value) -> bool,
    ) -> Value {
        if let Some(i) = self.kept.iter().position(|(k, d)| k == kind && pred(d)) {
            return self.kept.remove(i).expect("indexed").1;
        }
        loop {
            let (k, d) = self
                .recv_packet()
                .await
                .unwrap_or_else(|| panic!("closed while waiting for {kind}"));
            if k == kind && pred(&d) {
                return d;
            }
            self.kept.push_back((k, d));
        }
    }

    pub(crate) async fn expect(&mut self, kind: &str) -> Value {
        self.expect_where(kind, |_| true).await
    }

    /// The `SmsMes` with this content.
    pub(crate) async fn sms(&mut self, content: &str) -> Value {
        self.expect_where("SmsMes", |d| d["content"] == content)
            .await
    }

    /// True when the server closes the connection (other packets skipped).
    pub(crate) async fn closed(&mut self) -> bool {
        while self.recv_packet().await.is_some() {}
        true
    }

    /// `RegisterMes`; the `RegisterResMes` data.
    pub(crate) async fn register(&mut self, number: u64, name: &str, password: &str) -> Value {
        self.send(
            "RegisterMes",
            json!({"user": {"userId": number, "userPwd": password, "userName": name}}),
        )
        .await;
        self.expect("RegisterResMes").await
    }

    /// `LoginMes`; the `LoginResMes` data.
    pub(crate) async fn login(&mut self, number: u64, password: &str) -> Value {
        self.send(
            "LoginMes",
            json!({"userId": number, "userPwd": password, "userName": ""}),
        )
        .await;
        self.expect("LoginResMes").await
    }
}

/// A Thrift chat room client written out by hand (strict binary, buffered
/// transport), for tests that cannot run the Python one (tests/thrift.rs
/// drives the real client stack).
pub(crate) struct ThriftClient {
    stream: TcpStream,
    buf: Vec<u8>,
    seqid: i32,
}

impl ThriftClient {
    /// Connected from the loopback address `local` (`127.0.0.x`).
    pub(crate) async fn connect_from(local: &str, addr: SocketAddr) -> ThriftClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{local}:0").parse().expect("an address"))
            .expect("bind");
        ThriftClient {
            stream: socket.connect(addr).await.expect("connect thrift"),
            buf: Vec::new(),
            seqid: 0,
        }
    }

    /// Call `method` with `{"uid","ip","data"}`; the string it returns.
    pub(crate) async fn call(&mut self, method: &str, uid: &str, data: Value) -> String {
        self.seqid += 1;
        let request = json!({"uid": uid, "ip": "10.9.8.7", "data": data}).to_string();
        let mut out = 0x8001_0001u32.to_be_bytes().to_vec();
        out.extend(u32::try_from(method.len()).expect("short").to_be_bytes());
        out.extend(method.as_bytes());
        out.extend(self.seqid.to_be_bytes());
        out.extend([11, 0, 1]);
        out.extend(u32::try_from(request.len()).expect("short").to_be_bytes());
        out.extend(request.as_bytes());
        out.push(0);
        self.stream.write_all(&out).await.expect("write");
        // version, name, seqid, field 0 STRING, STOP
        let head = 4 + 4 + method.len() + 4;
        tokio::time::timeout(WAIT, async {
            loop {
                if self.buf.len() >= head + 7 {
                    assert_eq!(&self.buf[..4], &[0x80, 1, 0, 2], "a REPLY to {method}");
                    assert_eq!(&self.buf[head..head + 3], &[11, 0, 0], "field 0 STRING");
                    let b = &self.buf[head + 3..head + 7];
                    let n = u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
                    if self.buf.len() > head + 7 + n {
                        let s = String::from_utf8(self.buf[head + 7..head + 7 + n].to_vec())
                            .expect("UTF-8");
                        assert_eq!(self.buf[head + 7 + n], 0, "STOP");
                        self.buf.drain(..head + 8 + n);
                        return s;
                    }
                }
                assert!(
                    read_more(&mut self.stream, &mut self.buf).await,
                    "closed while waiting for the reply to {method}"
                );
            }
        })
        .await
        .expect("a thrift reply within 10 s")
    }

    /// `recv` until it returns a message (every 100 ms, for 10 s).
    pub(crate) async fn poll(&mut self, uid: &str) -> String {
        let deadline = std::time::Instant::now() + WAIT;
        loop {
            let line = self.call("recv", uid, json!({})).await;
            if !line.is_empty() {
                return line;
            }
            assert!(std::time::Instant::now() < deadline, "nothing for {uid}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
