//! Logged-in connections: the logins of each user's devices, the pump that
//! turns what the user's conversations and events bring into pushes, and
//! the cleanup when a connection ends.
//!
//! A login is one device of its user; a user may be logged in on several
//! devices at once, on any nodes, each live. Its pump follows a [`Feed`] of
//! every conversation of the user, each from the device's delivered cursor,
//! and the user's [events](crate::events), which carry what belongs to no
//! conversation (group events, "follow this conversation", read events,
//! receipts, typing, sign-outs). A message counts as delivered to the
//! device when the client acks it (`chat.ack`) or, for clients that cannot
//! ack, once it is written ([`Acks::OnWrite`]).
//!
//! The online tree holds one entry per live device, `user \0 device ->
//! {node, since}`: a user is online while any entry of a live node is
//! there, and offline presence is announced when the last goes.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homer::{Connection, Context, Push};
use rmq_core::conversation::{
    ConversationId, Conversations, Event, Feed, FeedItem, ListQuery, LogEntry,
};
use rmq_core::{DeviceId, Envelope, Presence, UserId};
use uuid::Uuid;

use crate::app::Chat;
use crate::cluster::OnlineEntry;
use crate::error::{ChatError, Result};
use crate::events::{Listener, Received, UserEvent};
use crate::sync::lock;
use crate::wire::{Message, MessageDeleted, MessageEdited, Reaction, SessionEvent, push};

/// The device of logins that name none.
pub(crate) const DEFAULT_DEVICE: &str = "default";
/// The device a login names (`device` of `user.login`), or the default one.
pub(crate) fn device_id(name: Option<&str>) -> Result<DeviceId> {
    DeviceId::new(name.unwrap_or(DEFAULT_DEVICE)).map_err(|e| {
        ChatError::invalid(
            "bad_device",
            format!("a device id is 1 to 64 bytes without `/`, spaces or control characters: {e}"),
        )
    })
}

/// Most messages a client that acks holds pushed but unacked: past it the
/// pump waits for `chat.ack` (a client that never acks gets no more than
/// this, and a Thrift connection's queue never fills).
const PREFETCH: usize = 64;
/// Most sends a login remembers not to push back to it.
const MAX_SENT: usize = 256;
/// The pump reads no more of the logs while this many pushes wait in the
/// connection's queue (homer's queue holds 256 by default): a long
/// catch-up goes at the client's pace instead of overflowing it.
const HIGH_WATER: usize = 128;

/// The logged-in user of a connection, kept in its homer session.
#[derive(Clone)]
pub(crate) struct Login(pub(crate) Arc<LoginState>);

pub(crate) struct LoginState {
    pub(crate) user: UserId,
    pub(crate) number: u64,
    pub(crate) token: String,
    /// The device this login is: its cursors are the device's.
    pub(crate) device: DeviceId,
    /// When this login was announced (presence timestamp, ms).
    pub(crate) since: u64,
    /// Messages pushed but not yet acked by the client: id → (conversation,
    /// seq); at most [`PREFETCH`].
    pending: Mutex<BTreeMap<Uuid, (ConversationId, u64)>>,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Messages this login sent lately (newest last): the pump does not
    /// push them back to it (the reply of `chat.send` is its copy), only to
    /// the user's other logins.
    sent: Mutex<std::collections::VecDeque<Uuid>>,
    /// Set once the pump has pushed everything the user's conversations
    /// held when the login started (the legacy logins wait for it).
    caught_up: tokio::sync::watch::Sender<bool>,
}

impl Login {
    pub(crate) fn name(&self) -> &str {
        self.0.user.as_str()
    }

    /// The client has the messages `ids`: each conversation counts as
    /// delivered to this device up to the newest of them. Ids it was not
    /// given (or already acked) are ignored.
    pub(crate) async fn ack(
        &self,
        log: &Conversations,
        ids: &[Uuid],
    ) -> Result<(), rmq_core::Error> {
        let upto = {
            let mut pending = lock(&self.0.pending);
            let mut upto: HashMap<ConversationId, u64> = HashMap::new();
            for id in ids {
                if let Some((c, seq)) = pending.remove(id) {
                    let at = upto.entry(c).or_insert(0);
                    *at = (*at).max(seq);
                }
            }
            // What came before an acked message is delivered too.
            pending.retain(|_, (c, seq)| upto.get(c).is_none_or(|at| *seq > *at));
            upto
        };
        self.delivered(log, upto).await
    }

    /// Move this device's cursors to `upto`.
    async fn delivered(
        &self,
        log: &Conversations,
        upto: impl IntoIterator<Item = (ConversationId, u64)>,
    ) -> Result<(), rmq_core::Error> {
        let mut failed = None;
        for (c, seq) in upto {
            match log
                .mark_delivered(&self.0.user, &self.0.device, &c, seq)
                .await
            {
                Ok(_) => {}
                // Left meanwhile: the cursor went with the membership.
                Err(rmq_core::Error::NotMember { .. }) => {}
                Err(e) => failed = Some(e),
            }
        }
        failed.map_or(Ok(()), Err)
    }

    /// This login is sending message `id`: it is not pushed back to it.
    pub(crate) fn sending(&self, id: Uuid) {
        let mut sent = lock(&self.0.sent);
        sent.push_back(id);
        if sent.len() > MAX_SENT {
            sent.pop_front();
        }
    }

    /// Whether this login sent `id` (and forget it).
    fn sent_here(&self, id: Uuid) -> bool {
        let mut sent = lock(&self.0.sent);
        match sent.iter().position(|s| *s == id) {
            Some(at) => {
                sent.remove(at);
                true
            }
            None => false,
        }
    }

    /// Wait until the pump pushed what the user's conversations held when
    /// this login started, at most `limit`; `false` if it did not.
    pub(crate) async fn caught_up(&self, limit: Duration) -> bool {
        let mut seen = self.0.caught_up.subscribe();
        tokio::time::timeout(limit, seen.wait_for(|done| *done))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

impl Drop for LoginState {
    fn drop(&mut self) {
        // Stopping the pump drops the feed and the events listener: what
        // was not acked stays after the device's cursor for its next login.
        if let Some(pump) = lock(&self.pump).take() {
            pump.abort();
        }
    }
}

/// Where a user's live pushes go on this node.
pub(crate) fn user_topic(name: &str) -> String {
    format!("user:{name}")
}

/// Turns a message of a conversation's log into the push a connection gets,
/// for connections that speak another shape than the native pushes (the
/// legacy protocols put one in the connection's session before logging in).
/// `None` pushes nothing, and the message counts as handled.
#[derive(Clone)]
pub(crate) struct Translate(pub(crate) Arc<TranslateFn>);

/// What a [`Translate`] makes of one message: a push, nothing to push
/// (`Ok(None)`: the message counts as delivered), or [`Later`].
pub(crate) type Translated = Result<Option<Push>, Later>;
/// The push for one message, computed asynchronously.
pub(crate) type PushFuture = std::pin::Pin<Box<dyn Future<Output = Translated> + Send>>;

/// A message that cannot be translated now (the store is away): the pump
/// tries it again shortly.
#[derive(Debug)]
pub(crate) struct Later;

/// How long the pump pauses before trying a message again.
const RETRY_LATER: Duration = Duration::from_secs(1);
/// What a [`Translate`] calls.
pub(crate) type TranslateFn = dyn Fn(&Envelope, &Login) -> PushFuture + Send + Sync;

/// How deliveries are settled for a connection.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Acks {
    /// The client acks with `chat.ack`; unacked messages come back.
    Client,
    /// Writing a message to the connection counts as delivery (legacy clients).
    OnWrite,
}

impl Chat {
    /// Make `ctx`'s connection a login of `user` on `device`: sign out the
    /// device's older logins (every older login with `--single-session`),
    /// follow the user's conversations from the device's cursors, announce
    /// presence.
    pub(crate) async fn establish(
        &self,
        ctx: &Context,
        user: UserId,
        number: u64,
        token: String,
        device: DeviceId,
        acks: Acks,
    ) -> Result<Login> {
        let name = user.as_str().to_owned();
        // This connection may already be logged in (as anyone): end that first.
        if let Some(old) = ctx.session().remove::<Login>() {
            self.logged_out(ctx.connection(), &old).await;
        }
        let presence = Presence::new(user.clone(), true);
        let events = self.inner.events.listen(&user).await?;
        let (feed, behind) = follow_all(&self.inner.log, &user, &device).await?;
        // Written before the login is installed: if the store is away the
        // call fails with nothing half done.
        let entry = OnlineEntry {
            node: self.inner.node.clone(),
            since: presence.ts,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| ChatError::failed("online entry", e))?;
        self.inner
            .online
            .insert(online_key(&name, &device), bytes)
            .await?;
        let login = Login(Arc::new(LoginState {
            user,
            number,
            token,
            device,
            since: presence.ts,
            pending: Mutex::new(BTreeMap::new()),
            sent: Mutex::new(std::collections::VecDeque::new()),
            pump: Mutex::new(None),
            caught_up: tokio::sync::watch::Sender::new(false),
        }));
        let pump = self.inner.pumps.spawn(
            Pump {
                conn: ctx.connection().clone(),
                login: Arc::downgrade(&login.0),
                events,
                feed,
                behind,
                acks,
                log: self.inner.log.clone(),
                metrics: self.inner.metrics.clone(),
            }
            .run(),
        );
        *lock(&login.0.pump) = Some(pump);
        ctx.session().insert(login.clone());
        ctx.subscribe(&user_topic(&name));
        lock(&self.inner.local)
            .entry(name.clone())
            .or_default()
            .push(ctx.conn_id());

        // The device's older logins end, on every node (with
        // `--single-session`, every older login of the user).
        let device = (!self.inner.config.single_session).then(|| login.0.device.to_string());
        self.sign_out(&login.0.user, device, presence.ts, SessionEvent::REPLACED)
            .await;
        if let Err(e) = self.inner.broker.publish_presence(&presence).await {
            tracing::warn!(user = %name, error = %e, "announcing presence");
        }
        Ok(login)
    }

    /// End the logins of `user` on `device` (every device when `None`) that
    /// started before `before` (ms), on every node, telling each `reason`.
    pub(crate) async fn sign_out(
        &self,
        user: &UserId,
        device: Option<String>,
        before: u64,
        reason: &str,
    ) {
        let event = UserEvent::SignOut {
            device,
            before,
            reason: reason.to_owned(),
        };
        if let Err(e) = self.inner.events.publish(user, event).await {
            tracing::warn!(%user, error = %e, "signing out older logins");
        }
    }

    /// The user of `conn` logged out or went away: forget the connection and,
    /// unless another login of the user is live, announce them offline.
    pub(crate) async fn logged_out(&self, conn: &Connection, login: &Login) {
        let name = login.name().to_owned();
        {
            let mut local = lock(&self.inner.local);
            if let Some(conns) = local.get_mut(&name) {
                conns.retain(|c| *c != conn.id());
                if conns.is_empty() {
                    local.remove(&name);
                }
            }
        }
        conn.unsubscribe(&user_topic(&name));
        // Remove the online entry only if it is still this login's.
        let mine = OnlineEntry {
            node: self.inner.node.clone(),
            since: login.0.since,
        }
        .bytes();
        let key = online_key(&name, &login.0.device);
        match self
            .inner
            .online
            .compare_and_swap(&key, Some(&mine), None)
            .await
        {
            Ok(Ok(())) => self.announce_offline(&login.0.user).await,
            Ok(Err(_)) => {} // a newer login of the device owns the entry
            Err(e) => tracing::warn!(user = %name, error = %e, "clearing online state"),
        }
    }

    /// Announce `user` offline unless another of their logins is live.
    pub(crate) async fn announce_offline(&self, user: &UserId) {
        if self.online_state(user).await != Some(false) {
            return;
        }
        let offline = Presence::new(user.clone(), false);
        if let Err(e) = self.inner.broker.publish_presence(&offline).await {
            tracing::warn!(%user, error = %e, "announcing presence");
        }
    }

    /// Whether `user` is online, `None` (logged) when the store cannot say.
    pub(crate) async fn online_state(&self, user: &UserId) -> Option<bool> {
        self.is_online(user.as_str())
            .await
            .inspect_err(|e| tracing::warn!(%user, error = %e, "reading online state"))
            .ok()
    }

    /// Whether `name` is online anywhere (on a node that is alive: see
    /// `cluster`), on any device.
    pub(crate) async fn is_online(&self, name: &str) -> nopi::Result<bool> {
        let scan = nopi::Scan::prefix(online_prefix(name)).limit(MAX_ONLINE_SCAN);
        for (_, bytes) in self.inner.online.scan(scan).await? {
            match serde_json::from_slice::<OnlineEntry>(&bytes) {
                Ok(entry) => {
                    if crate::cluster::node_alive(self, &entry.node).await? {
                        return Ok(true);
                    }
                }
                Err(_) => return Ok(true),
            }
        }
        Ok(false)
    }

    /// Everyone online on a live node, sorted (at most `limit`).
    pub(crate) async fn online_users(&self, limit: usize) -> nopi::Result<Vec<String>> {
        let beats = crate::cluster::beats(self).await?;
        let now = crate::cluster::now_ms();
        let mut out: Vec<String> = Vec::new();
        let mut from: Option<Vec<u8>> = None;
        // Page through the tree, skipping the entries of dead nodes and the
        // second device of a user.
        while out.len() < limit {
            let scan = match from.take() {
                Some(k) => {
                    nopi::Scan::range((std::ops::Bound::Excluded(k), std::ops::Bound::Unbounded))
                }
                None => nopi::Scan::all(),
            };
            let page = self.inner.online.scan(scan.limit(limit)).await?;
            let last = page.len() < limit;
            for (k, v) in page {
                let live = serde_json::from_slice::<OnlineEntry>(&v)
                    .map_or(true, |e| crate::cluster::alive(self, &e.node, &beats, now));
                let name = user_of_key(&k).map(str::to_owned);
                from = Some(k);
                if let Some(name) = name
                    && live
                    && out.len() < limit
                    && out.last() != Some(&name)
                {
                    out.push(name);
                }
            }
            if last {
                break;
            }
        }
        Ok(out)
    }

    /// The login of the calling connection, or 401.
    pub(crate) fn login(ctx: &Context) -> Result<Login> {
        ctx.session()
            .get::<Login>()
            .ok_or_else(ChatError::not_logged_in)
    }

    /// The connections of `user`'s logins on this node.
    pub(crate) fn local_connections(&self, user: &str) -> Vec<Connection> {
        let ids = lock(&self.inner.local)
            .get(user)
            .cloned()
            .unwrap_or_default();
        ids.into_iter()
            .filter_map(|id| self.inner.hub.connection(id))
            .collect()
    }
}

/// Most online entries of one user read to tell whether they are online
/// (one per device, and a device's entry on a dead node until it is swept).
const MAX_ONLINE_SCAN: usize = 256;

/// The online tree's key of `user`'s login on `device`: `user \0 device`,
/// so a prefix scan finds every device of a user and nobody else's.
pub(crate) fn online_key(user: &str, device: &DeviceId) -> Vec<u8> {
    let mut key = online_prefix(user);
    key.extend_from_slice(device.as_str().as_bytes());
    key
}

fn online_prefix(user: &str) -> Vec<u8> {
    let mut key = user.as_bytes().to_vec();
    key.push(0);
    key
}

/// The user of an online tree key.
pub(crate) fn user_of_key(key: &[u8]) -> Option<&str> {
    let user = key.split(|b| *b == 0).next()?;
    std::str::from_utf8(user).ok()
}

/// End `conn`'s login: tell the client why and close (the close hook then
/// clears the login's state).
fn sign_out_connection(conn: &Connection, reason: &str) {
    if let Ok(push) = Push::json(push::SESSION, &SessionEvent::new(reason)) {
        let _ = conn.push(push);
    }
    conn.close("signed out");
}

/// Users logged in on this node, and the deliveries their clients hold
/// unacked: read for `/metrics`, one lock per local login.
pub(crate) fn local_counts(chat: &Chat) -> (usize, usize) {
    let (users, ids): (usize, Vec<homer::ConnId>) = {
        let local = lock(&chat.inner.local);
        (local.len(), local.values().flatten().copied().collect())
    };
    let hub = &chat.inner.hub;
    let unacked = ids
        .iter()
        .filter_map(|id| hub.connection(*id))
        .filter_map(|c| c.session().get::<Login>())
        .map(|l| lock(&l.0.pending).len())
        .sum();
    (users, unacked)
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A feed of every conversation of `user`, each from where `device` left
/// it, and the heads of those it has to catch up on.
async fn follow_all(
    log: &Conversations,
    user: &UserId,
    device: &DeviceId,
) -> Result<(Feed, HashMap<ConversationId, u64>)> {
    const PAGE: usize = 500;
    let mut feed = log.feed(user);
    let mut behind = HashMap::new();
    let mut query = ListQuery::first(PAGE).without_last();
    loop {
        let page = log.list(user, query).await?;
        for s in &page {
            let from = log
                .resume_point(user, device, &s.conversation)
                .await?
                .min(s.head);
            match feed.watch(&s.conversation, from).await {
                Ok(()) => {}
                Err(rmq_core::Error::TooManyWatched { .. }) => {
                    tracing::warn!(%user, "too many conversations to follow; the rest are not live");
                    return Ok((feed, behind));
                }
                Err(e) => return Err(e.into()),
            }
            if from < s.head {
                behind.insert(s.conversation.clone(), s.head);
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => {
                query = ListQuery::after(last.conversation.clone(), PAGE).without_last();
            }
            _ => return Ok((feed, behind)),
        }
    }
}

/// Turns what a login's conversations and the user's events bring into
/// pushes, until the connection or the login ends.
struct Pump {
    conn: Connection,
    login: std::sync::Weak<LoginState>,
    events: Listener,
    feed: Feed,
    /// Conversations still to catch up on, with the head to reach.
    behind: HashMap<ConversationId, u64>,
    acks: Acks,
    log: Conversations,
    metrics: Arc<crate::metrics::Metrics>,
}

/// Whether the pump goes on.
enum Flow {
    Go,
    Stop,
}

impl Pump {
    async fn run(mut self) {
        loop {
            self.check_caught_up();
            let room = self.conn.queued() < HIGH_WATER && self.may_push();
            let flow = tokio::select! {
                next = self.events.recv() => match next {
                    None => Flow::Stop,
                    Some(Received::Event(event)) => self.user_event(&event).await,
                    Some(Received::Resync) => {
                        self.resync().await;
                        Flow::Go
                    }
                },
                item = self.feed.next(), if room => match item {
                    Ok(FeedItem::Entry(entry)) => self.entry(&entry).await,
                    Ok(_) => Flow::Go, // trimmed by retention: nothing to push
                    Err(rmq_core::Error::Closed) => Flow::Stop,
                    Err(e) => {
                        tracing::warn!(user = %self.feed.reader(), error = %e, "reading the conversation logs; retrying");
                        tokio::time::sleep(RETRY_LATER).await;
                        Flow::Go
                    }
                },
                () = tokio::time::sleep(Duration::from_millis(20)), if !room => {
                    if self.conn.is_closed() { Flow::Stop } else { Flow::Go }
                }
            };
            if matches!(flow, Flow::Stop) {
                break;
            }
        }
    }

    /// Whether the client may be given another message now.
    fn may_push(&self) -> bool {
        self.acks == Acks::OnWrite
            || self
                .login
                .upgrade()
                .is_some_and(|state| lock(&state.pending).len() < PREFETCH)
    }

    /// Tell the login once everything it had to catch up on was pushed.
    fn check_caught_up(&mut self) {
        if !self.behind.is_empty() {
            let at: HashMap<&ConversationId, u64> = self.feed.positions().collect();
            self.behind
                .retain(|c, head| at.get(c).is_some_and(|seq| seq < head));
        }
        // Checked right after the last entry was pushed: the feed may have
        // nothing more to give for a long time.
        if self.behind.is_empty()
            && let Some(state) = self.login.upgrade()
        {
            state
                .caught_up
                .send_if_modified(|done| !std::mem::replace(done, true));
        }
    }

    /// One event of the user: follow a conversation, a native push, or a
    /// sign-out.
    async fn user_event(&mut self, event: &UserEvent) -> Flow {
        match event {
            UserEvent::Follow { conversation, on } => {
                self.follow(conversation, *on).await;
                Flow::Go
            }
            // Legacy protocols have no shape for these.
            UserEvent::Push { .. } if self.conn.session().get::<Translate>().is_some() => Flow::Go,
            UserEvent::Push { push, body } => {
                let sent = Push::json(push.as_str(), body).map(|p| self.conn.push(p));
                match sent {
                    Ok(Err(_)) => Flow::Stop,
                    _ => Flow::Go,
                }
            }
            UserEvent::SignOut {
                device,
                before,
                reason,
            } => {
                let Some(state) = self.login.upgrade() else {
                    return Flow::Stop;
                };
                let mine = device.as_deref().is_none_or(|d| d == state.device.as_str());
                if mine && state.since < *before {
                    sign_out_connection(&self.conn, reason);
                    return Flow::Stop;
                }
                Flow::Go
            }
        }
    }

    /// Events may have been lost: follow every conversation of the user
    /// again (those followed meanwhile are added; the others are already
    /// followed and read from the log whenever they fall behind).
    async fn resync(&mut self) {
        let Some(state) = self.login.upgrade() else {
            return;
        };
        if let Err(e) = self.feed.watch_all(&state.device).await {
            tracing::warn!(user = %state.user, error = %e, "following the conversations again");
        }
    }

    /// Follow conversation `key`, or stop following it.
    async fn follow(&mut self, key: &str, on: bool) {
        let Ok(c) = key.parse::<ConversationId>() else {
            return;
        };
        if !on {
            self.feed.unwatch(&c);
            return;
        }
        let Some(state) = self.login.upgrade() else {
            return;
        };
        let from = match self.log.resume_point(&state.user, &state.device, &c).await {
            Ok(from) => from,
            Err(e) => {
                tracing::warn!(conversation = %c, error = %e, "reading where to follow a conversation from");
                return;
            }
        };
        match self.feed.watch(&c, from).await {
            Ok(()) | Err(rmq_core::Error::NotMember { .. }) => {}
            Err(e) => tracing::warn!(conversation = %c, error = %e, "following a conversation"),
        }
    }

    /// One entry of a conversation: a message, or for native clients an
    /// edit, a deletion or a reaction (legacy protocols have no shape for
    /// those; their history shows the result).
    async fn entry(&mut self, entry: &LogEntry) -> Flow {
        let Some(state) = self.login.upgrade() else {
            return Flow::Stop;
        };
        let Event::Message(envelope) = &entry.event else {
            if self.conn.session().get::<Translate>().is_some() {
                return Flow::Go;
            }
            return match event_push(&state.user, entry).map(|p| self.conn.push(p)) {
                Some(Err(_)) => Flow::Stop,
                _ => Flow::Go,
            };
        };
        let login = Login(state);
        let translate = self.conn.session().get::<Translate>();
        let push = match translate {
            // Legacy clients never got their own direct messages back.
            Some(_) if entry.conversation.is_direct() && envelope.from == login.0.user => None,
            Some(Translate(translate)) => loop {
                match translate(envelope, &login).await {
                    Ok(push) => break push,
                    Err(Later) if self.conn.is_closed() => return Flow::Stop,
                    Err(Later) => tokio::time::sleep(RETRY_LATER).await,
                }
            },
            // The sending login has its copy (the reply of `chat.send`).
            None if envelope.from == login.0.user && login.sent_here(envelope.id) => None,
            None => Message::from_envelope(envelope).and_then(|mut m| {
                m.seq = entry.seq;
                Push::json(push::MESSAGE, &m).ok()
            }),
        };
        let delivered = (entry.conversation.clone(), entry.seq);
        let Some(push) = push else {
            if self.acks == Acks::OnWrite
                && let Err(e) = login.delivered(&self.log, [delivered]).await
            {
                tracing::warn!(error = %e, "moving a device's cursor");
            }
            return Flow::Go;
        };
        if self.conn.push(push).is_err() {
            return Flow::Stop; // the connection is gone: the cursor stays
        }
        // Latency only for messages sent while this login was live: a
        // backlog delivered at login says how long the user was away.
        let latency = (envelope.ts >= login.0.since)
            .then(|| Duration::from_millis(now_ms().saturating_sub(envelope.ts)));
        self.metrics.delivered(latency);
        match self.acks {
            Acks::Client => {
                lock(&login.0.pending).insert(envelope.id, delivered);
            }
            Acks::OnWrite => {
                if let Err(e) = login.delivered(&self.log, [delivered]).await {
                    tracing::warn!(error = %e, "moving a device's cursor");
                }
            }
        }
        Flow::Go
    }
}

/// The push of an edit, a deletion or a reaction, as `me` sees it.
fn event_push(me: &UserId, entry: &LogEntry) -> Option<Push> {
    let to = crate::conversations::target_of(me, &entry.conversation);
    let pushed = match &entry.event {
        Event::Edit { target, body, .. } => Push::json(
            push::EDIT,
            &MessageEdited {
                to,
                seq: *target,
                text: String::from_utf8_lossy(body).into_owned(),
                ts: entry.ts,
            },
        ),
        Event::Delete { target, by } => Push::json(
            push::DELETE,
            &MessageDeleted {
                to,
                seq: *target,
                by: by.as_str().to_owned(),
            },
        ),
        Event::React {
            target,
            by,
            reaction,
        } => Push::json(
            push::REACT,
            &Reaction {
                to,
                seq: *target,
                user: by.as_str().to_owned(),
                reaction: reaction.clone(),
            },
        ),
        _ => return None,
    };
    pushed.ok()
}

/// Background chores: expired sessions and old idempotency records.
pub(crate) async fn housekeeping(chat: Chat) {
    const EVERY: Duration = Duration::from_secs(3600);
    let mut tick = tokio::time::interval(EVERY);
    loop {
        tick.tick().await;
        if let Err(e) = chat.inner.sessions.purge_expired().await {
            tracing::warn!(error = %e, "purging expired sessions");
        }
        if let Err(e) = crate::messages::purge_sent(&chat).await {
            tracing::warn!(error = %e, "purging old client_id records");
        }
    }
}
