//! The live fan-out of conversations on RabbitMQ.
//!
//! ```text
//!  append on any node ── routing key = conversation ──▶ <ns>.live (direct exchange)
//!                                                          │ one binding per conversation
//!                                                          │ watched on the node
//!                                                          ▼
//!                                  one exclusive, auto-delete, bounded queue per node
//! ```
//!
//! A node receives a live entry once, whatever the number of its readers in
//! the conversation, and nothing of conversations nobody on it watches.
//! Frames are transient (the log in the store is the truth): after a
//! reconnection the node declares a new queue, binds what its readers watch,
//! and reports [`FanoutEvent::Lagged`] so that they read the gap from the log.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures_util::FutureExt;
use lapin::options::{QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation};

use super::AmqpBroker;
use super::consume::{Declare, subscribe_ephemeral};
use super::link::Shared;
use crate::conversation::{Fanout, FanoutBindings, FanoutEvent, FanoutListener};
use crate::sync::lock;
use crate::{ConversationId, Error, Result};

/// What one node's listener is bound to, and the channel and queue of its
/// current link.
struct LiveState {
    shared: Arc<Shared>,
    bound: Mutex<HashSet<String>>,
    current: Mutex<Option<(Channel, String)>>,
}

impl LiveState {
    async fn declare(self: Arc<Self>, ch: Channel) -> lapin::Result<String> {
        let mut args = FieldTable::default();
        args.insert(
            "x-max-length".into(),
            AMQPValue::LongLongInt(self.shared.cfg.presence_queue_len.into()),
        );
        args.insert(
            "x-overflow".into(),
            AMQPValue::LongString("drop-head".into()),
        );
        let queue = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions::exclusive().auto_delete(),
                args,
            )
            .await?
            .name()
            .to_string();
        // Publish the new link first, then bind what is watched: a watch that
        // lands in between binds on the new link itself.
        *lock(&self.current) = Some((ch.clone(), queue.clone()));
        let watched: Vec<String> = lock(&self.bound).iter().cloned().collect();
        for key in watched {
            self.queue_bind(&ch, &queue, &key).await?;
        }
        Ok(queue)
    }

    async fn queue_bind(&self, ch: &Channel, queue: &str, key: &str) -> lapin::Result<()> {
        ch.queue_bind(
            queue.into(),
            self.shared.names.live().into(),
            key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
    }

    /// Run a binding change on the current link, bounded by the operation
    /// timeout. A failure on a link that is going away is not an error: the
    /// next link binds everything anew, and its readers catch up on
    /// `Lagged`. A failure on a link that stays up is.
    async fn on_current<F, Fut>(&self, op: &'static str, f: F) -> Result<()>
    where
        F: FnOnce(Channel, String) -> Fut,
        Fut: Future<Output = lapin::Result<()>>,
    {
        let current = lock(&self.current).clone();
        let Some((ch, queue)) = current else {
            return Ok(()); // reconnecting: the new link binds what is watched
        };
        match tokio::time::timeout(self.shared.cfg.op_timeout, f(ch.clone(), queue)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) if ch.status().connected() => Err(Error::Amqp { op, source: e }),
            Ok(Err(e)) => {
                tracing::debug!(op, error = %e, "live binding change failed; redone on reconnection");
                Ok(())
            }
            Err(_) => {
                tracing::debug!(op, "live binding change timed out; redone on reconnection");
                Ok(())
            }
        }
    }
}

#[async_trait]
impl FanoutBindings for LiveState {
    async fn bind(&self, conversation: &ConversationId) -> Result<()> {
        let key = conversation.key();
        lock(&self.bound).insert(key.clone());
        let bound = self
            .on_current("live bind", |ch, queue| {
                let key = key.clone();
                async move { self.queue_bind(&ch, &queue, &key).await }
            })
            .await;
        if bound.is_err() {
            lock(&self.bound).remove(&key);
        }
        bound
    }

    async fn unbind(&self, conversation: &ConversationId) -> Result<()> {
        let key = conversation.key();
        lock(&self.bound).remove(&key);
        let exchange = self.shared.names.live();
        self.on_current("live unbind", |ch, queue| async move {
            ch.queue_unbind(
                queue.into(),
                exchange.into(),
                key.into(),
                FieldTable::default(),
            )
            .await
        })
        .await
    }
}

#[async_trait]
impl Fanout for AmqpBroker {
    async fn publish(&self, conversation: &ConversationId, frame: &[u8]) -> Result<()> {
        let props = BasicProperties::default()
            .with_delivery_mode(1)
            .with_content_type("application/vnd.im.live".into());
        let exchange = self.shared.names.live();
        match self
            .shared
            .publish_confirmed(&exchange, &conversation.key(), false, frame, props)
            .await?
        {
            Confirmation::Nack(_) => Err(Error::Rejected {
                id: uuid::Uuid::nil(),
            }),
            _ => Ok(()),
        }
    }

    async fn listen(&self) -> Result<FanoutListener> {
        let state = Arc::new(LiveState {
            shared: self.shared.clone(),
            bound: Mutex::default(),
            current: Mutex::default(),
        });
        let declare: Declare = {
            let state = state.clone();
            Arc::new(move |ch| state.clone().declare(ch).boxed())
        };
        let events = subscribe_ephemeral(
            self.shared.clone(),
            self.life.clone(),
            "live listen",
            declare,
            |data| Some(FanoutEvent::Frame(data.to_vec())),
            FanoutEvent::Lagged,
        )
        .await?;
        Ok(FanoutListener::new(state, events))
    }
}
