//! Per-queue options: capacity, overflow policy, durability, lease timeout.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The largest capacity a queue may have.
pub const MAX_CAPACITY: u64 = 1 << 32;

/// The shortest lease timeout.
pub const MIN_LEASE_TIMEOUT: Duration = Duration::from_millis(1);

/// The longest lease timeout.
pub const MAX_LEASE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a push does when the queue is at capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Overflow {
    /// Refuse the push with [`Error::Full`]; nothing is written.
    #[default]
    Reject,
    /// Remove the oldest items (in flight or not) in the same atomic write as
    /// the new ones. A lease on a removed item acks as `false`.
    DropOldest,
}

/// When a push returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Durability {
    /// After the item is on disk: the push waits for a flush of the store,
    /// shared with every other durable push waiting at the same time (group
    /// commit). An `Ok` push survives `kill -9` and power loss (as far as the
    /// engine's flush promises).
    #[default]
    Durable,
    /// As soon as the engine accepted the write; it becomes durable at the
    /// next flush (a durable push to any queue of the same
    /// [`Queues`](crate::Queues), [`Queues::flush`](crate::Queues::flush),
    /// or the engine's own background flush: every 500 ms for sled).
    Buffered,
}

/// How a queue behaves; fixed at [`Queues::create`](crate::Queues::create)
/// and stored with the queue.
///
/// ```
/// use std::time::Duration;
/// use tiny_q::{Durability, Overflow, QueueOptions};
///
/// let options = QueueOptions::builder()
///     .capacity(10_000)
///     .overflow(Overflow::DropOldest)
///     .durability(Durability::Buffered)
///     .lease_timeout(Duration::from_secs(60))
///     .build()?;
/// assert_eq!(options.capacity(), 10_000);
/// # Ok::<(), tiny_q::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueOptions {
    capacity: u64,
    overflow: Overflow,
    durability: Durability,
    lease_timeout: Duration,
}

impl Default for QueueOptions {
    /// Capacity 1 000 000, [`Overflow::Reject`], [`Durability::Durable`],
    /// leases of 30 seconds.
    fn default() -> Self {
        QueueOptions {
            capacity: 1_000_000,
            overflow: Overflow::Reject,
            durability: Durability::Durable,
            lease_timeout: Duration::from_secs(30),
        }
    }
}

impl QueueOptions {
    /// A builder starting from the [defaults](QueueOptions::default).
    pub fn builder() -> QueueOptionsBuilder {
        QueueOptionsBuilder {
            options: QueueOptions::default(),
        }
    }

    /// The most items the queue holds, in flight included.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// What a push does when the queue is full.
    pub fn overflow(&self) -> Overflow {
        self.overflow
    }

    /// When a push returns.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// How long a [`lease`](crate::Queue::lease) lasts before its item is
    /// handed out again.
    pub fn lease_timeout(&self) -> Duration {
        self.lease_timeout
    }

    pub(crate) fn validate(mut self) -> Result<Self> {
        if !(1..=MAX_CAPACITY).contains(&self.capacity) {
            return Err(Error::option(
                "capacity",
                format!("1 to {MAX_CAPACITY}"),
                self.capacity,
            ));
        }
        if !(MIN_LEASE_TIMEOUT..=MAX_LEASE_TIMEOUT).contains(&self.lease_timeout) {
            return Err(Error::duration_option(
                "lease timeout",
                MIN_LEASE_TIMEOUT,
                MAX_LEASE_TIMEOUT,
                self.lease_timeout,
            ));
        }
        // Stored in whole milliseconds: keep what will be read back.
        self.lease_timeout = Duration::from_millis(
            u64::try_from(self.lease_timeout.as_millis()).unwrap_or(u64::MAX),
        );
        Ok(self)
    }

    pub(crate) fn to_stored(self, id: u64) -> StoredMeta {
        StoredMeta {
            id,
            capacity: self.capacity,
            overflow: self.overflow,
            durability: self.durability,
            lease_timeout_ms: u64::try_from(self.lease_timeout.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

/// Builds [`QueueOptions`]; see [`QueueOptions::builder`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct QueueOptionsBuilder {
    options: QueueOptions,
}

impl QueueOptionsBuilder {
    /// The most items the queue holds, in flight included: 1 to
    /// [`MAX_CAPACITY`] (default 1 000 000).
    pub fn capacity(mut self, items: u64) -> Self {
        self.options.capacity = items;
        self
    }

    /// What a push does when the queue is full (default [`Overflow::Reject`]).
    pub fn overflow(mut self, policy: Overflow) -> Self {
        self.options.overflow = policy;
        self
    }

    /// When a push returns (default [`Durability::Durable`]).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.options.durability = durability;
        self
    }

    /// How long a lease lasts: [`MIN_LEASE_TIMEOUT`] to [`MAX_LEASE_TIMEOUT`],
    /// whole milliseconds (default 30 s).
    pub fn lease_timeout(mut self, timeout: Duration) -> Self {
        self.options.lease_timeout = timeout;
        self
    }

    /// The options, or [`Error::InvalidOption`] naming the first value out of range.
    pub fn build(self) -> Result<QueueOptions> {
        self.options.validate()
    }
}

/// A queue's catalog entry, stored as JSON under `'c' name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StoredMeta {
    pub(crate) id: u64,
    pub(crate) capacity: u64,
    pub(crate) overflow: Overflow,
    pub(crate) durability: Durability,
    pub(crate) lease_timeout_ms: u64,
}

impl StoredMeta {
    /// The options recorded in the entry, checked as if newly given.
    pub(crate) fn options(&self) -> Result<QueueOptions> {
        QueueOptions {
            capacity: self.capacity,
            overflow: self.overflow,
            durability: self.durability,
            lease_timeout: Duration::from_millis(self.lease_timeout_ms),
        }
        .validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(builder: QueueOptionsBuilder, expected: &str) {
        assert_eq!(
            builder.build().map(drop).map_err(|e| e.to_string()),
            Err(expected.to_owned())
        );
    }

    #[test]
    fn out_of_range_options_are_refused() {
        check(
            QueueOptions::builder().capacity(0),
            "invalid capacity: expected 1 to 4294967296, got 0",
        );
        check(
            QueueOptions::builder().capacity(MAX_CAPACITY + 1),
            "invalid capacity: expected 1 to 4294967296, got 4294967297",
        );
        check(
            QueueOptions::builder().lease_timeout(Duration::ZERO),
            "invalid lease timeout: expected 1ms to 604800s, got 0ns",
        );
    }

    #[test]
    fn stored_metadata_round_trips() {
        let options = QueueOptions::builder()
            .capacity(5)
            .overflow(Overflow::DropOldest)
            .durability(Durability::Buffered)
            .lease_timeout(Duration::from_millis(1500))
            .build()
            .unwrap();
        let stored = options.to_stored(9);
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(
            json,
            r#"{"id":9,"capacity":5,"overflow":"drop_oldest","durability":"buffered","lease_timeout_ms":1500}"#
        );
        let back: StoredMeta = serde_json::from_str(&json).unwrap();
        assert_eq!(back.options().unwrap(), options);
    }
}
