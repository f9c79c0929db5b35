//! The legacy protocols (PROTOCOL.md §2, §3 and §4) as homer [`Protocol`](homer::Protocol)s: old
//! clients of three widely copied chat servers connect unchanged and talk with
//! native users. They translate; they are not a second chat server.
//!
//! ```text
//!   msgid-json client ──┐ MsgidJson::decode   ┌────────────────────┐
//!                       ├──────────────────▶ │ legacy.* APIs      │──▶ Chat::login_with_password,
//!   type-data client ───┘ TypeData::decode    │ (this module, api) │    Chat::send, join_group, ...
//!          ▲                                  └────────────────────┘
//!          │ encode_reply / encode_push                 │ establish(.., Acks::OnWrite)
//!          └──── legacy.object / legacy.status ◀── inbox pump + Translate (api::translator)
//! ```
//!
//! # How a legacy message becomes a call
//!
//! Each protocol decodes one legacy message into a [`Call`](homer::Call) of an
//! internal API named `legacy.*` (see [`api`]): `legacy.login`,
//! `legacy.register`, `legacy.logout`, `legacy.send`, `legacy.friend.add`,
//! `legacy.group.create`, `legacy.group.join`. Those handlers compose the
//! same `Chat` methods the native APIs use (numbers are turned into names on
//! the way) and return exactly what the encoder writes. They answer 404 to
//! any connection that is not a legacy one, so native clients cannot reach
//! them. The calls of one connection run one at a time, in the order they
//! arrived (a login followed at once by a message works).
//!
//! Deliveries from the user's inbox reach a legacy connection through a
//! [`Translate`](crate::session::Translate) hook the login puts in the
//! connection's session: the inbox pump hands it each delivery, and it
//! answers with a ready-to-write legacy object (push kind `legacy.object`),
//! looking up the sender's number and the group's number. Legacy clients
//! cannot ack, so the login uses [`Acks::OnWrite`](crate::session::Acks):
//! a message handed to a legacy connection counts as delivered.
//!
//! Offline messages: a legacy connection is one device of its user (one per
//! protocol), and its login follows the user's conversations from that
//! device's cursors. Until the pump has caught up with what the logs held
//! at login, the hook collects the translated messages instead of pushing
//! them; then the login
//! reply is built with them (msgid-json puts as many as fit its 1024-byte
//! record into `offlinemsg`), and the rest follow the reply as separate pushes. The
//! protocols hold any other push while a login is answered, so nothing is
//! ever written before the login reply (the old clients read the first
//! message after a login as its answer).
//!
//! # Wire format: msgid-json (TCP, default 127.0.0.1:6000)
//!
//! No length prefix: each message is one JSON object, optionally followed by
//! a NUL byte. The decoder finds where an object ends itself, tracking
//! string literals and escapes, so objects may arrive back to back, split
//! across reads, or separated by whitespace or NULs.
//!
//! ```text
//!  client → server (any of these, in any chunking):
//!  +---------------------------------------+----+---------+-----------------------+----+
//!  | {"msgid":1,"id":7,"password":"pw"}    | 00 | ␠ \n \t | {"msgid":6,...}       | 00 | ...
//!  +---------------------------------------+----+---------+-----------------------+----+
//!    one object (UTF-8 JSON, at most the       NUL  optional  next object
//!    frame limit, 64 KiB by default)          (optional)
//!
//!  server → client (records of exactly 1024 bytes, each in its own write):
//!  +-----------------------------------------------------------+-------------+
//!  | {"msgid":2,"errno":0,"id":7,"name":"gus","offlinemsg":[…]…} | 00 00 … 00  |
//!  +-----------------------------------------------------------+-------------+
//!    one object, at most 1023 bytes                               NULs to byte 1024
//! ```
//!
//! The muduo client reads 1024 bytes per `recv` and parses each read as a C
//! string, so one object per record means one object per read, however
//! slowly it reads. Texts too long for a record are sent in parts and the
//! login answer keeps to its record (`msgid_json::login_ack`).
//!
//! What each `msgid` carries, what the server does with it and what it
//! answers is the table of PROTOCOL.md §2 (the one copy of it).
//!
//! Groups are addressed by their number (`GroupDoc::number`); the lobby,
//! which every user is in and which is not listed in `groups`, is group
//! number 0, so lobby messages reach these clients as msgid 10 with
//! `groupid` 0. The sender fields of a client's message (`id`, `name`,
//! `time`) are ignored: the server knows who sent it. `time` of a delivered
//! message is the server's time stamp as `YYYY-MM-DD HH:MM:SS` (UTC).
//!
//! # Wire format: type-data (TCP, default 127.0.0.1:8889)
//!
//! ```text
//!  0        4                                    4 + len
//!  +--------+------------------------------------+
//!  |  len   | {"type":"LoginMes","data":"{...}"} |
//!  +--------+------------------------------------+
//!   u32, big-endian: the number of JSON bytes that follow (at most the frame limit)
//! ```
//!
//! `data` is itself JSON, encoded as a string. A client's `LoginMes` logs in
//! by number and is answered with `LoginResMes` (the numbers of the users
//! online); `RegisterMes` registers with the number the client chose
//! (`RegisterResMes` 505 when it is taken); a client's `SmsMes` goes to the
//! lobby. Lobby messages reach these clients as `SmsMes`, private messages
//! with `(private) ` before the text and group messages with `(<group>) `;
//! every login and logout is pushed as `NotifyUserStatusMes`.
//!
//! # Wire format: token-json (TCP, default 127.0.0.1:9998)
//!
//! The C++ "cluster-chat-server": JSON objects `{"data","msgid","token",
//! "version"}` without framing (msgid-json's framer finds them), answers
//! `{"msgid","code","timestamp","message","data"}`, each in its own write;
//! every request but login and registration carries the token of an
//! `easy_cookie` session. Drawn and described in [`token_json`]; its
//! handlers and token check are in `api/token_json.rs`.
//! # Wire format: thrift (TCP, default 127.0.0.1:9999)
//!
//! Plain Thrift RPC of the Python chat room, drawn in [`thrift`]'s docs: a
//! strict-binary CALL whose field 1 is a JSON string, answered by a REPLY
//! whose field 0 is a string. Its client never gets anything unasked: it
//! polls `recv`, so its deliveries wait in a bounded queue of the
//! connection ([`thrift`], "Messages waiting for `recv`") and are acked when
//! handed out, and its calls name users and groups by name
//! (`legacy.login.name`, `legacy.send.name`, ...; [`thrift::api`]).
//!
//! # Bad input
//!
//! On the msgid-json and type-data ports: bytes that are not a JSON object (msgid-json), a packet
//! whose body is not `{"type":<string>,"data":<string>}` or whose length is
//! over the frame limit (type-data, refused before anything is allocated)
//! close the connection cleanly. An unknown `msgid` or `type` is ignored, as
//! the original servers do. A known message with fields of the wrong shape
//! gets the protocol's error answer where it has one (login, registration)
//! and is otherwise ignored. Nothing a connection sends affects another.

pub(crate) mod api;
pub(crate) mod msgid_json;
pub(crate) mod thrift;
pub(crate) mod token_json;
pub(crate) mod type_data;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::app::{Chat, StartError};

/// Names of the internal APIs the legacy protocols call.
pub(crate) mod apis {
    /// Log in by number; the reply is the protocol's login answer.
    pub(crate) const LOGIN: &str = "legacy.login";
    /// Register; the reply carries the new number.
    pub(crate) const REGISTER: &str = "legacy.register";
    /// Log out (the connection stays open).
    pub(crate) const LOGOUT: &str = "legacy.logout";
    /// Send to a user or a group named by number.
    pub(crate) const SEND: &str = "legacy.send";
    /// Add a friend by number.
    pub(crate) const ADD_FRIEND: &str = "legacy.friend.add";
    /// Create a group.
    pub(crate) const CREATE_GROUP: &str = "legacy.group.create";
    /// Join a group by number.
    pub(crate) const JOIN_GROUP: &str = "legacy.group.join";
    /// token-json: log in with the token of an earlier login.
    pub(crate) const TOKEN_LOGIN: &str = "legacy.token.login";
    /// token-json: register; the reply carries the number, name and a token.
    pub(crate) const TOKEN_REGISTER: &str = "legacy.token.register";
    /// token-json: add a friend by number; both are told.
    pub(crate) const TOKEN_ADD_FRIEND: &str = "legacy.token.friend.add";
    /// token-json: create a group; the reply carries its number.
    pub(crate) const TOKEN_CREATE_GROUP: &str = "legacy.token.group.create";
    /// token-json: join a group by number; the reply carries its name.
    pub(crate) const TOKEN_JOIN_GROUP: &str = "legacy.token.group.join";
    /// token-json: a heartbeat (checks the token).
    pub(crate) const HEARTBEAT: &str = "legacy.token.heartbeat";
    /// Log in by name (or by number when all digits), messages acked by
    /// `legacy.recv` (the Thrift protocol).
    pub(crate) const LOGIN_BY_NAME: &str = "legacy.login.name";
    /// Send to a user, a group or a user inside a group, all by name.
    pub(crate) const SEND_BY_NAME: &str = "legacy.send.name";
    /// The names of every user (the lobby's members).
    pub(crate) const LOBBY_MEMBERS: &str = "legacy.lobby.members";
    /// Every group with its members' names.
    pub(crate) const ALL_GROUPS: &str = "legacy.group.all";
    /// A group by its exact name.
    pub(crate) const FIND_GROUP: &str = "legacy.group.find";
    /// Join a group by name (409 for a member already).
    pub(crate) const JOIN_GROUP_BY_NAME: &str = "legacy.group.join.name";
    /// Acknowledge the message a Thrift `recv` hands out.
    pub(crate) const RECV: &str = "legacy.recv";
}

/// Push kinds the legacy protocols understand; every other push is dropped.
pub(crate) mod pushes {
    /// Content: a string holding a ready-to-write legacy object (a live
    /// message; held back while a login is being answered), or an array of
    /// them (a msgid-json text too long for one record, in parts).
    pub(crate) const OBJECT: &str = "legacy.object";
    /// Content: a string holding a ready-to-write legacy object: an offline
    /// message that follows the login reply, written at once.
    pub(crate) const OFFLINE: &str = "legacy.offline";
    /// Content: `{"userId", "status"}` (type-data's `NotifyUserStatusMes`).
    pub(crate) const STATUS: &str = "legacy.status";
    /// Sent after the pushes that follow a successful login reply: from here
    /// on, pushes held back during the login may be written.
    pub(crate) const RELEASE: &str = "legacy.release";
    /// Content: `{"user", "since", "id", "line"}`: a message for a Thrift
    /// connection's `recv` queue, from the login `user`/`since`.
    pub(crate) const QUEUED: &str = "legacy.queued";
}

/// The topic of type-data connections: user status changes.
pub(crate) const STATUS_TOPIC: &str = "legacy:type-data";

/// How long a legacy connection may be silent before it is closed. Legacy
/// clients never send heartbeats: an idle but logged-in user of one should
/// not be dropped after a few minutes, whatever `--idle-timeout-secs` says.
pub(crate) const IDLE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// What [`start`] started.
pub(crate) struct Started {
    /// Where msgid-json clients connect, if enabled.
    pub(crate) msgid_json: Option<SocketAddr>,
    /// Where type-data clients connect, if enabled.
    pub(crate) type_data: Option<SocketAddr>,
    /// Where token-json clients connect, if enabled.
    pub(crate) token_json: Option<SocketAddr>,
    /// Where Thrift clients connect, if enabled.
    pub(crate) thrift: Option<SocketAddr>,
    /// Background work to stop at shutdown.
    pub(crate) tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Register the `legacy.*` APIs and listen on the configured legacy
/// addresses (`config.msgid_json`, `config.type_data`, `config.token_json`,
/// `config.thrift`; any may be off).
pub(crate) async fn start(homer: &homer::Homer, chat: &Chat) -> Result<Started, StartError> {
    let config = &chat.inner.config;
    let (msgid_addr, type_addr) = (config.msgid_json.0, config.type_data.0);
    let (token_addr, thrift_addr) = (config.token_json.0, config.thrift.0);
    let mut started = Started {
        msgid_json: None,
        type_data: None,
        token_json: None,
        thrift: None,
        tasks: Vec::new(),
    };
    let none = [msgid_addr, type_addr, token_addr, thrift_addr];
    if none.iter().all(Option::is_none) {
        return Ok(started);
    }
    let legacy = Arc::new(api::Legacy::new(chat.clone()));
    api::register(homer, &legacy);
    thrift::api::register(homer, &legacy);
    if let Some(addr) = msgid_addr {
        started.msgid_json = Some(homer.listen_tcp(addr, msgid_json::make()).await?);
    }
    if let Some(addr) = type_addr {
        started.type_data = Some(homer.listen_tcp(addr, type_data::make()).await?);
        started.tasks.push(tokio::spawn(api::statuses(legacy)));
    }
    if let Some(addr) = token_addr {
        started.token_json = Some(homer.listen_tcp(addr, token_json::make()).await?);
    }
    if let Some(addr) = thrift_addr {
        started.thrift = Some(homer.listen_tcp(addr, thrift::make()).await?);
    }
    Ok(started)
}

/// Pushes held back while a login is answered.
///
/// Old clients take the first message after their login request for its
/// answer, so nothing may be written between the request and the answer,
/// and the offline messages that follow the answer come before live ones.
/// A protocol calls [`login_sent`](Hold::login_sent) when it issues a login
/// call, [`login_answered`](Hold::login_answered) when it writes the answer
/// and [`release_seen`](Hold::release_seen) at the
/// [`RELEASE`](pushes::RELEASE) push that ends a successful login's
/// offline messages; in between, [`write`](Hold::write) keeps frames back.
#[derive(Debug, Default)]
pub(crate) struct Hold {
    logins: usize,
    releases: usize,
    held: Vec<u8>,
}

/// Most bytes held back; past it frames are written at once (an old client
/// may then misread its login answer, but nothing is lost).
const MAX_HELD: usize = 8 << 20;

impl Hold {
    pub(crate) fn login_sent(&mut self) {
        self.logins += 1;
    }

    /// The answer to a login was written; `ok` when a
    /// [`RELEASE`](pushes::RELEASE) push will follow.
    pub(crate) fn login_answered(&mut self, ok: bool, dst: &mut bytes::BytesMut) {
        self.logins = self.logins.saturating_sub(1);
        if ok {
            self.releases += 1;
        }
        self.flush(dst);
    }

    pub(crate) fn release_seen(&mut self, dst: &mut bytes::BytesMut) {
        self.releases = self.releases.saturating_sub(1);
        self.flush(dst);
    }

    /// Write `frame` (an encoded legacy message) now, or keep it for later.
    pub(crate) fn write(&mut self, frame: &[u8], dst: &mut bytes::BytesMut) {
        if self.holding() && self.held.len() + frame.len() <= MAX_HELD {
            self.held.extend_from_slice(frame);
        } else {
            dst.extend_from_slice(frame);
        }
    }

    /// Write a push of a protocol that writes records ([`put_record`]):
    /// [`pushes::OBJECT`] (held back during a login), [`pushes::OFFLINE`]
    /// (at once) and [`pushes::RELEASE`]; every other push has no shape in
    /// these protocols (presence, group events, ...) and is dropped.
    pub(crate) fn push_records(&mut self, push: &homer::Push, dst: &mut bytes::BytesMut) {
        // One string, or an array of them (a long text in parts).
        let content = push.content();
        let many = content
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()));
        let objects = content
            .as_str()
            .into_iter()
            .chain(many.into_iter().flatten());
        match push.kind() {
            pushes::OBJECT => {
                let mut frame = bytes::BytesMut::new();
                for object in objects {
                    put_record(&mut frame, object);
                }
                self.write(&frame, dst);
            }
            pushes::OFFLINE => objects.for_each(|object| put_record(dst, object)),
            pushes::RELEASE => self.release_seen(dst),
            _ => {}
        }
    }

    fn holding(&self) -> bool {
        self.logins > 0 || self.releases > 0
    }

    fn flush(&mut self, dst: &mut bytes::BytesMut) {
        if !self.holding() && !self.held.is_empty() {
            dst.extend_from_slice(&self.held);
            self.held = Vec::new();
        }
    }
}

/// What the old C++ clients (msgid-json's muduo client, token-json's
/// client) read at once: one `recv` of 1024 bytes, parsed as one JSON
/// object that ends at the first NUL or at the end of the read.
pub(crate) const CLIENT_READ: usize = 1024;

/// `object` as one record: the object, then NULs up to [`CLIENT_READ`]
/// bytes. A client that reads [`CLIENT_READ`] bytes at a time and parses
/// each read as one object (a C string, or nlohmann's parser, for which a
/// NUL ends the input) then reads exactly one object each time, however
/// many wait. Everything the protocols write is built to fit (at most
/// `CLIENT_READ - 1` bytes) where it can; an object that does not (a
/// token-json login answer with many friends) takes several records' room,
/// which such a client misreads, but the records after it stay in step.
pub(crate) fn put_record(dst: &mut bytes::BytesMut, object: &str) {
    use bytes::BufMut;
    let record = (object.len() + 1).next_multiple_of(CLIENT_READ);
    dst.reserve(record);
    dst.put_slice(object.as_bytes());
    dst.put_bytes(0, record - object.len());
}

/// `text` cut at character boundaries into parts whose JSON string bodies
/// (escapes included) are at most `budget` bytes; the parts joined are
/// `text`. At least one part (an empty text is one empty part); at least one
/// character per part, whatever the budget.
pub(crate) fn fit_text(text: &str, budget: usize) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut used) = (0, 0);
    for (i, c) in text.char_indices() {
        let cost = escaped_len(c);
        if used + cost > budget && i > start {
            parts.push(&text[start..i]);
            (start, used) = (i, 0);
        }
        used += cost;
    }
    parts.push(&text[start..]);
    parts
}

/// How many bytes `c` takes inside a JSON string written by serde_json.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\n' | '\r' | '\t' | '\u{8}' | '\u{c}' => 2,
        c if u32::from(c) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// `ts` (milliseconds since the Unix epoch) as `YYYY-MM-DD HH:MM:SS`, UTC:
/// the `time` of a msgid-json message.
pub(crate) fn format_time(ts: u64) -> String {
    let secs = ts / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// The proleptic Gregorian date `days` after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for non-negative day counts).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

/// The objects in `written`: records of [`CLIENT_READ`] bytes, each one
/// object and NULs, as a client that reads 1024 bytes at a time and parses
/// each read as one object sees them.
#[cfg(test)]
pub(crate) fn records(written: &[u8]) -> Vec<serde_json::Value> {
    assert_eq!(written.len() % CLIENT_READ, 0, "whole records");
    written
        .chunks(CLIENT_READ)
        .map(|record| {
            let end = record.iter().position(|b| *b == 0).expect("a NUL");
            assert!(record[end..].iter().all(|b| *b == 0), "NULs to the end");
            serde_json::from_slice(&record[..end]).expect("an object")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn legacy_params_show_no_password() {
        let login = api::LoginParams {
            number: 7,
            password: "s3cret".into(),
        };
        let register = api::RegisterParams {
            name: "gus".into(),
            password: "s3cret".into(),
            number: None,
        };
        for shown in [format!("{login:?}"), format!("{register:?}")] {
            assert!(
                !shown.contains("s3cret") && shown.contains("***"),
                "{shown}"
            );
        }
    }

    #[test]
    fn times_are_utc_wall_clock() {
        let check = |ts: u64, expected: &str| assert_eq!(format_time(ts), expected, "{ts}");
        check(0, "1970-01-01 00:00:00");
        check(951_782_400_000, "2000-02-29 00:00:00");
        check(1_732_350_000_123, "2024-11-23 08:20:00");
        check(4_102_444_799_999, "2099-12-31 23:59:59");
    }
}
