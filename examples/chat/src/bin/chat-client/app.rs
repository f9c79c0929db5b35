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

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use chat::wire::Change;
use chat::{LOBBY, Message, Target};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tiny_q::Lease;
use tokio::sync::mpsc::UnboundedSender;

use crate::commands::{Command, HELP};
use crate::emoticons;
use crate::net::{NetCmd, NetEvent};
use crate::store::{HISTORY_CAP, LocalStore, Outgoing, RETRY_SEND, StoreError};

/// Messages asked for per `chat.history` page.
const PAGE: usize = 50;
/// Pages a reconnection sync reads back at most, per group.
const SYNC_PAGES: usize = 4;
/// How long a request may wait for its reply before it counts as failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Most ids per `chat.ack` (the server's limit).
const MAX_ACK_IDS: usize = 1000;

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

/// The connection as the user sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConnState {
    /// Trying to reach the server.
    Connecting,
    /// Connected, logging in.
    LoggingIn,
    /// Logged in.
    Online,
    /// Lost; a reconnection is scheduled.
    Offline,
    /// Another login of this user took over; no reconnection.
    Replaced,
    /// Given up (bad credentials, expired session): `/login` starts again.
    Stopped,
}

impl ConnState {
    pub(crate) fn label(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::LoggingIn => "logging in",
            ConnState::Online => "online",
            ConnState::Offline => "offline",
            ConnState::Replaced => "replaced",
            ConnState::Stopped => "stopped",
        }
    }
}

/// Where a message came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    /// Pushed by the server (live, or redelivered from the inbox).
    Live,
    /// Found by the reconnection sync, newer than what was stored.
    Sync,
    /// Older history from the server (`/history`, a newly joined group).
    Server,
    /// Our own message, confirmed by the server.
    Sent,
    /// The local store.
    Local,
}

/// A message as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct View {
    pub(crate) channel: String,
    pub(crate) id: String,
    pub(crate) from: String,
    pub(crate) to: Target,
    pub(crate) text: String,
    /// The text with emoticons expanded when that is on.
    pub(crate) display: String,
    pub(crate) ts: u64,
    /// A private message inside a group.
    pub(crate) private: bool,
    /// Sent by us.
    pub(crate) mine: bool,
}

/// A channel in the `channels` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct ChannelInfo {
    pub(crate) channel: String,
    pub(crate) unread: u64,
    pub(crate) messages: usize,
}

/// A friend and whether they are online.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Friend {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) online: bool,
}

/// Everything the client reports; `--script` prints each as one JSON line.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub(crate) enum Event {
    /// The connection changed.
    Connection {
        state: ConnState,
        server: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        detail: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
    },
    /// Logged in (with a password, or by resuming the saved session).
    Login {
        name: String,
        number: u64,
        resumed: bool,
    },
    /// A message was added to a channel.
    Message {
        #[serde(flatten)]
        message: View,
        source: Source,
        unread: bool,
    },
    /// A message that was already here arrived again and was dropped.
    Duplicate { channel: String, id: String },
    /// Text was queued to be sent (it is kept on disk until confirmed).
    Queued {
        channel: String,
        client_id: String,
        text: String,
    },
    /// The server confirmed a message we sent.
    Sent {
        channel: String,
        client_id: String,
        id: String,
        ts: u64,
    },
    /// The server took our acks for these messages.
    Acked { ids: Vec<String> },
    /// A user came online or went offline.
    Presence { user: String, online: bool },
    /// Someone joined, left or was kicked from a group.
    Group {
        group: String,
        user: String,
        action: String,
    },
    /// The session ended on the server's side (`replaced`).
    Session { state: String },
    /// The current channel changed.
    Channel { channel: String },
    /// The channels and their unread counts (`/channels`).
    Channels {
        current: String,
        channels: Vec<ChannelInfo>,
    },
    /// A channel's history (`/history`): first `local`, then `server`.
    History {
        channel: String,
        source: Source,
        messages: Vec<View>,
    },
    /// Who is online, and the friends (`/who`).
    Who {
        online: Vec<String>,
        friends: Vec<Friend>,
    },
    /// A command succeeded; `detail` is the server's reply, if any.
    Ok {
        command: String,
        #[serde(skip_serializing_if = "Value::is_null")]
        detail: Value,
    },
    /// Something failed.
    Error {
        #[serde(skip_serializing_if = "Option::is_none")]
        command: Option<String>,
        #[serde(skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        code: String,
        message: String,
    },
    /// Emoticon expansion was switched.
    Emoticons { on: bool },
    /// The command list (`/help`).
    Help { lines: Vec<String> },
}

/// A channel: `#group` or `@user`.
#[derive(Debug, Default)]
pub(crate) struct Channel {
    /// Oldest first, by (ts, id).
    pub(crate) messages: Vec<Message>,
    pub(crate) unread: u64,
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

/// The channel key of a group.
pub(crate) fn group_key(name: &str) -> String {
    format!("#{name}")
}

/// The channel a message belongs to, for user `me`.
pub(crate) fn channel_of(m: &Message, me: &str) -> String {
    match (&m.to.group, &m.to.user) {
        (Some(g), _) => group_key(g),
        (None, Some(u)) if m.from == me => format!("@{u}"),
        _ => format!("@{}", m.from),
    }
}

/// Where a channel's messages go.
pub(crate) fn target_of(channel: &str) -> Option<Target> {
    if let Some(g) = channel.strip_prefix('#') {
        Some(Target::group(g))
    } else {
        channel.strip_prefix('@').map(Target::user)
    }
}

/// Display order: the lobby, other groups, then private chats.
fn order(key: &str) -> (u8, &str) {
    if key == "#lobby" {
        (0, key)
    } else if key.starts_with('#') {
        (1, key)
    } else {
        (2, key)
    }
}

fn sort_key(m: &Message) -> (u64, &str) {
    (m.ts, m.id.as_str())
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

    /// Channels in display order with their unread counts.
    pub(crate) fn channel_list(&self) -> Vec<(&str, u64)> {
        let mut list: Vec<(&str, u64)> = self
            .channels
            .iter()
            .map(|(k, c)| (k.as_str(), c.unread))
            .collect();
        list.sort_by(|a, b| order(a.0).cmp(&order(b.0)));
        list
    }

    /// The current channel's messages, oldest first.
    pub(crate) fn current_messages(&self) -> &[Message] {
        self.channels
            .get(&self.current)
            .map_or(&[], |c| c.messages.as_slice())
    }

    /// Text typed in the current channel that the server has not confirmed.
    pub(crate) fn current_outgoing(&self) -> impl Iterator<Item = &Outgoing> {
        self.outbox.iter().filter(|o| o.channel == self.current)
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
            NetEvent::Connected { epoch } => {
                self.epoch = epoch;
                self.pending.clear();
                // What is newest locally now, before this connection delivers
                // anything: the sync keeps what is newer.
                self.sync_marks = self
                    .channels
                    .iter()
                    .filter(|(k, _)| k.starts_with('#'))
                    .map(|(k, c)| (k.clone(), c.messages.iter().map(|m| m.id.clone()).max()))
                    .collect();
                self.set_conn(ConnState::LoggingIn, None, None);
                self.authenticate();
            }
            NetEvent::Frame { epoch, value } if epoch == self.epoch => self.on_frame(value).await,
            NetEvent::Frame { .. } => {} // from a connection that is gone
            NetEvent::Garbage { epoch, reason } if epoch == self.epoch => {
                self.error(None, None, "bad_frame", reason)
            }
            NetEvent::Garbage { .. } => {}
            NetEvent::Closed { reason, retry_in } => self.on_closed(reason, retry_in).await,
        }
    }

    /// A command or text from the user.
    pub(crate) async fn on_command(&mut self, cmd: Command) {
        match cmd {
            Command::Say(text) => self.say(text).await,
            Command::Join(target) => {
                let key = if target.starts_with('#') || target.starts_with('@') {
                    target
                } else {
                    group_key(&target)
                };
                if key.len() < 2 {
                    return self.error(
                        Some("join"),
                        None,
                        "bad_command",
                        "/join needs a name after # or @",
                    );
                }
                if self.channels.contains_key(&key) || key.starts_with('@') {
                    self.select(&key).await;
                } else {
                    let name = key[1..].to_owned();
                    self.command(
                        "join",
                        "group.join",
                        json!({ "name": name }),
                        After::OpenGroup(name),
                    );
                }
            }
            Command::Msg { user, text } => {
                self.select(&format!("@{user}")).await;
                if let Some(text) = text {
                    self.say(text).await;
                }
            }
            Command::GroupCreate { name, desc } => {
                let mut params = json!({ "name": name });
                if let Some(d) = desc {
                    params["desc"] = json!(d);
                }
                self.command(
                    "group create",
                    "group.create",
                    params,
                    After::OpenGroup(name),
                );
            }
            Command::GroupJoin(name) => {
                self.command(
                    "group join",
                    "group.join",
                    json!({ "name": name }),
                    After::OpenGroup(name),
                );
            }
            Command::GroupLeave(name) => {
                let name = match name {
                    Some(n) => n,
                    None => match self.current.strip_prefix('#') {
                        Some(g) if g != LOBBY => g.to_owned(),
                        _ => {
                            return self.error(
                                Some("group leave"),
                                None,
                                "bad_command",
                                "name the group to leave: /group leave <name>",
                            );
                        }
                    },
                };
                self.command(
                    "group leave",
                    "group.leave",
                    json!({ "name": name }),
                    After::LeaveGroup(name),
                );
            }
            Command::GroupSearch(query) => self.command(
                "group search",
                "group.search",
                json!({ "query": query }),
                After::Nothing,
            ),
            Command::GroupMembers(name) => {
                let name = match name.or_else(|| self.current.strip_prefix('#').map(str::to_owned))
                {
                    Some(n) => n,
                    None => {
                        return self.error(
                            Some("group members"),
                            None,
                            "bad_command",
                            "name the group: /group members <name>",
                        );
                    }
                };
                self.command(
                    "group members",
                    "group.members",
                    json!({ "name": name }),
                    After::Nothing,
                );
            }
            Command::FriendAdd(name) => self.command(
                "friend add",
                "friend.add",
                json!({ "name": name }),
                After::RefreshFriends,
            ),
            Command::FriendRemove(name) => {
                self.command(
                    "friend remove",
                    "friend.remove",
                    json!({ "name": name }),
                    After::RefreshFriends,
                );
            }
            Command::Who => {
                if self.require_online("who") {
                    self.request("user.online", json!({}), Pending::Online { report: true });
                }
            }
            Command::History(n) => self.history(n.unwrap_or(PAGE)).await,
            Command::Channels => self.report_channels().await,
            Command::Next | Command::Prev => {
                let list: Vec<String> = self
                    .channel_list()
                    .into_iter()
                    .map(|(k, _)| k.to_owned())
                    .collect();
                let at = list.iter().position(|k| *k == self.current).unwrap_or(0);
                let len = list.len().max(1);
                let next = if cmd == Command::Next {
                    (at + 1) % len
                } else {
                    (at + len - 1) % len
                };
                if let Some(key) = list.get(next) {
                    self.select(&key.clone()).await;
                }
            }
            Command::Emoticons(on) => {
                self.emoticons = on.unwrap_or(!self.emoticons);
                self.events.push(Event::Emoticons { on: self.emoticons });
            }
            Command::Login(password) => {
                self.password = Some(password);
                self.failed = false;
                match self.conn {
                    ConnState::Stopped | ConnState::Replaced => {
                        self.token = None;
                        let _ = self.net.send(NetCmd::Reconnect);
                    }
                    ConnState::Online => self.ok("login", json!({ "detail": "already logged in" })),
                    _ => {} // used at the next login
                }
            }
            Command::Help => self.events.push(Event::Help {
                lines: HELP.iter().map(|l| (*l).to_owned()).collect(),
            }),
            Command::Quit => self.quit = true,
        }
    }

    /// Switch to channel `key` (creating it locally if new).
    pub(crate) async fn select(&mut self, key: &str) {
        if let Err(e) = self.ensure_channel(key).await {
            return self.store_error(e);
        }
        self.current = key.to_owned();
        if let Some(ch) = self.channels.get_mut(key) {
            ch.unread = 0;
        }
        if let Err(e) = self.store.mark_read(key).await {
            self.store_error(e);
        }
        self.events.push(Event::Channel {
            channel: key.to_owned(),
        });
        let empty = self.channels.get(key).is_none_or(|c| c.messages.is_empty());
        if empty && key.starts_with('#') && self.conn == ConnState::Online {
            self.backfill(key, None, PAGE, false);
        }
    }

    // ---- connection and login ---------------------------------------------------

    fn set_conn(&mut self, state: ConnState, detail: Option<String>, retry_in: Option<Duration>) {
        self.conn = state;
        self.conn_detail.clone_from(&detail);
        self.events.push(Event::Connection {
            state,
            server: self.settings.server.clone(),
            detail,
            retry_in_ms: retry_in.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        });
    }

    fn authenticate(&mut self) {
        if let Some(token) = self.token.clone() {
            self.request("user.resume", json!({ "token": token }), Pending::Resume);
        } else if self.settings.register && !self.registered {
            match self.password.clone() {
                Some(pw) => {
                    self.request(
                        "user.register",
                        json!({ "name": self.settings.user, "password": pw }),
                        Pending::Register,
                    );
                }
                None => self.fatal(
                    "no_password",
                    "registering needs a password: --password or CHAT_PASSWORD",
                ),
            }
        } else {
            self.login();
        }
    }

    fn login(&mut self) {
        let Some(password) = self.password.clone() else {
            return self.fatal(
                "no_password",
                "no saved session and no password: type /login <password>, or run with --password",
            );
        };
        let user = &self.settings.user;
        let params = match user.parse::<u64>() {
            Ok(number) if user.bytes().all(|b| b.is_ascii_digit()) => {
                json!({ "number": number, "password": password })
            }
            _ => json!({ "name": user, "password": password }),
        };
        self.request("user.login", params, Pending::Login);
    }

    /// Give up until the user does something (`/login`).
    fn fatal(&mut self, code: &str, message: &str) {
        self.failed = true;
        self.error(Some("login"), None, code, message);
        let _ = self.net.send(NetCmd::Stop);
        self.set_conn(ConnState::Stopped, Some(message.to_owned()), None);
    }

    async fn on_login(&mut self, content: &Value, resumed: bool) {
        #[derive(Deserialize)]
        struct Group {
            name: String,
        }
        #[derive(Deserialize)]
        struct Reply {
            token: String,
            name: String,
            #[serde(default)]
            number: u64,
            #[serde(default)]
            friends: Vec<Friend>,
            #[serde(default)]
            groups: Vec<Group>,
        }
        let reply: Reply = match serde_json::from_value(content.clone()) {
            Ok(r) => r,
            Err(e) => {
                return self.fatal(
                    "bad_reply",
                    &format!("the login reply is not what PROTOCOL.md §1 says: {e}"),
                );
            }
        };
        self.me = reply.name.clone();
        self.token = Some(reply.token.clone());
        if let Err(e) = self.store.set_token(Some(&reply.token)).await {
            self.store_error(e);
        }
        self.friends = reply
            .friends
            .into_iter()
            .map(|f| (f.name, f.online))
            .collect();
        let _ = self.net.send(NetCmd::Online);
        self.events.push(Event::Login {
            name: reply.name,
            number: reply.number,
            resumed,
        });
        self.set_conn(ConnState::Online, None, None);
        self.request("user.online", json!({}), Pending::Online { report: false });
        for g in reply.groups {
            let key = group_key(&g.name);
            if let Err(e) = self.ensure_channel(&key).await {
                self.store_error(e);
                continue;
            }
            let mark = self.sync_marks.get(&key).cloned().flatten();
            self.request(
                "chat.history",
                json!({ "to": { "group": g.name }, "limit": PAGE }),
                Pending::Sync {
                    channel: key,
                    mark,
                    page: 0,
                },
            );
        }
        self.pump_outbox().await;
    }

    async fn on_closed(&mut self, reason: String, retry_in: Option<Duration>) {
        for (_, (_, p)) in self.pending.drain() {
            let name = match p {
                Pending::Command { name, .. } => name,
                Pending::Online { report: true } | Pending::Friends { report: true } => {
                    "who".into()
                }
                Pending::Backfill { report: true, .. } => "history".into(),
                _ => continue,
            };
            self.events.push(Event::Error {
                command: Some(name),
                status: None,
                code: "disconnected".into(),
                message: "the connection was lost before the server answered".into(),
            });
        }
        for (_, lease) in self.in_flight.drain() {
            let _ = lease.release().await;
        }
        self.to_ack.clear();
        self.ack_due = None;
        self.retry_due = None;
        // Replaced or stopped stays so, even if the server closed the
        // connection before the network task took the order to stop.
        let state = match (retry_in, self.conn) {
            (_, ConnState::Replaced) => ConnState::Replaced,
            (None, _) | (_, ConnState::Stopped) => ConnState::Stopped,
            (Some(_), _) => ConnState::Offline,
        };
        let detail = match state {
            ConnState::Offline => Some(reason),
            _ => self.conn_detail.clone().or(Some(reason)),
        };
        self.set_conn(
            state,
            detail,
            retry_in.filter(|_| state == ConnState::Offline),
        );
    }

    // ---- requests and replies -------------------------------------------------------

    /// Send a request on the current connection.
    fn request(&mut self, api: &str, params: Value, pending: Pending) {
        let id = self.next_id;
        self.next_id += 1;
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

    fn require_online(&mut self, command: &str) -> bool {
        if self.conn == ConnState::Online {
            return true;
        }
        self.error(
            Some(command),
            None,
            "offline",
            format!(
                "not connected ({}); try again when online",
                self.conn.label()
            ),
        );
        false
    }

    /// A user command that is one request.
    fn command(&mut self, name: &str, api: &str, params: Value, then: After) {
        if self.require_online(name) {
            self.request(
                api,
                params,
                Pending::Command {
                    name: name.to_owned(),
                    then,
                },
            );
        }
    }

    async fn on_frame(&mut self, frame: Value) {
        if let Some(kind) = frame.get("push").and_then(Value::as_str) {
            let content = frame.get("content").cloned().unwrap_or(Value::Null);
            return self.on_push(kind, content).await;
        }
        let id = frame.get("id").and_then(Value::as_u64);
        let status = frame
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .unwrap_or(0);
        let pending = id.and_then(|id| self.pending.remove(&id)).map(|(_, p)| p);
        if status == 200 {
            let content = frame.get("content").cloned().unwrap_or(Value::Null);
            if let Some(p) = pending {
                self.on_ok(p, content).await;
            }
            return;
        }
        let err = frame.get("error");
        let text = |k: &str| {
            err.and_then(|e| e.get(k))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let (code, message) = (text("code"), text("message"));
        let message = if message.is_empty() {
            format!("the server answered {status}")
        } else {
            message
        };
        match pending {
            Some(p) => self.on_err(p, status, code, message).await,
            None => self.error(None, Some(status), &code, message),
        }
    }

    async fn on_ok(&mut self, pending: Pending, content: Value) {
        match pending {
            Pending::Register => {
                self.registered = true;
                self.login();
            }
            Pending::Login => self.on_login(&content, false).await,
            Pending::Resume => self.on_login(&content, true).await,
            Pending::Online { report } => {
                let users: Vec<String> =
                    serde_json::from_value(content.get("users").cloned().unwrap_or_default())
                        .unwrap_or_default();
                self.online = users.into_iter().collect();
                if report {
                    self.request("friend.list", json!({}), Pending::Friends { report: true });
                }
            }
            Pending::Friends { report } => {
                let friends: Vec<Friend> =
                    serde_json::from_value(content.get("friends").cloned().unwrap_or_default())
                        .unwrap_or_default();
                self.friends = friends.iter().map(|f| (f.name.clone(), f.online)).collect();
                if report {
                    self.events.push(Event::Who {
                        online: self.online.iter().cloned().collect(),
                        friends,
                    });
                }
            }
            Pending::Sync {
                channel,
                mark,
                page,
            } => {
                let messages = messages_of(&content);
                let full = messages.len() >= PAGE;
                let oldest = messages.first().map(|m| m.id.clone());
                let mut reached = mark.is_none();
                for m in messages {
                    let newer = mark.as_ref().is_some_and(|mark| m.id > *mark);
                    reached |= !newer;
                    let source = if newer { Source::Sync } else { Source::Server };
                    self.take_message(m, source).await;
                }
                if !reached && full && page + 1 < SYNC_PAGES {
                    let Some(group) = channel.strip_prefix('#').map(str::to_owned) else {
                        return;
                    };
                    self.request(
                        "chat.history",
                        json!({ "to": { "group": group }, "limit": PAGE, "before": oldest }),
                        Pending::Sync {
                            channel,
                            mark,
                            page: page + 1,
                        },
                    );
                }
            }
            Pending::Backfill { channel, report } => {
                let mut added = Vec::new();
                for m in messages_of(&content) {
                    if let Some(view) = self.take_message(m, Source::Server).await {
                        added.push(view);
                    }
                }
                if report {
                    self.events.push(Event::History {
                        channel,
                        source: Source::Server,
                        messages: added,
                    });
                }
            }
            Pending::Send { client_id } => {
                let Some(lease) = self.in_flight.remove(&client_id) else {
                    return;
                };
                let item = lease.item().clone();
                if let Err(e) = lease.ack().await {
                    self.store_error(e.into());
                }
                self.outbox.retain(|o| o.client_id != client_id);
                let id = content
                    .get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned();
                let ts = content
                    .get("ts")
                    .and_then(Value::as_u64)
                    .unwrap_or_default();
                if !id.is_empty() {
                    let m = Message {
                        id: id.clone(),
                        from: self.me.clone(),
                        ip: String::new(),
                        to: item.to,
                        text: item.text,
                        ts,
                    };
                    self.take_message(m, Source::Sent).await;
                }
                self.events.push(Event::Sent {
                    channel: item.channel,
                    client_id,
                    id,
                    ts,
                });
            }
            Pending::Ack { ids } => self.events.push(Event::Acked { ids }),
            Pending::Command { name, then } => {
                match then {
                    After::Nothing => {}
                    After::OpenGroup(group) => {
                        let key = group_key(&group);
                        self.select(&key).await;
                    }
                    After::LeaveGroup(group) => self.remove_channel(&group_key(&group)).await,
                    After::RefreshFriends => {
                        self.request("friend.list", json!({}), Pending::Friends { report: false })
                    }
                }
                let detail = if content.as_object().is_some_and(|o| o.is_empty()) {
                    Value::Null
                } else {
                    content
                };
                self.ok(&name, detail);
            }
        }
    }

    async fn on_err(&mut self, pending: Pending, status: u16, code: String, message: String) {
        match pending {
            Pending::Register if status == 409 => {
                // Taken: by us on an earlier run, or by someone else (then
                // the login fails and says so).
                self.registered = true;
                self.error(Some("register"), Some(status), &code, message);
                self.login();
            }
            Pending::Register | Pending::Login if status >= 500 => {
                self.error(Some("login"), Some(status), &code, message);
                let _ = self.net.send(NetCmd::Stop);
                let _ = self.net.send(NetCmd::Reconnect);
            }
            Pending::Register | Pending::Login => {
                self.failed = true;
                self.error(Some("login"), Some(status), &code, message.clone());
                let _ = self.net.send(NetCmd::Stop);
                self.set_conn(ConnState::Stopped, Some(message), None);
            }
            Pending::Resume if status == 401 => {
                self.token = None;
                if let Err(e) = self.store.set_token(None).await {
                    self.store_error(e);
                }
                self.error(Some("resume"), Some(status), &code, message);
                self.login();
            }
            Pending::Resume => {
                self.error(Some("resume"), Some(status), &code, message);
                let _ = self.net.send(NetCmd::Stop);
                let _ = self.net.send(NetCmd::Reconnect);
            }
            Pending::Send { client_id } => {
                let Some(lease) = self.in_flight.remove(&client_id) else {
                    return;
                };
                if status == 429 || status >= 500 {
                    // Not now: keep it and try again shortly.
                    let _ = lease.release().await;
                    self.retry_due = Some(Instant::now() + RETRY_SEND);
                } else {
                    let channel = lease.item().channel.clone();
                    if let Err(e) = lease.ack().await {
                        self.store_error(e.into());
                    }
                    self.outbox.retain(|o| o.client_id != client_id);
                    self.events.push(Event::Error {
                        command: Some("send".into()),
                        status: Some(status),
                        code,
                        message: format!("{message} (in {channel}; not sent)"),
                    });
                }
            }
            Pending::Online { report: true } | Pending::Friends { report: true } => {
                self.error(Some("who"), Some(status), &code, message)
            }
            Pending::Backfill { report: true, .. } => {
                self.error(Some("history"), Some(status), &code, message)
            }
            Pending::Command { name, .. } => self.error(Some(&name), Some(status), &code, message),
            // Background requests: acks come back as redeliveries, syncs
            // happen again at the next login.
            Pending::Online { .. }
            | Pending::Friends { .. }
            | Pending::Sync { .. }
            | Pending::Backfill { .. }
            | Pending::Ack { .. } => {}
        }
    }

    async fn on_push(&mut self, kind: &str, content: Value) {
        match kind {
            "message" => match serde_json::from_value::<Message>(content) {
                Ok(m) => {
                    let id = m.id.clone();
                    let stored = self.take_message(m, Source::Live).await.is_some()
                        || self.seen.contains(&id);
                    if stored {
                        self.queue_ack(id).await;
                    }
                }
                Err(e) => self.error(
                    None,
                    None,
                    "bad_frame",
                    format!("a message push that is not a message: {e}"),
                ),
            },
            "presence" => {
                #[derive(Deserialize)]
                struct P {
                    user: String,
                    online: bool,
                }
                if let Ok(p) = serde_json::from_value::<P>(content) {
                    if p.online {
                        self.online.insert(p.user.clone());
                    } else {
                        self.online.remove(&p.user);
                    }
                    if let Some(f) = self.friends.get_mut(&p.user) {
                        *f = p.online;
                    }
                    self.events.push(Event::Presence {
                        user: p.user,
                        online: p.online,
                    });
                }
            }
            "group" => {
                if let Ok(g) = serde_json::from_value::<chat::GroupEvent>(content) {
                    let key = group_key(&g.group);
                    if g.user == self.me && matches!(g.event, Change::Left | Change::Kicked) {
                        self.remove_channel(&key).await;
                    } else if g.user == self.me
                        && g.event == Change::Joined
                        && let Err(e) = self.ensure_channel(&key).await
                    {
                        self.store_error(e);
                    }
                    self.events.push(Event::Group {
                        group: g.group,
                        user: g.user,
                        action: g.event.to_string(),
                    });
                }
            }
            "session" => {
                let state = content
                    .get("event")
                    .and_then(Value::as_str)
                    .unwrap_or("ended")
                    .to_owned();
                self.events.push(Event::Session {
                    state: state.clone(),
                });
                if state == "replaced" {
                    let _ = self.net.send(NetCmd::Stop);
                    self.set_conn(
                        ConnState::Replaced,
                        Some("logged in elsewhere; /login to take over".into()),
                        None,
                    );
                }
            }
            _ => {} // a push this client does not know: newer server
        }
    }

    // ---- messages -------------------------------------------------------------------

    /// Store and show `m` unless it is already here; the view if it was new.
    async fn take_message(&mut self, m: Message, source: Source) -> Option<View> {
        let key = channel_of(&m, &self.me);
        if self.seen.contains(&m.id) {
            if source == Source::Live {
                self.events.push(Event::Duplicate {
                    channel: key,
                    id: m.id,
                });
            }
            return None;
        }
        if let Err(e) = self.ensure_channel(&key).await {
            self.store_error(e);
            return None;
        }
        if let Err(e) = self.store.append(&key, &m).await {
            self.store_error(e);
            return None;
        }
        self.seen.insert(m.id.clone());
        let unread = matches!(source, Source::Live | Source::Sync)
            && m.from != self.me
            && key != self.current;
        if unread && let Err(e) = self.store.mark_unread(&key, &m.id).await {
            self.store_error(e);
        }
        let view = self.view(&key, &m);
        let ch = self.channels.entry(key).or_default();
        if unread {
            ch.unread += 1;
        }
        let at = ch.messages.partition_point(|x| sort_key(x) < sort_key(&m));
        ch.messages.insert(at, m);
        let cap = usize::try_from(HISTORY_CAP).unwrap_or(usize::MAX);
        if ch.messages.len() > cap {
            let extra = ch.messages.len() - cap;
            ch.messages.drain(..extra);
        }
        self.events.push(Event::Message {
            message: view.clone(),
            source,
            unread,
        });
        Some(view)
    }

    fn view(&self, channel: &str, m: &Message) -> View {
        View {
            channel: channel.to_owned(),
            id: m.id.clone(),
            from: m.from.clone(),
            to: m.to.clone(),
            text: m.text.clone(),
            display: self.display(&m.text),
            ts: m.ts,
            private: m.to.group.is_some() && m.to.user.is_some(),
            mine: m.from == self.me,
        }
    }

    async fn queue_ack(&mut self, id: String) {
        self.to_ack.push(id);
        if self.closing || self.to_ack.len() >= MAX_ACK_IDS {
            self.flush_acks().await;
        } else if self.ack_due.is_none() {
            self.ack_due = Some(Instant::now() + self.settings.ack_delay);
        }
    }

    /// Make the history durable, then ack what it holds.
    async fn flush_acks(&mut self) {
        self.ack_due = None;
        if self.to_ack.is_empty() || self.conn != ConnState::Online {
            return;
        }
        if let Err(e) = self.store.flush().await {
            // Not on disk: do not ack; the server delivers them again.
            self.to_ack.clear();
            return self.store_error(e);
        }
        let ids = std::mem::take(&mut self.to_ack);
        for chunk in ids.chunks(MAX_ACK_IDS) {
            self.request(
                "chat.ack",
                json!({ "ids": chunk }),
                Pending::Ack {
                    ids: chunk.to_vec(),
                },
            );
        }
    }

    async fn say(&mut self, text: String) {
        let Some(to) = target_of(&self.current) else {
            return self.error(
                Some("send"),
                None,
                "bad_channel",
                format!("cannot send to {}", self.current),
            );
        };
        let item = Outgoing {
            client_id: uuid::Uuid::new_v4().to_string(),
            channel: self.current.clone(),
            to,
            text,
        };
        if let Err(e) = self.store.queue_outgoing(&item).await {
            return self.store_error(e);
        }
        self.events.push(Event::Queued {
            channel: item.channel.clone(),
            client_id: item.client_id.clone(),
            text: item.text.clone(),
        });
        self.outbox.push(item);
        self.pump_outbox().await;
    }

    /// Send everything in the outbox that is not in flight yet.
    async fn pump_outbox(&mut self) {
        if self.conn != ConnState::Online {
            return;
        }
        loop {
            match self.store.lease_outgoing().await {
                Ok(Some(lease)) => {
                    let item = lease.item().clone();
                    if let Some(slot) = self.in_flight.get_mut(&item.client_id) {
                        // Its lease ran out while we waited: keep the new one.
                        *slot = lease;
                        continue;
                    }
                    if !self.outbox.iter().any(|o| o.client_id == item.client_id) {
                        self.outbox.push(item.clone());
                    }
                    let params =
                        json!({ "to": item.to, "text": item.text, "client_id": item.client_id });
                    self.request(
                        "chat.send",
                        params,
                        Pending::Send {
                            client_id: item.client_id.clone(),
                        },
                    );
                    self.in_flight.insert(item.client_id, lease);
                }
                Ok(None) => break,
                Err(e) => {
                    self.store_error(e);
                    break;
                }
            }
        }
    }

    fn backfill(&mut self, channel: &str, before: Option<String>, limit: usize, report: bool) {
        let Some(group) = channel.strip_prefix('#') else {
            return;
        };
        let mut params = json!({ "to": { "group": group }, "limit": limit.clamp(1, 200) });
        if let Some(b) = before {
            params["before"] = json!(b);
        }
        self.request(
            "chat.history",
            params,
            Pending::Backfill {
                channel: channel.to_owned(),
                report,
            },
        );
    }

    /// `/history`: the local history first, then older messages from the
    /// server for a group.
    async fn history(&mut self, n: usize) {
        let key = self.current.clone();
        let mut local = match self.store.history(&key).await {
            Ok(h) => h,
            Err(e) => return self.store_error(e),
        };
        local.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        local.dedup_by(|a, b| a.id == b.id);
        let start = local.len().saturating_sub(n);
        let oldest = local.first().map(|m| m.id.clone());
        let messages = local[start..].iter().map(|m| self.view(&key, m)).collect();
        self.events.push(Event::History {
            channel: key.clone(),
            source: Source::Local,
            messages,
        });
        if key.starts_with('#') && self.conn == ConnState::Online {
            self.backfill(&key, oldest, n, true);
        }
    }

    async fn report_channels(&mut self) {
        let keys: Vec<String> = self
            .channel_list()
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .collect();
        let mut channels = Vec::with_capacity(keys.len());
        for key in keys {
            // From the store, which is what a restart would show.
            let unread = match self.store.unread_count(&key).await {
                Ok(n) => n,
                Err(e) => {
                    self.store_error(e);
                    self.channels.get(&key).map_or(0, |c| c.unread)
                }
            };
            let messages = self.channels.get(&key).map_or(0, |c| c.messages.len());
            channels.push(ChannelInfo {
                channel: key,
                unread,
                messages,
            });
        }
        self.events.push(Event::Channels {
            current: self.current.clone(),
            channels,
        });
    }

    async fn ensure_channel(&mut self, key: &str) -> Result<(), StoreError> {
        if !self.channels.contains_key(key) {
            self.store.ensure_channel(key).await?;
            self.channels.insert(key.to_owned(), Channel::default());
        }
        Ok(())
    }

    async fn remove_channel(&mut self, key: &str) {
        if key == group_key(LOBBY) {
            return;
        }
        if self.channels.remove(key).is_some()
            && let Err(e) = self.store.drop_channel(key).await
        {
            self.store_error(e);
        }
        if self.current == key {
            self.select(&group_key(LOBBY)).await;
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

fn messages_of(content: &Value) -> Vec<Message> {
    content
        .get("messages")
        .and_then(Value::as_array)
        .map(|list| {
            list.iter()
                .filter_map(|m| serde_json::from_value(m.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use tokio::sync::mpsc;

    /// A client on a memory store, logged in as `bob`, and what it sends.
    pub(crate) async fn logged_in() -> (Client, mpsc::UnboundedReceiver<NetCmd>) {
        let store = LocalStore::on(nopi::open("memory:").await.unwrap())
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let settings = Settings {
            server: "tcp://127.0.0.1:7000".into(),
            user: "bob".into(),
            password: Some("pw".into()),
            register: false,
            ack_delay: Duration::from_millis(0),
            emoticons: true,
        };
        let mut c = Client::new(settings, store, tx).await.unwrap();
        c.on_net(NetEvent::Connected { epoch: 1 }).await;
        let login = sent(&mut rx);
        assert_eq!(login[0]["api"], "user.login");
        assert_eq!(login[0]["params"], json!({"name": "bob", "password": "pw"}));
        let reply = json!({"id": login[0]["id"], "status": 200, "content": {
            "token": "t", "name": "bob", "number": 2, "friends": [], "groups": [{"name": "lobby", "desc": "", "role": "member"}]}});
        c.on_net(NetEvent::Frame {
            epoch: 1,
            value: reply,
        })
        .await;
        assert_eq!(c.conn(), ConnState::Online);
        sent(&mut rx);
        c.take_events();
        (c, rx)
    }

    /// The requests sent so far.
    pub(crate) fn sent(rx: &mut mpsc::UnboundedReceiver<NetCmd>) -> Vec<Value> {
        let mut out = Vec::new();
        while let Ok(cmd) = rx.try_recv() {
            if let NetCmd::Send { text, .. } = cmd {
                out.push(serde_json::from_str(&text).unwrap());
            }
        }
        out
    }

    pub(crate) fn push(id: &str, from: &str, to: Value, text: &str) -> NetEvent {
        NetEvent::Frame {
            epoch: 1,
            value: json!({"push": "message", "content": {"id": id, "from": from, "ip": "127.0.0.1", "to": to, "text": text, "ts": 5}}),
        }
    }

    #[tokio::test]
    async fn a_redelivered_message_is_dropped_and_acked_again() {
        let (mut c, mut rx) = logged_in().await;
        c.on_net(push("m1", "alice", json!({"user": "bob"}), "hi :)"))
            .await;
        c.on_net(push("m1", "alice", json!({"user": "bob"}), "hi :)"))
            .await;
        let events = c.take_events();
        let shown: Vec<_> = events
            .iter()
            .filter(|e| matches!(e, Event::Message { .. }))
            .collect();
        assert_eq!(shown.len(), 1, "{events:?}");
        match shown[0] {
            Event::Message {
                message, unread, ..
            } => {
                assert_eq!(
                    (message.channel.as_str(), message.display.as_str(), *unread),
                    ("@alice", "hi ☺", true)
                );
            }
            _ => unreachable!(),
        }
        assert!(events.contains(&Event::Duplicate {
            channel: "@alice".into(),
            id: "m1".into()
        }));
        c.on_tick().await;
        let acks = sent(&mut rx);
        assert_eq!(acks.len(), 1);
        assert_eq!(acks[0]["api"], "chat.ack");
        assert_eq!(acks[0]["params"]["ids"], json!(["m1", "m1"]));
        assert_eq!(c.channel_list(), [("#lobby", 0), ("@alice", 1)]);
    }

    #[tokio::test]
    async fn switching_channel_clears_its_unread_count() {
        let (mut c, _rx) = logged_in().await;
        c.on_net(push("m1", "alice", json!({"group": "lobby"}), "in lobby"))
            .await;
        c.on_net(push(
            "m2",
            "alice",
            json!({"user": "bob", "group": "lobby"}),
            "private in lobby",
        ))
        .await;
        c.on_net(push("m3", "alice", json!({"user": "bob"}), "private"))
            .await;
        assert_eq!(
            c.channel_list(),
            [("#lobby", 0), ("@alice", 1)],
            "the current channel counts nothing"
        );
        c.on_command(Command::Join("@alice".into())).await;
        assert_eq!(c.channel_list(), [("#lobby", 0), ("@alice", 0)]);
        assert_eq!(c.current_messages().len(), 1);
        c.on_command(Command::Next).await;
        assert_eq!(c.current(), "#lobby");
        assert_eq!(c.current_messages().len(), 2);
    }

    #[tokio::test]
    async fn text_typed_offline_is_sent_after_login_and_confirmed() {
        let store = LocalStore::on(nopi::open("memory:").await.unwrap())
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let settings = Settings {
            server: "x".into(),
            user: "bob".into(),
            password: Some("pw".into()),
            register: false,
            ack_delay: Duration::from_millis(0),
            emoticons: false,
        };
        let mut c = Client::new(settings, store, tx).await.unwrap();
        c.on_command(Command::Say("queued while offline".into()))
            .await;
        assert!(sent(&mut rx).is_empty(), "nothing goes out before login");
        c.on_net(NetEvent::Connected { epoch: 1 }).await;
        let login = sent(&mut rx);
        let reply = json!({"id": login[0]["id"], "status": 200, "content": {"token": "t", "name": "bob", "number": 2}});
        c.on_net(NetEvent::Frame {
            epoch: 1,
            value: reply,
        })
        .await;
        let out = sent(&mut rx);
        let send = out
            .iter()
            .find(|r| r["api"] == "chat.send")
            .expect("the queued text is sent");
        assert_eq!(send["params"]["text"], "queued while offline");
        assert_eq!(
            c.current_outgoing().count(),
            1,
            "shown as pending until confirmed"
        );
        let reply = json!({"id": send["id"], "status": 200, "content": {"id": "s1", "ts": 9}});
        c.on_net(NetEvent::Frame {
            epoch: 1,
            value: reply,
        })
        .await;
        assert_eq!(c.current_messages()[0].text, "queued while offline");
        assert_eq!(c.current_outgoing().count(), 0);
    }

    #[tokio::test]
    async fn a_lost_connection_fails_commands_and_keeps_sends() {
        let (mut c, mut rx) = logged_in().await;
        c.on_command(Command::Say("keep me".into())).await;
        c.on_command(Command::GroupJoin("rust".into())).await;
        assert_eq!(sent(&mut rx).len(), 2);
        c.on_net(NetEvent::Closed {
            reason: "gone".into(),
            retry_in: Some(Duration::from_secs(1)),
        })
        .await;
        let events = c.take_events();
        assert!(events.iter().any(|e| matches!(e, Event::Error { command: Some(c), code, .. } if c == "group join" && code == "disconnected")));
        assert_eq!(c.conn(), ConnState::Offline);
        assert!(c.settled());
        c.on_net(NetEvent::Connected { epoch: 2 }).await;
        let resume = sent(&mut rx);
        assert_eq!(resume[0]["api"], "user.resume", "the saved token is used");
        let reply = json!({"id": resume[0]["id"], "status": 200, "content": {"token": "t", "name": "bob", "number": 2}});
        c.on_net(NetEvent::Frame {
            epoch: 2,
            value: reply,
        })
        .await;
        let again = sent(&mut rx);
        assert!(
            again
                .iter()
                .any(|r| r["api"] == "chat.send" && r["params"]["text"] == "keep me"),
            "{again:?}"
        );
    }

    #[tokio::test]
    async fn a_replaced_session_stops_reconnecting_until_login() {
        let (mut c, mut rx) = logged_in().await;
        let replaced = NetEvent::Frame {
            epoch: 1,
            value: json!({"push": "session", "content": {"event": "replaced"}}),
        };
        c.on_net(replaced).await;
        // The server closes the connection before the network task stops.
        c.on_net(NetEvent::Closed {
            reason: "closed".into(),
            retry_in: Some(Duration::from_secs(1)),
        })
        .await;
        assert_eq!(c.conn(), ConnState::Replaced);
        assert!(std::iter::from_fn(|| rx.try_recv().ok()).any(|cmd| matches!(cmd, NetCmd::Stop)));
        assert!(c.settled(), "a script may end");
        c.on_command(Command::Login("pw".into())).await;
        assert!(
            std::iter::from_fn(|| rx.try_recv().ok()).any(|cmd| matches!(cmd, NetCmd::Reconnect))
        );
        c.on_net(NetEvent::Connected { epoch: 2 }).await;
        let login = sent(&mut rx);
        assert_eq!(
            login[0]["api"], "user.login",
            "taking over logs in with the password"
        );
    }

    #[tokio::test]
    async fn bad_credentials_stop_and_fail() {
        let store = LocalStore::on(nopi::open("memory:").await.unwrap())
            .await
            .unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let settings = Settings {
            server: "x".into(),
            user: "4242".into(),
            password: Some("nope".into()),
            register: false,
            ack_delay: Duration::from_millis(0),
            emoticons: true,
        };
        let mut c = Client::new(settings, store, tx).await.unwrap();
        c.on_net(NetEvent::Connected { epoch: 1 }).await;
        let login = sent(&mut rx);
        assert_eq!(
            login[0]["params"],
            json!({"number": 4242, "password": "nope"}),
            "a number logs in by number"
        );
        let reply = json!({"id": login[0]["id"], "status": 401, "error": {"code": "bad_credentials", "message": "wrong name or password"}});
        c.on_net(NetEvent::Frame {
            epoch: 1,
            value: reply,
        })
        .await;
        assert_eq!(c.conn(), ConnState::Stopped);
        assert!(c.failed());
        let events = c.take_events();
        assert!(
            events
                .iter()
                .any(|e| matches!(e, Event::Error { code, .. } if code == "bad_credentials")),
            "{events:?}"
        );
    }

    #[tokio::test]
    async fn garbage_from_the_server_is_reported_not_fatal() {
        let (mut c, _rx) = logged_in().await;
        for value in [
            json!({"push": "message", "content": {"id": 1}}),
            json!({"push": "presence", "content": "x"}),
            json!({"push": "group", "content": null}),
            json!({"push": "from-the-future", "content": {}}),
            json!({"id": 999_999, "status": 200}),
            json!({"id": null, "status": 400, "error": {"code": "bad_json", "message": "?"}}),
            json!({"status": "weird"}),
        ] {
            c.on_net(NetEvent::Frame { epoch: 1, value }).await;
        }
        c.on_net(NetEvent::Garbage {
            epoch: 1,
            reason: "not json".into(),
        })
        .await;
        assert_eq!(c.conn(), ConnState::Online);
        assert!(c.current_messages().is_empty());
    }

    #[tokio::test]
    async fn sync_keeps_only_what_is_newer_than_the_newest_stored() {
        let (mut c, mut rx) = logged_in().await;
        c.on_net(push("0001", "alice", json!({"group": "lobby"}), "old"))
            .await;
        c.on_net(NetEvent::Closed {
            reason: "x".into(),
            retry_in: Some(Duration::from_secs(1)),
        })
        .await;
        c.on_net(NetEvent::Connected { epoch: 2 }).await;
        c.on_command(Command::Join("@carol".into())).await; // lobby is no longer current
        let resume = sent(&mut rx);
        let reply = json!({"id": resume[0]["id"], "status": 200, "content": {"token": "t", "name": "bob", "number": 2,
            "groups": [{"name": "lobby"}]}});
        c.on_net(NetEvent::Frame {
            epoch: 2,
            value: reply,
        })
        .await;
        c.take_events();
        let history = sent(&mut rx)
            .into_iter()
            .find(|r| r["api"] == "chat.history")
            .expect("a sync");
        let older = json!({"id": "0000", "from": "alice", "ip": "", "to": {"group": "lobby"}, "text": "older", "ts": 1});
        let known = json!({"id": "0001", "from": "alice", "ip": "", "to": {"group": "lobby"}, "text": "old", "ts": 5});
        let newer = json!({"id": "0002", "from": "alice", "ip": "", "to": {"group": "lobby"}, "text": "new", "ts": 6});
        let reply = json!({"id": history["id"], "status": 200, "content": {"messages": [older, known, newer]}});
        c.on_net(NetEvent::Frame {
            epoch: 2,
            value: reply,
        })
        .await;
        let events = c.take_events();
        let added: Vec<(String, Source, bool)> = events
            .iter()
            .filter_map(|e| match e {
                Event::Message {
                    message,
                    source,
                    unread,
                } => Some((message.text.clone(), *source, *unread)),
                _ => None,
            })
            .collect();
        assert_eq!(
            added,
            [
                ("older".into(), Source::Server, false),
                ("new".into(), Source::Sync, true)
            ]
        );
        assert_eq!(c.channel_list()[0], ("#lobby", 1));
    }
}
