//! Consuming an inbox with `tiny_q` leases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tiny_q::Lease;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::{Delivered, Inner, lock};
use crate::delivery::Settle;
use crate::handover::{DropSignal, FinishOnDrop, receiver_stream};
use crate::{Acker, Delivery, Envelope, Error, Result, Subscription, UserId};

/// How long one wait for an item lasts before the task checks whether its
/// subscriber is gone. Waits are never cancelled, so no lease is lost.
const POLL: Duration = Duration::from_millis(200);

/// The leases a subscription handed out and that are not settled yet.
#[derive(Default)]
struct Outstanding {
    leases: Mutex<HashMap<u64, Lease>>,
}

impl Outstanding {
    fn take(&self, position: u64) -> Option<Lease> {
        lock(&self.leases).remove(&position)
    }

    fn put_back(&self, lease: Lease) {
        lock(&self.leases).insert(lease.position().get(), lease);
    }
}

struct LocalSettle {
    inner: Arc<Inner>,
    delivered: Delivered,
    user: UserId,
    id: uuid::Uuid,
    position: u64,
    outstanding: Arc<Outstanding>,
    _permit: OwnedSemaphorePermit,
}

impl LocalSettle {
    fn gone(&self) -> Error {
        Error::DeliveryGone { id: self.id }
    }

    fn forget(&self) {
        lock(&self.delivered).remove(&self.position);
    }
}

#[async_trait]
impl Settle for LocalSettle {
    async fn ack(self: Box<Self>) -> Result<()> {
        let Some(lease) = self.outstanding.take(self.position) else {
            return Err(self.gone());
        };
        match lease.ack().await {
            Ok(true) => {
                self.forget();
                Ok(())
            }
            Ok(false) => {
                self.forget();
                Err(self.gone())
            }
            Err(e) => {
                self.outstanding.put_back(lease);
                Err(e.into())
            }
        }
    }

    async fn nack(self: Box<Self>, requeue: bool) -> Result<()> {
        let Some(lease) = self.outstanding.take(self.position) else {
            return Err(self.gone());
        };
        if requeue {
            return match lease.release().await {
                Ok(true) => Ok(()),
                Ok(false) => Err(self.gone()),
                Err(e) => {
                    self.outstanding.put_back(lease);
                    Err(e.into())
                }
            };
        }
        if let Err(e) = self.inner.dead.push(lease.item()).await {
            tracing::warn!(user = %self.user, error = %e, "dead-lettering a nacked message failed");
        }
        match lease.ack().await {
            Ok(_) => {
                self.forget();
                Ok(())
            }
            Err(e) => {
                self.outstanding.put_back(lease);
                Err(e.into())
            }
        }
    }
}

pub(super) fn subscribe(inner: Arc<Inner>, user: UserId, queue: tiny_q::Queue) -> Subscription {
    let (tx, rx) = mpsc::channel(inner.cfg.prefetch);
    let ticket = inner.handover.ticket(&user);
    let finish = FinishOnDrop(ticket.clone());
    let tasks = inner.tasks.clone();
    tasks.spawn(run(inner, user.clone(), queue, tx, finish));
    Subscription::new(user, receiver_stream(rx, Some(DropSignal(ticket))))
}

async fn run(
    inner: Arc<Inner>,
    user: UserId,
    queue: tiny_q::Queue,
    tx: mpsc::Sender<Result<Delivery>>,
    _finish: FinishOnDrop,
) {
    let outstanding = Arc::new(Outstanding::default());
    let delivered = inner.delivered(&user);
    let permits = Arc::new(Semaphore::new(inner.cfg.prefetch));
    loop {
        if tx.is_closed() {
            break;
        }
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = tx.closed() => break,
            () = inner.closing.cancelled() => break,
        };
        let leased = tokio::select! {
            biased;
            () = inner.closing.cancelled() => break,
            _ = tx.closed() => break,
            leased = queue.lease_wait(POLL) => leased,
        };
        let lease = match leased {
            Ok(Some(lease)) => lease,
            Ok(None) => continue,
            Err(tiny_q::Error::Destroyed { .. } | tiny_q::Error::NotFound { .. }) => {
                let _ = tx.send(Err(Error::UnknownUser(user.clone()))).await;
                break;
            }
            Err(e) if e.position().is_some() => {
                tracing::warn!(%user, error = %e, "corrupt inbox item discarded");
                if let Some(position) = e.position() {
                    let _ = queue.discard(position).await;
                }
                continue;
            }
            Err(e) if e.is_unavailable() => {
                tracing::warn!(%user, error = %e, "inbox unavailable; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            Err(e) => {
                let _ = tx.send(Err(e.into())).await;
                break;
            }
        };
        let envelope = match Envelope::decode(lease.item(), inner.cfg.max_body) {
            Ok(env) => env,
            Err(e) => {
                tracing::warn!(%user, error = %e, "malformed message dead-lettered");
                let _ = inner.dead.push(lease.item()).await;
                let _ = lease.ack().await;
                continue;
            }
        };
        let position = lease.position().get();
        let redelivered = !lock(&delivered).insert(position);
        outstanding.put_back(lease);
        let settle = LocalSettle {
            inner: inner.clone(),
            delivered: delivered.clone(),
            user: user.clone(),
            id: envelope.id,
            position,
            outstanding: outstanding.clone(),
            _permit: permit,
        };
        let acker = Acker::new(envelope.id, Box::new(settle));
        if tx
            .send(Ok(Delivery::new(envelope, redelivered, acker)))
            .await
            .is_err()
        {
            break;
        }
    }
    // The subscriber is gone: give back everything it did not settle.
    let leases: Vec<Lease> = lock(&outstanding.leases).drain().map(|(_, l)| l).collect();
    for lease in leases {
        let _ = lease.release().await;
    }
}
