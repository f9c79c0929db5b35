//! The envelope every broker routes, and its wire format.
//!
//! # Wire format
//!
//! Both brokers store and transmit an envelope as one self-describing frame
//! (the AMQP message body, the `tiny_q` item, the stream entry). Integers are
//! big-endian:
//!
//! ```text
//!  0     1     2       3                 7                  7+H            end
//!  +-----+-----+-------+-----------------+------------------+--------------+
//!  | 'I' | 'M' | ver=1 | H: u32 (BE)     | header: H bytes  | body bytes   |
//!  |     |     |       |                 | of UTF-8 JSON    | (raw)        |
//!  +-----+-----+-------+-----------------+------------------+--------------+
//! ```
//!
//! The JSON header carries every field but the body:
//! `{"v":1,"id":"0192…","from":"alice","from_ip":"10.0.0.7","to":{"room":"rust"},"ts":1732350000123,"content_type":"text/plain"}`.
//! A reader refuses frames with a newer frame version, a header that does not
//! fit, or a body over its limit, with a [`DecodeError`] — never a panic.
//!
//! [`Envelope`] also implements serde (the body as base64) for applications
//! that want to store or print it; that JSON is not the wire format.

use std::net::IpAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::DecodeError;
use crate::{RoomId, UserId};

/// The envelope format version written by this build (the `v` field).
pub const ENVELOPE_VERSION: u16 = 1;

/// The longest content type, in bytes.
pub const MAX_CONTENT_TYPE_LEN: usize = 127;

const MAGIC: [u8; 2] = *b"IM";
const FRAME_VERSION: u8 = 1;
const PREFIX_LEN: usize = 7;
/// Headers are small (ids are at most 64 bytes); anything larger is garbage.
const MAX_HEADER_LEN: usize = 4096;

/// Where an envelope goes.
///
/// In JSON: `{"room":"rust"}`, `{"user":"bob"}`, `{"user":"bob","room":"rust"}`
/// or `{"everyone":true}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "ToRepr", into = "ToRepr")]
#[non_exhaustive]
pub enum To {
    /// Every member of the room; kept in the room's history.
    Room(RoomId),
    /// One user's inbox.
    User(UserId),
    /// One user's inbox, in the context of a room (a private message inside a
    /// group). Routed like [`To::User`]; not kept in the room's history. The
    /// broker does not check membership: the application does.
    UserInRoom {
        /// The recipient.
        user: UserId,
        /// The room the message belongs to.
        room: RoomId,
    },
    /// Every inbox there is (announcements).
    Everyone,
}

impl To {
    /// The recipient user, for [`To::User`] and [`To::UserInRoom`].
    pub fn user(&self) -> Option<&UserId> {
        match self {
            To::User(user) | To::UserInRoom { user, .. } => Some(user),
            _ => None,
        }
    }

    /// The room, for [`To::Room`] and [`To::UserInRoom`].
    pub fn room(&self) -> Option<&RoomId> {
        match self {
            To::Room(room) | To::UserInRoom { room, .. } => Some(room),
            _ => None,
        }
    }
}

#[derive(Serialize, Deserialize)]
struct ToRepr {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    room: Option<RoomId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    user: Option<UserId>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    everyone: bool,
}

impl TryFrom<ToRepr> for To {
    type Error = String;
    fn try_from(r: ToRepr) -> Result<Self, String> {
        match (r.room, r.user, r.everyone) {
            (Some(room), None, false) => Ok(To::Room(room)),
            (None, Some(user), false) => Ok(To::User(user)),
            (Some(room), Some(user), false) => Ok(To::UserInRoom { user, room }),
            (None, None, true) => Ok(To::Everyone),
            _ => Err("expected `to` to be {\"room\"}, {\"user\"}, {\"user\",\"room\"} or {\"everyone\":true}".into()),
        }
    }
}

impl From<To> for ToRepr {
    fn from(to: To) -> Self {
        let (room, user, everyone) = match to {
            To::Room(room) => (Some(room), None, false),
            To::User(user) => (None, Some(user), false),
            To::UserInRoom { user, room } => (Some(room), Some(user), false),
            To::Everyone => (None, None, true),
        };
        ToRepr {
            room,
            user,
            everyone,
        }
    }
}

/// A message on its way: who sent it, from where, to whom, when, and the bytes.
///
/// The server fills `from` and `from_ip` from the session and the connection;
/// never trust a client for them. Build one with [`Envelope::new`] or
/// [`Envelope::builder`]; `id` is a uuid v7, so ids sort by creation time.
///
/// ```
/// use rmq_core::{Envelope, RoomId, To, UserId};
///
/// let env = Envelope::builder(UserId::new("alice")?, To::Room(RoomId::new("rust")?))
///     .from_ip("10.0.0.7".parse()?)
///     .content_type("text/plain")
///     .body("hi")
///     .build();
/// assert_eq!(env.id.get_version_num(), 7);
/// let back = Envelope::decode(&env.encode(), 1024)?;
/// assert_eq!(back, env);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Envelope {
    /// Format version ([`ENVELOPE_VERSION`] when written by this build).
    pub v: u16,
    /// Unique id, a uuid v7 (time-ordered); clients de-duplicate by it.
    pub id: Uuid,
    /// The sender, set by the server.
    pub from: UserId,
    /// The sender's address (no port), set by the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from_ip: Option<IpAddr>,
    /// The destination.
    pub to: To,
    /// Creation time, milliseconds since the Unix epoch.
    pub ts: u64,
    /// MIME type of the body.
    pub content_type: String,
    /// The payload (base64 in serde JSON).
    #[serde(with = "b64")]
    pub body: Vec<u8>,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The millisecond timestamp inside a uuid v7 (0 for other versions).
#[cfg(feature = "amqp")]
pub(crate) fn uuid_ms(id: &Uuid) -> u64 {
    if id.get_version_num() != 7 {
        return 0;
    }
    let b = id.as_bytes();
    u64::from_be_bytes([0, 0, b[0], b[1], b[2], b[3], b[4], b[5]])
}

/// Refuse content types that would not fit the wire header.
pub(crate) fn check_content_type(env: &Envelope) -> crate::Result<()> {
    let ct = &env.content_type;
    if ct.len() > MAX_CONTENT_TYPE_LEN {
        return Err(crate::Error::InvalidEnvelope {
            id: env.id,
            reason: format!(
                "content type of {} bytes exceeds the {MAX_CONTENT_TYPE_LEN}-byte limit",
                ct.len()
            ),
        });
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct Header {
    v: u16,
    id: Uuid,
    from: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    from_ip: Option<IpAddr>,
    to: To,
    ts: u64,
    content_type: String,
}

impl Envelope {
    /// A new envelope with a fresh uuid v7, the current time, no sender
    /// address and content type `application/octet-stream`.
    pub fn new(from: UserId, to: To, body: impl Into<Vec<u8>>) -> Self {
        Envelope {
            v: ENVELOPE_VERSION,
            id: Uuid::now_v7(),
            from,
            from_ip: None,
            to,
            ts: now_ms(),
            content_type: "application/octet-stream".into(),
            body: body.into(),
        }
    }

    /// Start building an envelope from `from` to `to`.
    pub fn builder(from: UserId, to: To) -> EnvelopeBuilder {
        EnvelopeBuilder {
            env: Envelope::new(from, to, Vec::new()),
        }
    }

    /// Encode as one wire frame (see the [module docs](self)).
    pub fn encode(&self) -> Vec<u8> {
        let header = Header {
            v: self.v,
            id: self.id,
            from: self.from.clone(),
            from_ip: self.from_ip,
            to: self.to.clone(),
            ts: self.ts,
            content_type: self.content_type.clone(),
        };
        // Serializing plain data with string keys cannot fail.
        let json = serde_json::to_vec(&header).unwrap_or_default();
        let header_len = u32::try_from(json.len()).unwrap_or(u32::MAX);
        let mut out = Vec::with_capacity(PREFIX_LEN + json.len() + self.body.len());
        out.extend_from_slice(&MAGIC);
        out.push(FRAME_VERSION);
        out.extend_from_slice(&header_len.to_be_bytes());
        out.extend_from_slice(&json);
        out.extend_from_slice(&self.body);
        out
    }

    /// Decode one wire frame, refusing bodies over `max_body` bytes.
    pub fn decode(frame: &[u8], max_body: usize) -> Result<Envelope, DecodeError> {
        if frame.len() < PREFIX_LEN {
            return Err(DecodeError::Truncated {
                len: frame.len(),
                min: PREFIX_LEN,
            });
        }
        let magic = [frame[0], frame[1]];
        if magic != MAGIC {
            return Err(DecodeError::BadMagic {
                found: magic,
                expected: MAGIC,
            });
        }
        if frame[2] != FRAME_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                found: frame[2],
                supported: FRAME_VERSION,
            });
        }
        let header_len = u32::from_be_bytes([frame[3], frame[4], frame[5], frame[6]]) as usize;
        let rest = &frame[PREFIX_LEN..];
        if header_len > rest.len() || header_len > MAX_HEADER_LEN {
            return Err(DecodeError::BadHeaderLength {
                header: header_len,
                len: frame.len(),
            });
        }
        let (json, body) = rest.split_at(header_len);
        if body.len() > max_body {
            return Err(DecodeError::BodyTooLarge {
                size: body.len(),
                limit: max_body,
            });
        }
        let h: Header = serde_json::from_slice(json).map_err(|e| DecodeError::BadHeader {
            reason: e.to_string(),
        })?;
        if h.content_type.len() > MAX_CONTENT_TYPE_LEN {
            return Err(DecodeError::BadHeader {
                reason: format!(
                    "content type of {} bytes exceeds the {MAX_CONTENT_TYPE_LEN}-byte limit",
                    h.content_type.len()
                ),
            });
        }
        Ok(Envelope {
            v: h.v,
            id: h.id,
            from: h.from,
            from_ip: h.from_ip,
            to: h.to,
            ts: h.ts,
            content_type: h.content_type,
            body: body.to_vec(),
        })
    }
}

/// Builds an [`Envelope`]; see [`Envelope::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct EnvelopeBuilder {
    env: Envelope,
}

impl EnvelopeBuilder {
    /// The sender's address.
    pub fn from_ip(mut self, ip: IpAddr) -> Self {
        self.env.from_ip = Some(ip);
        self
    }

    /// The body's MIME type (default `application/octet-stream`; at most 127 bytes).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.env.content_type = content_type.into();
        self
    }

    /// The payload.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.env.body = body.into();
        self
    }

    /// Override the id (default: a fresh uuid v7). Use to re-send a message
    /// under the id a client already knows.
    pub fn id(mut self, id: Uuid) -> Self {
        self.env.id = id;
        self
    }

    /// Override the timestamp (milliseconds since the Unix epoch; default: now).
    pub fn ts(mut self, ts: u64) -> Self {
        self.env.ts = ts;
        self
    }

    /// The envelope.
    pub fn build(self) -> Envelope {
        self.env
    }
}

/// Serde helper: bytes as standard base64 with padding.
pub(crate) mod b64 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

    pub(crate) fn encode(bytes: &[u8]) -> String {
        let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
        for chunk in bytes.chunks(3) {
            let b = [
                chunk[0],
                chunk.get(1).copied().unwrap_or(0),
                chunk.get(2).copied().unwrap_or(0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
                } else {
                    out.push('=');
                }
            }
        }
        out
    }

    pub(crate) fn decode(text: &str) -> Result<Vec<u8>, &'static str> {
        let bytes = text.as_bytes();
        if !bytes.len().is_multiple_of(4) {
            return Err("base64 length is not a multiple of 4");
        }
        let value = |c: u8| -> Result<u32, &'static str> {
            Ok(match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                _ => return Err("invalid base64 character"),
            }
            .into())
        };
        let mut out = Vec::with_capacity(bytes.len() / 4 * 3);
        let quads = bytes.len() / 4;
        for (qi, quad) in bytes.chunks(4).enumerate() {
            let pad = quad.iter().rev().take_while(|&&c| c == b'=').count();
            if pad > 2 || (pad > 0 && qi + 1 != quads) {
                return Err("misplaced base64 padding");
            }
            let mut n = 0u32;
            for &c in &quad[..4 - pad] {
                n = (n << 6) | value(c)?;
            }
            n <<= 6 * pad as u32;
            let got = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
            out.extend_from_slice(&got[..3 - pad]);
        }
        Ok(out)
    }

    pub(crate) fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&encode(bytes))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        decode(&text).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(to: To) -> Envelope {
        Envelope::builder(UserId::new("alice").unwrap(), to)
            .from_ip("10.0.0.7".parse().unwrap())
            .content_type("text/plain")
            .body("hello")
            .build()
    }

    #[test]
    fn frame_roundtrips_every_destination() {
        let room = RoomId::new("rust").unwrap();
        let bob = UserId::new("bob").unwrap();
        for to in [
            To::Room(room.clone()),
            To::User(bob.clone()),
            To::UserInRoom {
                user: bob,
                room: room.clone(),
            },
            To::Everyone,
        ] {
            let e = env(to);
            assert_eq!(Envelope::decode(&e.encode(), 100).unwrap(), e);
            let json = serde_json::to_string(&e).unwrap();
            assert_eq!(serde_json::from_str::<Envelope>(&json).unwrap(), e);
        }
    }

    #[test]
    fn to_json_shapes() {
        let check = |to: To, json: &str| {
            assert_eq!(serde_json::to_string(&to).unwrap(), json);
            assert_eq!(serde_json::from_str::<To>(json).unwrap(), to);
        };
        check(To::Room(RoomId::new("r").unwrap()), r#"{"room":"r"}"#);
        check(To::User(UserId::new("u").unwrap()), r#"{"user":"u"}"#);
        check(
            To::UserInRoom {
                user: UserId::new("u").unwrap(),
                room: RoomId::new("r").unwrap(),
            },
            r#"{"room":"r","user":"u"}"#,
        );
        check(To::Everyone, r#"{"everyone":true}"#);
        assert!(serde_json::from_str::<To>("{}").is_err());
        assert!(serde_json::from_str::<To>(r#"{"room":"a*"}"#).is_err());
    }

    #[test]
    fn bad_frames_are_errors() {
        let good = env(To::Everyone).encode();
        let check = |frame: &[u8], expected: &str| {
            let err = Envelope::decode(frame, 100).unwrap_err();
            assert!(err.to_string().contains(expected), "{err} !~ {expected}");
        };
        check(b"IM", "shorter than the 7-byte header");
        check(b"XX\x01\0\0\0\0", "magic bytes");
        check(b"IM\x02\0\0\0\0", "version 2 is not supported");
        check(b"IM\x01\0\0\0\x09{}", "header of 9 bytes");
        check(b"IM\x01\0\0\0\x02{}", "invalid envelope header");
        let mut big = good.clone();
        big.extend_from_slice(&[0; 200]);
        check(&big, "body of 205 bytes exceeds the 100-byte limit");
        let mut bad_name = good;
        let pos = bad_name.windows(5).position(|w| w == b"alice").unwrap();
        bad_name[pos] = b'*';
        check(&bad_name, "invalid envelope header");
    }

    #[test]
    fn uuid_timestamp() {
        let e = Envelope::new(UserId::new("a").unwrap(), To::Everyone, "x");
        assert!(uuid_ms(&e.id).abs_diff(e.ts) < 1000);
        assert_eq!(uuid_ms(&Uuid::new_v4()), 0);
    }

    #[test]
    fn base64_known_values() {
        for (raw, text) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(b64::encode(raw.as_bytes()), text);
            assert_eq!(b64::decode(text).unwrap(), raw.as_bytes());
        }
        assert!(b64::decode("Zm9").is_err());
        assert!(b64::decode("Zg==Zg==").is_err());
        assert!(b64::decode("Z===").is_err());
        assert!(b64::decode("Zm9!").is_err());
    }

    mod prop {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn decode_never_panics(frame in proptest::collection::vec(any::<u8>(), 0..300)) {
                let _ = Envelope::decode(&frame, 64);
            }

            #[test]
            fn decode_never_panics_after_a_valid_prefix(tail in proptest::collection::vec(any::<u8>(), 0..100), cut in 0usize..200) {
                let e = Envelope::new(UserId::new("a").unwrap(), To::Everyone, "body");
                let mut frame = e.encode();
                frame.truncate(cut.min(frame.len()));
                frame.extend_from_slice(&tail);
                let _ = Envelope::decode(&frame, 64);
            }

            #[test]
            fn base64_roundtrips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
                prop_assert_eq!(b64::decode(&b64::encode(&bytes)).unwrap(), bytes);
            }

            #[test]
            fn frames_roundtrip(body in proptest::collection::vec(any::<u8>(), 0..100), ct in "[a-z/+.-]{0,40}") {
                let e = Envelope::builder(UserId::new("a").unwrap(), To::Everyone).body(body).content_type(ct).build();
                prop_assert_eq!(Envelope::decode(&e.encode(), 100).unwrap(), e);
            }
        }
    }
}
