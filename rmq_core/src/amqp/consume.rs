//! Inbox and presence consumers that survive reconnections.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Consumer};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::Lifeline;
use super::link::{Attempt, Link, Pace, Shared, is_not_found};
use super::topology;
use crate::delivery::Settle;
use crate::handover::{DropSignal, FinishOnDrop, receiver_stream};
use crate::{
    Acker, Delivery, Envelope, Error, Presence, PresenceEvent, PresenceStream, Result,
    Subscription, UserId,
};

/// Settles one AMQP delivery.
struct AmqpSettle {
    id: uuid::Uuid,
    acker: lapin::Acker,
    /// The operation timeout: a settle that cannot be sent within it is on a
    /// connection that is gone (RabbitMQ gives the delivery back).
    timeout: Duration,
}

impl AmqpSettle {
    async fn settle(&self, send: impl Future<Output = lapin::Result<bool>>) -> Result<()> {
        match tokio::time::timeout(self.timeout, send).await {
            Ok(Ok(true)) => Ok(()),
            _ => Err(Error::DeliveryGone { id: self.id }),
        }
    }
}

#[async_trait]
impl Settle for AmqpSettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        self.settle(self.acker.ack(BasicAckOptions::default()))
            .await
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<()> {
        let options = BasicNackOptions {
            requeue,
            multiple: false,
        };
        self.settle(self.acker.nack(options)).await
    }
}

async fn start_consumer(
    shared: &Shared,
    link: &Link,
    queue: &str,
) -> lapin::Result<(Channel, Consumer)> {
    let ch = link.conn.create_channel().await?;
    ch.basic_qos(shared.cfg.prefetch, BasicQosOptions::default())
        .await?;
    let consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((ch, consumer))
}

/// Start consuming `queue` on a link of generation `min_generation` or newer,
/// retrying on connection failures. `Ok(None)` when the queue does not exist.
async fn consume_retrying(
    shared: &Shared,
    queue: &str,
    min_generation: u64,
    deadline: Option<Instant>,
) -> Result<Option<(Arc<Link>, Channel, Consumer)>> {
    shared
        .retry(
            "subscribe",
            Pace::Paced(deadline),
            min_generation,
            |link| async move {
                match start_consumer(shared, &link, queue).await {
                    Ok((ch, consumer)) => Attempt::Done(Ok(Some((link, ch, consumer)))),
                    Err(e) if is_not_found(&e) => Attempt::Done(Ok(None)),
                    Err(e) => shared.failed(&link, "basic.consume", e),
                }
            },
        )
        .await
}

/// Decrements the active-inbox count when the consumer task ends.
struct ActiveInbox {
    shared: Arc<Shared>,
    user: UserId,
}

impl Drop for ActiveInbox {
    fn drop(&mut self) {
        self.shared.unregister_inbox(&self.user);
    }
}

pub(crate) async fn subscribe_inbox(
    shared: Arc<Shared>,
    life: Arc<Lifeline>,
    user: UserId,
) -> Result<Subscription> {
    let queue = shared.names.inbox(&user);
    let deadline = Instant::now() + shared.cfg.op_timeout;
    shared.handover.wait(&user).await;
    let Some((link, ch, consumer)) = consume_retrying(&shared, &queue, 0, Some(deadline)).await?
    else {
        return Err(Error::UnknownUser(user));
    };
    let ticket = shared.handover.ticket(&user);
    shared.register_inbox(&user);
    let active = ActiveInbox {
        shared: shared.clone(),
        user: user.clone(),
    };
    let (tx, rx) = mpsc::channel(usize::from(shared.cfg.prefetch).max(1));
    let finish = FinishOnDrop(ticket.clone());
    tokio::spawn(inbox_task(
        shared,
        (life, active, finish),
        queue,
        tx,
        (link, ch, consumer),
    ));
    Ok(Subscription::new(
        user,
        receiver_stream(rx, Some(DropSignal(ticket))),
    ))
}

enum Pumped {
    /// The subscriber is gone.
    Dropped,
    /// The consumer ended (connection lost, or cancelled by the server).
    Ended,
}

async fn pump_inbox(
    shared: &Shared,
    queue: &str,
    consumer: &mut Consumer,
    tx: &mpsc::Sender<Result<Delivery>>,
) -> Pumped {
    loop {
        let next = tokio::select! {
            _ = tx.closed() => return Pumped::Dropped,
            next = consumer.next() => next,
        };
        let d = match next {
            Some(Ok(d)) => d,
            Some(Err(e)) => {
                tracing::debug!(queue, error = %e, "inbox consumer failed");
                return Pumped::Ended;
            }
            None => return Pumped::Ended,
        };
        match Envelope::decode(&d.data, shared.cfg.max_body) {
            Ok(envelope) => {
                let acker = Acker::new(
                    envelope.id,
                    Box::new(AmqpSettle {
                        id: envelope.id,
                        acker: d.acker,
                        timeout: shared.cfg.op_timeout,
                    }),
                );
                let delivery = Delivery::new(envelope, d.redelivered, acker);
                if tx.send(Ok(delivery)).await.is_err() {
                    return Pumped::Dropped;
                }
            }
            Err(e) => {
                tracing::warn!(queue, error = %e, "malformed message dead-lettered");
                let _ = d.acker.reject(BasicRejectOptions { requeue: false }).await;
            }
        }
    }
}

async fn inbox_task(
    shared: Arc<Shared>,
    _guards: (Arc<Lifeline>, ActiveInbox, FinishOnDrop),
    queue: String,
    tx: mpsc::Sender<Result<Delivery>>,
    first: (Arc<Link>, Channel, Consumer),
) {
    let (mut link, mut ch, mut consumer) = first;
    loop {
        let pumped = pump_inbox(&shared, &queue, &mut consumer, &tx).await;
        drop(consumer);
        if ch.status().connected() {
            // Closing the channel gives every unacked delivery back to the queue.
            let _ =
                tokio::time::timeout(Duration::from_secs(2), ch.close(200, "done".into())).await;
        }
        if let Pumped::Dropped = pumped {
            return;
        }
        // Re-subscribe on the same link if it is alive (the server cancelled
        // the consumer), else on the next one.
        let min_generation = shared.resume_generation(&link);
        let resumed = tokio::select! {
            _ = tx.closed() => return,
            r = consume_retrying(&shared, &queue, min_generation, None) => r,
        };
        match resumed {
            Ok(Some((l, c, cons))) => {
                tracing::debug!(queue, generation = l.generation, "inbox consumer resumed");
                (link, ch, consumer) = (l, c, cons);
            }
            Ok(None) => {
                let user = UserId::new(queue.rsplit_once(".inbox.").map_or("", |(_, u)| u));
                let err = match user {
                    Ok(user) => Error::UnknownUser(user),
                    Err(e) => Error::Name(e),
                };
                let _ = tx.send(Err(err)).await;
                return;
            }
            Err(Error::Closed) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        }
    }
}

/// Declares the queue of an ephemeral consumer on a fresh channel (and binds
/// it); returns the queue's name. Runs again after every reconnection.
pub(crate) type Declare =
    Arc<dyn Fn(Channel) -> BoxFuture<'static, lapin::Result<String>> + Send + Sync>;

async fn start_ephemeral_consumer(
    shared: &Shared,
    link: &Link,
    declare: &Declare,
) -> lapin::Result<(Channel, Consumer)> {
    let ch = link.conn.create_channel().await?;
    let queue = declare(ch.clone()).await?;
    ch.basic_qos(shared.cfg.prefetch, BasicQosOptions::default())
        .await?;
    let consumer = ch
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((ch, consumer))
}

async fn ephemeral_retrying(
    shared: &Shared,
    min_generation: u64,
    deadline: Option<Instant>,
    op: &'static str,
    declare: &Declare,
) -> Result<(Arc<Link>, Channel, Consumer)> {
    shared
        .retry(
            op,
            Pace::Paced(deadline),
            min_generation,
            |link| async move {
                match start_ephemeral_consumer(shared, &link, declare).await {
                    Ok((ch, consumer)) => Attempt::Done(Ok((link, ch, consumer))),
                    Err(e) => shared.failed(&link, op, e),
                }
            },
        )
        .await
}

/// A consumer of a server-named, exclusive queue that is declared anew on
/// every link (presence, live fan-out): it forwards each message as `map`
/// makes it, and after a reconnection sends `lagged`, because what was
/// published while no queue was bound is lost.
pub(crate) async fn subscribe_ephemeral<T: Clone + Send + 'static>(
    shared: Arc<Shared>,
    life: Arc<Lifeline>,
    op: &'static str,
    declare: Declare,
    map: fn(&[u8]) -> Option<T>,
    lagged: T,
) -> Result<mpsc::Receiver<T>> {
    let deadline = Instant::now() + shared.cfg.op_timeout;
    let first = ephemeral_retrying(&shared, 0, Some(deadline), op, &declare).await?;
    let (tx, rx) = mpsc::channel(usize::from(shared.cfg.prefetch).max(1));
    tokio::spawn(async move {
        let _life = life;
        let (mut link, mut ch, mut consumer) = first;
        loop {
            loop {
                let next = tokio::select! {
                    _ = tx.closed() => {
                        let _ = ch.close(200, "done".into()).await;
                        return;
                    }
                    next = consumer.next() => next,
                };
                let Some(Ok(d)) = next else { break };
                match map(&d.data) {
                    Some(item) => {
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                    None => tracing::warn!(op, "malformed message dropped"),
                }
                let _ = d.acker.ack(BasicAckOptions::default()).await;
            }
            drop(consumer);
            let min_generation = shared.resume_generation(&link);
            let resumed = tokio::select! {
                _ = tx.closed() => return,
                r = ephemeral_retrying(&shared, min_generation, None, op, &declare) => r,
            };
            match resumed {
                Ok(r) => (link, ch, consumer) = r,
                Err(_) => return,
            }
            // Say so only now that the new queue is bound: a reader that
            // re-reads its state on `lagged` then misses nothing after it.
            if tx.send(lagged.clone()).await.is_err() {
                return;
            }
        }
    });
    Ok(rx)
}

pub(crate) async fn subscribe_presence(
    shared: Arc<Shared>,
    life: Arc<Lifeline>,
) -> Result<PresenceStream> {
    let declare: Declare = {
        let shared = shared.clone();
        Arc::new(move |ch| {
            let shared = shared.clone();
            async move { topology::declare_presence_queue(&ch, &shared.names, &shared.cfg).await }
                .boxed()
        })
    };
    let map = |data: &[u8]| {
        serde_json::from_slice::<Presence>(data)
            .ok()
            .map(PresenceEvent::Changed)
    };
    let rx = subscribe_ephemeral(
        shared,
        life,
        "subscribe_presence",
        declare,
        map,
        PresenceEvent::Lagged,
    )
    .await?;
    Ok(PresenceStream::new(receiver_stream(rx, None)))
}
