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
use std::time::Duration;

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

/// A reader as the dispatcher sees it: a [`Feed`]'s channel, or a
/// [`PushFeed`]'s sink.
trait Route: Send + Sync {
    /// A live entry of a conversation the reader watches. Never blocks.
    fn offer(&self, entry: &Arc<LogEntry>);
    /// Live entries may have been lost: read everything from the log again.
    fn lag(&self);
}

impl Route for FeedShared {
    fn offer(&self, entry: &Arc<LogEntry>) {
        if let Err(mpsc::error::TrySendError::Full(_)) =
            self.tx.try_send(Live::Entry(entry.clone()))
        {
            // The reader is slow: it reads the log instead, never blocking the others.
            self.lagged.store(true, Ordering::Release);
        }
    }

    fn lag(&self) {
        self.lagged.store(true, Ordering::Release);
        let _ = self.tx.try_send(Live::Lagged);
    }
}

/// Readers by feed id.
type Readers = HashMap<u64, Arc<dyn Route>>;

/// A node's routing of live entries to its feeds.
pub(crate) struct Dispatch {
    routes: Mutex<HashMap<ConversationId, Readers>>,
    feeds: Mutex<Readers>,
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

    fn register(&self, route: Arc<dyn Route>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        lock(&self.feeds).insert(id, route);
        id
    }

    fn deregister(self: &Arc<Self>, id: u64, watched: impl IntoIterator<Item = ConversationId>) {
        lock(&self.feeds).remove(&id);
        for c in watched {
            self.unwatch(id, &c);
        }
    }

    /// Route `c` to feed `id`, binding the node's listener first if no feed
    /// of this node watches `c` yet. Cancel safe: the route is added after
    /// the last await, so a cancelled watch leaves at most a binding that
    /// the next watch of `c` reuses.
    async fn watch(&self, id: u64, route: Arc<dyn Route>, c: &ConversationId) -> Result<()> {
        let mut bound = self.bound.lock().await;
        if !bound.contains(c) {
            self.bindings.bind(c).await?;
            bound.insert(c.clone());
        }
        lock(&self.routes)
            .entry(c.clone())
            .or_default()
            .insert(id, route);
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

    /// Hand live entries (in arrival order) to the feeds watching their
    /// conversations: each feed gets all of a conversation's entries in a
    /// row, so a burst wakes its reader once, not once per entry.
    fn route(&self, entries: Vec<LogEntry>) {
        let mut by_conversation: Vec<(ConversationId, Vec<Arc<LogEntry>>)> = Vec::new();
        for entry in entries {
            let entry = Arc::new(entry);
            match by_conversation
                .iter_mut()
                .find(|(c, _)| *c == entry.conversation)
            {
                Some((_, group)) => group.push(entry),
                None => by_conversation.push((entry.conversation.clone(), vec![entry])),
            }
        }
        let routes = lock(&self.routes);
        for (c, group) in &by_conversation {
            let Some(feeds) = routes.get(c) else {
                continue;
            };
            for feed in feeds.values() {
                for entry in group {
                    feed.offer(entry);
                }
            }
        }
    }

    fn lag_all(&self) {
        for feed in lock(&self.feeds).values() {
            feed.lag();
        }
    }
}

/// The most live frames the dispatcher takes in one go.
const ROUTE_BATCH: usize = 256;

async fn run(
    dispatch: Weak<Dispatch>,
    mut events: mpsc::Receiver<FanoutEvent>,
    mut stopped: oneshot::Receiver<()>,
    max_body: usize,
) {
    let mut batch = Vec::with_capacity(ROUTE_BATCH);
    loop {
        let first = tokio::select! {
            _ = &mut stopped => return,
            event = events.recv() => event,
        };
        let Some(dispatch) = dispatch.upgrade() else {
            return;
        };
        // Take what else is waiting too: a burst is routed together.
        let mut next = first;
        loop {
            match next {
                Some(FanoutEvent::Frame(frame)) => match entry::decode_live(&frame, max_body) {
                    Ok(entry) => batch.push(entry),
                    Err(e) => tracing::warn!(error = %e, "malformed live frame dropped"),
                },
                Some(FanoutEvent::Lagged) => {
                    dispatch.route(std::mem::take(&mut batch));
                    dispatch.lag_all();
                }
                None => {
                    // The fan-out is gone: readers catch up from the log once
                    // more, then are told that nothing live comes any longer.
                    dispatch.route(std::mem::take(&mut batch));
                    dispatch.closed.store(true, Ordering::Release);
                    dispatch.lag_all();
                    return;
                }
            }
            if batch.len() >= ROUTE_BATCH {
                break;
            }
            match events.try_recv() {
                Ok(event) => next = Some(event),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => next = None,
            }
        }
        if !batch.is_empty() {
            dispatch.route(std::mem::take(&mut batch));
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
        let (tx, rx) = mpsc::channel(buffer);
        let shared = Arc::new(FeedShared {
            tx,
            lagged: AtomicBool::new(false),
        });
        let id = log.dispatch().register(shared.clone());
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
        self.log.check_watch_count(&self.reader, self.last.len())?;
        self.log.check_member(&self.reader, c).await?;
        self.log.check_position(c, after).await?;
        self.log
            .dispatch()
            .watch(self.id, self.shared.clone(), c)
            .await?;
        self.last.insert(c.clone(), after);
        self.behind.push_back(c.clone());
        Ok(())
    }

    /// Watch every conversation of the reader, each from where `device`
    /// left it ([`Conversations::resume_point`]). Returns how many.
    pub async fn watch_all(&mut self, device: &DeviceId) -> Result<usize> {
        let points = resume_points(&self.log, &self.reader, device).await?;
        for (c, from) in &points {
            self.watch(c, *from).await?;
        }
        Ok(points.len())
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
        match catch_up(&self.log, &c, after).await? {
            CatchUp::Entries { entries, more } => {
                self.behind.pop_front();
                for entry in entries {
                    self.last.insert(c.clone(), entry.seq);
                    self.pending.push_back(FeedItem::Entry(Arc::new(entry)));
                }
                if more {
                    self.behind.push_back(c);
                }
            }
            CatchUp::Trimmed { first } => {
                self.last.insert(c.clone(), first - 1);
                self.pending.push_back(FeedItem::Trimmed {
                    conversation: c,
                    first,
                });
            }
        }
        Ok(())
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        let watched = self.last.drain().map(|(c, _)| c);
        self.log.dispatch().deregister(self.id, watched);
    }
}

/// What one catch-up read of a conversation found.
enum CatchUp {
    /// The next entries after the cursor; `more` if the page was full.
    Entries { entries: Vec<LogEntry>, more: bool },
    /// Retention removed entries after the cursor: go on from `first`.
    Trimmed { first: u64 },
}

async fn catch_up(log: &Conversations, c: &ConversationId, after: u64) -> Result<CatchUp> {
    match log
        .read_unchecked(c, LogQuery::after(after, CATCH_UP_PAGE))
        .await
    {
        Ok(page) => Ok(CatchUp::Entries {
            more: page.entries.len() == CATCH_UP_PAGE,
            entries: page.entries,
        }),
        Err(Error::Trimmed { first, .. }) => Ok(CatchUp::Trimmed { first }),
        Err(e) => Err(e),
    }
}

/// Every conversation of `reader` and where `device` resumes it.
async fn resume_points(
    log: &Conversations,
    reader: &UserId,
    device: &DeviceId,
) -> Result<Vec<(ConversationId, u64)>> {
    let mut query = ListQuery::first(500).without_last();
    let mut points = Vec::new();
    loop {
        let page = log.list(reader, query.clone()).await?;
        let Some(last) = page.last().map(|s| s.conversation.clone()) else {
            return Ok(points);
        };
        for summary in page {
            let from = log
                .resume_point(reader, device, &summary.conversation)
                .await?
                .min(summary.head);
            points.push((summary.conversation, from));
        }
        query = ListQuery::after(last, 500).without_last();
    }
}

/// Where a [`PushFeed`] delivers: typically a connection's outgoing queue.
pub trait FeedSink: Send + Sync + 'static {
    /// The next item of a watched conversation: per conversation in seq
    /// order, each seq once. Called by the node's dispatcher for live
    /// entries, while it holds the feed, so keep it short and never block
    /// (queue the item); and by the feed's task for what it reads from the
    /// log. Return `false` once the receiver is gone: the feed stops.
    fn deliver(&self, item: FeedItem) -> bool;
}

/// A feed that pushes instead of being polled: the dispatcher hands each
/// in-order live entry straight to the [`FeedSink`], with no task between,
/// and the feed's own task only reads the log (catch-up, a gap, a lag).
/// Same promise as [`Feed`]: each seq once, in order, nothing missed.
///
/// Made by [`Conversations::push_feed`] inside a tokio runtime. Dropping it
/// stops its watches and its task. A store error while reading the log is
/// retried by the task, with a growing pause (up to 5 s).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::{Arc, Mutex};
/// use rmq_core::conversation::{Conversations, FeedItem, FeedSink, Retention};
/// use rmq_core::{ConversationId, Envelope, RoomId, To, UserId};
///
/// #[derive(Default)]
/// struct Inbox(Mutex<Vec<u64>>);
/// impl FeedSink for Inbox {
///     fn deliver(&self, item: FeedItem) -> bool {
///         if let FeedItem::Entry(e) = item {
///             self.0.lock().unwrap().push(e.seq);
///         }
///         true
///     }
/// }
///
/// let log = Conversations::memory().await?;
/// let (room, alice) = (RoomId::new("rust")?, UserId::new("alice")?);
/// log.create_room(&room, Retention::All).await?;
/// log.join(&room, &alice).await?;
/// log.append(&Envelope::new(alice.clone(), To::Room(room.clone()), "before")).await?;
///
/// let inbox = Arc::new(Inbox::default());
/// let feed = log.push_feed(&alice, inbox.clone());
/// feed.watch(&ConversationId::room(room.clone()), 0).await?;
/// log.append(&Envelope::new(alice.clone(), To::Room(room), "after")).await?;
/// while inbox.0.lock().unwrap().len() < 2 {
///     tokio::task::yield_now().await;
/// }
/// assert_eq!(*inbox.0.lock().unwrap(), [1, 2]);
/// # Ok(())
/// # }
/// ```
pub struct PushFeed {
    log: Conversations,
    reader: UserId,
    id: u64,
    shared: Arc<PushShared>,
    task: tokio::task::JoinHandle<()>,
}

struct PushShared {
    sink: Arc<dyn FeedSink>,
    state: Mutex<PushState>,
    wake: tokio::sync::Notify,
}

#[derive(Default)]
struct PushState {
    /// The last seq delivered of each watched conversation.
    last: HashMap<ConversationId, u64>,
    /// Conversations the task must read from the log; live entries of them
    /// are not delivered meanwhile, only remembered in `seen`.
    behind: VecDeque<ConversationId>,
    /// The newest live seq that arrived while a conversation was behind.
    seen: HashMap<ConversationId, u64>,
    /// The sink said its receiver is gone.
    stopped: bool,
}

impl PushState {
    fn fall_behind(&mut self, c: &ConversationId) {
        if !self.behind.contains(c) {
            self.behind.push_back(c.clone());
        }
    }

    fn deliver(&mut self, sink: &dyn FeedSink, item: FeedItem) {
        if !self.stopped && !sink.deliver(item) {
            self.stopped = true;
        }
    }
}

impl Route for PushShared {
    fn offer(&self, entry: &Arc<LogEntry>) {
        let mut st = lock(&self.state);
        let c = &entry.conversation;
        let Some(&last) = st.last.get(c) else {
            return;
        };
        if st.behind.contains(c) {
            let seen = st.seen.entry(c.clone()).or_insert(0);
            *seen = (*seen).max(entry.seq);
        } else if entry.seq == last + 1 {
            st.last.insert(c.clone(), entry.seq);
            st.deliver(&*self.sink, FeedItem::Entry(entry.clone()));
        } else if entry.seq > last + 1 {
            // A gap: what lies between is in the log.
            st.seen.insert(c.clone(), entry.seq);
            st.fall_behind(c);
            self.wake.notify_one();
        }
    }

    fn lag(&self) {
        let mut st = lock(&self.state);
        let watched: Vec<_> = st.last.keys().cloned().collect();
        for c in &watched {
            st.fall_behind(c);
        }
        drop(st);
        self.wake.notify_one();
    }
}

impl fmt::Debug for PushFeed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = lock(&self.shared.state);
        f.debug_struct("PushFeed")
            .field("reader", &self.reader)
            .field("watching", &st.last.len())
            .field("behind", &st.behind.len())
            .finish_non_exhaustive()
    }
}

impl PushFeed {
    pub(super) fn new(log: Conversations, reader: UserId, sink: Arc<dyn FeedSink>) -> PushFeed {
        let shared = Arc::new(PushShared {
            sink,
            state: Mutex::default(),
            wake: tokio::sync::Notify::new(),
        });
        let id = log.dispatch().register(shared.clone());
        let task = tokio::spawn(repair(log.clone(), shared.clone()));
        PushFeed {
            log,
            reader,
            id,
            shared,
            task,
        }
    }

    /// The reader.
    pub fn reader(&self) -> &UserId {
        &self.reader
    }

    /// Follow `c` from after `after`, as [`Feed::watch`]: the entries up to
    /// the head are read from the log by the feed's task, live ones follow.
    pub async fn watch(&self, c: &ConversationId, after: u64) -> Result<()> {
        {
            let st = lock(&self.shared.state);
            if st.last.contains_key(c) {
                return Ok(());
            }
            self.log.check_watch_count(&self.reader, st.last.len())?;
        }
        self.log.check_member(&self.reader, c).await?;
        self.log.check_position(c, after).await?;
        {
            // Behind before routed: no live entry slips past the catch-up.
            let mut st = lock(&self.shared.state);
            st.last.insert(c.clone(), after);
            st.fall_behind(c);
        }
        let routed = self
            .log
            .dispatch()
            .watch(self.id, self.shared.clone(), c)
            .await;
        if let Err(e) = routed {
            let mut st = lock(&self.shared.state);
            st.last.remove(c);
            st.behind.retain(|b| b != c);
            return Err(e);
        }
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Watch every conversation of the reader, each from where `device`
    /// left it, as [`Feed::watch_all`]. Returns how many.
    pub async fn watch_all(&self, device: &DeviceId) -> Result<usize> {
        let points = resume_points(&self.log, &self.reader, device).await?;
        for (c, from) in &points {
            self.watch(c, *from).await?;
        }
        Ok(points.len())
    }

    /// Stop following `c`, at once.
    pub fn unwatch(&self, c: &ConversationId) {
        let mut st = lock(&self.shared.state);
        if st.last.remove(c).is_some() {
            st.behind.retain(|b| b != c);
            st.seen.remove(c);
            drop(st);
            self.log.dispatch().unwatch(self.id, c);
        }
    }

    /// The conversations watched, with the last seq delivered of each.
    pub fn positions(&self) -> Vec<(ConversationId, u64)> {
        let st = lock(&self.shared.state);
        st.last.iter().map(|(c, seq)| (c.clone(), *seq)).collect()
    }
}

impl Drop for PushFeed {
    fn drop(&mut self) {
        self.task.abort();
        let watched: Vec<_> = lock(&self.shared.state)
            .last
            .drain()
            .map(|(c, _)| c)
            .collect();
        self.log.dispatch().deregister(self.id, watched);
    }
}

/// A push feed's task: reads from the log what the dispatcher could not
/// deliver in order, then hands the conversation back to the live path.
async fn repair(log: Conversations, feed: Arc<PushShared>) {
    let mut pause = Duration::from_millis(50);
    loop {
        let next = {
            let st = lock(&feed.state);
            if st.stopped {
                return;
            }
            st.behind
                .front()
                .and_then(|c| st.last.get(c).map(|&last| (c.clone(), last)))
        };
        let Some((c, after)) = next else {
            if log.dispatch().closed.load(Ordering::Acquire) {
                return;
            }
            feed.wake.notified().await;
            continue;
        };
        let found = match catch_up(&log, &c, after).await {
            Ok(found) => {
                pause = Duration::from_millis(50);
                found
            }
            Err(e) => {
                tracing::warn!(conversation = %c, error = %e, "a push feed cannot read the log; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let mut st = lock(&feed.state);
        if st.last.get(&c) != Some(&after) {
            continue; // unwatched, or watched again, meanwhile
        }
        match found {
            CatchUp::Entries { entries, more } => {
                let mut last = after;
                for entry in entries {
                    last = entry.seq;
                    st.deliver(&*feed.sink, FeedItem::Entry(Arc::new(entry)));
                }
                st.last.insert(c.clone(), last);
                let seen = st.seen.get(&c).copied().unwrap_or(0);
                if !more && seen <= last {
                    // Caught up: live entries from here on are in order.
                    st.behind.retain(|b| b != &c);
                    st.seen.remove(&c);
                } else if let Some(front) = st.behind.pop_front() {
                    st.behind.push_back(front); // let the others have a turn
                }
            }
            CatchUp::Trimmed { first } => {
                st.last.insert(c.clone(), first - 1);
                st.deliver(
                    &*feed.sink,
                    FeedItem::Trimmed {
                        conversation: c,
                        first,
                    },
                );
            }
        }
    }
}
