//! The token-json protocol (PROTOCOL.md §4): the C++ "cluster-chat-server"
//! (`xqt1234/cluster-chat-server`) and its terminal client. JSON objects
//! with a numeric `msgid`, a `token` and a `data` object; no framing.
//!
//! # Wire format (TCP, default 127.0.0.1:9998)
//!
//! No length prefix, no terminator: the client writes each request with one
//! `send`, and reads each answer with one `recv` of at most 1024 bytes,
//! parsing what it got as one JSON object. The decoder finds where an object
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
//!  server → client (each object in its own write, no terminator):
//!  +-----------------------------------------------------------------------------+
//!  | {"msgid":1001,"code":0,"timestamp":1733500000000,"message":"OK","data":{…}}  |  < 1024 bytes where it can
//!  +-----------------------------------------------------------------------------+
//!  errors: {"msgid":5001,"code":<error code>,"timestamp":<ms>,"message":"...","data":{}}
//! ```
//!
//! `timestamp` is milliseconds since the Unix epoch (the server's clock);
//! `version` is not checked. Every request except login (1000) and register
//! (1100) needs the `token` of the connection's login: a missing one, an
//! expired or unknown one get error 1005, another user's 1004. The table of
//! messages and error codes is PROTOCOL.md §4 (the one copy of it).
//!
//! # Bad input
//!
//! Bytes where an object must start that are not `{`, and an object over the
//! frame limit, close the connection (the stream cannot be resynchronised).
//! A balanced `{…}` that is not JSON (a raw NUL or newline inside a string,
//! say) is answered with error 100 and the connection goes on; a request
//! without a numeric `msgid` gets 103, one whose `data` is not an object
//! 4003, one whose fields have the wrong types 102 (login: 1001).

use bytes::{BufMut, BytesMut};
use homer::{ApiError, Call, Decoded, Limits, MakeProtocol, Protocol, ProtocolError, Push, Reply};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use tokio_util::codec::Decoder;

use super::api::{Dest, LoginParams, SendParams};
use super::msgid_json::ObjectFramer;
use super::{Hold, apis, pushes};

/// The protocol's name ([`homer::Connection::protocol`]).
pub(crate) const NAME: &str = "token-json";

/// What the client reads at once: one `recv` of 1024 bytes, parsed as one
/// object (`src/client/clientNet.cpp`, `ClientNet::recvmsg`).
pub(crate) const CLIENT_READ: usize = 1024;

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

/// Params of `legacy.token.login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenParams {
    pub(crate) token: String,
}

/// Params of `legacy.token.register`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterParams {
    pub(crate) name: String,
    pub(crate) password: String,
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
pub(crate) fn private_chat(text: &str, fromid: u64, ts: u64) -> String {
    let data = json!({"msg": text, "msgid": MSG_PRIVATE_CHAT_ACK, "fromid": fromid});
    response(MSG_PRIVATE_CHAT_ACK, ts, &data)
}

/// A message of group `groupid` (0: the lobby) from user `userid`, as a
/// member gets it live: 4101 with `data` `{"msg","msgid":4101,"groupid","userid"}`.
pub(crate) fn group_chat(text: &str, groupid: u64, userid: u64, ts: u64) -> String {
    let data = json!({"msg": text, "msgid": MSG_GROUP_CHAT_ACK, "groupid": groupid, "userid": userid});
    response(MSG_GROUP_CHAT_ACK, ts, &data)
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
pub(crate) fn login_data(mut data: Map<String, Value>, offline: Vec<String>) -> (Value, Vec<String>) {
    // The answer's size with an empty `offlinemsg` and a 13-digit time stamp.
    data.insert("offlinemsg".to_owned(), Value::Array(Vec::new()));
    let base = response(MSG_LOGIN_ACK, 1_000_000_000_000, &Value::Object(data.clone())).len();
    let mut room = CLIENT_READ.saturating_sub(base);
    let mut carried = Vec::new();
    let mut rest = Vec::new();
    for live in offline {
        let entry = offline_entry(&live);
        let cost = entry
            .as_ref()
            .map_or(usize::MAX, |e| e.to_string().len() + usize::from(!carried.is_empty()));
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
        let token = object.get("token").and_then(Value::as_str).map(str::to_owned);
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
        let api = if msgid == MSG_LOGIN { apis::LOGIN } else { NO_API };
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
            None => Request::Refuse(apis::TOKEN_LOGIN, err::TOKEN_EXPIRED, "没有token消息".into()),
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

/// `object`, in its own write.
fn put_object(dst: &mut BytesMut, object: &str) {
    dst.reserve(object.len());
    dst.put_slice(object.as_bytes());
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
            put_object(dst, &object);
        }
        if login {
            self.hold.login_answered(reply.result.is_ok(), dst);
        }
        Ok(())
    }

    fn encode_push(&mut self, push: &Push, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match (push.kind(), push.content().as_str()) {
            (pushes::OBJECT, Some(object)) => self.hold.write(object.as_bytes(), dst),
            (pushes::OFFLINE, Some(object)) => put_object(dst, object),
            (pushes::RELEASE, _) => self.hold.release_seen(dst),
            _ => {} // no shape in this protocol: presence, group events, ...
        }
        Ok(())
    }

    fn write_each_message(&self) -> bool {
        true
    }

    fn idle_timeout(&self) -> Option<std::time::Duration> {
        Some(super::IDLE)
    }
}
