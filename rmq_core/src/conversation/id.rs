//! [`ConversationId`]: a room, or the pair of users of a direct conversation.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::NameError;
use crate::{RoomId, To, UserId};

/// The conversation a message belongs to: a room, or the unordered pair of
/// two users (direct messages, whispers inside a group included).
///
/// Its text form, [`key`](ConversationId::key), is `r:<room>` or
/// `d:<a>:<b>` with `a <= b`; ids never contain `:` or `/`, so the form is
/// unambiguous and can be part of storage keys and AMQP routing keys (at
/// most 131 bytes).
///
/// ```
/// use rmq_core::{ConversationId, RoomId, UserId};
/// let (alice, bob) = (UserId::new("alice")?, UserId::new("bob")?);
/// let dm = ConversationId::direct(&bob, &alice);
/// assert_eq!(dm, ConversationId::direct(&alice, &bob));
/// assert_eq!(dm.key(), "d:alice:bob");
/// assert_eq!(dm.peer_of(&alice), Some(&bob));
/// let rust = ConversationId::room(RoomId::new("rust")?);
/// assert_eq!(rust.to_string(), "r:rust");
/// assert_eq!("d:alice:bob".parse::<ConversationId>()?, dm);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
// Shared: every entry of a page, every feed and every binding holds one, and
// a clone is a reference count, not an allocation.
pub struct ConversationId(Arc<Kind>);

#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Room(RoomId),
    /// Always ordered: `.0 <= .1`.
    Direct(UserId, UserId),
}

impl ConversationId {
    /// The conversation of a room.
    pub fn room(room: RoomId) -> Self {
        ConversationId(Arc::new(Kind::Room(room)))
    }

    /// The direct conversation of `a` and `b`, whichever order they come in.
    pub fn direct(a: &UserId, b: &UserId) -> Self {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        ConversationId(Arc::new(Kind::Direct(lo.clone(), hi.clone())))
    }

    /// The conversation an envelope from `from` to `to` belongs to:
    /// [`To::Room`] is the room's, [`To::User`] and [`To::UserInRoom`] (a
    /// whisper inside a group; the envelope keeps the room) the direct
    /// conversation of the two users. [`To::Everyone`] has none.
    pub fn of(from: &UserId, to: &To) -> Option<Self> {
        match to {
            To::Room(room) => Some(Self::room(room.clone())),
            To::User(user) | To::UserInRoom { user, .. } => Some(Self::direct(from, user)),
            _ => None,
        }
    }

    /// The room, for a room conversation.
    pub fn as_room(&self) -> Option<&RoomId> {
        match &*self.0 {
            Kind::Room(room) => Some(room),
            Kind::Direct(..) => None,
        }
    }

    /// The two users, for a direct conversation.
    pub fn pair(&self) -> Option<(&UserId, &UserId)> {
        match &*self.0 {
            Kind::Room(_) => None,
            Kind::Direct(a, b) => Some((a, b)),
        }
    }

    /// The other user of a direct conversation `user` is in.
    pub fn peer_of(&self, user: &UserId) -> Option<&UserId> {
        match self.pair()? {
            (a, b) if a == user => Some(b),
            (a, b) if b == user => Some(a),
            _ => None,
        }
    }

    /// `true` for a direct conversation.
    pub fn is_direct(&self) -> bool {
        matches!(*self.0, Kind::Direct(..))
    }

    /// The text form: `r:<room>` or `d:<a>:<b>`.
    pub fn key(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &*self.0 {
            Kind::Room(room) => write!(f, "r:{room}"),
            Kind::Direct(a, b) => write!(f, "d:{a}:{b}"),
        }
    }
}

impl fmt::Debug for ConversationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.to_string(), f)
    }
}

impl std::str::FromStr for ConversationId {
    type Err = NameError;

    fn from_str(text: &str) -> Result<Self, NameError> {
        let bad = || NameError::BadConversation {
            text: text.chars().take(140).collect(),
        };
        if let Some(room) = text.strip_prefix("r:") {
            return Ok(Self::room(RoomId::new(room).map_err(|_| bad())?));
        }
        let (a, b) = text
            .strip_prefix("d:")
            .and_then(|pair| pair.split_once(':'))
            .ok_or_else(bad)?;
        let (a, b) = (
            UserId::new(a).map_err(|_| bad())?,
            UserId::new(b).map_err(|_| bad())?,
        );
        if a > b {
            return Err(bad());
        }
        Ok(Self::direct(&a, &b))
    }
}

impl TryFrom<String> for ConversationId {
    type Error = NameError;
    fn try_from(text: String) -> Result<Self, NameError> {
        text.parse()
    }
}

impl From<ConversationId> for String {
    fn from(id: ConversationId) -> String {
        id.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, ok: bool) {
        let parsed = text.parse::<ConversationId>();
        assert_eq!(parsed.is_ok(), ok, "{text:?}: {parsed:?}");
        if let Ok(id) = parsed {
            assert_eq!(id.key(), text);
        }
    }

    #[test]
    fn text_forms_round_trip_and_bad_ones_are_refused() {
        check("r:lobby", true);
        check("d:alice:bob", true);
        check("d:alice:alice", true);
        check("d:bob:alice", false); // not in order: one conversation, one spelling
        check("r:", false);
        check("d:alice", false);
        check("d:alice:bob:carol", false);
        check("x:lobby", false);
        check("r:a/b", false);
        check("", false);
    }

    #[test]
    fn envelopes_map_to_their_conversation() {
        let (a, b) = (UserId::new("a").unwrap(), UserId::new("b").unwrap());
        let room = RoomId::new("g").unwrap();
        assert_eq!(
            ConversationId::of(&b, &To::User(a.clone())),
            Some(ConversationId::direct(&a, &b))
        );
        assert_eq!(
            ConversationId::of(
                &b,
                &To::UserInRoom {
                    user: a.clone(),
                    room: room.clone()
                }
            ),
            Some(ConversationId::direct(&a, &b))
        );
        assert_eq!(
            ConversationId::of(&a, &To::Room(room.clone())),
            Some(ConversationId::room(room))
        );
        assert_eq!(ConversationId::of(&a, &To::Everyone), None);
    }
}
