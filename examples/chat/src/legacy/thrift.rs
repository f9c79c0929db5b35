//! The Thrift chat room (PROTOCOL.md §4): the Python "Thrift chat room"
//! course project's `service ChatServer`, plain Thrift RPC.
//!
//! # Wire format (TCP, default 127.0.0.1:9999)
//!
//! Buffered, unframed transport (no length prefix before a message) with the
//! strict binary protocol, as the project's client (`TBufferedTransport` +
//! `TBinaryProtocol`) speaks it. Integers are big-endian; a string is an
//! `i32` byte length and that many bytes of UTF-8.
//!
//! ```text
//!  client → server: a call
//!  +-------------+-------+--------+-------+------+-----+-------+---------------+------+
//!  | 80 01 00 01 | i32 n | name   | seqid | 0b   | 00  | i32 m | request JSON  | 00   |
//!  +-------------+-------+--------+-------+------+-----+-------+---------------+------+
//!   version|CALL  name (n ≤ 64 bytes)       field 1: STRING   (m bytes)        STOP
//!                                           (type 11, i16 id 1)
//!
//!  server → client: the reply (same name and seqid)
//!  +-------------+-------+--------+-------+------+-----+-------+---------------+------+
//!  | 80 01 00 02 | i32 n | name   | seqid | 0b   | 00  | i32 m | reply string  | 00   |
//!  +-------------+-------+--------+-------+------+-----+-------+---------------+------+
//!   version|REPLY                           field 0: STRING                    STOP
//!                                           (the result, i16 id 0)
//!
//!  server → client: an unknown method (TApplicationException)
//!  +-------------+-------+--------+-------+---------------------------+----------------+----+
//!  | 80 01 00 03 | i32 n | name   | seqid | 0b 00 01 "Unknown         | 08 00 02       | 00 |
//!  |             |       |        |       |   function <name>"        | 00 00 00 01    |    |
//!  +-------------+-------+--------+-------+---------------------------+----------------+----+
//!   version|EXCEPTION                       field 1: message           field 2: I32    STOP
//!                                                                      type 1 UNKNOWN_METHOD
//! ```
//!
//! Every method of the IDL is `string m(1: string request)`. The request is
//! JSON `{"uid": <the name typed at login>, "ip": <the client's own idea of
//! its address>, "data": {...}}`; every reply but `recv`'s is JSON
//! `{"status": 200|400, "content": "..."}`. What each method does is the
//! table of PROTOCOL.md §4.
//!
//! The decoder reads a message field by field as its bytes arrive, taking
//! them off the buffer as it goes (a string it skips is never held; the one
//! it keeps, the request, waits in the buffer until whole), and never looks
//! at a byte twice. Every length is checked before anything is allocated or
//! waited for: a method name of at most [`MAX_NAME`] bytes, and a message of
//! at most the server's frame limit (64 KiB by default) in all, strings and
//! containers included. Fields other than field 1 are skipped whatever their
//! type (structs, lists, sets and maps nested at most [`MAX_DEPTH`] deep), as
//! Thrift does. A version word other than `0x8001000x` (the old non-strict
//! encoding, a framed transport's length prefix, garbage), a message type
//! other than CALL or ONEWAY, an unknown field type, or a negative length
//! closes the connection; so does a connection that ends inside a message.
//!
//! # Messages waiting for `recv`
//!
//! This client never gets a message it did not ask for: it polls `recv`
//! about every 0.5 s and gets one waiting message per call, or `""` at once.
//! Deliveries from the user's inbox become [`QUEUED`](super::pushes::QUEUED)
//! pushes that this protocol keeps in a per-connection queue (at most
//! [`MAX_QUEUED`] messages and [`MAX_QUEUED_BYTES`] bytes) instead of
//! writing them. A thrift login is a device that acks: a message is
//! acknowledged when a `recv` takes it (its conversation counts as
//! delivered to the device up to it), so one still waiting when the
//! connection ends comes again at the user's next login, and at most the
//! pump's prefetch (64) are unacknowledged at once — the rest wait in the
//! conversation logs until `recv` drains the queue. A push that finds the
//! queue full (which the prefetch makes impossible) is dropped unacked.

use std::collections::{HashMap, VecDeque};

use bytes::{Buf, BufMut, BytesMut};
use homer::{ApiError, Call, Decoded, Limits, MakeProtocol, Protocol, ProtocolError, Push, Reply};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use super::api::{CreateGroupParams, RegisterParams};
use super::{apis, pushes};
use crate::wire::{LOBBY, Target};

pub(crate) mod api;

/// The protocol's name ([`homer::Connection::protocol`]).
pub(crate) const NAME: &str = "thrift";

/// Longest method name accepted, in bytes (the IDL's longest is 22).
pub(crate) const MAX_NAME: usize = 64;
/// Deepest nesting of structs and containers skipped inside a call.
pub(crate) const MAX_DEPTH: usize = 16;
/// Most messages waiting for `recv` on one connection.
pub(crate) const MAX_QUEUED: usize = 256;
/// Most bytes of messages waiting for `recv` on one connection.
pub(crate) const MAX_QUEUED_BYTES: usize = 4 << 20;
/// Most calls of one connection awaiting their reply (homer runs at most
/// `max_in_flight` of them; this only guards the bookkeeping).
const MAX_PENDING: usize = 1024;

/// The strict binary protocol's version word, without the message type.
const VERSION_1: u32 = 0x8001_0000;
const VERSION_MASK: u32 = 0xffff_ff00;

/// Message types.
const CALL: u8 = 1;
const REPLY: u8 = 2;
const EXCEPTION: u8 = 3;
const ONEWAY: u8 = 4;

/// Field types.
const T_STOP: u8 = 0;
const T_BOOL: u8 = 2;
const T_BYTE: u8 = 3;
const T_DOUBLE: u8 = 4;
const T_I16: u8 = 6;
const T_I32: u8 = 8;
const T_I64: u8 = 10;
const T_STRING: u8 = 11;
const T_STRUCT: u8 = 12;
const T_MAP: u8 = 13;
const T_SET: u8 = 14;
const T_LIST: u8 = 15;
const T_UUID: u8 = 16;

/// `TApplicationException` type of an unknown method.
pub(crate) const UNKNOWN_METHOD: i32 = 1;

/// Makes [`Thrift`] with the server's frame limit as the message limit.
pub(crate) fn make() -> impl MakeProtocol<Protocol = Thrift> {
    |limits: &Limits| Thrift::new(limits.max_frame_size())
}

// ---------------------------------------------------------------------------
// Decoding.

/// One call as read off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Message {
    pub(crate) name: String,
    pub(crate) seqid: i32,
    /// ONEWAY: no reply is written.
    pub(crate) oneway: bool,
    /// Field 1 when it is a STRING (the request), as bytes.
    pub(crate) request: Option<Vec<u8>>,
}

/// What the decoder reads next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Version,
    NameLen,
    Name(usize),
    SeqId,
    /// What comes next depends on the innermost open struct or container.
    Next,
    /// A field header (or STOP) of the innermost struct.
    Field,
    /// A value of this type; `keep` for the request string.
    Value {
        ty: u8,
        keep: bool,
    },
    /// The rest of a string's bytes.
    Bytes {
        left: usize,
        keep: bool,
    },
}

/// A struct or container being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Struct,
    /// A list or set: `left` elements of type `elem`.
    Seq {
        elem: u8,
        left: u64,
    },
    /// A map: `left` keys and values, alternating (a key when even).
    Map {
        key: u8,
        value: u8,
        left: u64,
    },
}

/// Reads strict-binary Thrift calls incrementally (see the module docs).
#[derive(Debug)]
pub(crate) struct MessageDecoder {
    max_message: usize,
    /// Bytes of the message in progress taken off the buffer so far.
    taken: usize,
    step: Step,
    open: Vec<Open>,
    kind: u8,
    name: String,
    seqid: i32,
    request: Option<Vec<u8>>,
}

/// Bytes a value of type `ty` takes at least (`None`: not a type).
fn min_size(ty: u8) -> Option<u64> {
    Some(match ty {
        T_BOOL | T_BYTE | T_STRUCT => 1,
        T_I16 => 2,
        T_I32 | T_STRING => 4,
        T_LIST | T_SET => 5,
        T_MAP => 6,
        T_I64 | T_DOUBLE => 8,
        T_UUID => 16,
        _ => return None,
    })
}

fn invalid(what: impl Into<String>) -> ProtocolError {
    ProtocolError::Invalid(what.into())
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_i32(b: &[u8]) -> i32 {
    i32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl MessageDecoder {
    /// Messages of at most `max_message` bytes.
    pub(crate) fn new(max_message: usize) -> Self {
        MessageDecoder {
            max_message,
            taken: 0,
            step: Step::Version,
            open: Vec::new(),
            kind: 0,
            name: String::new(),
            seqid: 0,
            request: None,
        }
    }

    /// Whether part of a message has been read.
    pub(crate) fn in_message(&self) -> bool {
        self.step != Step::Version || self.taken > 0
    }

    /// Refuse a message that would need `more` bytes beyond what was taken.
    fn room_for(&self, more: u64) -> Result<(), ProtocolError> {
        let len = (self.taken as u64).saturating_add(more);
        if len > self.max_message as u64 {
            return Err(ProtocolError::FrameTooLarge {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                limit: self.max_message,
            });
        }
        Ok(())
    }

    /// Take `n` bytes when they are there; `None` to wait for more.
    fn take(&mut self, src: &mut BytesMut, n: usize) -> Result<Option<BytesMut>, ProtocolError> {
        self.room_for(n as u64)?;
        if src.len() < n {
            return Ok(None);
        }
        self.taken += n;
        Ok(Some(src.split_to(n)))
    }

    /// Open a struct or container, within the depth limit.
    fn open(&mut self, open: Open) -> Result<(), ProtocolError> {
        // The call's argument struct is the first level.
        if self.open.len() > MAX_DEPTH {
            return Err(invalid(format!(
                "structs and containers nested deeper than {MAX_DEPTH}"
            )));
        }
        self.open.push(open);
        Ok(())
    }

    /// The next whole call in `src`, or `None` until more bytes arrive.
    pub(crate) fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Message>, ProtocolError> {
        loop {
            match self.step {
                Step::Version => {
                    let Some(b) = self.take(src, 4)? else {
                        return Ok(None);
                    };
                    let word = be_u32(&b);
                    if word & VERSION_MASK != VERSION_1 {
                        return Err(invalid(format!(
                            "not a strict binary Thrift message: version word 0x{word:08x}, \
                             expected 0x8001000x (buffered transport, TBinaryProtocol)"
                        )));
                    }
                    let kind = (word & 0xff) as u8;
                    if kind != CALL && kind != ONEWAY {
                        return Err(invalid(format!(
                            "a client sends calls (message type 1 or 4), not type {kind}"
                        )));
                    }
                    self.kind = kind;
                    self.step = Step::NameLen;
                }
                Step::NameLen => {
                    let Some(b) = self.take(src, 4)? else {
                        return Ok(None);
                    };
                    let len = be_i32(&b);
                    match usize::try_from(len) {
                        Ok(n) if n <= MAX_NAME => self.step = Step::Name(n),
                        _ => {
                            return Err(invalid(format!(
                                "a method name of {len} bytes (at most {MAX_NAME})"
                            )));
                        }
                    }
                }
                Step::Name(n) => {
                    let Some(b) = self.take(src, n)? else {
                        return Ok(None);
                    };
                    self.name = String::from_utf8(b.to_vec())
                        .map_err(|_| invalid("a method name that is not UTF-8"))?;
                    self.step = Step::SeqId;
                }
                Step::SeqId => {
                    let Some(b) = self.take(src, 4)? else {
                        return Ok(None);
                    };
                    self.seqid = be_i32(&b);
                    self.open(Open::Struct)?;
                    self.step = Step::Next;
                }
                Step::Next => match self.open.last_mut() {
                    None => return Ok(Some(self.finish())),
                    Some(Open::Struct) => self.step = Step::Field,
                    Some(Open::Seq { left: 0, .. } | Open::Map { left: 0, .. }) => {
                        self.open.pop();
                    }
                    Some(Open::Seq { elem, left }) => {
                        *left -= 1;
                        self.step = Step::Value {
                            ty: *elem,
                            keep: false,
                        };
                    }
                    Some(Open::Map { key, value, left }) => {
                        let ty = if *left % 2 == 0 { *key } else { *value };
                        *left -= 1;
                        self.step = Step::Value { ty, keep: false };
                    }
                },
                Step::Field => {
                    self.room_for(1)?;
                    let Some(&ty) = src.first() else {
                        return Ok(None);
                    };
                    if ty == T_STOP {
                        src.advance(1);
                        self.taken += 1;
                        self.open.pop();
                        self.step = Step::Next;
                        continue;
                    }
                    let Some(b) = self.take(src, 3)? else {
                        return Ok(None);
                    };
                    let id = i16::from_be_bytes([b[1], b[2]]);
                    // Field 1 of the call's arguments, when it is a string.
                    let keep = self.open.len() == 1 && id == 1 && ty == T_STRING;
                    self.step = Step::Value { ty, keep };
                }
                Step::Value { ty, keep } => {
                    if !self.value(src, ty, keep)? {
                        return Ok(None);
                    }
                }
                Step::Bytes { left, keep } => {
                    if keep {
                        let Some(b) = self.take(src, left)? else {
                            return Ok(None);
                        };
                        self.request = Some(b.to_vec());
                        self.step = Step::Next;
                    } else {
                        let n = left.min(src.len());
                        src.advance(n);
                        self.taken += n;
                        if n < left {
                            self.step = Step::Bytes {
                                left: left - n,
                                keep,
                            };
                            return Ok(None);
                        }
                        self.step = Step::Next;
                    }
                }
            }
        }
    }

    /// Read the start of a value of type `ty`; false to wait for more bytes.
    fn value(&mut self, src: &mut BytesMut, ty: u8, keep: bool) -> Result<bool, ProtocolError> {
        let fixed = match ty {
            T_BOOL | T_BYTE => Some(1),
            T_I16 => Some(2),
            T_I32 => Some(4),
            T_I64 | T_DOUBLE => Some(8),
            T_UUID => Some(16),
            _ => None,
        };
        if let Some(n) = fixed {
            if self.take(src, n)?.is_none() {
                return Ok(false);
            }
            self.step = Step::Next;
            return Ok(true);
        }
        match ty {
            T_STRING => {
                let Some(b) = self.take(src, 4)? else {
                    return Ok(false);
                };
                let len = be_i32(&b);
                let Ok(left) = usize::try_from(len) else {
                    return Err(invalid(format!("a string of negative length {len}")));
                };
                self.room_for(left as u64)?;
                self.step = Step::Bytes { left, keep };
            }
            T_STRUCT => {
                self.open(Open::Struct)?;
                self.step = Step::Next;
            }
            T_LIST | T_SET => {
                let Some(b) = self.take(src, 5)? else {
                    return Ok(false);
                };
                let (elem, count) = (b[0], be_i32(&b[1..]));
                let (size, count) = element_size(elem, count)?;
                self.room_for(size.saturating_mul(count))?;
                self.open(Open::Seq { elem, left: count })?;
                self.step = Step::Next;
            }
            T_MAP => {
                let Some(b) = self.take(src, 6)? else {
                    return Ok(false);
                };
                let (key, value, count) = (b[0], b[1], be_i32(&b[2..]));
                let (key_size, count) = element_size(key, count)?;
                let (value_size, _) = element_size(value, 0)?;
                self.room_for((key_size + value_size).saturating_mul(count))?;
                self.open(Open::Map {
                    key,
                    value,
                    left: 2 * count,
                })?;
                self.step = Step::Next;
            }
            other => return Err(invalid(format!("unknown Thrift field type {other}"))),
        }
        Ok(true)
    }

    /// The message just read; the decoder is ready for the next.
    fn finish(&mut self) -> Message {
        let message = Message {
            name: std::mem::take(&mut self.name),
            seqid: self.seqid,
            oneway: self.kind == ONEWAY,
            request: self.request.take(),
        };
        *self = MessageDecoder::new(self.max_message);
        message
    }
}

/// The least bytes one element of type `elem` takes, and the count of a
/// container of `count` of them.
fn element_size(elem: u8, count: i32) -> Result<(u64, u64), ProtocolError> {
    let Ok(count) = u64::try_from(count) else {
        return Err(invalid(format!("a container of negative size {count}")));
    };
    let size = min_size(elem)
        .ok_or_else(|| invalid(format!("a container of unknown element type {elem}")))?;
    Ok((size, count))
}

// ---------------------------------------------------------------------------
// Encoding.

fn put_string(dst: &mut BytesMut, s: &[u8]) -> Result<(), ProtocolError> {
    let len = i32::try_from(s.len())
        .map_err(|_| invalid(format!("a string of {} bytes cannot be encoded", s.len())))?;
    dst.put_i32(len);
    dst.put_slice(s);
    Ok(())
}

fn put_head(dst: &mut BytesMut, kind: u8, name: &str, seqid: i32) -> Result<(), ProtocolError> {
    dst.put_u32(VERSION_1 | u32::from(kind));
    put_string(dst, name.as_bytes())?;
    dst.put_i32(seqid);
    Ok(())
}

/// A REPLY to `name`/`seqid` whose result (field 0) is `result`.
pub(crate) fn put_reply(
    dst: &mut BytesMut,
    name: &str,
    seqid: i32,
    result: &str,
) -> Result<(), ProtocolError> {
    let mut frame = BytesMut::with_capacity(32 + name.len() + result.len());
    put_head(&mut frame, REPLY, name, seqid)?;
    frame.put_u8(T_STRING);
    frame.put_i16(0);
    put_string(&mut frame, result.as_bytes())?;
    frame.put_u8(T_STOP);
    dst.extend_from_slice(&frame);
    Ok(())
}

/// A `TApplicationException` of type `kind` answering `name`/`seqid`.
pub(crate) fn put_exception(
    dst: &mut BytesMut,
    name: &str,
    seqid: i32,
    message: &str,
    kind: i32,
) -> Result<(), ProtocolError> {
    let mut frame = BytesMut::with_capacity(48 + name.len() + message.len());
    put_head(&mut frame, EXCEPTION, name, seqid)?;
    frame.put_u8(T_STRING);
    frame.put_i16(1);
    put_string(&mut frame, message.as_bytes())?;
    frame.put_u8(T_I32);
    frame.put_i16(2);
    frame.put_i32(kind);
    frame.put_u8(T_STOP);
    dst.extend_from_slice(&frame);
    Ok(())
}

// ---------------------------------------------------------------------------
// The methods and their JSON.

/// The methods of `service ChatServer` this server implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Regist,
    Login,
    ChatDefaultGroup,
    ShowDefaultGroupMem,
    ShowGroups,
    ChatWithSingle,
    CreateGroup,
    SearchGroup,
    AddGroup,
    ChatGroup,
    Recv,
}

impl Method {
    /// The method called `name`; `None` for any other name (`show_group_mem`,
    /// which the original server never implemented, included).
    pub(crate) fn named(name: &str) -> Option<Method> {
        Some(match name {
            "regist" => Method::Regist,
            "login" => Method::Login,
            "chat_default_group" => Method::ChatDefaultGroup,
            "show_default_group_mem" => Method::ShowDefaultGroupMem,
            "show_groups" => Method::ShowGroups,
            "chat_with_single" => Method::ChatWithSingle,
            "create_group" => Method::CreateGroup,
            "search_group" => Method::SearchGroup,
            "add_group" => Method::AddGroup,
            "chat_group" => Method::ChatGroup,
            "recv" => Method::Recv,
            _ => return None,
        })
    }

    /// The `legacy.*` API a call of this method becomes.
    fn api(self) -> &'static str {
        match self {
            Method::Regist => apis::REGISTER,
            Method::Login => apis::LOGIN_BY_NAME,
            Method::ChatDefaultGroup | Method::ChatGroup | Method::ChatWithSingle => {
                apis::SEND_BY_NAME
            }
            Method::ShowDefaultGroupMem => apis::LOBBY_MEMBERS,
            Method::ShowGroups => apis::ALL_GROUPS,
            Method::CreateGroup => apis::CREATE_GROUP,
            Method::SearchGroup => apis::FIND_GROUP,
            Method::AddGroup => apis::JOIN_GROUP_BY_NAME,
            Method::Recv => apis::RECV,
        }
    }

    /// The `content` of a successful reply and of a failed one, as the
    /// original server words them.
    fn words(self) -> (&'static str, &'static str) {
        match self {
            Method::Regist => ("注册成功！", "注册失败！"),
            Method::Login => ("登录成功！", "登录失败！"),
            Method::ChatDefaultGroup | Method::ChatGroup => ("消息发送成功", "消息发送失败"),
            Method::ChatWithSingle => ("消息发送成功", "联系不到他"),
            Method::CreateGroup => ("创建成功", "创建失败"),
            Method::AddGroup => ("添加成功", "添加失败"),
            Method::SearchGroup => ("", "不存在这个群"),
            Method::ShowDefaultGroupMem | Method::ShowGroups | Method::Recv => ("", "失败"),
        }
    }
}

/// `{"uid","ip","data"}`: what every request carries. Other fields are
/// ignored; `ip` always is (the server knows the peer's address).
#[derive(Debug, Deserialize)]
struct Request {
    #[serde(default)]
    uid: Value,
    #[serde(default)]
    data: Map<String, Value>,
}

impl Request {
    /// `uid` as typed: a string (a number is taken as its digits).
    fn uid(&self) -> Result<String, String> {
        match &self.uid {
            Value::String(s) if !s.is_empty() => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            _ => Err("`uid` is missing".to_owned()),
        }
    }

    /// `data.<key>`, a string.
    fn data(&self, key: &str) -> Result<String, String> {
        match self.data.get(key) {
            Some(Value::String(s)) => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(format!("`data.{key}` is missing")),
        }
    }
}

/// The text a user typed, from the line the client builds around it:
/// `"{ip}:{uid} == {time}  ->  {text}"`. Anything else is taken whole.
pub(crate) fn typed_text(msg: &str) -> &str {
    msg.find(" == ")
        .and_then(|at| msg[at..].find("  ->  ").map(|i| at + i))
        .map_or(msg, |i| &msg[i + "  ->  ".len()..])
}

/// `legacy.send.name`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SendByName {
    pub(crate) to: Target,
    pub(crate) text: String,
}

/// `legacy.login.name`: `account` is a name, or a number when all digits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LoginByName {
    pub(crate) account: String,
    pub(crate) password: String,
}

/// The content of a successful `legacy.login.name`: whose queued messages
/// `recv` hands out from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Owner {
    pub(crate) user: String,
    pub(crate) since: u64,
}

/// `legacy.group.join.name` and `legacy.group.find`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupByName {
    pub(crate) name: String,
}

/// `legacy.recv`: the message `recv` hands out, to acknowledge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RecvParams {
    #[serde(default)]
    pub(crate) ack: Option<String>,
}

/// The content of a [`QUEUED`](pushes::QUEUED) push: a delivery's line for
/// `recv`, tagged with the login it was delivered to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Queued {
    #[serde(flatten)]
    pub(crate) owner: Owner,
    /// The message id, acknowledged when `recv` hands the line out.
    pub(crate) id: String,
    pub(crate) line: String,
}

/// `{"status","content"}`, the reply of every method but `recv`.
#[derive(Serialize)]
struct Response<'a> {
    status: u16,
    content: &'a str,
}

fn response(status: u16, content: &str) -> String {
    // Two plain fields cannot fail to serialise; if they did, `""`.
    serde_json::to_string(&Response { status, content }).unwrap_or_default()
}

/// Python's `repr` of a `str`: single quotes unless it holds one and no
/// double quote, backslash escapes for the quote, `\` and control characters.
pub(crate) fn py_repr(s: &str) -> String {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {
                let n = u32::from(c);
                if n < 0x100 {
                    out.push_str(&format!("\\x{n:02x}"));
                } else {
                    out.push_str(&format!("\\u{n:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push(quote);
    out
}

/// `str(d.keys())` of a Python dict with these keys: `dict_keys(['a', 'b'])`.
pub(crate) fn py_dict_keys(names: &[String]) -> String {
    let items: Vec<String> = names.iter().map(|n| py_repr(n)).collect();
    format!("dict_keys([{}])", items.join(", "))
}

/// `str(groups)` of the original's `{name: {member, ...}}`:
/// `{'rust': {'ann', 'gus'}}` (an empty set is `set()`).
pub(crate) fn py_groups(groups: &[(String, Vec<String>)]) -> String {
    let items: Vec<String> = groups
        .iter()
        .map(|(name, members)| {
            let set = if members.is_empty() {
                "set()".to_owned()
            } else {
                let m: Vec<String> = members.iter().map(|n| py_repr(n)).collect();
                format!("{{{}}}", m.join(", "))
            };
            format!("{}: {set}", py_repr(name))
        })
        .collect();
    format!("{{{}}}", items.join(", "))
}

/// `show_groups`' content: `{"groups": [{"name", "members"}]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct AllGroups {
    pub(crate) groups: Vec<GroupMembers>,
}

/// One group and its members' names.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct GroupMembers {
    pub(crate) name: String,
    pub(crate) members: Vec<String>,
}

/// `show_default_group_mem`'s content: `{"users": [...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Users {
    pub(crate) users: Vec<String>,
}

// ---------------------------------------------------------------------------
// The protocol.

/// A call waiting for its reply.
#[derive(Debug)]
struct Pending {
    /// `None`: a method this server does not implement.
    method: Option<Method>,
    name: String,
    seqid: i32,
    oneway: bool,
    /// For `recv`: the message it hands out.
    line: Option<Queued>,
}

/// The Thrift [`Protocol`] for one connection.
#[derive(Debug)]
pub(crate) struct Thrift {
    decoder: MessageDecoder,
    next_id: u64,
    pending: HashMap<u64, Pending>,
    /// The login whose messages `recv` hands out.
    owner: Option<Owner>,
    queue: VecDeque<Queued>,
    queued_bytes: usize,
}

impl Thrift {
    /// Messages of at most `max_message` bytes.
    pub(crate) fn new(max_message: usize) -> Self {
        Thrift {
            decoder: MessageDecoder::new(max_message),
            next_id: 0,
            pending: HashMap::new(),
            owner: None,
            queue: VecDeque::new(),
            queued_bytes: 0,
        }
    }

    /// The call (or the immediate answer) for one message; `None` for a
    /// ONEWAY message that gets no answer.
    fn translate(&mut self, m: Message) -> Result<Option<Decoded>, ProtocolError> {
        if self.pending.len() >= MAX_PENDING {
            return Err(invalid(format!(
                "more than {MAX_PENDING} calls awaiting their replies"
            )));
        }
        self.next_id += 1;
        let id = self.next_id;
        let method = Method::named(&m.name);
        let mut pending = Pending {
            method,
            name: m.name,
            seqid: m.seqid,
            oneway: m.oneway,
            line: None,
        };
        let Some(method) = method else {
            let unknown = ApiError::unknown_api(&pending.name);
            self.pending.insert(id, pending);
            return Ok(Some(Decoded::Reply(Reply::error(
                Value::from(id),
                None,
                unknown,
            ))));
        };
        let decoded = match self.params(method, m.request.as_deref(), &mut pending) {
            Ok(params) => Decoded::Call(Call::new(id, method.api(), params)),
            Err(why) => Decoded::Reply(Reply::error(
                Value::from(id),
                Some(method.api().to_owned()),
                ApiError::bad_request("bad_request", why),
            )),
        };
        self.pending.insert(id, pending);
        Ok(Some(decoded))
    }

    /// The params of the call for `method` with this request.
    fn params(
        &mut self,
        method: Method,
        request: Option<&[u8]>,
        pending: &mut Pending,
    ) -> Result<Value, String> {
        if method == Method::Recv {
            // The request says nothing `recv` needs: the connection's login
            // decides whose messages it gets.
            // A ONEWAY poll gets no reply: it takes nothing.
            pending.line = if pending.oneway {
                None
            } else {
                self.next_line()
            };
            let ack = pending.line.as_ref().map(|q| q.id.clone());
            return to_params(&RecvParams { ack });
        }
        let request = request.ok_or("the request (field 1, a string) is missing")?;
        let r: Request = serde_json::from_slice(request)
            .map_err(|e| format!("the request is not {{\"uid\",\"ip\",\"data\"}} JSON: {e}"))?;
        match method {
            Method::Regist => to_params(&RegisterParams {
                name: r.uid()?,
                password: r.data("password")?.trim().to_owned(),
                number: None,
            }),
            Method::Login => to_params(&LoginByName {
                account: r.uid()?,
                password: r.data("password")?.trim().to_owned(),
            }),
            Method::ChatDefaultGroup => to_params(&SendByName {
                to: Target::group(LOBBY),
                text: typed_text(&r.data("msg")?).to_owned(),
            }),
            Method::ChatGroup => to_params(&SendByName {
                to: Target::group(r.data("group_name")?),
                text: typed_text(&r.data("msg")?).to_owned(),
            }),
            Method::ChatWithSingle => to_params(&SendByName {
                to: Target {
                    user: Some(r.data("ruid")?),
                    group: Some(r.data("group_name")?),
                },
                text: typed_text(&r.data("msg")?).to_owned(),
            }),
            Method::CreateGroup => to_params(&CreateGroupParams {
                name: r.data("group_name")?,
                desc: String::new(),
            }),
            Method::SearchGroup | Method::AddGroup => to_params(&GroupByName {
                name: r.data("group_name")?,
            }),
            Method::ShowDefaultGroupMem | Method::ShowGroups | Method::Recv => Ok(json!({})),
        }
    }

    /// Take the next waiting message of the current login; older logins'
    /// messages are dropped (never acknowledged, they come again).
    fn next_line(&mut self) -> Option<Queued> {
        let owner = self.owner.as_ref()?;
        while let Some(q) = self.queue.pop_front() {
            self.queued_bytes -= q.line.len();
            if q.owner == *owner {
                return Some(q);
            }
        }
        None
    }

    /// Keep a delivery for `recv`.
    fn enqueue(&mut self, q: Queued) {
        if self.queue.len() >= MAX_QUEUED || self.queued_bytes + q.line.len() > MAX_QUEUED_BYTES {
            tracing::warn!(
                user = %q.owner.user,
                "a thrift connection's queue is full ({MAX_QUEUED} messages, {MAX_QUEUED_BYTES} bytes): \
                 the message is dropped unacknowledged"
            );
            return;
        }
        self.queued_bytes += q.line.len();
        self.queue.push_back(q);
    }

    /// Put a message `recv` could not hand out back at the head.
    fn requeue(&mut self, q: Queued) {
        self.queued_bytes += q.line.len();
        self.queue.push_front(q);
    }

    /// A new login owns the connection: drop what earlier ones left.
    fn owned_by(&mut self, owner: Owner) {
        self.queue.retain(|q| q.owner == owner);
        self.queued_bytes = self.queue.iter().map(|q| q.line.len()).sum();
        self.owner = Some(owner);
    }

    /// The result string of a reply to `method`.
    fn result(&mut self, method: Method, reply: &Reply, line: Option<Queued>) -> String {
        let (done, failed) = method.words();
        let content = match (&reply.result, method) {
            (Ok(_), Method::Recv) => return line.map(|q| q.line).unwrap_or_default(),
            (Err(_), Method::Recv) => {
                // Rate limited or not acknowledged: it stays for the next poll.
                if let Some(q) = line {
                    self.requeue(q);
                }
                return String::new();
            }
            (Ok(c), Method::Login) => {
                if let Ok(owner) = serde_json::from_value::<Owner>(c.clone()) {
                    self.owned_by(owner);
                }
                done.to_owned()
            }
            (Ok(c), Method::SearchGroup) => {
                return response(200, c["name"].as_str().unwrap_or_default());
            }
            (Ok(c), Method::ShowDefaultGroupMem) => {
                let users = serde_json::from_value::<Users>(c.clone())
                    .unwrap_or(Users { users: Vec::new() });
                py_dict_keys(&users.users)
            }
            (Ok(c), Method::ShowGroups) => {
                let all = serde_json::from_value::<AllGroups>(c.clone())
                    .unwrap_or(AllGroups { groups: Vec::new() });
                let groups: Vec<(String, Vec<String>)> = all
                    .groups
                    .into_iter()
                    .map(|g| (g.name, g.members))
                    .collect();
                py_groups(&groups)
            }
            (Ok(_), _) => done.to_owned(),
            (Err(e), Method::CreateGroup) if e.code() == "group_exists" => "该群已存在".to_owned(),
            // Wrong credentials: the original words only.
            (Err(e), Method::Login) if e.status() == 401 => failed.to_owned(),
            (Err(e), _) => format!("{failed}: {}", e.message()),
        };
        let status = if reply.result.is_ok() { 200 } else { 400 };
        response(status, &content)
    }
}

fn to_params<T: Serialize>(p: &T) -> Result<Value, String> {
    serde_json::to_value(p).map_err(|e| format!("encoding the call: {e}"))
}

impl Protocol for Thrift {
    fn name(&self) -> &'static str {
        NAME
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            let Some(message) = self.decoder.decode(src)? else {
                return Ok(None);
            };
            if let Some(decoded) = self.translate(message)? {
                return Ok(Some(decoded));
            }
        }
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() && !self.decoder.in_message() => Ok(None),
            None => Err(ProtocolError::Truncated {
                len: self.decoder.taken + src.len(),
            }),
        }
    }

    fn encode_reply(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        let Some(p) = reply.id.as_u64().and_then(|id| self.pending.remove(&id)) else {
            tracing::debug!(api = ?reply.api, "a reply to no thrift call: nothing to write");
            return Ok(());
        };
        let Some(method) = p.method else {
            if p.oneway {
                return Ok(());
            }
            let message = format!("Unknown function {}", p.name);
            return put_exception(dst, &p.name, p.seqid, &message, UNKNOWN_METHOD);
        };
        if let Err(e) = &reply.result {
            tracing::debug!(method = %p.name, status = e.status(), error = %e.message(), "a thrift call failed");
        }
        let result = self.result(method, reply, p.line);
        if p.oneway {
            return Ok(());
        }
        put_reply(dst, &p.name, p.seqid, &result)
    }

    fn encode_push(&mut self, push: &Push, _dst: &mut BytesMut) -> Result<(), ProtocolError> {
        // Nothing is ever written unasked: deliveries wait for `recv`, and
        // every other push has no shape here.
        if push.kind() == pushes::QUEUED
            && let Ok(q) = serde_json::from_value::<Queued>(push.content().clone())
        {
            self.enqueue(q);
        }
        Ok(())
    }

    fn idle_timeout(&self) -> Option<std::time::Duration> {
        Some(super::IDLE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call as the Python client writes it: strict binary, field 1 STRING.
    fn call(name: &str, seqid: i32, request: &str) -> Vec<u8> {
        call_of(CALL, name, seqid, &string_field(1, request.as_bytes()))
    }

    fn string_field(id: i16, s: &[u8]) -> Vec<u8> {
        let mut f = vec![T_STRING];
        f.extend(id.to_be_bytes());
        f.extend((s.len() as i32).to_be_bytes());
        f.extend(s);
        f
    }

    /// A message of `kind` whose argument struct holds `fields` (then STOP).
    fn call_of(kind: u8, name: &str, seqid: i32, fields: &[u8]) -> Vec<u8> {
        let mut out = (VERSION_1 | u32::from(kind)).to_be_bytes().to_vec();
        out.extend((name.len() as i32).to_be_bytes());
        out.extend(name.as_bytes());
        out.extend(seqid.to_be_bytes());
        out.extend(fields);
        out.push(T_STOP);
        out
    }

    fn req(uid: &str, data: Value) -> String {
        json!({"uid": uid, "ip": "10.0.0.9", "data": data}).to_string()
    }

    /// Feed `chunks`: each decoded message as `name seqid request`, then
    /// `error: ...` if the decoder failed, or `eof: ...` from `decode_eof`.
    fn messages(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut d = MessageDecoder::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let show = |m: Message| {
            let r = m
                .request
                .map(|r| String::from_utf8_lossy(&r).into_owned())
                .unwrap_or_else(|| "-".into());
            let one = if m.oneway { " oneway" } else { "" };
            format!("{} {}{one} {r}", m.name, m.seqid)
        };
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match d.decode(&mut buf) {
                    Ok(Some(m)) => out.push(show(m)),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(format!("error: {e}"));
                        return out;
                    }
                }
                assert!(buf.len() <= max, "buffered past the limit");
            }
        }
        if d.in_message() || !buf.is_empty() {
            out.push(format!("eof: {} bytes into a message", d.taken + buf.len()));
        }
        out
    }

    #[test]
    fn decoder_table() {
        let login = call("login", 1, r#"{"uid":"gus"}"#);
        let recv = call("recv", 2, "{}");
        let both = [login.clone(), recv.clone()].concat();
        let ok = ["login 1 {\"uid\":\"gus\"}", "recv 2 {}"];
        let max = 64 * 1024;
        let mut extra = string_field(3, b"skipped");
        extra.extend([T_I32, 0, 4, 0, 0, 0, 7]);
        // A struct holding a list<i64> and a map<string, bool>.
        let mut nested = vec![T_STRUCT, 0, 5, T_LIST, 0, 1, T_I64, 0, 0, 0, 2];
        nested.extend([0u8; 16]);
        nested.extend([
            T_MAP, 0, 2, T_STRING, T_BOOL, 0, 0, 0, 1, 0, 0, 0, 1, b'k', 1,
        ]);
        nested.push(T_STOP);
        let mut deep = Vec::new();
        for _ in 0..=MAX_DEPTH {
            deep.extend([T_STRUCT, 0, 9]);
        }
        let too_deep = call_of(CALL, "recv", 3, &deep);
        let byte_by_byte: Vec<Vec<u8>> = both.chunks(1).map(<[u8]>::to_vec).collect();
        // What, the reads, the message limit, what comes out.
        type Case = (&'static str, Vec<Vec<u8>>, usize, Vec<String>);
        let cases: Vec<Case> = vec![
            ("coalesced", vec![both.clone()], max, ok.map(String::from).to_vec()),
            (
                "split in every byte",
                byte_by_byte,
                max,
                ok.map(String::from).to_vec(),
            ),
            (
                "split inside the name and the string",
                vec![both[..10].to_vec(), both[10..30].to_vec(), both[30..].to_vec()],
                max,
                ok.map(String::from).to_vec(),
            ),
            (
                "other fields are skipped, field 1 kept wherever it is",
                vec![call_of(
                    CALL,
                    "recv",
                    7,
                    &[extra.clone(), string_field(1, b"r"), nested.clone()].concat(),
                )],
                max,
                vec!["recv 7 r".into()],
            ),
            (
                "field 1 of another type is skipped: no request",
                vec![call_of(CALL, "recv", 8, &[T_I32, 0, 1, 0, 0, 0, 1])],
                max,
                vec!["recv 8 -".into()],
            ),
            (
                "oneway",
                vec![call_of(ONEWAY, "recv", 9, &[])],
                max,
                vec!["recv 9 oneway -".into()],
            ),
            (
                "truncated",
                vec![login[..login.len() - 3].to_vec()],
                max,
                vec![format!("eof: {} bytes into a message", login.len() - 3)],
            ),
            (
                "truncated after the header",
                vec![login[..4].to_vec()],
                max,
                vec!["eof: 4 bytes into a message".into()],
            ),
            (
                "garbage",
                vec![b"GET / HTTP/1.1\r\n\r\n".to_vec()],
                max,
                vec!["error: invalid frame: not a strict binary Thrift message: version word 0x47455420, expected 0x8001000x (buffered transport, TBinaryProtocol)".into()],
            ),
            (
                "framed transport (a length first)",
                vec![[&[0u8, 0, 0, 25][..], &login].concat()],
                max,
                vec!["error: invalid frame: not a strict binary Thrift message: version word 0x00000019, expected 0x8001000x (buffered transport, TBinaryProtocol)".into()],
            ),
            (
                "wrong version",
                vec![vec![0x80, 0x02, 0, 1, 0, 0, 0, 0]],
                max,
                vec!["error: invalid frame: not a strict binary Thrift message: version word 0x80020001, expected 0x8001000x (buffered transport, TBinaryProtocol)".into()],
            ),
            (
                "a reply from the client",
                vec![call_of(REPLY, "recv", 1, &[])],
                max,
                vec!["error: invalid frame: a client sends calls (message type 1 or 4), not type 2".into()],
            ),
            (
                "a method name over the limit",
                vec![vec![0x80, 1, 0, 1, 0, 0, 0, 65]],
                max,
                vec!["error: invalid frame: a method name of 65 bytes (at most 64)".into()],
            ),
            (
                "a negative name length",
                vec![vec![0x80, 1, 0, 1, 0xff, 0xff, 0xff, 0xff]],
                max,
                vec!["error: invalid frame: a method name of -1 bytes (at most 64)".into()],
            ),
            (
                "a string over the limit, refused from its length alone",
                vec![[&login[..17], &[T_STRING, 0, 1, 0, 0, 0x10, 0][..]].concat()],
                1024,
                vec!["error: frame of 4120 bytes exceeds the 1024-byte limit".into()],
            ),
            (
                "a huge string length",
                vec![[&login[..17], &[T_STRING, 0, 1, 0x7f, 0xff, 0xff, 0xff][..]].concat()],
                max,
                vec![format!(
                    "error: frame of {} bytes exceeds the 65536-byte limit",
                    24u64 + 0x7fff_ffff
                )],
            ),
            (
                "a negative string length",
                vec![[&login[..17], &[T_STRING, 0, 1, 0xff, 0xff, 0xff, 0xfe][..]].concat()],
                max,
                vec!["error: invalid frame: a string of negative length -2".into()],
            ),
            (
                "a container over the limit, refused from its header",
                vec![[&login[..17], &[T_LIST, 0, 3, T_I64, 0, 0, 1, 0][..]].concat()],
                1024,
                vec!["error: frame of 2073 bytes exceeds the 1024-byte limit".into()],
            ),
            (
                "an unknown field type",
                vec![[&login[..17], &[99, 0, 1][..]].concat()],
                max,
                vec!["error: invalid frame: unknown Thrift field type 99".into()],
            ),
            (
                "too deep",
                vec![too_deep],
                max,
                vec![format!(
                    "error: invalid frame: structs and containers nested deeper than {MAX_DEPTH}"
                )],
            ),
            (
                "a message over the limit in small fields",
                vec![call_of(CALL, "recv", 1, &[T_I64, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0].repeat(10))],
                64,
                vec!["error: frame of 71 bytes exceeds the 64-byte limit".into()],
            ),
        ];
        for (what, chunks, max, expected) in cases {
            let chunks: Vec<&[u8]> = chunks.iter().map(Vec::as_slice).collect();
            assert_eq!(messages(&chunks, max), expected, "{what}");
        }
    }

    /// Decode `input` with a fresh [`Thrift`]: each item as `api params`
    /// or `reply <status>`.
    fn calls(p: &mut Thrift, input: &[u8]) -> Vec<String> {
        let mut buf = BytesMut::from(input);
        let mut out = Vec::new();
        while let Ok(Some(d)) = p.decode(&mut buf) {
            out.push(match d {
                Decoded::Call(c) => {
                    let mut params = c.params;
                    params.sort_all_objects();
                    format!("{} {params}", c.api)
                }
                Decoded::Reply(r) => format!("reply {}", r.status()),
                other => format!("{other:?}"),
            });
        }
        out
    }

    #[test]
    fn every_method_becomes_its_call() {
        let check = |input: Vec<u8>, expected: &str| {
            let mut p = Thrift::new(64 * 1024);
            assert_eq!(calls(&mut p, &input), [expected], "{expected}");
        };
        let line = "10.0.0.9:gus == 2024-11-23 08:20:00.12  ->  hi there";
        check(
            call("regist", 1, &req("gus", json!({"password": " pw "}))),
            r#"legacy.register {"name":"gus","password":"pw"}"#,
        );
        check(
            call("login", 1, &req("gus", json!({"password": "pw"}))),
            r#"legacy.login.name {"account":"gus","password":"pw"}"#,
        );
        check(
            call(
                "chat_default_group",
                1,
                &req("gus", json!({"password": "pw", "msg": line})),
            ),
            r#"legacy.send.name {"text":"hi there","to":{"group":"lobby"}}"#,
        );
        check(
            call(
                "chat_group",
                1,
                &req("gus", json!({"group_name": "rust", "msg": line})),
            ),
            r#"legacy.send.name {"text":"hi there","to":{"group":"rust"}}"#,
        );
        check(
            call(
                "chat_with_single",
                1,
                &req(
                    "gus",
                    json!({"group_name": "rust", "ruid": "ann", "msg": line}),
                ),
            ),
            r#"legacy.send.name {"text":"hi there","to":{"group":"rust","user":"ann"}}"#,
        );
        check(
            call("show_default_group_mem", 1, &req("gus", json!({}))),
            "legacy.lobby.members {}",
        );
        check(
            call("show_groups", 1, &req("gus", json!({}))),
            "legacy.group.all {}",
        );
        check(
            call(
                "create_group",
                1,
                &req("gus", json!({"group_name": "rust"})),
            ),
            r#"legacy.group.create {"desc":"","name":"rust"}"#,
        );
        check(
            call("add_group", 1, &req("gus", json!({"group_name": "rust"}))),
            r#"legacy.group.join.name {"name":"rust"}"#,
        );
        check(
            call(
                "search_group",
                1,
                &req("gus", json!({"group_name": "rust"})),
            ),
            r#"legacy.group.find {"name":"rust"}"#,
        );
        check(
            call("recv", 1, &req("gus", json!({}))),
            r#"legacy.recv {"ack":null}"#,
        );
        // Unknown and unimplemented methods are answered at once...
        check(
            call("show_group_mem", 1, &req("gus", json!({}))),
            "reply 404",
        );
        // ... and so are requests of the wrong shape.
        check(call("login", 1, "not json"), "reply 400");
        check(call("login", 1, &req("gus", json!({}))), "reply 400");
        check(
            call("regist", 1, r#"{"ip":"1.2.3.4","data":{"password":"pw"}}"#),
            "reply 400",
        );
        check(
            call("chat_group", 1, &req("gus", json!({"msg": "x"}))),
            "reply 400",
        );
        check(call_of(CALL, "login", 1, &[]), "reply 400");
    }

    #[test]
    fn the_typed_text_is_taken_out_of_the_clients_line() {
        assert_eq!(
            typed_text("10.0.0.9:gus == 2024-11-23 08:20:00.12  ->  hi"),
            "hi"
        );
        assert_eq!(typed_text("1.2.3.4:a == t  ->  x  ->  y"), "x  ->  y");
        assert_eq!(
            typed_text("a plain text  ->  arrow"),
            "a plain text  ->  arrow"
        );
        assert_eq!(typed_text("just text"), "just text");
        assert_eq!(typed_text("ip:u == t  ->  "), "");
    }

    /// What `encode_reply` writes, read back: (type, name, seqid, fields).
    fn read_back(bytes: &[u8]) -> (u8, String, i32, Vec<(u8, i16, Value)>) {
        let mut b = bytes;
        let take = |b: &mut &[u8], n: usize| {
            let (a, rest) = b.split_at(n);
            *b = rest;
            a.to_vec()
        };
        let word = be_u32(&take(&mut b, 4));
        assert_eq!(word & VERSION_MASK, VERSION_1);
        let n = be_u32(&take(&mut b, 4)) as usize;
        let name = String::from_utf8(take(&mut b, n)).unwrap();
        let seqid = be_i32(&take(&mut b, 4));
        let mut fields = Vec::new();
        loop {
            let ty = take(&mut b, 1)[0];
            if ty == T_STOP {
                break;
            }
            let id = i16::from_be_bytes(take(&mut b, 2).try_into().unwrap());
            let v = match ty {
                T_STRING => {
                    let n = be_u32(&take(&mut b, 4)) as usize;
                    Value::String(String::from_utf8(take(&mut b, n)).unwrap())
                }
                T_I32 => Value::from(be_i32(&take(&mut b, 4))),
                other => panic!("type {other}"),
            };
            fields.push((ty, id, v));
        }
        assert!(b.is_empty(), "bytes after STOP");
        ((word & 0xff) as u8, name, seqid, fields)
    }

    /// Decode one call and encode `result` as its reply.
    fn answer(p: &mut Thrift, input: &[u8], result: Result<Value, ApiError>) -> Vec<u8> {
        let mut buf = BytesMut::from(input);
        let (id, api) = match p.decode(&mut buf).unwrap().unwrap() {
            Decoded::Call(c) => (c.id, Some(c.api)),
            Decoded::Reply(r) => (r.id, r.api),
            other => panic!("{other:?}"),
        };
        let mut dst = BytesMut::new();
        p.encode_reply(&Reply { id, api, result }, &mut dst)
            .unwrap();
        dst.to_vec()
    }

    /// The reply string of a REPLY.
    fn result_of(bytes: &[u8]) -> String {
        let (kind, _, _, fields) = read_back(bytes);
        assert_eq!(kind, REPLY);
        assert_eq!(fields.len(), 1);
        assert_eq!((fields[0].0, fields[0].1), (T_STRING, 0));
        fields[0].2.as_str().unwrap().to_owned()
    }

    #[test]
    fn replies_have_the_exact_shapes() {
        let mut p = Thrift::new(64 * 1024);
        let login = call("login", 41, &req("gus", json!({"password": "pw"})));
        let ok = answer(&mut p, &login, Ok(json!({"user": "gus", "since": 5})));
        let (kind, name, seqid, _) = read_back(&ok);
        assert_eq!((kind, name.as_str(), seqid), (REPLY, "login", 41));
        assert_eq!(result_of(&ok), r#"{"status":200,"content":"登录成功！"}"#);
        // Byte for byte: header, field 0 STRING, STOP.
        let mut expected = vec![0x80, 1, 0, 2, 0, 0, 0, 5];
        expected.extend(b"login");
        expected.extend([0, 0, 0, 41, T_STRING, 0, 0]);
        let content = r#"{"status":200,"content":"登录成功！"}"#.as_bytes();
        expected.extend((content.len() as u32).to_be_bytes());
        expected.extend(content);
        expected.push(0);
        assert_eq!(ok, expected);

        let bad = ApiError::unauthorized("bad_credentials", "wrong name or password");
        assert_eq!(
            result_of(&answer(&mut p, &login, Err(bad))),
            r#"{"status":400,"content":"登录失败！"}"#
        );
        let limited = ApiError::new(429, "too_many_attempts", "too many failed logins");
        assert_eq!(
            result_of(&answer(&mut p, &login, Err(limited))),
            r#"{"status":400,"content":"登录失败！: too many failed logins"}"#
        );
        let create = call(
            "create_group",
            2,
            &req("gus", json!({"group_name": "rust"})),
        );
        assert_eq!(
            result_of(&answer(&mut p, &create, Ok(json!({"name": "rust"})))),
            r#"{"status":200,"content":"创建成功"}"#
        );
        let exists = ApiError::conflict("group_exists", "a group named rust exists");
        assert_eq!(
            result_of(&answer(&mut p, &create, Err(exists))),
            r#"{"status":400,"content":"该群已存在"}"#
        );
        let search = call(
            "search_group",
            3,
            &req("gus", json!({"group_name": "rust"})),
        );
        assert_eq!(
            result_of(&answer(&mut p, &search, Ok(json!({"name": "rust"})))),
            r#"{"status":200,"content":"rust"}"#
        );
        let none = ApiError::new(404, "no_such_group", "no group named x");
        assert_eq!(
            result_of(&answer(&mut p, &search, Err(none))),
            r#"{"status":400,"content":"不存在这个群: no group named x"}"#
        );
        let members = call("show_default_group_mem", 4, &req("gus", json!({})));
        assert_eq!(
            result_of(&answer(
                &mut p,
                &members,
                Ok(json!({"users": ["ann", "gus"]}))
            )),
            r#"{"status":200,"content":"dict_keys(['ann', 'gus'])"}"#
        );
        let groups = call("show_groups", 5, &req("gus", json!({})));
        let all = json!({"groups": [{"name": "rust", "members": ["gus", "ann"]}, {"name": "go", "members": []}]});
        assert_eq!(
            result_of(&answer(&mut p, &groups, Ok(all))),
            r#"{"status":200,"content":"{'rust': {'gus', 'ann'}, 'go': set()}"}"#
        );
        let whisper = call(
            "chat_with_single",
            6,
            &req(
                "gus",
                json!({"group_name": "rust", "ruid": "bob", "msg": "x"}),
            ),
        );
        let not_member = ApiError::new(403, "not_a_member", "bob is not in rust");
        assert_eq!(
            result_of(&answer(&mut p, &whisper, Err(not_member))),
            r#"{"status":400,"content":"联系不到他: bob is not in rust"}"#
        );

        // An unknown method: TApplicationException UNKNOWN_METHOD.
        let unknown = call("show_group_mem", 77, &req("gus", json!({})));
        let ex = answer(&mut p, &unknown, Ok(Value::Null));
        assert_eq!(
            read_back(&ex),
            (
                EXCEPTION,
                "show_group_mem".to_owned(),
                77,
                vec![
                    (T_STRING, 1, json!("Unknown function show_group_mem")),
                    (T_I32, 2, json!(UNKNOWN_METHOD)),
                ]
            )
        );
        // A ONEWAY call gets nothing back.
        let oneway = call_of(ONEWAY, "recv", 1, &[]);
        assert!(answer(&mut p, &oneway, Ok(json!({}))).is_empty());
        // A reply to no call writes nothing.
        let mut dst = BytesMut::new();
        p.encode_reply(&Reply::ok(json!(999), None, json!({})), &mut dst)
            .unwrap();
        assert!(dst.is_empty());
    }

    fn queued(user: &str, since: u64, id: &str, line: &str) -> Push {
        let q = Queued {
            owner: Owner {
                user: user.into(),
                since,
            },
            id: id.into(),
            line: line.into(),
        };
        Push::new(pushes::QUEUED, serde_json::to_value(q).unwrap())
    }

    /// A `recv` call: the ack it carries and what its reply says.
    fn poll(p: &mut Thrift, result: Result<(), ApiError>) -> (Value, String) {
        let mut buf = BytesMut::from(&call("recv", 9, &req("gus", json!({})))[..]);
        let Some(Decoded::Call(c)) = p.decode(&mut buf).unwrap() else {
            panic!("a recv call");
        };
        let reply = Reply {
            id: c.id,
            api: Some(c.api),
            result: result.map(|()| json!({})),
        };
        let mut dst = BytesMut::new();
        p.encode_reply(&reply, &mut dst).unwrap();
        (c.params["ack"].clone(), result_of(&dst))
    }

    #[test]
    fn recv_hands_out_the_current_logins_messages_one_at_a_time() {
        let mut p = Thrift::new(64 * 1024);
        let mut dst = BytesMut::new();
        // Nothing is written for deliveries, nor for other pushes.
        p.encode_push(&queued("gus", 1, "m1", "a"), &mut dst)
            .unwrap();
        p.encode_push(&Push::new("message", json!({"text": "x"})), &mut dst)
            .unwrap();
        assert!(dst.is_empty());
        // Not logged in: nothing waits for this connection yet.
        assert_eq!(poll(&mut p, Ok(())), (Value::Null, String::new()));
        let login = call("login", 1, &req("gus", json!({"password": "pw"})));
        answer(&mut p, &login, Ok(json!({"user": "gus", "since": 1})));
        p.encode_push(&queued("gus", 1, "m2", "b"), &mut dst)
            .unwrap();
        assert_eq!(poll(&mut p, Ok(())), (json!("m1"), "a".into()));
        // A refused poll (rate limited) keeps the message for the next one.
        let limited = ApiError::new(429, "rate_limited", "slow down");
        assert_eq!(poll(&mut p, Err(limited)), (json!("m2"), String::new()));
        assert_eq!(poll(&mut p, Ok(())), (json!("m2"), "b".into()));
        assert_eq!(poll(&mut p, Ok(())), (Value::Null, String::new()));
        // Another login on the connection: the older one's messages are
        // not handed out (never acked, they come again to their owner).
        p.encode_push(&queued("gus", 1, "m3", "old"), &mut dst)
            .unwrap();
        p.encode_push(&queued("ann", 2, "m4", "new"), &mut dst)
            .unwrap();
        let login = call("login", 2, &req("ann", json!({"password": "pw"})));
        answer(&mut p, &login, Ok(json!({"user": "ann", "since": 2})));
        p.encode_push(&queued("gus", 1, "m5", "late"), &mut dst)
            .unwrap();
        p.encode_push(&queued("ann", 2, "m6", "new2"), &mut dst)
            .unwrap();
        assert_eq!(poll(&mut p, Ok(())), (json!("m4"), "new".into()));
        assert_eq!(poll(&mut p, Ok(())), (json!("m6"), "new2".into()));
        assert_eq!(poll(&mut p, Ok(())), (Value::Null, String::new()));
        assert!(dst.is_empty());
    }

    #[test]
    fn the_queue_is_bounded() {
        let mut p = Thrift::new(64 * 1024);
        let login = call("login", 1, &req("gus", json!({"password": "pw"})));
        answer(&mut p, &login, Ok(json!({"user": "gus", "since": 1})));
        let mut dst = BytesMut::new();
        for i in 0..MAX_QUEUED + 10 {
            p.encode_push(&queued("gus", 1, &format!("m{i}"), "x"), &mut dst)
                .unwrap();
        }
        assert_eq!(p.queue.len(), MAX_QUEUED);
        let big = "y".repeat(MAX_QUEUED_BYTES);
        let mut q = Thrift::new(64 * 1024);
        q.encode_push(&queued("gus", 1, "a", "small"), &mut dst)
            .unwrap();
        q.encode_push(&queued("gus", 1, "b", &big), &mut dst)
            .unwrap();
        assert_eq!(q.queue.len(), 1, "past the byte bound");
        assert_eq!(q.queued_bytes, 5);
    }

    #[test]
    fn python_reprs() {
        assert_eq!(py_repr("gus"), "'gus'");
        assert_eq!(py_repr("张三"), "'张三'");
        assert_eq!(py_repr("it's"), "\"it's\"");
        assert_eq!(py_repr("a'b\"c"), "'a\\'b\"c'");
        assert_eq!(py_repr("a\\b\n\u{1}"), "'a\\\\b\\n\\x01'");
        assert_eq!(py_dict_keys(&[]), "dict_keys([])");
        assert_eq!(py_groups(&[]), "{}");
    }

    /// homer's conformance check for any protocol: any bytes cut anywhere
    /// never panic nor buffer past the limit; the sample decodes the same at
    /// every cut.
    #[test]
    fn conforms() {
        let mut sample = call("login", 1, &req("gus", json!({"password": "p 你好"})));
        sample.extend(call_of(
            CALL,
            "recv",
            2,
            &[
                string_field(3, b"x"),
                vec![T_LIST, 0, 4, T_I16, 0, 0, 0, 2, 0, 1, 0, 2],
            ]
            .concat(),
        ));
        sample.extend(call("show_group_mem", 3, "{}"));
        homer::testing::check_protocol(|| Thrift::new(256), &sample, 256);
    }
}
