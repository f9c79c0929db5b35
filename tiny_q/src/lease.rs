//! Items handed out until acked.

use std::fmt;

use crate::{Position, Queue, Result};

/// An item handed out by [`Queue::lease`] (or
/// [`TypedQueue::lease`](crate::TypedQueue::lease)), kept in the queue until
/// [`ack`](Lease::ack)ed.
///
/// If it is not acked before the queue's
/// [lease timeout](crate::QueueOptions::lease_timeout), or the process
/// restarts first, the item is handed out again, before any newer item.
/// Dropping a lease does not release it early; call
/// [`release`](Lease::release) for that.
#[must_use = "a lease that is never acked is handed out again after its timeout"]
pub struct Lease<T = Vec<u8>> {
    queue: Queue,
    position: Position,
    token: u64,
    item: T,
}

impl<T: fmt::Debug> fmt::Debug for Lease<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lease")
            .field("queue", &self.queue.name())
            .field("position", &self.position)
            .field("item", &self.item)
            .finish()
    }
}

impl<T> Lease<T> {
    pub(crate) fn new(queue: Queue, position: Position, token: u64, item: T) -> Self {
        Lease {
            queue,
            position,
            token,
            item,
        }
    }

    /// The item.
    pub fn item(&self) -> &T {
        &self.item
    }

    /// The item, leaving the lease behind (acking then needs
    /// [`Queue::ack`] with the [`position`](Lease::position)).
    pub fn into_item(self) -> T {
        self.item
    }

    /// Where the item sits in its queue.
    pub fn position(&self) -> Position {
        self.position
    }

    /// The queue the item came from.
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Remove the item from the queue: it has been handled. `false` when it
    /// was already gone (acked before, through this lease or a later one
    /// after a timeout, or dropped by [`Overflow::DropOldest`](crate::Overflow::DropOldest)):
    /// acking twice is harmless.
    ///
    /// The removal becomes durable at the next flush; a crash before then
    /// hands the item out again (at-least-once delivery).
    pub async fn ack(&self) -> Result<bool> {
        self.queue.ack(self.position).await
    }

    /// Give the item back now, to be handed out again before any newer item.
    /// `false` when this lease no longer holds it (it expired, or was acked
    /// or released).
    pub async fn release(&self) -> Result<bool> {
        self.queue.release(self.position, self.token).await
    }
}
