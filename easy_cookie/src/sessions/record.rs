//! How sessions are laid out in their nopi tree.
//!
//! ```text
//! record   "s/" ++ id                                      -> JSON Record
//! index    "u/" ++ len: u16 BE ++ user ++ created: u64 BE ++ id  -> empty
//!
//! id      = SHA-256 of the 32-byte secret in the token (32 bytes)
//! created = Unix milliseconds, so a user's index entries scan oldest first
//! ```
//!
//! Only the hash of the secret is stored, so a dump of the tree yields no
//! live token. Record and index entries are always written and removed in
//! one atomic batch.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::clock::{from_unix_millis, millis_of};

pub(crate) const RECORD_PREFIX: &[u8] = b"s/";
pub(crate) const INDEX_PREFIX: &[u8] = b"u/";
/// The longest user name, in bytes.
pub const MAX_USER_LEN: usize = 256;
pub(crate) const SECRET_LEN: usize = 32;

/// The public handle of a session: the SHA-256 of its secret.
///
/// Not a credential: it cannot be turned into a token. Show it in a
/// "devices" list and pass it to [`Sessions::revoke_id`](crate::Sessions::revoke_id).
/// `Display` is 64 lower-case hex digits; [`SessionId::parse`] reads them back.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId([u8; 32]);

impl SessionId {
    pub(crate) fn of_secret(secret: &[u8]) -> Self {
        Self(Sha256::digest(secret).into())
    }

    /// The id from its 64-digit hex form, or `None`.
    #[must_use]
    pub fn parse(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut bytes = [0u8; 32];
        for (byte, pair) in bytes.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let digit = |c: u8| char::from(c).to_digit(16);
            let (hi, lo) = (digit(pair[0])?, digit(pair[1])?);
            *byte = u8::try_from(hi * 16 + lo).ok()?;
        }
        Some(Self(bytes))
    }

    /// The 32 bytes.
    #[must_use]
    pub const fn to_bytes(self) -> [u8; 32] {
        self.0
    }

    pub(crate) fn record_key(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(RECORD_PREFIX.len() + 32);
        key.extend_from_slice(RECORD_PREFIX);
        key.extend_from_slice(&self.0);
        key
    }

    /// The id at the end of an index key.
    pub(crate) fn from_index_key(key: &[u8]) -> Option<Self> {
        let tail = key.len().checked_sub(32)?;
        key.get(tail..)?.try_into().ok().map(Self)
    }

    /// The id at the end of a record key.
    pub(crate) fn from_record_key(key: &[u8]) -> Option<Self> {
        key.strip_prefix(RECORD_PREFIX)?.try_into().ok().map(Self)
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SessionId({self})")
    }
}

/// The prefix of every index key of `user`.
pub(crate) fn user_prefix(user: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(INDEX_PREFIX.len() + 2 + user.len() + 8 + 32);
    key.extend_from_slice(INDEX_PREFIX);
    // Callers check `user.len() <= MAX_USER_LEN`, so this fits in a u16.
    key.extend_from_slice(&u16::try_from(user.len()).unwrap_or(u16::MAX).to_be_bytes());
    key.extend_from_slice(user.as_bytes());
    key
}

/// The index key of a session.
pub(crate) fn index_key(user: &str, created_ms: u64, id: &SessionId) -> Vec<u8> {
    let mut key = user_prefix(user);
    key.extend_from_slice(&created_ms.to_be_bytes());
    key.extend_from_slice(&id.0);
    key
}

/// A stored session.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Record<D> {
    /// Format version.
    pub(crate) v: u8,
    pub(crate) user: String,
    pub(crate) created_ms: u64,
    pub(crate) seen_ms: u64,
    pub(crate) data: D,
}

/// A stored session without its data, for timeout checks and clean-up.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Meta {
    pub(crate) user: String,
    pub(crate) created_ms: u64,
    pub(crate) seen_ms: u64,
}

/// The timeouts in force.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub(crate) idle: Duration,
    pub(crate) absolute: Duration,
}

impl Timeouts {
    /// When a session created at `created_ms` and last seen at `seen_ms`
    /// expires, and by which timeout (the earlier one).
    pub(crate) fn expiry(self, created_ms: u64, seen_ms: u64) -> (u64, crate::Timeout) {
        let absolute = created_ms.saturating_add(millis_of(self.absolute));
        let idle = seen_ms.saturating_add(millis_of(self.idle));
        if idle < absolute {
            (idle, crate::Timeout::Idle)
        } else {
            (absolute, crate::Timeout::Absolute)
        }
    }

    /// The absolute expiry of a session created at `created_ms`.
    pub(crate) fn absolute_expiry(self, created_ms: u64) -> SystemTime {
        from_unix_millis(created_ms.saturating_add(millis_of(self.absolute)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_id_hex_round_trip() {
        let id = SessionId::of_secret(b"secret");
        let text = id.to_string();
        assert_eq!(text.len(), 64);
        assert_eq!(SessionId::parse(&text), Some(id));
        assert_eq!(SessionId::parse(&text.to_uppercase()), Some(id));
        assert_eq!(SessionId::parse(&text[1..]), None);
        assert_eq!(SessionId::parse(&format!("{}g", &text[1..])), None);
        assert_eq!(SessionId::parse(&"é".repeat(32)), None);
    }

    #[test]
    fn keys_round_trip_and_sort_by_user_then_age() {
        let id = SessionId::of_secret(b"x");
        assert_eq!(SessionId::from_record_key(&id.record_key()), Some(id));
        let k = index_key("ann", 5, &id);
        assert!(k.starts_with(&user_prefix("ann")));
        assert!(!k.starts_with(&user_prefix("an")));
        assert_eq!(SessionId::from_index_key(&k), Some(id));
        assert!(index_key("ann", 5, &id) < index_key("ann", 6, &SessionId([0; 32])));
        assert_eq!(SessionId::from_index_key(b"short"), None);
    }

    #[test]
    fn expiry_is_the_earlier_timeout() {
        let t = Timeouts {
            idle: Duration::from_secs(10),
            absolute: Duration::from_secs(100),
        };
        assert_eq!(t.expiry(0, 0), (10_000, crate::Timeout::Idle));
        assert_eq!(t.expiry(0, 95_000), (100_000, crate::Timeout::Absolute));
    }
}
