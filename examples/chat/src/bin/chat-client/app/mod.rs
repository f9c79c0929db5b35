//! The client itself, without a screen: it turns network events and commands
//! into requests, local storage and [`Event`]s. The interactive screen and
//! `--script` both drive one [`Client`] and differ only in how they show its
//! events.
//!
//! Rules that hold everywhere:
//! - **Dedupe:** a message id is taken once; a redelivery is reported as
//!   [`Event::Duplicate`] and acked again, never shown twice.
//! - **Ack after storing:** a pushed message is acked (batched, after
//!   `--ack-delay-ms`) only after it is in the local history and that
//!   history is flushed to disk, so a crash between the two makes the
//!   server deliver it again instead of losing it.
//! - **Unread:** a message from someone else that arrives (live, or synced
//!   as newer than what was stored) in a channel other than the current one
//!   counts as unread, in the channel's `unread:` queue; switching to the
//!   channel clears it.
//! - **Restart:** local history and unread counts are read from the store
//!   before the server is asked anything. After login the inbox redelivers
//!   what was not acked, and each group is synced with `chat.history`,
//!   keeping only messages newer than the newest stored one (paging back
//!   when a whole page is new).
//!
//! The jobs are split by module: [`connection`] (connecting, reconnecting,
//! logging in), [`commands`] (the `/commands`), [`replies`] (the answers to
//! requests), [`pushes`] (what the server pushes), [`channels`] (the channel
//! list, unread counts, taking a message in), [`delivery`] (the outbox and
//! the acks), and [`events`] (what the drivers are told).

mod channels;
pub(crate) mod commands;
mod connection;
mod delivery;
mod events;
mod pushes;
mod replies;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chat::LOBBY;
use serde::Serialize;
use serde_json::{Value, json};
use tiny_q::Lease;
use tokio::sync::mpsc::UnboundedSender;

use crate::emoticons;
use crate::net::{NetCmd, NetEvent};
use crate::store::{LocalStore, Outgoing, StoreError};

use self::channels::{Channel, group_key, sort_key};
pub(crate) use self::events::{ConnState, Event, Friend, Source, View};

/// Messages asked for per `chat.history` page.
const PAGE: usize = 50;
/// How long a request may wait for its reply before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// How the client was started.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    /// The server, as shown to the user.
    pub(crate) server: String,
    /// The account: a name, or a number.
    pub(crate) user: String,
    pub(crate) password: Option<String>,
    /// Register the account before the first login.
    pub(crate) register: bool,
    /// How long acks are gathered before one `chat.ack` goes out.
    pub(crate) ack_delay: Duration,
    /// Expand emoticons on display.
    pub(crate) emoticons: bool,
}

/// What to do with a command's reply.
#[derive(Debug)]
enum After {
    Nothing,
    OpenGroup(String),
    LeaveGroup(String),
    RefreshFriends,
}

/// A request waiting for its reply.
#[derive(Debug)]
enum Pending {
    Register,
    Login,
    Resume,
    Online {
        report: bool,
    },
    Friends {
        report: bool,
    },
    Sync {
        channel: String,
        mark: Option<String>,
        page: usize,
    },
    Backfill {
        channel: String,
        report: bool,
    },
    Send {
        client_id: String,
    },
    Ack {
        ids: Vec<String>,
    },
    Command {
        name: String,
        then: After,
    },
}

/// The client state machine.
pub(crate) struct Client {
    settings: Settings,
    store: LocalStore,
    net: UnboundedSender<NetCmd>,
    epoch: u64,
    conn: ConnState,
    conn_detail: Option<String>,
    me: String,
    token: Option<String>,
    password: Option<String>,
    registered: bool,
    channels: BTreeMap<String, Channel>,
    current: String,
    seen: HashSet<String>,
    online: BTreeSet<String>,
    friends: BTreeMap<String, bool>,
    /// Requests waiting for a reply, with when they were sent.
    pending: HashMap<u64, (Instant, Pending)>,
    next_id: u64,
    to_ack: Vec<String>,
    ack_due: Option<Instant>,
    in_flight: HashMap<String, Lease<Outgoing>>,
    outbox: Vec<Outgoing>,
    retry_due: Option<Instant>,
    sync_marks: HashMap<String, Option<String>>,
    emoticons: bool,
    events: Vec<Event>,
    failed: bool,
    closing: bool,
    quit: bool,
}

impl Client {
    /// A client on `store`, talking through `net`. Reads the local history,
    /// unread counts, outbox and session token; asks the server nothing.
    pub(crate) async fn new(
        settings: Settings,
        mut store: LocalStore,
        net: UnboundedSender<NetCmd>,
    ) -> Result<Client, StoreError> {
        let mut channels = BTreeMap::new();
        let mut seen = HashSet::new();
        for key in store.channels().await? {
            let mut messages = store.history(&key).await?;
            messages.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
            messages.dedup_by(|a, b| a.id == b.id);
            seen.extend(messages.iter().map(|m| m.id.clone()));
            let unread = store.unread_count(&key).await?;
            channels.insert(key, Channel { messages, unread });
        }
        let lobby = group_key(LOBBY);
        if !channels.contains_key(&lobby) {
            store.ensure_channel(&lobby).await?;
            channels.insert(lobby.clone(), Channel::default());
        }
        let token = store.token().await?;
        let outbox = store.outbox().await?;
        let me = if settings.user.bytes().all(|b| b.is_ascii_digit()) {
            String::new()
        } else {
            settings.user.clone()
        };
        Ok(Client {
            password: settings.password.clone(),
            emoticons: settings.emoticons,
            settings,
            store,
            net,
            epoch: 0,
            conn: ConnState::Connecting,
            conn_detail: None,
            me,
            token,
            registered: false,
            channels,
            current: lobby,
            seen,
            online: BTreeSet::new(),
            friends: BTreeMap::new(),
            pending: HashMap::new(),
            next_id: 1,
            to_ack: Vec::new(),
            ack_due: None,
            in_flight: HashMap::new(),
            outbox,
            retry_due: None,
            sync_marks: HashMap::new(),
            events: Vec::new(),
            failed: false,
            closing: false,
            quit: false,
        })
    }

    // ---- what the drivers read ----------------------------------------------

    /// The events since the last call.
    pub(crate) fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    pub(crate) fn conn(&self) -> ConnState {
        self.conn
    }

    pub(crate) fn conn_detail(&self) -> Option<&str> {
        self.conn_detail.as_deref()
    }

    pub(crate) fn me(&self) -> &str {
        if self.me.is_empty() {
            &self.settings.user
        } else {
            &self.me
        }
    }

    pub(crate) fn server(&self) -> &str {
        &self.settings.server
    }

    pub(crate) fn current(&self) -> &str {
        &self.current
    }

    pub(crate) fn emoticons(&self) -> bool {
        self.emoticons
    }

    pub(crate) fn online_users(&self) -> impl Iterator<Item = &str> {
        self.online.iter().map(String::as_str)
    }

    /// `text` as displayed (emoticons expanded when on).
    pub(crate) fn display(&self, text: &str) -> String {
        if self.emoticons {
            emoticons::expand(text)
        } else {
            text.to_owned()
        }
    }

    /// A fatal error happened (for the exit status).
    pub(crate) fn failed(&self) -> bool {
        self.failed
    }

    /// `/quit` was given.
    pub(crate) fn quit_requested(&self) -> bool {
        self.quit
    }

    /// Nothing is in flight: a script at its end of input may exit.
    pub(crate) fn settled(&self) -> bool {
        match self.conn {
            ConnState::Connecting | ConnState::LoggingIn => false,
            ConnState::Online => {
                self.pending.is_empty()
                    && self.to_ack.is_empty()
                    && self.in_flight.is_empty()
                    && self.retry_due.is_none()
            }
            ConnState::Offline | ConnState::Replaced | ConnState::Stopped => true,
        }
    }

    /// Logging in, or a user command waits for its reply: a script reads its
    /// next line only when this is false, so that its commands run in order
    /// (`/group create x` then text sends the text to `#x`).
    pub(crate) fn busy(&self) -> bool {
        matches!(self.conn, ConnState::Connecting | ConnState::LoggingIn)
            || self.pending.values().any(|(_, p)| {
                matches!(
                    p,
                    Pending::Command { .. }
                        | Pending::Online { report: true }
                        | Pending::Friends { report: true }
                        | Pending::Backfill { report: true, .. }
                )
            })
    }

    /// When [`Client::on_tick`] should run next.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        let oldest = self
            .pending
            .values()
            .map(|(at, _)| *at + REQUEST_TIMEOUT)
            .min();
        [self.ack_due, self.retry_due, oldest]
            .into_iter()
            .flatten()
            .min()
    }

    // ---- inputs ---------------------------------------------------------------

    /// The input is over: send what is waiting (acks at once) and wind down.
    pub(crate) async fn begin_close(&mut self) {
        self.closing = true;
        self.flush_acks().await;
    }

    /// Make everything stored so far durable (before the process exits).
    pub(crate) async fn finish(&mut self) {
        if let Err(e) = self.store.flush().await {
            self.store_error(e);
        }
    }

    /// Timers: batched acks, send retries.
    pub(crate) async fn on_tick(&mut self) {
        let now = Instant::now();
        if self.ack_due.is_some_and(|d| d <= now) {
            self.flush_acks().await;
        }
        if self.retry_due.is_some_and(|d| d <= now) {
            self.retry_due = None;
            self.pump_outbox().await;
        }
        let expired: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, (at, _))| *at + REQUEST_TIMEOUT <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            if let Some((_, p)) = self.pending.remove(&id) {
                let message = format!(
                    "no reply from the server within {} s",
                    REQUEST_TIMEOUT.as_secs()
                );
                self.on_err(p, 504, "timeout".into(), message).await;
            }
        }
    }

    /// A line that did not parse.
    pub(crate) fn on_parse_error(&mut self, message: String) {
        self.error(None, None, "bad_command", message);
    }

    /// Something the network task reported.
    pub(crate) async fn on_net(&mut self, event: NetEvent) {
        match event {
            NetEvent::Connecting => self.set_conn(ConnState::Connecting, None, None),
            NetEvent::Connected { epoch } => self.on_connected(epoch),
            NetEvent::Frame { epoch, value } if epoch == self.epoch => self.on_frame(value).await,
            NetEvent::Frame { .. } => {} // from a connection that is gone
            NetEvent::Garbage { epoch, reason } if epoch == self.epoch => {
                self.error(None, None, "bad_frame", reason)
            }
            NetEvent::Garbage { .. } => {}
            NetEvent::Closed { reason, retry_in } => self.on_closed(reason, retry_in).await,
        }
    }

    /// A frame of the current connection: a push or a reply.
    async fn on_frame(&mut self, frame: Value) {
        if let Some(kind) = frame.get("push").and_then(Value::as_str) {
            let content = frame.get("content").cloned().unwrap_or(Value::Null);
            return self.on_push(kind, content).await;
        }
        self.on_reply(frame).await;
    }

    // ---- requests -------------------------------------------------------------------

    /// Send a request on the current connection.
    fn request(&mut self, api: &str, params: &impl Serialize, pending: Pending) {
        let id = self.next_id;
        self.next_id += 1;
        let params = match serde_json::to_value(params) {
            Ok(p) => p,
            Err(e) => return self.error(Some(api), None, "bad_request", e.to_string()),
        };
        let text = json!({ "id": id, "api": api, "params": params }).to_string();
        if self
            .net
            .send(NetCmd::Send {
                epoch: self.epoch,
                text,
            })
            .is_ok()
        {
            self.pending.insert(id, (Instant::now(), pending));
        }
    }

    // ---- reporting ------------------------------------------------------------------

    fn ok(&mut self, command: &str, detail: Value) {
        self.events.push(Event::Ok {
            command: command.to_owned(),
            detail,
        });
    }

    fn error(
        &mut self,
        command: Option<&str>,
        status: Option<u16>,
        code: &str,
        message: impl Into<String>,
    ) {
        self.events.push(Event::Error {
            command: command.map(str::to_owned),
            status,
            code: if code.is_empty() {
                "error".into()
            } else {
                code.to_owned()
            },
            message: message.into(),
        });
    }

    fn store_error(&mut self, e: StoreError) {
        self.error(None, None, "local_store", e.to_string());
    }
}
