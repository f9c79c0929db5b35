//! Errors returned by rmq_core.
//!
//! [`NameError`] is what validating a user or room id can say, [`DecodeError`]
//! what parsing an envelope off the wire can say, and [`Error`] is what every
//! [`Broker`](crate::Broker) operation returns.

use std::time::Duration;

use crate::{ConversationId, RoomId, UserId};

/// A convenience alias for results of rmq_core operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// `actual` of `setting` is not `expected`: [`Error::InvalidConfig`].
pub(crate) fn invalid_setting(
    setting: &'static str,
    expected: impl Into<String>,
    actual: impl std::fmt::Display,
) -> Error {
    Error::InvalidConfig {
        setting,
        expected: expected.into(),
        actual: actual.to_string(),
    }
}

/// The first of `settings` (name, value, largest allowed) that is zero or
/// above its largest, as [`Error::InvalidConfig`].
pub(crate) fn check_counts(settings: &[(&'static str, u128, u128)]) -> Result<()> {
    for &(setting, value, max) in settings {
        if !(1..=max).contains(&value) {
            let expected = if max == u128::MAX {
                "at least 1".to_owned()
            } else {
                format!("1 to {max}")
            };
            return Err(invalid_setting(setting, expected, value));
        }
    }
    Ok(())
}

/// A user id, a room id or a namespace was refused.
///
/// Ids become parts of queue, exchange and routing-key names, so only
/// `[A-Za-z0-9_.-]` and non-ASCII characters other than controls and white
/// space are accepted (namespaces: ASCII only): no AMQP wildcard (`*`, `#`)
/// can be injected and every derived name stays far below AMQP's 255-byte
/// limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{kind} must not be empty")]
    Empty {
        /// What was being named: `user id`, `room id` or `namespace`.
        kind: &'static str,
    },
    /// The name is longer than allowed.
    #[error("{kind} {name:?} is {len} bytes long, more than the {limit}-byte limit")]
    TooLong {
        /// What was being named.
        kind: &'static str,
        /// The refused name (truncated to 80 characters).
        name: String,
        /// Its length in bytes.
        len: usize,
        /// The limit in bytes.
        limit: usize,
    },
    /// The name contains a character that is not allowed.
    #[error(
        "{kind} {name:?} contains {ch:?}; expected letters, digits, '_', '-' and '.' \
         (ASCII only in a namespace)"
    )]
    BadChar {
        /// What was being named.
        kind: &'static str,
        /// The refused name (truncated to 80 characters).
        name: String,
        /// The first offending character.
        ch: char,
    },
    /// The text is not a conversation id (`r:<room>` or `d:<a>:<b>` with `a <= b`).
    #[error(
        "{text:?} is not a conversation id; expected r:<room> or d:<user>:<user> in sorted order"
    )]
    BadConversation {
        /// The refused text (truncated to 140 characters).
        text: String,
    },
}

/// Bytes taken off a queue or stream could not be parsed as an [`Envelope`](crate::Envelope).
///
/// Brokers never hand such a message to the application: they log it with
/// `tracing`, dead-letter or drop it, and go on with the next one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The frame is shorter than its fixed header.
    #[error("envelope frame of {len} bytes is shorter than the {min}-byte header")]
    Truncated {
        /// Length of the frame.
        len: usize,
        /// Minimum length.
        min: usize,
    },
    /// The frame does not start with the envelope magic bytes.
    #[error("envelope frame starts with {found:02x?}, expected the magic bytes {expected:02x?}")]
    BadMagic {
        /// The first bytes found.
        found: [u8; 2],
        /// The expected magic.
        expected: [u8; 2],
    },
    /// The frame is of a format version this build does not understand.
    #[error(
        "envelope format version {found} is not supported (this build reads up to {supported})"
    )]
    UnsupportedVersion {
        /// The version in the frame.
        found: u8,
        /// The newest version this build reads.
        supported: u8,
    },
    /// The header length points past the end of the frame.
    #[error("envelope header of {header} bytes does not fit in a frame of {len} bytes")]
    BadHeaderLength {
        /// Header length announced by the frame.
        header: usize,
        /// Length of the frame.
        len: usize,
    },
    /// The body is larger than the configured limit.
    #[error("envelope body of {size} bytes exceeds the {limit}-byte limit")]
    BodyTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The JSON header is invalid (bad JSON, bad id, bad user or room name).
    #[error("invalid envelope header: {reason}")]
    BadHeader {
        /// What the JSON parser said.
        reason: String,
    },
}

/// Everything a [`Broker`](crate::Broker) operation can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A user id, room id or namespace was refused.
    #[error(transparent)]
    Name(#[from] NameError),
    /// An envelope's body is larger than the broker's limit.
    #[error("envelope body of {size} bytes exceeds the {limit}-byte limit")]
    BodyTooLarge {
        /// Body size in bytes.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An envelope field is invalid (for example an over-long content type).
    #[error("invalid envelope {id}: {reason}")]
    InvalidEnvelope {
        /// The envelope id.
        id: uuid::Uuid,
        /// What is wrong.
        reason: String,
    },
    /// A history query asked for more messages than the limit.
    #[error("history query for {requested} messages exceeds the {limit}-message limit")]
    HistoryTooLarge {
        /// Number of messages asked for.
        requested: usize,
        /// The configured limit.
        limit: usize,
    },
    /// The room does not exist (create it first).
    #[error("room {0} does not exist")]
    UnknownRoom(RoomId),
    /// The user has no inbox (call `ensure_inbox` first).
    #[error("user {0} has no inbox")]
    UnknownUser(UserId),
    /// The broker refused to store a published message (a negative publisher
    /// confirm, for example a full queue with `reject-publish` overflow).
    #[error("the broker rejected the message {id}")]
    Rejected {
        /// The envelope id.
        id: uuid::Uuid,
    },
    /// An operation did not complete in time, usually because the broker stayed
    /// unreachable for the whole time (the operation was retried meanwhile).
    #[error("{op} did not complete within {after:?}")]
    Timeout {
        /// The operation.
        op: &'static str,
        /// How long it was tried.
        after: Duration,
    },
    /// The delivery can no longer be acknowledged: the subscription or the
    /// connection it came from is gone. The message was or will be delivered
    /// again.
    #[error("delivery {id} can no longer be acknowledged: its subscription or connection is gone")]
    DeliveryGone {
        /// The envelope id.
        id: uuid::Uuid,
    },
    /// The broker was closed.
    #[error("the broker is closed")]
    Closed,
    /// The first connection to the AMQP server failed.
    #[error("cannot connect to the AMQP server at {url}: {source}")]
    Connect {
        /// The URL, with any password replaced by `***`.
        url: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The AMQP client failed in a way that retrying does not fix.
    #[cfg(feature = "amqp")]
    #[error("amqp {op} failed: {source}")]
    Amqp {
        /// What was being done.
        op: &'static str,
        /// The cause.
        #[source]
        source: lapin::Error,
    },
    /// A builder setting that cannot work, such as a zero prefetch or a
    /// backoff cap under its first delay; refused when the builder builds
    /// (or connects), never raised or ignored silently.
    #[error("invalid {setting}: expected {expected}, got {actual}")]
    InvalidConfig {
        /// The setting, named as the builder method that sets it.
        setting: &'static str,
        /// What is accepted.
        expected: String,
        /// What was given.
        actual: String,
    },
    /// The conversation has never been created.
    #[error("conversation {0} does not exist")]
    UnknownConversation(ConversationId),
    /// The user is not a member of the conversation.
    #[error("user {user} is not a member of conversation {conversation}")]
    NotMember {
        /// The user.
        user: UserId,
        /// The conversation.
        conversation: ConversationId,
    },
    /// A position past the newest entry of a conversation.
    #[error("seq {seq} is beyond the head {head} of conversation {conversation}")]
    BeyondHead {
        /// The conversation.
        conversation: ConversationId,
        /// The position asked for.
        seq: u64,
        /// The newest entry's seq.
        head: u64,
    },
    /// Entries after `after` were trimmed by retention: the oldest one kept is
    /// `first`. Read from `first - 1` to go on; the entries between are gone.
    #[error(
        "conversation {conversation} was trimmed: entries after {after} up to {first} are gone; the oldest kept is {first}"
    )]
    Trimmed {
        /// The conversation.
        conversation: ConversationId,
        /// The position the reader asked to read after.
        after: u64,
        /// The oldest entry kept.
        first: u64,
    },
    /// An edit, delete or reaction names an entry that is not a message of the
    /// conversation (never written, trimmed, or itself an event).
    #[error("conversation {conversation} has no message at seq {seq}")]
    NoSuchMessage {
        /// The conversation.
        conversation: ConversationId,
        /// The seq named.
        seq: u64,
    },
    /// Only a message's sender may edit it.
    #[error("user {user} may not edit message {seq} of {conversation}: it was sent by {sender}")]
    NotSender {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        seq: u64,
        /// Who tried.
        user: UserId,
        /// Who sent it.
        sender: UserId,
    },
    /// The message was deleted; it can no longer be edited or reacted to.
    #[error("message {seq} of {conversation} was deleted")]
    MessageDeleted {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        seq: u64,
    },
    /// A feed already watches as many conversations as one may.
    #[error("a feed of {reader} already watches {limit} conversations, the limit")]
    TooManyWatched {
        /// The feed's reader.
        reader: UserId,
        /// The most conversations a feed may watch.
        limit: usize,
    },
    /// The message was edited as often as a message may be.
    #[error("message {seq} of {conversation} was already edited {limit} times, the limit")]
    TooManyEdits {
        /// The conversation.
        conversation: ConversationId,
        /// The message.
        seq: u64,
        /// The most edits a message may have.
        limit: usize,
    },
    /// A reaction that is empty, too long or contains control characters, or
    /// one more distinct reaction than a message may carry.
    #[error("invalid reaction: {reason}")]
    InvalidReaction {
        /// What is wrong.
        reason: String,
    },
    /// Appends to one conversation from several nodes kept colliding.
    #[error("conversation {0} is contended: the append was retried too often; try again")]
    Contended(ConversationId),
    /// Stored bytes could not be parsed (a store written by a newer build, or
    /// damaged). Nothing was changed.
    #[error("corrupt {what} in conversation {conversation}: {reason}")]
    Corrupt {
        /// The conversation.
        conversation: ConversationId,
        /// Which record (`head`, `entry 12`, ...).
        what: String,
        /// What the decoder said.
        reason: String,
    },
    /// The flush that makes a conversation write durable failed; the write
    /// may be lost at a crash.
    #[error("durability flush failed: {0}")]
    Flush(std::sync::Arc<nopi::Error>),
    /// The embedded broker's storage failed.
    #[error("storage failed: {0}")]
    Storage(#[from] nopi::Error),
    /// The embedded broker's queues failed.
    #[error("queue failed: {0}")]
    Queue(#[from] tiny_q::Error),
}

/// Replace the password of an AMQP URL by `***`, so URLs can go into errors
/// and logs: nopi's redaction, one rule for every URL of the family.
#[cfg(feature = "amqp")]
pub(crate) fn redact_url(url: &str) -> String {
    nopi::redact_url(url)
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_are_redacted() {
        let check = |url: &str, expected: &str| assert_eq!(redact_url(url), expected, "{url}");
        check(
            "amqp://guest:guest@127.0.0.1:5672/%2f",
            "amqp://guest:***@127.0.0.1:5672/%2f",
        );
        check("amqp://127.0.0.1:5672/%2f", "amqp://127.0.0.1:5672/%2f");
        check("amqp://user@host/", "amqp://user@host/");
        check("amqps://u:p@w@host", "amqps://u:***@host");
        check("not a url", "not a url");
    }
}
