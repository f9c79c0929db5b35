//! Ordering across re-subscriptions on one broker.
//!
//! Dropping a [`Subscription`](crate::Subscription) gives its unacked
//! deliveries back asynchronously (a channel close, lease releases). A client
//! that reconnects at once would otherwise race that and see newer messages
//! before the ones it never acked. So a subscription registers its drop here,
//! synchronously, and a new subscription to the same inbox on the same broker
//! waits (boundedly) until the older ones have given everything back.

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::UserId;
use crate::sync::lock;

/// The longest a new subscription waits for older ones to hand back.
const MAX_WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(crate) struct Handover {
    closing: Mutex<HashMap<UserId, usize>>,
    done: Notify,
}

#[derive(PartialEq, Eq)]
enum Phase {
    Running,
    Dropped,
    Finished,
}

/// One subscription's link to the handover: its stream holds a [`DropSignal`],
/// its task calls [`Ticket::finish`] once everything is given back.
pub(crate) struct Ticket {
    handover: Arc<Handover>,
    user: UserId,
    phase: Mutex<Phase>,
}

impl Handover {
    /// Wait until no dropped subscription of `user` is still handing back.
    pub(crate) async fn wait(&self, user: &UserId) {
        let _ = tokio::time::timeout(MAX_WAIT, async {
            loop {
                let mut notified = pin!(self.done.notified());
                notified.as_mut().enable();
                if !lock(&self.closing).contains_key(user) {
                    return;
                }
                notified.await;
            }
        })
        .await;
    }

    /// A ticket for a new subscription of `user`.
    pub(crate) fn ticket(self: &Arc<Self>, user: &UserId) -> Arc<Ticket> {
        Arc::new(Ticket {
            handover: self.clone(),
            user: user.clone(),
            phase: Mutex::new(Phase::Running),
        })
    }
}

impl Ticket {
    fn dropped(&self) {
        let mut phase = lock(&self.phase);
        if *phase == Phase::Running {
            *phase = Phase::Dropped;
            *lock(&self.handover.closing)
                .entry(self.user.clone())
                .or_default() += 1;
        }
    }

    /// The subscription's task ended and gave back its deliveries.
    pub(crate) fn finish(&self) {
        let mut phase = lock(&self.phase);
        if *phase == Phase::Dropped {
            let mut closing = lock(&self.handover.closing);
            if let Some(n) = closing.get_mut(&self.user) {
                *n -= 1;
                if *n == 0 {
                    closing.remove(&self.user);
                }
            }
            drop(closing);
            self.handover.done.notify_waiters();
        }
        *phase = Phase::Finished;
    }
}

/// Held by a subscription's stream; registers the drop.
pub(crate) struct DropSignal(pub(crate) Arc<Ticket>);

impl Drop for DropSignal {
    fn drop(&mut self) {
        self.0.dropped();
    }
}

/// The receiving end of a subscription: its deliveries, then its end.
pub(crate) fn receiver_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
    signal: Option<DropSignal>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold((rx, signal), |(mut rx, signal)| async move {
        rx.recv().await.map(|item| (item, (rx, signal)))
    })
}

/// Calls [`Ticket::finish`] when the subscription's task ends, however it ends.
pub(crate) struct FinishOnDrop(pub(crate) Arc<Ticket>);

impl Drop for FinishOnDrop {
    fn drop(&mut self) {
        self.0.finish();
    }
}
