//! The [`Broker`] contract every implementation fulfils.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Envelope, PresenceStream, Result, RoomId, Subscription, UserId};

/// Which part of a room's history to read. Results are always oldest first.
///
/// "Order" is the order the broker stored the messages in: RabbitMQ's stream
/// order for [`AmqpBroker`](crate::AmqpBroker), envelope-id order (creation
/// time, uuid v7) for [`LocalBroker`](crate::LocalBroker); the two agree for
/// messages created and published by one node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum HistoryQuery {
    /// The newest `limit` messages.
    Last {
        /// How many messages at most.
        limit: usize,
    },
    /// Up to `limit` messages published after the message `id` (a late joiner
    /// catching up from the last message it saw).
    After {
        /// The last message already seen.
        id: Uuid,
        /// How many messages at most.
        limit: usize,
    },
    /// Up to `limit` messages published just before the message `id` (paging
    /// backwards).
    Before {
        /// The oldest message already seen.
        id: Uuid,
        /// How many messages at most.
        limit: usize,
    },
}

impl HistoryQuery {
    /// The newest `limit` messages.
    pub fn last(limit: usize) -> Self {
        HistoryQuery::Last { limit }
    }

    /// Up to `limit` messages after message `id`.
    pub fn after(id: Uuid, limit: usize) -> Self {
        HistoryQuery::After { id, limit }
    }

    /// Up to `limit` messages before message `id`.
    pub fn before(id: Uuid, limit: usize) -> Self {
        HistoryQuery::Before { id, limit }
    }

    /// The maximum number of messages asked for.
    pub fn limit(&self) -> usize {
        match *self {
            HistoryQuery::Last { limit }
            | HistoryQuery::After { limit, .. }
            | HistoryQuery::Before { limit, .. } => limit,
        }
    }
}

/// A user came online or went offline, as announced by some node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Presence {
    /// The user.
    pub user: UserId,
    /// `true` when the user came online.
    pub online: bool,
    /// When, in milliseconds since the Unix epoch.
    pub ts: u64,
}

impl Presence {
    /// A presence event stamped now.
    pub fn new(user: UserId, online: bool) -> Self {
        Presence {
            user,
            online,
            ts: crate::envelope::now_ms(),
        }
    }
}

/// What a [`PresenceStream`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceEvent {
    /// A user's presence changed.
    Changed(Presence),
    /// Events may have been missed (the reader was too slow, or the connection
    /// to the broker was lost and re-established). It comes once the stream
    /// receives again, so every event after it arrives: re-read the state you
    /// derive from presence now (e.g. ask the application's session registry
    /// who is online) and miss nothing.
    Lagged,
}

/// Routes envelopes to rooms and users, keeps inboxes of offline users, and
/// lets a node consume the inboxes of the users connected to it.
///
/// Delivery is at least once: a [`Delivery`](crate::Delivery) stays in the
/// inbox until it is [acked](crate::Delivery::ack), and comes back (with
/// `redelivered` set) if the subscription drops first. Clients de-duplicate
/// by [`Envelope::id`].
///
/// Every method is idempotent where the operation allows it (ensuring an
/// inbox that exists, joining twice, leaving a room one is not in).
#[async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Create the user's inbox if it does not exist. Messages to a user are
    /// kept only once the inbox exists.
    async fn ensure_inbox(&self, user: &UserId) -> Result<()>;

    /// Delete the user's inbox and everything waiting in it.
    async fn delete_inbox(&self, user: &UserId) -> Result<()>;

    /// Create a room (its fan-out and its history) if it does not exist.
    async fn create_room(&self, room: &RoomId) -> Result<()>;

    /// Delete a room, its memberships and its history.
    async fn delete_room(&self, room: &RoomId) -> Result<()>;

    /// Make `user` a member of `room`: the room's messages reach the user's
    /// inbox from now on. Fails with [`Error::UnknownRoom`](crate::Error::UnknownRoom)
    /// or [`Error::UnknownUser`](crate::Error::UnknownUser).
    async fn join(&self, room: &RoomId, user: &UserId) -> Result<()>;

    /// Stop delivering the room's messages to `user`.
    async fn leave(&self, room: &RoomId, user: &UserId) -> Result<()>;

    /// Route `envelope` according to [`Envelope::to`], durably: when this
    /// returns `Ok` the message is stored in every recipient inbox (and the
    /// room history). To a room that does not exist it fails with
    /// [`Error::UnknownRoom`](crate::Error::UnknownRoom); to a user without an
    /// inbox with [`Error::UnknownUser`](crate::Error::UnknownUser).
    async fn publish(&self, envelope: &Envelope) -> Result<()>;

    /// Consume the user's inbox: waiting messages first, in order, then live
    /// ones. Dropping the subscription gives unacked deliveries back to the
    /// inbox.
    async fn subscribe(&self, user: &UserId) -> Result<Subscription>;

    /// Read a room's recent history, oldest first.
    async fn history(&self, room: &RoomId, query: HistoryQuery) -> Result<Vec<Envelope>>;

    /// Announce a presence change to every node's [`PresenceStream`].
    async fn publish_presence(&self, presence: &Presence) -> Result<()>;

    /// Receive presence changes announced by any node from now on.
    async fn subscribe_presence(&self) -> Result<PresenceStream>;

    /// Stop: every subscription and presence stream of this broker ends,
    /// later ones fail with [`Error::Closed`](crate::Error::Closed), and
    /// this returns once the broker's own tasks have ended (so nothing of
    /// it holds the store or the connection any more). Call it at
    /// shutdown, after the consumers are gone. The default does nothing.
    async fn close(&self) {}
}
