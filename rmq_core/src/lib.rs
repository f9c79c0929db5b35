//! Message routing for chat: rooms, direct messages and durable per-user
//! inboxes, on RabbitMQ or in process.
//!
//! A chat server asks a [`Broker`] to deliver an [`Envelope`] to a room, to a
//! user, or to everyone; the broker puts it in every recipient's inbox, keeps
//! the inboxes of offline users, and lets a node consume the inboxes of the
//! users connected to it, acking each message only once the client
//! acknowledged it. Two implementations, same contract (one conformance suite
//! runs against both):
//!
//! - [`LocalBroker`]: in process, no external service. Inboxes are `tiny_q`
//!   queues and history a `nopi` tree, so with a `sled:` store offline
//!   messages, unacked deliveries, rooms and history survive a restart.
//! - [`AmqpBroker`]: on RabbitMQ (lapin), so any number of chat-server nodes
//!   share one routing fabric: a fanout exchange per room, a topic exchange
//!   for direct messages, a durable (classic or quorum) inbox queue per user,
//!   a presence fanout, room history in a RabbitMQ stream per room, publisher
//!   confirms, bounded prefetch, and recovery from connection losses. See the
//!   [`amqp`] module for the topology.
//!
//! # Example
//!
//! ```
//! use rmq_core::{Broker, Envelope, HistoryQuery, LocalBroker, RoomId, To, UserId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let broker = LocalBroker::memory().await?; // or LocalBroker::open("sled:./data")
//! let (alice, bob) = (UserId::new("alice")?, UserId::new("bob")?);
//! let rust = RoomId::new("rust")?;
//! broker.ensure_inbox(&alice).await?;
//! broker.ensure_inbox(&bob).await?;
//! broker.create_room(&rust).await?;
//! broker.join(&rust, &bob).await?;
//!
//! // bob is offline: the messages wait in his inbox.
//! let hello = Envelope::builder(alice.clone(), To::Room(rust.clone()))
//!     .from_ip("192.0.2.7".parse()?) // set by the server, never by the client
//!     .content_type("text/plain")
//!     .body("hello rust")
//!     .build();
//! broker.publish(&hello).await?;
//! broker.publish(&Envelope::new(alice.clone(), To::User(bob.clone()), "psst")).await?;
//!
//! // bob connects: waiting messages first, in order.
//! let mut inbox = broker.subscribe(&bob).await?;
//! let first = inbox.recv().await.expect("a delivery")?;
//! assert_eq!(first.envelope(), &hello);
//! let (envelope, acker) = first.into_parts(); // push `envelope` to the client...
//! acker.ack().await?; // ...and ack once the client acknowledged it
//! let second = inbox.recv().await.expect("a delivery")?;
//! assert_eq!(second.envelope().body, b"psst");
//! second.ack().await?;
//!
//! // A late joiner reads the room's history.
//! let history = broker.history(&rust, HistoryQuery::last(50)).await?;
//! assert_eq!(history, [envelope]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```
//!
//! With RabbitMQ (feature `amqp`), only the construction changes (see
//! [`AmqpBroker`] for a complete example):
//!
#![cfg_attr(feature = "amqp", doc = "```no_run")]
#![cfg_attr(not(feature = "amqp"), doc = "```ignore")]
//! # async fn run() -> Result<(), rmq_core::Error> {
//! use std::time::Duration;
//! use rmq_core::{AmqpBroker, QueueType};
//!
//! let broker = AmqpBroker::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
//!     .namespace("im")                       // prefix of every exchange and queue
//!     .inbox_queue_type(QueueType::Quorum)   // for a RabbitMQ cluster
//!     .prefetch(64)                          // unacked deliveries per subscription
//!     .operation_timeout(Duration::from_secs(30)) // retry window while RabbitMQ is away
//!     .connect()
//!     .await?;
//! # Ok(()) }
//! ```
//!
//! # Conversations as logs
//!
//! [`conversation::Conversations`] is the other model: one log per
//! conversation in a `nopi` store, each message stored once whatever the
//! member count, a read position per member and delivered/read cursors per
//! device, unread counts in O(1), edits, deletes and reactions as entries of
//! the log, retention, and a [`conversation::Feed`] per reader that catches
//! up from a cursor and then follows live entries, which reach each node
//! once ([`conversation::InProcessFanout`], or an [`AmqpBroker`] as the
//! [`conversation::Fanout`]). See the [`conversation`] module.
//!
//! # Delivery
//!
//! - [`Broker::publish`] returns once the message is stored in every
//!   recipient inbox (RabbitMQ: publisher confirm of a persistent message;
//!   local: durable `tiny_q` push). A room or user that does not exist is an
//!   error ([`Error::UnknownRoom`], [`Error::UnknownUser`]).
//! - [`Broker::subscribe`] yields [`Delivery`]s; each stays in the inbox until
//!   [`Delivery::ack`] (or [`Acker::ack`] after [`Delivery::into_parts`]).
//!   [`Delivery::nack`] gives it back or drops it (dead-letters it). Dropping
//!   the [`Subscription`] returns every unsettled delivery to the inbox, and a
//!   new subscription on the same broker sees them first. At most `prefetch`
//!   deliveries are unsettled per subscription.
//! - Delivery is at least once: after a crash or a lost connection a message
//!   can come twice ([`Delivery::redelivered`] hints at it); clients
//!   de-duplicate by [`Envelope::id`] (a uuid v7).
//! - Presence ([`Broker::publish_presence`], [`Broker::subscribe_presence`]) is
//!   fire-and-forget to every node; a reader that may have missed events gets
//!   [`PresenceEvent::Lagged`].
//! - History ([`Broker::history`]) is kept per room, capped by size (RabbitMQ)
//!   or count (local); [`HistoryQuery`] reads the last N, or N after or
//!   before a message id.
//!
//! # Limits
//!
//! User and room ids are 1 to 64 bytes of `[A-Za-z0-9_.-]` and non-ASCII
//! characters other than controls and white space ([`UserId`], [`RoomId`]):
//! no routing-key wildcard can be injected and every derived AMQP name stays
//! under 255 bytes. Bodies are limited (64 KiB by default), and so
//! are prefetch, history queries (1000 messages), inboxes (10 000 messages,
//! oldest dropped) and every in-memory buffer. A malformed message found on a
//! queue is logged with `tracing` and dead-lettered, never handed out.
//!
//! A builder refuses a setting that cannot work (a zero prefetch, capacity
//! or timeout, a reconnection backoff whose cap is under its first delay)
//! with [`Error::InvalidConfig`] when it builds or connects, naming the
//! setting and its allowed range; nothing is raised or ignored silently.
//!
//! # Crate features
//!
//! | feature | default | what it adds |
//! |---|---|---|
//! | `sled` | yes | `LocalBroker::open("sled:<dir>")` (enables nopi's sled backend) |
//! | `amqp` | no | [`AmqpBroker`] on RabbitMQ (lapin), also a conversation [`Fanout`](conversation::Fanout) across nodes |
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "amqp")]
pub mod amqp;
mod broker;
pub mod conversation;
mod delivery;
pub mod envelope;
mod error;
mod handover;
pub mod local;
mod name;
mod sync;

#[cfg(feature = "amqp")]
pub use amqp::{AmqpBroker, AmqpBrokerBuilder, QueueType};
pub use broker::{Broker, HistoryQuery, Presence, PresenceEvent};
pub use conversation::{ConversationId, Conversations};
pub use delivery::{Acker, Delivery, PresenceStream, Settle, Subscription};
pub use envelope::{Envelope, EnvelopeBuilder, To};
pub use error::{DecodeError, Error, NameError, Result};
pub use local::{LocalBroker, LocalBrokerBuilder};
pub use name::{DeviceId, MAX_ID_LEN, MAX_NAMESPACE_LEN, RoomId, UserId};
