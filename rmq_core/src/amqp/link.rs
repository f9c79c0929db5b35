//! The connection to RabbitMQ and its recovery.
//!
//! lapin does not recover connections by itself here (its experimental
//! auto-recovery is left off: it cannot resend unconfirmed publishes, and
//! recovering topology that another node deleted meanwhile would resurrect it).
//! Instead one supervisor task per broker owns the connection:
//!
//! 1. it watches the connection (lapin error events, a status poll, and
//!    failures reported by operations);
//! 2. on loss it marks the link down, reconnects with exponential backoff and
//!    jitter, re-declares the shared exchanges and the inboxes being consumed
//!    on this node, opens a new confirm-mode publish channel, and publishes
//!    the new link with a higher generation;
//! 3. operations wait for a link of a newer generation than the one that
//!    failed them and retry: publishes are resent until confirmed (or their
//!    deadline passes), consumers re-subscribe.
//!
//! **Invariant:** an operation never retries on the link generation it saw fail.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::protocol::{AMQPErrorKind, AMQPSoftError};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ErrorKind};
use tokio::sync::{Notify, Semaphore, watch};
use tokio::time::Instant;

use super::AmqpConfig;
use super::topology::{self, Names};
use crate::sync::lock;
use crate::{Error, Result, UserId};

/// One established connection and its confirm-mode publish channel.
pub(crate) struct Link {
    pub(crate) generation: u64,
    pub(crate) conn: Connection,
    pub(crate) publish: Channel,
}

#[derive(Clone)]
pub(crate) enum LinkState {
    Down,
    Up(Arc<Link>),
    Closed,
}

type Events = Pin<Box<dyn Stream<Item = lapin::Event> + Send>>;

/// State shared by the broker handle, the supervisor and the consumer tasks.
pub(crate) struct Shared {
    pub(crate) cfg: AmqpConfig,
    pub(crate) names: Names,
    state: watch::Sender<LinkState>,
    failed_generation: AtomicU64,
    failed: Notify,
    shutdown: watch::Sender<bool>,
    /// Inboxes consumed on this node, re-declared after a reconnection.
    active_inboxes: Mutex<HashMap<UserId, usize>>,
    /// Bounds the publishes waiting for a confirm.
    pub(crate) window: Semaphore,
    pub(crate) reconnects: AtomicU64,
    pub(crate) handover: Arc<crate::handover::Handover>,
}

/// How one attempt of an operation on a link ended; see [`Shared::retry`].
pub(crate) enum Attempt<T> {
    /// Finished, well or not: the operation returns this.
    Done(Result<T>),
    /// The connection failed under it: try again on a newer link.
    Lost,
}

/// How [`Shared::retry`] paces the attempts of an operation.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Pace {
    /// Each attempt is bounded by the deadline (past it the operation fails
    /// with [`Error::Timeout`]); after a loss the next starts as soon as a
    /// newer link is up.
    Bounded(Instant),
    /// Attempts are not bounded; after a loss the next waits a pause, from
    /// the reconnection backoff's first delay doubling up to its cap, and
    /// the operation fails with [`Error::Timeout`] when that pause would
    /// end past the deadline, if there is one.
    Paced(Option<Instant>),
}

/// A 404 from the server.
pub(crate) fn is_not_found(e: &lapin::Error) -> bool {
    matches!(e.kind(), ErrorKind::ProtocolError(a) if *a.kind() == AMQPErrorKind::Soft(AMQPSoftError::NOTFOUND))
}

pub(crate) fn amqp_message(e: &lapin::Error) -> String {
    match e.kind() {
        ErrorKind::ProtocolError(a) => a.get_message().to_string(),
        _ => e.to_string(),
    }
}

impl Shared {
    /// What the lapin error `e` of an attempt on `link` means: a refusal by
    /// the server (a channel-level error on a connection that is still up)
    /// ends the operation with [`Error::Amqp`]; anything else is a lost
    /// connection, reported to the supervisor, and the attempt is retried.
    pub(crate) fn failed<T>(&self, link: &Link, op: &'static str, e: lapin::Error) -> Attempt<T> {
        let soft = matches!(e.kind(), ErrorKind::ProtocolError(a) if matches!(a.kind(), AMQPErrorKind::Soft(_)));
        if soft && link.conn.status().connected() {
            Attempt::Done(Err(Error::Amqp { op, source: e }))
        } else {
            tracing::debug!(generation = link.generation, error = %e, "amqp connection failure");
            self.report_failure(link.generation);
            Attempt::Lost
        }
    }

    fn timeout(&self, op: &'static str) -> Error {
        Error::Timeout {
            op,
            after: self.cfg.op_timeout,
        }
    }

    /// Tell the supervisor that `generation` failed.
    /// The generation a consumer that lost `link` resumes on: the same link
    /// if it is still connected (the server only cancelled the consumer),
    /// else the next one (and the loss is reported).
    pub(crate) fn resume_generation(&self, link: &Link) -> u64 {
        if link.conn.status().connected() {
            link.generation
        } else {
            self.report_failure(link.generation);
            link.generation + 1
        }
    }

    pub(crate) fn report_failure(&self, generation: u64) {
        self.failed_generation
            .fetch_max(generation, Ordering::SeqCst);
        self.failed.notify_one();
    }

    /// The current link if it is up.
    pub(crate) fn current(&self) -> Option<Arc<Link>> {
        match &*self.state.borrow() {
            LinkState::Up(link) => Some(link.clone()),
            _ => None,
        }
    }

    /// Wait for a link of generation `min_generation` or newer.
    async fn wait_link(
        &self,
        min_generation: u64,
        deadline: Option<Instant>,
        op: &'static str,
    ) -> Result<Arc<Link>> {
        let mut rx = self.state.subscribe();
        loop {
            {
                match &*rx.borrow_and_update() {
                    LinkState::Up(link) if link.generation >= min_generation => {
                        return Ok(link.clone());
                    }
                    LinkState::Closed => return Err(Error::Closed),
                    _ => {}
                }
            }
            let changed = match deadline {
                Some(deadline) => match tokio::time::timeout_at(deadline, rx.changed()).await {
                    Ok(changed) => changed,
                    Err(_) => return Err(self.timeout(op)),
                },
                None => rx.changed().await,
            };
            if changed.is_err() {
                return Err(Error::Closed);
            }
        }
    }

    /// The retry loop of every operation: run `attempt` on a link of
    /// generation `min_generation` or newer, and again on a newer link each
    /// time it reports [`Attempt::Lost`], paced by `pace`. Never retries on
    /// the generation that failed. Fails with [`Error::Timeout`] past the
    /// deadline and [`Error::Closed`] once the broker is closed.
    pub(crate) async fn retry<T, F, Fut>(
        &self,
        op: &'static str,
        pace: Pace,
        mut min_generation: u64,
        mut attempt: F,
    ) -> Result<T>
    where
        F: FnMut(Arc<Link>) -> Fut,
        Fut: Future<Output = Attempt<T>>,
    {
        let mut pause = self.cfg.reconnect_min;
        loop {
            let deadline = match pace {
                Pace::Bounded(deadline) => Some(deadline),
                Pace::Paced(deadline) => deadline,
            };
            let link = self.wait_link(min_generation, deadline, op).await?;
            let generation = link.generation;
            let outcome = match pace {
                Pace::Bounded(deadline) => tokio::time::timeout_at(deadline, attempt(link))
                    .await
                    .map_err(|_| self.timeout(op))?,
                Pace::Paced(_) => attempt(link).await,
            };
            match outcome {
                Attempt::Done(done) => return done,
                Attempt::Lost => min_generation = generation + 1,
            }
            if let Pace::Paced(deadline) = pace {
                if deadline.is_some_and(|d| Instant::now() + pause > d) {
                    return Err(self.timeout(op));
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(self.cfg.reconnect_max);
            }
        }
    }

    /// Run `f` on a fresh channel of the current link, retrying on new links
    /// while the connection fails, until the operation deadline. A refusal
    /// by the server is [`Error::Amqp`] for `op`.
    pub(crate) async fn with_channel<T, F, Fut>(&self, op: &'static str, f: F) -> Result<T>
    where
        F: Fn(Channel) -> Fut,
        Fut: Future<Output = lapin::Result<T>>,
    {
        let deadline = Instant::now() + self.cfg.op_timeout;
        self.retry(op, Pace::Bounded(deadline), 0, |link| {
            let f = &f;
            async move {
                let attempt = async {
                    let ch = link.conn.create_channel().await?;
                    let out = f(ch.clone()).await;
                    if ch.status().connected() {
                        let _ = ch.close(200, "done".into()).await;
                    }
                    out
                };
                match attempt.await {
                    Ok(v) => Attempt::Done(Ok(v)),
                    Err(e) => self.failed(&link, op, e),
                }
            }
        })
        .await
    }

    /// Publish one message and wait for its confirm, resending on newer links
    /// after a connection loss. Holds a slot of the confirm window meanwhile.
    pub(crate) async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        mandatory: bool,
        payload: &[u8],
        properties: BasicProperties,
    ) -> Result<Confirmation> {
        let _slot = self.window.acquire().await.map_err(|_| Error::Closed)?;
        let deadline = Instant::now() + self.cfg.op_timeout;
        self.retry("publish", Pace::Bounded(deadline), 0, |link| {
            let properties = properties.clone();
            async move {
                let sent = async {
                    link.publish
                        .basic_publish(
                            exchange.into(),
                            routing_key.into(),
                            BasicPublishOptions {
                                mandatory,
                                ..BasicPublishOptions::default()
                            },
                            payload,
                            properties,
                        )
                        .await?
                        .await
                };
                match sent.await {
                    Ok(confirmation) => Attempt::Done(Ok(confirmation)),
                    Err(e) => {
                        // Whatever the error, the publish channel is unusable: a
                        // channel-level error closed it. Reconnect and resend.
                        tracing::debug!(generation = link.generation, error = %e, "publish failed; resending on a new link");
                        self.report_failure(link.generation);
                        Attempt::Lost
                    }
                }
            }
        })
        .await
    }

    pub(crate) fn register_inbox(&self, user: &UserId) {
        let mut map = lock(&self.active_inboxes);
        *map.entry(user.clone()).or_default() += 1;
    }

    pub(crate) fn unregister_inbox(&self, user: &UserId) {
        let mut map = lock(&self.active_inboxes);
        if let Some(n) = map.get_mut(user) {
            *n -= 1;
            if *n == 0 {
                map.remove(user);
            }
        }
    }

    fn active_inboxes(&self) -> Vec<UserId> {
        lock(&self.active_inboxes).keys().cloned().collect()
    }

    pub(crate) fn shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    pub(crate) async fn wait_closed(&self) {
        let mut rx = self.state.subscribe();
        let _ = rx.wait_for(|s| matches!(s, LinkState::Closed)).await;
    }
}

/// Connect, declare the shared topology and the active inboxes, open the publish channel.
async fn establish(
    cfg: &AmqpConfig,
    names: &Names,
    inboxes: &[UserId],
    generation: u64,
) -> std::result::Result<(Link, Events), Box<dyn std::error::Error + Send + Sync>> {
    let props =
        ConnectionProperties::default().with_connection_name(cfg.connection_name.clone().into());
    let conn = tokio::time::timeout(cfg.connect_timeout, Connection::connect(&cfg.url, props))
        .await
        .map_err(|_| format!("no connection within {:?}", cfg.connect_timeout))??;
    let events: Events = Box::pin(conn.events_listener());
    let setup = async {
        let ch = conn.create_channel().await?;
        topology::declare_shared(&ch, names, cfg).await?;
        for user in inboxes {
            topology::declare_inbox(&ch, names, cfg, user).await?;
        }
        let _ = ch.close(200, "done".into()).await;
        let publish = conn.create_channel().await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        Ok::<_, lapin::Error>(publish)
    };
    match setup.await {
        Ok(publish) => Ok((
            Link {
                generation,
                conn,
                publish,
            },
            events,
        )),
        Err(e) => {
            let _ = conn.close(200, "setup failed".into()).await;
            Err(e.into())
        }
    }
}

/// Connect for the first time and start the supervisor.
pub(crate) async fn start(cfg: AmqpConfig) -> Result<Arc<Shared>> {
    let names = Names::new(&cfg.namespace);
    let (link, events) =
        establish(&cfg, &names, &[], 1)
            .await
            .map_err(|source| Error::Connect {
                url: crate::error::redact_url(&cfg.url),
                source,
            })?;
    let link = Arc::new(link);
    let (state, _) = watch::channel(LinkState::Up(link.clone()));
    let (shutdown, _) = watch::channel(false);
    let shared = Arc::new(Shared {
        window: Semaphore::new(cfg.confirm_window),
        cfg,
        names,
        state,
        failed_generation: AtomicU64::new(0),
        failed: Notify::new(),
        shutdown,
        active_inboxes: Mutex::new(HashMap::new()),
        reconnects: AtomicU64::new(0),
        handover: Arc::default(),
    });
    tokio::spawn(supervise(shared.clone(), link, events));
    Ok(shared)
}

/// Up to `base` plus a random quarter of it.
fn jittered(base: Duration) -> Duration {
    let quarter = base.as_millis() as u64 / 4 + 1;
    let random = (uuid::Uuid::new_v4().as_u128() as u64) % quarter;
    base + Duration::from_millis(random)
}

enum Watch {
    Lost,
    Shutdown,
}

async fn watch_link(shared: &Shared, link: &Link, events: &mut Events) -> Watch {
    let mut shutdown = shared.shutdown.subscribe();
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    loop {
        if *shutdown.borrow_and_update() {
            return Watch::Shutdown;
        }
        if shared.failed_generation.load(Ordering::SeqCst) >= link.generation
            || !link.conn.status().connected()
        {
            return Watch::Lost;
        }
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = shared.failed.notified() => {}
            _ = poll.tick() => {}
            event = events.next() => match event {
                // Channel-level errors (a refused declaration, a 404) are
                // reported here too; only a dead connection matters.
                Some(lapin::Event::Error(e)) if !link.conn.status().connected() => {
                    tracing::warn!(generation = link.generation, error = %e, "amqp connection lost");
                    return Watch::Lost;
                }
                Some(_) => {}
                None => return Watch::Lost,
            },
        }
    }
}

async fn supervise(shared: Arc<Shared>, mut link: Arc<Link>, mut events: Events) {
    let mut shutdown = shared.shutdown.subscribe();
    loop {
        let outcome = watch_link(&shared, &link, &mut events).await;
        shared.state.send_replace(LinkState::Down);
        if link.conn.status().connected() {
            let _ = tokio::time::timeout(
                Duration::from_secs(2),
                link.conn.close(200, "closing".into()),
            )
            .await;
        }
        if let Watch::Shutdown = outcome {
            shared.state.send_replace(LinkState::Closed);
            return;
        }
        let generation = link.generation + 1;
        let mut delay = shared.cfg.reconnect_min;
        loop {
            let inboxes = shared.active_inboxes();
            let attempt = tokio::select! {
                _ = shutdown.wait_for(|s| *s) => None,
                r = establish(&shared.cfg, &shared.names, &inboxes, generation) => Some(r),
            };
            match attempt {
                None => {
                    shared.state.send_replace(LinkState::Closed);
                    return;
                }
                Some(Ok((new_link, new_events))) => {
                    link = Arc::new(new_link);
                    events = new_events;
                    shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(generation, "amqp connection re-established");
                    shared.state.send_replace(LinkState::Up(link.clone()));
                    break;
                }
                Some(Err(e)) => {
                    let wait = jittered(delay);
                    tracing::warn!(error = %e, retry_in = ?wait, "amqp reconnection failed");
                    tokio::select! {
                        _ = shutdown.wait_for(|s| *s) => {
                            shared.state.send_replace(LinkState::Closed);
                            return;
                        }
                        _ = tokio::time::sleep(wait) => {}
                    }
                    delay = (delay * 2).min(shared.cfg.reconnect_max);
                }
            }
        }
    }
}
