//! The token-json protocol (PROTOCOL.md §5): the C++ "cluster-chat-server"
//! (`xqt1234/cluster-chat-server`) and its terminal client. JSON objects
//! with a numeric `msgid`, a `token` and a `data` object; no framing.
//!
//! # Wire format (TCP, default 127.0.0.1:9998)
//!
//! No length prefix, no terminator: the client writes each request with one
//! `send`, and reads each answer with one `recv` of at most 1024 bytes,
//! parsing what it got as one JSON object (nlohmann's parser, for which a NUL
//! ends the input). So the server writes each answer as one 1024-byte record
//! ([`put_record`]), and long texts in parts. The decoder finds where an object
//! ends itself (msgid-json's [`ObjectFramer`]), so requests may arrive back
//! to back, split across reads, or separated by whitespace.
//!
//! ```text
//!  client → server (any chunking):
//!  +------------------------------------------------------------------------------+----------+
//!  | {"data":{"password":"pw","userid":7},"msgid":1000,"token":"","version":"1.0"} | {...}    | ...
//!  +------------------------------------------------------------------------------+----------+
//!    one object, UTF-8 JSON, at most the frame limit (64 KiB); whitespace between objects
//!
//!  server → client (records of exactly 1024 bytes, each in its own write):
//!  +-----------------------------------------------------------------------------+-------------+
//!  | {"msgid":1001,"code":0,"timestamp":1733500000000,"message":"OK","data":{…}}  | 00 00 … 00  |
//!  +-----------------------------------------------------------------------------+-------------+
//!  errors: {"msgid":5001,"code":<error code>,"timestamp":<ms>,"message":"...","data":{}}
//! ```
//!
//! `timestamp` is milliseconds since the Unix epoch (the server's clock);
//! `version` is not checked. Every request except login (1000) and register
//! (1100) needs the `token` of the connection's login: a missing one, an
//! expired or unknown one get error 1005, another user's 1004. The table of
//! messages and error codes is PROTOCOL.md §5 (the one copy of it).
//!
//! # Bad input
//!
//! Bytes where an object must start that are not `{`, and an object over the
//! frame limit, close the connection (the stream cannot be resynchronised).
//! A balanced `{…}` that is not JSON (a raw NUL or newline inside a string,
//! say) is answered with error 100 and the connection goes on; a request
//! without a numeric `msgid` gets 103, one whose `data` is not an object
//! 4003, one whose fields have the wrong types 102 (login: 1001).

use bytes::BytesMut;
use homer::{ApiError, Call, Decoded, Limits, MakeProtocol, Protocol, ProtocolError, Push, Reply};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio_util::codec::Decoder;

use super::api::{Dest, LoginParams, SendParams};
use super::msgid_json::ObjectFramer;
use super::{CLIENT_READ, Hold, apis, fit_text, put_record};

/// The protocol's name ([`homer::Connection::protocol`]).
pub(crate) const NAME: &str = "token-json";

// Message ids (`src/public.h`, `enum class MsgType`).
pub(crate) const MSG_LOGIN: u64 = 1000;
pub(crate) const MSG_LOGIN_ACK: u64 = 1001;
pub(crate) const MSG_LOGIN_BY_TOKEN: u64 = 1004;
pub(crate) const MSG_REGISTER: u64 = 1100;
pub(crate) const MSG_ADD_FRIEND: u64 = 2000;
pub(crate) const MSG_ADD_FRIEND_ACK: u64 = 2001;
pub(crate) const MSG_CREATE_GROUP: u64 = 3000;
pub(crate) const MSG_CREATE_GROUP_ACK: u64 = 3001;
pub(crate) const MSG_JOIN_GROUP: u64 = 3100;
pub(crate) const MSG_JOIN_GROUP_ACK: u64 = 3101;
pub(crate) const MSG_PRIVATE_CHAT: u64 = 4000;
pub(crate) const MSG_PRIVATE_CHAT_ACK: u64 = 4001;
pub(crate) const MSG_GROUP_CHAT: u64 = 4100;
pub(crate) const MSG_GROUP_CHAT_ACK: u64 = 4101;
pub(crate) const MSG_ERROR: u64 = 5001;
pub(crate) const MSG_HEARTBEAT: u64 = 5002;
pub(crate) const MSG_HEARTBEAT_ACK: u64 = 5003;

/// Error codes (`src/public.h`, `enum class ErrType`): the `code` of a
/// msgid 5001 answer.
pub(crate) mod err {
    pub(crate) const SYSTEM_ERROR: u64 = 1;
    pub(crate) const SERVICE_UNAVAILABLE: u64 = 4;
    pub(crate) const INVALID_REQUEST: u64 = 100;
    pub(crate) const INVALID_PARAMS: u64 = 102;
    pub(crate) const PARAM_TYPE_ERROR: u64 = 103;
    pub(crate) const USER_NOT_EXIST: u64 = 1001;
    pub(crate) const NOT_LOGGED_IN: u64 = 1004;
    pub(crate) const TOKEN_EXPIRED: u64 = 1005;
    pub(crate) const USERNAME_EXISTS: u64 = 1006;
    pub(crate) const REGISTER_FAILED: u64 = 1007;
    pub(crate) const FRIEND_ALREADY_EXISTS: u64 = 2001;
    pub(crate) const FRIEND_NOT_EXIST: u64 = 2003;
    pub(crate) const GROUP_NOT_EXIST: u64 = 3001;
    pub(crate) const NO_JOIN_PERMISSION: u64 = 3002;
    pub(crate) const NOT_GROUP_MEMBER: u64 = 3004;
    pub(crate) const SEND_FAILED: u64 = 4002;
    pub(crate) const MESSAGE_EMPTY: u64 = 4003;
    pub(crate) const CHAT_TOO_FREQUENT: u64 = 4004;
    pub(crate) const MESSAGE_TOO_LONG: u64 = 4005;
}

/// The `code` of the [`ChatError`](crate::error::ChatError)s the token
/// checks report (see `api::token_json`), so that the encoder can map them.
pub(crate) mod codes {
    /// No `token` in a request that needs one (1005, as the original).
    pub(crate) const NO_TOKEN: &str = "no_token";
    /// The token is unknown, revoked or past its lifetime (1005).
    pub(crate) const TOKEN_EXPIRED: &str = "token_expired";
    /// The token is another user's than the connection's login (1004).
    pub(crate) const WRONG_TOKEN: &str = "wrong_token";
    /// A private message to someone who is not a friend (2003).
    pub(crate) const NOT_FRIEND: &str = "not_friend";
}

/// Makes [`TokenJson`] with the server's frame limit.
pub(crate) fn make() -> impl MakeProtocol<Protocol = TokenJson> {
    |limits: &Limits| TokenJson::new(limits.max_frame_size())
}

// ---------------------------------------------------------------------------
// What clients send in `data` (extra fields are ignored, as the original
// server does; the client's `userid` of a private message is never trusted).

#[derive(Deserialize)]
struct Login {
    userid: u64,
    password: String,
}

#[derive(Deserialize)]
struct Register {
    username: String,
    password: String,
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
struct JoinGroup {
    groupid: u64,
}

#[derive(Deserialize)]
struct PrivateChat {
    toid: u64,
    msg: String,
}

#[derive(Deserialize)]
struct GroupChat {
    groupid: u64,
    msg: String,
}

/// Params of `legacy.token.login`; `Debug` shows no token.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenParams {
    pub(crate) token: String,
}

impl std::fmt::Debug for TokenParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenParams")
            .field("token", &crate::wire::Redacted)
            .finish()
    }
}

/// Params of `legacy.token.register`; `Debug` shows no password.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterParams {
    pub(crate) name: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for RegisterParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisterParams")
            .field("name", &self.name)
            .field("password", &crate::wire::Redacted)
            .finish()
    }
}

// ---------------------------------------------------------------------------
// What the server writes.

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `{"msgid","code":0,"timestamp","message":"OK","data"}`: the original's
/// `buildResponse`.
pub(crate) fn response(msgid: u64, timestamp: u64, data: &Value) -> String {
    json!({"msgid": msgid, "code": 0, "timestamp": timestamp, "message": "OK", "data": data})
        .to_string()
}

/// `{"msgid":5001,"code","timestamp","message","data":{}}`: the original's
/// `buildErrorResponse`.
pub(crate) fn error(code: u64, message: &str) -> String {
    json!({"msgid": MSG_ERROR, "code": code, "timestamp": now_ms(), "message": message, "data": {}})
        .to_string()
}

/// A private message from user `fromid`, as the recipient gets it live: 4001
/// with `data` `{"msg","msgid":4001,"fromid"}`.
/// A text too long for one record comes in parts, in order.
pub(crate) fn private_chat(text: &str, fromid: u64, ts: u64) -> Vec<String> {
    in_parts(text, |msg| {
        let data = json!({"msg": msg, "msgid": MSG_PRIVATE_CHAT_ACK, "fromid": fromid});
        response(MSG_PRIVATE_CHAT_ACK, ts, &data)
    })
}

/// A message of group `groupid` (0: the lobby) from user `userid`, as a
/// member gets it live: 4101 with `data` `{"msg","msgid":4101,"groupid","userid"}`.
/// A text too long for one record comes in parts, in order.
pub(crate) fn group_chat(text: &str, groupid: u64, userid: u64, ts: u64) -> Vec<String> {
    in_parts(text, |msg| {
        let data =
            json!({"msg": msg, "msgid": MSG_GROUP_CHAT_ACK, "groupid": groupid, "userid": userid});
        response(MSG_GROUP_CHAT_ACK, ts, &data)
    })
}

/// `object(text)`, or `object` of each part of `text` when one object would
/// not fit a record ([`put_record`]).
fn in_parts(text: &str, object: impl Fn(&str) -> String) -> Vec<String> {
    let overhead = object("").len();
    fit_text(text, (CLIENT_READ - 1).saturating_sub(overhead))
        .into_iter()
        .map(object)
        .collect()
}

/// The `offlinemsg` entry for a live object of [`private_chat`] or
/// [`group_chat`]: its `data` (what the original server stores), and for a
/// private message also a `data` inside it with the text and the sender's
/// number as a string, which is where the client looks
/// (`ClientService::setState`: `item["data"].value("msg")`,
/// `value("userid", "")`). `None` for anything else.
fn offline_entry(live: &str) -> Option<Value> {
    let mut v: Value = serde_json::from_str(live).ok()?;
    let mut data = v.get_mut("data")?.take();
    if data.get("msgid").and_then(Value::as_u64) == Some(MSG_PRIVATE_CHAT_ACK) {
        let from = data.get("fromid").and_then(Value::as_u64).unwrap_or(0);
        let inner = json!({"msg": data.get("msg"), "fromid": from, "userid": from.to_string()});
        if let Some(o) = data.as_object_mut() {
            o.insert("data".to_owned(), inner);
        }
    }
    Some(data)
}

/// The `data` of a login answer (1001), with as many of `offline` (live
/// objects of waiting messages, oldest first) in `offlinemsg` as keep the
/// whole answer within [`CLIENT_READ`] bytes; and the rest, to write after
/// it in order as live objects.
pub(crate) fn login_data(
    mut data: Map<String, Value>,
    offline: Vec<String>,
) -> (Value, Vec<String>) {
    // The answer's size with an empty `offlinemsg` and a 13-digit time stamp.
    data.insert("offlinemsg".to_owned(), Value::Array(Vec::new()));
    let base = response(
        MSG_LOGIN_ACK,
        1_000_000_000_000,
        &Value::Object(data.clone()),
    )
    .len();
    let mut room = (CLIENT_READ - 1).saturating_sub(base);
    let mut carried = Vec::new();
    let mut rest = Vec::new();
    for live in offline {
        let entry = offline_entry(&live);
        let cost = entry.as_ref().map_or(usize::MAX, |e| {
            e.to_string().len() + usize::from(!carried.is_empty())
        });
        match entry {
            Some(e) if rest.is_empty() && cost <= room => {
                room -= cost;
                carried.push(e);
            }
            _ => rest.push(live),
        }
    }
    data.insert("offlinemsg".to_owned(), Value::Array(carried));
    (Value::Object(data), rest)
}

/// The error code and message a failed call answers with.
fn error_of(api: Option<&str>, e: &ApiError) -> (u64, String) {
    let code = match (e.status(), e.code()) {
        (_, codes::NO_TOKEN | codes::TOKEN_EXPIRED) => err::TOKEN_EXPIRED,
        (_, codes::WRONG_TOKEN | "not_logged_in") => err::NOT_LOGGED_IN,
        (_, codes::NOT_FRIEND) => err::FRIEND_NOT_EXIST,
        (_, "friend_exists") => err::FRIEND_ALREADY_EXISTS,
        (_, "no_such_user" | "bad_credentials") => err::USER_NOT_EXIST,
        (_, "no_such_group") => err::GROUP_NOT_EXIST,
        (_, "not_member") => err::NOT_GROUP_MEMBER,
        (_, "name_taken") => err::USERNAME_EXISTS,
        (_, "empty") => err::MESSAGE_EMPTY,
        (_, "invalid_request") => err::INVALID_REQUEST,
        (_, "param_type_error") => err::PARAM_TYPE_ERROR,
        (413, _) => err::MESSAGE_TOO_LONG,
        (429, _) => err::CHAT_TOO_FREQUENT,
        (503, _) => err::SERVICE_UNAVAILABLE,
        (400, _) if api == Some(apis::TOKEN_REGISTER) => err::REGISTER_FAILED,
        (400 | 409, _) => err::INVALID_PARAMS,
        (403, _) if api == Some(apis::SEND) => err::SEND_FAILED,
        (403, _) => err::NO_JOIN_PERMISSION,
        _ => err::SYSTEM_ERROR,
    };
    // The original's wording for a failed login.
    let message = if code == err::USER_NOT_EXIST && api == Some(apis::LOGIN) {
        "不存在该用户或者密码错误".to_owned()
    } else {
        e.message().to_owned()
    };
    (code, message)
}

// ---------------------------------------------------------------------------
// The protocol.

/// The token-json [`Protocol`] for one connection.
#[derive(Debug)]
pub(crate) struct TokenJson {
    framer: ObjectFramer,
    next_id: u64,
    hold: Hold,
}

/// What one request becomes.
enum Request {
    /// A call of `api` with these params (`token` added when there is one).
    Call(&'static str, Value),
    /// Answered at once with this error.
    Refuse(&'static str, u64, String),
}

impl TokenJson {
    /// Objects of at most `max_frame` bytes.
    pub(crate) fn new(max_frame: usize) -> Self {
        TokenJson {
            framer: ObjectFramer::new(max_frame),
            next_id: 0,
            hold: Hold::default(),
        }
    }

    /// The call for one request object.
    fn translate(&mut self, object: Value) -> Decoded {
        let token = object
            .get("token")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let request = request(object, token.as_deref());
        self.next_id += 1;
        match request {
            Request::Call(api, mut params) => {
                if api == apis::LOGIN || api == apis::TOKEN_LOGIN {
                    self.hold.login_sent();
                }
                if let (Some(token), Some(p)) = (token, params.as_object_mut())
                    && api != apis::LOGIN
                    && api != apis::TOKEN_REGISTER
                    && api != apis::TOKEN_LOGIN
                {
                    p.insert("token".to_owned(), Value::String(token));
                }
                Decoded::Call(Call::new(self.next_id, api, params))
            }
            Request::Refuse(api, code, message) => {
                if api == apis::LOGIN || api == apis::TOKEN_LOGIN {
                    self.hold.login_sent();
                }
                Decoded::Reply(Reply::error(
                    Value::from(self.next_id),
                    Some(api.to_owned()),
                    ApiError::bad_request(code_name(code), message),
                ))
            }
        }
    }
}

/// The `ApiError` code an immediate refusal carries, which [`error_of`]
/// turns back into `code`.
fn code_name(code: u64) -> &'static str {
    match code {
        err::USER_NOT_EXIST => "no_such_user",
        err::TOKEN_EXPIRED => codes::NO_TOKEN,
        err::MESSAGE_EMPTY => "empty",
        err::INVALID_REQUEST => "invalid_request",
        err::PARAM_TYPE_ERROR => "param_type_error",
        _ => "bad_params",
    }
}

/// The pseudo-API of requests answered by the protocol itself.
const NO_API: &str = "legacy.token.none";

fn request(object: Value, token: Option<&str>) -> Request {
    let Some(msgid) = object.get("msgid").and_then(Value::as_u64) else {
        return Request::Refuse(NO_API, err::PARAM_TYPE_ERROR, "消息类型错误".into());
    };
    let data = object.get("data").cloned().unwrap_or(Value::Null);
    if msgid == MSG_HEARTBEAT {
        return Request::Call(apis::HEARTBEAT, json!({}));
    }
    if !data.is_object() && msgid != MSG_LOGIN_BY_TOKEN {
        let api = if msgid == MSG_LOGIN {
            apis::LOGIN
        } else {
            NO_API
        };
        return Request::Refuse(api, err::MESSAGE_EMPTY, "没有有效数据".into());
    }
    fn parse<T: serde::de::DeserializeOwned>(data: Value) -> Result<T, String> {
        serde_json::from_value(data).map_err(|e| format!("用户参数错误: {e}"))
    }
    let bad = |api: &'static str, e: String| Request::Refuse(api, err::INVALID_PARAMS, e);
    match msgid {
        MSG_LOGIN => match parse::<Login>(data) {
            Ok(l) => Request::Call(
                apis::LOGIN,
                json!(LoginParams {
                    number: l.userid,
                    password: l.password
                }),
            ),
            Err(_) => Request::Refuse(
                apis::LOGIN,
                err::USER_NOT_EXIST,
                "不存在该用户或者密码错误".into(),
            ),
        },
        MSG_LOGIN_BY_TOKEN => match token.filter(|t| !t.is_empty()) {
            Some(t) => Request::Call(apis::TOKEN_LOGIN, json!(TokenParams { token: t.into() })),
            None => Request::Refuse(
                apis::TOKEN_LOGIN,
                err::TOKEN_EXPIRED,
                "没有token消息".into(),
            ),
        },
        MSG_REGISTER => match parse::<Register>(data) {
            Ok(r) => Request::Call(
                apis::TOKEN_REGISTER,
                json!(RegisterParams {
                    name: r.username,
                    password: r.password
                }),
            ),
            Err(e) => Request::Refuse(apis::TOKEN_REGISTER, err::REGISTER_FAILED, e),
        },
        MSG_ADD_FRIEND => match parse::<AddFriend>(data) {
            Ok(f) => Request::Call(apis::TOKEN_ADD_FRIEND, json!({"number": f.friendid})),
            Err(e) => bad(apis::TOKEN_ADD_FRIEND, e),
        },
        MSG_CREATE_GROUP => match parse::<CreateGroup>(data) {
            Ok(g) => Request::Call(
                apis::TOKEN_CREATE_GROUP,
                json!({"name": g.groupname, "desc": g.groupdesc}),
            ),
            Err(e) => bad(apis::TOKEN_CREATE_GROUP, e),
        },
        MSG_JOIN_GROUP => match parse::<JoinGroup>(data) {
            Ok(g) => Request::Call(apis::TOKEN_JOIN_GROUP, json!({"number": g.groupid})),
            Err(e) => bad(apis::TOKEN_JOIN_GROUP, e),
        },
        MSG_PRIVATE_CHAT => match parse::<PrivateChat>(data) {
            Ok(m) => Request::Call(
                apis::SEND,
                json!(SendParams {
                    to: Dest::User(m.toid),
                    text: m.msg
                }),
            ),
            Err(e) => bad(apis::SEND, e),
        },
        MSG_GROUP_CHAT => match parse::<GroupChat>(data) {
            Ok(m) => Request::Call(
                apis::SEND,
                json!(SendParams {
                    to: Dest::Group(m.groupid),
                    text: m.msg
                }),
            ),
            Err(e) => bad(apis::SEND, e),
        },
        _ => Request::Refuse(NO_API, err::PARAM_TYPE_ERROR, "参数类型错误".into()),
    }
}

impl Protocol for TokenJson {
    fn name(&self) -> &'static str {
        NAME
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        let Some(frame) = self.framer.decode(src)? else {
            return Ok(None);
        };
        Ok(Some(match serde_json::from_slice::<Value>(&frame) {
            Ok(object) => self.translate(object),
            // Balanced braces, so the stream is still in step: answer as the
            // original does ("json解析失败") and go on.
            Err(e) => {
                self.next_id += 1;
                Decoded::Reply(Reply::error(
                    Value::from(self.next_id),
                    Some(NO_API.to_owned()),
                    ApiError::bad_request(
                        code_name(err::INVALID_REQUEST),
                        format!("json解析失败: {e}"),
                    ),
                ))
            }
        }))
    }

    fn encode_reply(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let api = reply.api.as_deref();
        let login = matches!(api, Some(apis::LOGIN | apis::TOKEN_LOGIN));
        let object = match &reply.result {
            Err(e) => {
                let (code, message) = error_of(api, e);
                Some(error(code, &message))
            }
            Ok(data) => {
                let msgid = match api {
                    Some(apis::LOGIN | apis::TOKEN_LOGIN | apis::TOKEN_REGISTER) => {
                        Some(MSG_LOGIN_ACK)
                    }
                    Some(apis::TOKEN_ADD_FRIEND) => Some(MSG_ADD_FRIEND_ACK),
                    Some(apis::TOKEN_CREATE_GROUP) => Some(MSG_CREATE_GROUP_ACK),
                    Some(apis::TOKEN_JOIN_GROUP) => Some(MSG_JOIN_GROUP_ACK),
                    Some(apis::HEARTBEAT) => Some(MSG_HEARTBEAT_ACK),
                    _ => None, // a sent message: the original answers nothing
                };
                msgid.map(|m| {
                    let mut data = data.clone();
                    // A token login answers without the token, as the original.
                    if api == Some(apis::TOKEN_LOGIN)
                        && let Some(o) = data.as_object_mut()
                    {
                        o.remove("token");
                    }
                    response(m, now_ms(), &data)
                })
            }
        };
        if let Some(object) = object {
            put_record(dst, &object);
        }
        if login {
            self.hold.login_answered(reply.result.is_ok(), dst);
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

    /// Feed `chunks` one after the other; each item decoded as `api params`
    /// (params as compact JSON), or `error <code>` for an immediate answer;
    /// then `close: <why>` if decoding failed.
    fn decode_all(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut p = TokenJson::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match p.decode(&mut buf) {
                    Ok(Some(Decoded::Call(c))) => out.push(format!("{} {}", c.api, c.params)),
                    Ok(Some(Decoded::Reply(r))) => {
                        let code = match &r.result {
                            Err(e) => error_of(r.api.as_deref(), e).0,
                            Ok(_) => 0,
                        };
                        out.push(format!("error {code}"));
                    }
                    Ok(Some(other)) => out.push(format!("{other:?}")),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(format!("close: {e}"));
                        return out;
                    }
                }
            }
        }
        out
    }

    /// What the repository's client writes (nlohmann's `dump()`: compact,
    /// keys sorted): `ClientService::buildRequest` wraps `data`.
    fn client(msgid: u64, token: &str, data: &str) -> String {
        format!(r#"{{"data":{data},"msgid":{msgid},"token":"{token}","version":"1.0"}}"#)
    }

    #[test]
    fn every_request_becomes_its_call() {
        let check = |input: &str, expected: &[&str]| {
            assert_eq!(
                decode_all(&[input.as_bytes()], 64 * 1024),
                expected,
                "{input}"
            );
        };
        check(
            &client(1000, "", r#"{"password":"pw","userid":7}"#),
            &[r#"legacy.login {"number":7,"password":"pw"}"#],
        );
        check(
            &client(1004, "T1", r#"{"device":"pc","token":"T1"}"#),
            &[r#"legacy.token.login {"token":"T1"}"#],
        );
        check(
            &client(1100, "", r#"{"password":"pw","username":"张三"}"#),
            &[r#"legacy.token.register {"name":"张三","password":"pw"}"#],
        );
        check(
            &client(2000, "T1", r#"{"friendid":8}"#),
            &[r#"legacy.token.friend.add {"number":8,"token":"T1"}"#],
        );
        check(
            &client(3000, "T1", r#"{"groupdesc":"crabs","groupname":"rust"}"#),
            &[r#"legacy.token.group.create {"desc":"crabs","name":"rust","token":"T1"}"#],
        );
        check(
            &client(3100, "T1", r#"{"groupid":2}"#),
            &[r#"legacy.token.group.join {"number":2,"token":"T1"}"#],
        );
        // The client's `userid` is not trusted: it is not passed on.
        check(
            &client(4000, "T1", r#"{"msg":"hi","toid":8,"userid":999}"#),
            &[r#"legacy.send {"text":"hi","to":{"user":8},"token":"T1"}"#],
        );
        check(
            &client(4100, "T1", r#"{"groupid":2,"msg":"hi all"}"#),
            &[r#"legacy.send {"text":"hi all","to":{"group":2},"token":"T1"}"#],
        );
        // The heartbeat's `data` is null (a default-constructed json).
        check(
            &client(5002, "T1", "null"),
            &[r#"legacy.token.heartbeat {"token":"T1"}"#],
        );
        // No token: the call goes on without one (the server answers 1005);
        // a token login without one is answered at once.
        check(
            r#"{"msgid":4000,"data":{"toid":8,"msg":"hi"}}"#,
            &[r#"legacy.send {"text":"hi","to":{"user":8}}"#],
        );
        check(
            &client(1004, "", r#"{"device":"pc","token":""}"#),
            &["error 1005"],
        );
    }

    #[test]
    fn malformed_requests_get_the_protocols_errors() {
        let check = |input: &[u8], expected: &[&str]| {
            assert_eq!(
                decode_all(&[input], 64 * 1024),
                expected,
                "{}",
                String::from_utf8_lossy(input)
            );
        };
        let heartbeat = client(5002, "T", "null");
        // A raw NUL (or newline) inside a string is not JSON: error 100, and
        // the next request still decodes.
        check(
            format!("{{\"msgid\":4000,\"data\":{{\"msg\":\"a\0b\"}}}}{heartbeat}").as_bytes(),
            &["error 100", r#"legacy.token.heartbeat {"token":"T"}"#],
        );
        check(
            b"{\"msgid\":4000,\"data\":{\"msg\":\"a\nb\"}}",
            &["error 100"],
        );
        check(b"{\"msgid\":1000,}", &["error 100"]);
        // No numeric msgid, an unknown one: 103.
        check(
            br#"{"data":{}}{"msgid":"1000","data":{}}{"msgid":-1}"#,
            &["error 103"; 3],
        );
        check(br#"{"msgid":1234,"token":"T","data":{}}"#, &["error 103"]);
        // `data` not an object: 4003.
        check(
            br#"{"msgid":4000,"token":"T","data":"hi"}"#,
            &["error 4003"],
        );
        check(br#"{"msgid":1000,"token":""}"#, &["error 4003"]);
        // Fields of the wrong types: 102; for a login 1001, for a
        // registration 1007.
        check(
            client(4000, "T", r#"{"toid":"8","msg":"hi"}"#).as_bytes(),
            &["error 102"],
        );
        check(
            client(3100, "T", r#"{"groupid":-2}"#).as_bytes(),
            &["error 102"],
        );
        check(
            client(1000, "", r#"{"userid":"7","password":"pw"}"#).as_bytes(),
            &["error 1001"],
        );
        check(
            client(1100, "", r#"{"username":"gus"}"#).as_bytes(),
            &["error 1007"],
        );
    }

    #[test]
    fn objects_are_found_across_split_and_coalesced_reads() {
        let login = client(1000, "", r#"{"password":"p}\"{w","userid":7}"#);
        let chat = client(4000, "T", r#"{"msg":"你好 }","toid":8,"userid":7}"#);
        let expected = [
            r#"legacy.login {"number":7,"password":"p}\"{w"}"#,
            r#"legacy.send {"text":"你好 }","to":{"user":8},"token":"T"}"#,
        ];
        // Coalesced, with and without whitespace between.
        for sep in ["", " \r\n\t"] {
            let both = format!("{login}{sep}{chat}");
            assert_eq!(decode_all(&[both.as_bytes()], 4096), expected);
        }
        // Split anywhere, even byte by byte (inside a UTF-8 character too).
        let stream = format!("{login}{chat}");
        for cut in 1..stream.len() {
            let (a, b) = stream.as_bytes().split_at(cut);
            assert_eq!(decode_all(&[a, b], 4096), expected, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = stream.as_bytes().chunks(1).collect();
        assert_eq!(decode_all(&bytes, 4096), expected);
    }

    #[test]
    fn garbage_and_endless_objects_close() {
        let check = |chunks: &[&[u8]], max: usize, expected: &[&str]| {
            let got = decode_all(chunks, max);
            assert_eq!(got.len(), expected.len(), "{got:?}");
            for (g, e) in got.iter().zip(expected) {
                assert!(g.contains(e), "{g} does not contain {e}");
            }
        };
        check(
            &[b"GET / HTTP/1.1\r\n"],
            1024,
            &["close: invalid frame: expected a JSON object starting with `{`, found byte 0x47"],
        );
        check(&[b"\x00\x01\x02"], 1024, &["found byte 0x01"]);
        let heartbeat = client(5002, "T", "null");
        check(
            &[heartbeat.as_bytes(), b"[1,2]"],
            1024,
            &["legacy.token.heartbeat", "found byte 0x5b"],
        );
        // JSON that never closes is refused once it passes the limit,
        // without waiting for more and without buffering past it.
        let endless = [
            b"{\"msgid\":4000,\"data\":{\"msg\":\"".as_slice(),
            &[b'x'; 100],
            &[b'x'; 100],
        ];
        check(&endless, 128, &["exceeds the 128-byte limit"]);
        let open = [b"{\"data\":".as_slice(), &[b'['; 200]];
        check(&open, 128, &["exceeds the 128-byte limit"]);
    }

    fn encoded(write: impl FnOnce(&mut TokenJson, &mut BytesMut)) -> Vec<Value> {
        let mut p = TokenJson::new(64 * 1024);
        let mut dst = BytesMut::new();
        write(&mut p, &mut dst);
        crate::legacy::records(&dst)
    }

    /// `v` without its `timestamp`, which must be a plausible time in ms.
    fn untimed(mut v: Value) -> Value {
        let ts = v["timestamp"].as_u64().expect("a timestamp");
        assert!(ts > 1_700_000_000_000, "milliseconds: {ts}");
        v.as_object_mut().expect("an object").remove("timestamp");
        v
    }

    #[test]
    fn answers_have_the_originals_shapes() {
        let check = |api: &str, result: Result<Value, ApiError>, expected: Option<Value>| {
            let reply = match result {
                Ok(v) => Reply::ok(json!(1), Some(api.into()), v),
                Err(e) => Reply::error(json!(1), Some(api.into()), e),
            };
            let got: Vec<Value> = encoded(|p, dst| p.encode_reply(&reply, dst).unwrap())
                .into_iter()
                .map(untimed)
                .collect();
            assert_eq!(got, expected.into_iter().collect::<Vec<_>>(), "{api}");
        };
        let ok = |msgid: u64, data: Value| {
            Some(json!({"msgid": msgid, "code": 0, "message": "OK", "data": data}))
        };
        let failed = |code: u64, message: &str| {
            Some(json!({"msgid": 5001, "code": code, "message": message, "data": {}}))
        };
        let data = json!({"userinfo": {"userid": 7, "username": "gus"}, "friends": [], "groups": [], "offlinemsg": [], "token": "T"});
        check(apis::LOGIN, Ok(data.clone()), ok(1001, data.clone()));
        let mut without = data.clone();
        without.as_object_mut().unwrap().remove("token");
        check(apis::TOKEN_LOGIN, Ok(data), ok(1001, without));
        let reg = json!({"userid": 7, "username": "gus", "token": "T"});
        check(apis::TOKEN_REGISTER, Ok(reg.clone()), ok(1001, reg));
        check(apis::HEARTBEAT, Ok(json!({})), ok(5003, json!({})));
        let friend = json!({"msg": "添加好友成功", "friendid": 8, "friendname": "ann"});
        check(apis::TOKEN_ADD_FRIEND, Ok(friend.clone()), ok(2001, friend));
        let group =
            json!({"msg": "创建群组成功", "groupid": 2, "groupname": "rust", "groupdesc": ""});
        check(
            apis::TOKEN_CREATE_GROUP,
            Ok(group.clone()),
            ok(3001, group.clone()),
        );
        check(apis::TOKEN_JOIN_GROUP, Ok(group.clone()), ok(3101, group));
        // A sent message has no answer; a failed one has.
        check(apis::SEND, Ok(json!({"id": "x"})), None);
        let err = |status: u16, code: &'static str| ApiError::new(status, code, "why");
        check(
            apis::SEND,
            Err(err(401, codes::NO_TOKEN)),
            failed(1005, "why"),
        );
        check(
            apis::SEND,
            Err(err(401, codes::TOKEN_EXPIRED)),
            failed(1005, "why"),
        );
        check(
            apis::SEND,
            Err(err(401, codes::WRONG_TOKEN)),
            failed(1004, "why"),
        );
        check(
            apis::SEND,
            Err(err(401, "not_logged_in")),
            failed(1004, "why"),
        );
        check(
            apis::SEND,
            Err(err(403, codes::NOT_FRIEND)),
            failed(2003, "why"),
        );
        check(
            apis::SEND,
            Err(err(404, "no_such_user")),
            failed(1001, "why"),
        );
        check(
            apis::SEND,
            Err(err(404, "no_such_group")),
            failed(3001, "why"),
        );
        check(apis::SEND, Err(err(403, "not_member")), failed(3004, "why"));
        check(apis::SEND, Err(err(403, "blocked")), failed(4002, "why"));
        check(apis::SEND, Err(err(400, "empty")), failed(4003, "why"));
        check(apis::SEND, Err(err(413, "too_large")), failed(4005, "why"));
        check(
            apis::SEND,
            Err(err(429, "rate_limited")),
            failed(4004, "why"),
        );
        check(apis::SEND, Err(err(503, "unavailable")), failed(4, "why"));
        check(apis::SEND, Err(err(500, "internal")), failed(1, "why"));
        check(
            apis::TOKEN_ADD_FRIEND,
            Err(err(409, "friend_exists")),
            failed(2001, "why"),
        );
        check(
            apis::TOKEN_REGISTER,
            Err(err(409, "name_taken")),
            failed(1006, "why"),
        );
        check(
            apis::TOKEN_REGISTER,
            Err(err(400, "bad_name")),
            failed(1007, "why"),
        );
        check(
            apis::LOGIN,
            Err(err(401, "bad_credentials")),
            failed(1001, "不存在该用户或者密码错误"),
        );
    }

    /// The one object of a short text.
    fn one(mut objects: Vec<String>) -> String {
        assert_eq!(objects.len(), 1, "{objects:?}");
        objects.remove(0)
    }

    #[test]
    fn long_texts_come_in_parts_that_each_fit_a_record() {
        let text = format!("{}{}", "界".repeat(400), "x".repeat(500));
        for parts in [private_chat(&text, 7, 5), group_chat(&text, 2, 7, 5)] {
            assert!(parts.len() > 1);
            let mut joined = String::new();
            for part in &parts {
                assert!(part.len() < CLIENT_READ, "{} bytes", part.len());
                let v: Value = serde_json::from_str(part).unwrap();
                joined.push_str(v["data"]["msg"].as_str().unwrap());
            }
            assert_eq!(joined, text);
        }
    }

    #[test]
    fn deliveries_and_offline_entries_have_the_originals_shapes() {
        let live: Value =
            serde_json::from_str(&one(private_chat("hi", 7, 1_733_500_000_000))).unwrap();
        assert_eq!(
            live,
            json!({"msgid": 4001, "code": 0, "timestamp": 1_733_500_000_000_u64, "message": "OK",
                   "data": {"msg": "hi", "msgid": 4001, "fromid": 7}})
        );
        let live: Value = serde_json::from_str(&one(group_chat("yo", 2, 7, 5))).unwrap();
        assert_eq!(
            live["data"],
            json!({"msg": "yo", "msgid": 4101, "groupid": 2, "userid": 7})
        );
        // Offline: what the original stores, and where its client reads.
        assert_eq!(
            offline_entry(&one(private_chat("hi", 7, 5))),
            Some(json!({"msg": "hi", "msgid": 4001, "fromid": 7,
                        "data": {"msg": "hi", "fromid": 7, "userid": "7"}}))
        );
        assert_eq!(
            offline_entry(&one(group_chat("yo", 2, 7, 5))),
            Some(json!({"msg": "yo", "msgid": 4101, "groupid": 2, "userid": 7}))
        );
    }

    #[test]
    fn login_answer_carries_what_fits_in_1024_bytes() {
        let mut data = Map::new();
        data.insert("userinfo".into(), json!({"userid": 7, "username": "gus"}));
        data.insert("token".into(), json!("t".repeat(120)));
        let offline: Vec<String> = (0..20)
            .map(|i| one(private_chat(&format!("{i:03} {}", "x".repeat(60)), 8, 5)))
            .collect();
        let (answer, rest) = login_data(data.clone(), offline.clone());
        let written = response(MSG_LOGIN_ACK, now_ms(), &answer);
        assert!(written.len() < CLIENT_READ, "{} bytes", written.len());
        let carried = answer["offlinemsg"].as_array().unwrap();
        assert!(!carried.is_empty() && !rest.is_empty());
        // In order, nothing lost, nothing twice.
        let texts: Vec<String> = carried
            .iter()
            .map(|e| e["msg"].as_str().unwrap().to_owned())
            .chain(rest.iter().map(|r| {
                serde_json::from_str::<Value>(r).unwrap()["data"]["msg"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            }))
            .collect();
        let sent: Vec<String> = (0..20)
            .map(|i| format!("{i:03} {}", "x".repeat(60)))
            .collect();
        assert_eq!(texts, sent);
        // A message too big for any answer follows, and so does what comes
        // after it (order is kept).
        let huge = response(
            MSG_PRIVATE_CHAT_ACK,
            5,
            &json!({"msg": "y".repeat(2000), "msgid": MSG_PRIVATE_CHAT_ACK, "fromid": 8}),
        );
        let (answer, rest) = login_data(data, vec![huge.clone(), offline[0].clone()]);
        assert_eq!(answer["offlinemsg"], json!([]));
        assert_eq!(rest, [huge, offline[0].clone()]);
    }

    #[test]
    fn pushes_wait_for_the_login_answer() {
        let live = |s: &str| {
            Push::new(
                pushes::OBJECT,
                Value::String(format!("{{\"live\":\"{s}\"}}")),
            )
        };
        let got = encoded(|p, dst| {
            let mut src =
                BytesMut::from(client(1000, "", r#"{"password":"pw","userid":7}"#).as_bytes());
            let Ok(Some(Decoded::Call(call))) = p.decode(&mut src) else {
                panic!("a login call")
            };
            p.encode_push(&live("during login"), dst).unwrap();
            p.encode_push(&Push::new("presence", json!({"user": "x"})), dst)
                .unwrap();
            p.encode_reply(
                &Reply::ok(call.id, Some(apis::LOGIN.into()), json!({"token": "T"})),
                dst,
            )
            .unwrap();
            p.encode_push(
                &Push::new(pushes::OFFLINE, Value::String("{\"offline\":1}".into())),
                dst,
            )
            .unwrap();
            p.encode_push(&Push::new(pushes::RELEASE, Value::Null), dst)
                .unwrap();
            p.encode_push(&live("later"), dst).unwrap();
        });
        assert_eq!(got.len(), 4, "{got:?}");
        assert_eq!(got[0]["msgid"], 1001);
        assert_eq!(
            &got[1..],
            [
                json!({"offline": 1}),
                json!({"live": "during login"}),
                json!({"live": "later"})
            ]
        );
    }

    /// homer's conformance check for any protocol: any bytes cut anywhere
    /// never panic nor buffer past the limit; the sample decodes the same at
    /// every cut.
    #[test]
    fn debug_shows_no_secrets() {
        let t = format!(
            "{:?}",
            TokenParams {
                token: "s3cret".into()
            }
        );
        let r = format!(
            "{:?}",
            RegisterParams {
                name: "gus".into(),
                password: "hunter2".into()
            }
        );
        assert!(!t.contains("s3cret") && t.contains("***"), "{t}");
        assert!(!r.contains("hunter2") && r.contains("gus"), "{r}");
    }

    #[test]
    fn conforms() {
        let mut sample = client(1000, "", r#"{"password":"p\"}","userid":1}"#).into_bytes();
        sample.extend_from_slice(b" \n");
        sample.extend_from_slice(client(4000, "T", r#"{"msg":"你好","toid":2}"#).as_bytes());
        sample.extend_from_slice(client(5002, "T", "null").as_bytes());
        homer::testing::check_protocol(|| TokenJson::new(256), &sample, 256);
    }
}
