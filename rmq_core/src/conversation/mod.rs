//! Conversations as logs: every message stored once, per-device cursors, live
//! fan-out once per node.
//!
//! A [`Conversations`] keeps one append-only log per conversation (a room, or
//! the pair of users of a direct conversation) in a [`nopi::Store`]: sled for
//! one node, PostgreSQL for a cluster. Appending returns a sequence number,
//! strictly increasing and gapless per conversation. A message costs the same
//! whatever the number of members: nothing is copied per member. Each member
//! keeps a *read* position, each of their devices a *delivered* and a *read*
//! position; unread counts are differences of two counters, never a scan.
//!
//! Edits, deletes and reactions are entries too, so history reads and
//! catch-up carry them; [`Conversations::messages`] folds them into the
//! messages they refer to.
//!
//! Live entries travel through a [`Fanout`]: [`InProcessFanout`] in one
//! process, [`AmqpBroker`](crate::AmqpBroker) across nodes (one queue per
//! node, bound to the conversations its readers watch). A [`Feed`] is one
//! reader's view: it catches up from a cursor, then follows live entries,
//! filling any gap from the log, so a reader misses nothing and sees each seq
//! once. A [`PushFeed`] keeps the same promise for a server with many
//! connections: the node's dispatcher hands in-order entries straight to its
//! [`FeedSink`] (a connection's queue), with no task per reader on the live
//! path.
//!
//! # Example
//!
//! ```
//! use rmq_core::conversation::{Conversations, FeedItem, LogQuery, Retention};
//! use rmq_core::{ConversationId, DeviceId, Envelope, RoomId, To, UserId};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let log = Conversations::memory().await?; // or Conversations::builder(&store)
//! let (alice, bob) = (UserId::new("alice")?, UserId::new("bob")?);
//! let phone = DeviceId::new("phone")?;
//! let rust = RoomId::new("rust")?;
//! log.create_room(&rust, Retention::All).await?;
//! log.join(&rust, &alice).await?;
//! log.join(&rust, &bob).await?;
//! let room = ConversationId::room(rust.clone());
//!
//! // bob's phone follows the room from where it was.
//! let mut feed = log.feed(&bob);
//! feed.watch(&room, 0).await?;
//!
//! let sent = log.append(&Envelope::new(alice.clone(), To::Room(rust.clone()), "hello")).await?;
//! assert_eq!(sent.seq, 1);
//! log.edit(&room, &alice, 1, b"hello, rust".to_vec()).await?;
//!
//! let FeedItem::Entry(first) = feed.next().await? else { unreachable!() };
//! assert_eq!(first.seq, 1);
//! log.mark_delivered(&bob, &phone, &room, 1).await?;
//!
//! // Unread counts count messages, not edits.
//! let list = log.list(&bob, Default::default()).await?;
//! assert_eq!((list[0].head, list[0].unread), (2, 1));
//! log.mark_read(&bob, &phone, &room, 2).await?;
//! assert_eq!(log.list(&bob, Default::default()).await?[0].unread, 0);
//!
//! // History with the edit folded in.
//! let history = log.messages(&room, &bob, LogQuery::last(50)).await?;
//! assert_eq!(history[0].body(), b"hello, rust");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }
//! ```
//!
//! # Beside the [`Broker`](crate::Broker)
//!
//! Conversations replace per-user inboxes for everything that belongs to a
//! conversation: room and direct messages, whispers inside a group. What has
//! no conversation stays with the broker: messages [`To::Everyone`](crate::To)
//! (announcements) and presence. A store that already holds inboxes and room
//! histories is not touched: the logs are new trees.
//!
//! # Key layout
//!
//! Two trees of the store. `<c>` is the conversation's text form
//! (`r:<room>`, `d:<a>:<b>`), `<seq>` 8 bytes big-endian, so a prefix scan
//! reads a conversation in seq order; the value layouts are drawn in the
//! `entry` module's source.
//!
//! | tree | key | value |
//! |---|---|---|
//! | `rmq.log` | `h/<c>` | head: newest seq, oldest kept, message counters, retention |
//! | `rmq.log` | `e/<c>/<seq>` | one entry: a message or an event |
//! | `rmq.log` | `f/<c>/<seq>` | the fold of message `<seq>`: latest edit, the seqs of its edits, deletion, reaction counts |
//! | `rmq.log` | `x/<c>/<seq><user>` | `user`'s reaction to message `<seq>` |
//! | `rmq.log.members` | `m/<user>/<c>` | membership: the user's read seq and its message ordinal |
//! | `rmq.log.members` | `M/<c>/<user>` | the members of a room (empty) |
//! | `rmq.log.members` | `c/<user>/<device>/<c>` | a device's delivered and read seqs |
//!
//! An append is one atomic batch on `rmq.log` that expects the head it read:
//! the entry, the new head, and for events the rewritten fold. Two nodes
//! appending at once collide on the head and the loser retries with the new
//! head, so seqs stay gapless on PostgreSQL as on sled.
//!
//! # Invariants
//!
//! - `first <= seq + 1`; every seq in `first..=seq` has exactly one entry.
//! - A deleted message's body is gone from the store: its entry and every
//!   edit entry of it are rewritten empty in the delete's batch (a message
//!   takes at most [`max_edits`](ConversationsBuilder::max_edits) edits, so
//!   that batch stays bounded). The log keeps the events themselves.
//! - Cursors and read positions only move forward: a move backwards is
//!   ignored and the newer value kept.
//! - Unread = messages in the head − the ordinal at the read position.
//! - When [`Conversations::append`] returns, the entry is durable (a flush
//!   shared by concurrent writers on sled, the commit on PostgreSQL); the live
//!   fan-out happens after that, so a reader told of a seq can always read it.

mod entry;
mod id;
mod live;

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use nopi::{Batch, GroupCommit, Scan, Store, Tree};

pub use entry::{Deleted, Edited, Event, LogEntry, Message, Retention};
pub use id::ConversationId;
pub use live::{
    Fanout, FanoutBindings, FanoutEvent, FanoutListener, Feed, FeedItem, FeedSink, InProcessFanout,
    PushFeed,
};

use crate::envelope::now_ms;
use crate::{DeviceId, Envelope, Error, Result, RoomId, UserId};
use entry::{Fold, Head};

const LOG_TREE: &str = "rmq.log";
const MEMBERS_TREE: &str = "rmq.log.members";
const LOCK_SHARDS: usize = 64;
const MAX_APPEND_ATTEMPTS: u32 = 64;
const TRIM_EVERY: u64 = 64;
const TRIM_BATCH: u64 = 512;

/// Which part of a conversation's log to read. Results are in seq order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum LogQuery {
    /// The newest `limit` entries.
    Last {
        /// How many entries at most.
        limit: usize,
    },
    /// Up to `limit` entries after `seq` (catching up from a cursor).
    After {
        /// The last entry already seen (0: from the start).
        seq: u64,
        /// How many entries at most.
        limit: usize,
    },
    /// Up to `limit` entries just before `seq` (paging backwards).
    Before {
        /// The oldest entry already seen.
        seq: u64,
        /// How many entries at most.
        limit: usize,
    },
}

impl LogQuery {
    /// The newest `limit` entries.
    pub fn last(limit: usize) -> Self {
        LogQuery::Last { limit }
    }
    /// Up to `limit` entries after `seq`.
    pub fn after(seq: u64, limit: usize) -> Self {
        LogQuery::After { seq, limit }
    }
    /// Up to `limit` entries before `seq`.
    pub fn before(seq: u64, limit: usize) -> Self {
        LogQuery::Before { seq, limit }
    }
    fn limit(&self) -> usize {
        match *self {
            LogQuery::Last { limit }
            | LogQuery::After { limit, .. }
            | LogQuery::Before { limit, .. } => limit,
        }
    }
}

/// Entries read from a log, with where the log stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Page {
    /// The entries, in seq order.
    pub entries: Vec<LogEntry>,
    /// The newest seq of the conversation when read.
    pub head: u64,
    /// The oldest seq kept.
    pub first: u64,
}

/// A successful append.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Appended {
    /// The conversation.
    pub conversation: ConversationId,
    /// The entry's seq.
    pub seq: u64,
    /// `false` when the entry is stored but the live fan-out failed (the
    /// broker was away): readers get it when they catch up, not live.
    pub live: bool,
}

/// A device's positions in one conversation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Cursor {
    /// Everything up to here reached the device.
    pub delivered: u64,
    /// The device marked everything up to here read.
    pub read: u64,
}

/// A user's read position in a conversation after [`Conversations::mark_read`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ReadState {
    /// The user's read position (the newest any of their devices marked).
    pub read: u64,
    /// Messages after it.
    pub unread: u64,
}

/// One conversation of a user, as [`Conversations::list`] returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// The conversation.
    pub conversation: ConversationId,
    /// Its newest seq.
    pub head: u64,
    /// The user's read position.
    pub read: u64,
    /// Messages after the read position (the user's own included only if
    /// they were sent before it).
    pub unread: u64,
    /// The newest message with its events folded in (when asked for).
    pub last: Option<Message>,
}

/// Which of a user's conversations [`Conversations::list`] returns: ordered
/// by conversation id, `limit` after `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ListQuery {
    /// Start after this conversation (the last of the previous page).
    pub after: Option<ConversationId>,
    /// How many at most (default 100).
    pub limit: usize,
    /// Include each conversation's last message (default `true`).
    pub with_last: bool,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery {
            after: None,
            limit: 100,
            with_last: true,
        }
    }
}

impl ListQuery {
    /// The first `limit` conversations.
    pub fn first(limit: usize) -> Self {
        ListQuery {
            limit,
            ..Self::default()
        }
    }
    /// The `limit` conversations after `after`.
    pub fn after(after: ConversationId, limit: usize) -> Self {
        ListQuery {
            after: Some(after),
            limit,
            ..Self::default()
        }
    }
    /// Leave out the last messages (unread counts only: a cheaper call).
    pub fn without_last(mut self) -> Self {
        self.with_last = false;
        self
    }
}

#[derive(Debug, Clone)]
struct Config {
    max_body: usize,
    max_read: usize,
    max_reaction_len: usize,
    max_reactions: usize,
    max_edits: usize,
    durable: bool,
    feed_buffer: usize,
    max_watched: usize,
}

/// Builds [`Conversations`]; see [`Conversations::builder`].
#[derive(Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct ConversationsBuilder {
    store: Store,
    fanout: Option<Arc<dyn Fanout>>,
    cfg: Config,
}

impl ConversationsBuilder {
    /// Where live entries travel (default: a new [`InProcessFanout`], for
    /// one process). Give every node the same broker, e.g.
    /// `Arc::new(amqp_broker.clone())`.
    pub fn fanout(mut self, fanout: Arc<dyn Fanout>) -> Self {
        self.fanout = Some(fanout);
        self
    }

    /// The largest message or edit body, in bytes (default 64 KiB).
    pub fn max_body_size(mut self, bytes: usize) -> Self {
        self.cfg.max_body = bytes;
        self
    }

    /// The most entries one read may ask for (default 1000).
    pub fn max_read(mut self, entries: usize) -> Self {
        self.cfg.max_read = entries;
        self
    }

    /// The longest reaction, in bytes (default 64), and the most distinct
    /// reactions one message may carry (default 64).
    pub fn reaction_limits(mut self, max_len: usize, max_distinct: usize) -> Self {
        self.cfg.max_reaction_len = max_len;
        self.cfg.max_reactions = max_distinct;
        self
    }

    /// The most times one message may be edited (default 100): a delete
    /// erases every edit's body, so the work of a delete stays bounded.
    pub fn max_edits(mut self, edits: usize) -> Self {
        self.cfg.max_edits = edits;
        self
    }

    /// Whether writes return only once durable (default `true`: a flush,
    /// shared by concurrent writers, on sled; PostgreSQL is durable at commit
    /// either way).
    pub fn durable(mut self, durable: bool) -> Self {
        self.cfg.durable = durable;
        self
    }

    /// How many live entries a [`Feed`] may have waiting before it falls
    /// back to reading the log (default 1024).
    pub fn feed_buffer(mut self, entries: usize) -> Self {
        self.cfg.feed_buffer = entries;
        self
    }

    /// The most conversations one [`Feed`] or [`PushFeed`] may watch
    /// (default 10,000); past it [`watch`](Feed::watch) is refused with
    /// [`Error::TooManyWatched`].
    pub fn max_watched(mut self, conversations: usize) -> Self {
        self.cfg.max_watched = conversations;
        self
    }

    /// Open the log's trees and start listening to the fan-out. Refuses a
    /// setting of zero, and a [`feed_buffer`](Self::feed_buffer) above
    /// [`Semaphore::MAX_PERMITS`](tokio::sync::Semaphore::MAX_PERMITS),
    /// with [`Error::InvalidConfig`].
    pub async fn build(self) -> Result<Conversations> {
        let any = u128::MAX;
        crate::error::check_counts(&[
            ("max_body_size", self.cfg.max_body as u128, any),
            ("max_read", self.cfg.max_read as u128, any),
            (
                "reaction_limits max_len",
                self.cfg.max_reaction_len as u128,
                any,
            ),
            (
                "reaction_limits max_distinct",
                self.cfg.max_reactions as u128,
                any,
            ),
            ("max_edits", self.cfg.max_edits as u128, any),
            (
                "feed_buffer",
                self.cfg.feed_buffer as u128,
                tokio::sync::Semaphore::MAX_PERMITS as u128,
            ),
            ("max_watched", self.cfg.max_watched as u128, any),
        ])?;
        let log = self.store.tree(LOG_TREE).await?;
        let members = self.store.tree(MEMBERS_TREE).await?;
        let fanout = self
            .fanout
            .unwrap_or_else(|| Arc::new(InProcessFanout::new()));
        let listener = fanout.listen().await?;
        let inner = Arc::new(Inner {
            log,
            members,
            commit: GroupCommit::default(),
            locks: (0..LOCK_SHARDS)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
            hasher: std::collections::hash_map::RandomState::new(),
            live: live::Dispatch::start(listener, self.cfg.max_body),
            fanout,
            cfg: self.cfg,
        });
        Ok(Conversations { inner })
    }
}

/// Conversation logs with cursors and live fan-out; see the [module docs](self).
///
/// Cheap to clone; every clone shares the logs and the fan-out listener.
#[derive(Debug, Clone)]
pub struct Conversations {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    log: Tree,
    members: Tree,
    commit: GroupCommit,
    /// Appends to one conversation run one at a time on this node (other
    /// nodes are kept out by the head expectation).
    locks: Box<[tokio::sync::Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
    live: Arc<live::Dispatch>,
    fanout: Arc<dyn Fanout>,
    cfg: Config,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conversations")
            .field("fanout", &self.fanout)
            .field("durable", &self.cfg.durable)
            .finish_non_exhaustive()
    }
}

// Keys (see the module docs).

fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.extend_from_slice(part);
    }
    out
}

fn head_key(c: &str) -> Vec<u8> {
    key(&[b"h/", c.as_bytes()])
}
fn entry_prefix(c: &str) -> Vec<u8> {
    key(&[b"e/", c.as_bytes(), b"/"])
}
fn entry_key(c: &str, seq: u64) -> Vec<u8> {
    key(&[b"e/", c.as_bytes(), b"/", &seq.to_be_bytes()])
}
fn fold_key(c: &str, seq: u64) -> Vec<u8> {
    key(&[b"f/", c.as_bytes(), b"/", &seq.to_be_bytes()])
}
fn reaction_key(c: &str, seq: u64, user: &UserId) -> Vec<u8> {
    key(&[
        b"x/",
        c.as_bytes(),
        b"/",
        &seq.to_be_bytes(),
        user.as_str().as_bytes(),
    ])
}
fn membership_key(user: &UserId, c: &str) -> Vec<u8> {
    key(&[b"m/", user.as_str().as_bytes(), b"/", c.as_bytes()])
}
fn membership_prefix(user: &UserId) -> Vec<u8> {
    key(&[b"m/", user.as_str().as_bytes(), b"/"])
}
fn member_key(c: &str, user: &UserId) -> Vec<u8> {
    key(&[b"M/", c.as_bytes(), b"/", user.as_str().as_bytes()])
}
fn member_prefix(c: &str) -> Vec<u8> {
    key(&[b"M/", c.as_bytes(), b"/"])
}
fn cursor_key(user: &UserId, device: &DeviceId, c: &str) -> Vec<u8> {
    key(&[
        b"c/",
        user.as_str().as_bytes(),
        b"/",
        device.as_str().as_bytes(),
        b"/",
        c.as_bytes(),
    ])
}

fn pair(a: u64, b: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&a.to_be_bytes());
    out.extend_from_slice(&b.to_be_bytes());
    out
}

fn unpair(bytes: &[u8]) -> Option<(u64, u64)> {
    let a: [u8; 8] = bytes.get(..8)?.try_into().ok()?;
    let b: [u8; 8] = bytes.get(8..16)?.try_into().ok()?;
    Some((u64::from_be_bytes(a), u64::from_be_bytes(b)))
}

fn seq_of_entry_key(prefix_len: usize, key: &[u8]) -> Option<u64> {
    let raw: [u8; 8] = key.get(prefix_len..prefix_len + 8)?.try_into().ok()?;
    Some(u64::from_be_bytes(raw))
}

/// A change to append, before it has a seq.
enum Change {
    Message(Envelope),
    Edit {
        by: UserId,
        target: u64,
        body: Vec<u8>,
    },
    Delete {
        by: UserId,
        target: u64,
    },
    React {
        by: UserId,
        target: u64,
        reaction: String,
    },
}

impl Change {
    fn actor(&self) -> &UserId {
        match self {
            Change::Message(env) => &env.from,
            Change::Edit { by, .. } | Change::Delete { by, .. } | Change::React { by, .. } => by,
        }
    }
}

/// What an append writes besides the entry and the head.
struct Planned {
    event: Event,
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
    /// For reactions: the user's reaction after the toggle.
    reaction: Option<String>,
}

impl Conversations {
    /// Start building conversation logs in `store`.
    pub fn builder(store: &Store) -> ConversationsBuilder {
        ConversationsBuilder {
            store: store.clone(),
            fanout: None,
            cfg: Config {
                max_body: 64 * 1024,
                max_read: 1000,
                max_reaction_len: 64,
                max_reactions: 64,
                max_edits: 100,
                durable: true,
                feed_buffer: 1024,
                max_watched: 10_000,
            },
        }
    }

    /// Logs in a fresh in-memory store with an in-process fan-out (tests,
    /// examples).
    pub async fn memory() -> Result<Self> {
        Self::builder(&Store::memory()).build().await
    }

    fn corrupt(conversation: &ConversationId, what: impl Into<String>, reason: String) -> Error {
        Error::Corrupt {
            conversation: conversation.clone(),
            what: what.into(),
            reason,
        }
    }

    async fn durable(&self) -> Result<()> {
        if !self.inner.cfg.durable {
            return Ok(());
        }
        let log = &self.inner.log;
        self.inner
            .commit
            .sync(|| log.flush())
            .await
            .map_err(Error::Flush)
    }

    async fn head(&self, c: &ConversationId) -> Result<Option<(Head, Vec<u8>)>> {
        match self.inner.log.get(head_key(&c.key())).await? {
            None => Ok(None),
            Some(bytes) => Head::decode(&bytes)
                .map(|h| Some((h, bytes)))
                .map_err(|e| Self::corrupt(c, "head", e)),
        }
    }

    /// The head of `c`; a direct conversation nobody wrote to yet reads as empty.
    async fn head_or_empty(&self, c: &ConversationId) -> Result<Head> {
        match self.head(c).await? {
            Some((head, _)) => Ok(head),
            None if c.is_direct() => Ok(Head::new(Retention::All, 0)),
            None => Err(Error::UnknownConversation(c.clone())),
        }
    }

    /// The user's membership record: `(read seq, read ordinal)`.
    async fn membership(&self, user: &UserId, c: &ConversationId) -> Result<Option<(u64, u64)>> {
        let found = self
            .inner
            .members
            .get(membership_key(user, &c.key()))
            .await?;
        Ok(found.map(|b| unpair(&b).unwrap_or((0, 0))))
    }

    async fn check_member(&self, user: &UserId, c: &ConversationId) -> Result<()> {
        let member = match c.pair() {
            Some((a, b)) => a == user || b == user,
            None => self.membership(user, c).await?.is_some(),
        };
        if member {
            Ok(())
        } else if self.head(c).await?.is_none() {
            Err(Error::UnknownConversation(c.clone()))
        } else {
            Err(Error::NotMember {
                user: user.clone(),
                conversation: c.clone(),
            })
        }
    }

    fn lock(&self, c: &ConversationId) -> &tokio::sync::Mutex<()> {
        let hash = self.inner.hasher.hash_one(c);
        let shard = usize::try_from(hash % LOCK_SHARDS as u64).unwrap_or(0);
        &self.inner.locks[shard]
    }

    /// Create a room's conversation; `false` if it existed (its retention is
    /// then left as it was).
    pub async fn create_room(&self, room: &RoomId, retention: Retention) -> Result<bool> {
        let c = ConversationId::room(room.clone());
        let head = Head::new(retention, now_ms());
        let created = self
            .inner
            .log
            .apply(
                Batch::new()
                    .expect_absent(head_key(&c.key()))
                    .put(head_key(&c.key()), head.encode()),
            )
            .await;
        match created {
            Ok(()) => {
                self.durable().await?;
                Ok(true)
            }
            Err(nopi::Error::Conflict { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Change how much of a conversation is kept; takes effect at the next trim.
    pub async fn set_retention(&self, c: &ConversationId, retention: Retention) -> Result<()> {
        let _one = self.lock(c).lock().await;
        for _ in 0..MAX_APPEND_ATTEMPTS {
            let (mut head, old) = match self.head(c).await? {
                Some(found) => found,
                None if c.is_direct() => (Head::new(Retention::All, now_ms()), Vec::new()),
                None => return Err(Error::UnknownConversation(c.clone())),
            };
            head.retention = retention;
            let k = head_key(&c.key());
            let expect = (!old.is_empty()).then_some(old);
            match self
                .inner
                .log
                .apply(Batch::new().expect(&k, expect).put(&k, head.encode()))
                .await
            {
                Ok(()) => return self.durable().await,
                Err(nopi::Error::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(Error::Contended(c.clone()))
    }

    /// Make `user` a member of `room`. Their read position starts at the
    /// room's head: what came before is history, not unread. Joining twice
    /// changes nothing.
    pub async fn join(&self, room: &RoomId, user: &UserId) -> Result<()> {
        let c = ConversationId::room(room.clone());
        let head = self.head_or_empty(&c).await?;
        let mk = membership_key(user, &c.key());
        let batch = Batch::new()
            .expect_absent(&mk)
            .put(&mk, pair(head.seq, head.messages))
            .put(member_key(&c.key(), user), []);
        match self.inner.members.apply(batch).await {
            Ok(()) | Err(nopi::Error::Conflict { .. }) => self.durable().await,
            Err(e) => Err(e.into()),
        }
    }

    /// Stop `user`'s membership of `room` (their cursors go too). Leaving a
    /// room one is not in changes nothing.
    pub async fn leave(&self, room: &RoomId, user: &UserId) -> Result<()> {
        let c = ConversationId::room(room.clone()).key();
        self.inner
            .members
            .apply(
                Batch::new()
                    .remove(membership_key(user, &c))
                    .remove(member_key(&c, user)),
            )
            .await?;
        self.durable().await
    }

    /// Whether `user` may read and write `c`.
    pub async fn is_member(&self, c: &ConversationId, user: &UserId) -> Result<bool> {
        match self.check_member(user, c).await {
            Ok(()) => Ok(true),
            Err(Error::NotMember { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The members of a room, ordered by id: up to `limit` after `after`. A
    /// direct conversation's members are its pair.
    pub async fn members(
        &self,
        c: &ConversationId,
        after: Option<&UserId>,
        limit: usize,
    ) -> Result<Vec<UserId>> {
        if let Some((a, b)) = c.pair() {
            let mut both = vec![a.clone()];
            if a != b {
                both.push(b.clone());
            }
            both.retain(|u| after.is_none_or(|after| u > after));
            both.truncate(limit);
            return Ok(both);
        }
        let prefix = member_prefix(&c.key());
        let scan = match after {
            Some(after) => {
                let mut from = member_key(&c.key(), after);
                from.push(0);
                let mut end = prefix.clone();
                end.push(0xff);
                Scan::range(from..end)
            }
            None => Scan::prefix(&prefix),
        };
        let rows = self.inner.members.scan(scan.limit(limit)).await?;
        Ok(rows
            .iter()
            .filter_map(|(k, _)| std::str::from_utf8(&k[prefix.len()..]).ok())
            .filter_map(|name| UserId::new(name).ok())
            .collect())
    }

    /// Append a message to the conversation of its [`To`](crate::To): a
    /// room's (the sender must be a member), or the direct conversation of
    /// the sender and the recipient (created by its first message). The
    /// sender's read position moves to it.
    pub async fn append(&self, envelope: &Envelope) -> Result<Appended> {
        let Some(c) = ConversationId::of(&envelope.from, &envelope.to) else {
            return Err(Error::InvalidEnvelope {
                id: envelope.id,
                reason: "a message to everyone belongs to no conversation".into(),
            });
        };
        crate::envelope::check_content_type(envelope)?;
        if envelope.body.len() > self.inner.cfg.max_body {
            return Err(Error::BodyTooLarge {
                size: envelope.body.len(),
                limit: self.inner.cfg.max_body,
            });
        }
        let (appended, _) = self
            .append_change(&c, Change::Message(envelope.clone()))
            .await?;
        Ok(appended)
    }

    /// Replace the body of message `target`; only its sender may. Returns the
    /// edit's seq.
    pub async fn edit(
        &self,
        c: &ConversationId,
        by: &UserId,
        target: u64,
        body: Vec<u8>,
    ) -> Result<Appended> {
        if body.len() > self.inner.cfg.max_body {
            return Err(Error::BodyTooLarge {
                size: body.len(),
                limit: self.inner.cfg.max_body,
            });
        }
        let change = Change::Edit {
            by: by.clone(),
            target,
            body,
        };
        Ok(self.append_change(c, change).await?.0)
    }

    /// Delete (redact) message `target`: its body and edits are erased from
    /// the store, and a delete event is appended. Who may delete whose
    /// message is the application's rule; `by` is recorded.
    pub async fn delete_message(
        &self,
        c: &ConversationId,
        by: &UserId,
        target: u64,
    ) -> Result<Appended> {
        let change = Change::Delete {
            by: by.clone(),
            target,
        };
        Ok(self.append_change(c, change).await?.0)
    }

    /// Toggle `by`'s reaction to message `target`: the same reaction again
    /// takes it back, another one replaces it (one reaction per user per
    /// message). Returns the event and the user's reaction now.
    pub async fn react(
        &self,
        c: &ConversationId,
        by: &UserId,
        target: u64,
        reaction: &str,
    ) -> Result<(Appended, Option<String>)> {
        let cfg = &self.inner.cfg;
        let reason = if reaction.trim().is_empty() {
            Some("a reaction must not be empty".to_owned())
        } else if reaction.len() > cfg.max_reaction_len {
            Some(format!(
                "a reaction of {} bytes exceeds the {}-byte limit",
                reaction.len(),
                cfg.max_reaction_len
            ))
        } else if reaction.chars().any(char::is_control) {
            Some("a reaction must not contain control characters".to_owned())
        } else {
            None
        };
        if let Some(reason) = reason {
            return Err(Error::InvalidReaction { reason });
        }
        let change = Change::React {
            by: by.clone(),
            target,
            reaction: reaction.to_owned(),
        };
        self.append_change(c, change).await
    }

    /// Load message `target` of `c` for an event: it must be a message and
    /// still kept.
    async fn target_message(
        &self,
        c: &ConversationId,
        head: &Head,
        target: u64,
    ) -> Result<(Envelope, u64, u64, Fold)> {
        let missing = || Error::NoSuchMessage {
            conversation: c.clone(),
            seq: target,
        };
        if target < head.first || target > head.seq {
            return Err(missing());
        }
        let key = c.key();
        let bytes = self
            .inner
            .log
            .get(entry_key(&key, target))
            .await?
            .ok_or_else(missing)?;
        let (ts, ordinal, event) = entry::decode_entry_owned(bytes, self.inner.cfg.max_body)
            .map_err(|e| Self::corrupt(c, format!("entry {target}"), e))?;
        let Event::Message(envelope) = event else {
            return Err(missing());
        };
        let fold = match self.inner.log.get(fold_key(&key, target)).await? {
            None => Fold::default(),
            Some(b) => serde_json::from_slice(&b)
                .map_err(|e| Self::corrupt(c, format!("fold {target}"), e.to_string()))?,
        };
        Ok((envelope, ts, ordinal, fold))
    }

    /// The write that empties the body of edit entry `seq` (none if it is
    /// gone already).
    async fn erased_edit(
        &self,
        c: &ConversationId,
        seq: u64,
    ) -> Result<Option<(Vec<u8>, Option<Vec<u8>>)>> {
        let k = entry_key(&c.key(), seq);
        let Some(bytes) = self.inner.log.get(&k).await? else {
            return Ok(None);
        };
        let (ts, ordinal, event) = entry::decode_entry_owned(bytes, self.inner.cfg.max_body)
            .map_err(|e| Self::corrupt(c, format!("entry {seq}"), e))?;
        let Event::Edit { target, by, .. } = event else {
            return Err(Self::corrupt(
                c,
                format!("entry {seq}"),
                "an edit was expected".into(),
            ));
        };
        let erased = Event::Edit {
            target,
            by,
            body: Vec::new(),
        };
        Ok(Some((k, Some(entry::encode_entry(ts, ordinal, &erased)))))
    }

    async fn plan(
        &self,
        c: &ConversationId,
        head: &Head,
        seq: u64,
        ts: u64,
        change: &Change,
    ) -> Result<Planned> {
        let key = c.key();
        let deleted = |conversation: &ConversationId, seq| Error::MessageDeleted {
            conversation: conversation.clone(),
            seq,
        };
        let fold_write = |target, fold: &Fold| {
            // Plain data with string keys: serializing cannot fail.
            (
                fold_key(&key, target),
                Some(serde_json::to_vec(fold).unwrap_or_default()),
            )
        };
        match change {
            Change::Message(env) => Ok(Planned {
                event: Event::Message(env.clone()),
                writes: Vec::new(),
                reaction: None,
            }),
            Change::Edit { by, target, body } => {
                let (envelope, _, _, mut fold) = self.target_message(c, head, *target).await?;
                if &envelope.from != by {
                    return Err(Error::NotSender {
                        conversation: c.clone(),
                        seq: *target,
                        user: by.clone(),
                        sender: envelope.from,
                    });
                }
                if fold.deleted.is_some() {
                    return Err(deleted(c, *target));
                }
                let limit = self.inner.cfg.max_edits;
                if fold.edits.len() >= limit {
                    return Err(Error::TooManyEdits {
                        conversation: c.clone(),
                        seq: *target,
                        limit,
                    });
                }
                fold.edits.push(seq);
                fold.edited = Some(Edited {
                    seq,
                    ts,
                    body: body.clone(),
                });
                Ok(Planned {
                    event: Event::Edit {
                        target: *target,
                        by: by.clone(),
                        body: body.clone(),
                    },
                    writes: vec![fold_write(*target, &fold)],
                    reaction: None,
                })
            }
            Change::Delete { by, target } => {
                let (mut envelope, msg_ts, ordinal, mut fold) =
                    self.target_message(c, head, *target).await?;
                if fold.deleted.is_some() {
                    return Err(deleted(c, *target));
                }
                // Erase the body wherever the store holds it: the message
                // and every edit of it (a fold written before edits were
                // listed names the latest one).
                let mut edits = std::mem::take(&mut fold.edits);
                edits.extend(fold.edited.take().map(|e| e.seq));
                edits.sort_unstable();
                edits.dedup();
                let mut writes = Vec::with_capacity(edits.len() + 2);
                for edit in edits.into_iter().filter(|&s| s >= head.first) {
                    writes.extend(self.erased_edit(c, edit).await?);
                }
                fold.deleted = Some(Deleted {
                    seq,
                    ts,
                    by: by.clone(),
                });
                envelope.body.clear();
                let erased = entry::encode_entry(msg_ts, ordinal, &Event::Message(envelope));
                writes.push((entry_key(&key, *target), Some(erased)));
                writes.push(fold_write(*target, &fold));
                Ok(Planned {
                    event: Event::Delete {
                        target: *target,
                        by: by.clone(),
                    },
                    writes,
                    reaction: None,
                })
            }
            Change::React {
                by,
                target,
                reaction,
            } => {
                let (_, _, _, mut fold) = self.target_message(c, head, *target).await?;
                if fold.deleted.is_some() {
                    return Err(deleted(c, *target));
                }
                let rk = reaction_key(&key, *target, by);
                let current = self
                    .inner
                    .log
                    .get(&rk)
                    .await?
                    .and_then(|b| String::from_utf8(b).ok());
                if let Some(old) = &current
                    && let Some(n) = fold.reactions.get_mut(old)
                {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        fold.reactions.remove(old);
                    }
                }
                let now = (current.as_deref() != Some(reaction.as_str())).then(|| reaction.clone());
                if let Some(new) = &now {
                    *fold.reactions.entry(new.clone()).or_insert(0) += 1;
                    if fold.reactions.len() > self.inner.cfg.max_reactions {
                        return Err(Error::InvalidReaction {
                            reason: format!(
                                "message {target} already carries the limit of {} distinct reactions",
                                self.inner.cfg.max_reactions
                            ),
                        });
                    }
                }
                Ok(Planned {
                    event: Event::React {
                        target: *target,
                        by: by.clone(),
                        reaction: now.clone(),
                    },
                    writes: vec![
                        (rk, now.clone().map(String::into_bytes)),
                        fold_write(*target, &fold),
                    ],
                    reaction: now,
                })
            }
        }
    }

    async fn append_change(
        &self,
        c: &ConversationId,
        change: Change,
    ) -> Result<(Appended, Option<String>)> {
        self.check_member(change.actor(), c).await?;
        let key = c.key();
        let hk = head_key(&key);
        let _one = self.lock(c).lock().await;
        let mut attempt = 0;
        let (seq, entry, reaction, head) = loop {
            attempt += 1;
            if attempt > MAX_APPEND_ATTEMPTS {
                return Err(Error::Contended(c.clone()));
            }
            let (head, old) = match self.head(c).await? {
                Some(found) => found,
                None if c.is_direct() => {
                    self.open_direct(c).await?;
                    continue;
                }
                None => return Err(Error::UnknownConversation(c.clone())),
            };
            let seq = head.seq + 1;
            let ts = now_ms();
            let planned = self.plan(c, &head, seq, ts, &change).await?;
            let mut next = head;
            next.seq = seq;
            if matches!(planned.event, Event::Message(_)) {
                next.messages += 1;
                next.last_message = seq;
            }
            let entry = entry::encode_entry(ts, next.messages, &planned.event);
            let mut batch = Batch::new()
                .expect(&hk, Some(&old))
                .put(entry_key(&key, seq), &entry)
                .put(&hk, next.encode());
            for (k, v) in planned.writes {
                batch = match v {
                    Some(v) => batch.put(k, v),
                    None => batch.remove(k),
                };
            }
            match self.inner.log.apply(batch).await {
                Ok(()) => break (seq, entry, planned.reaction, next),
                Err(nopi::Error::Conflict { .. }) => {
                    // Another node appended: read the new head and go again.
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
        };
        self.durable().await?;
        drop(_one);
        if let Change::Message(env) = &change {
            // The sender has read what they sent; best effort, the message is stored.
            if let Err(e) = self.advance_read(&env.from, c, seq, head.messages).await {
                tracing::warn!(conversation = %c, seq, error = %e, "could not move the sender's read position");
            }
        }
        let live = match self
            .inner
            .fanout
            .publish(c, &entry::encode_live(c, seq, &entry))
            .await
        {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(conversation = %c, seq, error = %e, "live fan-out failed; readers catch up from the log");
                false
            }
        };
        if head.retention != Retention::All
            && seq % TRIM_EVERY == 0
            && let Err(e) = self.trim(c).await
        {
            tracing::warn!(conversation = %c, error = %e, "trimming failed; retried at a later append");
        }
        Ok((
            Appended {
                conversation: c.clone(),
                seq,
                live,
            },
            reaction,
        ))
    }

    /// Create a direct conversation's head and both memberships.
    async fn open_direct(&self, c: &ConversationId) -> Result<()> {
        let Some((a, b)) = c.pair() else {
            return Ok(());
        };
        let key = c.key();
        let mut batch = Batch::new();
        for user in [a, b] {
            let mk = membership_key(user, &key);
            if self.inner.members.get(&mk).await?.is_none() {
                batch = batch.put(mk, pair(0, 0));
            }
        }
        self.inner.members.apply(batch).await?;
        let hk = head_key(&key);
        let head = Head::new(Retention::All, now_ms());
        match self
            .inner
            .log
            .apply(Batch::new().expect_absent(&hk).put(&hk, head.encode()))
            .await
        {
            Ok(()) | Err(nopi::Error::Conflict { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Move `user`'s read position forward to `(seq, ordinal)`; a move
    /// backwards keeps the newer one. Returns the position now.
    async fn advance_read(
        &self,
        user: &UserId,
        c: &ConversationId,
        seq: u64,
        ordinal: u64,
    ) -> Result<(u64, u64)> {
        let mk = membership_key(user, &c.key());
        let mut now = (seq, ordinal);
        self.inner
            .members
            .fetch_update(&mk, |old| {
                // `None` would delete the membership: keep the newer position instead.
                let old = old.map(|b| unpair(b).unwrap_or((0, 0)));
                now = match old {
                    Some(old) if old.0 >= seq => old,
                    _ => (seq, ordinal),
                };
                Some(pair(now.0, now.1))
            })
            .await?;
        Ok(now)
    }

    async fn advance_cursor(
        &self,
        user: &UserId,
        device: &DeviceId,
        c: &ConversationId,
        delivered: u64,
        read: u64,
    ) -> Result<Cursor> {
        let ck = cursor_key(user, device, &c.key());
        let mut now = Cursor::default();
        self.inner
            .members
            .fetch_update(&ck, |old| {
                let (d, r) = old.and_then(unpair).unwrap_or((0, 0));
                let next = (d.max(delivered).max(read), r.max(read));
                now = Cursor {
                    delivered: next.0,
                    read: next.1,
                };
                Some(pair(next.0, next.1))
            })
            .await?;
        Ok(now)
    }

    async fn check_position(&self, c: &ConversationId, seq: u64) -> Result<Head> {
        let head = self.head_or_empty(c).await?;
        if seq > head.seq {
            return Err(Error::BeyondHead {
                conversation: c.clone(),
                seq,
                head: head.seq,
            });
        }
        Ok(head)
    }

    /// Record that everything up to `seq` reached `device` of `user`
    /// (monotonic: an older seq is ignored). Returns the cursor now.
    pub async fn mark_delivered(
        &self,
        user: &UserId,
        device: &DeviceId,
        c: &ConversationId,
        seq: u64,
    ) -> Result<Cursor> {
        self.check_member(user, c).await?;
        self.check_position(c, seq).await?;
        let cursor = self.advance_cursor(user, device, c, seq, 0).await?;
        self.durable().await?;
        Ok(cursor)
    }

    /// Mark `c` read up to `seq` on `device`: the device's cursors and the
    /// user's read position (shared by all their devices) move forward.
    pub async fn mark_read(
        &self,
        user: &UserId,
        device: &DeviceId,
        c: &ConversationId,
        seq: u64,
    ) -> Result<ReadState> {
        self.check_member(user, c).await?;
        let head = self.check_position(c, seq).await?;
        let ordinal = if seq == head.seq {
            head.messages
        } else if seq < head.first {
            head.trimmed_messages
        } else {
            match self.inner.log.get(entry_key(&c.key(), seq)).await? {
                Some(bytes) => entry::entry_ordinal(&bytes)
                    .ok_or_else(|| Self::corrupt(c, format!("entry {seq}"), "no ordinal".into()))?,
                // Trimmed since the head was read: the newer head knows how many.
                None => self.head_or_empty(c).await?.trimmed_messages,
            }
        };
        self.advance_cursor(user, device, c, seq, seq).await?;
        let (read, read_ordinal) = self.advance_read(user, c, seq, ordinal).await?;
        self.durable().await?;
        Ok(ReadState {
            read,
            unread: head.messages.saturating_sub(read_ordinal),
        })
    }

    /// The cursors of `device` of `user` in `c` (zeros for a device that
    /// never marked anything).
    pub async fn cursor(
        &self,
        user: &UserId,
        device: &DeviceId,
        c: &ConversationId,
    ) -> Result<Cursor> {
        let found = self
            .inner
            .members
            .get(cursor_key(user, device, &c.key()))
            .await?;
        Ok(found
            .and_then(|b| unpair(&b))
            .map(|(delivered, read)| Cursor { delivered, read })
            .unwrap_or_default())
    }

    /// Where a device should resume `c` from: its delivered cursor, or for a
    /// device new to the conversation the user's read position.
    pub async fn resume_point(
        &self,
        user: &UserId,
        device: &DeviceId,
        c: &ConversationId,
    ) -> Result<u64> {
        if let Some((delivered, _)) = self
            .inner
            .members
            .get(cursor_key(user, device, &c.key()))
            .await?
            .and_then(|b| unpair(&b))
        {
            return Ok(delivered);
        }
        Ok(self.membership(user, c).await?.map_or(0, |(read, _)| read))
    }

    /// Read entries of `c` as `reader` (a member).
    pub async fn read(&self, c: &ConversationId, reader: &UserId, query: LogQuery) -> Result<Page> {
        // Concurrently: on PostgreSQL each is a round trip.
        let (_, page) =
            tokio::try_join!(self.check_member(reader, c), self.read_unchecked(c, query))?;
        Ok(page)
    }

    pub(crate) async fn read_unchecked(&self, c: &ConversationId, query: LogQuery) -> Result<Page> {
        // The scan and the head read run side by side; an append between
        // them can leave an empty page behind a newer head. Read again then.
        for _ in 0..MAX_APPEND_ATTEMPTS {
            if let Some(page) = self.read_attempt(c, query).await? {
                return Ok(page);
            }
        }
        Err(Error::Contended(c.clone()))
    }

    /// One read; `None` when an append raced it and it must be read again.
    async fn read_attempt(&self, c: &ConversationId, query: LogQuery) -> Result<Option<Page>> {
        let limit = query.limit();
        if limit > self.inner.cfg.max_read {
            return Err(Error::HistoryTooLarge {
                requested: limit,
                limit: self.inner.cfg.max_read,
            });
        }
        let key = c.key();
        let prefix = entry_prefix(&key);
        // No seq reaches u64::MAX (such a head is corrupt), and no entry
        // lies below the head's `first`: the bounds need no head, so the
        // scan runs beside the head read.
        let scan = match query {
            LogQuery::Last { .. } => Scan::prefix(&prefix).rev(),
            LogQuery::After { seq, .. } => {
                Scan::range(entry_key(&key, seq.saturating_add(1))..entry_key(&key, u64::MAX))
            }
            LogQuery::Before { seq, .. } => {
                Scan::range(entry_key(&key, 0)..entry_key(&key, seq)).rev()
            }
        };
        let rows = async {
            if limit == 0 {
                return Ok(Vec::new());
            }
            Ok::<_, Error>(self.inner.log.scan(scan.limit(limit)).await?)
        };
        let (head, rows) = tokio::try_join!(self.head_or_empty(c), rows)?;
        if let LogQuery::After { seq, .. } = query {
            if seq > head.seq {
                return Err(Error::BeyondHead {
                    conversation: c.clone(),
                    seq,
                    head: head.seq,
                });
            }
            if seq.saturating_add(1) < head.first {
                return Err(Error::Trimmed {
                    conversation: c.clone(),
                    after: seq,
                    first: head.first,
                });
            }
        }
        let mut entries = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let seq = seq_of_entry_key(prefix.len(), &k)
                .ok_or_else(|| Self::corrupt(c, "entry key", format!("{} bytes", k.len())))?;
            let (ts, _, event) = entry::decode_entry_owned(v, self.inner.cfg.max_body)
                .map_err(|e| Self::corrupt(c, format!("entry {seq}"), e))?;
            entries.push(LogEntry {
                conversation: c.clone(),
                seq,
                ts,
                event,
            });
        }
        if query_is_reverse(&query) {
            entries.reverse();
        }
        if let LogQuery::After { seq, .. } = query {
            // A trim that committed between the head read and the scan moved
            // the tail past `seq + 1`: say so rather than skip silently.
            let skipped = match entries.first() {
                Some(e) => e.seq != seq.saturating_add(1),
                None => limit > 0 && head.seq > seq,
            };
            if skipped {
                let now = self.head_or_empty(c).await?;
                if now.first <= seq.saturating_add(1) {
                    return Ok(None); // not trimmed: the scan ran before an append
                }
                return Err(Error::Trimmed {
                    conversation: c.clone(),
                    after: seq,
                    first: now.first,
                });
            }
        }
        // Entries appended after the head was read may be in the page.
        let newest = entries.iter().map(|e| e.seq).max().unwrap_or(0);
        Ok(Some(Page {
            entries,
            head: head.seq.max(newest),
            first: head.first,
        }))
    }

    /// The messages among the entries `query` selects, with their edits,
    /// deletion and reactions folded in (history for a client).
    pub async fn messages(
        &self,
        c: &ConversationId,
        reader: &UserId,
        query: LogQuery,
    ) -> Result<Vec<Message>> {
        let page = self.read(c, reader, query).await?;
        self.fold(c, page.entries).await
    }

    async fn fold(&self, c: &ConversationId, entries: Vec<LogEntry>) -> Result<Vec<Message>> {
        let (Some(lo), Some(hi)) = (
            entries.first().map(|e| e.seq),
            entries.last().map(|e| e.seq),
        ) else {
            return Ok(Vec::new());
        };
        let key = c.key();
        let prefix_len = fold_key(&key, 0).len() - 8;
        let folds: BTreeMap<u64, Fold> = self
            .inner
            .log
            .scan(Scan::range(
                fold_key(&key, lo)..fold_key(&key, hi.saturating_add(1)),
            ))
            .await?
            .into_iter()
            .filter_map(|(k, v)| {
                let seq = seq_of_entry_key(prefix_len, &k)?;
                Some((seq, serde_json::from_slice(&v).ok()?))
            })
            .collect();
        let mut out = Vec::new();
        for entry in entries {
            if let Event::Message(envelope) = entry.event {
                let fold = folds.get(&entry.seq).cloned().unwrap_or_default();
                out.push(Message {
                    seq: entry.seq,
                    envelope,
                    edited: fold.edited,
                    deleted: fold.deleted,
                    reactions: fold.reactions,
                });
            }
        }
        Ok(out)
    }

    /// One message of `c` with its events folded in.
    pub async fn message(&self, c: &ConversationId, reader: &UserId, seq: u64) -> Result<Message> {
        self.check_member(reader, c).await?;
        let head = self.head_or_empty(c).await?;
        let (envelope, _, _, fold) = self.target_message(c, &head, seq).await?;
        Ok(Message {
            seq,
            envelope,
            edited: fold.edited,
            deleted: fold.deleted,
            reactions: fold.reactions,
        })
    }

    /// `user`'s conversations with their heads, read positions, unread
    /// counts and (optionally) last messages, ordered by conversation id. The
    /// cost depends on the page size, not on the length of any history.
    pub async fn list(&self, user: &UserId, query: ListQuery) -> Result<Vec<Summary>> {
        let prefix = membership_prefix(user);
        let scan = match &query.after {
            Some(after) => {
                let mut from = membership_key(user, &after.key());
                from.push(0);
                let mut end = prefix.clone();
                end.push(0xff);
                Scan::range(from..end)
            }
            None => Scan::prefix(&prefix),
        };
        let rows = self.inner.members.scan(scan.limit(query.limit)).await?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, v) in rows {
            let Some(c) = std::str::from_utf8(&k[prefix.len()..])
                .ok()
                .and_then(|t| t.parse::<ConversationId>().ok())
            else {
                continue;
            };
            let (read, read_ordinal) = unpair(&v).unwrap_or((0, 0));
            let head = match self.head(&c).await? {
                Some((head, _)) => head,
                None => Head::new(Retention::All, 0),
            };
            let last =
                if query.with_last && head.last_message >= head.first && head.last_message > 0 {
                    match self.target_message(&c, &head, head.last_message).await {
                        Ok((envelope, _, _, fold)) => Some(Message {
                            seq: head.last_message,
                            envelope,
                            edited: fold.edited,
                            deleted: fold.deleted,
                            reactions: fold.reactions,
                        }),
                        Err(Error::NoSuchMessage { .. }) => None,
                        Err(e) => return Err(e),
                    }
                } else {
                    None
                };
            out.push(Summary {
                conversation: c,
                head: head.seq,
                read,
                unread: head.messages.saturating_sub(read_ordinal),
                last,
            });
        }
        Ok(out)
    }

    /// Apply `c`'s retention now: remove entries (and their folds and
    /// reactions) older than it keeps, at most 512 per call. Appends call it
    /// every 64 entries. Returns how many entries were removed.
    pub async fn trim(&self, c: &ConversationId) -> Result<u64> {
        let _one = self.lock(c).lock().await;
        let Some((head, old)) = self.head(c).await? else {
            return Ok(0);
        };
        let key = c.key();
        let upto = match head.retention {
            Retention::All => return Ok(0),
            Retention::Last(n) => head.seq.saturating_sub(n),
            Retention::Days(days) => {
                let cutoff = now_ms().saturating_sub(u64::from(days) * 86_400_000);
                let scan = Scan::range(
                    entry_key(&key, head.first)..entry_key(&key, head.seq.saturating_add(1)),
                )
                .limit(usize::try_from(TRIM_BATCH).unwrap_or(512));
                let prefix_len = entry_prefix(&key).len();
                let mut upto = 0;
                for (k, v) in self.inner.log.scan(scan).await? {
                    let ts = entry::entry_ts(&v).unwrap_or(0);
                    if ts >= cutoff {
                        break;
                    }
                    upto = seq_of_entry_key(prefix_len, &k).unwrap_or(0);
                }
                upto
            }
        };
        let upto = upto.min(head.first.saturating_add(TRIM_BATCH - 1));
        if upto < head.first {
            return Ok(0);
        }
        let last_removed = self.inner.log.get(entry_key(&key, upto)).await?;
        let trimmed_messages = last_removed
            .as_deref()
            .and_then(entry::entry_ordinal)
            .unwrap_or(head.trimmed_messages);
        let mut batch = Batch::new().expect(head_key(&key), Some(&old));
        for seq in head.first..=upto {
            batch = batch
                .remove(entry_key(&key, seq))
                .remove(fold_key(&key, seq));
        }
        let mut next = head;
        next.first = upto + 1;
        next.trimmed_messages = trimmed_messages;
        batch = batch.put(head_key(&key), next.encode());
        match self.inner.log.apply(batch).await {
            Ok(()) => {}
            Err(nopi::Error::Conflict { .. }) => return Ok(0), // another node trimmed or appended; next time
            Err(e) => return Err(e.into()),
        }
        self.sweep_reactions(&key, next.first).await?;
        self.durable().await?;
        Ok(upto + 1 - head.first)
    }

    /// Remove the reaction keys of messages below `first`, in batches, until
    /// none is left (so a crash between a trim and its sweep leaves nothing
    /// for long: the next trim sweeps again).
    async fn sweep_reactions(&self, key: &str, first: u64) -> Result<()> {
        const SWEEP: usize = 4096;
        loop {
            let scan = Scan::range(reaction_key_floor(key, 0)..reaction_key_floor(key, first));
            let rows = self.inner.log.scan(scan.limit(SWEEP)).await?;
            let done = rows.len() < SWEEP;
            if !rows.is_empty() {
                let batch = rows.into_iter().fold(Batch::new(), |b, (k, _)| b.remove(k));
                self.inner.log.apply(batch).await?;
            }
            if done {
                return Ok(());
            }
        }
    }

    /// A new reader's feed: [`watch`](Feed::watch) conversations, then
    /// [`next`](Feed::next) yields their entries in seq order per
    /// conversation, each once.
    pub fn feed(&self, reader: &UserId) -> Feed {
        Feed::new(self.clone(), reader.clone(), self.inner.cfg.feed_buffer)
    }

    /// A reader's [`PushFeed`]: like [`feed`](Self::feed), but entries are
    /// handed to `sink` as they come, with no task per reader on the live
    /// path (what a server with many connections per node wants). Call it
    /// inside a tokio runtime.
    pub fn push_feed(&self, reader: &UserId, sink: Arc<dyn FeedSink>) -> PushFeed {
        PushFeed::new(self.clone(), reader.clone(), sink)
    }

    /// Refuse one more watch for a feed of `reader` that watches `watched`.
    pub(crate) fn check_watch_count(&self, reader: &UserId, watched: usize) -> Result<()> {
        let limit = self.inner.cfg.max_watched;
        if watched >= limit {
            return Err(Error::TooManyWatched {
                reader: reader.clone(),
                limit,
            });
        }
        Ok(())
    }

    pub(crate) fn dispatch(&self) -> &Arc<live::Dispatch> {
        &self.inner.live
    }
}

fn reaction_key_floor(c: &str, seq: u64) -> Vec<u8> {
    key(&[b"x/", c.as_bytes(), b"/", &seq.to_be_bytes()])
}

fn query_is_reverse(query: &LogQuery) -> bool {
    matches!(query, LogQuery::Last { .. } | LogQuery::Before { .. })
}

#[cfg(test)]
mod builder_tests {
    use super::*;

    /// What a user sees when `builder` builds.
    async fn refused(builder: ConversationsBuilder) -> String {
        builder.build().await.map(drop).unwrap_err().to_string()
    }

    #[tokio::test]
    async fn zero_settings_are_refused() {
        let store = Store::memory();
        let b = || Conversations::builder(&store);
        for (builder, setting) in [
            (b().max_body_size(0), "max_body_size"),
            (b().max_read(0), "max_read"),
            (b().reaction_limits(0, 64), "reaction_limits max_len"),
            (b().reaction_limits(64, 0), "reaction_limits max_distinct"),
            (b().max_edits(0), "max_edits"),
            (b().max_watched(0), "max_watched"),
        ] {
            assert_eq!(
                refused(builder).await,
                format!("invalid {setting}: expected at least 1, got 0")
            );
        }
        for buffer in [0, usize::MAX] {
            assert_eq!(
                refused(b().feed_buffer(buffer)).await,
                format!("invalid feed_buffer: expected 1 to 2305843009213693951, got {buffer}")
            );
        }
        b().feed_buffer(1).build().await.unwrap();
    }
}
