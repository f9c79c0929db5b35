//! What a conversation log holds, and its byte layouts.
//!
//! Every value starts with a tag byte and a format version, and integers are
//! big-endian. A reader refuses what it cannot parse with
//! [`Error::Corrupt`](crate::Error::Corrupt), never a panic.
//!
//! ```text
//! head   'H' ver=1 | seq u64 | first u64 | messages u64 | trimmed_messages u64 | last_message u64
//!        | retention u8 + u64 | created u64
//! entry  'E' ver=2 | kind u8 | ts u64 | ordinal u64 | kind-specific rest:
//!          0 message   envelope v u16 | id [16] | ts u64 | from: len u8 + bytes
//!                      | from_ip: 0, or 4 + [4], or 6 + [16]
//!                      | to: 0 room, 1 user, 2 user-in-room (user, room), 3 everyone;
//!                        each id len u8 + bytes
//!                      | content type: len u8 + bytes | body (rest)
//!          1 edit      target u64 | by: len u8 + bytes | new body (rest)
//!          2 delete    target u64 | by: len u8 + bytes
//!          3 react     target u64 | by: len u8 + bytes | on u8 | reaction UTF-8 (rest)
//! live   conversation: len u8 + bytes | seq u64 | entry   (what the fan-out carries)
//! ```
//!
//! Version 1 entries (a message's rest was the envelope's wire frame, with
//! its JSON header) are still read; this build writes version 2, whose
//! binary message header decodes several times faster on catch-up.
//!
//! `ordinal` is the number of *messages* (not events) up to and including
//! this entry: unread counts are differences of ordinals, so an edit or a
//! reaction never counts as unread.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::ops::Range;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::envelope::MAX_CONTENT_TYPE_LEN;
use crate::{ConversationId, Envelope, RoomId, To, UserId};

/// One entry of a conversation log.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogEntry {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its position: strictly increasing and gapless per conversation, from 1.
    pub seq: u64,
    /// When it was appended, milliseconds since the Unix epoch.
    pub ts: u64,
    /// What happened.
    pub event: Event,
}

/// What an entry records: a message, or an event about an earlier message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Event {
    /// A message (its body is emptied once it is deleted).
    Message(Envelope),
    /// The sender replaced the body of the message at `target`.
    Edit {
        /// The message edited.
        target: u64,
        /// Who edited it (its sender).
        by: UserId,
        /// The new body.
        body: Vec<u8>,
    },
    /// The message at `target` was deleted (redacted): its body is gone.
    Delete {
        /// The message deleted.
        target: u64,
        /// Who deleted it.
        by: UserId,
    },
    /// `by` set (`Some`) or took back (`None`) their reaction to `target`.
    React {
        /// The message reacted to.
        target: u64,
        /// Who reacted.
        by: UserId,
        /// The reaction now, if any (one per user per message).
        reaction: Option<String>,
    },
}

impl Event {
    /// The message an event refers to (`None` for a message).
    pub fn target(&self) -> Option<u64> {
        match self {
            Event::Message(_) => None,
            Event::Edit { target, .. }
            | Event::Delete { target, .. }
            | Event::React { target, .. } => Some(*target),
        }
    }
}

/// A message with every later event folded in: its latest edit, whether it was
/// deleted, and its reactions counted.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// Its seq in the conversation.
    pub seq: u64,
    /// The message as sent (its body emptied if deleted).
    pub envelope: Envelope,
    /// The latest edit.
    pub edited: Option<Edited>,
    /// Set once the message was deleted.
    pub deleted: Option<Deleted>,
    /// How many users reacted with each reaction.
    pub reactions: BTreeMap<String, u32>,
}

impl Message {
    /// The body to show: the latest edit's, or the original; empty once deleted.
    pub fn body(&self) -> &[u8] {
        match (&self.deleted, &self.edited) {
            (Some(_), _) => &[],
            (None, Some(edit)) => &edit.body,
            (None, None) => &self.envelope.body,
        }
    }
}

/// The latest edit of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Edited {
    /// The seq of the edit event.
    pub seq: u64,
    /// When.
    pub ts: u64,
    /// The new body.
    #[serde(with = "crate::envelope::b64")]
    pub body: Vec<u8>,
}

/// How a message was deleted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Deleted {
    /// The seq of the delete event.
    pub seq: u64,
    /// When.
    pub ts: u64,
    /// Who deleted it.
    pub by: UserId,
}

/// The fold of one message: kept beside it and rewritten by each event, so a
/// folded read costs one more key per message, whatever the number of events.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Fold {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) edited: Option<Edited>,
    /// The seqs of every edit event, so a delete erases their bodies too.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) edits: Vec<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) deleted: Option<Deleted>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) reactions: BTreeMap<String, u32>,
}

/// How much of a conversation's log is kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retention {
    /// Everything (the default).
    #[default]
    All,
    /// The newest `n` entries.
    Last(u64),
    /// Entries younger than `n` days.
    Days(u32),
}

/// The head record of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    /// The newest entry (0: none yet).
    pub(crate) seq: u64,
    /// The oldest entry kept (`seq + 1` when empty).
    pub(crate) first: u64,
    /// Messages appended so far (the ordinal of the newest message).
    pub(crate) messages: u64,
    /// Messages trimmed away (ordinals below `first`).
    pub(crate) trimmed_messages: u64,
    /// The seq of the newest message (0: none).
    pub(crate) last_message: u64,
    pub(crate) retention: Retention,
    pub(crate) created: u64,
}

const HEAD_LEN: usize = 2 + 8 * 5 + 1 + 8 + 8;
const ENTRY_PREFIX: usize = 2 + 1 + 8 + 8;
const VERSION: u8 = 1;
/// The entry format this build writes (version 1 entries are still read).
const ENTRY_VERSION: u8 = 2;

fn u64_at(bytes: &[u8], at: usize) -> Option<u64> {
    let raw: [u8; 8] = bytes.get(at..at + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(raw))
}

impl Head {
    pub(crate) fn new(retention: Retention, created: u64) -> Self {
        Head {
            seq: 0,
            first: 1,
            messages: 0,
            trimmed_messages: 0,
            last_message: 0,
            retention,
            created,
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEAD_LEN);
        out.extend_from_slice(&[b'H', VERSION]);
        for n in [
            self.seq,
            self.first,
            self.messages,
            self.trimmed_messages,
            self.last_message,
        ] {
            out.extend_from_slice(&n.to_be_bytes());
        }
        let (kind, n) = match self.retention {
            Retention::All => (0u8, 0u64),
            Retention::Last(n) => (1, n),
            Retention::Days(d) => (2, u64::from(d)),
        };
        out.push(kind);
        out.extend_from_slice(&n.to_be_bytes());
        out.extend_from_slice(&self.created.to_be_bytes());
        out
    }

    pub(crate) fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() != HEAD_LEN || bytes[0] != b'H' {
            return Err(format!(
                "head of {} bytes is not a head record",
                bytes.len()
            ));
        }
        if bytes[1] != VERSION {
            return Err(format!("head format version {} is not supported", bytes[1]));
        }
        let at = |i| u64_at(bytes, i).unwrap_or(0);
        let n = at(43);
        let retention = match bytes[42] {
            0 => Retention::All,
            1 => Retention::Last(n),
            2 => Retention::Days(u32::try_from(n).unwrap_or(u32::MAX)),
            k => return Err(format!("unknown retention kind {k}")),
        };
        let head = Head {
            seq: at(2),
            first: at(10),
            messages: at(18),
            trimmed_messages: at(26),
            last_message: at(34),
            retention,
            created: at(51),
        };
        if head.first == 0
            || head.seq == u64::MAX
            || head.first > head.seq.saturating_add(1)
            || head.trimmed_messages > head.messages
            || head.last_message > head.seq
        {
            return Err("head positions are inconsistent".into());
        }
        Ok(head)
    }
}

/// A reader over an entry's bytes that refuses, never panics, on a short read.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn new(bytes: &'a [u8], at: usize) -> Self {
        Reader { bytes, at }
    }

    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8], String> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.bytes.len());
        let end = end.ok_or_else(|| format!("truncated {what}"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self, what: &str) -> Result<u8, String> {
        Ok(self.take(1, what)?[0])
    }

    fn u64(&mut self, what: &str) -> Result<u64, String> {
        let raw: [u8; 8] = self
            .take(8, what)?
            .try_into()
            .map_err(|_| format!("truncated {what}"))?;
        Ok(u64::from_be_bytes(raw))
    }

    fn str(&mut self, what: &str) -> Result<&'a str, String> {
        let len = usize::from(self.u8(what)?);
        std::str::from_utf8(self.take(len, what)?).map_err(|_| format!("{what} is not UTF-8"))
    }

    fn user(&mut self, what: &str) -> Result<UserId, String> {
        UserId::new(self.str(what)?).map_err(|e| e.to_string())
    }

    fn room(&mut self, what: &str) -> Result<RoomId, String> {
        RoomId::new(self.str(what)?).map_err(|e| e.to_string())
    }

    /// Everything not read yet, as a range of the bytes.
    fn rest(&self) -> Range<usize> {
        self.at..self.bytes.len()
    }
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    // Ids are at most 64 bytes and content types at most 127.
    let len = u8::try_from(s.len()).unwrap_or(u8::MAX);
    out.push(len);
    out.extend_from_slice(&s.as_bytes()[..usize::from(len)]);
}

fn push_user(out: &mut Vec<u8>, user: &UserId) {
    push_str(out, user.as_str());
}

fn encode_message(out: &mut Vec<u8>, env: &Envelope) {
    out.extend_from_slice(&env.v.to_be_bytes());
    out.extend_from_slice(env.id.as_bytes());
    out.extend_from_slice(&env.ts.to_be_bytes());
    push_user(out, &env.from);
    match env.from_ip {
        None => out.push(0),
        Some(IpAddr::V4(ip)) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        Some(IpAddr::V6(ip)) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    match &env.to {
        To::Room(room) => {
            out.push(0);
            push_str(out, room.as_str());
        }
        To::User(user) => {
            out.push(1);
            push_user(out, user);
        }
        To::UserInRoom { user, room } => {
            out.push(2);
            push_user(out, user);
            push_str(out, room.as_str());
        }
        To::Everyone => out.push(3),
    }
    push_str(out, &env.content_type);
    out.extend_from_slice(&env.body);
}

/// A message's envelope from a version 2 entry, without its body, and where
/// the body is.
fn parse_message(r: &mut Reader<'_>) -> Result<(Envelope, Range<usize>), String> {
    let v = r.take(2, "envelope version")?;
    let v = u16::from_be_bytes([v[0], v[1]]);
    let id = Uuid::from_slice(r.take(16, "envelope id")?).map_err(|e| e.to_string())?;
    let ts = r.u64("envelope time")?;
    let from = r.user("sender")?;
    let from_ip = match r.u8("sender address")? {
        0 => None,
        4 => {
            let raw: [u8; 4] = r
                .take(4, "sender address")?
                .try_into()
                .map_err(|_| "truncated sender address")?;
            Some(IpAddr::from(raw))
        }
        6 => {
            let raw: [u8; 16] = r
                .take(16, "sender address")?
                .try_into()
                .map_err(|_| "truncated sender address")?;
            Some(IpAddr::from(raw))
        }
        k => return Err(format!("unknown address kind {k}")),
    };
    let to = match r.u8("destination")? {
        0 => To::Room(r.room("room")?),
        1 => To::User(r.user("recipient")?),
        2 => To::UserInRoom {
            user: r.user("recipient")?,
            room: r.room("room")?,
        },
        3 => To::Everyone,
        k => return Err(format!("unknown destination kind {k}")),
    };
    let content_type = r.str("content type")?;
    if content_type.len() > MAX_CONTENT_TYPE_LEN {
        return Err(format!(
            "content type of {} bytes is over the limit",
            content_type.len()
        ));
    }
    let env = Envelope {
        v,
        id,
        from,
        from_ip,
        to,
        ts,
        content_type: content_type.to_owned(),
        body: Vec::new(),
    };
    Ok((env, r.rest()))
}

pub(crate) fn encode_entry(ts: u64, ordinal: u64, event: &Event) -> Vec<u8> {
    let kind = match event {
        Event::Message(_) => 0,
        Event::Edit { .. } => 1,
        Event::Delete { .. } => 2,
        Event::React { .. } => 3,
    };
    let mut out = Vec::with_capacity(ENTRY_PREFIX + 128);
    out.extend_from_slice(&[b'E', ENTRY_VERSION, kind]);
    out.extend_from_slice(&ts.to_be_bytes());
    out.extend_from_slice(&ordinal.to_be_bytes());
    match event {
        Event::Message(envelope) => encode_message(&mut out, envelope),
        Event::Edit { target, by, body } => {
            out.extend_from_slice(&target.to_be_bytes());
            push_user(&mut out, by);
            out.extend_from_slice(body);
        }
        Event::Delete { target, by } => {
            out.extend_from_slice(&target.to_be_bytes());
            push_user(&mut out, by);
        }
        Event::React {
            target,
            by,
            reaction,
        } => {
            out.extend_from_slice(&target.to_be_bytes());
            push_user(&mut out, by);
            out.push(u8::from(reaction.is_some()));
            out.extend_from_slice(reaction.as_deref().unwrap_or("").as_bytes());
        }
    }
    out
}

/// When an entry was appended, from its value.
pub(crate) fn entry_ts(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= ENTRY_PREFIX && bytes[0] == b'E').then(|| u64_at(bytes, 3))?
}

/// The ordinal stored in an entry's value.
pub(crate) fn entry_ordinal(bytes: &[u8]) -> Option<u64> {
    (bytes.len() >= ENTRY_PREFIX && bytes[0] == b'E').then(|| u64_at(bytes, 11))?
}

/// Decode an entry's value; `(ts, ordinal, event)`.
/// An entry parsed but for its body (a message's or an edit's), which stays
/// in the bytes at `body` until [`Parsed::with_body`] moves it in.
struct Parsed {
    ts: u64,
    ordinal: u64,
    event: Event,
    body: Option<Range<usize>>,
}

impl Parsed {
    fn with_body(mut self, body: Vec<u8>) -> (u64, u64, Event) {
        match &mut self.event {
            Event::Message(env) => env.body = body,
            Event::Edit { body: b, .. } => *b = body,
            Event::Delete { .. } | Event::React { .. } => {}
        }
        (self.ts, self.ordinal, self.event)
    }

    fn finish(self, body: impl FnOnce(Range<usize>) -> Vec<u8>) -> (u64, u64, Event) {
        match self.body.clone() {
            Some(range) => self.with_body(body(range)),
            None => (self.ts, self.ordinal, self.event),
        }
    }
}

fn parse_entry(bytes: &[u8], max_body: usize) -> Result<Parsed, String> {
    if bytes.len() < ENTRY_PREFIX || bytes[0] != b'E' {
        return Err(format!("{} bytes are not a log entry", bytes.len()));
    }
    let version = bytes[1];
    if version != VERSION && version != ENTRY_VERSION {
        return Err(format!("entry format version {version} is not supported"));
    }
    let ts = u64_at(bytes, 3).unwrap_or(0);
    let ordinal = u64_at(bytes, 11).unwrap_or(0);
    let mut r = Reader::new(bytes, ENTRY_PREFIX);
    let none = None;
    let (event, body) = match bytes[2] {
        0 if version == VERSION => {
            // Version 1: the envelope's wire frame.
            let env =
                Envelope::decode(&bytes[ENTRY_PREFIX..], max_body).map_err(|e| e.to_string())?;
            (Event::Message(env), none)
        }
        0 => {
            let (env, body) = parse_message(&mut r)?;
            (Event::Message(env), Some(body))
        }
        1 => {
            let target = r.u64("event target")?;
            let by = r.user("editor")?;
            let body = Event::Edit {
                target,
                by,
                body: Vec::new(),
            };
            (body, Some(r.rest()))
        }
        2 => {
            let target = r.u64("event target")?;
            let by = r.user("deleter")?;
            (Event::Delete { target, by }, none)
        }
        3 => {
            let target = r.u64("event target")?;
            let by = r.user("reactor")?;
            let on = r.u8("reaction")?;
            let text = std::str::from_utf8(&bytes[r.rest()])
                .map_err(|_| "reaction is not UTF-8".to_owned())?;
            let reaction = (on == 1).then(|| text.to_owned());
            (
                Event::React {
                    target,
                    by,
                    reaction,
                },
                none,
            )
        }
        k => return Err(format!("unknown entry kind {k}")),
    };
    if let Some(body) = &body
        && body.len() > max_body
    {
        return Err(format!("body of {} bytes is over the limit", body.len()));
    }
    Ok(Parsed {
        ts,
        ordinal,
        event,
        body,
    })
}

/// Decode an entry's value; `(ts, ordinal, event)`.
pub(crate) fn decode_entry(bytes: &[u8], max_body: usize) -> Result<(u64, u64, Event), String> {
    Ok(parse_entry(bytes, max_body)?.finish(|range| bytes[range].to_vec()))
}

/// [`decode_entry`] of a value the caller owns: the body is moved out of it
/// instead of copied (what a catch-up of many entries spends most on).
pub(crate) fn decode_entry_owned(
    mut bytes: Vec<u8>,
    max_body: usize,
) -> Result<(u64, u64, Event), String> {
    let parsed = parse_entry(&bytes, max_body)?;
    Ok(parsed.finish(|range| {
        bytes.truncate(range.end);
        bytes.drain(..range.start);
        bytes
    }))
}

/// The frame the live fan-out carries: the conversation, the seq, the entry.
pub(crate) fn encode_live(conversation: &ConversationId, seq: u64, entry: &[u8]) -> Vec<u8> {
    let key = conversation.key();
    let mut out = Vec::with_capacity(1 + key.len() + 8 + entry.len());
    out.push(u8::try_from(key.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(key.as_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(entry);
    out
}

/// Parse a live frame into the entry it carries.
pub(crate) fn decode_live(frame: &[u8], max_body: usize) -> Result<LogEntry, String> {
    let (&len, rest) = frame.split_first().ok_or("empty live frame")?;
    let len = usize::from(len);
    if rest.len() < len + 8 {
        return Err("truncated live frame".into());
    }
    let key =
        std::str::from_utf8(&rest[..len]).map_err(|_| "conversation is not UTF-8".to_owned())?;
    let conversation: ConversationId = key.parse().map_err(|e: crate::NameError| e.to_string())?;
    let seq = u64_at(rest, len).unwrap_or(0);
    let (ts, _, event) = decode_entry(&rest[len + 8..], max_body)?;
    Ok(LogEntry {
        conversation,
        seq,
        ts,
        event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RoomId, To};
    use proptest::prelude::*;

    fn user(name: &str) -> UserId {
        UserId::new(name).unwrap()
    }

    #[test]
    fn entries_round_trip() {
        let env = Envelope::new(user("a"), To::Room(RoomId::new("r").unwrap()), "hi");
        let events = [
            Event::Message(env),
            Event::Edit {
                target: 3,
                by: user("a"),
                body: b"fixed".to_vec(),
            },
            Event::Delete {
                target: 3,
                by: user("mod"),
            },
            Event::React {
                target: 1,
                by: user("b"),
                reaction: Some("👍".into()),
            },
            Event::React {
                target: 1,
                by: user("b"),
                reaction: None,
            },
        ];
        for (i, event) in events.into_iter().enumerate() {
            let bytes = encode_entry(42, i as u64, &event);
            assert_eq!(entry_ordinal(&bytes), Some(i as u64));
            assert_eq!(
                decode_entry(&bytes, 1024),
                Ok((42, i as u64, event.clone()))
            );
            let conv = ConversationId::direct(&user("a"), &user("b"));
            let live = decode_live(&encode_live(&conv, 9, &bytes), 1024).unwrap();
            assert_eq!((live.conversation, live.seq, live.event), (conv, 9, event));
        }
    }

    #[test]
    fn every_envelope_shape_round_trips_owned_or_borrowed() {
        let room = RoomId::new("rust").unwrap();
        let shapes = [
            To::Room(room.clone()),
            To::User(user("bob")),
            To::UserInRoom {
                user: user("bob"),
                room,
            },
            To::Everyone,
        ];
        let ips = [
            None,
            Some("10.0.0.7".parse().unwrap()),
            Some("::1".parse().unwrap()),
        ];
        for to in shapes {
            for ip in ips {
                let mut env = Envelope::builder(user("alice"), to.clone())
                    .content_type("text/plain; charset=utf-8")
                    .body("héllo")
                    .build();
                env.from_ip = ip;
                let event = Event::Message(env);
                let bytes = encode_entry(7, 3, &event);
                assert_eq!(decode_entry(&bytes, 64), Ok((7, 3, event.clone())));
                assert_eq!(decode_entry_owned(bytes.clone(), 64), Ok((7, 3, event)));
                assert!(
                    decode_entry(&bytes, 2).is_err(),
                    "a body over the limit is refused"
                );
            }
        }
    }

    #[test]
    fn version_1_entries_still_read() {
        // A message entry as the first release wrote it: the envelope's wire frame.
        let env = Envelope::new(user("a"), To::Room(RoomId::new("r").unwrap()), "old");
        let mut v1 = vec![b'E', 1, 0];
        v1.extend_from_slice(&5u64.to_be_bytes());
        v1.extend_from_slice(&2u64.to_be_bytes());
        v1.extend_from_slice(&env.encode());
        let want = Ok((5, 2, Event::Message(env)));
        assert_eq!(decode_entry(&v1, 64), want);
        assert_eq!(decode_entry_owned(v1, 64), want);
    }

    #[test]
    fn heads_round_trip_and_refuse_nonsense() {
        let mut head = Head::new(Retention::Last(100), 7);
        head.seq = 10;
        head.messages = 8;
        assert_eq!(Head::decode(&head.encode()), Ok(head));
        head.first = 12; // past seq + 1
        assert!(Head::decode(&head.encode()).is_err());
        assert!(Head::decode(b"H\x01").is_err());
    }

    proptest! {
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = decode_entry(&bytes, 64);
            let _ = decode_entry_owned(bytes.clone(), 64);
            let _ = decode_live(&bytes, 64);
            let _ = Head::decode(&bytes);
        }
    }
}
