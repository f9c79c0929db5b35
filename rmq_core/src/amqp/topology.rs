//! Names and declarations of the RabbitMQ topology.
//!
//! ```text
//!                 publish To::Room(r)                       publish To::User(u)
//!                        │                                           │
//!                        ▼                                           ▼
//!  <ns>.rooms (direct) ──r──▶ <ns>.room.<r> (fanout)        <ns>.direct (topic)
//!                              │        │                            │ user.<u>
//!                              │        └──▶ <ns>.history.<r>        │
//!                              │             (stream, by offset)     │
//!                              └── one binding per member ──▶ <ns>.inbox.<u> ◀── <ns>.all (fanout)
//!                                                              (durable, classic or quorum;
//!                                                               dead letters ─▶ <ns>.dead)
//!  <ns>.presence (fanout) ──▶ one exclusive, bounded queue per presence subscriber
//!  <ns>.live (direct) ──<conversation>──▶ one exclusive, bounded queue per node (live entries)
//! ```
//!
//! Room messages enter through the `<ns>.rooms` direct exchange, bound to each
//! room's fanout by the room id: publishing to a deleted room is then an
//! unroutable (returned) message, not a channel error, and the room's stream
//! is always bound, so a room with no members still routes.

use lapin::options::{
    ExchangeBindOptions, ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, ExchangeKind};

use super::{AmqpConfig, QueueType};
use crate::{RoomId, UserId};

/// The names derived from a namespace.
#[derive(Debug, Clone)]
pub(crate) struct Names {
    ns: String,
}

impl Names {
    pub(crate) fn new(ns: &str) -> Self {
        Names { ns: ns.to_owned() }
    }
    pub(crate) fn ns(&self) -> &str {
        &self.ns
    }
    pub(crate) fn direct(&self) -> String {
        format!("{}.direct", self.ns)
    }
    pub(crate) fn all(&self) -> String {
        format!("{}.all", self.ns)
    }
    pub(crate) fn rooms(&self) -> String {
        format!("{}.rooms", self.ns)
    }
    pub(crate) fn presence(&self) -> String {
        format!("{}.presence", self.ns)
    }
    pub(crate) fn live(&self) -> String {
        format!("{}.live", self.ns)
    }
    pub(crate) fn dead(&self) -> String {
        format!("{}.dead", self.ns)
    }
    pub(crate) fn room(&self, room: &RoomId) -> String {
        format!("{}.room.{room}", self.ns)
    }
    pub(crate) fn history(&self, room: &RoomId) -> String {
        format!("{}.history.{room}", self.ns)
    }
    pub(crate) fn inbox(&self, user: &UserId) -> String {
        format!("{}.inbox.{user}", self.ns)
    }
    pub(crate) fn user_key(user: &UserId) -> String {
        format!("user.{user}")
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn string(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

/// Declare the namespace's shared exchanges and the dead-letter queue.
pub(crate) async fn declare_shared(
    ch: &Channel,
    names: &Names,
    cfg: &AmqpConfig,
) -> lapin::Result<()> {
    for (name, kind) in [
        (names.direct(), ExchangeKind::Topic),
        (names.all(), ExchangeKind::Fanout),
        (names.rooms(), ExchangeKind::Direct),
        (names.presence(), ExchangeKind::Fanout),
        (names.live(), ExchangeKind::Direct),
        (names.dead(), ExchangeKind::Fanout),
    ] {
        ch.exchange_declare(name.into(), kind, durable_exchange(), FieldTable::default())
            .await?;
    }
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(cfg.dead_letter_max_len.into()),
    );
    args.insert("x-overflow".into(), string("drop-head"));
    ch.queue_declare(names.dead().into(), QueueDeclareOptions::durable(), args)
        .await?;
    ch.queue_bind(
        names.dead().into(),
        names.dead().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// Declare a user's inbox and bind it to the direct and broadcast exchanges.
pub(crate) async fn declare_inbox(
    ch: &Channel,
    names: &Names,
    cfg: &AmqpConfig,
    user: &UserId,
) -> lapin::Result<()> {
    let queue = names.inbox(user);
    let mut args = FieldTable::default();
    let kind = match cfg.inbox_queue_type {
        QueueType::Classic => "classic",
        QueueType::Quorum => "quorum",
    };
    args.insert("x-queue-type".into(), string(kind));
    args.insert("x-dead-letter-exchange".into(), string(&names.dead()));
    if let Some(max) = cfg.inbox_max_len {
        args.insert("x-max-length".into(), AMQPValue::LongLongInt(max.into()));
        args.insert("x-overflow".into(), string("drop-head"));
    }
    ch.queue_declare(queue.clone().into(), QueueDeclareOptions::durable(), args)
        .await?;
    ch.queue_bind(
        queue.clone().into(),
        names.direct().into(),
        Names::user_key(user).into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.queue_bind(
        queue.into(),
        names.all().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// Declare a room's fanout exchange and history stream, and route the room id to it.
pub(crate) async fn declare_room(
    ch: &Channel,
    names: &Names,
    cfg: &AmqpConfig,
    room: &RoomId,
) -> lapin::Result<()> {
    let exchange = names.room(room);
    let stream = names.history(room);
    ch.exchange_declare(
        exchange.clone().into(),
        ExchangeKind::Fanout,
        durable_exchange(),
        FieldTable::default(),
    )
    .await?;
    let mut args = FieldTable::default();
    args.insert("x-queue-type".into(), string("stream"));
    args.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(i64::try_from(cfg.history_max_bytes).unwrap_or(i64::MAX)),
    );
    args.insert(
        "x-stream-max-segment-size-bytes".into(),
        AMQPValue::LongLongInt(cfg.history_segment_bytes.into()),
    );
    if let Some(age) = cfg.history_max_age {
        args.insert(
            "x-max-age".into(),
            string(&format!("{}s", age.as_secs().max(1))),
        );
    }
    ch.queue_declare(stream.clone().into(), QueueDeclareOptions::durable(), args)
        .await?;
    ch.queue_bind(
        stream.into(),
        exchange.clone().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    ch.exchange_bind(
        exchange.into(),
        names.rooms().into(),
        room.as_str().into(),
        ExchangeBindOptions::default(),
        FieldTable::default(),
    )
    .await
}

/// Declare an exclusive, bounded, server-named queue bound to the presence
/// exchange; returns its name.
pub(crate) async fn declare_presence_queue(
    ch: &Channel,
    names: &Names,
    cfg: &AmqpConfig,
) -> lapin::Result<String> {
    let mut args = FieldTable::default();
    args.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(cfg.presence_queue_len.into()),
    );
    args.insert("x-overflow".into(), string("drop-head"));
    let queue = ch
        .queue_declare(
            "".into(),
            QueueDeclareOptions::exclusive().auto_delete(),
            args,
        )
        .await?;
    let name = queue.name().to_string();
    ch.queue_bind(
        name.clone().into(),
        names.presence().into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await?;
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_design() {
        let n = Names::new("im");
        let room = RoomId::new("rust").unwrap();
        let user = UserId::new("bob").unwrap();
        assert_eq!(n.room(&room), "im.room.rust");
        assert_eq!(n.history(&room), "im.history.rust");
        assert_eq!(n.inbox(&user), "im.inbox.bob");
        assert_eq!(n.direct(), "im.direct");
        assert_eq!(Names::user_key(&user), "user.bob");
        // The longest possible name stays below AMQP's 255-byte limit.
        let ns = "n".repeat(crate::name::MAX_NAMESPACE_LEN);
        let long = UserId::new("u".repeat(crate::name::MAX_ID_LEN)).unwrap();
        assert!(Names::new(&ns).inbox(&long).len() < 255);
    }
}
