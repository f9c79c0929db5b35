//! Every error this crate returns.
//!
//! Errors are split by operation: [`CookieError`] for checking a cookie,
//! [`IssueError`] for issuing one, [`KeyError`] for key material,
//! [`BuildError`] for builders, [`CodecError`] for user-supplied codecs and,
//! with the `sessions` feature, [`SessionError`]. [`Error`] wraps them all for
//! callers that only want one type.

use std::fmt;
use std::time::SystemTime;

use crate::clock::unix_millis;
use crate::key::KeyId;

/// Why a cookie was rejected as [`CookieError::Unknown`].
///
/// This is meant for server logs. Never show it to the client: telling an
/// attacker *why* a forgery failed only helps them.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownReason {
    /// The cookie is longer than the factory's limit (checked before any
    /// decoding).
    TooLong {
        /// Length of the cookie in bytes.
        len: usize,
        /// The factory's limit in bytes.
        max: usize,
    },
    /// No cookie of the expected name was found in a `Cookie` header.
    Missing,
    /// The cookie is not unpadded, canonical base64url.
    Encoding,
    /// The decoded cookie is too short or starts with the wrong format tag.
    Format,
    /// The cookie names a key that is not in the key ring.
    UnknownKey(KeyId),
    /// The signature or the AEAD tag does not verify (tampered, or issued for
    /// another purpose).
    BadSignature,
    /// The cookie is authentic but its payload does not decode as the
    /// factory's info type.
    Payload,
    /// The cookie is authentic but the session it names no longer exists:
    /// it was revoked, rotated, evicted or purged.
    NoSuchSession,
}

impl fmt::Display for UnknownReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { len, max } => {
                write!(f, "cookie of {len} bytes exceeds the {max}-byte limit")
            }
            Self::Missing => f.write_str("no cookie of the expected name in the header"),
            Self::Encoding => f.write_str("cookie is not unpadded base64url"),
            Self::Format => f.write_str("cookie is truncated or has an unexpected format tag"),
            Self::UnknownKey(id) => {
                write!(f, "cookie names key {id}, which is not in the key ring")
            }
            Self::BadSignature => f.write_str("cookie signature does not verify"),
            Self::Payload => {
                f.write_str("cookie payload does not decode as the expected info type")
            }
            Self::NoSuchSession => {
                f.write_str("no live session has this token (revoked, rotated or expired)")
            }
        }
    }
}

/// A cookie (or bearer token) was rejected by `check`.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CookieError {
    /// Not a cookie this factory issued: malformed, tampered with, signed by a
    /// key outside the ring, issued for another purpose, or of another type.
    #[error("unknown cookie: {reason}")]
    Unknown {
        /// Why, for server logs only.
        reason: UnknownReason,
    },
    /// An authentic cookie whose expiry has passed.
    #[error("cookie expired at {} ms after the unix epoch", unix_millis(*at))]
    Expired {
        /// When it expired.
        at: SystemTime,
    },
}

impl CookieError {
    pub(crate) const fn unknown(reason: UnknownReason) -> Self {
        Self::Unknown { reason }
    }

    /// Whether this is [`CookieError::Unknown`].
    #[must_use]
    pub const fn is_unknown(&self) -> bool {
        matches!(self, Self::Unknown { .. })
    }

    /// Whether this is [`CookieError::Expired`].
    #[must_use]
    pub const fn is_expired(&self) -> bool {
        matches!(self, Self::Expired { .. })
    }
}

/// A cookie could not be issued.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The info could not be serialised (or, with a field selection, it is
    /// not a struct or map).
    #[error("info could not be serialised: {0}")]
    Serialize(#[source] serde_json::Error),
    /// The finished cookie would exceed the factory's length limit.
    #[error("cookie of at least {len} bytes exceeds the {max}-byte limit")]
    TooLong {
        /// Length (or a lower bound of it) in bytes.
        len: usize,
        /// The factory's limit in bytes.
        max: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed: {0}")]
    Random(getrandom::Error),
    /// A user-supplied codec failed to seal.
    #[error("the cookie codec failed: {0}")]
    Codec(#[from] CodecError),
    /// The MAC or AEAD refused the payload (only for absurd lengths).
    #[error("protecting a {len}-byte payload failed")]
    Crypto {
        /// Plaintext length in bytes.
        len: usize,
    },
}

/// Key material was rejected.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// The key is too short.
    #[error("key of {len} bytes is too short: expected at least {min}")]
    TooShort {
        /// Length given, in bytes.
        len: usize,
        /// The minimum, in bytes.
        min: usize,
    },
    /// The key is too long.
    #[error("key of {len} bytes is too long: expected at most {max}")]
    TooLong {
        /// Length given, in bytes.
        len: usize,
        /// The maximum, in bytes.
        max: usize,
    },
    /// The text is not base64 (standard or url-safe, padded or not).
    #[error("key text of {len} characters is not base64")]
    NotBase64 {
        /// Length of the text in characters.
        len: usize,
    },
    /// The same key was added to a ring twice.
    #[error("key {id} is already in the key ring")]
    Duplicate {
        /// The repeated key's id.
        id: KeyId,
    },
    /// The ring would hold too many keys.
    #[error("key ring of {len} keys exceeds the {max}-key limit")]
    TooMany {
        /// Number of keys requested.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// An empty list of keys was given.
    #[error("key ring is empty: expected at least one key")]
    Empty,
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed: {0}")]
    Random(getrandom::Error),
}

/// A builder was given an invalid setting.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// The cookie name is not an RFC 6265 token.
    #[error("cookie name {name:?} is invalid: {reason}")]
    CookieName {
        /// The name given.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A cookie attribute value contains characters not allowed in it.
    #[error("cookie {attribute} {value:?} contains a character not allowed in a Set-Cookie header")]
    CookieAttribute {
        /// `path` or `domain`.
        attribute: &'static str,
        /// The value given.
        value: String,
    },
    /// The `__Host-` prefix forbids a `Domain` and needs `Path=/`.
    #[error(
        "the __Host- prefix needs path \"/\" and no domain, got path {path:?} and domain {domain:?}"
    )]
    HostPrefix {
        /// The path given.
        path: String,
        /// The domain given.
        domain: Option<String>,
    },
    /// The field selection is unusable.
    #[error("field selection {fields:?} is invalid: {reason}")]
    Fields {
        /// The fields given.
        fields: Vec<String>,
        /// What is wrong with them.
        reason: &'static str,
    },
    /// A numeric setting is out of range.
    #[error("{setting} of {value} is out of range: expected {min} to {max}")]
    OutOfRange {
        /// Which setting.
        setting: &'static str,
        /// The value given.
        value: u128,
        /// Smallest allowed.
        min: u128,
        /// Largest allowed.
        max: u128,
    },
    /// The purpose label is too long.
    #[error("purpose of {len} bytes exceeds the {max}-byte limit")]
    Purpose {
        /// Length given in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// A user-supplied [`Codec`](crate::Codec) failed to seal a payload.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CodecError {
    message: String,
}

impl CodecError {
    /// A codec error with a lower-case message naming what failed.
    #[must_use]
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

/// Which session timeout was reached.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No use for longer than the idle timeout.
    Idle,
    /// Older than the absolute timeout, however active.
    Absolute,
}

impl fmt::Display for Timeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Idle => "idle",
            Self::Absolute => "absolute",
        })
    }
}

/// A [`Sessions`](crate::Sessions) operation failed.
#[cfg(feature = "sessions")]
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The token is not a live session: malformed, forged, revoked, rotated
    /// away or purged.
    #[error("unknown session: {reason}")]
    Unknown {
        /// Why, for server logs only.
        reason: UnknownReason,
    },
    /// The session reached a timeout and is gone.
    #[error("session reached its {timeout} timeout at {} ms after the unix epoch", unix_millis(*at))]
    Expired {
        /// When it expired.
        at: SystemTime,
        /// Which timeout.
        timeout: Timeout,
    },
    /// The user name is empty or too long.
    #[error("user name of {len} bytes is invalid: expected 1 to {max} bytes")]
    User {
        /// Length given in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The session data does not fit the size limit.
    #[error("session record of {len} bytes exceeds the {max}-byte limit")]
    TooLarge {
        /// Serialised length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The session data could not be serialised.
    #[error("session data could not be serialised: {0}")]
    Serialize(#[source] serde_json::Error),
    /// A stored record does not decode (corrupt store, or the data type
    /// changed incompatibly).
    #[error("stored session record does not decode: {0}")]
    Corrupt(#[source] serde_json::Error),
    /// Concurrent writers kept changing the session.
    #[error("session changed concurrently {attempts} times in a row; gave up")]
    Contention {
        /// Attempts made.
        attempts: u32,
    },
    /// The token could not be issued.
    #[error("session token could not be issued: {0}")]
    Issue(#[from] IssueError),
    /// The operating system's random number generator failed.
    #[error("the operating system random number generator failed: {0}")]
    Random(getrandom::Error),
    /// The store failed.
    #[error("session store failed: {0}")]
    Store(#[from] nopi::Error),
}

#[cfg(feature = "sessions")]
impl SessionError {
    /// True when the store could not be reached and retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SessionError::Store(e) if e.is_unavailable())
    }
}

#[cfg(feature = "sessions")]
impl From<CookieError> for SessionError {
    fn from(err: CookieError) -> Self {
        match err {
            CookieError::Unknown { reason } => Self::Unknown { reason },
            CookieError::Expired { at } => Self::Expired {
                at,
                timeout: Timeout::Absolute,
            },
        }
    }
}

/// Any error of this crate, for callers that want one type.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// See [`CookieError`].
    #[error(transparent)]
    Cookie(#[from] CookieError),
    /// See [`IssueError`].
    #[error(transparent)]
    Issue(#[from] IssueError),
    /// See [`KeyError`].
    #[error(transparent)]
    Key(#[from] KeyError),
    /// See [`BuildError`].
    #[error(transparent)]
    Build(#[from] BuildError),
    /// See [`SessionError`].
    #[cfg(feature = "sessions")]
    #[error(transparent)]
    Session(#[from] SessionError),
}
