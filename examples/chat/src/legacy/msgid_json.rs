//! The msgid-json protocol (PROTOCOL.md §2): the muduo "ChatServer" course
//! project's JSON objects with a `msgid`, no framing.
//!
//! [`ObjectFramer`] finds where each object ends (a tokio-util
//! [`Decoder`]); [`MsgidJson`] turns each object into a `legacy.*` call and
//! writes the answers and deliveries as 1024-byte records (an object, then
//! NULs), each in its own write. The shapes of the objects written are built
//! here too, each to fit a record ([`login_ack`], [`one_chat`],
//! [`group_chat`]).

use bytes::{Buf, BytesMut};
use homer::{ApiError, Call, Decoded, Limits, MakeProtocol, Protocol, ProtocolError, Push, Reply};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::codec::Decoder;

use super::api::{
    CreateGroupParams, Dest, LoginParams, NumberParams, RegisterParams, Registered, SendParams,
};
use super::{CLIENT_READ, Hold, apis, fit_text, put_record};

/// The protocol's name ([`homer::Connection::protocol`]).
pub(crate) const NAME: &str = "msgid-json";

pub(crate) const LOGIN_MSG: u64 = 1;
pub(crate) const LOGIN_MSG_ACK: u64 = 2;
pub(crate) const LOGINOUT_MSG: u64 = 3;
pub(crate) const REG_MSG: u64 = 4;
pub(crate) const REG_MSG_ACK: u64 = 5;
pub(crate) const ONE_CHAT_MSG: u64 = 6;
pub(crate) const ADD_FRIEND_MSG: u64 = 7;
pub(crate) const CREATE_GROUP_MSG: u64 = 8;
pub(crate) const ADD_GROUP_MSG: u64 = 9;
pub(crate) const GROUP_CHAT_MSG: u64 = 10;

/// The `errmsg` of a failed login, as the original server words it.
pub(crate) const BAD_LOGIN: &str = "id or password is invalid!";

/// Makes [`MsgidJson`] with the server's frame limit.
pub(crate) fn make() -> impl MakeProtocol<Protocol = MsgidJson> {
    |limits: &Limits| MsgidJson::new(limits.max_frame_size())
}

// ---------------------------------------------------------------------------
// Framing.

/// Splits a byte stream into JSON objects without a length prefix.
///
/// Before an object, whitespace and NUL bytes are skipped; an object starts
/// at `{` and ends at the `}` that closes it, counting braces and brackets
/// outside string literals (where `\"` does not end the string). Scanning is
/// incremental: bytes already looked at are not looked at again when more
/// arrive. An object longer than the limit is an error, detected without
/// buffering more than the limit; so is anything else where an object must
/// start (the stream cannot be resynchronised reliably).
#[derive(Debug)]
pub(crate) struct ObjectFramer {
    max: usize,
    /// Bytes of the current object scanned so far (0: none started).
    scanned: usize,
    depth: usize,
    in_string: bool,
    escaped: bool,
}

impl ObjectFramer {
    /// Objects of at most `max` bytes.
    pub(crate) fn new(max: usize) -> Self {
        ObjectFramer {
            max,
            scanned: 0,
            depth: 0,
            in_string: false,
            escaped: false,
        }
    }
}

impl Decoder for ObjectFramer {
    type Item = BytesMut;
    type Error = ProtocolError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<BytesMut>, ProtocolError> {
        if self.scanned == 0 {
            let skip = src
                .iter()
                .take_while(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n' | 0))
                .count();
            src.advance(skip);
            match src.first() {
                None => return Ok(None),
                Some(b'{') => {}
                Some(b) => {
                    return Err(ProtocolError::Invalid(format!(
                        "expected a JSON object starting with `{{`, found byte 0x{b:02x}"
                    )));
                }
            }
        }
        for i in self.scanned..src.len() {
            let b = src[i];
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                } else if b == b'\\' {
                    self.escaped = true;
                } else if b == b'"' {
                    self.in_string = false;
                }
                continue;
            }
            match b {
                b'"' => self.in_string = true,
                b'{' | b'[' => self.depth += 1,
                b'}' | b']' => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        let len = i + 1;
                        if len > self.max {
                            return Err(ProtocolError::FrameTooLarge {
                                len,
                                limit: self.max,
                            });
                        }
                        *self = ObjectFramer::new(self.max);
                        return Ok(Some(src.split_to(len)));
                    }
                }
                _ => {}
            }
        }
        self.scanned = src.len();
        if src.len() > self.max {
            return Err(ProtocolError::FrameTooLarge {
                len: src.len(),
                limit: self.max,
            });
        }
        Ok(None)
    }
}

// ---------------------------------------------------------------------------
// What clients send (extra fields are ignored, as the original server did).

#[derive(Deserialize)]
struct Login {
    id: u64,
    password: String,
}

#[derive(Deserialize)]
struct Register {
    name: String,
    password: String,
}

#[derive(Deserialize)]
struct OneChat {
    toid: u64,
    msg: String,
}

#[derive(Deserialize)]
struct AddFriend {
    friendid: u64,
}

#[derive(Deserialize)]
struct CreateGroup {
    groupname: String,
    #[serde(default)]
    groupdesc: String,
}

#[derive(Deserialize)]
struct AddGroup {
    groupid: u64,
}

#[derive(Deserialize)]
struct GroupChat {
    groupid: u64,
    msg: String,
}

// ---------------------------------------------------------------------------
// What the server writes.

/// `{"id","name","state"}` (a friend) or `{"id","name","state","role"}` (a
/// group member).
#[derive(Debug, Serialize)]
pub(crate) struct User<'a> {
    pub(crate) id: u64,
    pub(crate) name: &'a str,
    pub(crate) state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) role: Option<&'static str>,
}

/// `{"id","groupname","groupdesc","users"}`; `users` holds JSON strings of
/// [`User`]s.
#[derive(Debug, Serialize)]
pub(crate) struct Group<'a> {
    pub(crate) id: u64,
    pub(crate) groupname: &'a str,
    pub(crate) groupdesc: &'a str,
    pub(crate) users: Vec<String>,
}

#[derive(Serialize)]
struct LoginAck<'a> {
    msgid: u64,
    errno: u64,
    id: u64,
    name: &'a str,
    offlinemsg: &'a [String],
    friends: &'a [String],
    groups: &'a [String],
}

#[derive(Serialize)]
struct Failed<'a> {
    msgid: u64,
    errno: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    errmsg: Option<&'a str>,
}

#[derive(Serialize)]
struct RegAck {
    msgid: u64,
    errno: u64,
    id: u64,
}

#[derive(Serialize)]
struct Chat<'a> {
    msgid: u64,
    id: u64,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    toid: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groupid: Option<u64>,
    msg: &'a str,
    time: &'a str,
}

/// `"online"` or `"offline"`.
pub(crate) fn state(online: bool) -> &'static str {
    if online { "online" } else { "offline" }
}

/// `value` as compact JSON. The shapes written here cannot fail to
/// serialise (no maps with non-string keys); if one did, it would be `""`.
pub(crate) fn to_json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

/// A private message (msgid 6) from user `id` (`name`) to user `toid`, in
/// as many objects as it takes for each to fit a record ([`fit_text`]).
pub(crate) fn one_chat(id: u64, name: &str, toid: u64, msg: &str, time: &str) -> Vec<String> {
    chat_objects(Chat {
        msgid: ONE_CHAT_MSG,
        id,
        name,
        toid: Some(toid),
        groupid: None,
        msg,
        time,
    })
}

/// A group message (msgid 10) from user `id` (`name`) to group `groupid`,
/// in as many objects as it takes for each to fit a record.
pub(crate) fn group_chat(id: u64, name: &str, groupid: u64, msg: &str, time: &str) -> Vec<String> {
    chat_objects(Chat {
        msgid: GROUP_CHAT_MSG,
        id,
        name,
        toid: None,
        groupid: Some(groupid),
        msg,
        time,
    })
}

/// `chat` as objects that each fit a record ([`put_record`]): one, or the text cut in
/// parts that each fit, in order.
fn chat_objects(chat: Chat<'_>) -> Vec<String> {
    let overhead = to_json(&Chat { msg: "", ..chat }).len();
    fit_text(chat.msg, (CLIENT_READ - 1).saturating_sub(overhead))
        .into_iter()
        .map(|msg| to_json(&Chat { msg, ..chat }))
        .collect()
}

/// The successful login answer (msgid 2), within one record: as many of
/// `friends`, then of `groups`, then of `offline` (the waiting messages'
/// objects, oldest first) as fit, in that order of importance; and the
/// offline messages that did not fit, to write after it in order. Friends
/// and groups left out of a crowded answer are still friends and groups;
/// the client only does not list them.
pub(crate) fn login_ack(
    id: u64,
    name: &str,
    mut offline: Vec<String>,
    friends: &[String],
    groups: &[String],
) -> (String, Vec<String>) {
    let ack = |friends: &[String], groups: &[String], offlinemsg: &[String]| {
        to_json(&LoginAck {
            msgid: LOGIN_MSG_ACK,
            errno: 0,
            id,
            name,
            offlinemsg,
            friends,
            groups,
        })
    };
    let fits = |object: String| object.len() < CLIENT_READ;
    let f = fitting(friends.len(), |n| fits(ack(&friends[..n], &[], &[])));
    let friends = &friends[..f];
    let g = fitting(groups.len(), |n| fits(ack(friends, &groups[..n], &[])));
    let groups = &groups[..g];
    let o = fitting(offline.len(), |n| fits(ack(friends, groups, &offline[..n])));
    let rest = offline.split_off(o);
    (ack(friends, groups, &offline), rest)
}

/// The largest `n <= max` such that `fits(k)` for every `k <= n` (stops at
/// the first that does not: the work is bounded by what fits).
fn fitting(max: usize, fits: impl Fn(usize) -> bool) -> usize {
    (1..=max).take_while(|&n| fits(n)).last().unwrap_or(0)
}

/// The failed login answer: `errno` 1 and the reason.
fn login_failed(e: &ApiError) -> String {
    // Bad credentials and malformed requests get the original wording;
    // anything else (too many attempts, a fault) says what it is.
    let errmsg = match e.status() {
        400 | 401 => BAD_LOGIN,
        _ => e.message(),
    };
    to_json(&Failed {
        msgid: LOGIN_MSG_ACK,
        errno: 1,
        errmsg: Some(errmsg),
    })
}

// ---------------------------------------------------------------------------
// The protocol.

/// The msgid-json [`Protocol`] for one connection.
#[derive(Debug)]
pub(crate) struct MsgidJson {
    framer: ObjectFramer,
    next_id: u64,
    hold: Hold,
}

impl MsgidJson {
    /// Objects of at most `max_frame` bytes.
    pub(crate) fn new(max_frame: usize) -> Self {
        MsgidJson {
            framer: ObjectFramer::new(max_frame),
            next_id: 0,
            hold: Hold::default(),
        }
    }

    fn call<P: Serialize>(&mut self, api: &str, params: &P) -> Decoded {
        self.next_id += 1;
        let params = serde_json::to_value(params).unwrap_or(Value::Null);
        Decoded::Call(Call::new(self.next_id, api, params))
    }

    /// The call for one object, or `None` for an object to ignore.
    fn translate(&mut self, object: Value) -> Option<Decoded> {
        let msgid = object.get("msgid").and_then(Value::as_u64);
        fn parse<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, serde_json::Error> {
            serde_json::from_value(v)
        }
        let call = match msgid {
            Some(LOGIN_MSG) => {
                self.hold.login_sent();
                match parse::<Login>(object) {
                    Ok(l) => self.call(
                        apis::LOGIN,
                        &LoginParams {
                            number: l.id,
                            password: l.password,
                        },
                    ),
                    Err(e) => self.refuse(apis::LOGIN, e),
                }
            }
            Some(LOGINOUT_MSG) => self.call(apis::LOGOUT, &Value::Null),
            Some(REG_MSG) => match parse::<Register>(object) {
                Ok(r) => self.call(
                    apis::REGISTER,
                    &RegisterParams {
                        name: r.name,
                        password: r.password,
                        number: None,
                    },
                ),
                Err(e) => self.refuse(apis::REGISTER, e),
            },
            Some(ONE_CHAT_MSG) => {
                let m = parse::<OneChat>(object)
                    .map_err(|e| ignore(ONE_CHAT_MSG, &e))
                    .ok()?;
                self.call(
                    apis::SEND,
                    &SendParams {
                        to: Dest::User(m.toid),
                        text: m.msg,
                    },
                )
            }
            Some(ADD_FRIEND_MSG) => {
                let m = parse::<AddFriend>(object)
                    .map_err(|e| ignore(ADD_FRIEND_MSG, &e))
                    .ok()?;
                self.call(apis::ADD_FRIEND, &NumberParams { number: m.friendid })
            }
            Some(CREATE_GROUP_MSG) => {
                let m = parse::<CreateGroup>(object)
                    .map_err(|e| ignore(CREATE_GROUP_MSG, &e))
                    .ok()?;
                self.call(
                    apis::CREATE_GROUP,
                    &CreateGroupParams {
                        name: m.groupname,
                        desc: m.groupdesc,
                    },
                )
            }
            Some(ADD_GROUP_MSG) => {
                let m = parse::<AddGroup>(object)
                    .map_err(|e| ignore(ADD_GROUP_MSG, &e))
                    .ok()?;
                self.call(apis::JOIN_GROUP, &NumberParams { number: m.groupid })
            }
            Some(GROUP_CHAT_MSG) => {
                let m = parse::<GroupChat>(object)
                    .map_err(|e| ignore(GROUP_CHAT_MSG, &e))
                    .ok()?;
                self.call(
                    apis::SEND,
                    &SendParams {
                        to: Dest::Group(m.groupid),
                        text: m.msg,
                    },
                )
            }
            _ => {
                tracing::debug!(?msgid, "ignoring a msgid-json object with an unknown msgid");
                return None;
            }
        };
        Some(call)
    }

    /// An immediate error answer to a message of the wrong shape.
    fn refuse(&mut self, api: &str, e: serde_json::Error) -> Decoded {
        self.next_id += 1;
        Decoded::Reply(Reply::error(
            Value::from(self.next_id),
            Some(api.to_owned()),
            ApiError::bad_params(api, e),
        ))
    }
}

fn ignore(msgid: u64, e: &serde_json::Error) {
    tracing::debug!(msgid, error = %e, "ignoring a msgid-json message of the wrong shape");
}

impl Protocol for MsgidJson {
    fn name(&self) -> &'static str {
        NAME
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            let Some(frame) = self.framer.decode(src)? else {
                return Ok(None);
            };
            let object: Value = serde_json::from_slice(&frame)
                .map_err(|e| ProtocolError::Invalid(format!("malformed JSON object: {e}")))?;
            if let Some(decoded) = self.translate(object) {
                return Ok(Some(decoded));
            }
        }
    }

    fn encode_reply(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match (reply.api.as_deref(), &reply.result) {
            (Some(apis::LOGIN), Ok(Value::String(ack))) => {
                put_record(dst, ack);
                self.hold.login_answered(true, dst);
            }
            (Some(apis::LOGIN), Ok(_)) => {
                put_record(
                    dst,
                    &login_failed(&ApiError::internal("unexpected login answer")),
                );
                // The login itself succeeded: its offline messages and release follow.
                self.hold.login_answered(true, dst);
            }
            (Some(apis::LOGIN), Err(e)) => {
                put_record(dst, &login_failed(e));
                self.hold.login_answered(false, dst);
            }
            (Some(apis::REGISTER), result) => {
                let number = result
                    .as_ref()
                    .ok()
                    .and_then(|c| serde_json::from_value::<Registered>(c.clone()).ok())
                    .map(|r| r.number);
                let ack = match number {
                    Some(id) => to_json(&RegAck {
                        msgid: REG_MSG_ACK,
                        errno: 0,
                        id,
                    }),
                    None => to_json(&Failed {
                        msgid: REG_MSG_ACK,
                        errno: 1,
                        errmsg: None,
                    }),
                };
                put_record(dst, &ack);
            }
            (api, Err(e)) => {
                tracing::debug!(?api, status = e.status(), error = %e.message(), "a msgid-json message failed (this protocol has no answer for it)");
            }
            (_, Ok(_)) => {}
        }
        Ok(())
    }

    fn encode_push(&mut self, push: &Push, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        self.hold.push_records(push, dst);
        Ok(())
    }

    fn write_each_message(&self) -> bool {
        true
    }

    fn idle_timeout(&self) -> Option<std::time::Duration> {
        Some(super::IDLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::legacy::pushes;
    use proptest::prelude::*;
    use serde_json::json;

    /// Feed `chunks` one after the other; the objects framed, then `Err`
    /// text if framing failed.
    fn frame(chunks: &[&[u8]], max: usize) -> (Vec<String>, Option<String>) {
        let mut framer = ObjectFramer::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match framer.decode(&mut buf) {
                    Ok(Some(f)) => out.push(String::from_utf8_lossy(&f).into_owned()),
                    Ok(None) => break,
                    Err(e) => return (out, Some(e.to_string())),
                }
            }
        }
        (out, None)
    }

    #[test]
    fn framer_finds_object_boundaries() {
        let check = |chunks: &[&[u8]], expected: &[&str]| {
            let (got, err) = frame(chunks, 64 * 1024);
            assert_eq!(err, None, "{chunks:?}");
            assert_eq!(got, expected, "{chunks:?}");
        };
        // NUL-terminated, as the muduo client sends.
        check(
            &[b"{\"msgid\":1,\"id\":1,\"password\":\"p\"}\0"],
            &[r#"{"msgid":1,"id":1,"password":"p"}"#],
        );
        // Without NUL.
        check(&[b"{\"msgid\":3,\"id\":1}"], &[r#"{"msgid":3,"id":1}"#]);
        // Back to back in one read, with and without NULs, whitespace between.
        check(
            &[b"{\"a\":1}\0{\"b\":2}{\"c\":3} \r\n\t {\"d\":4}\0\0"],
            &[r#"{"a":1}"#, r#"{"b":2}"#, r#"{"c":3}"#, r#"{"d":4}"#],
        );
        // Split across reads anywhere.
        check(
            &[b"{\"msgid\":6,\"ms", b"g\":\"h", b"i\"}\0{", b"}"],
            &[r#"{"msgid":6,"msg":"hi"}"#, "{}"],
        );
        // Braces and brackets inside strings, escaped quotes and backslashes.
        check(&[br#"{"msg":"}{ ]["}"#], &[r#"{"msg":"}{ ]["}"#]);
        check(
            &[br#"{"msg":"say \"}\" now"}"#],
            &[r#"{"msg":"say \"}\" now"}"#],
        );
        check(
            &[br#"{"msg":"ends with a backslash \\"}{"x":[1,{"y":[]}]}"#],
            &[
                r#"{"msg":"ends with a backslash \\"}"#,
                r#"{"x":[1,{"y":[]}]}"#,
            ],
        );
        // Multi-byte UTF-8.
        check(
            &["{\"msg\":\"你好 }\"}".as_bytes()],
            &["{\"msg\":\"你好 }\"}"],
        );
        // Nothing complete yet.
        check(&[b"  \0 {\"msgid\":", b"1"], &[]);
    }

    #[test]
    fn framer_splits_byte_by_byte_like_in_one_read() {
        let stream =
            br#"{"msgid":10,"id":1,"groupid":2,"msg":"a \"}\" b","time":"t"}  {"msgid":3}"#;
        let chunks: Vec<&[u8]> = stream.chunks(1).collect();
        let (got, err) = frame(&chunks, 1024);
        assert_eq!(err, None);
        assert_eq!(
            got,
            [
                r#"{"msgid":10,"id":1,"groupid":2,"msg":"a \"}\" b","time":"t"}"#,
                r#"{"msgid":3}"#
            ]
        );
    }

    #[test]
    fn framer_refuses_garbage_and_oversized_objects() {
        let check = |chunks: &[&[u8]], max: usize, framed: usize, expected: &str| {
            let (got, err) = frame(chunks, max);
            assert_eq!(got.len(), framed, "{chunks:?}");
            let err = err.unwrap_or_default();
            assert!(err.contains(expected), "{chunks:?}: {err}");
        };
        check(&[b"hello\0"], 1024, 0, "found byte 0x68");
        check(&[b"{\"a\":1}\0[1,2]"], 1024, 1, "found byte 0x5b");
        check(
            &[b"{\"a\":\"0123456789\"}"],
            10,
            0,
            "exceeds the 10-byte limit",
        );
        // An unfinished object is refused once it passes the limit, without
        // waiting for its end.
        check(
            &[b"{\"a\":\"01234", b"56789"],
            10,
            0,
            "frame of 11 bytes exceeds the 10-byte limit",
        );
    }

    /// Decode everything in `input`; each item as the call's `api` and
    /// `params`, or `reply <status>` for an immediate answer.
    fn decode_all(input: &[u8]) -> Result<Vec<String>, String> {
        let mut p = MsgidJson::new(64 * 1024);
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        loop {
            match p.decode(&mut buf) {
                Ok(Some(Decoded::Call(c))) => out.push(format!("{} {}", c.api, c.params)),
                Ok(Some(Decoded::Reply(r))) => out.push(format!(
                    "reply {} {}",
                    r.api.as_deref().unwrap_or_default(),
                    r.status()
                )),
                Ok(Some(other)) => out.push(format!("{other:?}")),
                Ok(None) => return Ok(out),
                Err(e) => return Err(e.to_string()),
            }
        }
    }

    #[test]
    fn every_msgid_becomes_its_call() {
        // `api params`, with params compared as JSON values.
        let normal = |s: &str| match s.split_once(' ') {
            Some((api, params)) => match serde_json::from_str::<Value>(params) {
                Ok(v) => format!("{api} {v}"),
                Err(_) => s.to_owned(),
            },
            None => s.to_owned(),
        };
        let check = |input: &str, expected: &[&str]| {
            let got = decode_all(input.as_bytes())
                .map(|v| v.iter().map(|s| normal(s)).collect::<Vec<_>>());
            assert_eq!(
                got,
                Ok(expected.iter().map(|s| normal(s)).collect()),
                "{input}"
            );
        };
        check(
            r#"{"msgid":1,"id":13,"password":"pw"}"#,
            &[r#"legacy.login {"number":13,"password":"pw"}"#],
        );
        check(r#"{"msgid":3,"id":13}"#, &["legacy.logout null"]);
        check(
            r#"{"msgid":4,"name":"gus","password":"pw"}"#,
            &[r#"legacy.register {"name":"gus","password":"pw"}"#],
        );
        check(
            r#"{"msgid":6,"id":13,"name":"gus","toid":14,"msg":"hi","time":"2024-01-01 10:00:00"}"#,
            &[r#"legacy.send {"text":"hi","to":{"user":14}}"#],
        );
        check(
            r#"{"msgid":7,"id":13,"friendid":14}"#,
            &[r#"legacy.friend.add {"number":14}"#],
        );
        check(
            r#"{"msgid":8,"id":13,"groupname":"rust","groupdesc":"crabs"}"#,
            &[r#"legacy.group.create {"desc":"crabs","name":"rust"}"#],
        );
        check(
            r#"{"msgid":9,"id":13,"groupid":2}"#,
            &[r#"legacy.group.join {"number":2}"#],
        );
        check(
            r#"{"msgid":10,"id":13,"name":"gus","groupid":2,"msg":"hi all","time":"t"}"#,
            &[r#"legacy.send {"text":"hi all","to":{"group":2}}"#],
        );
        // Wrong shapes: login and registration are answered, others ignored.
        check(
            r#"{"msgid":1,"id":"13","password":"pw"}"#,
            &["reply legacy.login 400"],
        );
        check(
            r#"{"msgid":4,"name":"gus"}"#,
            &["reply legacy.register 400"],
        );
        check(
            r#"{"msgid":6,"toid":"x","msg":"hi"}{"msgid":7}{"msgid":9,"groupid":-1}"#,
            &[],
        );
        // Unknown msgids, server-side msgids and objects without one: ignored.
        check(
            r#"{"msgid":99}{"msgid":2,"errno":0}{"hello":1}{"msgid":"1"}{"msgid":3}"#,
            &["legacy.logout null"],
        );
    }

    #[test]
    fn malformed_json_inside_braces_closes() {
        let err = decode_all(b"{\"msgid\":1,}").unwrap_err();
        assert!(err.contains("malformed JSON object"), "{err}");
        let err = decode_all(b"garbage{\"msgid\":3}").unwrap_err();
        assert!(err.contains("expected a JSON object"), "{err}");
    }

    fn encoded(write: impl FnOnce(&mut MsgidJson, &mut BytesMut)) -> Vec<Value> {
        let mut p = MsgidJson::new(1024);
        let mut dst = BytesMut::new();
        write(&mut p, &mut dst);
        crate::legacy::records(&dst)
    }

    #[test]
    fn answers_have_the_exact_shapes() {
        let check = |reply: Reply, expected: Value| {
            let got = encoded(|p, dst| p.encode_reply(&reply, dst).unwrap());
            assert_eq!(got, std::slice::from_ref(&expected), "{reply:?}");
        };
        let (ack, rest) = login_ack(13, "gus", vec![], &[], &[]);
        assert!(rest.is_empty());
        check(
            Reply::ok(json!(1), Some(apis::LOGIN.into()), Value::String(ack)),
            json!({"msgid":2,"errno":0,"id":13,"name":"gus","offlinemsg":[],"friends":[],"groups":[]}),
        );
        check(
            Reply::error(
                json!(1),
                Some(apis::LOGIN.into()),
                ApiError::unauthorized("bad_credentials", "wrong name or password"),
            ),
            json!({"msgid":2,"errno":1,"errmsg":"id or password is invalid!"}),
        );
        check(
            Reply::error(
                json!(1),
                Some(apis::LOGIN.into()),
                ApiError::new(429, "too_many_attempts", "retry in 2 s"),
            ),
            json!({"msgid":2,"errno":1,"errmsg":"retry in 2 s"}),
        );
        check(
            Reply::ok(json!(2), Some(apis::REGISTER.into()), json!({"number": 14})),
            json!({"msgid":5,"errno":0,"id":14}),
        );
        check(
            Reply::error(
                json!(2),
                Some(apis::REGISTER.into()),
                ApiError::conflict("name_taken", "this name is taken"),
            ),
            json!({"msgid":5,"errno":1}),
        );
        // Messages without an answer write nothing, even when they fail.
        for api in [
            apis::SEND,
            apis::LOGOUT,
            apis::ADD_FRIEND,
            apis::CREATE_GROUP,
            apis::JOIN_GROUP,
        ] {
            assert!(
                encoded(|p, dst| p
                    .encode_reply(&Reply::ok(json!(3), Some(api.into()), json!({})), dst)
                    .unwrap())
                .is_empty()
            );
            let failed = Reply::error(json!(3), Some(api.into()), ApiError::not_found("x", "y"));
            assert!(encoded(|p, dst| p.encode_reply(&failed, dst).unwrap()).is_empty());
        }
    }

    #[test]
    fn chat_objects_have_the_exact_shapes() {
        let check = |object: String, expected: Value| {
            assert_eq!(serde_json::from_str::<Value>(&object).unwrap(), expected);
        };
        let one = |objects: Vec<String>| {
            assert_eq!(objects.len(), 1);
            objects.into_iter().next().unwrap()
        };
        check(
            one(one_chat(13, "gus", 14, "hi", "2024-11-23 08:20:00")),
            json!({"msgid":6,"id":13,"name":"gus","toid":14,"msg":"hi","time":"2024-11-23 08:20:00"}),
        );
        check(
            one(group_chat(13, "gus", 2, "hi all", "2024-11-23 08:20:00")),
            json!({"msgid":10,"id":13,"name":"gus","groupid":2,"msg":"hi all","time":"2024-11-23 08:20:00"}),
        );
        check(
            to_json(&User {
                id: 3,
                name: "al",
                state: state(true),
                role: None,
            }),
            json!({"id":3,"name":"al","state":"online"}),
        );
        let member = to_json(&User {
            id: 3,
            name: "al",
            state: state(false),
            role: Some("creator"),
        });
        check(
            to_json(&Group {
                id: 2,
                groupname: "rust",
                groupdesc: "crabs",
                users: vec![member],
            }),
            json!({"id":2,"groupname":"rust","groupdesc":"crabs","users":["{\"id\":3,\"name\":\"al\",\"state\":\"offline\",\"role\":\"creator\"}"]}),
        );
    }

    #[test]
    fn long_texts_come_in_parts_that_each_fit_a_record() {
        for text in [
            "x".repeat(1000),
            "界".repeat(700),
            "\"\\\n\u{1}".repeat(300),
            format!("{}😀{}", "a".repeat(900), "b".repeat(900)),
        ] {
            for parts in [
                one_chat(14, "李四", 13, &text, "2024-11-23 08:20:00"),
                group_chat(14, "李四", 2, &text, "2024-11-23 08:20:00"),
            ] {
                assert!(parts.len() > 1, "{} bytes in one part", text.len());
                let mut joined = String::new();
                for part in &parts {
                    assert!(part.len() < CLIENT_READ, "a part of {} bytes", part.len());
                    let v: Value = serde_json::from_str(part).unwrap();
                    assert_eq!(v["name"], "李四");
                    joined.push_str(v["msg"].as_str().unwrap());
                }
                assert_eq!(joined, text, "nothing cut, nothing added");
                // A full part uses its room: no more than one character short.
                let first: Value = serde_json::from_str(&parts[0]).unwrap();
                assert!(parts[0].len() + 6 >= CLIENT_READ - 1, "{first}");
            }
        }
        assert_eq!(fit_text("", 10), [""]);
        assert_eq!(
            fit_text("abc", 0),
            ["a", "b", "c"],
            "a character per part at least"
        );
    }

    #[test]
    fn a_crowded_login_ack_keeps_friends_then_groups_within_a_record() {
        let friends: Vec<String> = (0..100)
            .map(|i| {
                to_json(&User {
                    id: i,
                    name: "朋友",
                    state: state(true),
                    role: None,
                })
            })
            .collect();
        let groups: Vec<String> = (0..10)
            .map(|i| {
                to_json(&Group {
                    id: i,
                    groupname: "中文群",
                    groupdesc: "",
                    users: vec![],
                })
            })
            .collect();
        let offline = vec![one_chat(14, "bob", 13, "hi", "t").remove(0)];
        let (ack, rest) = login_ack(13, "gus", offline.clone(), &friends, &groups);
        assert!(ack.len() < CLIENT_READ, "{} bytes", ack.len());
        let v: Value = serde_json::from_str(&ack).unwrap();
        let listed = v["friends"].as_array().unwrap();
        assert!(!listed.is_empty() && listed.len() < friends.len());
        assert_eq!(v["groups"], json!([]), "no room left for groups");
        assert_eq!(rest, offline, "the offline message follows the answer");
        // With few friends, the groups fit too.
        let (ack, _) = login_ack(13, "gus", vec![], &friends[..2], &groups[..3]);
        let v: Value = serde_json::from_str(&ack).unwrap();
        assert_eq!(v["groups"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn login_ack_carries_what_fits_in_1024_bytes() {
        let msg = |i: usize| {
            one_chat(
                14,
                "bob",
                13,
                &format!("{i:03} {}", "x".repeat(100)),
                "2024-11-23 08:20:00",
            )
            .remove(0)
        };
        let offline: Vec<String> = (0..20).map(msg).collect();
        let (ack, rest) = login_ack(13, "gus", offline.clone(), &[], &[]);
        assert!(ack.len() < CLIENT_READ, "{} bytes", ack.len());
        let parsed: Value = serde_json::from_str(&ack).unwrap();
        let carried = parsed["offlinemsg"].as_array().unwrap();
        assert!(!carried.is_empty() && !rest.is_empty());
        // In order, nothing lost, nothing twice.
        let all: Vec<String> = carried
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .chain(rest.clone())
            .collect();
        assert_eq!(all, offline);
        // One more would not have fitted.
        let mut one_more: Vec<Value> = carried.clone();
        one_more.push(Value::String(rest[0].clone()));
        let mut bigger = parsed.clone();
        bigger["offlinemsg"] = Value::Array(one_more);
        assert!(bigger.to_string().len() >= CLIENT_READ);
        // A message too big for any ack still follows, in order.
        let huge = to_json(&Chat {
            msgid: ONE_CHAT_MSG,
            id: 14,
            name: "bob",
            toid: Some(13),
            groupid: None,
            msg: &"y".repeat(2000),
            time: "t",
        });
        let (ack, rest) = login_ack(13, "gus", vec![huge.clone(), msg(1)], &[], &[]);
        assert_eq!(
            serde_json::from_str::<Value>(&ack).unwrap()["offlinemsg"],
            json!([])
        );
        assert_eq!(rest, [huge, msg(1)]);
    }

    #[test]
    fn pushes_wait_for_the_login_answer_and_offline_messages() {
        let live = |s: &str| {
            Push::new(
                pushes::OBJECT,
                Value::String(format!("{{\"live\":\"{s}\"}}")),
            )
        };
        let got = encoded(|p, dst| {
            p.encode_push(&live("before login"), dst).unwrap();
            let mut src = BytesMut::from(&b"{\"msgid\":1,\"id\":13,\"password\":\"pw\"}"[..]);
            let Ok(Some(Decoded::Call(call))) = p.decode(&mut src) else {
                panic!("a login call")
            };
            p.encode_push(&live("during login"), dst).unwrap();
            p.encode_push(&Push::new("presence", json!({"user": "x"})), dst)
                .unwrap();
            let (ack, _) = login_ack(13, "gus", vec![], &[], &[]);
            p.encode_reply(
                &Reply::ok(call.id, Some(apis::LOGIN.into()), Value::String(ack)),
                dst,
            )
            .unwrap();
            p.encode_push(&live("after the answer"), dst).unwrap();
            p.encode_push(
                &Push::new(pushes::OFFLINE, Value::String("{\"offline\":1}".into())),
                dst,
            )
            .unwrap();
            p.encode_push(&Push::new(pushes::RELEASE, Value::Null), dst)
                .unwrap();
            p.encode_push(&live("later"), dst).unwrap();
        });
        let expected = [
            json!({"live": "before login"}),
            json!({"msgid":2,"errno":0,"id":13,"name":"gus","offlinemsg":[],"friends":[],"groups":[]}),
            json!({"offline": 1}),
            json!({"live": "during login"}),
            json!({"live": "after the answer"}),
            json!({"live": "later"}),
        ];
        assert_eq!(got, expected);
        // A failed login releases at once (no offline messages follow).
        let got = encoded(|p, dst| {
            let mut src = BytesMut::from(&b"{\"msgid\":1,\"id\":13}"[..]);
            let Ok(Some(Decoded::Reply(reply))) = p.decode(&mut src) else {
                panic!("an immediate answer")
            };
            p.encode_push(&live("x"), dst).unwrap();
            p.encode_reply(&reply, dst).unwrap();
            p.encode_push(&live("y"), dst).unwrap();
        });
        assert_eq!(
            got,
            [
                json!({"msgid":2,"errno":1,"errmsg":"id or password is invalid!"}),
                json!({"live":"x"}),
                json!({"live":"y"})
            ]
        );
    }

    proptest! {
        /// However a stream of objects is cut into reads, the framer yields
        /// the same objects as when it arrives in one piece.
        #[test]
        fn framing_does_not_depend_on_read_boundaries(
            texts in proptest::collection::vec("[a-z{}\\[\\]\"\\\\ 你]{0,12}", 1..6),
            cuts in proptest::collection::vec(0usize..200, 0..8),
            nul in any::<bool>(),
        ) {
            let objects: Vec<String> = texts.iter().map(|t| json!({"msgid": 6, "msg": t, "n": [1, {"k": t}]}).to_string()).collect();
            let sep: &[u8] = if nul { b"\0" } else { b" \n" };
            let stream: Vec<u8> = objects.iter().flat_map(|o| o.bytes().chain(sep.iter().copied())).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&stream[at..c]);
                at = c;
            }
            chunks.push(&stream[at..]);
            let (got, err) = frame(&chunks, 64 * 1024);
            prop_assert_eq!(err, None);
            prop_assert_eq!(got, objects);
        }
    }

    /// homer's conformance check for any protocol: any bytes cut anywhere
    /// never panic nor buffer past the limit; the sample (strings holding
    /// braces, quotes and CJK, NUL and blank separators) decodes the same at
    /// every cut. (An object over the limit closes the connection: tested
    /// above.)
    #[test]
    fn conforms() {
        let objects = [
            r#"{"msgid":1,"id":1,"password":"p"}"#,
            r#"{"msgid":6,"msg":"a \"}\" b{[","n":[1,{"k":"]"}]}"#,
            "{\"msgid\":6,\"msg\":\"你好\"}",
        ];
        let mut sample = Vec::new();
        for (i, o) in objects.iter().enumerate() {
            sample.extend_from_slice(o.as_bytes());
            sample.extend_from_slice(if i % 2 == 0 { b"\0" } else { b" \n" });
        }
        sample.extend_from_slice(br#"{"msgid":3}"#);
        homer::testing::check_protocol(|| MsgidJson::new(128), &sample, 128);
    }
}
