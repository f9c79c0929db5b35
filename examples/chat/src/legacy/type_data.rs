//! The type-data protocol (PROTOCOL.md §3): the Go "massive users chat
//! room" course project's packets, a 4-byte big-endian length and
//! `{"type":"<name>","data":"<JSON as a string>"}`.
//!
//! Framing is tokio-util's [`LengthDelimitedCodec`]; a length over the frame
//! limit is refused from the header alone, before anything is allocated.

use bytes::{BufMut, BytesMut};
use homer::{ApiError, Call, Decoded, Limits, MakeProtocol, Protocol, ProtocolError, Push, Reply};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio_util::codec::{Decoder, LengthDelimitedCodec};

use super::api::{Dest, LoginParams, NO_SUCH_USER, RegisterParams, SendParams, TypeDataLogin};
use super::{Hold, apis, pushes};

/// The protocol's name ([`homer::Connection::protocol`]).
pub(crate) const NAME: &str = "type-data";

/// `NotifyUserStatusMes` statuses.
pub(crate) const ONLINE: u8 = 0;
pub(crate) const OFFLINE: u8 = 1;

pub(crate) const LOGIN_MES: &str = "LoginMes";
pub(crate) const LOGIN_RES_MES: &str = "LoginResMes";
pub(crate) const REGISTER_MES: &str = "RegisterMes";
pub(crate) const REGISTER_RES_MES: &str = "RegisterResMes";
pub(crate) const NOTIFY_USER_STATUS_MES: &str = "NotifyUserStatusMes";
pub(crate) const SMS_MES: &str = "SmsMes";

/// Makes [`TypeData`] with the server's frame limit.
pub(crate) fn make() -> impl MakeProtocol<Protocol = TypeData> {
    |limits: &Limits| TypeData::new(limits.max_frame_size())
}

// ---------------------------------------------------------------------------
// Shapes.

/// A packet's body as received: both fields strings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Packet {
    #[serde(rename = "type")]
    kind: String,
    data: String,
}

#[derive(Serialize)]
struct PacketOut<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    data: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LoginMes {
    user_id: u64,
    user_pwd: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserMes {
    user_id: u64,
    user_pwd: String,
    user_name: String,
}

#[derive(Deserialize)]
struct RegisterMes {
    user: UserMes,
}

#[derive(Deserialize)]
struct SmsIn {
    content: String,
}

#[derive(Serialize)]
struct LoginResMes<'a> {
    code: u16,
    #[serde(rename = "UsersId")]
    users_id: &'a [u64],
    error: &'a str,
}

#[derive(Serialize)]
struct RegisterResMes<'a> {
    code: u16,
    error: &'a str,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct NotifyUserStatusMes {
    user_id: u64,
    status: u8,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SmsOut<'a> {
    content: &'a str,
    user_id: u64,
    user_pwd: &'a str,
    user_name: &'a str,
    user_status: u8,
    sex: &'a str,
}

fn to_json<T: Serialize>(value: &T) -> String {
    // These shapes cannot fail to serialise; if one did, it would be `""`.
    serde_json::to_string(value).unwrap_or_default()
}

/// The body of a packet of type `kind` carrying `data`.
fn packet<T: Serialize>(kind: &str, data: &T) -> String {
    to_json(&PacketOut {
        kind,
        data: to_json(data),
    })
}

/// The body of an `SmsMes` packet: `content` from user `user_id` (`user_name`).
pub(crate) fn sms(content: &str, user_id: u64, user_name: &str) -> String {
    packet(
        SMS_MES,
        &SmsOut {
            content,
            user_id,
            user_pwd: "",
            user_name,
            user_status: ONLINE,
            sex: "",
        },
    )
}

/// `body` with its 4-byte big-endian length.
fn put_packet(dst: &mut BytesMut, body: &str) {
    let Ok(len) = u32::try_from(body.len()) else {
        tracing::warn!(
            len = body.len(),
            "dropping a type-data packet too large for its length field"
        );
        return;
    };
    dst.reserve(4 + body.len());
    dst.put_u32(len);
    dst.put_slice(body.as_bytes());
}

// ---------------------------------------------------------------------------
// The protocol.

/// The type-data [`Protocol`] for one connection.
#[derive(Debug)]
pub(crate) struct TypeData {
    codec: LengthDelimitedCodec,
    max_frame: usize,
    /// The codec waits for a header (not for the body of a frame).
    at_head: bool,
    next_id: u64,
    /// The logged-in user's number, and the one a login in flight is for:
    /// their own status changes are not sent.
    me: Option<u64>,
    logging_in: Option<u64>,
    hold: Hold,
}

impl TypeData {
    /// Packets of at most `max_frame` bytes after the length.
    pub(crate) fn new(max_frame: usize) -> Self {
        TypeData {
            codec: LengthDelimitedCodec::builder()
                .big_endian()
                .length_field_length(4)
                .max_frame_length(max_frame)
                .new_codec(),
            max_frame,
            at_head: true,
            next_id: 0,
            me: None,
            logging_in: None,
            hold: Hold::default(),
        }
    }

    fn call<P: Serialize>(&mut self, api: &str, params: &P) -> Decoded {
        self.next_id += 1;
        let params = serde_json::to_value(params).unwrap_or(Value::Null);
        Decoded::Call(Call::new(self.next_id, api, params))
    }

    fn refuse(&mut self, api: &str, what: &str, e: serde_json::Error) -> Decoded {
        self.next_id += 1;
        let error = ApiError::bad_request("bad_params", format!("malformed {what}: {e}"));
        Decoded::Reply(Reply::error(
            Value::from(self.next_id),
            Some(api.to_owned()),
            error,
        ))
    }

    /// The call for one packet, or `None` for a packet to ignore.
    fn translate(&mut self, packet: Packet) -> Option<Decoded> {
        let decoded = match packet.kind.as_str() {
            LOGIN_MES => {
                self.hold.login_sent();
                match serde_json::from_str::<LoginMes>(&packet.data) {
                    Ok(m) => {
                        self.logging_in = Some(m.user_id);
                        self.call(
                            apis::LOGIN,
                            &LoginParams {
                                number: m.user_id,
                                password: m.user_pwd,
                            },
                        )
                    }
                    Err(e) => self.refuse(apis::LOGIN, LOGIN_MES, e),
                }
            }
            REGISTER_MES => match serde_json::from_str::<RegisterMes>(&packet.data) {
                Ok(m) => self.call(
                    apis::REGISTER,
                    &RegisterParams {
                        name: m.user.user_name,
                        password: m.user.user_pwd,
                        number: Some(m.user.user_id),
                    },
                ),
                Err(e) => self.refuse(apis::REGISTER, REGISTER_MES, e),
            },
            SMS_MES => match serde_json::from_str::<SmsIn>(&packet.data) {
                Ok(m) => self.call(
                    apis::SEND,
                    &SendParams {
                        to: Dest::Group(0),
                        text: m.content,
                    },
                ),
                Err(e) => {
                    tracing::debug!(error = %e, "ignoring a malformed SmsMes");
                    return None;
                }
            },
            other => {
                tracing::debug!(
                    kind = other,
                    "ignoring a type-data packet of an unknown type"
                );
                return None;
            }
        };
        Some(decoded)
    }
}

impl Protocol for TypeData {
    fn name(&self) -> &'static str {
        NAME
    }

    fn idle_timeout(&self) -> Option<std::time::Duration> {
        Some(super::IDLE)
    }

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Decoded>, ProtocolError> {
        loop {
            // The codec refuses such a length too, before allocating; looking
            // first gives the error its numbers.
            let head = self.at_head && src.len() >= 4;
            if head {
                let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
                let len = usize::try_from(len).unwrap_or(usize::MAX);
                if len > self.max_frame {
                    return Err(ProtocolError::FrameTooLarge {
                        len,
                        limit: self.max_frame,
                    });
                }
            }
            let Some(body) = self.codec.decode(src)? else {
                // A complete header was taken off: the body is awaited.
                self.at_head &= !head;
                return Ok(None);
            };
            self.at_head = true;
            let packet: Packet = serde_json::from_slice(&body).map_err(|e| {
                ProtocolError::Invalid(format!(
                    "a type-data packet is {{\"type\":<string>,\"data\":<string>}}: {e}"
                ))
            })?;
            if let Some(decoded) = self.translate(packet) {
                return Ok(Some(decoded));
            }
        }
    }

    fn encode_reply(&mut self, reply: &Reply, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match (reply.api.as_deref(), &reply.result) {
            (Some(apis::LOGIN), result) => {
                let ok = result
                    .as_ref()
                    .map(|c| serde_json::from_value::<TypeDataLogin>(c.clone()));
                let body = match ok {
                    Ok(Ok(login)) => {
                        self.me = Some(login.number);
                        packet(
                            LOGIN_RES_MES,
                            &LoginResMes {
                                code: 200,
                                users_id: &login.users,
                                error: "",
                            },
                        )
                    }
                    Ok(Err(e)) => {
                        login_failed(&ApiError::internal(format!("unexpected login answer: {e}")))
                    }
                    Err(e) => login_failed(e),
                };
                put_packet(dst, &body);
                self.logging_in = None;
                // A successful login's offline messages and release follow.
                self.hold.login_answered(reply.result.is_ok(), dst);
            }
            (Some(apis::REGISTER), result) => {
                let (code, error) = match result {
                    Ok(_) => (200, String::new()),
                    Err(e) if e.code() == "number_taken" => (505, e.message().to_owned()),
                    Err(e) => (506, e.message().to_owned()),
                };
                put_packet(
                    dst,
                    &packet(
                        REGISTER_RES_MES,
                        &RegisterResMes {
                            code,
                            error: &error,
                        },
                    ),
                );
            }
            (api, Err(e)) => {
                tracing::debug!(?api, status = e.status(), error = %e.message(), "a type-data message failed (this protocol has no answer for it)");
            }
            (_, Ok(_)) => {}
        }
        Ok(())
    }

    fn encode_push(&mut self, push: &Push, dst: &mut BytesMut) -> Result<(), ProtocolError> {
        match push.kind() {
            pushes::OBJECT | pushes::OFFLINE => {
                let Some(body) = push.content().as_str() else {
                    return Ok(());
                };
                let mut frame = BytesMut::new();
                put_packet(&mut frame, body);
                if push.kind() == pushes::OFFLINE {
                    dst.extend_from_slice(&frame);
                } else {
                    self.hold.write(&frame, dst);
                }
            }
            pushes::STATUS => {
                let Ok(status) =
                    serde_json::from_value::<NotifyUserStatusMes>(push.content().clone())
                else {
                    return Ok(());
                };
                if self.me == Some(status.user_id) || self.logging_in == Some(status.user_id) {
                    return Ok(());
                }
                let mut frame = BytesMut::new();
                put_packet(&mut frame, &packet(NOTIFY_USER_STATUS_MES, &status));
                self.hold.write(&frame, dst);
            }
            pushes::RELEASE => self.hold.release_seen(dst),
            _ => {} // no shape in this protocol
        }
        Ok(())
    }
}

/// `LoginResMes` for a failed login: 500 no such user, 403 wrong password,
/// 505 anything else.
fn login_failed(e: &ApiError) -> String {
    let code = match e.status() {
        NO_SUCH_USER => 500,
        401 => 403,
        _ => 505,
    };
    packet(
        LOGIN_RES_MES,
        &LoginResMes {
            code,
            users_id: &[],
            error: e.message(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn frame(body: &[u8]) -> Vec<u8> {
        let mut out = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    fn packet_of(kind: &str, data: Value) -> Vec<u8> {
        frame(
            json!({"type": kind, "data": data.to_string()})
                .to_string()
                .as_bytes(),
        )
    }

    /// Feed `chunks`; each item as `api params`, `reply <api> <status>`, or
    /// the error that closed the connection.
    fn decode_all(chunks: &[&[u8]], max: usize) -> Vec<String> {
        let mut p = TypeData::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            loop {
                match p.decode(&mut buf) {
                    Ok(Some(Decoded::Call(c))) => {
                        let mut params = c.params;
                        params.sort_all_objects();
                        out.push(format!("{} {params}", c.api));
                    }
                    Ok(Some(Decoded::Reply(r))) => out.push(format!(
                        "reply {} {}",
                        r.api.as_deref().unwrap_or_default(),
                        r.status()
                    )),
                    Ok(Some(other)) => out.push(format!("{other:?}")),
                    Ok(None) => break,
                    Err(e) => {
                        out.push(format!("error: {e}"));
                        return out;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn every_type_becomes_its_call() {
        let check = |input: Vec<u8>, expected: &[&str]| {
            assert_eq!(
                decode_all(&[&input], 64 * 1024),
                expected,
                "{}",
                String::from_utf8_lossy(&input)
            );
        };
        check(
            packet_of(
                LOGIN_MES,
                json!({"userId": 100, "userPwd": "pw", "userName": ""}),
            ),
            &[r#"legacy.login {"number":100,"password":"pw"}"#],
        );
        check(
            packet_of(
                REGISTER_MES,
                json!({"user": {"userId": 200, "userPwd": "pw", "userName": "tom"}}),
            ),
            &[r#"legacy.register {"name":"tom","number":200,"password":"pw"}"#],
        );
        check(
            packet_of(
                SMS_MES,
                json!({"content": "hi all", "userId": 100, "userPwd": "", "userName": "tom", "userStatus": 0, "sex": ""}),
            ),
            &[r#"legacy.send {"text":"hi all","to":{"group":0}}"#],
        );
        // Wrong shapes: login and registration are answered, SmsMes ignored.
        check(
            packet_of(LOGIN_MES, json!({"userId": "x"})),
            &["reply legacy.login 400"],
        );
        check(
            packet_of(REGISTER_MES, json!({"userId": 1})),
            &["reply legacy.register 400"],
        );
        check(packet_of(SMS_MES, json!({"text": "x"})), &[]);
        // Unknown and server-side types are ignored.
        check(packet_of("NoSuchMes", json!({})), &[]);
        check(packet_of(LOGIN_RES_MES, json!({"code": 200})), &[]);
    }

    #[test]
    fn framing_coalesced_split_and_refused() {
        let login = packet_of(LOGIN_MES, json!({"userId": 1, "userPwd": "a"}));
        let sms = packet_of(SMS_MES, json!({"content": "x"}));
        let both: Vec<u8> = [login.clone(), sms.clone()].concat();
        let calls = [
            r#"legacy.login {"number":1,"password":"a"}"#,
            r#"legacy.send {"text":"x","to":{"group":0}}"#,
        ];
        // Coalesced in one read.
        assert_eq!(decode_all(&[&both], 1024), calls);
        // Byte by byte.
        let bytes: Vec<&[u8]> = both.chunks(1).collect();
        assert_eq!(decode_all(&bytes, 1024), calls);
        // Header and body in separate writes, as the Go client sends them.
        assert_eq!(decode_all(&[&login[..4], &login[4..]], 1024), &calls[..1]);

        let check_error = |chunks: &[&[u8]], max: usize, expected: &str| {
            let out = decode_all(chunks, max);
            let last = out.last().cloned().unwrap_or_default();
            assert!(
                last.starts_with("error:") && last.contains(expected),
                "{chunks:?}: {out:?}"
            );
        };
        // A length over the limit is refused from the header alone.
        check_error(
            &[&[0xff, 0xff, 0xff, 0xff]],
            65_536,
            "frame of 4294967295 bytes exceeds the 65536-byte limit",
        );
        check_error(
            &[&[0, 0, 4, 1]],
            1024,
            "frame of 1025 bytes exceeds the 1024-byte limit",
        );
        // A body that is not {"type": string, "data": string}.
        check_error(&[&frame(b"garbage")], 1024, "a type-data packet is");
        check_error(
            &[&frame(br#"{"type":"SmsMes","data":{"content":"x"}}"#)],
            1024,
            "a type-data packet is",
        );
        check_error(&[&frame(b"")], 1024, "a type-data packet is");
    }

    fn encoded(write: impl FnOnce(&mut TypeData, &mut BytesMut)) -> Vec<(String, Value)> {
        let mut p = TypeData::new(64 * 1024);
        let mut dst = BytesMut::new();
        write(&mut p, &mut dst);
        let mut out = Vec::new();
        let mut rest = &dst[..];
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[..4].try_into().unwrap()) as usize;
            let body: Value = serde_json::from_slice(&rest[4..4 + len]).unwrap();
            let data: Value = serde_json::from_str(body["data"].as_str().unwrap()).unwrap();
            out.push((body["type"].as_str().unwrap().to_owned(), data));
            rest = &rest[4 + len..];
        }
        out
    }

    #[test]
    fn answers_and_pushes_have_the_exact_shapes() {
        let check = |reply: Reply, kind: &str, data: Value| {
            assert_eq!(
                encoded(|p, dst| p.encode_reply(&reply, dst).unwrap()),
                [(kind.to_owned(), data)],
                "{reply:?}"
            );
        };
        let login = |result: Result<Value, ApiError>| Reply {
            id: json!(1),
            api: Some(apis::LOGIN.into()),
            result,
        };
        check(
            login(Ok(json!({"number": 100, "users": [100, 200]}))),
            LOGIN_RES_MES,
            json!({"code": 200, "UsersId": [100, 200], "error": ""}),
        );
        check(
            login(Err(ApiError::new(
                NO_SUCH_USER,
                "no_such_user",
                "no user has number 7",
            ))),
            LOGIN_RES_MES,
            json!({"code": 500, "UsersId": [], "error": "no user has number 7"}),
        );
        check(
            login(Err(ApiError::unauthorized(
                "bad_credentials",
                "wrong name or password",
            ))),
            LOGIN_RES_MES,
            json!({"code": 403, "UsersId": [], "error": "wrong name or password"}),
        );
        check(
            login(Err(ApiError::internal("boom"))),
            LOGIN_RES_MES,
            json!({"code": 505, "UsersId": [], "error": "boom"}),
        );
        let register = |result: Result<Value, ApiError>| Reply {
            id: json!(2),
            api: Some(apis::REGISTER.into()),
            result,
        };
        check(
            register(Ok(json!({"number": 200}))),
            REGISTER_RES_MES,
            json!({"code": 200, "error": ""}),
        );
        check(
            register(Err(ApiError::conflict(
                "number_taken",
                "this number is taken",
            ))),
            REGISTER_RES_MES,
            json!({"code": 505, "error": "this number is taken"}),
        );
        check(
            register(Err(ApiError::conflict("name_taken", "this name is taken"))),
            REGISTER_RES_MES,
            json!({"code": 506, "error": "this name is taken"}),
        );
        // SmsMes and status pushes.
        let got = encoded(|p, dst| {
            p.encode_push(
                &Push::new(
                    pushes::OBJECT,
                    Value::String(sms("(private) hi", 100, "tom")),
                ),
                dst,
            )
            .unwrap();
            p.encode_push(
                &Push::new(pushes::STATUS, json!({"userId": 300, "status": OFFLINE})),
                dst,
            )
            .unwrap();
            p.encode_push(&Push::new("message", json!({"text": "native"})), dst)
                .unwrap();
        });
        assert_eq!(
            got,
            [
                (
                    SMS_MES.to_owned(),
                    json!({"content": "(private) hi", "userId": 100, "userPwd": "", "userName": "tom", "userStatus": 0, "sex": ""})
                ),
                (
                    NOTIFY_USER_STATUS_MES.to_owned(),
                    json!({"userId": 300, "status": 1})
                ),
            ]
        );
    }

    #[test]
    fn nothing_is_written_before_the_login_answer_and_own_status_is_skipped() {
        let got = encoded(|p, dst| {
            let mut src =
                BytesMut::from(&packet_of(LOGIN_MES, json!({"userId": 100, "userPwd": "pw"}))[..]);
            let Ok(Some(Decoded::Call(call))) = p.decode(&mut src) else {
                panic!("a login call")
            };
            p.encode_push(
                &Push::new(pushes::STATUS, json!({"userId": 200, "status": ONLINE})),
                dst,
            )
            .unwrap();
            p.encode_push(
                &Push::new(pushes::OBJECT, Value::String(sms("live", 200, "ann"))),
                dst,
            )
            .unwrap();
            let ok = Reply::ok(
                call.id,
                Some(apis::LOGIN.into()),
                json!({"number": 100, "users": [100, 200]}),
            );
            p.encode_reply(&ok, dst).unwrap();
            p.encode_push(
                &Push::new(pushes::OFFLINE, Value::String(sms("offline", 200, "ann"))),
                dst,
            )
            .unwrap();
            p.encode_push(&Push::new(pushes::RELEASE, Value::Null), dst)
                .unwrap();
            p.encode_push(
                &Push::new(pushes::STATUS, json!({"userId": 100, "status": ONLINE})),
                dst,
            )
            .unwrap();
        });
        let kinds: Vec<(&str, Value)> = got
            .iter()
            .map(|(k, d)| (k.as_str(), d["content"].clone()))
            .collect();
        assert_eq!(
            kinds,
            [
                (LOGIN_RES_MES, Value::Null),
                (SMS_MES, json!("offline")),
                (NOTIFY_USER_STATUS_MES, Value::Null),
                (SMS_MES, json!("live")),
            ]
        );
    }

    proptest! {
        /// However packets are cut into reads, the same calls come out.
        #[test]
        fn framing_does_not_depend_on_read_boundaries(
            texts in proptest::collection::vec(".{0,20}", 1..6),
            cuts in proptest::collection::vec(0usize..400, 0..8),
        ) {
            let stream: Vec<u8> = texts.iter().flat_map(|t| packet_of(SMS_MES, json!({"content": t}))).collect();
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
            cuts.sort_unstable();
            let mut chunks: Vec<&[u8]> = Vec::new();
            let mut at = 0;
            for c in cuts {
                chunks.push(&stream[at..c]);
                at = c;
            }
            chunks.push(&stream[at..]);
            let expected: Vec<String> = texts.iter().map(|t| {
                let mut v = json!({"to": {"group": 0}, "text": t});
                v.sort_all_objects();
                format!("legacy.send {v}")
            }).collect();
            prop_assert_eq!(decode_all(&chunks, 64 * 1024), expected);
        }
    }

    /// homer's conformance check for any protocol: any bytes cut anywhere
    /// never panic nor buffer past a header and the limit; the sample
    /// (packets of several kinds) decodes the same at every cut.
    #[test]
    fn conforms() {
        let mut sample = packet_of(SMS_MES, json!({"content": "hi 你好 \"}\""}));
        sample.extend(packet_of(LOGIN_MES, json!({"userId": 1, "userPwd": "p"})));
        sample.extend(packet_of(SMS_MES, json!({"content": "after"})));
        homer::testing::check_protocol(|| TypeData::new(128), &sample, 4 + 128);
    }
}
