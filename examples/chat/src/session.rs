//! Logged-in connections: one session per user, the inbox pump that turns
//! deliveries into pushes, and the cleanup when a connection ends.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use homer::{Connection, Context, Push};
use rmq_core::{Acker, Envelope, Presence, Subscription, UserId};
use uuid::Uuid;

use crate::app::Chat;
use crate::cluster::OnlineEntry;
use crate::error::{ChatError, Result};
use crate::sync::lock;
use crate::wire::{GROUP_EVENT, GroupEvent, Message, SessionEvent, push};

/// The logged-in user of a connection, kept in its homer session.
#[derive(Clone)]
pub(crate) struct Login(pub(crate) Arc<LoginState>);

pub(crate) struct LoginState {
    pub(crate) user: UserId,
    pub(crate) number: u64,
    pub(crate) token: String,
    /// When this login was announced (presence timestamp, ms).
    pub(crate) since: u64,
    /// Deliveries pushed but not yet acked by the client, by message id.
    pending: Mutex<HashMap<Uuid, Acker>>,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Login {
    pub(crate) fn name(&self) -> &str {
        self.0.user.as_str()
    }

    /// Ack the deliveries the client names; ids it was not given are ignored,
    /// and so are deliveries whose broker connection was lost meanwhile (the
    /// broker delivers those again; the client drops them by id).
    pub(crate) async fn ack(&self, ids: &[Uuid]) -> Result<(), rmq_core::Error> {
        let ackers: Vec<Acker> = {
            let mut pending = lock(&self.0.pending);
            ids.iter().filter_map(|id| pending.remove(id)).collect()
        };
        let mut failed = None;
        for acker in ackers {
            match acker.ack().await {
                Ok(()) => {}
                Err(rmq_core::Error::DeliveryGone { .. }) => {
                    tracing::debug!(user = %self.0.user, "ack of a delivery from a lost broker connection");
                }
                Err(e) => failed = Some(e),
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

impl Drop for LoginState {
    fn drop(&mut self) {
        // Stopping the pump drops the subscription: what was not acked goes
        // back to the inbox for the next login.
        if let Some(pump) = lock(&self.pump).take() {
            pump.abort();
        }
    }
}

/// Where a user's live pushes go on this node.
pub(crate) fn user_topic(name: &str) -> String {
    format!("user:{name}")
}

/// Turns an inbox delivery into the push a connection gets, for connections
/// that speak another shape than the native pushes (the legacy protocols put
/// one in the connection's session before logging in). `None` pushes nothing,
/// and the delivery counts as handled.
#[derive(Clone)]
pub(crate) struct Translate(pub(crate) Arc<TranslateFn>);

/// What a [`Translate`] makes of one delivery: a push, nothing to push
/// (`Ok(None)`: the delivery is acked), or [`Later`].
pub(crate) type Translated = Result<Option<Push>, Later>;
/// The push for one delivery, computed asynchronously.
pub(crate) type PushFuture = std::pin::Pin<Box<dyn Future<Output = Translated> + Send>>;

/// A delivery that cannot be translated now (the store is away): it is
/// given back to the inbox and comes again shortly.
#[derive(Debug)]
pub(crate) struct Later;

/// How long the pump pauses after giving a delivery back.
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
    /// Make `ctx`'s connection the one session of `user`: replace any other
    /// session of the user, start consuming the inbox, announce presence.
    pub(crate) async fn establish(
        &self,
        ctx: &Context,
        user: UserId,
        number: u64,
        token: String,
        acks: Acks,
    ) -> Result<Login> {
        let name = user.as_str().to_owned();
        // This connection may already be logged in (as anyone): end that first.
        if let Some(old) = ctx.session().remove::<Login>() {
            self.logged_out(ctx.connection(), &old).await;
        }
        self.replace_local(&name, ctx.connection()).await;

        let presence = Presence::new(user.clone(), true);
        let sub = self
            .inner
            .broker
            .subscribe(&user)
            .await
            .map_err(|e| ChatError::failed("subscribe", e))?;
        // Written before the login is installed: if the store is away the
        // call fails with nothing half done (the subscription is dropped).
        let entry = OnlineEntry {
            node: self.inner.node.clone(),
            since: presence.ts,
        };
        let bytes = serde_json::to_vec(&entry).map_err(|e| ChatError::failed("online entry", e))?;
        self.inner.online.insert(&name, bytes).await?;
        let login = Login(Arc::new(LoginState {
            user,
            number,
            token,
            since: presence.ts,
            pending: Mutex::new(HashMap::new()),
            pump: Mutex::new(None),
        }));
        let pump = self.inner.pumps.spawn(pump(
            ctx.connection().clone(),
            Arc::downgrade(&login.0),
            sub,
            acks,
            self.inner.metrics.clone(),
        ));
        *lock(&login.0.pump) = Some(pump);
        ctx.session().insert(login.clone());
        ctx.subscribe(&user_topic(&name));
        lock(&self.inner.local).insert(name.clone(), ctx.conn_id());

        if let Err(e) = self.inner.broker.publish_presence(&presence).await {
            tracing::warn!(user = %name, error = %e, "announcing presence");
        }
        Ok(login)
    }

    /// Close this node's other session of `name`, if any, telling it why.
    async fn replace_local(&self, name: &str, current: &Connection) {
        let previous = lock(&self.inner.local).get(name).copied();
        let Some(prev) = previous.filter(|id| *id != current.id()) else {
            return;
        };
        if let Some(conn) = self.inner.hub.connection(prev) {
            replace(&conn);
        }
    }

    /// A session of this node was replaced by a login elsewhere (`since` is
    /// the newer login's time).
    pub(crate) fn replaced_remotely(&self, name: &str, since: u64) {
        let id = lock(&self.inner.local).get(name).copied();
        let Some(conn) = id.and_then(|id| self.inner.hub.connection(id)) else {
            return;
        };
        let older = conn
            .session()
            .with(|l: Option<&Login>| l.is_some_and(|l| l.0.since < since));
        if older {
            replace(&conn);
            lock(&self.inner.local).retain(|_, c| *c != conn.id());
        }
    }

    /// The user of `conn` logged out or went away: forget the connection and,
    /// unless a newer login of the user exists, announce them offline.
    pub(crate) async fn logged_out(&self, conn: &Connection, login: &Login) {
        let name = login.name().to_owned();
        {
            let mut local = lock(&self.inner.local);
            if local.get(&name) == Some(&conn.id()) {
                local.remove(&name);
            }
        }
        conn.unsubscribe(&user_topic(&name));
        // Remove the online entry only if it is still this login's.
        let mine = serde_json::to_vec(&OnlineEntry {
            node: self.inner.node.clone(),
            since: login.0.since,
        })
        .unwrap_or_default();
        match self
            .inner
            .online
            .compare_and_swap(&name, Some(&mine), None)
            .await
        {
            Ok(Ok(())) => {
                let offline = Presence::new(login.0.user.clone(), false);
                if let Err(e) = self.inner.broker.publish_presence(&offline).await {
                    tracing::warn!(user = %name, error = %e, "announcing presence");
                }
            }
            Ok(Err(_)) => {} // a newer login owns the entry
            Err(e) => tracing::warn!(user = %name, error = %e, "clearing online state"),
        }
    }

    /// Whether `name` is online anywhere (on a node that is alive: see
    /// `cluster`).
    pub(crate) async fn is_online(&self, name: &str) -> nopi::Result<bool> {
        let Some(bytes) = self.inner.online.get(name).await? else {
            return Ok(false);
        };
        match serde_json::from_slice::<OnlineEntry>(&bytes) {
            Ok(entry) => crate::cluster::node_alive(self, &entry.node).await,
            Err(_) => Ok(true),
        }
    }

    /// Everyone online on a live node, sorted (at most `limit`).
    pub(crate) async fn online_users(&self, limit: usize) -> nopi::Result<Vec<String>> {
        let beats = crate::cluster::beats(self).await?;
        let now = crate::cluster::now_ms();
        let mut out = Vec::new();
        let mut from: Option<Vec<u8>> = None;
        // Page through the tree, skipping the entries of dead nodes.
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
                from = Some(k.clone());
                if live
                    && out.len() < limit
                    && let Ok(name) = String::from_utf8(k)
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
}

/// End `conn`'s login because a newer one replaced it: take the login off
/// now (so its inbox subscription is given back before the newer one's
/// starts), tell the client why and close.
fn replace(conn: &Connection) {
    let old = conn.session().remove::<Login>();
    if let Ok(replaced) = Push::json(push::SESSION, &SessionEvent::replaced()) {
        let _ = conn.push(replaced);
    }
    conn.close("replaced by a newer login");
    drop(old);
}

/// Users logged in on this node, and the deliveries their clients hold
/// unacked: read for `/metrics`, one lock per local user.
pub(crate) fn local_counts(chat: &Chat) -> (usize, usize) {
    let ids: Vec<homer::ConnId> = lock(&chat.inner.local).values().copied().collect();
    let hub = &chat.inner.hub;
    let unacked = ids
        .iter()
        .filter_map(|id| hub.connection(*id))
        .filter_map(|c| c.session().get::<Login>())
        .map(|l| lock(&l.0.pending).len())
        .sum();
    (ids.len(), unacked)
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Push what arrives in the inbox to the connection, until either ends.
async fn pump(
    conn: Connection,
    login: std::sync::Weak<LoginState>,
    mut sub: Subscription,
    acks: Acks,
    metrics: Arc<crate::metrics::Metrics>,
) {
    while let Some(next) = sub.recv().await {
        let delivery = match next {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!(user = %sub.user(), error = %e, "inbox delivery failed");
                continue;
            }
        };
        let (envelope, acker) = delivery.into_parts();
        // The same message again (published twice after a takeover, or
        // redelivered) while the client still holds the first copy: settle
        // this copy now — an unsettled delivery would hold one of the
        // subscription's prefetch slots for good — and push nothing.
        let held = login
            .upgrade()
            .is_some_and(|state| lock(&state.pending).contains_key(&envelope.id));
        if held {
            if let Err(e) = acker.ack().await {
                tracing::warn!(error = %e, "acking a duplicate delivery");
            }
            continue;
        }
        let translate = conn.session().get::<Translate>();
        let push = if let Some(Translate(translate)) = translate {
            let Some(state) = login.upgrade() else { break };
            match translate(&envelope, &Login(state)).await {
                Ok(Some(push)) => Some(Ok(push)),
                Ok(None) => {
                    if let Err(e) = acker.ack().await {
                        tracing::warn!(error = %e, "acking a delivery with nothing to push");
                    }
                    continue;
                }
                Err(Later) => {
                    if let Err(e) = acker.nack(true).await {
                        tracing::warn!(error = %e, "giving back a delivery to retry");
                    }
                    tokio::time::sleep(RETRY_LATER).await;
                    continue;
                }
            }
        } else if envelope.content_type == GROUP_EVENT {
            match serde_json::from_slice::<GroupEvent>(&envelope.body) {
                Ok(event) => Some(Push::json(push::GROUP, &event)),
                Err(_) => None,
            }
        } else {
            Message::from_envelope(&envelope).map(|m| Push::json(push::MESSAGE, &m))
        };
        let Some(Ok(push)) = push else {
            tracing::warn!(id = %envelope.id, content_type = %envelope.content_type, "dropping an inbox entry that is not a chat message");
            let _ = acker.ack().await;
            continue;
        };
        if conn.push(push).is_err() {
            break; // the connection is gone: what is unacked goes back
        }
        let is_message = envelope.content_type != GROUP_EVENT;
        if is_message {
            // Latency only for messages sent while this login was live: a
            // backlog delivered at login says how long the user was away.
            let since = login.upgrade().map_or(u64::MAX, |s| s.since);
            let latency = (envelope.ts >= since)
                .then(|| Duration::from_millis(now_ms().saturating_sub(envelope.ts)));
            metrics.delivered(latency);
        }
        if acks == Acks::Client && is_message {
            match login.upgrade() {
                Some(state) => {
                    lock(&state.pending).insert(envelope.id, acker);
                }
                None => break,
            }
        } else if let Err(e) = acker.ack().await {
            tracing::warn!(error = %e, "acking a delivered message");
        }
    }
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
