//! [`LocalBroker`]: the in-process broker of the embedded deployment.
//!
//! Everything lives in one [`nopi::Store`] (sled on disk, or memory):
//!
//! | what | where |
//! |---|---|
//! | each user's inbox | `tiny_q` queue `inbox.<user>` in tree `rmq.queues` (capacity-capped, drop-oldest, durable pushes with group commit) |
//! | rooms and memberships | tree `rmq.topology`: keys `u/<user>`, `r/<room>`, `m/<room>/<user>` (empty values) |
//! | each room's history | tree `rmq.history.<room>`: key = the envelope id (16 bytes; uuid v7 sorts by time), value = the wire frame; capped |
//! | dead letters | `tiny_q` queue `rmq.dead` (malformed items, `nack(false)`) |
//!
//! Consumption uses `tiny_q` leases: a delivered item stays in the inbox until
//! acked, is given back when its subscription ends, and comes back after a
//! restart if it was never acked. Presence is an in-process broadcast.

mod subscribe;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::ops::Bound;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use nopi::{Batch, Scan, Store, Tree};
use tiny_q::{Durability, Overflow, QueueOptions, Queues};
use tokio::sync::{RwLock, broadcast};

use crate::sync::lock;
use crate::{
    Broker, Envelope, Error, HistoryQuery, Presence, PresenceEvent, PresenceStream, Result, RoomId,
    Subscription, To, UserId,
};

const QUEUES_TREE: &str = "rmq.queues";
const TOPOLOGY_TREE: &str = "rmq.topology";
const DEAD_QUEUE: &str = "rmq.dead";

fn inbox_name(user: &UserId) -> String {
    format!("inbox.{user}")
}

fn history_tree(room: &RoomId) -> String {
    format!("rmq.history.{room}")
}

#[derive(Debug, Clone)]
struct LocalConfig {
    prefetch: usize,
    max_body: usize,
    max_history: usize,
    inbox_capacity: u64,
    durability: Durability,
    history_cap: u64,
    presence_buffer: usize,
}

/// Builds a [`LocalBroker`]; see [`LocalBroker::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct LocalBrokerBuilder {
    store: Store,
    cfg: LocalConfig,
}

impl LocalBrokerBuilder {
    /// How many unacked deliveries a subscription may hold (default 64; 1 to
    /// [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS)).
    pub fn prefetch(mut self, prefetch: usize) -> Self {
        self.cfg.prefetch = prefetch;
        self
    }

    /// The largest envelope body, in bytes (default 64 KiB; at least 1).
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

    /// Cap each new inbox at `messages`, dropping the oldest (default 10 000;
    /// 1 to [`tiny_q::MAX_CAPACITY`]).
    pub fn inbox_capacity(mut self, messages: u64) -> Self {
        self.cfg.inbox_capacity = messages;
        self
    }

    /// Whether a publish waits for its inbox writes to be flushed
    /// ([`Durability::Durable`], the default) or returns once they are
    /// written ([`Durability::Buffered`]; flushed within the engine's
    /// background interval). Applies to inboxes created from now on.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.cfg.durability = durability;
        self
    }

    /// Keep the newest `messages` of each room's history (default 10 000; at
    /// least 1).
    pub fn history_cap(mut self, messages: u64) -> Self {
        self.cfg.history_cap = messages;
        self
    }

    /// How many presence events a slow presence reader may fall behind
    /// before it gets [`PresenceEvent::Lagged`] (default 1024; 1 to
    /// `usize::MAX / 2`).
    pub fn presence_buffer(mut self, events: usize) -> Self {
        self.cfg.presence_buffer = events;
        self
    }

    /// Open the broker's queues and trees in the store. A setting out of its
    /// range (see each setter) is [`Error::InvalidConfig`], before the store
    /// is touched.
    pub async fn build(self) -> Result<LocalBroker> {
        let any = u128::MAX;
        crate::error::check_counts(&[
            (
                "prefetch",
                self.cfg.prefetch as u128,
                tokio::sync::Semaphore::MAX_PERMITS as u128,
            ),
            ("max_body_size", self.cfg.max_body as u128, any),
            ("max_history", self.cfg.max_history as u128, any),
            (
                "inbox_capacity",
                self.cfg.inbox_capacity.into(),
                tiny_q::MAX_CAPACITY.into(),
            ),
            ("history_cap", self.cfg.history_cap.into(), any),
            (
                "presence_buffer",
                self.cfg.presence_buffer as u128,
                (usize::MAX / 2) as u128,
            ),
        ])?;
        let store = self.store;
        let queues = Queues::builder(&store).tree(QUEUES_TREE).build().await?;
        let dead = queues
            .open_or_create(
                DEAD_QUEUE,
                QueueOptions::builder()
                    .capacity(10_000)
                    .overflow(Overflow::DropOldest)
                    .durability(Durability::Buffered)
                    .build()?,
            )
            .await?;
        let topology_tree = store.tree(TOPOLOGY_TREE).await?;
        let topology = Topology::load(&topology_tree).await?;
        let (presence, _) = broadcast::channel(self.cfg.presence_buffer);
        Ok(LocalBroker {
            inner: Arc::new(Inner {
                cfg: self.cfg,
                store,
                queues,
                dead,
                topology_tree,
                topology: RwLock::new(topology),
                inboxes: Mutex::new(HashMap::new()),
                histories: Mutex::new(HashMap::new()),
                presence,
                delivered: Mutex::new(HashMap::new()),
                handover: Arc::default(),
                tasks: tokio_util::task::TaskTracker::new(),
                closing: tokio_util::sync::CancellationToken::new(),
            }),
        })
    }
}

/// Rooms, members and inboxes, mirrored from the topology tree.
#[derive(Debug, Default)]
struct Topology {
    users: HashSet<UserId>,
    rooms: HashMap<RoomId, BTreeSet<UserId>>,
}

impl Topology {
    async fn load(tree: &Tree) -> Result<Topology> {
        let mut topo = Topology::default();
        for (key, _) in tree.scan(Scan::all()).await? {
            let key = String::from_utf8_lossy(&key);
            let parts: Vec<&str> = key.split('/').collect();
            match parts.as_slice() {
                ["u", user] => {
                    if let Ok(user) = UserId::new(*user) {
                        topo.users.insert(user);
                    }
                }
                ["r", room] => {
                    if let Ok(room) = RoomId::new(*room) {
                        topo.rooms.entry(room).or_default();
                    }
                }
                _ => {}
            }
        }
        // Memberships after rooms, so a membership of a deleted room is ignored.
        for (key, _) in tree.scan(Scan::prefix("m/")).await? {
            let key = String::from_utf8_lossy(&key);
            if let ["m", room, user] = key.split('/').collect::<Vec<_>>().as_slice()
                && let (Ok(room), Ok(user)) = (RoomId::new(*room), UserId::new(*user))
                && let Some(members) = topo.rooms.get_mut(&room)
            {
                members.insert(user);
            }
        }
        Ok(topo)
    }
}

struct RoomHistory {
    tree: Tree,
    /// Entries in the tree, counted at first use.
    len: u64,
}

pub(crate) struct Inner {
    cfg: LocalConfig,
    store: Store,
    queues: Queues,
    dead: tiny_q::Queue,
    topology_tree: Tree,
    topology: RwLock<Topology>,
    inboxes: Mutex<HashMap<UserId, tiny_q::Queue>>,
    histories: Mutex<HashMap<RoomId, Arc<tokio::sync::Mutex<RoomHistory>>>>,
    presence: broadcast::Sender<Presence>,
    /// Per user, the positions of items handed out and not acked: their
    /// next delivery is flagged `redelivered` (in this process's lifetime).
    delivered: Mutex<HashMap<UserId, Delivered>>,
    handover: Arc<crate::handover::Handover>,
    /// The subscriptions' tasks, waited for by [`LocalBroker::close`].
    pub(crate) tasks: tokio_util::task::TaskTracker,
    /// Cancelled by [`LocalBroker::close`]: subscriptions and presence
    /// streams end.
    pub(crate) closing: tokio_util::sync::CancellationToken,
}

/// Positions of one inbox's items handed out and not acked.
pub(crate) type Delivered = Arc<Mutex<HashSet<u64>>>;

/// The [`Broker`] in process: no external service, inboxes in `tiny_q`,
/// history and topology in `nopi` trees, so offline messages, unacked
/// deliveries, rooms and history survive a restart (with a `sled:` store).
///
/// Cheap to clone. One `LocalBroker` per store: two over the same store would
/// each think they own its queues.
///
/// See the [crate docs](crate) for an example.
#[derive(Clone)]
pub struct LocalBroker {
    inner: Arc<Inner>,
}

impl fmt::Debug for LocalBroker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalBroker")
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

impl LocalBroker {
    /// Stop: every subscription and presence stream of this broker (and its
    /// clones) ends, later ones fail with [`Error::Closed`], and this returns
    /// once every subscription's task has ended, so none of them holds the
    /// store. What was delivered and not acked stays in its inbox.
    pub async fn close(&self) {
        self.inner.closing.cancel();
        self.inner.tasks.close();
        self.inner.tasks.wait().await;
    }

    /// Start configuring a broker over `store`.
    pub fn builder(store: Store) -> LocalBrokerBuilder {
        LocalBrokerBuilder {
            store,
            cfg: LocalConfig {
                prefetch: 64,
                max_body: 64 * 1024,
                max_history: 1000,
                inbox_capacity: 10_000,
                durability: Durability::Durable,
                history_cap: 10_000,
                presence_buffer: 1024,
            },
        }
    }

    /// A broker over the store at `url` (`sled:./data`, `memory:`), with
    /// default settings.
    pub async fn open(url: &str) -> Result<LocalBroker> {
        Self::builder(nopi::open(url).await?).build().await
    }

    /// A broker in memory: nothing survives the process. For tests.
    pub async fn memory() -> Result<LocalBroker> {
        Self::builder(Store::memory()).build().await
    }

    /// The store the broker keeps its state in.
    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// How many messages wait in `user`'s inbox, in flight included.
    pub async fn inbox_len(&self, user: &UserId) -> Result<u64> {
        Ok(self.inner.inbox(user).await?.len().await?)
    }
}

impl Inner {
    fn queue_options(&self) -> Result<QueueOptions> {
        Ok(QueueOptions::builder()
            .capacity(self.cfg.inbox_capacity)
            .overflow(Overflow::DropOldest)
            .durability(self.cfg.durability)
            .lease_timeout(tiny_q::MAX_LEASE_TIMEOUT)
            .build()?)
    }

    /// The inbox queue of an existing user.
    async fn inbox(&self, user: &UserId) -> Result<tiny_q::Queue> {
        if let Some(q) = lock(&self.inboxes).get(user) {
            return Ok(q.clone());
        }
        if !self.topology.read().await.users.contains(user) {
            return Err(Error::UnknownUser(user.clone()));
        }
        let q = self
            .queues
            .open_or_create(&inbox_name(user), self.queue_options()?)
            .await?;
        lock(&self.inboxes).insert(user.clone(), q.clone());
        Ok(q)
    }

    async fn room_history(&self, room: &RoomId) -> Result<Arc<tokio::sync::Mutex<RoomHistory>>> {
        if let Some(h) = lock(&self.histories).get(room) {
            return Ok(h.clone());
        }
        let tree = self.store.tree(&history_tree(room)).await?;
        let len = tree.len().await? as u64;
        let h = Arc::new(tokio::sync::Mutex::new(RoomHistory { tree, len }));
        Ok(lock(&self.histories)
            .entry(room.clone())
            .or_insert(h)
            .clone())
    }

    async fn append_history(&self, room: &RoomId, env: &Envelope, frame: &[u8]) -> Result<()> {
        let history = self.room_history(room).await?;
        let mut h = history.lock().await;
        h.tree.insert(env.id.as_bytes(), frame).await?;
        h.len += 1;
        // Trim in steps, not on every insert.
        let cap = self.cfg.history_cap;
        if h.len > cap + (cap / 10).max(1) {
            let excess = (h.len - cap) as usize;
            let oldest = h.tree.scan(Scan::all().limit(excess)).await?;
            let mut batch = Batch::new();
            for (key, _) in &oldest {
                batch.push_remove(key);
            }
            h.tree.apply(batch).await?;
            h.len -= oldest.len() as u64;
        }
        Ok(())
    }

    /// Push `frame` into the inboxes of `users`, concurrently (the durable
    /// pushes share flushes). Inboxes deleted meanwhile are skipped.
    async fn push_all(&self, users: &[UserId], frame: &[u8]) -> Result<()> {
        let pushes = users.iter().map(|user| async move {
            let q = match self.inbox(user).await {
                Ok(q) => q,
                Err(Error::UnknownUser(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            match q.push(frame).await {
                Ok(_) => Ok(()),
                Err(tiny_q::Error::Destroyed { .. } | tiny_q::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        });
        for result in futures_util::future::join_all(pushes).await {
            result?;
        }
        Ok(())
    }

    /// The redelivery marks of `user`'s inbox.
    fn delivered(&self, user: &UserId) -> Delivered {
        lock(&self.delivered)
            .entry(user.clone())
            .or_default()
            .clone()
    }

    fn forget_inbox(&self, user: &UserId) {
        lock(&self.inboxes).remove(user);
        lock(&self.delivered).remove(user);
    }
}

fn key_user(user: &UserId) -> String {
    format!("u/{user}")
}
fn key_room(room: &RoomId) -> String {
    format!("r/{room}")
}
fn key_member(room: &RoomId, user: &UserId) -> String {
    format!("m/{room}/{user}")
}

#[async_trait]
impl Broker for LocalBroker {
    async fn ensure_inbox(&self, user: &UserId) -> Result<()> {
        let inner = &self.inner;
        if inner.topology.read().await.users.contains(user) {
            return Ok(());
        }
        let mut topo = inner.topology.write().await;
        if topo.users.contains(user) {
            return Ok(());
        }
        // The queue first: a user recorded in the topology always has one.
        let q = inner
            .queues
            .open_or_create(&inbox_name(user), inner.queue_options()?)
            .await?;
        inner.topology_tree.insert(key_user(user), b"").await?;
        inner.store.flush().await?;
        topo.users.insert(user.clone());
        lock(&inner.inboxes).insert(user.clone(), q);
        Ok(())
    }

    async fn delete_inbox(&self, user: &UserId) -> Result<()> {
        let inner = &self.inner;
        let mut topo = inner.topology.write().await;
        let mut batch = Batch::new().remove(key_user(user));
        for (room, members) in &mut topo.rooms {
            if members.remove(user) {
                batch.push_remove(key_member(room, user));
            }
        }
        inner.topology_tree.apply(batch).await?;
        topo.users.remove(user);
        inner.forget_inbox(user);
        inner.queues.destroy(&inbox_name(user)).await?;
        inner.store.flush().await?;
        Ok(())
    }

    async fn create_room(&self, room: &RoomId) -> Result<()> {
        let inner = &self.inner;
        if inner.topology.read().await.rooms.contains_key(room) {
            return Ok(());
        }
        let mut topo = inner.topology.write().await;
        if topo.rooms.contains_key(room) {
            return Ok(());
        }
        inner.topology_tree.insert(key_room(room), b"").await?;
        inner.store.flush().await?;
        topo.rooms.insert(room.clone(), BTreeSet::new());
        Ok(())
    }

    async fn delete_room(&self, room: &RoomId) -> Result<()> {
        let inner = &self.inner;
        let mut topo = inner.topology.write().await;
        let mut batch = Batch::new().remove(key_room(room));
        if let Some(members) = topo.rooms.remove(room) {
            for user in &members {
                batch.push_remove(key_member(room, user));
            }
        }
        inner.topology_tree.apply(batch).await?;
        let history = lock(&inner.histories).remove(room);
        // Wait for appends in progress before dropping the tree.
        let _guard = match &history {
            Some(h) => Some(h.lock().await),
            None => None,
        };
        inner.store.drop_tree(&history_tree(room)).await?;
        inner.store.flush().await?;
        Ok(())
    }

    async fn join(&self, room: &RoomId, user: &UserId) -> Result<()> {
        let inner = &self.inner;
        let mut topo = inner.topology.write().await;
        if !topo.users.contains(user) {
            return Err(Error::UnknownUser(user.clone()));
        }
        let Some(members) = topo.rooms.get_mut(room) else {
            return Err(Error::UnknownRoom(room.clone()));
        };
        if members.contains(user) {
            return Ok(());
        }
        inner
            .topology_tree
            .insert(key_member(room, user), b"")
            .await?;
        inner.store.flush().await?;
        members.insert(user.clone());
        Ok(())
    }

    async fn leave(&self, room: &RoomId, user: &UserId) -> Result<()> {
        let inner = &self.inner;
        let mut topo = inner.topology.write().await;
        let Some(members) = topo.rooms.get_mut(room) else {
            return Ok(());
        };
        if !members.remove(user) {
            return Ok(());
        }
        inner.topology_tree.remove(key_member(room, user)).await?;
        inner.store.flush().await?;
        Ok(())
    }

    async fn publish(&self, envelope: &Envelope) -> Result<()> {
        let inner = &self.inner;
        if envelope.body.len() > inner.cfg.max_body {
            return Err(Error::BodyTooLarge {
                size: envelope.body.len(),
                limit: inner.cfg.max_body,
            });
        }
        crate::envelope::check_content_type(envelope)?;
        let frame = envelope.encode();
        match &envelope.to {
            To::Room(room) => {
                let members: Vec<UserId> = match inner.topology.read().await.rooms.get(room) {
                    Some(members) => members.iter().cloned().collect(),
                    None => return Err(Error::UnknownRoom(room.clone())),
                };
                inner.append_history(room, envelope, &frame).await?;
                if members.is_empty() {
                    inner.store.flush().await?;
                }
                inner.push_all(&members, &frame).await
            }
            To::User(user) | To::UserInRoom { user, .. } => {
                let q = inner.inbox(user).await?;
                q.push(&frame).await?;
                Ok(())
            }
            To::Everyone => {
                let users: Vec<UserId> =
                    inner.topology.read().await.users.iter().cloned().collect();
                inner.push_all(&users, &frame).await
            }
        }
    }

    async fn subscribe(&self, user: &UserId) -> Result<Subscription> {
        if self.inner.closing.is_cancelled() {
            return Err(Error::Closed);
        }
        let queue = self.inner.inbox(user).await?;
        self.inner.handover.wait(user).await;
        Ok(subscribe::subscribe(
            self.inner.clone(),
            user.clone(),
            queue,
        ))
    }

    async fn history(&self, room: &RoomId, query: HistoryQuery) -> Result<Vec<Envelope>> {
        let inner = &self.inner;
        let limit = query.limit();
        if limit > inner.cfg.max_history {
            return Err(Error::HistoryTooLarge {
                requested: limit,
                limit: inner.cfg.max_history,
            });
        }
        if !inner.topology.read().await.rooms.contains_key(room) {
            return Err(Error::UnknownRoom(room.clone()));
        }
        let history = inner.room_history(room).await?;
        let h = history.lock().await;
        let (entries, reverse) = match query {
            HistoryQuery::Last { limit } => {
                (h.tree.scan(Scan::all().rev().limit(limit)).await?, true)
            }
            HistoryQuery::After { id, limit } => {
                let range = (Bound::Excluded(id.as_bytes().to_vec()), Bound::Unbounded);
                (h.tree.scan(Scan::range(range).limit(limit)).await?, false)
            }
            HistoryQuery::Before { id, limit } => {
                let range = (Bound::Unbounded, Bound::Excluded(id.as_bytes().to_vec()));
                (
                    h.tree.scan(Scan::range(range).rev().limit(limit)).await?,
                    true,
                )
            }
        };
        drop(h);
        let mut out: Vec<Envelope> = entries
            .into_iter()
            .filter_map(|(_, frame)| match Envelope::decode(&frame, usize::MAX) {
                Ok(env) => Some(env),
                Err(e) => {
                    tracing::warn!(%room, error = %e, "malformed history entry skipped");
                    None
                }
            })
            .collect();
        if reverse {
            out.reverse();
        }
        Ok(out)
    }

    async fn publish_presence(&self, presence: &Presence) -> Result<()> {
        // No receiver is not an error: nobody is listening.
        let _ = self.inner.presence.send(presence.clone());
        Ok(())
    }

    async fn subscribe_presence(&self) -> Result<PresenceStream> {
        if self.inner.closing.is_cancelled() {
            return Err(Error::Closed);
        }
        let rx = self.inner.presence.subscribe();
        let closing = self.inner.closing.clone();
        let stream = futures_util::stream::unfold((rx, closing), |(mut rx, closing)| async move {
            let received = tokio::select! {
                r = rx.recv() => r,
                () = closing.cancelled() => return None,
            };
            let event = match received {
                Ok(p) => PresenceEvent::Changed(p),
                Err(broadcast::error::RecvError::Lagged(_)) => PresenceEvent::Lagged,
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((event, (rx, closing)))
        });
        Ok(PresenceStream::new(stream))
    }

    async fn close(&self) {
        LocalBroker::close(self).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a user sees when `builder` builds.
    async fn refused(builder: LocalBrokerBuilder) -> String {
        builder.build().await.map(drop).unwrap_err().to_string()
    }

    fn b() -> LocalBrokerBuilder {
        LocalBroker::builder(Store::memory())
    }

    #[tokio::test]
    async fn the_smallest_allowed_settings_build() {
        b().prefetch(1)
            .max_body_size(1)
            .max_history(1)
            .inbox_capacity(1)
            .history_cap(1)
            .presence_buffer(1)
            .build()
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn zero_settings_are_refused() {
        assert_eq!(
            refused(b().prefetch(0)).await,
            "invalid prefetch: expected 1 to 2305843009213693951, got 0"
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
            refused(b().inbox_capacity(0)).await,
            "invalid inbox_capacity: expected 1 to 4294967296, got 0"
        );
        assert_eq!(
            refused(b().history_cap(0)).await,
            "invalid history_cap: expected at least 1, got 0"
        );
        assert_eq!(
            refused(b().presence_buffer(0)).await,
            format!(
                "invalid presence_buffer: expected 1 to {}, got 0",
                usize::MAX / 2
            )
        );
    }

    #[tokio::test]
    async fn settings_above_their_range_are_refused() {
        assert_eq!(
            refused(b().prefetch(usize::MAX)).await,
            format!(
                "invalid prefetch: expected 1 to 2305843009213693951, got {}",
                usize::MAX
            )
        );
        assert_eq!(
            refused(b().inbox_capacity(tiny_q::MAX_CAPACITY + 1)).await,
            "invalid inbox_capacity: expected 1 to 4294967296, got 4294967297"
        );
        assert_eq!(
            refused(b().presence_buffer(usize::MAX)).await,
            format!(
                "invalid presence_buffer: expected 1 to {}, got {}",
                usize::MAX / 2,
                usize::MAX
            )
        );
    }
}
