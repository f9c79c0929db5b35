//! Live fan-out: one listener per node, dispatched to that node's feeds.
//!
//! ```text
//!  append ──durable──▶ Fanout::publish(c, frame)
//!                         │  (in process, or the node queues on RabbitMQ
//!                         │   bound to c: each node gets it once)
//!                         ▼
//!                 FanoutListener of a node ──▶ Dispatch ──▶ Feed ──▶ Feed ──▶ …
//!                                                 (the node's readers watching c)
//! ```
//!
//! The log is the truth and the fan-out only a hint: a [`Feed`] that sees a
//! seq jump, falls behind its buffer, or hears [`FanoutEvent::Lagged`] reads
//! the missing entries from the log. Nothing is lost to a dropped live
//! message, and each seq reaches a feed once.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot};

use super::{Conversations, ListQuery, LogEntry, LogQuery, entry};
use crate::sync::lock;
use crate::{ConversationId, DeviceId, Error, Result, UserId};

/// How live entries travel between the nodes that append and the nodes
/// whose readers watch. Implemented by [`InProcessFanout`] and
/// [`AmqpBroker`](crate::AmqpBroker).
#[async_trait]
pub trait Fanout: Send + Sync + fmt::Debug + 'static {
    /// Send a live frame of `conversation` to every listener bound to it.
    async fn publish(&self, conversation: &ConversationId, frame: &[u8]) -> Result<()>;

    /// Open this node's listener. It receives the frames of the
    /// conversations it binds, each once.
    async fn listen(&self) -> Result<FanoutListener>;
}

/// Which conversations a [`FanoutListener`] receives.
#[async_trait]
pub trait FanoutBindings: Send + Sync + 'static {
    /// Receive `conversation`'s frames from now on.
    async fn bind(&self, conversation: &ConversationId) -> Result<()>;
    /// Stop receiving them.
    async fn unbind(&self, conversation: &ConversationId) -> Result<()>;
}

/// What a [`FanoutListener`] receives.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FanoutEvent {
    /// A live frame.
    Frame(Vec<u8>),
    /// Frames may have been lost (a reconnection to the broker): every
    /// reader reads its conversations from the log again.
    Lagged,
}

/// One node's receiving end of a [`Fanout`].
#[non_exhaustive]
pub struct FanoutListener {
    /// Changes what the listener receives.
    pub bindings: Arc<dyn FanoutBindings>,
    /// What it receives.
    pub events: mpsc::Receiver<FanoutEvent>,
}

impl FanoutListener {
    /// A listener made of its two halves (for [`Fanout`] implementations).
    pub fn new(bindings: Arc<dyn FanoutBindings>, events: mpsc::Receiver<FanoutEvent>) -> Self {
        FanoutListener { bindings, events }
    }
}

impl fmt::Debug for FanoutListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FanoutListener").finish_non_exhaustive()
    }
}

/// The fan-out of one process: listeners of this process only.
///
/// Cheap to clone; clones share the listeners. Give one to several
/// [`Conversations`] (in tests, two "nodes") to connect them.
#[derive(Debug, Clone, Default)]
pub struct InProcessFanout {
    listeners: Arc<Mutex<Vec<Arc<LocalListener>>>>,
}

#[derive(Debug)]
struct LocalListener {
    bound: Mutex<HashSet<ConversationId>>,
    tx: mpsc::Sender<FanoutEvent>,
}

impl InProcessFanout {
    /// A fan-out with no listener yet.
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl Fanout for InProcessFanout {
    async fn publish(&self, conversation: &ConversationId, frame: &[u8]) -> Result<()> {
        let targets: Vec<_> = {
            let mut all = lock(&self.listeners);
            all.retain(|l| !l.tx.is_closed());
            all.iter()
                .filter(|l| lock(&l.bound).contains(conversation))
                .cloned()
                .collect()
        };
        for listener in targets {
            // Waits while a node's dispatcher is behind; it never waits on a reader.
            let _ = listener.tx.send(FanoutEvent::Frame(frame.to_vec())).await;
        }
        Ok(())
    }

    async fn listen(&self) -> Result<FanoutListener> {
        let (tx, rx) = mpsc::channel(1024);
        let listener = Arc::new(LocalListener {
            bound: Mutex::default(),
            tx,
        });
        lock(&self.listeners).push(listener.clone());
        Ok(FanoutListener::new(listener, rx))
    }
}

#[async_trait]
impl FanoutBindings for LocalListener {
    async fn bind(&self, conversation: &ConversationId) -> Result<()> {
        lock(&self.bound).insert(conversation.clone());
        Ok(())
    }
    async fn unbind(&self, conversation: &ConversationId) -> Result<()> {
        lock(&self.bound).remove(conversation);
        Ok(())
    }
}

/// What the dispatcher hands a feed.
enum Live {
    Entry(Arc<LogEntry>),
    Lagged,
}

struct FeedShared {
    tx: mpsc::Sender<Live>,
    lagged: AtomicBool,
}

/// A node's routing of live entries to its feeds.
pub(crate) struct Dispatch {
    routes: Mutex<HashMap<ConversationId, HashMap<u64, Arc<FeedShared>>>>,
    feeds: Mutex<HashMap<u64, Arc<FeedShared>>>,
    /// The conversations the listener is bound to. Async: binding talks to
    /// the broker, and binds and unbinds of one conversation must not cross.
    bound: tokio::sync::Mutex<HashSet<ConversationId>>,
    bindings: Arc<dyn FanoutBindings>,
    next_id: AtomicU64,
    /// The fan-out ended: feeds catch up once more, then report `Closed`.
    closed: AtomicBool,
    _stop: oneshot::Sender<()>,
}

impl Dispatch {
    pub(crate) fn start(listener: FanoutListener, max_body: usize) -> Arc<Dispatch> {
        let (stop, stopped) = oneshot::channel();
        let dispatch = Arc::new(Dispatch {
            routes: Mutex::default(),
            feeds: Mutex::default(),
            bound: tokio::sync::Mutex::default(),
            bindings: listener.bindings,
            next_id: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            _stop: stop,
        });
        tokio::spawn(run(
            Arc::downgrade(&dispatch),
            listener.events,
            stopped,
            max_body,
        ));
        dispatch
    }

    fn register(&self, buffer: usize) -> (u64, Arc<FeedShared>, mpsc::Receiver<Live>) {
        let (tx, rx) = mpsc::channel(buffer);
        let shared = Arc::new(FeedShared {
            tx,
            lagged: AtomicBool::new(false),
        });
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.feeds).insert(id, shared.clone());
        (id, shared, rx)
    }

    /// Route `c` to feed `id`, binding the node's listener first if no feed
    /// of this node watches `c` yet. Cancel safe: the route is added after
    /// the last await, so a cancelled watch leaves at most a binding that
    /// the next watch of `c` reuses.
    async fn watch(&self, id: u64, shared: &Arc<FeedShared>, c: &ConversationId) -> Result<()> {
        let mut bound = self.bound.lock().await;
        if !bound.contains(c) {
            self.bindings.bind(c).await?;
            bound.insert(c.clone());
        }
        lock(&self.routes)
            .entry(c.clone())
            .or_default()
            .insert(id, shared.clone());
        Ok(())
    }

    /// Stop routing `c` to feed `id`, at once; when no feed of this node
    /// watches `c` any longer, a task unbinds it (so neither a cancelled
    /// caller nor a drop outside a runtime can skip the bookkeeping; without
    /// a runtime the binding stays, and only costs frames that are dropped).
    fn unwatch(self: &Arc<Self>, id: u64, c: &ConversationId) {
        {
            let mut routes = lock(&self.routes);
            let Some(feeds) = routes.get_mut(c) else {
                return;
            };
            feeds.remove(&id);
            if !feeds.is_empty() {
                return;
            }
            routes.remove(c);
        }
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (dispatch, c) = (Arc::downgrade(self), c.clone());
        rt.spawn(async move {
            let Some(dispatch) = dispatch.upgrade() else {
                return;
            };
            let mut bound = dispatch.bound.lock().await;
            // A watch may have come back meanwhile: it holds `bound` while
            // it adds its route, so this check cannot race it.
            if lock(&dispatch.routes).contains_key(&c) || !bound.remove(&c) {
                return;
            }
            if let Err(e) = dispatch.bindings.unbind(&c).await {
                tracing::debug!(conversation = %c, error = %e, "unbinding a conversation failed");
            }
        });
    }

    fn route(&self, entry: LogEntry) {
        let entry = Arc::new(entry);
        let routes = lock(&self.routes);
        let Some(feeds) = routes.get(&entry.conversation) else {
            return;
        };
        for feed in feeds.values() {
            if let Err(mpsc::error::TrySendError::Full(_)) =
                feed.tx.try_send(Live::Entry(entry.clone()))
            {
                // The reader is slow: it reads the log instead, never blocking the others.
                feed.lagged.store(true, Ordering::Release);
            }
        }
    }

    fn lag_all(&self) {
        for feed in lock(&self.feeds).values() {
            feed.lagged.store(true, Ordering::Release);
            let _ = feed.tx.try_send(Live::Lagged);
        }
    }
}

async fn run(
    dispatch: Weak<Dispatch>,
    mut events: mpsc::Receiver<FanoutEvent>,
    mut stopped: oneshot::Receiver<()>,
    max_body: usize,
) {
    loop {
        let event = tokio::select! {
            _ = &mut stopped => return,
            event = events.recv() => event,
        };
        let Some(dispatch) = dispatch.upgrade() else {
            return;
        };
        match event {
            Some(FanoutEvent::Frame(frame)) => match entry::decode_live(&frame, max_body) {
                Ok(entry) => dispatch.route(entry),
                Err(e) => tracing::warn!(error = %e, "malformed live frame dropped"),
            },
            Some(FanoutEvent::Lagged) => dispatch.lag_all(),
            None => {
                // The fan-out is gone: readers catch up from the log once
                // more, then are told that nothing live comes any longer.
                dispatch.closed.store(true, Ordering::Release);
                dispatch.lag_all();
                return;
            }
        }
    }
}

/// What a [`Feed`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FeedItem {
    /// The next entry of a watched conversation.
    Entry(Arc<LogEntry>),
    /// Retention removed entries this feed had not read: it goes on from
    /// `first`, and what lay between is gone.
    Trimmed {
        /// The conversation.
        conversation: ConversationId,
        /// The oldest entry kept, the next one yielded.
        first: u64,
    },
}

/// One reader's ordered view of the conversations it watches: catch-up from
/// a cursor, then live entries, each seq once and in order per conversation.
///
/// Dropping the feed stops its watches.
pub struct Feed {
    log: Conversations,
    reader: UserId,
    id: u64,
    shared: Arc<FeedShared>,
    rx: mpsc::Receiver<Live>,
    last: HashMap<ConversationId, u64>,
    behind: VecDeque<ConversationId>,
    pending: VecDeque<FeedItem>,
}

impl fmt::Debug for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feed")
            .field("reader", &self.reader)
            .field("watching", &self.last.len())
            .field("behind", &self.behind.len())
            .finish_non_exhaustive()
    }
}

const CATCH_UP_PAGE: usize = 256;

impl Feed {
    pub(super) fn new(log: Conversations, reader: UserId, buffer: usize) -> Feed {
        let (id, shared, rx) = log.dispatch().register(buffer);
        Feed {
            log,
            reader,
            id,
            shared,
            rx,
            last: HashMap::new(),
            behind: VecDeque::new(),
            pending: VecDeque::new(),
        }
    }

    /// The reader.
    pub fn reader(&self) -> &UserId {
        &self.reader
    }

    /// Follow `c` from after `after` (a delivered cursor; 0 for the whole
    /// log): entries up to the head first, then live ones. The reader must
    /// be a member. Watching a conversation already watched changes nothing.
    pub async fn watch(&mut self, c: &ConversationId, after: u64) -> Result<()> {
        if self.last.contains_key(c) {
            return Ok(());
        }
        self.log.check_member(&self.reader, c).await?;
        self.log.check_position(c, after).await?;
        self.log.dispatch().watch(self.id, &self.shared, c).await?;
        self.last.insert(c.clone(), after);
        self.behind.push_back(c.clone());
        Ok(())
    }

    /// Watch every conversation of the reader, each from where `device`
    /// left it ([`Conversations::resume_point`]). Returns how many.
    pub async fn watch_all(&mut self, device: &DeviceId) -> Result<usize> {
        let mut query = ListQuery::first(500).without_last();
        let mut count = 0;
        loop {
            let page = self.log.list(&self.reader, query.clone()).await?;
            let Some(last) = page.last().map(|s| s.conversation.clone()) else {
                return Ok(count);
            };
            for summary in &page {
                let from = self
                    .log
                    .resume_point(&self.reader, device, &summary.conversation)
                    .await?
                    .min(summary.head);
                self.watch(&summary.conversation, from).await?;
                count += 1;
            }
            query = ListQuery::after(last, 500).without_last();
        }
    }

    /// Stop following `c`, at once.
    pub fn unwatch(&mut self, c: &ConversationId) {
        if self.last.remove(c).is_some() {
            self.behind.retain(|b| b != c);
            self.pending.retain(|item| match item {
                FeedItem::Entry(e) => &e.conversation != c,
                FeedItem::Trimmed { conversation, .. } => conversation != c,
            });
            self.log.dispatch().unwatch(self.id, c);
        }
    }

    /// The conversations watched, with the last seq yielded of each.
    pub fn positions(&self) -> impl Iterator<Item = (&ConversationId, u64)> {
        self.last.iter().map(|(c, seq)| (c, *seq))
    }

    /// The next entry of any watched conversation; waits for one. Cancel
    /// safe: dropping the future loses nothing. An error (the store away)
    /// leaves the feed as it was: call again to retry.
    pub async fn next(&mut self) -> Result<FeedItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Ok(item);
            }
            if self.shared.lagged.swap(false, Ordering::AcqRel) {
                self.behind = self.last.keys().cloned().collect();
            }
            if let Some(c) = self.behind.front().cloned() {
                self.catch_up(c).await?;
                continue;
            }
            if self.log.dispatch().closed.load(Ordering::Acquire) && self.rx.is_empty() {
                return Err(Error::Closed);
            }
            match self.rx.recv().await {
                None => return Err(Error::Closed),
                Some(Live::Lagged) => self.behind = self.last.keys().cloned().collect(),
                Some(Live::Entry(entry)) => {
                    let Some(last) = self.last.get_mut(&entry.conversation) else {
                        continue;
                    };
                    if entry.seq <= *last {
                        continue; // already yielded
                    }
                    if entry.seq == *last + 1 {
                        *last = entry.seq;
                        return Ok(FeedItem::Entry(entry));
                    }
                    // A gap: what lies between is in the log.
                    if !self.behind.contains(&entry.conversation) {
                        self.behind.push_back(entry.conversation.clone());
                    }
                }
            }
        }
    }

    async fn catch_up(&mut self, c: ConversationId) -> Result<()> {
        let Some(&after) = self.last.get(&c) else {
            self.behind.pop_front();
            return Ok(());
        };
        match self
            .log
            .read_unchecked(&c, LogQuery::after(after, CATCH_UP_PAGE))
            .await
        {
            Ok(page) => {
                self.behind.pop_front();
                let full = page.entries.len() == CATCH_UP_PAGE;
                for entry in page.entries {
                    self.last.insert(c.clone(), entry.seq);
                    self.pending.push_back(FeedItem::Entry(Arc::new(entry)));
                }
                if full {
                    self.behind.push_back(c);
                }
                Ok(())
            }
            Err(Error::Trimmed { first, .. }) => {
                self.last.insert(c.clone(), first - 1);
                self.pending.push_back(FeedItem::Trimmed {
                    conversation: c,
                    first,
                });
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let dispatch = self.log.dispatch().clone();
        lock(&dispatch.feeds).remove(&self.id);
        for (c, _) in self.last.drain() {
            dispatch.unwatch(self.id, &c);
        }
    }
}
