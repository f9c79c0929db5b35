//! [`Hub`]: topics, subscribers, and every live connection.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::connection::{CloseReason, ConnId, Connection, Outbound};
use crate::error::PushError;
use crate::message::Push;
use crate::outbox::TrySendError;

type Topics = HashMap<Arc<str>, HashMap<ConnId, Connection>>;

#[derive(Default)]
pub(crate) struct HubInner {
    topics: RwLock<Topics>,
    conns: RwLock<HashMap<ConnId, Connection>>,
}

fn read<T>(l: &RwLock<T>) -> RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(l: &RwLock<T>) -> RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(PoisonError::into_inner)
}

impl HubInner {
    pub(crate) fn subscribe(&self, conn: &Connection, topic: &str) -> bool {
        let mut topics = write(&self.topics);
        if conn.inner.finished.load(Ordering::Acquire) {
            return false;
        }
        let key: Arc<str> = match topics.get_key_value(topic) {
            Some((k, _)) => k.clone(),
            None => Arc::from(topic),
        };
        conn.inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key.clone());
        topics
            .entry(key)
            .or_default()
            .insert(conn.id(), conn.clone());
        true
    }

    pub(crate) fn unsubscribe(&self, conn: &Connection, topic: &str) -> bool {
        let mut topics = write(&self.topics);
        let removed = conn
            .inner
            .topics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(topic);
        if let Some(subs) = topics.get_mut(topic) {
            subs.remove(&conn.id());
            if subs.is_empty() {
                topics.remove(topic);
            }
        }
        removed
    }
}

/// Topics with any number of subscribers, and the registry of live
/// connections. Cheap to clone; reach it with
/// [`Homer::hub`](crate::Homer::hub) or [`Context::hub`](crate::Context::hub).
///
/// Publishing never blocks: each subscriber has a bounded queue, and one
/// whose queue is full is disconnected as a slow reader while the others
/// keep receiving.
#[derive(Clone, Default)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("connections", &self.connection_count())
            .field("topics", &read(&self.inner.topics).len())
            .finish()
    }
}

impl Hub {
    /// Sends `push` to every subscriber of `topic` on every transport;
    /// returns how many it was queued for.
    pub fn publish(&self, topic: &str, push: Push) -> usize {
        let mut slow = Vec::new();
        let mut sent = 0;
        {
            let topics = read(&self.inner.topics);
            let Some((key, subs)) = topics.get_key_value(topic) else {
                return 0;
            };
            let push = Arc::new(push.with_topic(key.clone()));
            for conn in subs.values() {
                match conn.inner.outbox.try_send(Outbound::Push(push.clone())) {
                    Ok(()) => sent += 1,
                    Err(TrySendError::Full) => slow.push(conn.clone()),
                    Err(TrySendError::Closed) => {}
                }
            }
        }
        for conn in slow {
            tracing::debug!(conn = %conn.id(), topic, "disconnecting slow reader");
            conn.disconnect(CloseReason::SlowReader {
                capacity: conn.inner.capacity,
            });
        }
        sent
    }

    /// Queues `push` for connection `id` only.
    pub fn push_to(&self, id: ConnId, push: Push) -> Result<(), PushError> {
        match self.connection(id) {
            Some(c) => c.push(push),
            None => Err(PushError::Closed(id)),
        }
    }

    /// Subscribes connection `id` to `topic`; false if there is no such
    /// live connection.
    pub fn subscribe(&self, id: ConnId, topic: &str) -> bool {
        self.connection(id)
            .is_some_and(|c| self.inner.subscribe(&c, topic))
    }

    /// Unsubscribes connection `id` from `topic`.
    pub fn unsubscribe(&self, id: ConnId, topic: &str) -> bool {
        self.connection(id)
            .is_some_and(|c| self.inner.unsubscribe(&c, topic))
    }

    /// Closes connection `id` after what is queued for it (see
    /// [`Connection::close`]); false if there is no such live connection.
    pub fn close(&self, id: ConnId, reason: impl Into<String>) -> bool {
        match self.connection(id) {
            Some(c) => {
                c.close(reason);
                true
            }
            None => false,
        }
    }

    /// The live connection with this id.
    pub fn connection(&self, id: ConnId) -> Option<Connection> {
        read(&self.inner.conns).get(&id).cloned()
    }

    /// Every live connection.
    pub fn connections(&self) -> Vec<Connection> {
        let mut v: Vec<Connection> = read(&self.inner.conns).values().cloned().collect();
        v.sort_by_key(Connection::id);
        v
    }

    /// How many connections are live.
    pub fn connection_count(&self) -> usize {
        read(&self.inner.conns).len()
    }

    /// How many connections are subscribed to `topic`.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        read(&self.inner.topics).get(topic).map_or(0, HashMap::len)
    }

    /// The ids of the connections subscribed to `topic`.
    pub fn subscribers(&self, topic: &str) -> Vec<ConnId> {
        let mut v: Vec<ConnId> = read(&self.inner.topics)
            .get(topic)
            .map(|s| s.keys().copied().collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    pub(crate) fn register(&self, conn: &Connection) {
        write(&self.inner.conns).insert(conn.id(), conn.clone());
    }

    /// Removes `conn` from the registry and from every topic; returns false
    /// if it was already removed.
    pub(crate) fn unregister(&self, conn: &Connection) -> bool {
        if conn.inner.finished.swap(true, Ordering::AcqRel) {
            return false;
        }
        {
            let mut topics = write(&self.inner.topics);
            let mine: Vec<Arc<str>> = conn
                .inner
                .topics
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .drain()
                .collect();
            for t in mine {
                if let Some(subs) = topics.get_mut(&t) {
                    subs.remove(&conn.id());
                    if subs.is_empty() {
                        topics.remove(&t);
                    }
                }
            }
        }
        write(&self.inner.conns).remove(&conn.id());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{NewConn, Transport};
    use serde_json::json;

    fn conn(hub: &Hub, id: u64, capacity: usize) -> (Connection, crate::outbox::Receiver) {
        let (c, rx) = Connection::new(NewConn {
            id: ConnId(id),
            peer: "127.0.0.1:1".parse().unwrap(),
            transport: Transport::Tcp,
            protocol: "test",
            capacity,
            rate: None,
            hub: Arc::downgrade(&hub.inner),
            http: None,
        });
        hub.register(&c);
        (c, rx)
    }

    #[test]
    fn publish_reaches_subscribers_of_the_topic_only() {
        let hub = Hub::default();
        let (a, mut ra) = conn(&hub, 1, 8);
        let (b, mut rb) = conn(&hub, 2, 8);
        assert!(a.subscribe("t1"));
        assert!(a.subscribe("t2"));
        assert!(b.subscribe("t2"));
        assert_eq!(hub.publish("t1", Push::new("m", json!(1))), 1);
        assert_eq!(hub.publish("t2", Push::new("m", json!(2))), 2);
        assert_eq!(hub.publish("none", Push::new("m", json!(3))), 0);
        let got = |rx: &mut crate::outbox::Receiver| {
            let mut v = vec![];
            while let Ok(Outbound::Push(p)) = rx.try_recv() {
                v.push((p.topic().unwrap().to_string(), p.content().clone()));
            }
            v
        };
        assert_eq!(
            got(&mut ra),
            vec![("t1".into(), json!(1)), ("t2".into(), json!(2))]
        );
        assert_eq!(got(&mut rb), vec![("t2".into(), json!(2))]);
        assert_eq!(a.topics(), vec!["t1", "t2"]);
    }

    #[test]
    fn full_queue_disconnects_only_that_subscriber() {
        let hub = Hub::default();
        let (slow, _rs) = conn(&hub, 1, 2);
        let (fast, mut rf) = conn(&hub, 2, 8);
        slow.subscribe("t");
        fast.subscribe("t");
        for i in 0..3 {
            hub.publish("t", Push::new("m", json!(i)));
            while rf.try_recv().is_ok() {}
        }
        assert!(slow.inner.kill.is_cancelled());
        assert_eq!(slow.reason(), Some(CloseReason::SlowReader { capacity: 2 }));
        assert!(!fast.is_closed());
    }

    #[test]
    fn unregister_removes_every_subscription_and_refuses_new_ones() {
        let hub = Hub::default();
        let (a, _ra) = conn(&hub, 1, 8);
        a.subscribe("x");
        a.subscribe("y");
        assert!(hub.unregister(&a));
        assert!(!hub.unregister(&a));
        assert_eq!(hub.subscriber_count("x"), 0);
        assert!(hub.connection(ConnId(1)).is_none());
        assert!(!a.subscribe("z"));
        assert_eq!(hub.subscriber_count("z"), 0);
    }
}
