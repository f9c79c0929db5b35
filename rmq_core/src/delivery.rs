//! Deliveries, their acknowledgement, and the streams that yield them.

use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures_util::{Stream, StreamExt};

use crate::{Envelope, PresenceEvent, Result, UserId};

/// The implementation side of an [`Acker`]: how one broker settles one delivery.
///
/// Broker implementations outside this crate implement it; applications use
/// [`Acker`].
#[async_trait]
pub trait Settle: Send + Sync + 'static {
    /// The message was handled: remove it from the inbox.
    async fn ack(self: Box<Self>) -> Result<()>;
    /// The message was not handled: put it back in the inbox (`requeue`) or
    /// drop it (dead-letter it where the broker supports that).
    async fn nack(self: Box<Self>, requeue: bool) -> Result<()>;
}

/// Settles one [`Delivery`]: ack it when the client acknowledged it, nack it
/// to give it back.
///
/// An acker that is dropped unsettled keeps the message unacknowledged until
/// its subscription ends, after which the message is delivered again. Each
/// subscription has at most `prefetch` unsettled deliveries; one that holds
/// that many receives nothing more until it settles some.
#[must_use = "an unsettled delivery is delivered again once its subscription ends"]
pub struct Acker {
    id: uuid::Uuid,
    inner: Box<dyn Settle>,
}

impl Acker {
    /// Wrap a broker's settlement of the envelope `id`.
    pub fn new(id: uuid::Uuid, inner: Box<dyn Settle>) -> Self {
        Acker { id, inner }
    }

    /// The id of the envelope this acker settles.
    pub fn id(&self) -> uuid::Uuid {
        self.id
    }

    /// Remove the message from the inbox. Fails with
    /// [`Error::DeliveryGone`](crate::Error::DeliveryGone) if its subscription
    /// or connection ended meanwhile (the message then comes again).
    pub async fn ack(self) -> Result<()> {
        self.inner.ack().await
    }

    /// Give the message back to the inbox (`requeue = true`, it is delivered
    /// again) or drop it (`requeue = false`).
    pub async fn nack(self, requeue: bool) -> Result<()> {
        self.inner.nack(requeue).await
    }
}

impl fmt::Debug for Acker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Acker").field("id", &self.id).finish()
    }
}

/// One message taken from an inbox, not yet settled.
#[derive(Debug)]
#[must_use = "an unsettled delivery is delivered again once its subscription ends"]
pub struct Delivery {
    envelope: Envelope,
    redelivered: bool,
    acker: Acker,
}

impl Delivery {
    /// A delivery of `envelope`, settled through `acker`.
    pub fn new(envelope: Envelope, redelivered: bool, acker: Acker) -> Self {
        Delivery {
            envelope,
            redelivered,
            acker,
        }
    }

    /// The message.
    pub fn envelope(&self) -> &Envelope {
        &self.envelope
    }

    /// Whether this message was delivered before (and not acked).
    pub fn redelivered(&self) -> bool {
        self.redelivered
    }

    /// Ack the message now (see [`Acker::ack`]).
    pub async fn ack(self) -> Result<()> {
        self.acker.ack().await
    }

    /// Nack the message now (see [`Acker::nack`]).
    pub async fn nack(self, requeue: bool) -> Result<()> {
        self.acker.nack(requeue).await
    }

    /// Split into the message and its acker, to ack later (e.g. when the
    /// client acknowledges it).
    pub fn into_parts(self) -> (Envelope, Acker) {
        (self.envelope, self.acker)
    }
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = T> + Send + 'static>>;

/// The deliveries of one user's inbox; see [`Broker::subscribe`](crate::Broker::subscribe).
///
/// Yields `Ok(delivery)` for every message; an `Err` is terminal (for
/// example [`Error::UnknownUser`](crate::Error::UnknownUser) when the inbox
/// was deleted) and is followed by the end of the stream. Connection losses are
/// not errors: the broker re-subscribes by itself. Dropping the subscription
/// returns its unsettled deliveries to the inbox.
#[must_use = "a subscription does nothing unless polled"]
pub struct Subscription {
    user: UserId,
    inner: BoxStream<Result<Delivery>>,
}

impl Subscription {
    /// Wrap a broker's stream of deliveries for `user`.
    pub fn new(
        user: UserId,
        stream: impl Stream<Item = Result<Delivery>> + Send + 'static,
    ) -> Self {
        Subscription {
            user,
            inner: Box::pin(stream),
        }
    }

    /// The user whose inbox this is.
    pub fn user(&self) -> &UserId {
        &self.user
    }

    /// The next delivery; `None` once the subscription ended.
    pub async fn recv(&mut self) -> Option<Result<Delivery>> {
        self.inner.next().await
    }
}

impl Stream for Subscription {
    type Item = Result<Delivery>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for Subscription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Subscription")
            .field("user", &self.user)
            .finish()
    }
}

/// Presence changes from every node; see [`Broker::subscribe_presence`](crate::Broker::subscribe_presence).
#[must_use = "a presence stream does nothing unless polled"]
pub struct PresenceStream {
    inner: BoxStream<PresenceEvent>,
}

impl PresenceStream {
    /// Wrap a broker's stream of presence events.
    pub fn new(stream: impl Stream<Item = PresenceEvent> + Send + 'static) -> Self {
        PresenceStream {
            inner: Box::pin(stream),
        }
    }

    /// The next event; `None` once the broker was closed.
    pub async fn recv(&mut self) -> Option<PresenceEvent> {
        self.inner.next().await
    }
}

impl Stream for PresenceStream {
    type Item = PresenceEvent;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl fmt::Debug for PresenceStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PresenceStream").finish_non_exhaustive()
    }
}
