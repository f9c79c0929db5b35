//! A connection's bounded outbound queue and its stop signals.
//!
//! Hand-rolled rather than `tokio::sync::mpsc` because an idle connection
//! should cost as little memory as possible: an empty queue here allocates
//! nothing, where an mpsc channel allocates its shared state and a block of
//! 32 slots up front.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use crate::connection::{ConnInner, Outbound};

/// A one-shot flag that tasks can wait for, allocation-free.
#[derive(Debug, Default)]
pub(crate) struct Signal {
    set: AtomicBool,
    notify: Notify,
}

impl Signal {
    pub(crate) fn cancel(&self) {
        if !self.set.swap(true, Ordering::AcqRel) {
            self.notify.notify_waiters();
        }
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    pub(crate) async fn cancelled(&self) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TrySendError {
    Full,
    Closed,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum TryRecvError {
    Empty,
}

/// Queued messages beyond which an emptied queue gives its memory back.
const KEEP_CAPACITY: usize = 16;

#[derive(Debug)]
pub(crate) struct Outbox {
    queue: Mutex<VecDeque<Outbound>>,
    ready: Notify,
    capacity: usize,
    closed: AtomicBool,
}

impl Outbox {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
            capacity,
            closed: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, VecDeque<Outbound>> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn try_send(&self, msg: Outbound) -> Result<(), TrySendError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TrySendError::Closed);
        }
        {
            let mut q = self.lock();
            if q.len() >= self.capacity {
                return Err(TrySendError::Full);
            }
            q.push_back(msg);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// How many messages wait.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    fn pop(&self) -> Option<Outbound> {
        let mut q = self.lock();
        let msg = q.pop_front();
        if q.is_empty() && q.capacity() > KEEP_CAPACITY {
            q.shrink_to_fit();
        }
        msg
    }
}

/// The consuming end of a connection's queue; dropping it closes the queue.
pub(crate) struct Receiver {
    conn: Arc<ConnInner>,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver").finish_non_exhaustive()
    }
}

impl Receiver {
    pub(crate) fn new(conn: Arc<ConnInner>) -> Self {
        Self { conn }
    }

    fn outbox(&self) -> &Outbox {
        &self.conn.outbox
    }

    /// The next message. Cancel-safe. Never returns `None` while this
    /// receiver exists (the queue closes when it is dropped); the `Option`
    /// keeps the shape of a channel.
    pub(crate) async fn recv(&mut self) -> Option<Outbound> {
        loop {
            // A stored `notify_one` permit makes this race-free with one
            // consumer: a push between `pop` and `notified` wakes it at once.
            if let Some(msg) = self.outbox().pop() {
                return Some(msg);
            }
            self.outbox().ready.notified().await;
        }
    }

    pub(crate) fn try_recv(&mut self) -> Result<Outbound, TryRecvError> {
        self.outbox().pop().ok_or(TryRecvError::Empty)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let outbox = self.outbox();
        outbox.closed.store(true, Ordering::Release);
        let mut q = outbox.lock();
        q.clear();
        q.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signal_wakes_waiters_set_before_or_after() {
        let s = Arc::new(Signal::default());
        let s2 = s.clone();
        let waiter = tokio::spawn(async move { s2.cancelled().await });
        tokio::task::yield_now().await;
        s.cancel();
        waiter.await.unwrap();
        s.cancelled().await;
        assert!(s.is_cancelled());
    }

    #[test]
    fn outbox_is_bounded() {
        let o = Outbox::new(2);
        assert_eq!(o.try_send(Outbound::Close), Ok(()));
        assert_eq!(o.try_send(Outbound::Close), Ok(()));
        assert_eq!(o.try_send(Outbound::Close), Err(TrySendError::Full));
        assert_eq!(o.len(), 2);
        assert!(o.pop().is_some());
        assert_eq!(o.len(), 1);
        assert_eq!(o.try_send(Outbound::Close), Ok(()));
        assert_eq!(o.len(), 2);
    }
}
