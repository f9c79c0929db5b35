//! Errors returned by every tiny_q operation.
//!
//! One enum for the whole crate: the operations share most failure modes
//! (a bad name, a destroyed queue, a storage failure), and a caller matching
//! on, say, [`Error::Full`] should not have to know which method produced it.

use std::sync::Arc;
use std::time::Duration;

use crate::Position;

/// A convenience alias for results of tiny_q operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong with a queue.
///
/// Every variant names the queue (or tree) involved; corrupt items also name
/// their [`Position`], which [`Queue::discard`](crate::Queue::discard) accepts
/// to skip them.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A queue name is empty, too long or contains a control character.
    #[error("invalid queue name {name:?}: {reason}")]
    InvalidName {
        /// The name as given (shortened when very long).
        name: String,
        /// What is wrong with it, expected vs. actual.
        reason: String,
    },
    /// A queue or [`Queues`](crate::Queues) option is out of range.
    #[error("invalid {option}: expected {expected}, got {actual}")]
    InvalidOption {
        /// The option, e.g. `capacity`.
        option: &'static str,
        /// The accepted range.
        expected: String,
        /// The value given.
        actual: String,
    },
    /// No queue has this name.
    #[error("no queue named {queue:?}")]
    NotFound {
        /// The name asked for.
        queue: String,
    },
    /// [`Queues::create`](crate::Queues::create) was given a name that is taken.
    #[error("queue {queue:?} already exists")]
    AlreadyExists {
        /// The name that is taken.
        queue: String,
    },
    /// The queue was destroyed while this handle was held.
    #[error("queue {queue:?} was destroyed")]
    Destroyed {
        /// The destroyed queue.
        queue: String,
    },
    /// An item is larger than the configured limit.
    #[error("item of {size} bytes for queue {queue:?} exceeds the {limit}-byte limit")]
    ItemTooLarge {
        /// The queue.
        queue: String,
        /// Size of the (encoded) item in bytes.
        size: usize,
        /// The limit, see [`QueuesBuilder::max_item_size`](crate::QueuesBuilder::max_item_size).
        limit: usize,
    },
    /// A [`push_batch`](crate::Queue::push_batch) has more items than one
    /// atomic write can hold.
    #[error("batch of {items} items for queue {queue:?} exceeds the {limit}-item limit")]
    BatchTooLarge {
        /// The queue.
        queue: String,
        /// Items in the batch.
        items: usize,
        /// The limit, see [`QueuesBuilder::max_batch_items`](crate::QueuesBuilder::max_batch_items).
        limit: usize,
    },
    /// The queue is at capacity and its overflow policy is
    /// [`Overflow::Reject`](crate::Overflow::Reject) (or the batch alone is
    /// larger than the capacity). Nothing was written.
    #[error("queue {queue:?} is full: {len} of {capacity} items stored, cannot add {adding}")]
    Full {
        /// The queue.
        queue: String,
        /// Items stored (in flight included).
        len: u64,
        /// The queue's capacity.
        capacity: u64,
        /// Items the push tried to add.
        adding: usize,
    },
    /// A stored item failed its integrity check. It stays in the queue (so
    /// the queue stops at it) until the caller skips it with
    /// [`Queue::discard`](crate::Queue::discard).
    #[error("corrupt item at position {position} of queue {queue:?}: {reason}")]
    Corrupt {
        /// The queue.
        queue: String,
        /// Where the item is.
        position: Position,
        /// What is wrong with it.
        reason: String,
    },
    /// A stored item is not valid JSON for the requested type. It stays in
    /// the queue until the caller skips it with
    /// [`Queue::discard`](crate::Queue::discard) or reads it raw.
    #[error("item at position {position} of queue {queue:?} does not decode: {source}")]
    Decode {
        /// The queue.
        queue: String,
        /// Where the item is.
        position: Position,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// An item could not be serialized to JSON; nothing was written.
    #[error("item for queue {queue:?} cannot be serialized: {source}")]
    Encode {
        /// The queue.
        queue: String,
        /// The serde error.
        #[source]
        source: serde_json::Error,
    },
    /// A queue's metadata (its catalog entry or its keys) is not what tiny_q
    /// writes: the store was modified by something else.
    #[error("corrupt metadata for queue {queue:?}: {reason}")]
    CorruptQueue {
        /// The queue (escaped when its stored name is not UTF-8).
        queue: String,
        /// What is wrong.
        reason: String,
    },
    /// The tree holds data in a layout this version does not know.
    #[error("tree {tree:?} holds tiny_q layout {found}, expected {expected}")]
    UnsupportedLayout {
        /// The tree.
        tree: String,
        /// The stored layout marker.
        found: String,
        /// The layout this version writes.
        expected: u8,
    },
    /// The store failed while working on a queue.
    #[error("storage failed for queue {queue:?}: {source}")]
    Storage {
        /// The queue.
        queue: String,
        /// The nopi error.
        #[source]
        source: nopi::Error,
    },
    /// The store failed while opening the queue tree or reading its catalog.
    #[error("storage failed for queue tree {tree:?}: {source}")]
    Store {
        /// The tree holding the queues.
        tree: String,
        /// The nopi error.
        #[source]
        source: nopi::Error,
    },
    /// The durability flush that a durable push waited for failed. The item
    /// was written and is visible, but may not survive a crash.
    #[error("durability flush of queue tree {tree:?} failed: {source}")]
    Flush {
        /// The tree holding the queues (one flush covers all of them).
        tree: String,
        /// The nopi error, shared by every push of the failed group.
        #[source]
        source: Arc<nopi::Error>,
    },
}

impl Error {
    /// True when the store could not be reached and retrying later may succeed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Storage { source, .. } | Error::Store { source, .. } => source.is_unavailable(),
            Error::Flush { source, .. } => source.is_unavailable(),
            _ => false,
        }
    }

    /// The position of the offending item for [`Error::Corrupt`] and
    /// [`Error::Decode`], to pass to [`Queue::discard`](crate::Queue::discard).
    pub fn position(&self) -> Option<Position> {
        match self {
            Error::Corrupt { position, .. } | Error::Decode { position, .. } => Some(*position),
            _ => None,
        }
    }

    pub(crate) fn storage(queue: &str) -> impl FnOnce(nopi::Error) -> Error + '_ {
        move |source| Error::Storage {
            queue: queue.to_owned(),
            source,
        }
    }

    pub(crate) fn store(tree: &str) -> impl FnOnce(nopi::Error) -> Error + '_ {
        move |source| Error::Store {
            tree: tree.to_owned(),
            source,
        }
    }

    pub(crate) fn option(
        option: &'static str,
        expected: impl Into<String>,
        actual: impl ToString,
    ) -> Error {
        Error::InvalidOption {
            option,
            expected: expected.into(),
            actual: actual.to_string(),
        }
    }

    pub(crate) fn duration_option(
        option: &'static str,
        min: Duration,
        max: Duration,
        actual: Duration,
    ) -> Error {
        Error::option(option, format!("{min:?} to {max:?}"), format!("{actual:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(err: Error, expected: &str) {
        assert_eq!(err.to_string(), expected);
    }

    #[test]
    fn messages_name_the_input_and_say_expected_vs_actual() {
        check(
            Error::InvalidName {
                name: String::new(),
                reason: "expected 1 to 200 bytes, got 0".into(),
            },
            r#"invalid queue name "": expected 1 to 200 bytes, got 0"#,
        );
        check(
            Error::ItemTooLarge {
                queue: "inbox".into(),
                size: 70000,
                limit: 65536,
            },
            r#"item of 70000 bytes for queue "inbox" exceeds the 65536-byte limit"#,
        );
        check(
            Error::Full {
                queue: "inbox".into(),
                len: 3,
                capacity: 3,
                adding: 1,
            },
            r#"queue "inbox" is full: 3 of 3 items stored, cannot add 1"#,
        );
        check(
            Error::option("capacity", "1 to 4294967296", 0),
            "invalid capacity: expected 1 to 4294967296, got 0",
        );
        check(
            Error::Corrupt {
                queue: "q".into(),
                position: Position::new(7),
                reason: "checksum mismatch".into(),
            },
            r#"corrupt item at position 7 of queue "q": checksum mismatch"#,
        );
    }

    #[test]
    fn position_is_exposed_for_skippable_errors_only() {
        let corrupt = Error::Corrupt {
            queue: "q".into(),
            position: Position::new(3),
            reason: String::new(),
        };
        assert_eq!(corrupt.position(), Some(Position::new(3)));
        assert_eq!(Error::NotFound { queue: "q".into() }.position(), None);
    }
}
