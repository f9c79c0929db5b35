//! Events of a user: what reaches every login of the user, on every node,
//! and belongs to no conversation's log.
//!
//! - "follow this conversation" and "stop following it" (a group joined or
//!   left, the first message of a direct conversation);
//! - the native pushes `group`, `read`, `receipt` and `typing`;
//! - "sign these devices out" (a newer login of the same device, a device
//!   over the limit, `user.logout_all`).
//!
//! They are ephemeral: a user with no login misses them, which is right for
//! all of them (a login starts from the conversations and the groups as
//! stored). They travel through the same [`Fanout`] as the conversations'
//! live entries, on a listener of their own: each user has a channel named
//! by a hash of the name, which a node binds while one of the user's logins
//! is connected to it. A frame names its user, so two names with the same
//! hash only cost a frame that the node drops.
//!
//! ```text
//!  publish(user, event) ──▶ Fanout (RabbitMQ: the node's events queue)
//!                               ──▶ dispatcher of each node that binds the user
//!                                      ──▶ every login of the user there
//! ```
//!
//! A login whose queue is full, or every login when the fan-out says frames
//! were lost (a reconnection to RabbitMQ), gets [`Received::Resync`]: it
//! follows its conversations again from the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use rmq_core::conversation::{Fanout, FanoutBindings, FanoutEvent};
use rmq_core::{ConversationId, RoomId, UserId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::error::{ChatError, Result};
use crate::sync::lock;

/// Most events waiting for one login; past it the login resyncs.
const QUEUE: usize = 256;
/// The largest frame a node takes (a push body is far smaller).
const MAX_FRAME: usize = 64 * 1024;

/// One event for every login of a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub(crate) enum UserEvent {
    /// Follow conversation `conversation` (its key), or stop (`on` false).
    Follow { conversation: String, on: bool },
    /// A native push, for the logins that speak the native protocol.
    Push {
        push: String,
        body: serde_json::Value,
    },
    /// End the logins of `device` (every device when `None`) that started
    /// before `before` (ms), with a `session` push saying `reason`.
    SignOut {
        device: Option<String>,
        before: u64,
        reason: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Frame {
    user: String,
    event: UserEvent,
}

/// What a login's [`Listener`] gives.
#[derive(Debug, Clone)]
pub(crate) enum Received {
    Event(Arc<UserEvent>),
    /// Events may have been lost: follow the conversations again.
    Resync,
}

/// The events of every user, for this node's logins. Cheap to clone.
#[derive(Clone)]
pub(crate) struct UserEvents {
    inner: Arc<Inner>,
}

struct Inner {
    fanout: Arc<dyn Fanout>,
    bindings: Arc<dyn FanoutBindings>,
    /// Binds and unbinds of the channels, one at a time: binding talks to
    /// the broker, and a bind and an unbind of one user must not cross.
    binding: tokio::sync::Mutex<()>,
    logins: Mutex<HashMap<String, Vec<Slot>>>,
    next_id: AtomicU64,
    dispatcher: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

struct Slot {
    id: u64,
    tx: mpsc::Sender<Received>,
    lagged: Arc<AtomicBool>,
}

impl Slot {
    fn offer(&self, event: &Arc<UserEvent>) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.tx.try_send(Received::Event(event.clone()))
        {
            self.lagged.store(true, Ordering::Release);
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = lock(&self.dispatcher).take() {
            task.abort();
        }
    }
}

/// The channel of `user`'s events on the fan-out: `§` and 62 hex digits of
/// the name's SHA-256, a room id no group can have (group names are letters,
/// digits and `_-.`).
fn channel(user: &str) -> ConversationId {
    let digest = Sha256::digest(user.as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let room = RoomId::new(format!("§{}", &hex[..62])).expect("§ and hex digits make a room id");
    ConversationId::room(room)
}

impl UserEvents {
    /// Open this node's listener on `fanout` and start dispatching.
    pub(crate) async fn start(fanout: Arc<dyn Fanout>) -> rmq_core::Result<Self> {
        let listener = fanout.listen().await?;
        let inner = Arc::new(Inner {
            fanout,
            bindings: listener.bindings,
            binding: tokio::sync::Mutex::new(()),
            logins: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            dispatcher: Mutex::new(None),
        });
        let task = tokio::spawn(dispatch(Arc::downgrade(&inner), listener.events));
        *lock(&inner.dispatcher) = Some(task);
        Ok(UserEvents { inner })
    }

    /// Send `event` to every login of `user`, on every node.
    pub(crate) async fn publish(&self, user: &UserId, event: UserEvent) -> Result<()> {
        let frame = Frame {
            user: user.as_str().to_owned(),
            event,
        };
        let bytes =
            serde_json::to_vec(&frame).map_err(|e| ChatError::internal("a user event", e))?;
        self.inner
            .fanout
            .publish(&channel(user.as_str()), &bytes)
            .await?;
        Ok(())
    }

    /// Receive `user`'s events from now on (for one login).
    pub(crate) async fn listen(&self, user: &UserId) -> rmq_core::Result<Listener> {
        let name = user.as_str().to_owned();
        let (tx, rx) = mpsc::channel(QUEUE);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let _binding = self.inner.binding.lock().await;
        let first = {
            let mut logins = lock(&self.inner.logins);
            let slots = logins.entry(name.clone()).or_default();
            slots.push(Slot {
                id,
                tx,
                lagged: lagged.clone(),
            });
            slots.len() == 1
        };
        let listener = Listener {
            rx,
            lagged,
            user: name.clone(),
            id,
            events: Arc::downgrade(&self.inner),
        };
        if first {
            // On failure the listener is dropped: its slot goes, and so does
            // the binding if it was made meanwhile by nobody else.
            self.inner.bindings.bind(&channel(&name)).await?;
        }
        Ok(listener)
    }
}

/// One login's events; dropping it stops them.
pub(crate) struct Listener {
    rx: mpsc::Receiver<Received>,
    lagged: Arc<AtomicBool>,
    user: String,
    id: u64,
    events: Weak<Inner>,
}

impl Listener {
    /// The next event; `None` once the node's fan-out ended.
    pub(crate) async fn recv(&mut self) -> Option<Received> {
        if self.lagged.swap(false, Ordering::AcqRel) {
            return Some(Received::Resync);
        }
        self.rx.recv().await
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        let Some(inner) = self.events.upgrade() else {
            return;
        };
        let last = {
            let mut logins = lock(&inner.logins);
            let Some(slots) = logins.get_mut(&self.user) else {
                return;
            };
            slots.retain(|s| s.id != self.id);
            let last = slots.is_empty();
            if last {
                logins.remove(&self.user);
            }
            last
        };
        if !last {
            return;
        }
        let user = std::mem::take(&mut self.user);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let _binding = inner.binding.lock().await;
            // A login of the user may have come meanwhile: it keeps the binding.
            if lock(&inner.logins).contains_key(&user) {
                return;
            }
            if let Err(e) = inner.bindings.unbind(&channel(&user)).await {
                tracing::warn!(%user, error = %e, "unbinding a user's events");
            }
        });
    }
}

async fn dispatch(inner: Weak<Inner>, mut events: mpsc::Receiver<FanoutEvent>) {
    while let Some(event) = events.recv().await {
        let Some(inner) = inner.upgrade() else {
            return;
        };
        match event {
            FanoutEvent::Frame(bytes) => {
                if bytes.len() > MAX_FRAME {
                    tracing::warn!(len = bytes.len(), "dropping an oversized user event");
                    continue;
                }
                let frame = match serde_json::from_slice::<Frame>(&bytes) {
                    Ok(f) => f,
                    Err(e) => {
                        tracing::warn!(error = %e, "dropping a user event that does not parse");
                        continue;
                    }
                };
                let event = Arc::new(frame.event);
                if let Some(slots) = lock(&inner.logins).get(&frame.user) {
                    slots.iter().for_each(|s| s.offer(&event));
                }
            }
            FanoutEvent::Lagged => {
                for slots in lock(&inner.logins).values() {
                    for s in slots {
                        s.lagged.store(true, Ordering::Release);
                        let _ = s.tx.try_send(Received::Resync);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmq_core::conversation::InProcessFanout;

    fn push(n: u64) -> UserEvent {
        UserEvent::Push {
            push: "read".into(),
            body: serde_json::json!({ "n": n }),
        }
    }

    async fn next(l: &mut Listener) -> Received {
        tokio::time::timeout(std::time::Duration::from_secs(5), l.recv())
            .await
            .expect("an event in time")
            .expect("the fan-out is open")
    }

    #[tokio::test]
    async fn every_login_of_the_user_gets_the_event_on_every_node_and_no_one_else() {
        let fanout: Arc<dyn Fanout> = Arc::new(InProcessFanout::new());
        let (a, b) = (
            UserEvents::start(fanout.clone()).await.unwrap(),
            UserEvents::start(fanout.clone()).await.unwrap(),
        );
        let (ann, bob) = (UserId::new("ann").unwrap(), UserId::new("bob").unwrap());
        let mut phone = a.listen(&ann).await.unwrap();
        let mut laptop = b.listen(&ann).await.unwrap();
        let mut other = b.listen(&bob).await.unwrap();
        a.publish(&ann, push(1)).await.unwrap();
        for l in [&mut phone, &mut laptop] {
            let Received::Event(e) = next(l).await else {
                panic!("no resync expected");
            };
            assert_eq!(*e, push(1));
        }
        // bob's login got nothing: the next thing it gets is its own event.
        b.publish(&bob, push(2)).await.unwrap();
        let Received::Event(e) = next(&mut other).await else {
            panic!("no resync expected");
        };
        assert_eq!(*e, push(2));

        // The last login of a node goes: the node no longer gets the user's events.
        drop(laptop);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(lock(&b.inner.logins).get("ann").is_none());
        a.publish(&ann, push(3)).await.unwrap();
        let Received::Event(e) = next(&mut phone).await else {
            panic!("no resync expected");
        };
        assert_eq!(*e, push(3));
    }

    #[tokio::test]
    async fn a_login_that_falls_behind_is_told_to_resync() {
        let fanout: Arc<dyn Fanout> = Arc::new(InProcessFanout::new());
        let node = UserEvents::start(fanout).await.unwrap();
        let ann = UserId::new("ann").unwrap();
        let mut slow = node.listen(&ann).await.unwrap();
        for n in 0..(QUEUE as u64 + 10) {
            node.publish(&ann, push(n)).await.unwrap();
        }
        // The login reads nothing while the node dispatches them all.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // The queue holds the first QUEUE; then the login hears it lost some.
        let mut got = 0;
        while let Received::Event(_) = next(&mut slow).await {
            got += 1;
        }
        assert!(got <= QUEUE, "{got}");
    }

    #[test]
    fn channels_are_room_ids_no_group_can_have() {
        let c = channel(&"x".repeat(64));
        let room = c.as_room().unwrap().as_str();
        assert!(room.starts_with('§') && room.len() == 64, "{room}");
        assert!(tiny_storage::name::check(room).is_err());
        assert_ne!(channel("ann"), channel("Ann"));
    }
}
