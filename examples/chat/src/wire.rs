//! The native protocol's objects (PROTOCOL.md §1) and their mapping to
//! rmq_core envelopes.

use std::net::IpAddr;

use rmq_core::{Envelope, RoomId, To, UserId};
use serde::{Deserialize, Serialize};

/// The group every user is a member of.
pub const LOBBY: &str = "lobby";

/// Content type of a chat message's envelope body (the text).
pub(crate) const TEXT: &str = "text/plain; charset=utf-8";
/// Content type of a group event (`{"group","user","event"}`) sent to members.
pub(crate) const GROUP_EVENT: &str = "application/vnd.chat.group-event+json";

/// Where a message goes: `{"group"}`, `{"user"}` or `{"user","group"}` (a
/// private message to a member inside a group).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// The recipient user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

impl Target {
    /// A group.
    pub fn group(name: impl Into<String>) -> Self {
        Target {
            user: None,
            group: Some(name.into()),
        }
    }

    /// A user.
    pub fn user(name: impl Into<String>) -> Self {
        Target {
            user: Some(name.into()),
            group: None,
        }
    }
}

/// A chat message as clients see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The message id (uuid v7).
    pub id: String,
    /// The sender, set by the server.
    pub from: String,
    /// The sender's IP address (no port), set by the server.
    pub ip: String,
    /// Where it went.
    pub to: Target,
    /// The text.
    pub text: String,
    /// When the server accepted it, in milliseconds since the Unix epoch.
    pub ts: u64,
}

impl Message {
    /// The message an envelope carries, if it carries one.
    pub(crate) fn from_envelope(env: &Envelope) -> Option<Message> {
        if env.content_type != TEXT {
            return None;
        }
        let to = match &env.to {
            To::Room(room) => Target::group(room.as_str()),
            To::User(user) => Target::user(user.as_str()),
            To::UserInRoom { user, room } => Target {
                user: Some(user.as_str().to_owned()),
                group: Some(room.as_str().to_owned()),
            },
            _ => return None,
        };
        Some(Message {
            id: env.id.to_string(),
            from: env.from.as_str().to_owned(),
            ip: env.from_ip.map(|ip| ip.to_string()).unwrap_or_default(),
            to,
            text: String::from_utf8_lossy(&env.body).into_owned(),
            ts: env.ts,
        })
    }
}

/// A `group` push: someone joined, left or was kicked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupEvent {
    /// The group.
    pub group: String,
    /// Who.
    pub user: String,
    /// `joined`, `left` or `kicked`.
    pub event: String,
}

/// The envelope that carries `text` from `from` (at `ip`) to `to`, as
/// message `id` of time `ts`.
pub(crate) fn text_envelope(
    from: &UserId,
    ip: IpAddr,
    to: To,
    text: &str,
    id: uuid::Uuid,
    ts: u64,
) -> Envelope {
    Envelope::builder(from.clone(), to)
        .id(id)
        .ts(ts)
        .from_ip(ip)
        .content_type(TEXT)
        .body(text.as_bytes().to_vec())
        .build()
}

/// The rmq_core destination of a target; `None` if the target is malformed.
pub(crate) fn route(to: &Target) -> Option<To> {
    Some(match (&to.user, &to.group) {
        (None, Some(g)) => To::Room(RoomId::new(g.as_str()).ok()?),
        (Some(u), None) => To::User(UserId::new(u.as_str()).ok()?),
        (Some(u), Some(g)) => To::UserInRoom {
            user: UserId::new(u.as_str()).ok()?,
            room: RoomId::new(g.as_str()).ok()?,
        },
        (None, None) => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_have_the_protocol_shapes() {
        assert_eq!(
            serde_json::to_string(&Target::group("rust")).unwrap(),
            r#"{"group":"rust"}"#
        );
        let t: Target = serde_json::from_str(r#"{"user":"bob","group":"rust"}"#).unwrap();
        assert!(matches!(route(&t), Some(To::UserInRoom { .. })));
        let none: Target = serde_json::from_str("{}").unwrap();
        assert!(route(&none).is_none());
        assert!(serde_json::from_str::<Target>(r#"{"room":"x"}"#).is_err());
    }

    #[test]
    fn envelope_round_trips_to_a_message() {
        let env = text_envelope(
            &UserId::new("alice").unwrap(),
            "10.1.2.3".parse().unwrap(),
            To::Room(RoomId::new("rust").unwrap()),
            "hi",
            uuid::Uuid::now_v7(),
            1_732_350_000_123,
        );
        let m = Message::from_envelope(&env).unwrap();
        assert_eq!(m.ts, 1_732_350_000_123);
        assert_eq!(
            (m.from.as_str(), m.ip.as_str(), m.text.as_str()),
            ("alice", "10.1.2.3", "hi")
        );
        assert_eq!(m.to, Target::group("rust"));
        assert_eq!(m.id, env.id.to_string());
    }
}
