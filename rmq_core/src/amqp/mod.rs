//! [`AmqpBroker`]: the broker on RabbitMQ, shared by any number of nodes.
//!
//! # Topology
//!
//! Every name starts with the broker's namespace (`im` by default), so several
//! applications or test runs can share one virtual host:
//!
//! | name | kind | purpose |
//! |---|---|---|
//! | `<ns>.rooms` | direct exchange | entry for room messages; routes by room id to the room's fanout |
//! | `<ns>.room.<room>` | fanout exchange | one per room; bound to the members' inboxes and to the room's stream |
//! | `<ns>.history.<room>` | stream queue | the room's history, read by offset; size- and age-capped |
//! | `<ns>.direct` | topic exchange | direct messages, routing key `user.<id>` |
//! | `<ns>.all` | fanout exchange | messages to everyone |
//! | `<ns>.inbox.<user>` | durable queue (classic or quorum) | one per user, bound to `<ns>.direct` and `<ns>.all` |
//! | `<ns>.presence` | fanout exchange | presence; each subscriber gets an exclusive bounded queue |
//! | `<ns>.live` | direct exchange | live entries of [conversations](crate::conversation), routing key = conversation; each node binds its exclusive bounded queue to the conversations its readers watch |
//! | `<ns>.dead` | fanout exchange + bounded queue | dead letters (malformed messages, overflowing inboxes) |
//!
//! Messages are persistent (delivery mode 2) and published with publisher
//! confirms; [`Broker::publish`] returns once RabbitMQ confirmed. A message to
//! a room that does not exist, or to a user without an inbox, is returned by
//! RabbitMQ (mandatory flag) and reported as an error.

mod consume;
mod history;
mod link;
mod live;
mod topology;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use async_trait::async_trait;
use lapin::options::{ExchangeDeleteOptions, QueueBindOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation};

use self::link::{Shared, is_not_found};
use self::topology::Names;
use crate::{
    Broker, Envelope, Error, HistoryQuery, Presence, PresenceStream, Result, RoomId, Subscription,
    To, UserId,
};

/// The queue type of the user inboxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum QueueType {
    /// Classic durable queues: the default, for a single RabbitMQ node.
    #[default]
    Classic,
    /// Quorum queues: replicated, for RabbitMQ clusters.
    Quorum,
}

/// Configuration of an [`AmqpBroker`]; see [`AmqpBrokerBuilder`].
#[derive(Clone)]
pub(crate) struct AmqpConfig {
    pub(crate) url: String,
    pub(crate) namespace: String,
    pub(crate) connection_name: String,
    pub(crate) prefetch: u16,
    pub(crate) confirm_window: usize,
    pub(crate) max_body: usize,
    pub(crate) max_history: usize,
    pub(crate) inbox_queue_type: QueueType,
    pub(crate) inbox_max_len: Option<u32>,
    pub(crate) dead_letter_max_len: u32,
    pub(crate) presence_queue_len: u32,
    pub(crate) history_max_bytes: u64,
    pub(crate) history_segment_bytes: u32,
    pub(crate) history_max_age: Option<Duration>,
    pub(crate) history_clock_skew: Duration,
    pub(crate) op_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) reconnect_min: Duration,
    pub(crate) reconnect_max: Duration,
}

impl AmqpConfig {
    /// Every setting within its range, or the first that is not.
    fn check(&self) -> Result<()> {
        use crate::error::{check_counts, invalid_setting};
        const MIN_TIME: Duration = Duration::from_millis(1);
        let any = u128::MAX;
        check_counts(&[
            ("prefetch", self.prefetch.into(), u16::MAX.into()),
            (
                "confirm_window",
                self.confirm_window as u128,
                tokio::sync::Semaphore::MAX_PERMITS as u128,
            ),
            ("max_body_size", self.max_body as u128, any),
            ("max_history", self.max_history as u128, any),
            (
                "history_max_bytes bytes",
                self.history_max_bytes.into(),
                any,
            ),
            (
                "history_max_bytes segment_bytes",
                self.history_segment_bytes.into(),
                any,
            ),
        ])?;
        if self.inbox_max_len == Some(0) {
            return Err(invalid_setting(
                "inbox_max_len",
                "at least 1, or None for no cap",
                "Some(0)",
            ));
        }
        if let Some(age) = self.history_max_age
            && age < Duration::from_secs(1)
        {
            return Err(invalid_setting(
                "history_max_age",
                "at least 1s, or None",
                format!("Some({age:?})"),
            ));
        }
        for (setting, d) in [
            ("operation_timeout", self.op_timeout),
            ("connect_timeout", self.connect_timeout),
            ("reconnect_backoff min", self.reconnect_min),
        ] {
            if d < MIN_TIME {
                return Err(invalid_setting(
                    setting,
                    format!("at least {MIN_TIME:?}"),
                    format!("{d:?}"),
                ));
            }
        }
        if self.reconnect_max < self.reconnect_min {
            return Err(invalid_setting(
                "reconnect_backoff max",
                format!("at least the min, {:?}", self.reconnect_min),
                format!("{:?}", self.reconnect_max),
            ));
        }
        Ok(())
    }
}

/// Builds an [`AmqpBroker`]; see [`AmqpBroker::builder`].
///
/// The setters only record what they are given;
/// [`connect`](Self::connect) checks every setting before it dials and
/// refuses one that cannot work (a zero prefetch, a backoff cap under its
/// first delay, ...) with [`Error::InvalidConfig`], naming the setting and
/// its allowed range.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use std::time::Duration;
/// let err = rmq_core::AmqpBroker::builder("amqp://127.0.0.1:5672/%2f")
///     .reconnect_backoff(Duration::from_secs(5), Duration::from_secs(1))
///     .connect()
///     .await
///     .unwrap_err();
/// assert_eq!(
///     err.to_string(),
///     "invalid reconnect_backoff max: expected at least the min, 5s, got 1s"
/// );
/// # }
/// ```
#[must_use = "a builder does nothing until `connect` is called"]
pub struct AmqpBrokerBuilder {
    cfg: AmqpConfig,
}

impl fmt::Debug for AmqpBrokerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpBrokerBuilder")
            .field("url", &crate::error::redact_url(&self.cfg.url))
            .field("namespace", &self.cfg.namespace)
            .finish_non_exhaustive()
    }
}

impl AmqpBrokerBuilder {
    /// The namespace prefixed to every exchange and queue (default `im`;
    /// 1 to 32 bytes of `[A-Za-z0-9_.-]`). Brokers that should see each other's
    /// messages use the same namespace.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Self {
        self.cfg.namespace = namespace.into();
        self
    }

    /// The connection name shown by RabbitMQ (default `rmq_core <namespace>`).
    pub fn connection_name(mut self, name: impl Into<String>) -> Self {
        self.cfg.connection_name = name.into();
        self
    }

    /// How many unacked deliveries a subscription may hold (default 64; at
    /// least 1).
    pub fn prefetch(mut self, prefetch: u16) -> Self {
        self.cfg.prefetch = prefetch;
        self
    }

    /// How many publishes may wait for their confirm at once (default 256;
    /// 1 to [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS));
    /// more publishes wait for a slot.
    pub fn confirm_window(mut self, window: usize) -> Self {
        self.cfg.confirm_window = window;
        self
    }

    /// The largest envelope body, in bytes (default 64 KiB; at least 1).
    /// Larger publishes are refused; larger messages found on a queue are
    /// dead-lettered.
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.cfg.max_body = bytes;
        self
    }

    /// The most messages one history query may ask for (default 1000; at
    /// least 1).
    pub fn max_history(mut self, messages: usize) -> Self {
        self.cfg.max_history = messages;
        self
    }

    /// Classic (default) or quorum inbox queues. Changing it for existing
    /// inboxes makes RabbitMQ refuse their declaration: delete them first.
    pub fn inbox_queue_type(mut self, kind: QueueType) -> Self {
        self.cfg.inbox_queue_type = kind;
        self
    }

    /// Cap each inbox at `max` messages, dropping (dead-lettering) the oldest
    /// (default 10 000; at least 1, or `None` for no cap).
    pub fn inbox_max_len(mut self, max: Option<u32>) -> Self {
        self.cfg.inbox_max_len = max;
        self
    }

    /// Cap each room's history stream at `bytes` (default 16 MiB), kept in
    /// segments of `segment_bytes` (default 2 MiB); whole segments are
    /// dropped, oldest first. Both at least 1.
    pub fn history_max_bytes(mut self, bytes: u64, segment_bytes: u32) -> Self {
        self.cfg.history_max_bytes = bytes;
        self.cfg.history_segment_bytes = segment_bytes;
        self
    }

    /// Drop history segments older than `age`, in whole seconds (default:
    /// kept until the size cap; at least 1 s, or `None`).
    pub fn history_max_age(mut self, age: Option<Duration>) -> Self {
        self.cfg.history_max_age = age;
        self
    }

    /// How far the clocks of the nodes that create message ids may be ahead
    /// of RabbitMQ's (default 30 s); `After`/`Before` history queries start
    /// reading that much earlier than the id's timestamp.
    pub fn history_clock_skew(mut self, skew: Duration) -> Self {
        self.cfg.history_clock_skew = skew;
        self
    }

    /// How long an operation keeps retrying while RabbitMQ is unreachable
    /// before failing with [`Error::Timeout`] (default 30 s; at least 1 ms).
    pub fn operation_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.op_timeout = timeout;
        self
    }

    /// How long one connection attempt may take (default 5 s; at least 1 ms).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.cfg.connect_timeout = timeout;
        self
    }

    /// The reconnection backoff: first delay and cap (default 100 ms and 5 s),
    /// doubled after each failed attempt, plus up to 25 % jitter. The first
    /// delay is at least 1 ms, the cap at least the first delay.
    pub fn reconnect_backoff(mut self, min: Duration, max: Duration) -> Self {
        self.cfg.reconnect_min = min;
        self.cfg.reconnect_max = max;
        self
    }

    /// Connect, declare the namespace's shared exchanges, and start the
    /// connection supervisor. Fails with [`Error::Name`] or
    /// [`Error::InvalidConfig`] for a namespace or setting out of its range
    /// (see each setter) before dialling, with [`Error::Connect`] if
    /// RabbitMQ cannot be reached now; later connection losses are recovered
    /// in the background.
    pub async fn connect(mut self) -> Result<AmqpBroker> {
        crate::name::validate_namespace(&self.cfg.namespace)?;
        self.cfg.check()?;
        if self.cfg.connection_name.is_empty() {
            self.cfg.connection_name = format!("rmq_core {}", self.cfg.namespace);
        }
        let shared = link::start(self.cfg).await?;
        Ok(AmqpBroker {
            life: Arc::new(Lifeline {
                shared: shared.clone(),
            }),
            shared,
        })
    }
}

/// Shuts the connection down when the last broker handle, subscription and
/// presence stream is gone.
pub(crate) struct Lifeline {
    shared: Arc<Shared>,
}

impl Drop for Lifeline {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

/// The [`Broker`] on RabbitMQ (lapin), for clusters of chat-server nodes.
///
/// Cheap to clone; all clones share one connection, which a background task
/// re-establishes after a loss (backoff, re-declared topology, resumed
/// consumers, resent unconfirmed publishes). The connection closes when the
/// last clone and the last subscription are dropped, or on [`close`](Self::close).
///
/// ```no_run
/// use rmq_core::{AmqpBroker, Broker, Envelope, RoomId, To, UserId};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let broker = AmqpBroker::builder("amqp://guest:guest@127.0.0.1:5672/%2f")
///     .namespace("im")
///     .connect()
///     .await?;
/// let (alice, rust) = (UserId::new("alice")?, RoomId::new("rust")?);
/// broker.ensure_inbox(&alice).await?;
/// broker.create_room(&rust).await?;
/// broker.join(&rust, &alice).await?;
/// broker.publish(&Envelope::new(alice.clone(), To::Room(rust), "hi")).await?; // confirmed
///
/// let mut inbox = broker.subscribe(&alice).await?;
/// let delivery = inbox.recv().await.expect("subscription ended")?;
/// assert_eq!(delivery.envelope().body, b"hi");
/// delivery.ack().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct AmqpBroker {
    shared: Arc<Shared>,
    life: Arc<Lifeline>,
}

impl fmt::Debug for AmqpBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpBroker")
            .field("url", &crate::error::redact_url(&self.shared.cfg.url))
            .field("namespace", &self.shared.names.ns())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// `res`, with a 404 from the server (the queue or exchange is already
/// gone) as success.
fn gone_is_ok(res: Result<()>) -> Result<()> {
    match res {
        Err(Error::Amqp { source, .. }) if is_not_found(&source) => Ok(()),
        res => res,
    }
}

fn persistent() -> BasicProperties {
    BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type("application/vnd.im.envelope".into())
}

impl AmqpBroker {
    /// Start configuring a broker for the server at `url`
    /// (`amqp://user:password@host:port/vhost`, vhost `%2f` for `/`).
    ///
    /// A connection closed by the server is noticed at once; a peer that
    /// silently vanished is noticed by AMQP heartbeats, whose interval the
    /// server proposes (60 s by default on RabbitMQ) unless the URL asks for
    /// one, e.g. `amqp://…/%2f?heartbeat=10`.
    pub fn builder(url: impl Into<String>) -> AmqpBrokerBuilder {
        AmqpBrokerBuilder {
            cfg: AmqpConfig {
                url: url.into(),
                namespace: "im".into(),
                connection_name: String::new(),
                prefetch: 64,
                confirm_window: 256,
                max_body: 64 * 1024,
                max_history: 1000,
                inbox_queue_type: QueueType::Classic,
                inbox_max_len: Some(10_000),
                dead_letter_max_len: 10_000,
                presence_queue_len: 10_000,
                history_max_bytes: 16 << 20,
                history_segment_bytes: 2 << 20,
                history_max_age: None,
                history_clock_skew: Duration::from_secs(30),
                op_timeout: Duration::from_secs(30),
                connect_timeout: Duration::from_secs(5),
                reconnect_min: Duration::from_millis(100),
                reconnect_max: Duration::from_secs(5),
            },
        }
    }

    /// Connect with the default configuration.
    pub async fn connect(url: impl Into<String>) -> Result<AmqpBroker> {
        Self::builder(url).connect().await
    }

    /// The namespace of every exchange and queue of this broker.
    pub fn namespace(&self) -> &str {
        self.shared.names.ns()
    }

    /// Whether the connection is up right now.
    pub fn is_connected(&self) -> bool {
        self.shared
            .current()
            .is_some_and(|link| link.conn.status().connected())
    }

    /// How many times the connection was re-established.
    pub fn reconnections(&self) -> u64 {
        self.shared.reconnects.load(Ordering::Relaxed)
    }

    /// Close the connection. Every clone, subscription and presence stream
    /// of this broker ends; further operations fail with [`Error::Closed`].
    pub async fn close(&self) {
        self.shared.shutdown();
        self.shared.wait_closed().await;
    }

    /// Delete the namespace's shared exchanges and dead-letter queue. For
    /// tests and decommissioning: delete rooms and inboxes first, and only
    /// when no other node uses the namespace.
    pub async fn delete_namespace(&self) -> Result<()> {
        let names = &self.shared.names;
        self.shared
            .with_channel("delete namespace", |ch| async move {
                ch.queue_delete(names.dead().into(), QueueDeleteOptions::default())
                    .await?;
                for ex in [
                    names.direct(),
                    names.all(),
                    names.rooms(),
                    names.presence(),
                    names.live(),
                    names.dead(),
                ] {
                    ch.exchange_delete(ex.into(), ExchangeDeleteOptions::default())
                        .await?;
                }
                Ok(())
            })
            .await
    }

    fn check_body(&self, envelope: &Envelope) -> Result<()> {
        if envelope.body.len() > self.shared.cfg.max_body {
            return Err(Error::BodyTooLarge {
                size: envelope.body.len(),
                limit: self.shared.cfg.max_body,
            });
        }
        crate::envelope::check_content_type(envelope)
    }
}

#[async_trait]
impl Broker for AmqpBroker {
    async fn close(&self) {
        AmqpBroker::close(self).await;
    }

    async fn ensure_inbox(&self, user: &UserId) -> Result<()> {
        let shared = &self.shared;
        shared
            .with_channel("ensure inbox", |ch| async move {
                topology::declare_inbox(&ch, &shared.names, &shared.cfg, user).await
            })
            .await
    }

    async fn delete_inbox(&self, user: &UserId) -> Result<()> {
        let queue = &self.shared.names.inbox(user);
        let deleted = self
            .shared
            .with_channel("delete inbox", |ch| async move {
                ch.queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                    .await
                    .map(drop)
            })
            .await;
        gone_is_ok(deleted)
    }

    async fn create_room(&self, room: &RoomId) -> Result<()> {
        let shared = &self.shared;
        shared
            .with_channel("create room", |ch| async move {
                topology::declare_room(&ch, &shared.names, &shared.cfg, room).await
            })
            .await
    }

    async fn delete_room(&self, room: &RoomId) -> Result<()> {
        let names = &self.shared.names;
        let deleted = self
            .shared
            .with_channel("delete room", |ch| async move {
                ch.queue_delete(names.history(room).into(), QueueDeleteOptions::default())
                    .await?;
                ch.exchange_delete(names.room(room).into(), ExchangeDeleteOptions::default())
                    .await
            })
            .await;
        gone_is_ok(deleted)
    }

    async fn join(&self, room: &RoomId, user: &UserId) -> Result<()> {
        let (queue, exchange) = (
            &self.shared.names.inbox(user),
            &self.shared.names.room(room),
        );
        let joined = self
            .shared
            .with_channel("join", |ch| async move {
                ch.queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
            })
            .await;
        match joined {
            Err(Error::Amqp { source, .. }) if is_not_found(&source) => {
                if link::amqp_message(&source).contains("no exchange") {
                    Err(Error::UnknownRoom(room.clone()))
                } else {
                    Err(Error::UnknownUser(user.clone()))
                }
            }
            joined => joined,
        }
    }

    async fn leave(&self, room: &RoomId, user: &UserId) -> Result<()> {
        let (queue, exchange) = (
            &self.shared.names.inbox(user),
            &self.shared.names.room(room),
        );
        let left = self
            .shared
            .with_channel("leave", |ch| async move {
                ch.queue_unbind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    "".into(),
                    FieldTable::default(),
                )
                .await
            })
            .await;
        // The room or the inbox is gone: the user is not a member.
        gone_is_ok(left)
    }

    async fn publish(&self, envelope: &Envelope) -> Result<()> {
        self.check_body(envelope)?;
        let names = &self.shared.names;
        let (exchange, key, mandatory) = match &envelope.to {
            To::Room(room) => (names.rooms(), room.as_str().to_owned(), true),
            To::User(user) | To::UserInRoom { user, .. } => {
                (names.direct(), Names::user_key(user), true)
            }
            To::Everyone => (names.all(), String::new(), false),
        };
        let props = persistent()
            .with_message_id(envelope.id.to_string().into())
            .with_timestamp(envelope.ts / 1000);
        let confirmation = self
            .shared
            .publish_confirmed(&exchange, &key, mandatory, &envelope.encode(), props)
            .await?;
        match confirmation {
            Confirmation::Ack(None) | Confirmation::NotRequested => Ok(()),
            Confirmation::Ack(Some(_)) => Err(match &envelope.to {
                To::Room(room) => Error::UnknownRoom(room.clone()),
                To::User(user) | To::UserInRoom { user, .. } => Error::UnknownUser(user.clone()),
                To::Everyone => Error::Rejected { id: envelope.id },
            }),
            Confirmation::Nack(_) => Err(Error::Rejected { id: envelope.id }),
        }
    }

    async fn subscribe(&self, user: &UserId) -> Result<Subscription> {
        consume::subscribe_inbox(self.shared.clone(), self.life.clone(), user.clone()).await
    }

    async fn history(&self, room: &RoomId, query: HistoryQuery) -> Result<Vec<Envelope>> {
        history::history(&self.shared, room, query).await
    }

    async fn publish_presence(&self, presence: &Presence) -> Result<()> {
        let body = serde_json::to_vec(presence).unwrap_or_default();
        let props = BasicProperties::default()
            .with_delivery_mode(1)
            .with_content_type("application/json".into());
        let exchange = self.shared.names.presence();
        match self
            .shared
            .publish_confirmed(&exchange, "", false, &body, props)
            .await?
        {
            Confirmation::Nack(_) => Err(Error::Rejected {
                id: uuid::Uuid::nil(),
            }),
            _ => Ok(()),
        }
    }

    async fn subscribe_presence(&self) -> Result<PresenceStream> {
        consume::subscribe_presence(self.shared.clone(), self.life.clone()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a user sees when `builder` connects; nothing is dialled (port 1).
    async fn refused(builder: AmqpBrokerBuilder) -> String {
        builder.connect().await.map(drop).unwrap_err().to_string()
    }

    fn b() -> AmqpBrokerBuilder {
        AmqpBroker::builder("amqp://127.0.0.1:1/%2f")
    }

    #[test]
    fn the_defaults_are_valid() {
        b().cfg.check().unwrap();
        let ms = Duration::from_millis(1);
        let smallest = b()
            .prefetch(1)
            .confirm_window(1)
            .max_body_size(1)
            .max_history(1)
            .inbox_max_len(Some(1))
            .history_max_bytes(1, 1)
            .history_max_age(Some(Duration::from_secs(1)))
            .operation_timeout(ms)
            .connect_timeout(ms)
            .reconnect_backoff(ms, ms);
        smallest.cfg.check().unwrap();
        b().inbox_max_len(None)
            .history_max_age(None)
            .cfg
            .check()
            .unwrap();
    }

    #[tokio::test]
    async fn zero_counts_are_refused() {
        assert_eq!(
            refused(b().prefetch(0)).await,
            "invalid prefetch: expected 1 to 65535, got 0"
        );
        assert_eq!(
            refused(b().confirm_window(0)).await,
            "invalid confirm_window: expected 1 to 2305843009213693951, got 0"
        );
        assert_eq!(
            refused(b().confirm_window(usize::MAX)).await,
            format!(
                "invalid confirm_window: expected 1 to 2305843009213693951, got {}",
                usize::MAX
            )
        );
        assert_eq!(
            refused(b().max_body_size(0)).await,
            "invalid max_body_size: expected at least 1, got 0"
        );
        assert_eq!(
            refused(b().max_history(0)).await,
            "invalid max_history: expected at least 1, got 0"
        );
        assert_eq!(
            refused(b().inbox_max_len(Some(0))).await,
            "invalid inbox_max_len: expected at least 1, or None for no cap, got Some(0)"
        );
    }

    #[tokio::test]
    async fn an_empty_history_cap_is_refused() {
        assert_eq!(
            refused(b().history_max_bytes(0, 1024)).await,
            "invalid history_max_bytes bytes: expected at least 1, got 0"
        );
        assert_eq!(
            refused(b().history_max_bytes(1 << 20, 0)).await,
            "invalid history_max_bytes segment_bytes: expected at least 1, got 0"
        );
        assert_eq!(
            refused(b().history_max_age(Some(Duration::from_millis(999)))).await,
            "invalid history_max_age: expected at least 1s, or None, got Some(999ms)"
        );
    }

    #[tokio::test]
    async fn zero_times_are_refused() {
        assert_eq!(
            refused(b().operation_timeout(Duration::ZERO)).await,
            "invalid operation_timeout: expected at least 1ms, got 0ns"
        );
        assert_eq!(
            refused(b().connect_timeout(Duration::ZERO)).await,
            "invalid connect_timeout: expected at least 1ms, got 0ns"
        );
        assert_eq!(
            refused(b().reconnect_backoff(Duration::ZERO, Duration::from_secs(1))).await,
            "invalid reconnect_backoff min: expected at least 1ms, got 0ns"
        );
    }

    #[tokio::test]
    async fn a_backoff_cap_under_its_first_delay_is_refused() {
        let err = b()
            .reconnect_backoff(Duration::from_secs(2), Duration::from_millis(500))
            .connect()
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid reconnect_backoff max: expected at least the min, 2s, got 500ms"
        );
        assert!(matches!(
            err,
            Error::InvalidConfig {
                setting: "reconnect_backoff max",
                ..
            }
        ));
    }
}
